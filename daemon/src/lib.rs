//! samld: the per-user daemon that holds the JumpCloud session in memory and serves AWS
//! credentials over a Unix socket.

pub mod app;
pub mod clock;
pub mod error_chain;
pub mod federation;
pub mod future;
pub mod harden;
pub mod http;
pub mod idp;
pub mod keyring;
pub mod listener;
pub mod logging;
pub mod manager;
pub mod notify;
pub mod peer;
pub mod providers;
pub mod saml;
pub mod server;
pub mod sts;
pub mod watch;
