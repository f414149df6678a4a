//! samld's lifecycle as the clients see it: starting it on demand, and running it under the
//! user's service manager.
//!
//! - [`autostart`]: what [`ConnectOptions::connect`](crate::ConnectOptions::connect) does
//!   when nobody answers on the socket.
//! - [`service`]: `samlctl daemon install|uninstall|start|stop|status`.

pub mod autostart;
pub mod service;
