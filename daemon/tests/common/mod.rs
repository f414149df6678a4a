//! What the daemon's integration tests share: the test doubles of `src/test_doubles.rs` (the
//! scripted IdP, STS and provider factory, and the assertion they speak), one file that the
//! library's unit tests use too.

#[path = "../../src/test_doubles.rs"]
mod doubles;

pub use doubles::*;
