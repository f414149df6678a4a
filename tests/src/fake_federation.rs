//! A fake AWS sign-in federation endpoint on 127.0.0.1: `GET /federation?Action=getSigninToken
//! &Session=...[&SessionDuration=...]` answers `{"SigninToken": ...}`, as
//! `signin.aws.amazon.com/federation` does, after checking the request the way AWS would
//! (every session key present, a duration in bounds).

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
    if query.get("Action").map(String::as_str) != Some("getSigninToken") {
        return (StatusCode::BAD_REQUEST, "unsupported Action").into_response();
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
