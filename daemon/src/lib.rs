//! samld: the per-user daemon that holds the JumpCloud session in memory and serves AWS
//! credentials over a Unix socket.

pub mod clock;
pub mod idp;
pub mod saml;
pub mod sts;
pub mod server;
pub mod session;
pub mod watch;
