//! The human text of `samlctl`'s answers: the status table, the login and refresh
//! summaries, the role lists. Pure functions of the daemon's report and the time, so that
//! the tests can pin the exact output.

use std::time::SystemTime;

use samld_client::timestamp;
use samld_config::RoleArn;
use samld_proto::{
    AccountState, AccountStatus, IdpSessionState, IdpSessionStatus, LoginOutcome, RoleInfo,
    RoleStatus, StatusReport,
};

/// The answer to `samlctl login`: who is logged in, and the roles.
pub(crate) fn render_login(outcome: &LoginOutcome) -> String {
    let mut s = format!("Logged in to {} as {}", outcome.account, outcome.username);
    if outcome.reused_session {
        s.push_str(" (session reused, no password needed)");
    }
    s.push('\n');
    if !outcome.roles.is_empty() {
        s.push_str("Roles:\n");
        for line in render_roles(&outcome.roles).lines() {
            s.push_str("  ");
            s.push_str(line);
            s.push('\n');
        }
    }
    s
}

/// The role ARNs, the default one marked (`samlctl roles`).
pub(crate) fn render_roles(roles: &[RoleInfo]) -> String {
    if roles.is_empty() {
        return "No roles known yet: log in first.\n".into();
    }
    roles
        .iter()
        .map(|r| {
            let mark = if r.default { " (default)" } else { "" };
            format!("{}{mark}\n", r.role_arn)
        })
        .collect()
}

/// One line per role: when its credentials expire and are refreshed next (`samlctl refresh`).
pub(crate) fn render_role_expiry(roles: &[RoleStatus], now: SystemTime) -> String {
    let names = role_names(roles.iter().map(|r| r.role_arn.as_str()));
    let width = names.iter().map(|n| n.len()).max().unwrap_or(0);
    roles
        .iter()
        .zip(&names)
        .map(|(r, name)| {
            format!(
                "  {name:<width$}  expires {}, next refresh {}\n",
                expiry_text(r.expires_at.as_deref(), now),
                refresh_text(r.next_refresh_at.as_deref(), now)
            )
        })
        .collect()
}

/// The human `samlctl status`.
pub(crate) fn render_status(report: &StatusReport, now: SystemTime) -> String {
    let d = &report.daemon;
    let mut s = format!("samld {} (pid {})", d.version, d.pid);
    if let Some(started) = timestamp::parse_rfc3339(&d.started_at)
        && let Ok(up) = now.duration_since(started)
    {
        s.push_str(&format!(", up {}", timestamp::human_duration(up)));
    }
    s.push_str(&format!("\nconfig: {}\n", d.config_path));
    if let Some(err) = &d.config_error {
        s.push_str(&format!(
            "config error: {err} (the last valid configuration stays in force)\n"
        ));
    }
    s.push('\n');
    if report.accounts.is_empty() {
        s.push_str(&format!("No accounts: add one to {}\n", d.config_path));
        return s;
    }

    let mut rows = vec![
        [
            "ACCOUNT",
            "STATE",
            "USER",
            "JUMPCLOUD SESSION",
            "ROLE",
            "EXPIRES",
            "REFRESH",
        ]
        .map(String::from),
    ];
    for a in &report.accounts {
        let names = role_names(a.roles.iter().map(|r| r.role_arn.as_str()));
        let session = session_text(a, now);
        if a.roles.is_empty() {
            rows.push([
                a.name.clone(),
                a.state.to_string(),
                a.username.clone(),
                session.clone(),
                "-".into(),
                "-".into(),
                "-".into(),
            ]);
        }
        for (i, (r, name)) in a.roles.iter().zip(names).enumerate() {
            let first = i == 0;
            let role = if r.default {
                format!("{name} (default)")
            } else {
                name
            };
            rows.push([
                if first { a.name.clone() } else { String::new() },
                if first {
                    a.state.to_string()
                } else {
                    String::new()
                },
                if first {
                    a.username.clone()
                } else {
                    String::new()
                },
                if first {
                    session.clone()
                } else {
                    String::new()
                },
                role,
                expiry_text(r.expires_at.as_deref(), now),
                refresh_text(r.next_refresh_at.as_deref(), now),
            ]);
        }
    }
    s.push_str(&table(&rows));

    let notes: Vec<String> = report
        .accounts
        .iter()
        .filter_map(|a| account_note(a, now))
        .chain(report.accounts.iter().flat_map(role_warnings))
        .collect();
    if !notes.is_empty() {
        s.push('\n');
        for n in notes {
            s.push_str(&n);
            s.push('\n');
        }
    }
    s.push_str(&sessions_text(&report.sessions, now));
    s
}

/// The JumpCloud sign-ins behind the accounts, each once with the accounts it serves (one
/// login serves them all, and a logout of one keeps it for the others); those never signed
/// in are left out unless a person is needed.
fn sessions_text(sessions: &[IdpSessionStatus], now: SystemTime) -> String {
    let worth_a_line =
        |s: &&IdpSessionStatus| s.state != IdpSessionState::None || s.reason.is_some();
    if !sessions.iter().any(|s| worth_a_line(&s)) {
        return String::new();
    }
    let mut text = String::from("\nJumpCloud sign-ins:\n");
    for session in sessions.iter().filter(worth_a_line) {
        let age = session
            .session
            .as_ref()
            .and_then(|s| timestamp::parse_rfc3339(&s.established_at))
            .and_then(|t| now.duration_since(t).ok())
            .map(|age| format!(" for {}", timestamp::human_duration(age)))
            .unwrap_or_default();
        text.push_str(&format!(
            "  {} ({}): {}{age}, serves {}",
            session.username,
            session.console_url,
            session.state.as_str(),
            session.accounts.join(", ")
        ));
        if let Some(reason) = &session.reason {
            text.push_str(&format!("; {reason}"));
        }
        text.push('\n');
    }
    text
}

/// Warnings about credentials the daemon holds (STS handing out credentials too short to
/// keep fresh as configured), one line each.
fn role_warnings(a: &AccountStatus) -> Vec<String> {
    let names = role_names(a.roles.iter().map(|r| r.role_arn.as_str()));
    a.roles
        .iter()
        .zip(names)
        .filter_map(|(r, name)| {
            r.warning
                .as_ref()
                .map(|w| format!("{} ({name}): warning: {w}", a.name))
        })
        .collect()
}

/// The JumpCloud session's age and when JumpCloud last confirmed it, e.g. `2h 5m, seen 3m ago`.
fn session_text(a: &AccountStatus, now: SystemTime) -> String {
    let Some(session) = &a.session else {
        return "-".into();
    };
    let age = timestamp::parse_rfc3339(&session.established_at)
        .and_then(|t| now.duration_since(t).ok())
        .map(timestamp::human_duration);
    let seen =
        timestamp::parse_rfc3339(&session.last_verified_at).map(|t| timestamp::relative(t, now));
    match (age, seen) {
        (Some(age), Some(seen)) => format!("{age}, seen {seen}"),
        (Some(age), None) => age,
        _ => "-".into(),
    }
}

/// What the user should know about an account beyond the table: its last error, or what
/// to do.
fn account_note(a: &AccountStatus, now: SystemTime) -> Option<String> {
    let mut note = if let Some(e) = &a.last_error {
        let when = timestamp::parse_rfc3339(&e.at)
            .map(|t| format!(" {}", timestamp::relative(t, now)))
            .unwrap_or_default();
        format!("{}: last error{when} ({}): {}", a.name, e.code, e.message)
    } else if a.state == AccountState::NeedsLogin {
        format!("{}: the JumpCloud session has ended", a.name)
    } else {
        return None;
    };
    if let Some(retry) = a
        .next_retry_at
        .as_deref()
        .and_then(timestamp::parse_rfc3339)
    {
        note.push_str(&format!("; next retry {}", timestamp::relative(retry, now)));
    }
    if a.state == AccountState::NeedsLogin {
        note.push_str(&format!("; run: samlctl login {}", a.name));
    }
    Some(note)
}

fn expiry_text(at: Option<&str>, now: SystemTime) -> String {
    match at {
        None => "-".into(),
        Some(s) => match timestamp::parse_rfc3339(s) {
            Some(t) if t <= now => format!("expired {}", timestamp::relative(t, now)),
            Some(t) => timestamp::relative(t, now),
            None => s.to_owned(),
        },
    }
}

fn refresh_text(at: Option<&str>, now: SystemTime) -> String {
    match at {
        None => "-".into(),
        Some(s) => match timestamp::parse_rfc3339(s) {
            Some(t) if t <= now => "due".into(),
            Some(t) => timestamp::relative(t, now),
            None => s.to_owned(),
        },
    }
}

/// Short names for role ARNs: the role name, qualified with the AWS account id when two
/// roles of the list share a name. Anything that is not a role ARN is shown whole.
fn role_names<'a>(arns: impl Iterator<Item = &'a str>) -> Vec<String> {
    let roles: Vec<(&str, Option<RoleArn>)> = arns.map(|arn| (arn, arn.parse().ok())).collect();
    let names: Vec<&str> = roles
        .iter()
        .map(|(arn, role)| role.as_ref().map_or(*arn, RoleArn::name))
        .collect();
    roles
        .iter()
        .zip(&names)
        .map(|((_, role), &name)| {
            let clash = names.iter().filter(|&&other| other == name).count() > 1;
            match role {
                Some(role) if clash => format!("{}/{name}", role.account_id()),
                _ => name.to_owned(),
            }
        })
        .collect()
}

/// Left-aligned columns separated by two spaces, without trailing blanks.
fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut s = String::new();
    for row in rows {
        let mut line = String::new();
        for (cell, w) in row.iter().zip(widths) {
            line.push_str(&format!("{cell:<w$}  "));
        }
        s.push_str(line.trim_end());
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use samld_proto::{DaemonInfo, ErrorCode, ErrorInfo, SessionInfo};
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn role_names_are_short_unless_ambiguous() {
        let names = role_names(
            [
                "arn:aws:iam::111111111111:role/Admin",
                "arn:aws:iam::222222222222:role/Admin",
                "arn:aws:iam::111111111111:role/team/ReadOnly",
                "not-an-arn",
            ]
            .into_iter(),
        );
        assert_eq!(
            names,
            [
                "111111111111/Admin",
                "222222222222/Admin",
                "ReadOnly",
                "not-an-arn"
            ]
        );
        // What the daemon's RoleArn would refuse (an account of one digit) is not guessed at.
        assert_eq!(
            role_names(["arn:aws:iam::1:role/Admin"].into_iter()),
            ["arn:aws:iam::1:role/Admin"]
        );
    }

    fn t(secs: u64) -> String {
        timestamp::format_rfc3339(UNIX_EPOCH + Duration::from_secs(secs))
    }

    #[test]
    fn status_table_shows_states_roles_and_relative_times() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let base = 1_800_000_000;
        let account = |name: &str, state| AccountStatus {
            name: name.into(),
            state,
            provider: "jumpcloud".into(),
            username: format!("{name}@example.com"),
            url: "https://sso.jumpcloud.com/saml2/x".into(),
            region: None,
            default_role: None,
            session: None,
            roles: vec![],
            last_error: None,
            next_retry_at: None,
        };
        let mut prod = account("prod", AccountState::Active);
        prod.session = Some(SessionInfo {
            established_at: t(base - 62 * 60),
            last_verified_at: t(base - 120),
        });
        prod.roles = vec![
            RoleStatus {
                role_arn: "arn:aws:iam::111111111111:role/Admin".into(),
                assumed_role_arn: None,
                expires_at: Some(t(base + 58 * 60)),
                next_refresh_at: Some(t(base + 38 * 60)),
                default: true,
                warning: None,
                last_used: None,
            },
            RoleStatus {
                role_arn: "arn:aws:iam::111111111111:role/ReadOnly".into(),
                assumed_role_arn: None,
                expires_at: Some(t(base - 120)),
                next_refresh_at: Some(t(base - 60)),
                default: false,
                warning: Some("STS issued these credentials with 5s of life".into()),
                last_used: None,
            },
        ];
        let sign_in =
            |username: &str, state, accounts: &[&str], reason: Option<&str>| IdpSessionStatus {
                provider: "jumpcloud".into(),
                console_url: "https://console.jumpcloud.com".into(),
                username: username.into(),
                state,
                session: (state == IdpSessionState::Live).then(|| SessionInfo {
                    established_at: t(base - 62 * 60),
                    last_verified_at: t(base - 120),
                }),
                accounts: accounts.iter().map(|a| a.to_string()).collect(),
                reason: reason.map(String::from),
            };
        let mut stage = account("stage", AccountState::NeedsLogin);
        stage.last_error = Some(ErrorInfo {
            code: ErrorCode::NeedsLogin,
            message: "the JumpCloud session expired".into(),
            at: t(base - 300),
        });
        let report = StatusReport {
            daemon: DaemonInfo {
                version: "0.1.0".into(),
                protocol_version: 1,
                pid: 77,
                config_path: "/c.toml".into(),
                started_at: t(base - 3 * 3600 - 120),
                config_error: Some("line 3, column 1: unknown key `rol`".into()),
            },
            accounts: vec![prod, stage],
            sessions: vec![
                sign_in(
                    "prod@example.com",
                    IdpSessionState::Live,
                    &["dev", "prod"],
                    None,
                ),
                sign_in("solo@example.com", IdpSessionState::Live, &["solo"], None),
                sign_in("idle@example.com", IdpSessionState::None, &["idle"], None),
                sign_in(
                    "stage@example.com",
                    IdpSessionState::NeedsLogin,
                    &["stage"],
                    Some("the push was denied; run: samlctl login stage"),
                ),
            ],
        };
        let expected = "\
samld 0.1.0 (pid 77), up 3h 2m
config: /c.toml
config error: line 3, column 1: unknown key `rol` (the last valid configuration stays in force)

ACCOUNT  STATE        USER               JUMPCLOUD SESSION   ROLE             EXPIRES         REFRESH
prod     active       prod@example.com   1h 2m, seen 2m ago  Admin (default)  in 58m          in 38m
                                                             ReadOnly         expired 2m ago  due
stage    needs-login  stage@example.com  -                   -                -               -

stage: last error 5m ago (needs-login): the JumpCloud session expired; run: samlctl login stage
prod (ReadOnly): warning: STS issued these credentials with 5s of life

JumpCloud sign-ins:
  prod@example.com (https://console.jumpcloud.com): live for 1h 2m, serves dev, prod
  solo@example.com (https://console.jumpcloud.com): live for 1h 2m, serves solo
  stage@example.com (https://console.jumpcloud.com): needs-login, serves stage; the push was denied; run: samlctl login stage
";
        assert_eq!(render_status(&report, now), expected);
    }

    #[test]
    fn login_message_says_when_no_password_was_needed() {
        let mut o = LoginOutcome {
            account: "prod".into(),
            username: "a@b".into(),
            reused_session: true,
            roles: vec![RoleInfo {
                role_arn: "arn:aws:iam::1:role/A".into(),
                principal_arn: "p".into(),
                default: true,
            }],
        };
        assert_eq!(
            render_login(&o),
            "Logged in to prod as a@b (session reused, no password needed)\nRoles:\n  arn:aws:iam::1:role/A (default)\n"
        );
        o.reused_session = false;
        assert!(render_login(&o).starts_with("Logged in to prod as a@b\n"));
    }
}
