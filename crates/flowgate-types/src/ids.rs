//! Identifier newtypes (tenant, key, request) and the cheap request-id generator used on the
//! hot path. Ids are opaque strings on the wire; only their constructors know their shape.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(Arc<str>);

        impl $name {
            /// A fresh random id with the type's prefix.
            pub fn generate() -> Self {
                let bytes: [u8; 12] = crate::random_bytes();
                Self(format!("{}{}", $prefix, crate::to_hex(&bytes)).into())
            }

            /// Wraps an id read from storage or a URL path.
            pub fn new(value: impl Into<Arc<str>>) -> Self {
                Self(value.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), &self.0)
            }
        }
    };
}

string_id!(
    /// A tenant: the unit that owns keys, limits and rules.
    TenantId,
    "ten_"
);
string_id!(
    /// The public id of an API key (never the secret).
    KeyId,
    "key_"
);
string_id!(
    /// The id of one request, echoed in `x-request-id` and recorded in logs and the audit log.
    RequestId,
    "req_"
);

/// Mints request ids without a syscall or a lock: a random per-process prefix plus a counter,
/// so ids are unique across replicas and cheap on the hot path.
#[derive(Debug)]
pub struct RequestIdGenerator {
    prefix: u64,
    counter: AtomicU64,
}

impl RequestIdGenerator {
    pub fn new() -> Self {
        Self {
            prefix: u64::from_le_bytes(crate::random_bytes()),
            counter: AtomicU64::new(0),
        }
    }

    pub fn next_id(&self) -> RequestId {
        let sequence = self.counter.fetch_add(1, Ordering::Relaxed);
        RequestId::new(format!("req_{:016x}{:08x}", self.prefix, sequence))
    }
}

impl Default for RequestIdGenerator {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_carry_prefix_and_differ() {
        let first = TenantId::generate();
        let second = TenantId::generate();
        assert!(first.as_str().starts_with("ten_"));
        assert_eq!(first.as_str().len(), 4 + 24);
        assert_ne!(first, second);
    }

    #[test]
    fn request_ids_are_unique_and_ordered_within_a_process() {
        let generator = RequestIdGenerator::new();
        let first = generator.next_id();
        let second = generator.next_id();
        assert_ne!(first, second);
        assert!(first.as_str() < second.as_str());
        assert_eq!(first.as_str().len(), 4 + 16 + 8);
    }
}
