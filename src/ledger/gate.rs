//! Bounds the hot-path transactions in flight per workspace (or personal account) inside this
//! process, so calls for a hot workspace queue here, in order, instead of piling up on its row
//! lock in the database where every waiter holds a connection and the lock convoy collapses
//! throughput. Other replicas still serialise on the row lock; this only keeps each replica's
//! share of the queue out of the database.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Per-key semaphores, created on first use and dropped when the last holder leaves.
#[derive(Debug)]
pub struct ScopeGate {
    permits: usize,
    slots: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// Held while a transaction for one scope is in flight.
#[derive(Debug)]
pub struct GatePass<'a> {
    gate: &'a ScopeGate,
    key: String,
    semaphore: Arc<Semaphore>,
    permit: Option<OwnedSemaphorePermit>,
}

impl ScopeGate {
    /// A gate letting `permits` transactions per key through at once.
    pub fn new(permits: usize) -> ScopeGate {
        ScopeGate { permits: permits.max(1), slots: Mutex::default() }
    }

    /// Waits for a place for `key` (first come, first served).
    pub async fn enter(&self, key: &str) -> GatePass<'_> {
        let semaphore = {
            let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
            Arc::clone(slots.entry(key.to_owned()).or_insert_with(|| Arc::new(Semaphore::new(self.permits))))
        };
        // The semaphore is never closed, so acquiring cannot fail; a closed one would just not gate.
        let permit = Arc::clone(&semaphore).acquire_owned().await.ok();
        GatePass { gate: self, key: key.to_owned(), semaphore, permit }
    }

    /// Keys with a semaphore right now (for tests of the clean-up).
    #[cfg(test)]
    pub fn tracked_keys(&self) -> usize {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

impl Drop for GatePass<'_> {
    fn drop(&mut self) {
        drop(self.permit.take());
        let mut slots = self.gate.slots.lock().unwrap_or_else(PoisonError::into_inner);
        // Only the map and this pass hold the semaphore: nobody waits, so forget the key.
        if Arc::strong_count(&self.semaphore) == 2 {
            slots.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_pass_per_key_at_a_time_and_keys_are_forgotten_when_idle() {
        let gate = ScopeGate::new(1);
        let first = gate.enter("w").await;
        let other_key = gate.enter("v").await;
        assert!(tokio::time::timeout(std::time::Duration::from_millis(20), gate.enter("w")).await.is_err());
        drop(first);
        let second = gate.enter("w").await;
        drop((second, other_key));
        assert_eq!(gate.tracked_keys(), 0);
    }
}
