//! Signed policy bundles: a preset plus rules plus metadata, in canonical bytes, signed with
//! Ed25519.
//!
//! Owns the bundle document format, its canonical bytes, signing, and verification with typed
//! errors (unsigned, tampered, signed by another key, malformed). Everything here is a pure
//! function over bytes and keys: reading files, key management and `flowgate rules compile
//! --sign` belong to the CLI, and the "require signatures" switch to the gateway's config.
//!
//! Document (JSON):
//! ```json
//! {"format": "flowgate-policy-bundle/v1",
//!  "bundle": {"metadata": {"name": "acme", "version": 7}, "preset": "default", "rules": [...]},
//!  "signature": {"algorithm": "ed25519", "key_id": "<16 hex>", "value": "<base64>"}}
//! ```
//! The signature covers `flowgate-policy-bundle/v1\n` followed by the compact JSON of
//! `bundle` as re-serialised by this crate (field order fixed by the types, no maps), so
//! whitespace or key order changes to the file do not matter but any change of content does.

use base64::Engine;
use ed25519_dalek::{Signature, Signer};
use serde::{Deserialize, Serialize};

pub use ed25519_dalek::{SigningKey, VerifyingKey};

use crate::error::PolicyError;
use crate::policy::Policy;
use crate::rule::{Preset, Rule};

/// The format tag this crate writes and accepts.
pub const BUNDLE_FORMAT: &str = "flowgate-policy-bundle/v1";

/// The only signature algorithm.
pub const SIGNATURE_ALGORITHM: &str = "ed25519";

/// Who made the bundle and which revision it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleMetadata {
    /// A name for operators (`acme-prod`).
    pub name: String,
    /// A revision number that only grows: a node may refuse a bundle older than its current
    /// one (rollback protection is the gateway's decision).
    pub version: u64,
    /// When it was compiled (RFC 3339, supplied by the caller: this crate reads no clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// The signed content: metadata, an optional preset and rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyBundle {
    /// Name and revision.
    pub metadata: BundleMetadata,
    /// The preset the rules sit on, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preset: Option<Preset>,
    /// The rules.
    #[serde(default)]
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BundleSignature {
    algorithm: String,
    key_id: String,
    value: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BundleDocument {
    format: String,
    bundle: PolicyBundle,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signature: Option<BundleSignature>,
}

/// Why a bundle was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// Not a bundle document (bad JSON, unknown or missing fields).
    #[error("malformed policy bundle: {message}")]
    Malformed {
        /// The parser's message.
        message: String,
    },
    /// The `format` tag is not one this version understands.
    #[error("unsupported policy bundle format `{found}` (expected `{BUNDLE_FORMAT}`)")]
    UnsupportedFormat {
        /// The tag found.
        found: String,
    },
    /// Signatures are required and the bundle has none.
    #[error("policy bundle is not signed")]
    Unsigned,
    /// The signature uses an algorithm other than Ed25519.
    #[error("unsupported signature algorithm `{found}` (expected `{SIGNATURE_ALGORITHM}`)")]
    UnsupportedAlgorithm {
        /// The algorithm named.
        found: String,
    },
    /// The bundle was signed by a different key than the one trusted.
    #[error("policy bundle was signed by key {found}, but the trusted key is {expected}")]
    WrongKey {
        /// Id of the trusted key.
        expected: String,
        /// Id named in the signature.
        found: String,
    },
    /// The signature is not 64 bytes of base64.
    #[error("policy bundle signature is not valid base64 of 64 bytes")]
    BadSignatureEncoding,
    /// The content does not match the signature: it was altered after signing.
    #[error("policy bundle content does not match its signature (altered after signing)")]
    Tampered,
    /// A key given as base64 is not 32 bytes, or not a valid Ed25519 public key.
    #[error("invalid Ed25519 {which} key")]
    InvalidKey {
        /// `signing` or `verifying`.
        which: &'static str,
    },
    /// The rules in the bundle do not compile.
    #[error("policy bundle rules are invalid: {0}")]
    InvalidRules(#[from] PolicyError),
}

/// A short public id of a verifying key: the first 8 bytes of the key, in hex.
#[must_use]
pub fn key_id(key: &VerifyingKey) -> String {
    key.to_bytes()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Decodes a verifying (public) key from standard base64 of its 32 bytes.
///
/// # Errors
/// [`BundleError::InvalidKey`] when the input is not base64 of a valid 32-byte key.
pub fn verifying_key_from_base64(encoded: &str) -> Result<VerifyingKey, BundleError> {
    let invalid = BundleError::InvalidKey { which: "verifying" };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| invalid.clone())?;
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| invalid.clone())?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| invalid)
}

/// Decodes a signing (secret) key from standard base64 of its 32-byte seed.
///
/// # Errors
/// [`BundleError::InvalidKey`] when the input is not base64 of 32 bytes.
pub fn signing_key_from_base64(encoded: &str) -> Result<SigningKey, BundleError> {
    let invalid = BundleError::InvalidKey { which: "signing" };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| invalid.clone())?;
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| invalid)?;
    Ok(SigningKey::from_bytes(&bytes))
}

impl PolicyBundle {
    /// A bundle of `rules` on `preset`.
    #[must_use]
    pub fn new(metadata: BundleMetadata, preset: Option<Preset>, rules: Vec<Rule>) -> Self {
        PolicyBundle {
            metadata,
            preset,
            rules,
        }
    }

    /// The bytes a signature covers.
    #[must_use]
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(256);
        bytes.extend_from_slice(BUNDLE_FORMAT.as_bytes());
        bytes.push(b'\n');
        // Serialising plain structs, strings and numbers into a Vec cannot fail.
        if serde_json::to_writer(&mut bytes, self).is_err() {
            bytes.truncate(BUNDLE_FORMAT.len() + 1);
        }
        bytes
    }

    /// Compiles the bundle into a policy.
    ///
    /// # Errors
    /// As [`Policy::compile`].
    pub fn compile(&self) -> Result<Policy, PolicyError> {
        Policy::compile(self.preset, &self.rules)
    }

    /// The bundle document, signed with `key`. Refuses rules that do not compile.
    ///
    /// # Errors
    /// [`BundleError::InvalidRules`].
    pub fn sign(&self, key: &SigningKey) -> Result<String, BundleError> {
        self.compile()?;
        let signature = key.sign(&self.canonical_bytes());
        let document = BundleDocument {
            format: BUNDLE_FORMAT.to_owned(),
            bundle: self.clone(),
            signature: Some(BundleSignature {
                algorithm: SIGNATURE_ALGORITHM.to_owned(),
                key_id: key_id(&key.verifying_key()),
                value: base64::engine::general_purpose::STANDARD.encode(signature.to_bytes()),
            }),
        };
        Ok(to_pretty_json(&document))
    }

    /// The bundle document without a signature (for nodes that do not require one).
    ///
    /// # Errors
    /// [`BundleError::InvalidRules`].
    pub fn to_unsigned_document(&self) -> Result<String, BundleError> {
        self.compile()?;
        Ok(to_pretty_json(&BundleDocument {
            format: BUNDLE_FORMAT.to_owned(),
            bundle: self.clone(),
            signature: None,
        }))
    }
}

fn to_pretty_json(document: &BundleDocument) -> String {
    // Serialising plain structs to a String cannot fail.
    serde_json::to_string_pretty(document).unwrap_or_default()
}

fn parse(document: &[u8]) -> Result<BundleDocument, BundleError> {
    let parsed: BundleDocument =
        serde_json::from_slice(document).map_err(|e| BundleError::Malformed {
            message: e.to_string(),
        })?;
    if parsed.format != BUNDLE_FORMAT {
        return Err(BundleError::UnsupportedFormat {
            found: parsed.format,
        });
    }
    Ok(parsed)
}

/// Verifies a bundle document against the trusted key and returns its content. Checks, in
/// order: format, presence of a signature, algorithm, key id, signature encoding, signature,
/// and that the rules compile.
///
/// # Errors
/// Every [`BundleError`] variant except `InvalidKey`.
pub fn verify_bundle(document: &[u8], trusted: &VerifyingKey) -> Result<PolicyBundle, BundleError> {
    let parsed = parse(document)?;
    let signature = parsed.signature.ok_or(BundleError::Unsigned)?;
    if signature.algorithm != SIGNATURE_ALGORITHM {
        return Err(BundleError::UnsupportedAlgorithm {
            found: signature.algorithm,
        });
    }
    let expected = key_id(trusted);
    if signature.key_id != expected {
        return Err(BundleError::WrongKey {
            expected,
            found: signature.key_id,
        });
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(signature.value.as_bytes())
        .map_err(|_| BundleError::BadSignatureEncoding)?;
    let raw: [u8; 64] = raw
        .try_into()
        .map_err(|_| BundleError::BadSignatureEncoding)?;
    let signature = Signature::from_bytes(&raw);
    trusted
        .verify_strict(&parsed.bundle.canonical_bytes(), &signature)
        .map_err(|_| BundleError::Tampered)?;
    parsed.bundle.compile()?;
    Ok(parsed.bundle)
}

/// Reads a bundle document without checking any signature (for nodes that do not require
/// signatures). The rules must still compile.
///
/// # Errors
/// [`BundleError::Malformed`], [`BundleError::UnsupportedFormat`], [`BundleError::InvalidRules`].
pub fn read_bundle_unverified(document: &[u8]) -> Result<PolicyBundle, BundleError> {
    let parsed = parse(document)?;
    parsed.bundle.compile()?;
    Ok(parsed.bundle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::{Action, RuleMatch};

    fn bundle() -> PolicyBundle {
        PolicyBundle::new(
            BundleMetadata {
                name: "acme".to_owned(),
                version: 3,
                created_at: Some("2026-11-21T12:00:00Z".to_owned()),
                description: String::new(),
            },
            Some(Preset::Default),
            vec![Rule::new(
                "falcon",
                RuleMatch::keywords(["project falcon"]),
                Action::Block,
            )],
        )
    }

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    #[test]
    fn signed_bundle_verifies_and_compiles() {
        let document = bundle().sign(&key(1)).unwrap();
        let verified = verify_bundle(document.as_bytes(), &key(1).verifying_key()).unwrap();
        assert_eq!(verified, bundle());
        assert!(verified.compile().is_ok());
    }

    #[test]
    fn reformatted_document_still_verifies() {
        let document = bundle().sign(&key(1)).unwrap();
        let value: serde_json::Value = serde_json::from_str(&document).unwrap();
        let compact = serde_json::to_vec(&value).unwrap();
        assert!(verify_bundle(&compact, &key(1).verifying_key()).is_ok());
    }

    #[test]
    fn unsigned_is_refused_but_readable_unverified() {
        let document = bundle().to_unsigned_document().unwrap();
        assert_eq!(
            verify_bundle(document.as_bytes(), &key(1).verifying_key()),
            Err(BundleError::Unsigned)
        );
        assert_eq!(
            read_bundle_unverified(document.as_bytes()).unwrap(),
            bundle()
        );
    }

    #[test]
    fn tampered_content_is_refused() {
        let document = bundle().sign(&key(1)).unwrap();
        let tampered = document.replace("\"block\"", "\"flag\"");
        assert_ne!(tampered, document);
        assert_eq!(
            verify_bundle(tampered.as_bytes(), &key(1).verifying_key()),
            Err(BundleError::Tampered)
        );
        let version_bump = document.replace("\"version\": 3", "\"version\": 4");
        assert_eq!(
            verify_bundle(version_bump.as_bytes(), &key(1).verifying_key()),
            Err(BundleError::Tampered)
        );
    }

    #[test]
    fn wrong_key_is_named() {
        let document = bundle().sign(&key(1)).unwrap();
        let err = verify_bundle(document.as_bytes(), &key(2).verifying_key()).unwrap_err();
        assert!(matches!(err, BundleError::WrongKey { .. }), "{err:?}");
    }

    #[test]
    fn forged_key_id_is_still_tampered() {
        let document = bundle().sign(&key(1)).unwrap();
        let forged = document.replace(
            &key_id(&key(1).verifying_key()),
            &key_id(&key(2).verifying_key()),
        );
        assert_eq!(
            verify_bundle(forged.as_bytes(), &key(2).verifying_key()),
            Err(BundleError::Tampered)
        );
    }

    #[test]
    fn malformed_and_foreign_documents() {
        assert!(matches!(
            verify_bundle(b"not json", &key(1).verifying_key()),
            Err(BundleError::Malformed { .. })
        ));
        let document = bundle()
            .sign(&key(1))
            .unwrap()
            .replace(BUNDLE_FORMAT, "other/v9");
        assert!(matches!(
            verify_bundle(document.as_bytes(), &key(1).verifying_key()),
            Err(BundleError::UnsupportedFormat { .. })
        ));
        let bad_sig = bundle().sign(&key(1)).unwrap();
        let value: serde_json::Value = serde_json::from_str(&bad_sig).unwrap();
        let signature = value["signature"]["value"].as_str().unwrap().to_owned();
        let broken = bad_sig.replace(&signature, "AAAA");
        assert_eq!(
            verify_bundle(broken.as_bytes(), &key(1).verifying_key()),
            Err(BundleError::BadSignatureEncoding)
        );
    }

    #[test]
    fn invalid_rules_are_not_signed() {
        let mut bad = bundle();
        bad.rules.push(Rule::new(
            "falcon",
            RuleMatch::keywords(["x"]),
            Action::Flag,
        ));
        assert!(matches!(
            bad.sign(&key(1)),
            Err(BundleError::InvalidRules(_))
        ));
    }

    #[test]
    fn keys_round_trip_through_base64() {
        let engine = base64::engine::general_purpose::STANDARD;
        let signing = signing_key_from_base64(&engine.encode([9u8; 32])).unwrap();
        let verifying =
            verifying_key_from_base64(&engine.encode(signing.verifying_key().to_bytes())).unwrap();
        assert_eq!(verifying, signing.verifying_key());
        assert!(signing_key_from_base64("short").is_err());
        assert!(verifying_key_from_base64(&engine.encode([1u8; 5])).is_err());
    }
}
