//! samld: the per-user daemon that holds the JumpCloud session in memory and serves AWS
//! credentials over a Unix socket.
//!
//! The modules, by what they are for (ARCHITECTURE.md has the path of a request through
//! them):
//!
//! - The daemon's life: [`app`] (start, signals, shutdown), [`listener`] (the socket and
//!   systemd activation), [`watch`] (the config file and the socket file), [`harden`] (no core
//!   dumps, no ptrace), [`logging`].
//! - Serving clients: [`server`] (the socket protocol), [`exec_endpoint`] (the loopback
//!   endpoint of `samlctl exec`) and [`peer`] (who owns a loopback connection),
//!   [`console`] (console sign-in URLs, through AWS federation).
//! - Deciding what to do: [`manager`] (accounts, the shared IdP sessions, the retry policy,
//!   the schedule).
//! - Talking to the outside: [`idp`] and [`providers`] (JumpCloud), [`saml`] (the assertion),
//!   [`sts`] (AssumeRoleWithSAML), [`keyring`] (saved passwords), [`notify`] (desktop
//!   notifications).
//! - Keeping account: [`audit`] (who got which credentials, in memory).
//! - Shared pieces: [`clock`] (wall time, real or manual), [`future`], [`error_chain`].

pub mod app;
pub mod audit;
pub mod clock;
pub mod console;
pub mod error_chain;
pub mod exec_endpoint;
pub mod future;
pub mod harden;
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

// The test doubles name this crate `samld`, as the integration tests that share them do.
#[cfg(test)]
extern crate self as samld;
#[cfg(test)]
mod test_doubles;
