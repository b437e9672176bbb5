//! C2SP `tlog-checkpoint` bodies (`<origin>\n<size>\n<base64 root>\n[extension lines]`),
//! signed and opened as C2SP signed notes, and the [`CheckpointPolicy`] deciding when the
//! appender publishes one.
//!
//! Leaves out storage and distribution of checkpoints (the gateway stores the note text as
//! returned by [`SignedCheckpoint::note`]).

use std::num::NonZeroU64;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::merkle::Hash;
use crate::note::{self, NoteError, NoteSigner, NoteVerifier};

/// Why a checkpoint body or note is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The body does not follow the tlog-checkpoint grammar.
    #[error("malformed checkpoint: {reason}")]
    Malformed {
        /// What was wrong.
        reason: &'static str,
    },
    /// The signed-note layer failed (unknown key, bad signature, malformed note).
    #[error(transparent)]
    Note(#[from] NoteError),
}

/// A tlog checkpoint: the log's origin, its size and the root hash at that size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Names the log (one per gateway node); also the signing key name by convention.
    pub origin: String,
    /// Number of leaves the root covers.
    pub size: u64,
    /// RFC 6962 root of the first `size` leaves.
    pub root: Hash,
    /// Optional extension lines (non-empty, no newline), kept verbatim.
    pub extensions: Vec<String>,
}

/// Checks that an origin can be the first line of a checkpoint and a note key name.
///
/// # Errors
/// [`CheckpointError::Malformed`] for an empty origin, or one with whitespace, `+` or
/// control characters.
pub fn check_origin(origin: &str) -> Result<(), CheckpointError> {
    if origin.is_empty()
        || origin.contains('+')
        || origin.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(CheckpointError::Malformed {
            reason: "origin must be non-empty without whitespace, control characters or '+'",
        });
    }
    Ok(())
}

impl Checkpoint {
    /// The checkpoint body, ending in a newline.
    #[must_use]
    pub fn to_text(&self) -> String {
        let mut text = String::with_capacity(self.origin.len() + 70);
        text.push_str(&self.origin);
        text.push('\n');
        text.push_str(&self.size.to_string());
        text.push('\n');
        STANDARD.encode_string(self.root, &mut text);
        text.push('\n');
        for line in &self.extensions {
            text.push_str(line);
            text.push('\n');
        }
        text
    }

    /// Parses a checkpoint body (the text of a note).
    ///
    /// # Errors
    /// [`CheckpointError::Malformed`].
    pub fn parse(text: &str) -> Result<Self, CheckpointError> {
        let body = text.strip_suffix('\n').ok_or(CheckpointError::Malformed {
            reason: "body does not end in a newline",
        })?;
        let mut lines = body.split('\n');
        let origin = lines.next().unwrap_or_default();
        if origin.is_empty() {
            return Err(CheckpointError::Malformed {
                reason: "empty origin line",
            });
        }
        let size_text = lines.next().ok_or(CheckpointError::Malformed {
            reason: "missing size line",
        })?;
        let valid_decimal = !size_text.is_empty()
            && size_text.bytes().all(|b| b.is_ascii_digit())
            && (size_text == "0" || !size_text.starts_with('0'));
        let size = size_text
            .parse::<u64>()
            .ok()
            .filter(|_| valid_decimal)
            .ok_or(CheckpointError::Malformed {
                reason: "size is not a canonical decimal",
            })?;
        let root_text = lines.next().ok_or(CheckpointError::Malformed {
            reason: "missing root line",
        })?;
        let root = STANDARD
            .decode(root_text)
            .ok()
            .and_then(|bytes| Hash::try_from(bytes.as_slice()).ok())
            .ok_or(CheckpointError::Malformed {
                reason: "root is not a base64 SHA-256 hash",
            })?;
        let mut extensions = Vec::new();
        for line in lines {
            if line.is_empty() {
                return Err(CheckpointError::Malformed {
                    reason: "empty extension line",
                });
            }
            extensions.push(line.to_owned());
        }
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        })
    }

    /// Signs the body as a C2SP note.
    ///
    /// # Errors
    /// [`CheckpointError::Note`] if the body is not signable (for example an origin or an
    /// extension line containing control characters).
    pub fn sign(self, signer: &NoteSigner) -> Result<SignedCheckpoint, CheckpointError> {
        let note = note::sign(&self.to_text(), &[signer])?;
        Ok(SignedCheckpoint {
            checkpoint: self,
            note,
        })
    }
}

/// A checkpoint together with its signed note text (what gets stored and published).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    /// The parsed body.
    pub checkpoint: Checkpoint,
    /// The complete signed note: body, blank line, signature lines.
    pub note: String,
}

/// Opens a signed checkpoint note: verifies a signature by a known key and parses the body.
///
/// # Errors
/// [`CheckpointError::Note`] (notably [`NoteError::UnknownKey`] and
/// [`NoteError::BadSignature`]) or [`CheckpointError::Malformed`].
pub fn open(
    note_text: &str,
    verifiers: &[NoteVerifier],
) -> Result<SignedCheckpoint, CheckpointError> {
    let opened = note::open(note_text, verifiers)?;
    let checkpoint = Checkpoint::parse(opened.text)?;
    Ok(SignedCheckpoint {
        checkpoint,
        note: note_text.to_owned(),
    })
}

/// When to publish a checkpoint: after `every_records` new leaves or `every_ms` milliseconds
/// since the previous one, whichever comes first, and only if the tree grew since the last
/// checkpoint (so one size never gets two checkpoints, and hence never two roots).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointPolicy {
    /// Publish once this many leaves were added since the last checkpoint.
    pub every_records: NonZeroU64,
    /// Publish once this much time passed since the last checkpoint (if the tree grew).
    pub every_ms: NonZeroU64,
}

impl Default for CheckpointPolicy {
    /// Every 1,000 records or 10 seconds.
    fn default() -> Self {
        Self {
            every_records: NonZeroU64::MIN.saturating_add(999),
            every_ms: NonZeroU64::MIN.saturating_add(9_999),
        }
    }
}

impl CheckpointPolicy {
    /// Whether a checkpoint is due for a tree of `size` at `now_ms`, given the size and time
    /// of the last published checkpoint.
    #[must_use]
    pub fn is_due(&self, size: u64, now_ms: u64, last_size: u64, last_ms: u64) -> bool {
        if size <= last_size {
            return false;
        }
        size - last_size >= self.every_records.get()
            || now_ms.saturating_sub(last_ms) >= self.every_ms.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::EMPTY_ROOT;

    fn signer() -> NoteSigner {
        NoteSigner::from_seed("gw-1.example", &[3; 32]).expect("valid name")
    }

    #[test]
    fn body_round_trips_with_extensions() {
        let checkpoint = Checkpoint {
            origin: "gw-1.example".into(),
            size: 42,
            root: EMPTY_ROOT,
            extensions: vec!["ext one".into()],
        };
        let text = checkpoint.to_text();
        assert_eq!(
            text,
            "gw-1.example\n42\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\next one\n"
        );
        assert_eq!(Checkpoint::parse(&text), Ok(checkpoint));
    }

    #[test]
    fn malformed_bodies_are_rejected() {
        for bad in [
            "o\n42\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
            "\n42\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n",
            "o\n042\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n",
            "o\n-1\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n",
            "o\n1\nAAAA\n",
            "o\n1\n",
            "o\n1\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n\n",
        ] {
            assert!(Checkpoint::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn signed_checkpoint_opens_with_the_right_key_only() {
        let signer = signer();
        let signed = Checkpoint {
            origin: "gw-1.example".into(),
            size: 7,
            root: [1; 32],
            extensions: vec![],
        }
        .sign(&signer)
        .expect("signable");
        let opened = open(&signed.note, &[signer.verifier()]).expect("opens");
        assert_eq!(opened, signed);
        let stranger = NoteSigner::from_seed("gw-1.example", &[4; 32]).expect("valid name");
        assert!(matches!(
            open(&signed.note, &[stranger.verifier()]),
            Err(CheckpointError::Note(NoteError::UnknownKey { .. }))
        ));
    }

    #[test]
    fn policy_publishes_on_count_or_time_only_when_grown() {
        let policy = CheckpointPolicy {
            every_records: NonZeroU64::new(10).unwrap_or(NonZeroU64::MIN),
            every_ms: NonZeroU64::new(1_000).unwrap_or(NonZeroU64::MIN),
        };
        assert!(!policy.is_due(5, 100, 0, 0));
        assert!(policy.is_due(10, 100, 0, 0));
        assert!(policy.is_due(1, 1_000, 0, 0));
        assert!(!policy.is_due(0, 5_000, 0, 0));
        assert!(!policy.is_due(10, 5_000, 10, 0));
        assert!(!policy.is_due(9, 5_000, 10, 0));
    }
}
