//! The human text of `samlctl`'s answers: the status table, the login and refresh
//! summaries, the role lists, the audit table. Pure functions of the daemon's report and the time, so that
//! the tests can pin the exact output.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use samld_client::timestamp;
use samld_config::RoleArn;
use samld_proto::{
    AccountState, AccountStatus, AuditEvent, AuditKind, Handout, IdpSessionState, IdpSessionStatus,
    LoginOutcome, ProcessInfo, RoleInfo, RoleStatus, StatusReport,
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

/// Whom the account signs in as: its identity when samld learnt it from a sign-in
/// (`provider = "saml"`), else the configured user.
fn user_of(account: &AccountStatus) -> String {
    account
        .identity
        .clone()
        .unwrap_or_else(|| account.username.clone())
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

    let session_header = if report.accounts.iter().all(|a| a.provider == "jumpcloud") {
        "JUMPCLOUD SESSION"
    } else {
        "IDP SESSION"
    };
    let mut rows = vec![
        [
            "ACCOUNT",
            "STATE",
            "USER",
            session_header,
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
                user_of(a),
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
                if first { user_of(a) } else { String::new() },
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
        .chain(report.accounts.iter().flat_map(|a| last_use_notes(a, now)))
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
    let all_jumpcloud = sessions.iter().all(|s| s.provider == "jumpcloud");
    let mut text = format!(
        "\n{} sign-ins:\n",
        if all_jumpcloud { "JumpCloud" } else { "IdP" }
    );
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

/// When each role was last handed out and to what, one line per role used:
/// `prod (Admin): last used 2m ago by terraform (pid 4711) through the helper`.
fn last_use_notes(a: &AccountStatus, now: SystemTime) -> Vec<String> {
    let names = role_names(a.roles.iter().map(|r| r.role_arn.as_str()));
    a.roles
        .iter()
        .zip(names)
        .filter_map(|(r, name)| {
            let used = r.last_used.as_ref()?;
            let when = timestamp::parse_rfc3339(&used.at).map_or_else(
                || format!("at {}", used.at),
                |t| timestamp::relative(t, now),
            );
            let by = used
                .by
                .as_ref()
                .map(|p| format!(" by {} (pid {})", p.name, p.pid))
                .unwrap_or_default();
            Some(format!(
                "{} ({name}): last used {when}{by} {}",
                a.name,
                handout_phrase(used.via)
            ))
        })
        .collect()
}

/// How credentials left, as the end of a sentence.
fn handout_phrase(via: Handout) -> &'static str {
    match via {
        Handout::Helper => "through the helper",
        Handout::ExecEndpoint => "through samlctl exec",
        Handout::Env => "through samlctl env",
        Handout::Console => "for the AWS console",
    }
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
        format!(
            "{}: the {} session has ended",
            a.name,
            idp_name(&a.provider)
        )
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
        note.push_str(&format!("; run: {}", login_command(a)));
    }
    Some(note)
}

/// What messages call an IdP: `JumpCloud`, or `IdP` for a generic SAML one.
fn idp_name(provider: &str) -> &'static str {
    if provider == "jumpcloud" {
        "JumpCloud"
    } else {
        "IdP"
    }
}

/// The command that signs the account in again.
fn login_command(a: &AccountStatus) -> String {
    if a.login == "browser" {
        format!("samlctl login {} --browser", a.name)
    } else {
        format!("samlctl login {}", a.name)
    }
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

/// How many events samld keeps, for the footer of `samlctl audit`.
const AUDIT_KEPT: &str = "1,000";

/// The column titles of `samlctl audit`.
const AUDIT_HEADER: [&str; 6] = ["TIME", "ACCOUNT", "ROLE", "WHAT", "FROM", "PROCESS"];

/// The longest error text shown in the FROM column; the JSON has it whole.
const AUDIT_ERROR_WIDTH: usize = 40;

/// How `samlctl audit` shows times: the local wall clock, with the date when it is not
/// today. `offset` gives the zone's offset from UTC at a time (the local zone outside tests).
pub(crate) struct Clock<'a> {
    /// Now, to tell today from other days.
    pub(crate) now: SystemTime,
    /// Seconds east of UTC at a given time.
    pub(crate) offset: &'a dyn Fn(SystemTime) -> i64,
}

impl Clock<'_> {
    fn show(&self, at: &str) -> String {
        let Some(t) = timestamp::parse_rfc3339(at) else {
            return at.to_owned();
        };
        let (date, time) = timestamp::wall_clock(t, (self.offset)(t));
        let (today, _) = timestamp::wall_clock(self.now, (self.offset)(self.now));
        if date == today {
            time
        } else {
            format!("{date} {time}")
        }
    }
}

/// The local zone's offset from UTC at `t`, in seconds east; 0 (UTC) when it cannot be read.
pub(crate) fn local_utc_offset(t: SystemTime) -> i64 {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| libc::time_t::try_from(d.as_secs()).unwrap_or(0));
    // SAFETY: `tm` is plain old data for which all zeroes is a valid value.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call; localtime_r is the reentrant form.
    let ok = unsafe { !libc::localtime_r(&secs, &mut tm).is_null() };
    // `c_long` is i32 on 32-bit targets.
    #[allow(clippy::useless_conversion)]
    let offset = i64::from(tm.tm_gmtoff);
    if ok { offset } else { 0 }
}

/// What `samlctl audit` asked for, for the sentences around the table.
pub(crate) struct AuditScope<'a> {
    /// Only this account.
    pub(crate) account: Option<&'a str>,
    /// Only the last this long, as the user wrote it (`1h`).
    pub(crate) since: Option<&'a str>,
    /// New events follow (`--follow`): no summary, since the window has no end.
    pub(crate) follow: bool,
}

impl AuditScope<'_> {
    fn window(&self) -> String {
        match self.since {
            Some(since) => format!("in the last {since}"),
            None => "in the kept record".into(),
        }
    }
}

/// The human `samlctl audit`: a table of the events, a summary of the hand-outs when one
/// account was asked for, and a footer when samld has dropped older events. No events give
/// a sentence instead of an empty table.
pub(crate) fn render_audit(
    events: &[AuditEvent],
    dropped: u64,
    scope: &AuditScope<'_>,
    clock: &Clock<'_>,
) -> String {
    let mut s = if events.is_empty() {
        let account = scope
            .account
            .map(|a| format!(" for {a}"))
            .unwrap_or_default();
        let wait = if scope.follow {
            "; waiting for new ones (Ctrl-C to stop)"
        } else {
            ""
        };
        format!("No audit events{account} {}{wait}.\n", scope.window())
    } else {
        let mut rows = vec![AUDIT_HEADER.map(String::from)];
        rows.extend(audit_rows(events, clock));
        let mut s = table(&rows);
        if let Some(account) = scope.account.filter(|_| !scope.follow) {
            s.push('\n');
            s.push_str(&audit_summary(account, events, scope));
        }
        s
    };
    s.push_str(&dropped_footer(dropped));
    s
}

/// The header line `samlctl audit --follow` prints before events that arrive one by one.
pub(crate) fn audit_header() -> String {
    table(&[AUDIT_HEADER.map(String::from)])
}

/// One event as a line of the table, for `samlctl audit --follow` (columns are not aligned
/// with the lines before: nobody knows the widths of events to come).
pub(crate) fn render_audit_line(event: &AuditEvent, clock: &Clock<'_>) -> String {
    let [row] = <[[String; 6]; 1]>::try_from(audit_rows(std::slice::from_ref(event), clock))
        .expect("one row per event");
    let mut line = row.join("  ");
    line.push('\n');
    line
}

/// "N older events were dropped", or nothing.
pub(crate) fn dropped_footer(dropped: u64) -> String {
    match dropped {
        0 => String::new(),
        1 => format!("1 older event was dropped (samld keeps the last {AUDIT_KEPT})\n"),
        n => format!("{n} older events were dropped (samld keeps the last {AUDIT_KEPT})\n"),
    }
}

fn audit_rows(events: &[AuditEvent], clock: &Clock<'_>) -> Vec<[String; 6]> {
    // Short role names over the distinct roles of the list, so that two `Admin`s of
    // different AWS accounts are told apart.
    let mut arns: Vec<&str> = events
        .iter()
        .filter_map(|e| e.role_arn.as_deref())
        .collect();
    arns.sort_unstable();
    arns.dedup();
    let names: BTreeMap<&str, String> = arns
        .iter()
        .copied()
        .zip(role_names(arns.iter().copied()))
        .collect();
    events
        .iter()
        .map(|e| {
            let role = e
                .role_arn
                .as_deref()
                .and_then(|arn| names.get(arn).cloned())
                .unwrap_or_else(|| "-".into());
            let what = match (e.kind, e.via) {
                (kind, Some(via)) => format!("{} ({})", kind.as_str(), via.as_str()),
                (kind, None) => kind.as_str().to_owned(),
            };
            let from = match (&e.error, e.source) {
                (Some(error), _) => format!("error: {}", shorten(error, AUDIT_ERROR_WIDTH)),
                (None, Some(source)) => source.as_str().to_owned(),
                (None, None) => "-".into(),
            };
            [
                clock.show(&e.at),
                e.account.clone().unwrap_or_else(|| "-".into()),
                role,
                what,
                from,
                process_chain(e),
            ]
        })
        .collect()
}

/// `aws (4711) ← terraform (4700) ← zsh (12)`: the process that asked, then its ancestors.
fn process_chain(e: &AuditEvent) -> String {
    let chain: Vec<String> = e
        .process
        .iter()
        .chain(&e.ancestry)
        .map(|p| format!("{} ({})", p.name, p.pid))
        .collect();
    if chain.is_empty() {
        "-".into()
    } else {
        chain.join(" ← ")
    }
}

/// The program a hand-out went to: for `samld-helper`, the tool that ran it.
fn program(e: &AuditEvent) -> Option<&ProcessInfo> {
    match e.via {
        Some(Handout::Helper) => e.ancestry.first().or(e.process.as_ref()),
        _ => e.process.as_ref(),
    }
}

/// `prod: 14 hand-outs in the last 1h: terraform 9, aws 5`, and the failures.
fn audit_summary(account: &str, events: &[AuditEvent], scope: &AuditScope<'_>) -> String {
    let handouts = events.iter().filter(|e| e.kind == AuditKind::Handout);
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    let (mut total, mut failed) = (0usize, 0usize);
    for e in handouts {
        if e.error.is_some() {
            failed += 1;
            continue;
        }
        total += 1;
        *counts
            .entry(program(e).map_or("unknown", |p| p.name.as_str()))
            .or_default() += 1;
    }
    let noun = if total == 1 { "hand-out" } else { "hand-outs" };
    let mut s = format!("{account}: {total} {noun} {}", scope.window());
    if total > 0 {
        let mut by: Vec<(&str, usize)> = counts.into_iter().collect();
        // Most first; ties in name order (the map's).
        by.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
        let by: Vec<String> = by.iter().map(|(name, n)| format!("{name} {n}")).collect();
        s.push_str(&format!(": {}", by.join(", ")));
    }
    if failed > 0 {
        s.push_str(&format!("; {failed} failed"));
    }
    s.push('\n');
    s
}

/// `text` cut to `max` characters with an ellipsis, on one line.
fn shorten(text: &str, max: usize) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= max {
        return one_line;
    }
    let mut cut: String = one_line.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
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
mod tests;
