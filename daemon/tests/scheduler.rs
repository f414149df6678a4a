//! The background scheduler on a multi-threaded runtime, as samld runs it: it must re-arm
//! after every flight, whichever worker thread the flight ends on.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use samld::clock::{Clock, ManualClock};
use samld::future::BoxFuture;
use samld::idp::{IdentityProvider, IdpError, LoginInteraction};
use samld::manager::{DaemonOptions, Manager, ProviderFactory};
use samld::sts::{AssumeRequest, AwsCredentials, StsApi, StsError, StsTarget};
use samld_config::Account;
use samld_proto::{AccountState, LoginIntent, PasswordLogin, Secret};
use time::macros::datetime;

const ROLE: &str = "arn:aws:iam::123456789012:role/Admin";
const PROVIDER: &str = "arn:aws:iam::123456789012:saml-provider/JumpCloud";
const LIFETIME: Duration = Duration::from_secs(3600);

fn assertion() -> Secret {
    common::assertion(&[(ROLE, PROVIDER)], None)
}

/// A JumpCloud whose session never ends.
struct LiveSession;

impl IdentityProvider for LiveSession {
    fn assertion_from_session(&self) -> BoxFuture<'_, Result<Secret, IdpError>> {
        Box::pin(async { Ok(assertion()) })
    }

    fn login<'a>(
        &'a self,
        _io: &'a mut dyn LoginInteraction,
    ) -> BoxFuture<'a, Result<Secret, IdpError>> {
        Box::pin(async { Ok(assertion()) })
    }

    fn forget_session(&self) {}
}

struct Factory;

impl ProviderFactory for Factory {
    fn provider(&self, _account: &Account) -> Result<Arc<dyn IdentityProvider>, IdpError> {
        Ok(Arc::new(LiveSession))
    }
}

/// An STS issuing hour-long credentials by the manual clock, counting calls.
struct Sts {
    clock: Arc<ManualClock>,
    calls: AtomicUsize,
    count: tokio::sync::watch::Sender<usize>,
}

impl StsApi for Sts {
    fn assume_role_with_saml<'a>(
        &'a self,
        _target: &'a StsTarget,
        _request: &'a AssumeRequest,
    ) -> BoxFuture<'a, Result<AwsCredentials, StsError>> {
        Box::pin(async move {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            self.count.send_replace(n);
            Ok(AwsCredentials {
                access_key_id: format!("ASIAKEY{n:013}"),
                secret_access_key: Secret::new(format!("secret-{n}")),
                session_token: Secret::new(format!("token-{n}")),
                expiration: self.clock.now() + LIFETIME,
                assumed_role_arn: None,
            })
        })
    }
}

const CONFIG: &str = r#"
[accounts.prod]
url = "https://sso.jumpcloud.com/saml2/prod"
username = "alice@example.com"
"#;

/// Each round logs in and moves the clock past the refresh deadline, twice, waiting each
/// time for the refresh the scheduler must start by itself. A scheduler that looks at the
/// account while a flight (the login, or its own refresh) is still marked as running skips
/// it, and if nothing wakes it once the mark is gone, it never refreshes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_rearms_after_every_login_and_refresh() {
    let config = samld_config::parse(CONFIG, Path::new("/test/config.toml")).expect("config");
    let clock = Arc::new(ManualClock::new(datetime!(2026-11-28 10:00 UTC)));
    let sts = Arc::new(Sts {
        clock: clock.clone(),
        calls: AtomicUsize::new(0),
        count: tokio::sync::watch::Sender::new(0),
    });
    let daemon = Manager::new(
        config,
        DaemonOptions::new("/test/config.toml".into()),
        clock.clone(),
        sts.clone(),
        Arc::new(Factory),
    );
    let scheduler = tokio::spawn(daemon.clone().run_scheduler());
    let mut calls = sts.count.subscribe();
    for round in 0..100 {
        daemon.logout(None).expect("logout");
        daemon
            .login(
                "prod",
                LoginIntent::Password(PasswordLogin::default()),
                None,
            )
            .await
            .expect("login");
        for refresh in 1..=2 {
            let expected = sts.calls.load(Ordering::SeqCst) + 1;
            // Past `refresh_before` (20 minutes) ahead of expiry, jitter included.
            clock.advance(Duration::from_secs(41 * 60));
            let refreshed =
                tokio::time::timeout(Duration::from_secs(10), calls.wait_for(|&n| n >= expected))
                    .await;
            assert!(
                refreshed.is_ok(),
                "round {round}, refresh {refresh}: the scheduler did not refresh"
            );
            // The flight has stored its credentials (and deadline) before the clock moves on.
            while daemon.status(Some("prod")).unwrap().accounts[0].state != AccountState::Active {
                tokio::task::yield_now().await;
            }
        }
    }
    scheduler.abort();
}
