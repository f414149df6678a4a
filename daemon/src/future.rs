//! The one future type the daemon's object-safe traits return (identity providers, STS,
//! clocks, socket channels): kept apart so that none of them imports another's module for it.

use std::future::Future;
use std::pin::Pin;

/// A boxed, sendable future, so that the traits that return one stay object safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
