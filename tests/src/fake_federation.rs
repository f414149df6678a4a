//! A fake AWS sign-in federation endpoint on 127.0.0.1: `GET /federation?Action=getSigninToken
//! &Session=...[&SessionDuration=...]` answers `{"SigninToken": ...}`, as
//! `signin.aws.amazon.com/federation` does, after checking the request the way AWS would
//! (every session key present, a duration in bounds). `GET /federation?Action=login
//! &SigninToken=...` with a token it issued answers a page saying who is signed in, where AWS
//! would open the console (so that `samlctl console` in the sandbox lands somewhere).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One getSigninToken request as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigninRequest {
    /// `sessionId` (the access key id).
    pub session_id: String,
    /// `sessionKey` (the secret access key).
    pub session_key: String,
    /// `sessionToken`.
    pub session_token: String,
    /// `SessionDuration`, when sent.
    pub session_duration: Option<u32>,
    /// The sign-in token answered.
    pub signin_token: String,
}

#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<SigninRequest>>,
}

/// A running fake federation endpoint; stops when dropped.
pub struct FakeFederation {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl FakeFederation {
    /// Binds 127.0.0.1 on a free port and serves.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route("/federation", axum::routing::get(federation))
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            addr,
            shared,
            server,
        }
    }

    /// `http://127.0.0.1:PORT/federation`, for `federation_url`.
    pub fn url(&self) -> String {
        format!("http://{}/federation", self.addr)
    }

    /// The getSigninToken requests so far.
    pub fn requests(&self) -> Vec<SigninRequest> {
        self.shared.requests.lock().unwrap().clone()
    }
}

impl Drop for FakeFederation {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn federation(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    match query.get("Action").map(String::as_str) {
        Some("getSigninToken") => {}
        Some("login") => return console_login(&shared, &query),
        _ => return (StatusCode::BAD_REQUEST, "unsupported Action").into_response(),
    }
    let Some(session) = query
        .get("Session")
        .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
    else {
        return (StatusCode::BAD_REQUEST, "Session is not JSON").into_response();
    };
    let field = |k: &str| session[k].as_str().map(str::to_owned);
    let (Some(session_id), Some(session_key), Some(session_token)) = (
        field("sessionId"),
        field("sessionKey"),
        field("sessionToken"),
    ) else {
        return (StatusCode::BAD_REQUEST, "Session lacks a key").into_response();
    };
    let session_duration = match query.get("SessionDuration") {
        None => None,
        Some(d) => match d.parse::<u32>() {
            Ok(d) if (900..=43_200).contains(&d) => Some(d),
            _ => return (StatusCode::BAD_REQUEST, "bad SessionDuration").into_response(),
        },
    };
    let mut requests = shared.requests.lock().unwrap();
    let signin_token = format!("fake-signin-token-{}+/=", requests.len() + 1);
    requests.push(SigninRequest {
        session_id,
        session_key,
        session_token,
        session_duration,
        signin_token: signin_token.clone(),
    });
    axum::Json(serde_json::json!({ "SigninToken": signin_token })).into_response()
}

/// `Action=login`: the console, signed in, for a sign-in token this endpoint issued.
fn console_login(shared: &Shared, query: &HashMap<String, String>) -> Response {
    let requests = shared.requests.lock().unwrap();
    let token = query.get("SigninToken");
    let Some(signed_in) = requests.iter().find(|r| Some(&r.signin_token) == token) else {
        return (StatusCode::BAD_REQUEST, "unknown SigninToken").into_response();
    };
    // An access key id is no secret, and it names the credentials the console got; it is
    // made of letters and digits only, so it needs no escaping.
    let key: String = signed_in
        .session_id
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    axum::response::Html(format!(
        "<!DOCTYPE html>\n<html><head><title>AWS Management Console (fake)</title></head>\n\
         <body><h1>Signed in to the AWS Management Console (fake)</h1>\n\
         <p id=\"signed-in\">Signed in with access key {key}.</p></body></html>\n"
    ))
    .into_response()
}
