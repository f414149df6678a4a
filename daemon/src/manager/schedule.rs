//! The background refresher: sleeps until the earliest deadline any account's phase names,
//! by the wall clock, and starts the trips that are due. No polling.

use std::sync::Arc;

use time::OffsetDateTime;

use super::Manager;
use super::policy::Unattended;
use crate::clock::rfc3339;

impl Manager {
    /// Starts every trip that is due, and returns when the next one will be.
    pub fn start_due_refreshes(self: &Arc<Self>) -> Option<OffsetDateTime> {
        let now = self.clock.now();
        let mut next: Option<OffsetDateTime> = None;
        for slot in self.all_slots() {
            let due = {
                let data = slot.data();
                if data.flight.is_some() || data.phase.unattended() == Unattended::Nothing {
                    continue;
                }
                match data.phase.wake_at() {
                    Some(at) if at <= now => true,
                    Some(at) => {
                        next = Some(next.map_or(at, |n| n.min(at)));
                        false
                    }
                    None => false,
                }
            };
            if due {
                tracing::debug!(account = %slot.account.name, "trip due");
                drop(self.start_trip(&slot, None, false));
            }
        }
        next
    }

    /// Keeps every account fresh: sleeps until the next deadline by the wall clock (waking
    /// early on a clock jump or a change), starts what is due, and repeats.
    pub async fn run_scheduler(self: Arc<Self>) {
        loop {
            // Created before looking, so a change made while we look is not missed.
            let changed = self.schedule_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            match self.start_due_refreshes() {
                Some(at) => {
                    tracing::debug!(next = %rfc3339(at), "scheduler sleeping");
                    tokio::select! {
                        () = self.clock.sleep_until(at) => {}
                        () = &mut changed => {}
                    }
                }
                None => changed.await,
            }
        }
    }

    /// The next instant the scheduler will act at, if any (for tests and status).
    pub fn next_deadline(&self) -> Option<OffsetDateTime> {
        self.all_slots()
            .iter()
            .filter_map(|slot| {
                let data = slot.data();
                (data.flight.is_none())
                    .then(|| data.phase.wake_at())
                    .flatten()
            })
            .min()
    }
}
