//! The contract between `samld` and its clients (`samlctl`, `samld-helper`).
//!
//! Everything that crosses the Unix socket is defined here: the protocol version, the
//! request and response enums, the typed error codes, the length-prefixed framing and the
//! rules that find the socket. The crate stays light (serde, serde_json, zeroize, libc)
//! because `samld-helper` links it and starts on every AWS CLI call.
//!
//! A connection goes like this: the daemon speaks first with [`Response::Hello`], the
//! client checks [`PROTOCOL_VERSION`], sends one [`Request`] and reads responses until a
//! final one (see [`Response::is_final`]). A login may interleave [`Response::NeedSecret`]
//! and [`Request::ProvideSecret`] before its final answer.

mod frame;
mod paths;
mod secret;
mod sign_in;
mod wire;

pub use frame::{
    FrameError, MAX_FRAME_LEN, decode_body, decode_header, encode_frame, read_frame, write_frame,
};
pub use paths::{
    PrivateDirError, SocketPathError, default_socket_path, prepare_private_dir, socket_dir_for,
};
pub use secret::Secret;
pub use sign_in::*;
pub use wire::*;

/// Version of the wire protocol spoken over the socket.
///
/// Bumped by hand whenever a change to [`Request`] or [`Response`] would make an old client
/// and a new daemon (or the reverse) misunderstand each other. It is deliberately not the
/// crate version: a release that does not touch the wire keeps it.
///
/// 2: a login's intent is one [`LoginIntent`] instead of flags; a logout counts the IdP
/// sessions it signed out.
pub const PROTOCOL_VERSION: u32 = 2;

/// The version of the samld release these binaries come from.
pub const CRATE_VERSION: &str = env!("CARGO_PKG_VERSION");
