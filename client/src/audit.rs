//! `samlctl audit`: the daemon's record of who got which credentials, once or followed.
//!
//! A plain request reads the record and ends ([`Client::audit`]). Following
//! ([`Client::follow_audit`]) keeps the connection: the daemon sends what it has, then one
//! frame per new event for as long as the connection stays open, so the read timeout that
//! bounds a stuck daemon is lifted for it ([`AuditFollow::next_event`] blocks until an event
//! arrives or the daemon closes).

use std::time::Duration;

use samld_proto::{AuditEvent, Request, Response};

use crate::{Client, ClientError};

impl Client {
    /// The daemon's audit events, oldest first: only `account`'s with `Some`, and only those
    /// of the last `since` with `Some`. Also returns how many events the daemon's bounded
    /// record has dropped since it started.
    ///
    /// A daemon older than this client answers [`samld_proto::ErrorCode::BadRequest`].
    pub fn audit(
        self,
        account: Option<&str>,
        since: Option<Duration>,
    ) -> Result<(Vec<AuditEvent>, u64), ClientError> {
        let mut client = self;
        client.write(&audit_request(account, since, false))?;
        let mut events = Vec::new();
        loop {
            match client.read()? {
                Response::AuditEvent(event) => events.push(event),
                Response::Audit {
                    events: rest,
                    dropped,
                } => {
                    events.extend(rest);
                    return Ok((events, dropped));
                }
                Response::Error(e) => return Err(ClientError::Daemon(e)),
                other => return Err(crate::unexpected("audit", &other)),
            }
        }
    }

    /// Like [`audit`](Self::audit), then keeps the connection open to stream new events:
    /// see [`AuditFollow`]. The connection's read timeout no longer applies once the first
    /// answer is in.
    pub fn follow_audit(
        mut self,
        account: Option<&str>,
        since: Option<Duration>,
    ) -> Result<AuditFollow, ClientError> {
        self.write(&audit_request(account, since, true))?;
        let mut so_far = Vec::new();
        loop {
            match self.read()? {
                Response::AuditEvent(event) => so_far.push(event),
                Response::AuditFollowing { events, dropped } => {
                    so_far.extend(events);
                    break self.following(so_far, dropped);
                }
                Response::Error(e) => break Err(ClientError::Daemon(e)),
                other => break Err(crate::unexpected("audit_following", &other)),
            }
        }
    }

    /// The answer to a follow request has arrived: from now on, wait as long as it takes.
    fn following(
        mut self,
        events: Vec<AuditEvent>,
        dropped: u64,
    ) -> Result<AuditFollow, ClientError> {
        // The daemon may stay silent for hours: waiting is the point now.
        self.stream
            .set_read_timeout(None)
            .map_err(|source| ClientError::Io {
                socket: self.socket.clone(),
                source,
            })?;
        self.timeout = None;
        Ok(AuditFollow {
            client: self,
            events,
            dropped,
            done: false,
        })
    }
}

fn audit_request(account: Option<&str>, since: Option<Duration>, follow: bool) -> Request {
    Request::Audit {
        account: account.map(str::to_owned),
        since_secs: since.map(|d| d.as_secs()),
        follow,
    }
}

/// An audit being followed: the events the daemon had when it answered
/// ([`events`](Self::events), [`dropped`](Self::dropped)), then each new one from
/// [`next_event`](Self::next_event) (or by iterating).
#[derive(Debug)]
pub struct AuditFollow {
    client: Client,
    events: Vec<AuditEvent>,
    dropped: u64,
    done: bool,
}

impl AuditFollow {
    /// The events the daemon had when it answered, oldest first.
    pub fn events(&self) -> &[AuditEvent] {
        &self.events
    }

    /// Takes the initial events out, leaving none behind.
    pub fn take_events(&mut self) -> Vec<AuditEvent> {
        std::mem::take(&mut self.events)
    }

    /// How many events the daemon's bounded record had dropped when it answered.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Blocks, without a timeout, until the daemon sends the next event. `Ok(None)` when it
    /// closed the connection (it stopped); an error for anything else, after which this
    /// returns `Ok(None)`.
    pub fn next_event(&mut self) -> Result<Option<AuditEvent>, ClientError> {
        if self.done {
            return Ok(None);
        }
        let result = match self.client.read() {
            Ok(Response::AuditEvent(event)) => return Ok(Some(event)),
            Err(ClientError::Closed) => Ok(None),
            Ok(Response::Error(e)) => Err(ClientError::Daemon(e)),
            Ok(other) => Err(crate::unexpected("audit_event", &other)),
            Err(e) => Err(e),
        };
        self.done = true;
        result
    }
}

impl Iterator for AuditFollow {
    type Item = Result<AuditEvent, ClientError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_event().transpose()
    }
}
