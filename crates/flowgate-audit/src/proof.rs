//! Offline inclusion proofs (`flowgate audit proof --index N`): a self-contained JSON bundle
//! of one canonical record, its Merkle inclusion proof and the signed checkpoint it leads to,
//! which an auditor checks with only the log's public key.
//!
//! Leaves out generating the proof hashes (see [`crate::source::prove_inclusion`] or
//! [`crate::merkle::inclusion_proof`]) and choosing the checkpoint.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::merkle::{Hash, leaf_hash, verify_inclusion};
use crate::note::NoteVerifier;
use crate::record::{AuditRecord, RecordError};
use crate::verify::{Tamper, Unverifiable, VerifyError, base64_hash, open_checkpoint};

/// Proof that record `index` is in the log whose signed checkpoint is `checkpoint`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionBundle {
    /// The log's origin.
    pub origin: String,
    /// Index of the record.
    pub index: u64,
    /// The canonical record, embedded byte for byte.
    pub record: Box<RawValue>,
    /// Tree size the proof is for (the checkpoint's size).
    pub tree_size: u64,
    /// Inclusion proof hashes, leaf to root (base64).
    #[serde(with = "base64_hash::list")]
    pub proof: Vec<Hash>,
    /// The signed checkpoint note at `tree_size`.
    pub checkpoint: String,
}

/// The record bytes are not JSON text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record bytes are not a JSON document: {detail}")]
pub struct BundleError {
    /// Parser message.
    pub detail: String,
}

impl InclusionBundle {
    /// Assembles a bundle from stored data.
    ///
    /// # Errors
    /// [`BundleError`] when `canonical_record` is not JSON text.
    pub fn new(
        origin: &str,
        index: u64,
        canonical_record: &[u8],
        tree_size: u64,
        proof: Vec<Hash>,
        checkpoint_note: &str,
    ) -> Result<Self, BundleError> {
        let text = String::from_utf8(canonical_record.to_vec()).map_err(|error| BundleError {
            detail: error.to_string(),
        })?;
        let record = RawValue::from_string(text).map_err(|error| BundleError {
            detail: error.to_string(),
        })?;
        Ok(Self {
            origin: origin.to_owned(),
            index,
            record,
            tree_size,
            proof,
            checkpoint: checkpoint_note.to_owned(),
        })
    }

    /// Checks the checkpoint signature, that the record parses, and that the proof leads
    /// from the record's leaf hash to the signed root. Returns the record.
    ///
    /// # Errors
    /// [`VerifyError::UnknownKey`], [`VerifyError::Tampered`] (bad signature, wrong origin
    /// or size, unparseable record, failing proof) or [`VerifyError::Unverifiable`] (newer
    /// record schema).
    pub fn verify(&self, verifiers: &[NoteVerifier]) -> Result<AuditRecord, VerifyError> {
        let index = Some(self.index);
        let signed = open_checkpoint(&self.checkpoint, verifiers, &self.origin, index)?;
        if signed.checkpoint.size != self.tree_size {
            return Err(VerifyError::tampered(
                index,
                Tamper::InclusionProofFailed {
                    detail: format!(
                        "bundle tree size {} but checkpoint size {}",
                        self.tree_size, signed.checkpoint.size
                    ),
                },
            ));
        }
        let bytes = self.record.get().as_bytes();
        let record = AuditRecord::parse(bytes).map_err(|error| match error {
            RecordError::UnsupportedSchema { schema } => VerifyError::Unverifiable {
                index,
                kind: Unverifiable::UnsupportedSchema { schema },
            },
            RecordError::Invalid { detail } => {
                VerifyError::tampered(index, Tamper::UnparseableRecord { detail })
            }
        })?;
        verify_inclusion(
            self.index,
            self.tree_size,
            &leaf_hash(bytes),
            &self.proof,
            &signed.checkpoint.root,
        )
        .map_err(|error| {
            VerifyError::tampered(
                index,
                Tamper::InclusionProofFailed {
                    detail: error.to_string(),
                },
            )
        })?;
        Ok(record)
    }
}
