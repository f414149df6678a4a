//! Logs to stderr through tracing, with the level taken from `SAMLD_LOG`.
//!
//! Two filters apply to every event: the user's (`SAMLD_LOG`) and, after it, a cap on every
//! target that is not samld's own. The cap is a separate filter rather than directives added
//! to the user's, because a more specific directive in `SAMLD_LOG` (such as
//! `aws_smithy_runtime::client=trace`) would otherwise win over it.

use std::str::FromStr;

use tracing::{Level, Metadata};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{FilterExt, Targets, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The most verbose level a target outside samld may log at. Dependencies' debug and trace
/// logs can carry request or response bodies and headers (the AWS SDK logs whole STS
/// answers, secret key included, under `LOG_SENSITIVE_BODIES`; hyper, h2, reqwest and
/// rustls log headers and cookies), so they stay at `info` whatever `SAMLD_LOG` says, and a
/// trace log is safe to paste into a bug report.
///
/// Every crate but samld's own is capped, not a list of the ones known to log bodies, so
/// that a dependency added later (or one of the AWS SDK's many `aws_*` crates) cannot bring
/// them back.
pub const DEPENDENCY_CAP: Level = Level::INFO;

/// Whether events of `target` follow `SAMLD_LOG` alone: samld's own crates.
fn is_samld_target(target: &str) -> bool {
    let krate = target.split("::").next().unwrap_or(target);
    krate == "samld" || krate.starts_with("samld_")
}

/// Whether the cap lets an event or span of this target and level through.
pub fn under_cap(target: &str, level: &Level) -> bool {
    is_samld_target(target) || *level <= DEPENDENCY_CAP
}

/// Parses a `SAMLD_LOG` value such as `debug` or `info,samld::session=trace`.
pub fn filter_from(spec: Option<&str>) -> Result<Targets, String> {
    let spec = spec
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or("info");
    Targets::from_str(spec).map_err(|e| format!("SAMLD_LOG={spec:?}: {e}"))
}

/// Whether an event of `target` at `level` is logged under the `SAMLD_LOG` filter `filter`,
/// the cap included.
pub fn would_log(filter: &Targets, target: &str, level: &Level) -> bool {
    filter.would_enable(target, level) && under_cap(target, level)
}

/// Installs the stderr subscriber. A bad `SAMLD_LOG` falls back to `info` with a warning.
pub fn init() {
    let spec = std::env::var("SAMLD_LOG").ok();
    let (filter, problem) = match filter_from(spec.as_deref()) {
        Ok(f) => (f, None),
        Err(e) => (filter_from(None).unwrap_or_default(), Some(e)),
    };
    let cap = filter_fn(|meta: &Metadata<'_>| under_cap(meta.target(), meta.level()));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(ansi)
                .with_target(false)
                .with_filter(filter.and(cap)),
        )
        .init();
    if let Some(problem) = problem {
        tracing::warn!("{problem}; logging at info");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_info_and_dependencies_are_capped() {
        let f = filter_from(Some("trace")).unwrap();
        assert!(would_log(&f, "samld::session", &Level::TRACE));
        assert!(!would_log(&f, "aws_smithy_runtime::client", &Level::DEBUG));
        assert!(!would_log(&f, "hyper::proto", &Level::TRACE));
        assert!(would_log(&f, "hyper::proto", &Level::INFO));
        let f = filter_from(None).unwrap();
        assert!(would_log(&f, "samld", &Level::INFO));
        assert!(!would_log(&f, "samld", &Level::DEBUG));
    }

    #[test]
    fn no_directive_lifts_the_cap() {
        let f = filter_from(Some(
            "trace,aws_smithy_runtime::client=trace,aws_sdk_sts::operation=trace,\
             aws_config=debug,hyper_util::client=trace,h2::codec=trace,reqwest=trace,\
             rustls::client=trace,some_future_crate=trace",
        ))
        .unwrap();
        for target in [
            "aws_smithy_runtime::client::orchestrator",
            "aws_smithy_runtime::client",
            "aws_sdk_sts::operation::assume_role_with_saml",
            "aws_config",
            "hyper_util::client::legacy",
            "h2::codec::framed_read",
            "reqwest::connect",
            "rustls::client::hs",
            "some_future_crate",
        ] {
            assert!(!would_log(&f, target, &Level::DEBUG), "{target}");
            assert!(!would_log(&f, target, &Level::TRACE), "{target}");
            assert!(would_log(&f, target, &Level::WARN), "{target}");
        }
        // samld's own crates (and only they) follow the filter.
        assert!(would_log(&f, "samld_proto::frame", &Level::TRACE));
        assert!(!would_log(&f, "samldx", &Level::TRACE));
    }

    #[test]
    fn bad_spec_is_reported() {
        assert!(filter_from(Some("samld=loud")).is_err());
    }
}
