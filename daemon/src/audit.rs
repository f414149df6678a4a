//! The audit: who got which credentials, and what samld did to get them, kept in memory.
//!
//! Every hand-out (to `samld-helper`, the exec endpoint, `samlctl env`, the console) and
//! every login, logout, refresh and unattended trip is one [`AuditEvent`] in a bounded ring,
//! served by `samlctl audit` ([`samld_proto::Request::Audit`]). An event never holds a
//! secret: no key, token, password, code or cookie reaches [`Audit::record`], only names,
//! ARNs, error messages (which never hold secrets either) and masked command lines.
//!
//! Nothing is written to disk unless the config names an `audit_log` file
//! ([`log_file`]); otherwise, like the credentials, the record ends with the daemon.

pub mod log_file;
pub mod process;
#[cfg(test)]
mod served;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use samld_proto::{
    AuditEvent, AuditKind, CredentialSource, Credentials, Handout, LastUse, ProcessInfo, WireError,
};
use time::OffsetDateTime;
use tokio::sync::broadcast;

use crate::clock::{Clock, rfc3339};

/// How many events the daemon keeps: hours of use, since an AWS SDK asks `samld-helper` once
/// per credential lifetime, not per API call.
///
/// An event is typically 0.5–1.5 KiB (an account, an ARN, a time, the process and up to four
/// parents with bounded command lines: with longer bounds, 10,500 helper hand-outs from a
/// shell loop grew the release daemon's RSS by 14.5 MiB, about 1.4 KiB each); the worst case
/// is about [`process::COMMAND_LINE_LIMIT`] + 4 × [`process::ANCESTOR_COMMAND_LINE_LIMIT`] +
/// 5 × [`process::EXE_LIMIT`] plus names, under 3 KiB. So the ring holds about 1 MB in
/// practice and never more than about 3 MB, which keeps the idle daemon under its 15 MB
/// target after a thousand hand-outs.
pub const DEFAULT_CAPACITY: usize = 1_000;

/// How many events a slow `samlctl audit --follow` may fall behind before it misses some.
const FOLLOW_BUFFER: usize = 256;

/// What happened, as the caller knows it; [`Audit::record`] adds the number and time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// What happened.
    pub kind: AuditKind,
    /// The account it concerns.
    pub account: Option<String>,
    /// The role, for a hand-out or a trip.
    pub role_arn: Option<String>,
    /// How credentials left, for a hand-out.
    pub via: Option<Handout>,
    /// Where they came from, for a hand-out that succeeded.
    pub source: Option<CredentialSource>,
    /// Why it failed (a [`samld_proto::WireError`] message, never a secret).
    pub error: Option<String>,
    /// The process that asked.
    pub process: Option<ProcessInfo>,
    /// Its parents, nearest first.
    pub ancestry: Vec<ProcessInfo>,
}

impl Record {
    /// An event of `kind` for `account`, with nothing else known yet.
    pub fn new(kind: AuditKind, account: Option<&str>) -> Self {
        Self {
            kind,
            account: account.map(str::to_owned),
            role_arn: None,
            via: None,
            source: None,
            error: None,
            process: None,
            ancestry: Vec::new(),
        }
    }

    /// The record of one hand-out `via` for `account`. Every path that hands credentials out
    /// (the helper and `samlctl env`, the console, the exec endpoint) builds its record here,
    /// so that all of them tell the same things: when credentials left, their role and
    /// source; when none did, the role asked for; and when the request failed, why.
    pub fn handout(
        via: Handout,
        account: &str,
        asked_role: Option<&str>,
        handed: Option<Handed<'_>>,
        error: Option<&str>,
    ) -> Self {
        Self {
            via: Some(via),
            role_arn: handed.map(|h| h.role_arn).or(asked_role).map(str::to_owned),
            source: handed.map(|h| h.source),
            error: error.map(str::to_owned),
            ..Self::new(AuditKind::Handout, Some(account))
        }
    }

    /// [`Record::handout`] from the result of a request for credentials.
    pub fn handout_result(
        via: Handout,
        account: &str,
        asked_role: Option<&str>,
        result: &Result<(Credentials, CredentialSource), WireError>,
    ) -> Self {
        let handed = result.as_ref().ok().map(|(creds, source)| Handed {
            role_arn: &creds.role_arn,
            source: *source,
        });
        let error = result.as_ref().err().map(|e| e.message.as_str());
        Self::handout(via, account, asked_role, handed, error)
    }

    /// Marks a hand-out as failed after its credentials were found but before they left:
    /// the role stays, the source goes.
    pub fn not_handed_out(&mut self, error: &str) {
        self.source = None;
        self.error = Some(error.to_owned());
    }

    /// Sets the outcome: the error's message on failure.
    pub fn outcome<T>(mut self, result: &Result<T, samld_proto::WireError>) -> Self {
        self.error = result.as_ref().err().map(|e| e.message.clone());
        self
    }
}

/// Credentials that left samld in a hand-out: their role, and where they came from.
#[derive(Debug, Clone, Copy)]
pub struct Handed<'a> {
    /// The role whose credentials left.
    pub role_arn: &'a str,
    /// Memory, a refresh or a login.
    pub source: CredentialSource,
}

struct Inner {
    /// Oldest first, each with its time for `since` queries.
    events: VecDeque<(OffsetDateTime, AuditEvent)>,
    next_seq: u64,
    dropped: u64,
    /// The last successful hand-out per (account, role ARN), for `samlctl status`.
    last_use: HashMap<(String, String), LastUse>,
}

/// The daemon's bounded, in-memory record of hand-outs and trips.
pub struct Audit {
    clock: Arc<dyn Clock>,
    capacity: usize,
    inner: Mutex<Inner>,
    follow: broadcast::Sender<AuditEvent>,
    /// The `audit_log` file, when the config names one.
    file: Mutex<Option<log_file::LogFile>>,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl Audit {
    /// A record of at most `capacity` events (at least one), timed by `clock`.
    pub fn new(clock: Arc<dyn Clock>, capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            clock,
            capacity,
            inner: Mutex::new(Inner {
                events: VecDeque::with_capacity(capacity.min(1024)),
                next_seq: 1,
                dropped: 0,
                last_use: HashMap::new(),
            }),
            follow: broadcast::channel(FOLLOW_BUFFER).0,
            file: Mutex::new(None),
        }
    }

    /// How many events are kept at most.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Only bookkeeping happens under the lock; a panic there leaves consistent data.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds an event, numbered and timed now, dropping the oldest when full, and passes it to
    /// every follower. Returns it as recorded.
    pub fn record(&self, record: Record) -> AuditEvent {
        let now = self.clock.now();
        let at = rfc3339(now);
        let mut inner = self.lock();
        let seq = inner.next_seq;
        inner.next_seq += 1;
        let event = AuditEvent {
            seq,
            at: at.clone(),
            kind: record.kind,
            account: record.account,
            role_arn: record.role_arn,
            via: record.via,
            source: record.source,
            error: record.error,
            process: record.process,
            ancestry: record.ancestry,
        };
        if event.kind == AuditKind::Handout
            && event.error.is_none()
            && let (Some(account), Some(role_arn), Some(via)) =
                (&event.account, &event.role_arn, event.via)
        {
            // For the helper, the process is samld-helper itself: the tool that ran it
            // (its parent) is what the person wants to see.
            let by = match via {
                Handout::Helper => event.ancestry.first().or(event.process.as_ref()),
                _ => event.process.as_ref(),
            };
            inner.last_use.insert(
                (account.clone(), role_arn.clone()),
                LastUse {
                    at,
                    via,
                    by: by.cloned(),
                },
            );
        }
        while inner.events.len() >= self.capacity {
            inner.events.pop_front();
            inner.dropped += 1;
        }
        inner.events.push_back((now, event.clone()));
        // Sent under the lock so that followers see events in `seq` order. No receiver is
        // not an error: nobody follows.
        let _ = self.follow.send(event.clone());
        drop(inner);
        self.append_to_file(&event);
        event
    }

    /// Writes events to `path` from now on (`audit_log` in the config), or to no file with
    /// `None`. A file that cannot be used is reported in the log and leaves the audit in
    /// memory only.
    pub fn set_log_file(&self, path: Option<&std::path::Path>) {
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if file.as_ref().map(|f| f.path()) == path {
            return;
        }
        *file = path.and_then(|path| match log_file::LogFile::open(path) {
            Ok(opened) => {
                tracing::info!(file = %path.display(), "writing the audit to a file too");
                Some(opened)
            }
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot write the audit to this file; it stays in memory only");
                None
            }
        });
    }

    fn append_to_file(&self, event: &AuditEvent) {
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(log) = file.as_mut()
            && let Err(e) = log.append(event)
        {
            tracing::warn!(file = %log.path().display(), error = %e, "cannot write to the audit file; it stays in memory only");
            *file = None;
        }
    }

    /// The events kept for `account` (all when `None`) of the last `since_secs` seconds (all
    /// kept when `None`), oldest first, and how many events were dropped since the start.
    pub fn query(&self, account: Option<&str>, since_secs: Option<u64>) -> (Vec<AuditEvent>, u64) {
        let from = self.since(since_secs);
        let inner = self.lock();
        (select(&inner, account, from), inner.dropped)
    }

    /// [`Audit::query`] and a receiver of every event recorded after it, with nothing lost or
    /// repeated in between (`samlctl audit --follow`). The receiver gets every account's
    /// events: filter them with [`matches()`].
    pub fn query_and_subscribe(
        &self,
        account: Option<&str>,
        since_secs: Option<u64>,
    ) -> (Vec<AuditEvent>, u64, broadcast::Receiver<AuditEvent>) {
        let from = self.since(since_secs);
        // Both under the lock: `record` sends under it too, so the first event the receiver
        // sees is the first one the query did not.
        let inner = self.lock();
        let receiver = self.follow.subscribe();
        (select(&inner, account, from), inner.dropped, receiver)
    }

    fn since(&self, since_secs: Option<u64>) -> Option<OffsetDateTime> {
        since_secs.map(|secs| {
            let secs = i64::try_from(secs).unwrap_or(i64::MAX);
            self.clock
                .now()
                .checked_sub(time::Duration::seconds(secs))
                .unwrap_or(OffsetDateTime::UNIX_EPOCH)
        })
    }

    /// A receiver of every event recorded from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<AuditEvent> {
        self.follow.subscribe()
    }

    /// How many events were dropped (the oldest first) since the daemon started.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    /// When credentials for `role_arn` of `account` were last handed out, and to what.
    pub fn last_use(&self, account: &str, role_arn: &str) -> Option<LastUse> {
        self.lock()
            .last_use
            .get(&(account.to_owned(), role_arn.to_owned()))
            .cloned()
    }

    /// Forgets the last uses of an account's roles (its settings changed or it was removed).
    pub fn forget_account(&self, account: &str) {
        self.lock().last_use.retain(|(a, _), _| a != account);
    }
}

fn select(inner: &Inner, account: Option<&str>, from: Option<OffsetDateTime>) -> Vec<AuditEvent> {
    inner
        .events
        .iter()
        .filter(|(at, _)| from.is_none_or(|from| *at >= from))
        .filter(|(_, e)| matches(e, account))
        .map(|(_, e)| e.clone())
        .collect()
}

/// Whether `event` concerns `account` (every event does when `None`).
pub fn matches(event: &AuditEvent, account: Option<&str>) -> bool {
    account.is_none_or(|a| event.account.as_deref() == Some(a))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use samld_proto::WireError;
    use time::macros::datetime;

    fn audit(capacity: usize) -> (Arc<ManualClock>, Audit) {
        let clock = Arc::new(ManualClock::new(datetime!(2026-12-01 10:00 UTC)));
        (clock.clone(), Audit::new(clock, capacity))
    }

    fn proc(pid: u32, name: &str) -> ProcessInfo {
        ProcessInfo {
            pid,
            name: name.into(),
            exe: None,
            command_line: None,
        }
    }

    #[test]
    fn the_ring_drops_the_oldest_and_numbers_events() {
        let (_, audit) = audit(3);
        for account in ["a", "b", "a", "b", "a"] {
            audit.record(Record::new(AuditKind::Logout, Some(account)));
        }
        let (events, dropped) = audit.query(None, None);
        assert_eq!(dropped, 2);
        assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 4, 5]);
        let (only_a, _) = audit.query(Some("a"), None);
        assert_eq!(only_a.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 5]);
        assert_eq!(audit.dropped(), 2);
    }

    #[test]
    fn since_keeps_the_recent_events_and_at_is_the_clock() {
        let (clock, audit) = audit(10);
        audit.record(Record::new(AuditKind::Login, Some("a")));
        clock.advance(std::time::Duration::from_secs(600));
        let late = audit.record(Record::new(AuditKind::Refresh, Some("a")));
        assert_eq!(late.at, "2026-12-01T10:10:00Z");
        let (events, _) = audit.query(None, Some(60));
        assert_eq!(events, [late]);
        assert_eq!(audit.query(None, Some(601)).0.len(), 2);
        assert_eq!(audit.query(None, Some(u64::MAX)).0.len(), 2);
    }

    #[test]
    fn last_use_is_by_the_helpers_parent_and_only_on_success() {
        let (_, audit) = audit(10);
        let arn = "arn:aws:iam::1:role/Admin";
        let mut handout = Record::handout(Handout::Helper, "a", Some(arn), None, None);
        handout.process = Some(proc(20, "samld-helper"));
        handout.ancestry = vec![proc(10, "terraform"), proc(5, "bash")];
        audit.record(handout.clone());
        let used = audit.last_use("a", arn).unwrap();
        assert_eq!(used.via, Handout::Helper);
        assert_eq!(used.by.unwrap().name, "terraform");
        // A failed one does not count.
        let failed = Record {
            via: Some(Handout::Env),
            ..handout.clone()
        }
        .outcome::<()>(&Err(WireError::new(
            samld_proto::ErrorCode::NeedsLogin,
            "log in",
        )));
        audit.record(failed);
        assert_eq!(audit.last_use("a", arn).unwrap().via, Handout::Helper);
        // Other ways name the process itself.
        audit.record(Record {
            via: Some(Handout::ExecEndpoint),
            process: Some(proc(30, "samlctl")),
            ..handout
        });
        let used = audit.last_use("a", arn).unwrap();
        assert_eq!(used.by.unwrap().name, "samlctl");
        assert_eq!(audit.last_use("b", arn), None);
        audit.forget_account("a");
        assert_eq!(audit.last_use("a", arn), None);
    }

    #[test]
    fn followers_get_what_the_query_did_not() {
        let (_, audit) = audit(10);
        audit.record(Record::new(AuditKind::Login, Some("a")));
        let (events, dropped, mut rx) = audit.query_and_subscribe(Some("a"), None);
        assert_eq!((events.len(), dropped), (1, 0));
        audit.record(Record::new(AuditKind::Logout, Some("b")));
        audit.record(Record::new(AuditKind::Logout, Some("a")));
        let first = rx.try_recv().unwrap();
        assert!(!matches(&first, Some("a")));
        let second = rx.try_recv().unwrap();
        assert!(matches(&second, Some("a")));
        assert_eq!(second.seq, 3);
        let mut late = audit.subscribe();
        assert!(late.try_recv().is_err());
    }
}
