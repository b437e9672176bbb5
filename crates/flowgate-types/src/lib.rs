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
