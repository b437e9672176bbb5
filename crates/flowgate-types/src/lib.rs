//! Domain types shared by every flowgate crate: identifiers, API-key material, the master key and
//! token usage. Pure data and pure functions: no IO, no async, no HTTP.

pub mod envelope;
pub mod ids;
pub mod keys;
pub mod master;
pub mod usage;

pub use envelope::{Envelope, EnvelopeError};
pub use ids::{KeyId, RequestId, RequestIdGenerator, TenantId};
pub use keys::{ApiKeySecret, KeyDigest, KeyFormatError, KeyHasher};
pub use master::{MasterKey, MasterKeyError};
pub use usage::Usage;

/// The wire dialect a client speaks to flowgate; errors and streams answer in the same dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ApiFormat {
    /// OpenAI Chat Completions and embeddings.
    OpenAi,
    /// Anthropic Messages.
    Anthropic,
}

/// Milliseconds since the Unix epoch, the one time representation stored anywhere.
pub fn now_millis() -> i64 {
    let elapsed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
}

/// Lower-case hex of a byte slice (digests are stored and compared as hex text).
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

/// Fills a buffer from the operating system's random source.
///
/// # Panics
/// Panics if the OS random source is unavailable: continuing without randomness would mint
/// guessable keys, so stopping is the only safe answer.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buffer = [0u8; N];
    #[expect(
        clippy::expect_used,
        reason = "no safe way to continue without OS randomness"
    )]
    getrandom::fill(&mut buffer).expect("operating system random source unavailable");
    buffer
}

thread_local! {
    /// wyrand state per thread, seeded once from the operating system.
    static FAST_RANDOM: std::cell::Cell<u64> = std::cell::Cell::new(u64::from_le_bytes(random_bytes::<8>()));
}

/// A fast non-cryptographic random number (wyrand, per thread, no system call): for trace ids,
/// sampling, route draws and retry jitter, which need to differ, not to be secret. Keys,
/// nonces and secrets use `random_bytes`.
pub fn fast_random() -> u64 {
    FAST_RANDOM.with(|state| {
        let next = state.get().wrapping_add(0xa076_1d64_78bd_642f);
        state.set(next);
        let product = u128::from(next) * u128::from(next ^ 0xe703_7ed1_a0b4_28db);
        ((product >> 64) as u64) ^ (product as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn fast_random_differs_within_and_across_threads_and_spreads_over_its_range() {
        let here: Vec<u64> = (0..1000).map(|_| fast_random()).collect();
        let there = std::thread::spawn(|| (0..1000).map(|_| fast_random()).collect::<Vec<u64>>())
            .join()
            .unwrap_or_else(|_| panic!("thread panicked"));
        let distinct: HashSet<u64> = here.iter().chain(&there).copied().collect();
        assert_eq!(distinct.len(), 2000);
        // Each of the 16 top-nibble buckets gets a share of 1,000 draws (62 expected).
        let mut buckets = [0u32; 16];
        for value in &here {
            buckets[usize::try_from(value >> 60).unwrap_or(0)] += 1;
        }
        assert!(
            buckets.iter().all(|count| (25..=110).contains(count)),
            "{buckets:?}"
        );
    }
}
