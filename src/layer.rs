//! What the tower layers around every call (observe, limits, auth) share.

use std::future::Future;
use std::pin::Pin;

/// The future a layer's service returns.
pub type Answer<R, E> = Pin<Box<dyn Future<Output = Result<R, E>> + Send>>;

/// Takes the inner service that `poll_ready` made ready, leaving a fresh clone in its place
/// (tower's readiness contract: the ready instance is the one to call).
pub fn take_ready<S: Clone>(slot: &mut S) -> S {
    let fresh = slot.clone();
    std::mem::replace(slot, fresh)
}
