//! The store-facing trait: where the verifier and proof generation read records, leaf hashes
//! and checkpoints from, plus the async drivers that page through it.
//!
//! The SQLite and PostgreSQL audit stores implement [`AuditSource`] with sqlx; the trait's
//! futures are `Send` so the drivers run on any async runtime. This module owns no SQL and
//! no runtime.

use std::future::Future;

use crate::merkle::{self, Hash, ProofError, ProveError};
use crate::verify::{LogVerifier, StoredEntry, VerifyError, VerifyOptions, VerifyReport};

/// Read access to one node's stored audit log.
pub trait AuditSource: Sync {
    /// The store's error type.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Number of records stored.
    fn record_count(&self) -> impl Future<Output = Result<u64, Self::Error>> + Send;

    /// Appends up to `limit` entries with index `from` and above, in index order, to `out`
    /// (fewer at the end of the log). Include the stored leaf hash if the store keeps one.
    fn read_entries(
        &self,
        from: u64,
        limit: usize,
        out: &mut Vec<StoredEntry>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Appends the stored leaf hashes for indices `start..end`, in order, to `out`.
    fn read_leaf_hashes(
        &self,
        start: u64,
        end: u64,
        out: &mut Vec<Hash>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Appends every stored checkpoint note (any order) to `out`.
    fn read_checkpoints(
        &self,
        out: &mut Vec<String>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// Verifies a stored log, reading entries `page_size` at a time. With `options.resume` and a
/// saved state, reading starts at the saved size.
///
/// # Errors
/// Any [`VerifyError`]; store failures become [`VerifyError::Io`].
pub async fn verify_source<S: AuditSource>(
    source: &S,
    options: VerifyOptions,
    page_size: usize,
) -> Result<VerifyReport, VerifyError> {
    let mut verifier = LogVerifier::new(options)?;
    let mut notes = Vec::new();
    source
        .read_checkpoints(&mut notes)
        .await
        .map_err(VerifyError::io)?;
    for note in &notes {
        verifier.add_checkpoint(note)?;
    }
    let page_size = page_size.max(1);
    let mut page = Vec::with_capacity(page_size);
    loop {
        page.clear();
        source
            .read_entries(verifier.size(), page_size, &mut page)
            .await
            .map_err(VerifyError::io)?;
        let read = page.len();
        verifier.push_batch(&page)?;
        if read < page_size {
            break;
        }
    }
    verifier.finish()
}

async fn subtree_root<S: AuditSource>(
    source: &S,
    start: u64,
    end: u64,
    buffer: &mut Vec<Hash>,
) -> Result<Hash, ProveError<S::Error>> {
    let mut frontier = merkle::Frontier::new();
    let mut position = start;
    while position < end {
        let chunk_end = end.min(position.saturating_add(merkle::LEAF_READ_CHUNK));
        buffer.clear();
        source
            .read_leaf_hashes(position, chunk_end, buffer)
            .await
            .map_err(ProveError::Source)?;
        if buffer.len() as u64 != chunk_end - position {
            return Err(ProofError::NotEnoughLeaves {
                size: end,
                available: position + buffer.len() as u64,
            }
            .into());
        }
        for leaf in buffer.iter() {
            frontier.push(*leaf);
        }
        position = chunk_end;
    }
    Ok(frontier.root())
}

async fn proof_from_ranges<S: AuditSource>(
    source: &S,
    size: u64,
    ranges: Vec<(u64, u64)>,
) -> Result<Vec<Hash>, ProveError<S::Error>> {
    let available = source.record_count().await.map_err(ProveError::Source)?;
    if size > available {
        return Err(ProofError::NotEnoughLeaves { size, available }.into());
    }
    let mut buffer = Vec::new();
    let mut proof = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        proof.push(subtree_root(source, start, end, &mut buffer).await?);
    }
    Ok(proof)
}

/// Inclusion proof of `index` in the tree of the first `size` stored records. Reads
/// O(size) leaf hashes; cache subtree roots in the store if proofs are frequent.
///
/// # Errors
/// [`ProofError`] for invalid arguments, or a store failure.
pub async fn prove_inclusion<S: AuditSource>(
    source: &S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, ProveError<S::Error>> {
    let ranges = merkle::inclusion_proof_ranges(index, size)?;
    proof_from_ranges(source, size, ranges).await
}

/// Consistency proof between the trees of the first `size1` and `size2` stored records.
///
/// # Errors
/// [`ProofError`] for invalid arguments, or a store failure.
pub async fn prove_consistency<S: AuditSource>(
    source: &S,
    size1: u64,
    size2: u64,
) -> Result<Vec<Hash>, ProveError<S::Error>> {
    let ranges = merkle::consistency_proof_ranges(size1, size2)?;
    proof_from_ranges(source, size2, ranges).await
}
