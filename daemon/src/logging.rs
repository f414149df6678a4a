//! Logs to stderr through tracing, with the level taken from `SAMLD_LOG`.

use std::str::FromStr;

use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Crates whose verbose logs can carry request or response bodies (and so assertions,
/// cookies or keys). They stay at `info` whatever `SAMLD_LOG` says, so that even a trace
/// log is safe to paste into a bug report.
const CAPPED_TARGETS: &[&str] = &[
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_smithy_http_client",
    "aws_smithy_types",
    "aws_sdk_sts",
    "aws_runtime",
    "hyper",
    "hyper_util",
    "h2",
    "reqwest",
    "rustls",
    "cookie_store",
];

/// Parses a `SAMLD_LOG` value such as `debug` or `info,samld::session=trace`.
pub fn filter_from(spec: Option<&str>) -> Result<Targets, String> {
    let spec = spec
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or("info");
    let targets = Targets::from_str(spec).map_err(|e| format!("SAMLD_LOG={spec:?}: {e}"))?;
    Ok(CAPPED_TARGETS.iter().fold(targets, |t, target| {
        t.with_target(*target, LevelFilter::INFO)
    }))
}

/// Installs the stderr subscriber. A bad `SAMLD_LOG` falls back to `info` with a warning.
pub fn init() {
    let spec = std::env::var("SAMLD_LOG").ok();
    let (filter, problem) = match filter_from(spec.as_deref()) {
        Ok(f) => (f, None),
        Err(e) => (filter_from(None).unwrap_or_default(), Some(e)),
    };
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(ansi)
                .with_target(false),
        )
        .with(filter)
        .init();
    if let Some(problem) = problem {
        tracing::warn!("{problem}; logging at info");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn default_is_info_and_dependencies_are_capped() {
        let f = filter_from(Some("trace")).unwrap();
        assert!(f.would_enable("samld::session", &Level::TRACE));
        assert!(!f.would_enable("aws_smithy_runtime::client", &Level::DEBUG));
        assert!(!f.would_enable("hyper::proto", &Level::TRACE));
        let f = filter_from(None).unwrap();
        assert!(f.would_enable("samld", &Level::INFO));
        assert!(!f.would_enable("samld", &Level::DEBUG));
    }

    #[test]
    fn bad_spec_is_reported() {
        assert!(filter_from(Some("samld=loud")).is_err());
    }
}
