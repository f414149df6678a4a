//! The daemon's life: find the config and the socket, start the manager, the config
//! watcher and the server, and shut down cleanly on SIGTERM or SIGINT.

use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixListener as StdUnixListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use samld_config::Config;
use tokio::signal::unix::{SignalKind, signal};

use crate::clock::SystemClock;
use crate::exec_endpoint::{Endpoint, EndpointOptions};
use crate::listener::{ListenerOrigin, bind_socket};
use crate::manager::{DaemonOptions, Manager};
use crate::providers::DefaultProviders;
use crate::server::{ServerOptions, serve_with_replacements};
use crate::sts::SdkSts;

/// What `main` found before the runtime started.
#[derive(Debug)]
pub struct Startup {
    /// `--config`.
    pub config: Option<PathBuf>,
    /// `--socket`.
    pub socket: Option<PathBuf>,
    /// The listener from systemd socket activation, if any.
    pub activated: Option<StdUnixListener>,
}

/// Why the daemon could not start or stopped with an error. Each message is for the user
/// as it is: it names what failed and what to fix.
#[derive(Debug)]
pub enum AppError {
    /// No config file path could be worked out.
    ConfigPath(samld_config::ConfigPathError),
    /// The socket path could not be worked out.
    SocketPath(samld_proto::SocketPathError),
    /// The socket could not be bound (another samld, or an unsafe directory).
    Listen(crate::listener::ListenError),
    /// A setting from the environment (the exec endpoint's port) is invalid.
    Environment(String),
    /// The bound socket could not be handed to the runtime.
    Socket(std::io::Error),
    /// The SIGTERM or SIGINT handler could not be installed.
    Signals(std::io::Error),
    /// The socket server stopped with an error.
    Server(std::io::Error),
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AppError::ConfigPath(e) => e.fmt(f),
            AppError::SocketPath(e) => e.fmt(f),
            AppError::Listen(e) => e.fmt(f),
            AppError::Environment(e) => f.write_str(e),
            AppError::Socket(e) => write!(f, "cannot use the socket: {e}"),
            AppError::Signals(e) => e.fmt(f),
            AppError::Server(e) => write!(f, "the socket server failed: {e}"),
        }
    }
}

impl std::error::Error for AppError {}

/// Runs the daemon until a signal or a `Shutdown` request.
pub async fn run(startup: Startup) -> Result<(), AppError> {
    // reqwest is built without a default TLS provider so that ring, not aws-lc, is used.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let config_path = samld_config::resolve_config_path(startup.config.as_deref())
        .map_err(AppError::ConfigPath)?;
    let (config, config_error) = initial_config(&config_path);
    // Checked now so that a bad value stops the start, not the first `samlctl exec`.
    let endpoint = Endpoint::new(EndpointOptions::from_env().map_err(AppError::Environment)?);

    let (listener, origin) = match startup.activated {
        Some(listener) => (listener, ListenerOrigin::Activated),
        None => {
            let path = match startup.socket {
                Some(p) => p,
                None => samld_proto::default_socket_path().map_err(AppError::SocketPath)?,
            };
            let listener = bind_socket(&path).map_err(AppError::Listen)?;
            (listener, ListenerOrigin::Bound(path))
        }
    };
    // Which file is our socket (device, inode): updated when the guard re-creates it.
    let identity = Arc::new(Mutex::new(match &origin {
        ListenerOrigin::Bound(path) => socket_identity(path),
        ListenerOrigin::Activated => None,
    }));
    let listener = tokio::net::UnixListener::from_std(listener).map_err(AppError::Socket)?;

    let daemon = Manager::new(
        config,
        DaemonOptions {
            password_store: Some(crate::keyring::os_store()),
            notify_user: Some(Arc::new(crate::notify::notify_user)),
            ..DaemonOptions::new(config_path.clone())
        },
        Arc::new(SystemClock),
        Arc::new(SdkSts::new()),
        Arc::new(DefaultProviders),
    );
    if let Some(error) = config_error {
        daemon.config_rejected(error);
    }
    let watcher = spawn_config_watcher(&daemon, &config_path);
    let scheduler = tokio::spawn(daemon.clone().run_scheduler());

    let mut sigterm = signal(SignalKind::terminate()).map_err(AppError::Signals)?;
    let mut sigint = signal(SignalKind::interrupt()).map_err(AppError::Signals)?;
    let shutdown = async move {
        tokio::select! {
            _ = sigterm.recv() => tracing::info!("SIGTERM received; shutting down"),
            _ = sigint.recv() => tracing::info!("SIGINT received; shutting down"),
        }
    };

    match &origin {
        ListenerOrigin::Bound(path) => tracing::info!(
            version = samld_proto::CRATE_VERSION,
            pid = std::process::id(),
            socket = %path.display(),
            config = %config_path.display(),
            "samld ready"
        ),
        ListenerOrigin::Activated => tracing::info!(
            version = samld_proto::CRATE_VERSION,
            pid = std::process::id(),
            config = %config_path.display(),
            "samld ready on the socket systemd passed"
        ),
    }
    let (replace_tx, replacements) = tokio::sync::mpsc::channel(1);
    let socket_guard = match &origin {
        ListenerOrigin::Bound(path) => guard_socket(path.clone(), identity.clone(), replace_tx),
        ListenerOrigin::Activated => None,
    };
    // The listener is bound, so connections from here on are queued and served.
    sd_notify("READY=1");
    let served = serve_with_replacements(
        listener,
        daemon,
        endpoint,
        ServerOptions::default(),
        async move {
            shutdown.await;
            sd_notify("STOPPING=1");
        },
        replacements,
    )
    .await;
    drop(socket_guard);
    drop(watcher);
    scheduler.abort();

    if let ListenerOrigin::Bound(path) = &origin {
        // Only remove the file if it is still the socket we created (or re-created): a
        // second daemon started with --socket on the same path after ours keeps its own.
        let identity = *identity.lock().unwrap_or_else(|e| e.into_inner());
        if identity.is_some()
            && socket_identity(path) == identity
            && let Err(e) = std::fs::remove_file(path)
        {
            tracing::warn!(socket = %path.display(), error = %e, "could not remove the socket");
        }
    }
    served.map_err(AppError::Server)?;
    tracing::info!("samld stopped");
    Ok(())
}

/// The config at start-up. A missing file gives an empty config (the watcher picks the
/// file up once it is written); an invalid one gives an empty config plus the error, which
/// `samlctl status` shows, so that fixing the file is all the user needs to do.
fn initial_config(path: &Path) -> (Config, Option<String>) {
    match samld_config::load_or_empty(path) {
        Ok((config, true)) => (config, None),
        Ok((config, false)) => {
            tracing::warn!(config = %path.display(), "no config file yet; samld will load it when it appears");
            (config, None)
        }
        Err(e) => (Config::default(), Some(e.to_string())),
    }
}

fn spawn_config_watcher(daemon: &Arc<Manager>, path: &Path) -> Option<crate::watch::FileWatcher> {
    let (watcher, mut changes) = match crate::watch::watch_file(path) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(config = %path.display(), error = %e, "cannot watch the config file; changes need a restart");
            return None;
        }
    };
    let daemon = Arc::downgrade(daemon);
    let path = path.to_owned();
    tokio::spawn(async move {
        while changes.recv().await.is_some() {
            let Some(daemon) = daemon.upgrade() else {
                break;
            };
            reload(&daemon, &path);
        }
    });
    Some(watcher)
}

fn reload(daemon: &Manager, path: &Path) {
    match samld_config::load_or_empty(path) {
        Ok((config, existed)) => {
            if !existed {
                daemon.config_rejected(format!(
                    "{} was removed; the accounts loaded before stay in force until it is back",
                    path.display()
                ));
                return;
            }
            if *daemon.config() == config {
                // A file that was removed or unreadable is back as it was: nothing changes
                // but the error `samlctl status` shows, which no longer holds.
                if daemon.config_error().is_some() {
                    tracing::info!(config = %path.display(), "config file readable again, unchanged");
                    daemon.apply_config(config);
                }
                return;
            }
            tracing::info!(config = %path.display(), accounts = config.accounts.len(), "config reloaded");
            daemon.apply_config(config);
        }
        Err(e) => daemon.config_rejected(e.to_string()),
    }
}

fn socket_identity(path: &Path) -> Option<(u64, u64)> {
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

/// Tells a service manager (systemd `Type=notify`, or `samlctl` and the tests, which listen
/// the same way) about the daemon's state through `$NOTIFY_SOCKET`.
fn sd_notify(state: &str) {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let socket = match std::os::unix::net::UnixDatagram::unbound() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot notify the service manager");
            return;
        }
    };
    let message = format!("{state}\nMAINPID={}", std::process::id());
    let bytes = target.as_encoded_bytes();
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        // An abstract socket, as systemd uses.
        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name)
                .and_then(|addr| socket.send_to_addr(message.as_bytes(), &addr))
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = name;
            Err(std::io::Error::other("abstract sockets need Linux"))
        }
    } else {
        socket.send_to(message.as_bytes(), Path::new(&target))
    };
    if let Err(e) = sent {
        tracing::warn!(error = %e, "cannot notify the service manager");
    }
}

/// Watches the socket file. When it disappears (a tmp cleaner, a careless `rm -r`), the
/// daemon binds a new one at the same path and hands it to the server, so clients can find
/// it again; the credentials in memory survive. If that fails, the log says why and the
/// daemon keeps serving connections already open.
fn guard_socket(
    path: PathBuf,
    identity: Arc<Mutex<Option<(u64, u64)>>>,
    replace: tokio::sync::mpsc::Sender<tokio::net::UnixListener>,
) -> Option<crate::watch::FileWatcher> {
    let (watcher, mut changes) = match crate::watch::watch_file(&path) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(socket = %path.display(), error = %e, "cannot watch the socket file");
            return None;
        }
    };
    tokio::spawn(async move {
        while changes.recv().await.is_some() {
            let ours = *identity.lock().unwrap_or_else(|e| e.into_inner());
            if ours.is_some() && socket_identity(&path) == ours {
                continue;
            }
            tracing::warn!(socket = %path.display(), "the socket file was removed or replaced; re-creating it");
            let rebound = bind_socket(&path)
                .map_err(|e| e.to_string())
                .and_then(|l| tokio::net::UnixListener::from_std(l).map_err(|e| e.to_string()));
            match rebound {
                Ok(listener) => {
                    *identity.lock().unwrap_or_else(|e| e.into_inner()) = socket_identity(&path);
                    if replace.send(listener).await.is_err() {
                        break;
                    }
                }
                Err(e) => tracing::error!(
                    socket = %path.display(),
                    error = %e,
                    "cannot re-create the socket; new clients cannot connect until samld restarts"
                ),
            }
        }
    });
    Some(watcher)
}
