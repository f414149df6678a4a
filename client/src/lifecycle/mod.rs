//! samld's lifecycle as the clients see it: starting it on demand, and running it under the
//! user's service manager.
//!
//! - [`env`](mod@env): the machine as the lifecycle code sees it (the service manager, the
//!   home and runtime directories, where the service files go) and the service-manager
//!   commands;
//! - [`units`]: the shipped systemd units and launchd agent, and how they are filled in;
//! - [`autostart`]: what [`ConnectOptions::connect`](crate::ConnectOptions::connect) does
//!   when nobody answers on the socket;
//! - [`service`]: `samlctl daemon install|uninstall|start|stop|status`.
//!
//! The dependencies go one way: `units` ← `env` ← `autostart` ← `service`. Autostart, which
//! every `samld-helper` run may need, only asks [`env`](mod@env) whether a service manager
//! owns the socket; it never reaches the installer.

pub mod autostart;
pub mod env;
pub mod service;
pub mod units;
