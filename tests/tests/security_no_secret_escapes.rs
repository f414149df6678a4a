//! No secret escapes: every login scenario of `login.rs` runs in one world with samld
//! logging at trace level, and then the daemon's log, everything `samlctl` printed, what
//! `samld-helper` printed on stderr, and every file under the temp dir are searched for the
//! passwords, the TOTP codes, JumpCloud's cookies, the SAMLResponses and the AWS secret
//! keys and session tokens.

mod support;

use std::path::{Path, PathBuf};

use base64::Engine as _;
use support::{ALL_CODES, ALL_PASSWORDS, World, flows};

/// A value that must not appear, and what it is (for the failure message).
struct Needle {
    what: String,
    value: String,
    /// The helper's stdout is where credentials belong.
    is_aws_credential: bool,
}

#[test]
fn no_secret_reaches_a_log_an_error_message_or_a_file() {
    let mut w = World::with_log_level(Some("trace"));
    flows::password_and_totp(&w);
    flows::totp_from_mfa_command(&w);
    flows::push_approved(&w);
    flows::push_denied_and_expired(&w);
    flows::wrong_password(&w);
    flows::wrong_and_reused_code(&w);
    flows::session_reuse(&w);
    flows::faults_are_named(&w);
    flows::roles(&w);
    flows::logout_sticks(&w);
    flows::status_after_login(&w);
    flows::webauthn_unsupported(&w);
    for account in ["totp", "command", "push", "reuse", "multi", "status"] {
        let out = w.helper(&[account]);
        assert!(out.status.success(), "{account}: {:?}", out);
        let out = w.samlctl(&["refresh", account]);
        assert!(out.status.success(), "{account}: {:?}", out);
    }
    let human = w.samlctl(&["status"]);
    assert!(human.status.success());

    let log = w.stop_daemon();
    let needles = needles(&w);
    let transcript = w.take_transcript();

    // The search must be able to fail: trace was on, and credentials do reach the helper.
    assert!(
        log.contains("TRACE"),
        "samld did not log at trace level:\n{log}"
    );
    let helper_stdouts: Vec<String> = transcript
        .iter()
        .filter(|r| r.stdout_holds_credentials)
        .map(|r| String::from_utf8_lossy(&r.output.stdout).into_owned())
        .collect();
    assert!(
        needles
            .iter()
            .filter(|n| n.is_aws_credential)
            .any(|n| helper_stdouts.iter().any(|s| s.contains(&n.value))),
        "no issued secret key or token found in the helper's output: the search is broken"
    );

    let mut haystacks: Vec<(String, String, bool)> = vec![("samld's log".into(), log, false)];
    for ran in &transcript {
        haystacks.push((
            format!("stderr of `{}`", ran.command),
            String::from_utf8_lossy(&ran.output.stderr).into_owned(),
            false,
        ));
        haystacks.push((
            format!("stdout of `{}`", ran.command),
            String::from_utf8_lossy(&ran.output.stdout).into_owned(),
            ran.stdout_holds_credentials,
        ));
    }
    let files = files_under(w.env.path(), &w.env.config);
    for path in &files {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        haystacks.push((
            format!("file {}", path.display()),
            String::from_utf8_lossy(&bytes).into_owned(),
            false,
        ));
    }

    assert_no_leak(&haystacks, &needles);
}

/// `SAMLD_LOG` naming the SDK's and the HTTP stack's own targets at trace, more specific
/// than samld's cap on them, with `LOG_SENSITIVE_BODIES=true` (which makes the SDK log
/// request and response bodies): the STS secret keys and session tokens used to land in the
/// log. The cap is applied after the user's filter, so no directive turns it back on.
#[test]
fn sdk_trace_logging_cannot_be_turned_back_on() {
    let spec = "trace,aws_smithy_runtime::client=trace,aws_smithy_runtime=trace,\
                aws_smithy_http_client=trace,aws_sdk_sts=trace,aws_config=trace,\
                aws_runtime=trace,hyper=trace,hyper_util=trace,h2=trace,reqwest=trace,\
                rustls=trace,tower=trace";
    let mut w = World::with_log_and_env(spec, &[("LOG_SENSITIVE_BODIES", "true")]);
    // A push login: samld logs each poll at trace, which shows the level took effect.
    flows::push_approved(&w);
    let out = w.samlctl(&["refresh", "push"]);
    assert!(out.status.success(), "{out:?}");
    let log = w.stop_daemon();
    assert!(
        log.contains("TRACE"),
        "samld did not log at trace level:\n{log}"
    );
    let issued = w.sts.issued();
    assert!(
        issued.len() >= 2,
        "too few credentials issued: {}",
        issued.len()
    );
    let needles = credential_needles(&w);
    assert_no_leak(&[("samld's log".into(), log, false)], &needles);
}

/// Fails naming each needle found in a haystack (place, text, whether AWS credentials
/// belong there), with the text before it.
fn assert_no_leak(haystacks: &[(String, String, bool)], needles: &[Needle]) {
    let mut leaks = Vec::new();
    for (place, text, credentials_allowed) in haystacks {
        for needle in needles {
            if needle.is_aws_credential && *credentials_allowed {
                continue;
            }
            if let Some(at) = text.find(&needle.value) {
                let start = text[..at]
                    .char_indices()
                    .rev()
                    .nth(80)
                    .map_or(0, |(i, _)| i);
                leaks.push(format!(
                    "{} in {place}: …{}…",
                    needle.what,
                    &text[start..(at + needle.value.len()).min(text.len())]
                ));
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "{} leak(s) in {} places searched:\n{}",
        leaks.len(),
        haystacks.len(),
        leaks.join("\n")
    );
}

/// Every secret the scenarios used or the fakes handed out.
fn needles(w: &World) -> Vec<Needle> {
    let mut needles = Vec::new();
    let mut add = |what: String, value: &str, is_aws_credential: bool| {
        assert!(
            value.len() >= 8,
            "{what} is too short to search for: {value:?}"
        );
        needles.push(Needle {
            what,
            value: value.to_owned(),
            is_aws_credential,
        });
    };
    for password in ALL_PASSWORDS {
        add("a password".into(), password, false);
    }
    for code in ALL_CODES {
        add(format!("TOTP code {code}"), code, false);
    }
    let cookies = w.jc.issued_cookie_values();
    assert!(
        cookies.len() >= 20,
        "too few cookies issued: {}",
        cookies.len()
    );
    for cookie in &cookies {
        add("a JumpCloud cookie value".into(), cookie, false);
    }
    let responses = w.jc.saml_responses();
    assert!(
        responses.len() >= 10,
        "too few SAMLResponses: {}",
        responses.len()
    );
    for (i, response) in responses.iter().enumerate() {
        add(format!("SAMLResponse #{i}"), response, false);
        // A log that truncates or wraps it would still show a stretch of it.
        let middle = response.len() / 2;
        add(
            format!("the middle of SAMLResponse #{i}"),
            &response[middle - 32..middle + 32],
            false,
        );
        // A log of the decoded XML would show its random IDs.
        let xml = base64::engine::general_purpose::STANDARD
            .decode(response)
            .expect("SAMLResponse is base64");
        let xml = String::from_utf8(xml).expect("SAML XML is UTF-8");
        for id in xml
            .split(" ID=\"")
            .skip(1)
            .filter_map(|s| s.split('"').next())
        {
            add(format!("an ID inside SAMLResponse #{i}"), id, false);
        }
    }
    let issued = w.sts.issued();
    assert!(
        issued.len() >= 10,
        "too few credentials issued: {}",
        issued.len()
    );
    needles.extend(credential_needles(w));
    needles
}

/// The secret key and session token of every credential the fake STS issued.
fn credential_needles(w: &World) -> Vec<Needle> {
    let mut needles = Vec::new();
    for creds in &w.sts.issued() {
        let key = &creds.access_key_id;
        for (what, value) in [
            ("secret key", &creds.secret_access_key),
            ("session token", &creds.session_token),
        ] {
            assert!(
                value.len() >= 8,
                "the {what} of {key} is too short to search for"
            );
            needles.push(Needle {
                what: format!("the {what} of {key}"),
                value: value.clone(),
                is_aws_credential: true,
            });
        }
    }
    needles
}

/// Every regular file under `dir` except `skip` (the config the test wrote).
fn files_under(dir: &Path, skip: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let entry = entry.expect("dir entry");
            let kind = entry.file_type().expect("file type");
            let path = entry.path();
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() && path != skip {
                files.push(path);
            }
        }
    }
    files
}
