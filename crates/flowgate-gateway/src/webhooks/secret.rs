//! Webhook secrets: minting (`whsec_` + 64 hex digits, shown once at creation), sealing for
//! storage under the master key, and the request signature receivers verify.
//!
//! Sealing is encrypt-then-MAC built only from HMAC-SHA-256 (the workspace's one primitive):
//! the keystream is HMAC(k_enc, nonce ‖ counter) blocks, the tag HMAC(k_mac, nonce ‖
//! ciphertext), with both keys derived from the master key under their own labels and a
//! random 16-byte nonce per seal. Stored form: `v1.<nonce hex>.<ciphertext hex>.<tag hex>`.
//! A database dump therefore holds no usable signing secret without the master key.

use flowgate_types::{MasterKey, random_bytes, to_hex};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const ENCRYPTION_LABEL: &str = "webhook-secret-encryption";
const MAC_LABEL: &str = "webhook-secret-mac";

/// A fresh signing secret.
pub fn generate() -> String {
    format!("whsec_{}", to_hex(&random_bytes::<32>()))
}

fn mac(key: &[u8]) -> HmacSha256 {
    #[expect(clippy::expect_used, reason = "HMAC accepts keys of any length")]
    HmacSha256::new_from_slice(key).expect("HMAC takes any key length")
}

/// `flowgate-signature` value: `t=<unix seconds>,v1=<hex HMAC-SHA-256(secret, "t.body")>`.
pub fn signature(secret: &str, unix_seconds: i64, body: &[u8]) -> String {
    let mut signer = mac(secret.as_bytes());
    signer.update(unix_seconds.to_string().as_bytes());
    signer.update(b".");
    signer.update(body);
    format!(
        "t={unix_seconds},v1={}",
        to_hex(&signer.finalize().into_bytes())
    )
}

/// The stored secret could not be opened (wrong master key or tampered row).
#[derive(Debug, thiserror::Error)]
#[error("stored webhook secret cannot be opened (wrong master key or corrupt row)")]
pub struct OpenError;

/// Seals and opens secrets under keys derived from the master key.
#[derive(Clone)]
pub struct SecretSealer {
    encryption_key: [u8; 32],
    mac_key: [u8; 32],
}

impl std::fmt::Debug for SecretSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretSealer(<keys>)")
    }
}

impl SecretSealer {
    pub fn new(master_key: &MasterKey) -> Self {
        Self {
            encryption_key: master_key.derive(ENCRYPTION_LABEL),
            mac_key: master_key.derive(MAC_LABEL),
        }
    }

    fn apply_keystream(&self, nonce: &[u8; 16], data: &mut [u8]) {
        for (counter, chunk) in (0u64..).zip(data.chunks_mut(32)) {
            let mut block = mac(&self.encryption_key);
            block.update(nonce);
            block.update(&counter.to_be_bytes());
            let stream = block.finalize().into_bytes();
            for (byte, key) in chunk.iter_mut().zip(stream.iter()) {
                *byte ^= key;
            }
        }
    }

    fn tag(&self, nonce: &[u8; 16], ciphertext: &[u8]) -> HmacSha256 {
        let mut tag = mac(&self.mac_key);
        tag.update(nonce);
        tag.update(ciphertext);
        tag
    }

    pub fn seal(&self, secret: &str) -> String {
        let nonce: [u8; 16] = random_bytes();
        let mut ciphertext = secret.as_bytes().to_vec();
        self.apply_keystream(&nonce, &mut ciphertext);
        let tag = self.tag(&nonce, &ciphertext).finalize().into_bytes();
        format!(
            "v1.{}.{}.{}",
            to_hex(&nonce),
            to_hex(&ciphertext),
            to_hex(&tag)
        )
    }

    pub fn open(&self, sealed: &str) -> Result<String, OpenError> {
        let mut parts = sealed.split('.');
        let (Some("v1"), Some(nonce), Some(ciphertext), Some(tag), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(OpenError);
        };
        let nonce: [u8; 16] = from_hex(nonce)
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or(OpenError)?;
        let mut data = from_hex(ciphertext).ok_or(OpenError)?;
        let tag = from_hex(tag).ok_or(OpenError)?;
        self.tag(&nonce, &data)
            .verify_slice(&tag)
            .map_err(|_| OpenError)?;
        self.apply_keystream(&nonce, &mut data);
        String::from_utf8(data).map_err(|_| OpenError)
    }
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.as_bytes()
        .chunks_exact(2)
        .map(|pair| {
            let high = char::from(pair[0]).to_digit(16)?;
            let low = char::from(pair[1]).to_digit(16)?;
            u8::try_from(high * 16 + low).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_round_trip_hides_the_secret() {
        let sealer = SecretSealer::new(&MasterKey::generate());
        let secret = generate();
        assert!(secret.starts_with("whsec_") && secret.len() == 70);
        let sealed = sealer.seal(&secret);
        assert!(!sealed.contains(&secret[6..]));
        assert_ne!(sealed, sealer.seal(&secret), "fresh nonce per seal");
        assert_eq!(sealer.open(&sealed).ok(), Some(secret));
    }

    #[test]
    fn tampering_and_wrong_keys_are_refused() {
        let sealer = SecretSealer::new(&MasterKey::generate());
        let sealed = sealer.seal("whsec_abc");
        let other = SecretSealer::new(&MasterKey::generate());
        assert!(other.open(&sealed).is_err());
        let mut flipped = sealed.clone().into_bytes();
        let position = sealed.find('.').map_or(0, |dot| dot + 40);
        flipped[position] = if flipped[position] == b'0' {
            b'1'
        } else {
            b'0'
        };
        let flipped = String::from_utf8(flipped).unwrap_or_default();
        assert!(sealer.open(&flipped).is_err());
        for bad in ["", "v1", "v2.00.00.00", "v1.zz.00.00", "v1.00.00.00.00"] {
            assert!(sealer.open(bad).is_err(), "`{bad}`");
        }
    }

    #[test]
    fn signature_matches_the_documented_recipe() {
        // HMAC-SHA-256(key "whsec_test", "1700000000.{}"), computed independently with
        // Python: hmac.new(b"whsec_test", b"1700000000.{}", hashlib.sha256).hexdigest()
        assert_eq!(
            signature("whsec_test", 1_700_000_000, b"{}"),
            "t=1700000000,v1=35495024f4ef3f94e5a93e22221544c4b75e9a42300cd965ab81cb85cd994e91"
        );
    }
}
