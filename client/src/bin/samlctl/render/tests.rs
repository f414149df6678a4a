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

/// An account of `status_table_shows_states_roles_and_relative_times`, in `state`, with
/// nothing else to show.
fn status_account(name: &str, state: AccountState) -> AccountStatus {
    AccountStatus {
        login: "api".into(),
        name: name.into(),
        state,
        provider: "jumpcloud".into(),
        username: format!("{name}@example.com"),
        identity: None,
        url: "https://sso.jumpcloud.com/saml2/x".into(),
        region: None,
        default_role: None,
        session: None,
        roles: vec![],
        last_error: None,
        next_retry_at: None,
    }
}

/// The status test's active account: a JumpCloud session, a default role and a role whose
/// credentials expired, with a warning and its last use.
fn status_prod(base: u64) -> AccountStatus {
    let mut prod = status_account("prod", AccountState::Active);
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
            last_used: Some(samld_proto::LastUse {
                at: t(base - 120),
                via: Handout::Helper,
                by: Some(ProcessInfo {
                    pid: 4711,
                    name: "terraform".into(),
                    exe: Some("/usr/bin/terraform".into()),
                    command_line: Some("terraform apply".into()),
                }),
            }),
        },
    ];
    prod
}

/// A JumpCloud sign-in of the status test, serving `accounts`.
fn status_sign_in(
    base: u64,
    username: &str,
    state: IdpSessionState,
    accounts: &[&str],
    reason: Option<&str>,
) -> IdpSessionStatus {
    IdpSessionStatus {
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
    }
}

#[test]
fn status_table_shows_states_roles_and_relative_times() {
    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let base = 1_800_000_000;
    let sign_in = |username: &str, state, accounts: &[&str], reason: Option<&str>| {
        status_sign_in(base, username, state, accounts, reason)
    };
    let mut stage = status_account("stage", AccountState::NeedsLogin);
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
        accounts: vec![status_prod(base), stage],
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
prod (ReadOnly): last used 2m ago by terraform (pid 4711) through the helper

JumpCloud sign-ins:
  prod@example.com (https://console.jumpcloud.com): live for 1h 2m, serves dev, prod
  solo@example.com (https://console.jumpcloud.com): live for 1h 2m, serves solo
  stage@example.com (https://console.jumpcloud.com): needs-login, serves stage; the push was denied; run: samlctl login stage
";
    assert_eq!(render_status(&report, now), expected);
}

#[test]
fn a_browser_account_at_any_idp_is_told_to_use_the_browser() {
    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let report = StatusReport {
        daemon: DaemonInfo {
            version: "0.1.0".into(),
            protocol_version: 1,
            pid: 77,
            config_path: "/c.toml".into(),
            started_at: t(1_800_000_000 - 60),
            config_error: None,
        },
        accounts: vec![AccountStatus {
            login: "browser".into(),
            name: "okta".into(),
            state: AccountState::NeedsLogin,
            provider: "saml".into(),
            username: String::new(),
            identity: Some("dana@acme.com".into()),
            url: "https://acme.okta.com/home/amazon_aws/0oa1/272".into(),
            region: None,
            default_role: None,
            session: None,
            roles: vec![],
            last_error: None,
            next_retry_at: None,
        }],
        sessions: vec![IdpSessionStatus {
            provider: "saml".into(),
            console_url: "https://acme.okta.com".into(),
            username: String::new(),
            state: IdpSessionState::Ended,
            session: None,
            accounts: vec!["okta".into()],
            reason: None,
        }],
    };
    let text = render_status(&report, now);
    // The user is the subject of the account's first sign-in, which samld learnt.
    assert!(
        text.contains("ACCOUNT  STATE        USER           IDP SESSION")
            && text.contains("okta     needs-login  dana@acme.com"),
        "{text}"
    );
    assert!(
        text.contains("okta: the IdP session has ended; run: samlctl login okta --browser\n"),
        "{text}"
    );
    assert!(text.contains("\nIdP sign-ins:\n"), "{text}");
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

fn process(pid: u32, name: &str) -> ProcessInfo {
    ProcessInfo {
        pid,
        name: name.into(),
        exe: Some(format!("/usr/bin/{name}")),
        command_line: Some(name.into()),
    }
}

/// A successful hand-out to `chain` (the asking process, then its ancestors).
fn handout(seq: u64, at: &str, via: Handout, chain: &[(u32, &str)]) -> AuditEvent {
    let mut chain = chain.iter().map(|&(pid, name)| process(pid, name));
    AuditEvent {
        seq,
        at: at.into(),
        kind: AuditKind::Handout,
        account: Some("prod".into()),
        role_arn: Some("arn:aws:iam::111111111111:role/Admin".into()),
        via: Some(via),
        source: Some(samld_proto::CredentialSource::Memory),
        error: None,
        process: chain.next(),
        ancestry: chain.collect(),
    }
}

fn audit_events() -> Vec<AuditEvent> {
    let helper = [
        (4711, "samld-helper"),
        (4710, "aws"),
        (4700, "terraform"),
        (12, "zsh"),
    ];
    let mut failed = handout(3, "2026-11-28T11:40:00Z", Handout::Helper, &helper[..2]);
    failed.source = None;
    failed.error =
        Some("prod is not logged in; run: samlctl login prod (the JumpCloud session ended)".into());
    let mut refreshed = handout(4, "2026-11-28T11:50:00Z", Handout::Env, &[(900, "samlctl")]);
    refreshed.source = Some(samld_proto::CredentialSource::Refresh);
    vec![
        AuditEvent {
            seq: 1,
            at: "2026-11-27T22:59:59Z".into(),
            kind: AuditKind::Login,
            account: Some("prod".into()),
            role_arn: None,
            via: None,
            source: None,
            error: None,
            process: Some(process(800, "samlctl")),
            ancestry: vec![process(12, "zsh")],
        },
        handout(2, "2026-11-28T11:30:00Z", Handout::Helper, &helper),
        failed,
        refreshed,
        handout(
            5,
            "2026-11-28T11:59:00Z",
            Handout::Helper,
            &[(4720, "samld-helper"), (4719, "aws")],
        ),
        handout(
            6,
            "2026-11-28T11:59:30Z",
            Handout::Helper,
            &[(4730, "samld-helper"), (4729, "terraform")],
        ),
    ]
}

/// Noon UTC on 2026-11-28, shown one hour east of UTC.
fn audit_clock() -> Clock<'static> {
    Clock {
        now: timestamp::parse_rfc3339("2026-11-28T12:00:00Z").unwrap(),
        offset: &|_| 3600,
    }
}

#[test]
fn audit_table_shows_local_times_ancestry_errors_a_summary_and_the_dropped_footer() {
    let scope = AuditScope {
        account: Some("prod"),
        since: Some("1d"),
        follow: false,
    };
    let expected = "\
TIME                 ACCOUNT  ROLE   WHAT              FROM                                             PROCESS
2026-11-27 23:59:59  prod     -      login             -                                                samlctl (800) ← zsh (12)
12:30:00             prod     Admin  handout (helper)  memory                                           samld-helper (4711) ← aws (4710) ← terraform (4700) ← zsh (12)
12:40:00             prod     Admin  handout (helper)  error: prod is not logged in; run: samlctl log…  samld-helper (4711) ← aws (4710)
12:50:00             prod     Admin  handout (env)     refresh                                          samlctl (900)
12:59:00             prod     Admin  handout (helper)  memory                                           samld-helper (4720) ← aws (4719)
12:59:30             prod     Admin  handout (helper)  memory                                           samld-helper (4730) ← terraform (4729)

prod: 4 hand-outs in the last 1d: aws 2, samlctl 1, terraform 1; 1 failed
3 older events were dropped (samld keeps the last 1,000)
";
    assert_eq!(
        render_audit(&audit_events(), 3, &scope, &audit_clock()),
        expected
    );
}

#[test]
fn audit_without_events_says_so_and_follow_drops_the_summary() {
    let mut scope = AuditScope {
        account: Some("prod"),
        since: None,
        follow: false,
    };
    assert_eq!(
        render_audit(&[], 0, &scope, &audit_clock()),
        "No audit events for prod in the kept record.\n"
    );
    scope.follow = true;
    scope.since = Some("30m");
    assert_eq!(
        render_audit(&[], 1, &scope, &audit_clock()),
        "No audit events for prod in the last 30m; waiting for new ones (Ctrl-C to stop).\n\
             1 older event was dropped (samld keeps the last 1,000)\n"
    );
    let events = audit_events();
    let followed = render_audit(&events[1..2], 0, &scope, &audit_clock());
    assert!(!followed.contains("hand-outs"), "{followed}");
    assert_eq!(
        render_audit_line(&events[4], &audit_clock()),
        "12:59:00  prod  Admin  handout (helper)  memory  samld-helper (4720) ← aws (4719)\n"
    );
}

#[test]
fn audit_summary_counts_the_tool_behind_the_helper_most_first() {
    let events = audit_events();
    let scope = AuditScope {
        account: Some("prod"),
        since: None,
        follow: false,
    };
    assert_eq!(
        audit_summary("prod", &events[4..], &scope),
        "prod: 2 hand-outs in the kept record: aws 1, terraform 1\n"
    );
    assert_eq!(
        audit_summary("prod", &events[..1], &scope),
        "prod: 0 hand-outs in the kept record\n"
    );
}

#[test]
fn audit_json_is_the_event_as_serialized() {
    let event = &audit_events()[2];
    let line = serde_json::to_string(event).unwrap();
    assert_eq!(
        serde_json::from_str::<AuditEvent>(&line).unwrap(),
        *event,
        "{line}"
    );
    assert!(line.starts_with(r#"{"seq":3,"at":"2026-11-28T11:40:00Z","kind":"handout""#));
    assert!(!line.contains('\n'));
}
