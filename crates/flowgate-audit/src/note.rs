//! C2SP `signed-note` with Ed25519 keys: key encoding (`PRIVATE+KEY+<name>+<hash>+<key>` and
//! `<name>+<hash>+<key>`), signing a text, and opening a signed note against known verifiers.
//!
//! The key hash is the first four bytes of `SHA-256(name || "\n" || 0x01 || public key)`, and a
//! signature line is `— <name> <base64(key hash || signature)>`. A note is its text (ending in
//! a newline), a blank line, then one signature line per signer.
//!
//! Leaves out what the text means (see [`crate::checkpoint`]) and where keys are stored.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// Algorithm byte that prefixes Ed25519 keys in the C2SP encodings.
const ALG_ED25519: u8 = 0x01;

/// The em dash and space that open every signature line.
const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// Upper bound on signature lines accepted in one note, so a hostile note cannot make the
/// verifier do unbounded work.
const MAX_SIGNATURES: usize = 100;

/// Why a key or note could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// Key names must be non-empty and contain no whitespace or `+`.
    #[error("invalid key name {name:?}")]
    InvalidKeyName {
        /// The rejected name.
        name: String,
    },
    /// A key string is not in the C2SP form.
    #[error("malformed key string: {reason}")]
    MalformedKey {
        /// What was wrong.
        reason: &'static str,
    },
    /// A key string's hash does not match its name and key.
    #[error("key hash {declared:08x} does not match the computed {computed:08x}")]
    KeyHashMismatch {
        /// The hash written in the key string.
        declared: u32,
        /// The hash computed from name and key.
        computed: u32,
    },
    /// The note text is not acceptable for signing or the note is not well formed.
    #[error("malformed note: {reason}")]
    MalformedNote {
        /// What was wrong.
        reason: &'static str,
    },
    /// No signature on the note is from a key the caller knows.
    #[error("note is not signed by any known key (first signer: {name} {key_id:08x})")]
    UnknownKey {
        /// Name on the first signature line.
        name: String,
        /// Key hash on the first signature line.
        key_id: u32,
    },
    /// A signature claims a known key but does not verify.
    #[error("signature by {name} {key_id:08x} does not verify")]
    BadSignature {
        /// Signer name.
        name: String,
        /// Signer key hash.
        key_id: u32,
    },
    /// The operating system's random source failed while generating a key.
    #[error("random source failed: {message}")]
    Entropy {
        /// The OS error text.
        message: String,
    },
}

/// Checks a key name: non-empty, no Unicode whitespace, no `+`.
fn check_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty() || name.contains('+') || name.chars().any(char::is_whitespace) {
        return Err(NoteError::InvalidKeyName {
            name: name.to_owned(),
        });
    }
    Ok(())
}

/// Key hash of an Ed25519 key: first four bytes of `SHA-256(name || "\n" || 0x01 || key)`.
#[must_use]
pub fn key_id(name: &str, public_key: &[u8; 32]) -> u32 {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update(b"\n");
    hasher.update([ALG_ED25519]);
    hasher.update(public_key);
    let digest = hasher.finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

fn parse_key_hash(text: &str) -> Result<u32, NoteError> {
    if text.len() != 8 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(NoteError::MalformedKey {
            reason: "key hash is not 8 hex digits",
        });
    }
    u32::from_str_radix(text, 16).map_err(|_| NoteError::MalformedKey {
        reason: "key hash is not 8 hex digits",
    })
}

fn decode_key_material(text: &str) -> Result<[u8; 32], NoteError> {
    let bytes = STANDARD.decode(text).map_err(|_| NoteError::MalformedKey {
        reason: "key is not base64",
    })?;
    match bytes.split_first() {
        Some((&ALG_ED25519, key)) => key.try_into().map_err(|_| NoteError::MalformedKey {
            reason: "Ed25519 key is not 32 bytes",
        }),
        Some(_) => Err(NoteError::MalformedKey {
            reason: "unsupported key algorithm",
        }),
        None => Err(NoteError::MalformedKey {
            reason: "empty key",
        }),
    }
}

/// An Ed25519 note signer: a key name and a secret key. Its `Debug` output hides the key.
pub struct NoteSigner {
    name: String,
    key_id: u32,
    signing_key: SigningKey,
}

impl fmt::Debug for NoteSigner {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("NoteSigner")
            .field("name", &self.name)
            .field("key_id", &format_args!("{:08x}", self.key_id))
            .finish_non_exhaustive()
    }
}

impl NoteSigner {
    /// Generates a fresh key from the operating system's random source.
    ///
    /// # Errors
    /// [`NoteError::InvalidKeyName`] or [`NoteError::Entropy`].
    pub fn generate(name: &str) -> Result<Self, NoteError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|error| NoteError::Entropy {
            message: error.to_string(),
        })?;
        let signer = Self::from_seed(name, &seed);
        seed.fill(0);
        signer
    }

    /// Builds a signer from a 32-byte Ed25519 seed.
    ///
    /// # Errors
    /// [`NoteError::InvalidKeyName`].
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Self, NoteError> {
        check_name(name)?;
        let signing_key = SigningKey::from_bytes(seed);
        let key_id = key_id(name, signing_key.verifying_key().as_bytes());
        Ok(Self {
            name: name.to_owned(),
            key_id,
            signing_key,
        })
    }

    /// Parses `PRIVATE+KEY+<name>+<hash>+<base64(0x01 || seed)>`.
    ///
    /// # Errors
    /// [`NoteError::MalformedKey`], [`NoteError::InvalidKeyName`] or
    /// [`NoteError::KeyHashMismatch`].
    pub fn parse(private_key: &str) -> Result<Self, NoteError> {
        let rest = private_key
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(NoteError::MalformedKey {
                reason: "missing PRIVATE+KEY+ prefix",
            })?;
        let mut parts = rest.splitn(3, '+');
        let (Some(name), Some(hash), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(NoteError::MalformedKey {
                reason: "expected <name>+<hash>+<key>",
            });
        };
        let declared = parse_key_hash(hash)?;
        let mut seed = decode_key_material(key)?;
        let signer = Self::from_seed(name, &seed);
        seed.fill(0);
        let signer = signer?;
        if signer.key_id != declared {
            return Err(NoteError::KeyHashMismatch {
                declared,
                computed: signer.key_id,
            });
        }
        Ok(signer)
    }

    /// The private key in C2SP form, for storing in a secret file. Handle as a secret.
    #[must_use]
    pub fn to_private_key_string(&self) -> String {
        let mut material = [0u8; 33];
        material[0] = ALG_ED25519;
        material[1..].copy_from_slice(self.signing_key.as_bytes());
        let encoded = STANDARD.encode(material);
        material.fill(0);
        format!("PRIVATE+KEY+{}+{:08x}+{encoded}", self.name, self.key_id)
    }

    /// The key name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key hash.
    #[must_use]
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The matching verifier (public key), as exported by `flowgate audit pubkey`.
    #[must_use]
    pub fn verifier(&self) -> NoteVerifier {
        NoteVerifier {
            name: self.name.clone(),
            key_id: self.key_id,
            key: self.signing_key.verifying_key(),
        }
    }

    /// Appends this signer's signature line over `text` to `out`.
    fn write_signature_line(&self, text: &str, out: &mut String) {
        let signature = self.signing_key.sign(text.as_bytes());
        let mut blob = [0u8; 68];
        blob[..4].copy_from_slice(&self.key_id.to_be_bytes());
        blob[4..].copy_from_slice(&signature.to_bytes());
        out.push_str(SIGNATURE_PREFIX);
        out.push_str(&self.name);
        out.push(' ');
        STANDARD.encode_string(blob, out);
        out.push('\n');
    }
}

/// An Ed25519 note verifier: key name, key hash and public key. `Display` gives the C2SP
/// verifier key string `<name>+<hash>+<base64(0x01 || key)>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteVerifier {
    name: String,
    key_id: u32,
    key: VerifyingKey,
}

impl fmt::Display for NoteVerifier {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut material = [0u8; 33];
        material[0] = ALG_ED25519;
        material[1..].copy_from_slice(self.key.as_bytes());
        write!(
            formatter,
            "{}+{:08x}+{}",
            self.name,
            self.key_id,
            STANDARD.encode(material)
        )
    }
}

impl std::str::FromStr for NoteVerifier {
    type Err = NoteError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl NoteVerifier {
    /// Parses `<name>+<hash>+<base64(0x01 || public key)>`.
    ///
    /// # Errors
    /// [`NoteError::MalformedKey`], [`NoteError::InvalidKeyName`] or
    /// [`NoteError::KeyHashMismatch`].
    pub fn parse(verifier_key: &str) -> Result<Self, NoteError> {
        let text = verifier_key.trim();
        let mut parts = text.splitn(3, '+');
        let (Some(name), Some(hash), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(NoteError::MalformedKey {
                reason: "expected <name>+<hash>+<key>",
            });
        };
        check_name(name)?;
        let declared = parse_key_hash(hash)?;
        let public = decode_key_material(key)?;
        let computed = key_id(name, &public);
        if computed != declared {
            return Err(NoteError::KeyHashMismatch { declared, computed });
        }
        let key = VerifyingKey::from_bytes(&public).map_err(|_| NoteError::MalformedKey {
            reason: "not a valid Ed25519 public key",
        })?;
        Ok(Self {
            name: name.to_owned(),
            key_id: declared,
            key,
        })
    }

    /// The key name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key hash.
    #[must_use]
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    fn verifies(&self, text: &str, signature: &[u8; 64]) -> bool {
        let signature = Signature::from_bytes(signature);
        self.key.verify_strict(text.as_bytes(), &signature).is_ok()
    }
}

/// Checks that `text` may be signed: non-empty, ends in a newline, no control characters
/// other than newline, no blank lines that would confuse the text/signature split.
fn check_text(text: &str) -> Result<(), NoteError> {
    if !text.ends_with('\n') {
        return Err(NoteError::MalformedNote {
            reason: "text does not end in a newline",
        });
    }
    if text.starts_with('\n') || text.contains("\n\n") {
        return Err(NoteError::MalformedNote {
            reason: "text contains a blank line",
        });
    }
    if text.chars().any(|c| c != '\n' && c.is_ascii_control()) {
        return Err(NoteError::MalformedNote {
            reason: "text contains control characters",
        });
    }
    Ok(())
}

/// Signs `text` with every signer and returns the note: text, blank line, signature lines.
///
/// # Errors
/// [`NoteError::MalformedNote`] for text that cannot be signed, or when no signer is given.
pub fn sign(text: &str, signers: &[&NoteSigner]) -> Result<String, NoteError> {
    check_text(text)?;
    if signers.is_empty() {
        return Err(NoteError::MalformedNote {
            reason: "no signers",
        });
    }
    let mut note = String::with_capacity(text.len() + 1 + signers.len() * 110);
    note.push_str(text);
    note.push('\n');
    for signer in signers {
        signer.write_signature_line(text, &mut note);
    }
    Ok(note)
}

/// Signs text the caller built from validated parts (a checkpoint body from a checked origin),
/// skipping the text checks of [`sign`].
pub(crate) fn sign_valid(text: &str, signer: &NoteSigner) -> String {
    let mut note = String::with_capacity(text.len() + 112);
    note.push_str(text);
    note.push('\n');
    signer.write_signature_line(text, &mut note);
    note
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    /// Signer name.
    pub name: String,
    /// Signer key hash.
    pub key_id: u32,
}

/// A note whose signature by at least one known key verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenedNote<'a> {
    /// The signed text, ending in a newline.
    pub text: &'a str,
    /// Signatures that verified against a known key.
    pub verified: Vec<NoteSignature>,
    /// Signatures by keys the caller did not supply (ignored, as C2SP requires).
    pub unknown: Vec<NoteSignature>,
}

/// Splits a note into text and signature lines, and checks every signature by a known key.
///
/// A note signed only by unknown keys yields [`NoteError::UnknownKey`]; a signature that
/// claims a known key (same name and hash) but does not verify yields
/// [`NoteError::BadSignature`], even if another one verifies.
///
/// # Errors
/// [`NoteError::MalformedNote`], [`NoteError::UnknownKey`] or [`NoteError::BadSignature`].
pub fn open<'a>(note: &'a str, verifiers: &[NoteVerifier]) -> Result<OpenedNote<'a>, NoteError> {
    let split = note.rfind("\n\n").ok_or(NoteError::MalformedNote {
        reason: "no blank line before the signatures",
    })?;
    let text = &note[..=split];
    let signature_block = &note[split + 2..];
    check_text(text)?;
    if signature_block.is_empty() || !signature_block.ends_with('\n') {
        return Err(NoteError::MalformedNote {
            reason: "signature block is empty or unterminated",
        });
    }
    let mut verified = Vec::new();
    let mut unknown = Vec::new();
    for (count, line) in signature_block[..signature_block.len() - 1]
        .split('\n')
        .enumerate()
    {
        if count >= MAX_SIGNATURES {
            return Err(NoteError::MalformedNote {
                reason: "too many signatures",
            });
        }
        let rest = line
            .strip_prefix(SIGNATURE_PREFIX)
            .ok_or(NoteError::MalformedNote {
                reason: "signature line does not start with an em dash",
            })?;
        let (name, encoded) = rest.split_once(' ').ok_or(NoteError::MalformedNote {
            reason: "signature line has no space",
        })?;
        if check_name(name).is_err() {
            return Err(NoteError::MalformedNote {
                reason: "signature line has an invalid key name",
            });
        }
        let blob = STANDARD
            .decode(encoded)
            .map_err(|_| NoteError::MalformedNote {
                reason: "signature is not base64",
            })?;
        let Some((id_bytes, signature)) = blob.split_first_chunk::<4>() else {
            return Err(NoteError::MalformedNote {
                reason: "signature is shorter than its key hash",
            });
        };
        let key_id = u32::from_be_bytes(*id_bytes);
        let entry = NoteSignature {
            name: name.to_owned(),
            key_id,
        };
        let known = verifiers
            .iter()
            .find(|verifier| verifier.key_id == key_id && verifier.name == name);
        match known {
            Some(verifier) => {
                let ok = <&[u8; 64]>::try_from(signature)
                    .is_ok_and(|signature| verifier.verifies(text, signature));
                if !ok {
                    return Err(NoteError::BadSignature {
                        name: entry.name,
                        key_id,
                    });
                }
                verified.push(entry);
            }
            None => unknown.push(entry),
        }
    }
    if verified.is_empty() {
        let first = unknown.into_iter().next().unwrap_or(NoteSignature {
            name: String::new(),
            key_id: 0,
        });
        return Err(NoteError::UnknownKey {
            name: first.name,
            key_id: first.key_id,
        });
    }
    Ok(OpenedNote {
        text,
        verified,
        unknown,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KAT_SIGNER: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const KAT_TEXT: &str = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
    const KAT_LINE: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

    fn kat_signer() -> NoteSigner {
        NoteSigner::parse(KAT_SIGNER).expect("known-answer key parses")
    }

    #[test]
    fn c2sp_known_answer() {
        let signer = kat_signer();
        assert_eq!(signer.key_id(), 0xc74f_20a3);
        let note = sign(KAT_TEXT, &[&signer]).expect("text is signable");
        assert_eq!(note, format!("{KAT_TEXT}\n{KAT_LINE}"));
        assert_eq!(signer.to_private_key_string(), KAT_SIGNER);
        let verifier = signer.verifier();
        let reparsed = NoteVerifier::parse(&verifier.to_string()).expect("own verifier parses");
        assert_eq!(reparsed, verifier);
        let opened = open(&note, &[verifier]).expect("verifies");
        assert_eq!(opened.text, KAT_TEXT);
        assert_eq!(opened.verified.len(), 1);
    }

    #[test]
    fn unknown_key_is_a_typed_error() {
        let note = sign(KAT_TEXT, &[&kat_signer()]).expect("signable");
        let other = NoteSigner::from_seed("PeterNeumann", &[7; 32]).expect("valid name");
        assert_eq!(
            open(&note, &[other.verifier()]),
            Err(NoteError::UnknownKey {
                name: "PeterNeumann".into(),
                key_id: 0xc74f_20a3
            })
        );
        assert!(matches!(
            open(&note, &[]),
            Err(NoteError::UnknownKey { .. })
        ));
    }

    #[test]
    fn extra_unknown_signatures_are_ignored() {
        let known = kat_signer();
        let stranger = NoteSigner::from_seed("stranger", &[9; 32]).expect("valid name");
        let note = sign(KAT_TEXT, &[&stranger, &known]).expect("signable");
        let opened = open(&note, &[known.verifier()]).expect("verifies");
        assert_eq!(opened.unknown.len(), 1);
        assert_eq!(opened.unknown[0].name, "stranger");
    }

    #[test]
    fn tampered_text_or_signature_fails() {
        let signer = kat_signer();
        let note = sign(KAT_TEXT, &[&signer]).expect("signable");
        let tampered = note.replacen("cryptography", "cryptographY", 1);
        assert!(matches!(
            open(&tampered, &[signer.verifier()]),
            Err(NoteError::BadSignature { .. })
        ));
        let tampered = note.replacen("x08go", "x08gp", 1);
        assert!(open(&tampered, &[signer.verifier()]).is_err());
    }

    #[test]
    fn malformed_inputs_are_rejected() {
        let signer = kat_signer();
        let verifiers = [signer.verifier()];
        for bad in [
            "",
            "no newline",
            "text\n",
            "text\n\n",
            "text\n\n\u{2014} PeterNeumann !!!\n",
            "text\n\n- PeterNeumann AAAA\n",
            "text\n\n\u{2014} PeterNeumann AAAA",
        ] {
            assert!(
                matches!(open(bad, &verifiers), Err(NoteError::MalformedNote { .. })),
                "{bad:?}"
            );
        }
        assert!(sign("no newline", &[&signer]).is_err());
        assert!(sign("a\n\nb\n", &[&signer]).is_err());
        assert!(sign("a\tb\n", &[&signer]).is_err());
        assert!(NoteSigner::from_seed("has space", &[1; 32]).is_err());
        assert!(NoteSigner::from_seed("a+b", &[1; 32]).is_err());
        assert!(matches!(
            NoteSigner::parse(
                "PRIVATE+KEY+PeterNeumann+c74f20a4+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
            ),
            Err(NoteError::KeyHashMismatch { .. })
        ));
        assert!(NoteVerifier::parse("name+zz+AAAA").is_err());
    }

    #[test]
    fn generated_keys_round_trip() {
        let signer = NoteSigner::generate("node-1.example").expect("OS entropy");
        let again = NoteSigner::parse(&signer.to_private_key_string()).expect("parses");
        assert_eq!(again.verifier(), signer.verifier());
        assert!(!format!("{signer:?}").contains("PRIVATE"));
    }
}
