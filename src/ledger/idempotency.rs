//! C7: a key's first request runs; the same request again replays its result; a different
//! request under it is refused, naming the first field that differs ([`replay`]).
//!
//! Two ways to learn whether a key was used, one answer:
//! - claim first (admin scripts, [`Ledger::begin_idempotent`]): the transaction inserts the key's
//!   record before it does anything, so a racing retry waits on that row and then replays;
//! - look up once locked (the hot path's batches, [`replay_stored`]): a batch holds its scopes'
//!   row locks, under which every record of the scope is committed or not yet begun, so it looks
//!   up the records of its calls (all of them when it expects replays; otherwise only those of
//!   calls that failed, as a replay that succeeds again collides with its own record on write and
//!   reruns the batch).

use crate::domain::Tenant;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::{Ledger, LedgerError};
use crate::domain::IdempotencyKey;
use crate::store::{Claim, Store, StoreTx};

/// Unwraps a [`Begun`]: the fresh transaction, or returns the replayed result from the caller.
///
/// A macro because the alternative that hides no `return`, a runner taking the script as an
/// async closure over `&mut S::Tx`, yields a future rustc cannot prove `Send` for every lifetime
/// of that borrow ("implementation of `Send` is not general enough"), and tonic's handlers must
/// be `Send`; boxing each script's future would cost every script more noise than this macro.
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
fn first_difference(stored: &Value, request: &Value) -> String {
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

/// C7's answer to `request` under `key`, whose committed request is `stored` with `response`: the
/// same request replays the response; a different one is refused.
fn replay<T: DeserializeOwned>(
    key: &IdempotencyKey,
    stored: &Value,
    response: Value,
    request: &Value,
) -> Result<T, LedgerError> {
    if stored != request {
        return Err(LedgerError::IdempotencyConflict {
            key: key.to_string(),
            field: first_difference(stored, request),
        });
    }
    let result =
        serde_json::from_value(response).map_err(|e| LedgerError::internal(format!("stored result of {key}: {e}")))?;
    crate::metrics::replayed();
    Ok(result)
}

/// The answers to the calls of `keys` (scope, key) with `requests` (as stored, in the same
/// order), of one scope or several, in one lookup: for each whose key holds a committed record in
/// its scope, what [`replay`] makes of it; `None` for the others. The caller holds the scopes' row
/// locks.
pub(super) async fn replay_stored<T: DeserializeOwned>(
    tx: &mut impl StoreTx,
    keys: &[(Tenant, IdempotencyKey)],
    requests: &[&Value],
) -> Result<Vec<Option<Result<T, LedgerError>>>, LedgerError> {
    let mut answers: Vec<Option<Result<T, LedgerError>>> = keys.iter().map(|_| None).collect();
    if keys.is_empty() {
        return Ok(answers);
    }
    for (position, stored, response) in tx.idempotency_records(keys).await? {
        if let (Some(answer), Some((_, key)), Some(request)) =
            (answers.get_mut(position), keys.get(position), requests.get(position))
        {
            *answer = Some(replay(key, &stored, response, request));
        }
    }
    Ok(answers)
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
            Claim::Used { request: stored, response } => Ok(Begun::Replayed(replay(key, &stored, response, request)?)),
        }
    }

    /// Records the result under the key and commits.
    pub(super) async fn finish<T: Serialize>(
        &self,
        tx: S::Tx,
        scope: &Tenant,
        key: &IdempotencyKey,
        result: T,
    ) -> Result<T, LedgerError> {
        self.finish_notifying(tx, scope, key, result, &[]).await
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
        let response = serde_json::to_value(&result)
            .map_err(|e| LedgerError::internal(format!("result not serialisable: {e}")))?;
        tx.record_response(scope, key, &response).await?;
        self.commit_transaction(tx, !events.is_empty()).await?;
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
