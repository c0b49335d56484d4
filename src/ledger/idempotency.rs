//! C7: claim a key, replay its first result, or refuse a different request under it.

use crate::domain::Tenant;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::{Ledger, LedgerError};
use crate::domain::IdempotencyKey;
use crate::store::{Claim, Store, StoreTx};

/// Unwraps a [`Begun`]: the fresh transaction, or returns the replayed result from the caller.
macro_rules! fresh_or_replay {
    ($begun:expr) => {
        match $begun {
            $crate::ledger::idempotency::Begun::Fresh(tx) => tx,
            $crate::ledger::idempotency::Begun::Replayed(result) => return Ok(result),
        }
    };
}

/// A started mutation: either a fresh transaction holding the key, or the first result.
pub(super) enum Begun<Tx, T> {
    /// The key is ours; run the script in this transaction.
    Fresh(Tx),
    /// The same request ran before; this is its result.
    Replayed(T),
}

/// The request as stored under its key: the operation's name plus every field.
pub(super) fn fingerprint<R: Serialize>(operation: &str, request: &R) -> Result<Value, LedgerError> {
    let mut fields = match serde_json::to_value(request) {
        Ok(Value::Object(fields)) => fields,
        Ok(other) => Map::from_iter([("request".to_owned(), other)]),
        Err(e) => return Err(LedgerError::internal(format!("request not serialisable: {e}"))),
    };
    fields.insert("operation".to_owned(), Value::String(operation.to_owned()));
    Ok(Value::Object(fields))
}

/// The first field (in name order, `operation` first) whose value differs.
pub(super) fn first_difference(stored: &Value, request: &Value) -> String {
    let (Value::Object(stored), Value::Object(request)) = (stored, request) else {
        return "request".to_owned();
    };
    if stored.get("operation") != request.get("operation") {
        return "operation".to_owned();
    }
    let mut names: Vec<&String> = stored.keys().chain(request.keys()).collect();
    names.sort();
    names
        .into_iter()
        .find(|name| stored.get(*name) != request.get(*name))
        .map_or_else(|| "request".to_owned(), ToString::to_string)
}

impl<S: Store> Ledger<S> {
    /// Starts a mutation guarded by `key` within `scope`.
    pub(super) async fn begin_idempotent<T: DeserializeOwned>(
        &self,
        scope: &Tenant,
        key: &IdempotencyKey,
        request: &Value,
    ) -> Result<Begun<S::Tx, T>, LedgerError> {
        let mut tx = self.store.begin().await?;
        match tx.claim_idempotency(scope, key, request, self.now_ms()).await? {
            Claim::Claimed => Ok(Begun::Fresh(tx)),
            Claim::Used { request: stored, response } => {
                if stored != *request {
                    return Err(LedgerError::IdempotencyConflict {
                        key: key.to_string(),
                        field: first_difference(&stored, request),
                    });
                }
                let result = serde_json::from_value(response)
                    .map_err(|e| LedgerError::internal(format!("stored result of {key}: {e}")))?;
                crate::metrics::replayed();
                Ok(Begun::Replayed(result))
            }
        }
    }

    /// Records the result under the key and commits.
    pub(super) async fn finish<T: Serialize>(
        &self,
        mut tx: S::Tx,
        scope: &Tenant,
        key: &IdempotencyKey,
        result: T,
    ) -> Result<T, LedgerError> {
        let response = serde_json::to_value(&result)
            .map_err(|e| LedgerError::internal(format!("result not serialisable: {e}")))?;
        tx.record_response(scope, key, &response).await?;
        tx.commit().await?;
        Ok(result)
    }

    /// [`finish`](Self::finish) for a script that causes `events`: they are written to the
    /// outbox in the same transaction, and the publisher is woken once it commits.
    pub(super) async fn finish_notifying<T: Serialize>(
        &self,
        mut tx: S::Tx,
        scope: &Tenant,
        key: &IdempotencyKey,
        result: T,
        events: &[crate::domain::Notification],
    ) -> Result<T, LedgerError> {
        tx.insert_notifications(events, self.now_ms()).await?;
        let result = self.finish(tx, scope, key, result).await?;
        if !events.is_empty() {
            self.outbox_written.notify_one();
        }
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::first_difference;

    #[test]
    fn the_first_differing_field_is_named() {
        let stored = json!({"operation": "a", "amount": 1, "id": "x"});
        assert_eq!(first_difference(&stored, &json!({"operation": "b", "amount": 1, "id": "x"})), "operation");
        assert_eq!(first_difference(&stored, &json!({"operation": "a", "amount": 2, "id": "y"})), "amount");
        assert_eq!(first_difference(&stored, &json!({"operation": "a", "amount": 1, "id": "y"})), "id");
    }
}
