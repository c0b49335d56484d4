//! Validated identifiers.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest id accepted, in bytes.
pub const MAX_ID_BYTES: usize = 128;

/// Why a string is not a valid id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// Nothing was given.
    #[error("must not be empty")]
    Empty,
    /// Longer than [`MAX_ID_BYTES`].
    #[error("must be at most {MAX_ID_BYTES} bytes, got {0}")]
    TooLong(usize),
    /// A character outside `[A-Za-z0-9._:@-]`.
    #[error("must contain only [A-Za-z0-9._:@-]")]
    IllFormed,
}

fn check_id(value: &str) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty);
    }
    if value.len() > MAX_ID_BYTES {
        return Err(IdError::TooLong(value.len()));
    }
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'@' | b'-');
    if !value.bytes().all(allowed) {
        return Err(IdError::IllFormed);
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates `value` as 1..=128 bytes of `[A-Za-z0-9._:@-]`.
            pub fn parse(value: impl Into<String>) -> Result<Self, IdError> {
                let value = value.into();
                check_id(&value)?;
                Ok(Self(value))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(value: String) -> Result<Self, IdError> {
                Self::parse(value)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// The external id of an account.
    AccountId
);
id_type!(
    /// The id of a workspace.
    WorkspaceId
);
id_type!(
    /// The id of a product profile, unique within its workspace.
    ProfileId
);
id_type!(
    /// A caller's key that makes a mutation safe to retry.
    IdempotencyKey
);
id_type!(
    /// Names a charge: the Consume idempotency key, or the caller's hold key (e.g. a job id).
    ChargeKey
);

impl IdempotencyKey {
    /// The key under which `operation` on `key` is made idempotent: hold operations share the
    /// caller's hold key, so each gets its own record ("Commit/job-42"); a renewal is keyed by
    /// its period ("RenewAccount/2026-12").
    pub fn for_operation(operation: &str, key: &impl fmt::Display) -> IdempotencyKey {
        IdempotencyKey(format!("{operation}/{key}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_accept_the_documented_alphabet_up_to_128_bytes() {
        assert!(AccountId::parse("user:alice@example.com_1-2").is_ok());
        assert!(AccountId::parse("a".repeat(128)).is_ok());
    }

    #[test]
    fn ids_refuse_empty_oversized_and_ill_formed_values() {
        assert_eq!(AccountId::parse(""), Err(IdError::Empty));
        assert_eq!(AccountId::parse("a".repeat(129)), Err(IdError::TooLong(129)));
        assert_eq!(AccountId::parse("has space"), Err(IdError::IllFormed));
        assert_eq!(AccountId::parse("é"), Err(IdError::IllFormed));
        assert_eq!(AccountId::parse("a/b"), Err(IdError::IllFormed));
    }
}
