//! The background scheduler on a multi-threaded runtime, as samld runs it: it must re-arm
//! after every flight, whichever worker thread the flight ends on.

mod common;

use common::{ScriptedIdp, ScriptedProviders, ScriptedSts};

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use samld::clock::ManualClock;
use samld::manager::{DaemonOptions, Manager};
use samld_proto::{AccountState, LoginIntent, PasswordLogin, Secret};
use time::macros::datetime;

const ROLE: &str = "arn:aws:iam::123456789012:role/Admin";
const LIFETIME: Duration = Duration::from_secs(3600);

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
    let sts = ScriptedSts::new(clock.clone(), LIFETIME);
    let idp = Arc::new(ScriptedIdp::live(&[ROLE]));
    let daemon = Manager::new(
        config,
        DaemonOptions::new("/test/config.toml".into()),
        clock.clone(),
        sts.clone(),
        ScriptedProviders::serving(idp.clone()),
    );
    let scheduler = tokio::spawn(daemon.clone().run_scheduler());
    let mut calls = sts.call_count.subscribe();
    for round in 0..100 {
        daemon.logout(None).expect("logout");
        // The logout ended the session: each login signs in again with the password.
        let password = LoginIntent::Password(PasswordLogin {
            password: Some(Secret::new(idp.password.to_owned())),
            ..PasswordLogin::default()
        });
        daemon.login("prod", password, None).await.expect("login");
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
