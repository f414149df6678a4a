//! `samld`: the per-user credential daemon. Runs in the foreground; systemd or launchd (or
//! `samlctl`) keep it in the background.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Holds your JumpCloud session in memory and serves AWS credentials to samld-helper and
/// samlctl over a private Unix socket.
#[derive(Debug, Parser)]
#[command(name = "samld", version, about)]
struct Args {
    /// Config file (default: $SAMLD_CONFIG, else ~/.config/samld/config.toml).
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Socket to listen on (default: $SAMLD_SOCKET, else $XDG_RUNTIME_DIR/samld/samld.sock).
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // Test-only (debug builds): end-to-end tests shorten the backoff to watch its schedule.
    #[cfg(debug_assertions)]
    if let Some(divisor) = std::env::var("SAMLD_TEST_BACKOFF_DIVISOR")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        samld::manager::policy::divide_backoff_for_tests(divisor);
    }
    samld::harden::harden_process();
    // Before any thread exists: it clears the activation variables from our environment.
    let activated = match samld::listener::take_activated_listener() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("samld: {e}");
            return ExitCode::FAILURE;
        }
    };
    samld::logging::init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("samld")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("samld: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(samld::app::run(samld::app::Startup {
        config: args.config,
        socket: args.socket,
        activated,
    }));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("samld: {e}");
            ExitCode::FAILURE
        }
    }
}
