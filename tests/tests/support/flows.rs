//! The login scenarios (a password with TOTP or push, and each way a login fails), each
//! against its own account of a [`World`], each asserting what the user sees and what the
//! fakes saw.

use std::process::Output;

use samld_proto::AccountState;
use samld_tests::fake_jumpcloud::{Endpoint, Fault};
use samld_tests::fake_sts::{FakeStsFault, IssuedCredentials};
use samld_tests::fixture::{failed, stderr, stdout, succeeded};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::*;

/// Checks a successful `samld-helper` run against the `credential_process` contract and
/// returns the STS credentials it handed out.
pub fn credential_document(w: &World, out: &Output) -> IssuedCredentials {
    let text = succeeded(out, "samld-helper");
    assert!(
        out.stderr.is_empty(),
        "samld-helper wrote to stderr: {}",
        stderr(out)
    );
    let mut docs = serde_json::Deserializer::from_str(&text).into_iter::<Value>();
    let doc = docs
        .next()
        .expect("one JSON document on stdout")
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {text:?}"));
    assert!(
        docs.next().is_none(),
        "more than one JSON document: {text:?}"
    );
    let field = |name: &str| -> &str {
        doc[name]
            .as_str()
            .unwrap_or_else(|| panic!("{name} is missing or not a string: {doc}"))
    };
    assert_eq!(doc["Version"], 1, "{doc}");
    let issued = w
        .sts
        .issued()
        .into_iter()
        .find(|c| c.access_key_id == field("AccessKeyId"))
        .unwrap_or_else(|| panic!("AccessKeyId {} was never issued", field("AccessKeyId")));
    assert_eq!(field("SecretAccessKey"), issued.secret_access_key);
    assert_eq!(field("SessionToken"), issued.session_token);
    let expiration = field("Expiration");
    assert!(expiration.ends_with('Z'), "not UTC: {expiration}");
    let parsed = OffsetDateTime::parse(expiration, &Rfc3339)
        .unwrap_or_else(|e| panic!("Expiration {expiration:?} is not RFC 3339: {e}"));
    assert_eq!(parsed, issued.expiration);
    issued
}

/// Asserts an account is logged out with nothing held.
fn assert_logged_out(w: &World, account: &str) {
    let status = w.account_status(account);
    assert_eq!(status.state, AccountState::LoggedOut, "{status:#?}");
    assert!(status.roles.is_empty(), "{status:#?}");
    assert!(status.session.is_none(), "{status:#?}");
}

/// Password + TOTP code from the command line; then the helper serves the credentials.
pub fn password_and_totp(w: &World) {
    let before = w.jc.stats();
    let out = w.login("totp", TOTP_PASSWORD, Some(CODE_LOGIN));
    let text = succeeded(&out, "login with password and TOTP");
    assert!(
        text.contains(&format!("Logged in to totp as {TOTP_EMAIL}")),
        "{text}"
    );
    assert!(text.contains(ROLE_ARN), "lists the role: {text}");
    let after = w.jc.stats();
    assert_eq!(
        after.password_posts,
        before.password_posts + 2,
        "password, then with the code"
    );
    assert_eq!(after.totp_accepted, before.totp_accepted + 1);

    let creds = credential_document(w, &w.helper(&["totp"]));
    assert_eq!(creds.role_arn, ROLE_ARN);
}

/// The TOTP code comes from `mfa_command`; no `--mfa-code`.
pub fn totp_from_mfa_command(w: &World) {
    let before = w.jc.stats();
    let out = w.login("command", TOTP_PASSWORD, None);
    succeeded(&out, "login with mfa_command");
    assert_eq!(w.jc.stats().totp_accepted, before.totp_accepted + 1);
    credential_document(w, &w.helper(&["command"]));
}

/// JumpCloud Protect: approved on the phone after a few polls; samlctl shows the
/// daemon's "approve the push" while it waits.
pub fn push_approved(w: &World) {
    let before = w.jc.stats();
    let out = w.login("push", PUSH_PASSWORD, None);
    succeeded(&out, "push login");
    let progress = stderr(&out).to_lowercase();
    assert!(
        progress.contains("approve") && progress.contains("push"),
        "the push prompt is streamed to samlctl: {progress}"
    );
    let after = w.jc.stats();
    assert_eq!(after.pushes_accepted, before.pushes_accepted + 1);
    assert!(after.push_polls >= before.push_polls + 3, "{after:?}");
    credential_document(w, &w.helper(&["push"]));
}

/// A denied push and an expired one each get their own message.
pub fn push_denied_and_expired(w: &World) {
    let denied = failed(&w.login("push-denied", DENY_PASSWORD, None), "denied push");
    assert!(denied.contains("denied"), "{denied}");
    assert!(!denied.contains("expired"), "{denied}");

    let expired = failed(
        &w.login("push-expired", EXPIRE_PASSWORD, None),
        "expired push",
    );
    assert!(expired.contains("expired"), "{expired}");
    assert!(!expired.contains("denied"), "{expired}");
    assert_logged_out(w, "push-denied");
    assert_logged_out(w, "push-expired");
}

/// A wrong password: its own message, a failure exit, and the account untouched.
pub fn wrong_password(w: &World) {
    assert_logged_out(w, "wrong-password");
    let before = w.jc.stats();
    let out = w.login("wrong-password", WRONG_PASSWORD, Some(CODE_WRONG));
    let text = failed(&out, "login with a wrong password");
    assert!(out.stdout.is_empty(), "{}", stdout(&out));
    assert!(
        text.contains("JumpCloud rejected the email or password"),
        "{text}"
    );
    assert!(!text.contains("TOTP"), "not a code problem: {text}");
    let after = w.jc.stats();
    assert_eq!(after.failed_passwords, before.failed_passwords + 1);
    assert_eq!(after.totp_posts, before.totp_posts, "no code was sent");
    assert_logged_out(w, "wrong-password");
}

/// A wrong TOTP code, and a code that already served once, are refused with a message of
/// their own.
pub fn wrong_and_reused_code(w: &World) {
    let out = w.login("wrong-code", TOTP_PASSWORD, Some(CODE_WRONG));
    let text = failed(&out, "login with a wrong code");
    assert!(text.contains("JumpCloud rejected the TOTP code"), "{text}");
    assert!(!text.contains("email or password"), "{text}");
    assert_logged_out(w, "wrong-code");

    succeeded(
        &w.login("code-twice", TOTP_PASSWORD, Some(CODE_TWICE)),
        "first use of a code",
    );
    succeeded(&w.samlctl(&["logout", "code-twice"]), "logout");
    let before = w.jc.stats();
    let out = w.login("code-twice", TOTP_PASSWORD, Some(CODE_TWICE));
    let text = failed(&out, "login with a used code");
    assert!(text.contains("JumpCloud rejected the TOTP code"), "{text}");
    assert_eq!(w.jc.stats().totp_rejected, before.totp_rejected + 1);
}

/// While the JumpCloud session lives, `samlctl login` needs no password, no code and no
/// terminal, and JumpCloud sees neither.
pub fn session_reuse(w: &World) {
    succeeded(
        &w.login("reuse", TOTP_PASSWORD, Some(CODE_REUSE)),
        "first login",
    );
    let before = w.jc.stats();
    let issued_before = w.sts.issued_count();
    let out = w.samlctl(&["login", "reuse"]);
    let text = succeeded(&out, "second login without secrets");
    assert!(text.contains("session reused"), "{text}");
    let after = w.jc.stats();
    assert_eq!(after.password_posts, before.password_posts, "no password");
    assert_eq!(after.totp_posts, before.totp_posts, "no MFA");
    assert_eq!(after.pushes_started, before.pushes_started, "no MFA");
    assert_eq!(
        after.xsrf_requests, before.xsrf_requests,
        "no new console session"
    );
    assert_eq!(after.saml_pages, before.saml_pages + 1, "a fresh assertion");
    assert!(w.sts.issued_count() > issued_before, "fresh credentials");
    credential_document(w, &w.helper(&["reuse"]));
}

/// Faults: JumpCloud answering HTML, JumpCloud unreachable, STS refusing.
pub fn faults_are_named(w: &World) {
    let served = w.jc.stats().faults_served;
    w.jc.inject(Endpoint::Xsrf, Fault::Html(200), 1);
    let text = failed(
        &w.login("xsrf-html", TOTP_PASSWORD, Some(CODE_WRONG)),
        "login against an HTML page",
    );
    assert!(
        text.contains("GET /userconsole/xsrf"),
        "names the request: {text}"
    );
    assert!(text.contains("HTML"), "{text}");
    assert_eq!(w.jc.stats().faults_served, served + 1);

    let text = failed(
        &w.login("down", TOTP_PASSWORD, Some(CODE_WRONG)),
        "login with JumpCloud down",
    );
    let url = format!("http://127.0.0.1:{}/", w.closed_port);
    assert!(text.contains(&url), "names the URL {url}: {text}");
    assert!(text.contains("Could not reach"), "{text}");

    w.sts.inject(FakeStsFault::AccessDenied);
    let calls = w.sts.calls();
    let text = failed(
        &w.login("sts-denied", TOTP_PASSWORD, Some(CODE_STS)),
        "login with STS refusing",
    );
    assert!(text.contains("AccessDenied"), "STS's code: {text}");
    assert!(
        text.contains("Not authorized to perform sts:AssumeRoleWithSAML"),
        "STS's message: {text}"
    );
    assert_eq!(w.sts.calls(), calls + 1);
    assert_eq!(w.sts.pending_faults(), 0);
}

/// Two roles: `samlctl roles` lists both with the configured default marked; the helper
/// serves either; an unknown role lists the real ones.
pub fn roles(w: &World) {
    succeeded(&w.login("multi", MULTI_PASSWORD, None), "login");
    let listing = succeeded(&w.samlctl(&["roles", "multi"]), "roles");
    let line = |arn: &str| {
        listing
            .lines()
            .find(|l| l.contains(arn))
            .unwrap_or_else(|| panic!("{arn} not listed: {listing}"))
            .to_owned()
    };
    assert!(line(ADMIN_ROLE_ARN).contains("(default)"), "{listing}");
    assert!(!line(READONLY_ROLE_ARN).contains("(default)"), "{listing}");

    let json: Value = serde_json::from_str(&succeeded(
        &w.samlctl(&["roles", "multi", "--json"]),
        "roles --json",
    ))
    .expect("roles --json is JSON");
    let roles = json["roles"].as_array().expect("a roles array");
    assert_eq!(roles.len(), 2, "{json}");

    let admin = credential_document(w, &w.helper(&["multi"]));
    assert_eq!(admin.role_arn, ADMIN_ROLE_ARN);
    let readonly = credential_document(w, &w.helper(&["multi", "--role", "ReadOnly"]));
    assert_eq!(readonly.role_arn, READONLY_ROLE_ARN);
    assert_ne!(admin.access_key_id, readonly.access_key_id);

    let out = w.helper(&["multi", "--role", "Auditor"]);
    let text = failed(&out, "an unknown role");
    assert!(out.stdout.is_empty(), "nothing on stdout: {}", stdout(&out));
    assert!(text.contains("Auditor"), "{text}");
    assert!(
        text.contains(ADMIN_ROLE_ARN) && text.contains(READONLY_ROLE_ARN),
        "lists the roles on offer: {text}"
    );
}

/// After `samlctl logout` the helper says to log in, nothing talks to JumpCloud or STS
/// again, and the JumpCloud session is forgotten (a login needs the password again).
pub fn logout_sticks(w: &World) {
    succeeded(
        &w.login("logout", TOTP_PASSWORD, Some(CODE_LOGOUT)),
        "login",
    );
    credential_document(w, &w.helper(&["logout"]));
    let text = succeeded(&w.samlctl(&["logout", "logout"]), "logout");
    assert!(text.contains("Logged out of logout"), "{text}");

    let jc_before = w.jc.stats();
    let sts_before = w.sts.calls();
    let out = w.helper(&["logout"]);
    let text = failed(&out, "the helper after logout");
    assert!(out.stdout.is_empty(), "nothing on stdout: {}", stdout(&out));
    assert!(text.contains("samlctl login logout"), "{text}");
    failed(&w.samlctl(&["refresh", "logout"]), "refresh after logout");
    assert_logged_out(w, "logout");
    assert_eq!(w.jc.stats(), jc_before, "no JumpCloud traffic after logout");
    assert_eq!(w.sts.calls(), sts_before, "no STS call after logout");

    // JumpCloud still holds the session, but samld has let go of it.
    assert!(w.jc.live_sessions() > 0);
    let text = failed(&w.samlctl(&["login", "logout"]), "login without a password");
    assert!(text.to_lowercase().contains("password"), "{text}");
    assert_eq!(w.jc.stats().password_posts, jc_before.password_posts);
    assert_logged_out(w, "logout");
}

/// `samlctl status --json` after a login: active, with expiry, next refresh and session
/// times that make sense.
pub fn status_after_login(w: &World) {
    assert_logged_out(w, "status");
    let started = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    succeeded(
        &w.login("status", TOTP_PASSWORD, Some(CODE_STATUS)),
        "login",
    );
    let status = w.account_status("status");
    assert_eq!(status.state, AccountState::Active, "{status:#?}");
    let time = |s: &Option<String>, what: &str| -> OffsetDateTime {
        let s = s
            .as_deref()
            .unwrap_or_else(|| panic!("{what} missing: {status:#?}"));
        OffsetDateTime::parse(s, &Rfc3339).unwrap_or_else(|e| panic!("{what} {s:?}: {e}"))
    };
    let [role] = &status.roles[..] else {
        panic!("one role expected: {status:#?}");
    };
    assert_eq!(role.role_arn, ROLE_ARN);
    let expires = time(&role.expires_at, "expires_at");
    let refresh = time(&role.next_refresh_at, "next_refresh_at");
    assert!(started < refresh && refresh < expires, "{status:#?}");
    let session = status.session.as_ref().expect("a session");
    let established = time(&Some(session.established_at.clone()), "established_at");
    let verified = time(&Some(session.last_verified_at.clone()), "last_verified_at");
    assert!(
        started <= established && established <= verified,
        "{status:#?}"
    );
    assert!(status.last_error.is_none(), "{status:#?}");
}

/// WebAuthn is not supported yet; the message says what to use instead.
pub fn webauthn_unsupported(w: &World) {
    let text = failed(
        &w.login("webauthn", WEBAUTHN_PASSWORD, None),
        "login with only a WebAuthn key",
    );
    assert!(text.contains("not supported yet"), "{text}");
    assert!(
        text.contains("push") && text.contains("TOTP"),
        "names what would work: {text}"
    );

    let text = failed(
        &w.login("webauthn-key", WEBAUTHN_TOTP_PASSWORD, None),
        "login with mfa = webauthn",
    );
    assert!(text.contains("not supported yet"), "{text}");
    assert!(
        text.contains("mfa = \"totp\""),
        "names the other factor: {text}"
    );
    assert_logged_out(w, "webauthn");
}
