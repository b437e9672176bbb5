//! RFC 6962 / RFC 9162 Merkle tree over SHA-256: leaf and node hashing, the incremental
//! [`Frontier`] (compact range of O(log n) perfect-subtree roots), inclusion and consistency
//! proof generation from stored leaf hashes, and proof verification.
//!
//! Leaves hash as `SHA-256(0x00 || bytes)`, interior nodes as `SHA-256(0x01 || left || right)`,
//! and the empty tree as `SHA-256("")`. Proof hashes are ordered from the leaf towards the root,
//! as in RFC 9162 §2.1.3 and §2.1.4.
//!
//! This module knows nothing about records, signatures or storage: leaf hashes reach proof
//! generation through the [`LeafHashSource`] trait, which a database store implements.

use sha2::{Digest, Sha256};

/// Length in bytes of every hash in the tree.
pub const HASH_LEN: usize = 32;

/// A SHA-256 tree hash (leaf, node or root).
pub type Hash = [u8; HASH_LEN];

/// Root of the empty tree: `SHA-256("")`.
pub const EMPTY_ROOT: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// Hashes one leaf: `SHA-256(0x00 || bytes)`.
#[must_use]
pub fn leaf_hash(bytes: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x00]);
    hasher.update(bytes);
    hasher.finalize().into()
}

/// Hashes an interior node: `SHA-256(0x01 || left || right)`.
#[must_use]
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut block = [0u8; 1 + 2 * HASH_LEN];
    block[0] = 0x01;
    block[1..=HASH_LEN].copy_from_slice(left);
    block[1 + HASH_LEN..].copy_from_slice(right);
    Sha256::digest(block).into()
}

/// Why a proof did not verify or could not be generated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The leaf index is not inside the tree.
    #[error("leaf index {index} is not below tree size {size}")]
    IndexOutOfRange {
        /// The requested leaf index.
        index: u64,
        /// The tree size the proof is for.
        size: u64,
    },
    /// The older size is larger than the newer one.
    #[error("size1 {size1} is larger than size2 {size2}")]
    SizesReversed {
        /// The older tree size.
        size1: u64,
        /// The newer tree size.
        size2: u64,
    },
    /// A consistency proof from the empty tree carries no information and is refused.
    #[error("consistency proof from the empty tree is meaningless")]
    FromEmptyTree,
    /// The proof has the wrong number of hashes for the sizes and index given.
    #[error("proof has {got} hashes, expected {expected}")]
    WrongLength {
        /// Hashes in the proof.
        got: usize,
        /// Hashes the sizes require.
        expected: usize,
    },
    /// A hash in the proof or a root is not 32 bytes long.
    #[error("a hash is {len} bytes long, expected 32")]
    BadHashLength {
        /// Length of the offending value.
        len: usize,
    },
    /// The proof is well-formed but yields a different root.
    #[error("proof does not lead to the expected root")]
    RootMismatch,
    /// Two tree roots of the same size differ.
    #[error("roots differ for equal tree sizes")]
    RootsDiffer,
    /// The tree requested is larger than what the leaf source holds.
    #[error("tree size {size} exceeds the {available} leaves available")]
    NotEnoughLeaves {
        /// The tree size asked for.
        size: u64,
        /// The leaves the source holds.
        available: u64,
    },
}

/// Incremental Merkle tree state: the roots of the perfect subtrees that make up a tree of
/// `size` leaves, largest (leftmost) first. Holds exactly `size.count_ones()` hashes, so an
/// append costs O(log n) hashes amortised O(1), and the root costs O(log n).
///
/// Save `(size(), hashes())` to restart without rereading the log, and rebuild with
/// [`Frontier::from_parts`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    hashes: Vec<Hash>,
}

/// The root of a perfect, aligned subtree: leaves `index << level .. (index + 1) << level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubtreeRoot {
    /// Height of the subtree (it covers `2^level` leaves).
    pub level: u8,
    /// Position among subtrees of that height.
    pub index: u64,
    /// The subtree's root hash.
    pub hash: Hash,
}

/// Splits `start..end` into perfect aligned subtrees, largest first, if the range is a node
/// of the RFC 6962 tree shape (sizes strictly decreasing); `None` otherwise. The range's root
/// is then the right fold of the pieces' roots, like a frontier.
#[must_use]
pub fn perfect_pieces(start: u64, end: u64) -> Option<Vec<(u8, u64)>> {
    let mut pieces = Vec::with_capacity(8);
    let mut position = start;
    let mut previous_level = u32::MAX;
    while position < end {
        let remaining = end - position;
        let mut level = 63 - remaining.leading_zeros();
        if position != 0 {
            level = level.min(position.trailing_zeros());
        }
        if level >= previous_level {
            return None;
        }
        pieces.push((u8::try_from(level).ok()?, position >> level));
        position += 1 << level;
        previous_level = level;
    }
    Some(pieces)
}

/// A saved frontier did not match its size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a frontier for size {size} needs {expected} hashes, got {got}")]
pub struct FrontierError {
    /// The declared tree size.
    pub size: u64,
    /// Hashes the size requires (its number of set bits).
    pub expected: usize,
    /// Hashes supplied.
    pub got: usize,
}

impl Frontier {
    /// An empty tree.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds a frontier from a saved size and its subtree roots (largest first).
    ///
    /// # Errors
    /// [`FrontierError`] when the number of hashes is not the number of set bits of `size`.
    pub fn from_parts(size: u64, hashes: Vec<Hash>) -> Result<Self, FrontierError> {
        let expected = size.count_ones() as usize;
        if hashes.len() != expected {
            return Err(FrontierError {
                size,
                expected,
                got: hashes.len(),
            });
        }
        Ok(Self { size, hashes })
    }

    /// Number of leaves appended so far.
    #[must_use]
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The perfect-subtree roots, largest (leftmost) first.
    #[must_use]
    pub fn hashes(&self) -> &[Hash] {
        &self.hashes
    }

    /// Appends one leaf hash (already computed with [`leaf_hash`]).
    #[inline]
    pub fn push(&mut self, leaf: Hash) {
        self.push_reporting(leaf, |_| {});
    }

    /// Appends one leaf hash and reports every perfect subtree of height one or more that
    /// this leaf completes (lowest first), so a store can cache them for fast proofs.
    pub fn push_reporting(&mut self, leaf: Hash, mut completed: impl FnMut(SubtreeRoot)) {
        let mut carry = leaf;
        let mut size = self.size;
        let new_size = self.size + 1;
        let mut level = 0u8;
        // Every trailing set bit of the old size is a subtree of the same height as the
        // carry: merge them, exactly like binary increment.
        while size & 1 == 1 {
            // The frontier holds one hash per set bit, so a set bit implies a hash is present.
            let Some(left) = self.hashes.pop() else { break };
            carry = node_hash(&left, &carry);
            size >>= 1;
            level += 1;
            completed(SubtreeRoot {
                level,
                index: (new_size >> level) - 1,
                hash: carry,
            });
        }
        self.hashes.push(carry);
        self.size = new_size;
    }

    /// Root hash of the current tree (`EMPTY_ROOT` when empty).
    #[must_use]
    pub fn root(&self) -> Hash {
        let mut iter = self.hashes.iter().rev();
        let Some(last) = iter.next() else {
            return EMPTY_ROOT;
        };
        iter.fold(*last, |acc, left| node_hash(left, &acc))
    }
}

/// Computes the root of a tree over the given leaf hashes in one pass.
#[must_use]
pub fn root_of(leaves: &[Hash]) -> Hash {
    let mut frontier = Frontier::new();
    for leaf in leaves {
        frontier.push(*leaf);
    }
    frontier.root()
}

/// Where proof generation reads stored leaf hashes from. Implemented by the SQLite and
/// PostgreSQL audit stores (leaf hashes are stored beside each record) and by in-memory
/// vectors for tests.
pub trait LeafHashSource {
    /// The store's error type.
    type Error;

    /// Number of leaves stored.
    ///
    /// # Errors
    /// Store failures.
    fn leaf_count(&self) -> Result<u64, Self::Error>;

    /// Appends the leaf hashes with indices in `start..end` to `out`, in index order.
    /// Called with `end - start` of at most [`LEAF_READ_CHUNK`].
    ///
    /// # Errors
    /// Store failures, or fewer leaves than requested.
    fn leaf_hashes(&self, start: u64, end: u64, out: &mut Vec<Hash>) -> Result<(), Self::Error>;

    /// A cached root of the subtree `start..end`, if the store keeps one (for example the
    /// frontier saved at a checkpoint). The default keeps none, and proof generation then
    /// hashes the leaves, which costs O(end - start).
    ///
    /// # Errors
    /// Store failures.
    fn cached_subtree_root(&self, start: u64, end: u64) -> Result<Option<Hash>, Self::Error> {
        let _ = (start, end);
        Ok(None)
    }
}

/// Largest range handed to [`LeafHashSource::leaf_hashes`] in one call.
pub const LEAF_READ_CHUNK: u64 = 4096;

impl LeafHashSource for [Hash] {
    type Error = std::convert::Infallible;

    fn leaf_count(&self) -> Result<u64, Self::Error> {
        Ok(self.len() as u64)
    }

    fn leaf_hashes(&self, start: u64, end: u64, out: &mut Vec<Hash>) -> Result<(), Self::Error> {
        let len = self.len() as u64;
        let start = start.min(len);
        let end = end.clamp(start, len);
        // Both bounds are clamped to the slice length, which fits in usize.
        out.extend_from_slice(&self[start as usize..end as usize]);
        Ok(())
    }
}

impl LeafHashSource for Vec<Hash> {
    type Error = std::convert::Infallible;

    fn leaf_count(&self) -> Result<u64, Self::Error> {
        self.as_slice().leaf_count()
    }

    fn leaf_hashes(&self, start: u64, end: u64, out: &mut Vec<Hash>) -> Result<(), Self::Error> {
        self.as_slice().leaf_hashes(start, end, out)
    }
}

/// Error from proof generation: either the store failed or the request was invalid.
#[derive(Debug, thiserror::Error)]
pub enum ProveError<E> {
    /// The leaf source failed.
    #[error("leaf source failed")]
    Source(#[source] E),
    /// The sizes or index are not valid for the tree.
    #[error(transparent)]
    Invalid(#[from] ProofError),
}

/// Root of the subtree over leaves `start..end`, read from `source`.
///
/// # Errors
/// Store failures, or [`ProofError::NotEnoughLeaves`] if the source returned too few leaves.
pub fn subtree_root<S: LeafHashSource + ?Sized>(
    source: &S,
    start: u64,
    end: u64,
) -> Result<Hash, ProveError<S::Error>> {
    if let Some(cached) = source
        .cached_subtree_root(start, end)
        .map_err(ProveError::Source)?
    {
        return Ok(cached);
    }
    let mut frontier = Frontier::new();
    let mut buffer = Vec::with_capacity(LEAF_READ_CHUNK.min(end.saturating_sub(start)) as usize);
    let mut position = start;
    while position < end {
        let chunk_end = end.min(position.saturating_add(LEAF_READ_CHUNK));
        buffer.clear();
        source
            .leaf_hashes(position, chunk_end, &mut buffer)
            .map_err(ProveError::Source)?;
        if buffer.len() as u64 != chunk_end - position {
            return Err(ProofError::NotEnoughLeaves {
                size: end,
                available: position + buffer.len() as u64,
            }
            .into());
        }
        for leaf in &buffer {
            frontier.push(*leaf);
        }
        position = chunk_end;
    }
    Ok(frontier.root())
}

/// Largest power of two strictly below `n` (`n >= 2`).
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

fn check_available<S: LeafHashSource + ?Sized>(
    source: &S,
    size: u64,
) -> Result<(), ProveError<S::Error>> {
    let available = source.leaf_count().map_err(ProveError::Source)?;
    if size > available {
        return Err(ProofError::NotEnoughLeaves { size, available }.into());
    }
    Ok(())
}

/// The subtrees whose roots form the inclusion proof of `index` in a tree of `size` leaves,
/// as half-open leaf ranges ordered leaf to root. Lets async stores compute each root their
/// own way (see [`crate::source::prove_inclusion`]).
///
/// # Errors
/// [`ProofError::IndexOutOfRange`].
pub fn inclusion_proof_ranges(index: u64, size: u64) -> Result<Vec<(u64, u64)>, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    // Walk down from the root, collecting sibling subtrees top-down, then reverse.
    let mut ranges = Vec::with_capacity(64);
    let (mut start, mut end) = (0u64, size);
    while end - start > 1 {
        let k = split_point(end - start);
        if index < start + k {
            ranges.push((start + k, end));
            end = start + k;
        } else {
            ranges.push((start, start + k));
            start += k;
        }
    }
    ranges.reverse();
    Ok(ranges)
}

/// The subtrees whose roots form the consistency proof between sizes `size1` and `size2`
/// (RFC 9162 §2.1.4.1), as leaf ranges ordered leaf to root. Empty for equal sizes.
///
/// # Errors
/// [`ProofError::SizesReversed`] or [`ProofError::FromEmptyTree`].
pub fn consistency_proof_ranges(size1: u64, size2: u64) -> Result<Vec<(u64, u64)>, ProofError> {
    if size1 > size2 {
        return Err(ProofError::SizesReversed { size1, size2 });
    }
    if size1 == size2 {
        return Ok(Vec::new());
    }
    if size1 == 0 {
        return Err(ProofError::FromEmptyTree);
    }
    // SUBPROOF(m, D[start..end], complete), unrolled: descend while collecting siblings.
    let mut ranges = Vec::with_capacity(64);
    let (mut start, mut end) = (0u64, size2);
    let mut m = size1;
    let mut complete = true;
    loop {
        let n = end - start;
        if m == n {
            if !complete {
                ranges.push((start, end));
            }
            break;
        }
        let k = split_point(n);
        if m <= k {
            ranges.push((start + k, end));
            end = start + k;
        } else {
            ranges.push((start, start + k));
            start += k;
            m -= k;
            complete = false;
        }
    }
    ranges.reverse();
    Ok(ranges)
}

/// Generates the inclusion proof (RFC 9162 §2.1.3.1) of leaf `index` in the tree of the first
/// `size` leaves of `source`. Hashes are ordered leaf to root.
///
/// # Errors
/// [`ProofError::IndexOutOfRange`], [`ProofError::NotEnoughLeaves`] or a store failure.
pub fn inclusion_proof<S: LeafHashSource + ?Sized>(
    source: &S,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, ProveError<S::Error>> {
    let ranges = inclusion_proof_ranges(index, size)?;
    check_available(source, size)?;
    ranges
        .into_iter()
        .map(|(start, end)| subtree_root(source, start, end))
        .collect()
}

/// Generates the consistency proof (RFC 9162 §2.1.4.1) between the trees of the first `size1`
/// and `size2` leaves of `source`. Empty when the sizes are equal.
///
/// # Errors
/// [`ProofError::SizesReversed`], [`ProofError::FromEmptyTree`],
/// [`ProofError::NotEnoughLeaves`] or a store failure.
pub fn consistency_proof<S: LeafHashSource + ?Sized>(
    source: &S,
    size1: u64,
    size2: u64,
) -> Result<Vec<Hash>, ProveError<S::Error>> {
    let ranges = consistency_proof_ranges(size1, size2)?;
    if !ranges.is_empty() {
        check_available(source, size2)?;
    }
    ranges
        .into_iter()
        .map(|(start, end)| subtree_root(source, start, end))
        .collect()
}

/// Verifies an inclusion proof (RFC 9162 §2.1.3.2).
///
/// # Errors
/// [`ProofError`] describing the first check that failed.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    let computed = root_from_inclusion(index, size, leaf, proof)?;
    if computed == *root {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

/// Computes the root an inclusion proof leads to.
///
/// # Errors
/// [`ProofError::IndexOutOfRange`] or [`ProofError::WrongLength`].
pub fn root_from_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
) -> Result<Hash, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let expected = inclusion_proof_len(index, size);
    if proof.len() != expected {
        return Err(ProofError::WrongLength {
            got: proof.len(),
            expected,
        });
    }
    let mut node_index = index;
    let mut last_index = size - 1;
    let mut hash = *leaf;
    for sibling in proof {
        if node_index & 1 == 1 || node_index == last_index {
            hash = node_hash(sibling, &hash);
            if node_index & 1 == 0 {
                // A right-border node with no right sibling moves up without hashing.
                while node_index & 1 == 0 && node_index != 0 {
                    node_index >>= 1;
                    last_index >>= 1;
                }
            }
        } else {
            hash = node_hash(&hash, sibling);
        }
        node_index >>= 1;
        last_index >>= 1;
    }
    Ok(hash)
}

/// Number of hashes in the inclusion proof of `index` in a tree of `size` (`index < size`).
fn inclusion_proof_len(index: u64, size: u64) -> usize {
    let inner = 64 - (index ^ (size - 1)).leading_zeros();
    let border = (index >> inner).count_ones();
    (inner + border) as usize
}

/// Verifies a consistency proof (RFC 9162 §2.1.4.2) between a tree of `size1` with `root1` and
/// a tree of `size2` with `root2`.
///
/// Equal sizes need an empty proof and equal roots (the empty-tree root when both are zero);
/// a proof from the empty tree to a non-empty one is refused as meaningless.
///
/// # Errors
/// [`ProofError`] describing the first check that failed.
pub fn verify_consistency(
    size1: u64,
    size2: u64,
    proof: &[Hash],
    root1: &Hash,
    root2: &Hash,
) -> Result<(), ProofError> {
    if size1 > size2 {
        return Err(ProofError::SizesReversed { size1, size2 });
    }
    if size1 == size2 {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength {
                got: proof.len(),
                expected: 0,
            });
        }
        if root1 != root2 {
            return Err(ProofError::RootsDiffer);
        }
        if size1 == 0 && *root1 != EMPTY_ROOT {
            return Err(ProofError::RootMismatch);
        }
        return Ok(());
    }
    if size1 == 0 {
        return Err(ProofError::FromEmptyTree);
    }
    if proof.is_empty() {
        return Err(ProofError::WrongLength {
            got: 0,
            expected: consistency_proof_len(size1, size2),
        });
    }
    let expected = consistency_proof_len(size1, size2);
    if proof.len() != expected {
        return Err(ProofError::WrongLength {
            got: proof.len(),
            expected,
        });
    }
    // When size1 is a power of two its root is the first node of the path and is omitted
    // from the proof.
    let (seed, rest) = if size1.is_power_of_two() {
        (*root1, proof)
    } else {
        (proof[0], &proof[1..])
    };
    let mut first_index = size1 - 1;
    let mut last_index = size2 - 1;
    while first_index & 1 == 1 {
        first_index >>= 1;
        last_index >>= 1;
    }
    let mut first_hash = seed;
    let mut second_hash = seed;
    for sibling in rest {
        if last_index == 0 {
            return Err(ProofError::WrongLength {
                got: proof.len(),
                expected,
            });
        }
        if first_index & 1 == 1 || first_index == last_index {
            first_hash = node_hash(sibling, &first_hash);
            second_hash = node_hash(sibling, &second_hash);
            if first_index & 1 == 0 {
                while first_index & 1 == 0 && first_index != 0 {
                    first_index >>= 1;
                    last_index >>= 1;
                }
            }
        } else {
            second_hash = node_hash(&second_hash, sibling);
        }
        first_index >>= 1;
        last_index >>= 1;
    }
    if last_index != 0 {
        return Err(ProofError::WrongLength {
            got: proof.len(),
            expected,
        });
    }
    if first_hash != *root1 || second_hash != *root2 {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Number of hashes in the consistency proof between `size1` and `size2` (`0 < size1 < size2`).
fn consistency_proof_len(size1: u64, size2: u64) -> usize {
    let shift = size1.trailing_zeros();
    let inner = (64 - ((size1 - 1) ^ (size2 - 1)).leading_zeros()) - shift;
    let border = ((size1 - 1) >> (inner + shift)).count_ones();
    let seed = usize::from(!size1.is_power_of_two());
    seed + (inner + border) as usize
}

/// Converts wire bytes (for example decoded base64) into a [`Hash`](type@Hash).
///
/// # Errors
/// [`ProofError::BadHashLength`] when `bytes` is not 32 bytes long.
pub fn hash_from_slice(bytes: &[u8]) -> Result<Hash, ProofError> {
    bytes
        .try_into()
        .map_err(|_| ProofError::BadHashLength { len: bytes.len() })
}

/// Verifies an inclusion proof given as wire bytes (decoded base64), as received from an
/// untrusted party: every hash must be 32 bytes long.
///
/// # Errors
/// [`ProofError::BadHashLength`] or any error of [`verify_inclusion`].
pub fn verify_inclusion_bytes<P: AsRef<[u8]>>(
    index: u64,
    size: u64,
    leaf: &[u8],
    proof: &[P],
    root: &[u8],
) -> Result<(), ProofError> {
    let leaf = hash_from_slice(leaf)?;
    let root = hash_from_slice(root)?;
    let proof = proof
        .iter()
        .map(|hash| hash_from_slice(hash.as_ref()))
        .collect::<Result<Vec<_>, _>>()?;
    verify_inclusion(index, size, &leaf, &proof, &root)
}

/// Verifies a consistency proof given as wire bytes (decoded base64). For equal non-zero sizes
/// the roots are only compared byte for byte (their length is not checked, as in the
/// transparency-dev reference verifier); otherwise every hash must be 32 bytes long.
///
/// # Errors
/// [`ProofError::BadHashLength`] or any error of [`verify_consistency`].
pub fn verify_consistency_bytes<P: AsRef<[u8]>>(
    size1: u64,
    size2: u64,
    proof: &[P],
    root1: &[u8],
    root2: &[u8],
) -> Result<(), ProofError> {
    if size1 == size2 && size1 != 0 {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength {
                got: proof.len(),
                expected: 0,
            });
        }
        return if root1 == root2 {
            Ok(())
        } else {
            Err(ProofError::RootsDiffer)
        };
    }
    let root1 = hash_from_slice(root1)?;
    let root2 = hash_from_slice(root2)?;
    let proof = proof
        .iter()
        .map(|hash| hash_from_slice(hash.as_ref()))
        .collect::<Result<Vec<_>, _>>()?;
    verify_consistency(size1, size2, &proof, &root1, &root2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
    }

    /// Reference MTH straight from the RFC's recursive definition.
    fn reference_root(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => EMPTY_ROOT,
            1 => leaves[0],
            n => {
                let k = split_point(n as u64) as usize;
                node_hash(&reference_root(&leaves[..k]), &reference_root(&leaves[k..]))
            }
        }
    }

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        assert_eq!(EMPTY_ROOT, <[u8; 32]>::from(Sha256::digest([])));
        assert_eq!(Frontier::new().root(), EMPTY_ROOT);
    }

    #[test]
    fn frontier_matches_recursive_definition() {
        let all = leaves(70);
        let mut frontier = Frontier::new();
        for (i, leaf) in all.iter().enumerate() {
            frontier.push(*leaf);
            assert_eq!(
                frontier.hashes().len(),
                (i as u64 + 1).count_ones() as usize
            );
            assert_eq!(
                frontier.root(),
                reference_root(&all[..=i]),
                "size {}",
                i + 1
            );
        }
    }

    #[test]
    fn push_reports_completed_subtrees() {
        let all = leaves(16);
        let mut frontier = Frontier::new();
        let mut reported = Vec::new();
        for leaf in &all {
            frontier.push_reporting(*leaf, |subtree| reported.push(subtree));
        }
        assert_eq!(reported.len(), 15, "8 + 4 + 2 + 1 interior nodes");
        for subtree in reported {
            let start = (subtree.index << subtree.level) as usize;
            let end = ((subtree.index + 1) << subtree.level) as usize;
            assert_eq!(
                subtree.hash,
                reference_root(&all[start..end]),
                "{subtree:?}"
            );
        }
    }

    #[test]
    fn perfect_pieces_follow_the_tree_shape() {
        assert_eq!(perfect_pieces(0, 13), Some(vec![(3, 0), (2, 2), (0, 12)]));
        assert_eq!(perfect_pieces(8, 13), Some(vec![(2, 2), (0, 12)]));
        assert_eq!(perfect_pieces(16, 32), Some(vec![(4, 1)]));
        assert_eq!(perfect_pieces(3, 9), None);
        assert_eq!(perfect_pieces(5, 5), Some(vec![]));
        let all = leaves(40);
        for start in 0..40u64 {
            for end in start + 1..=40 {
                if let Some(pieces) = perfect_pieces(start, end) {
                    let roots: Vec<Hash> = pieces
                        .iter()
                        .map(|&(level, index)| {
                            let from = (index << level) as usize;
                            reference_root(&all[from..from + (1usize << level)])
                        })
                        .collect();
                    let folded = roots
                        .iter()
                        .rev()
                        .copied()
                        .reduce(|acc, left| node_hash(&left, &acc));
                    assert_eq!(
                        folded,
                        Some(reference_root(&all[start as usize..end as usize]))
                    );
                }
            }
        }
        // Every range a proof asks for has the tree shape.
        for size in 1..=40u64 {
            for index in 0..size {
                for (start, end) in inclusion_proof_ranges(index, size).unwrap_or_default() {
                    assert!(perfect_pieces(start, end).is_some(), "{start}..{end}");
                }
            }
            for size1 in 1..size {
                for (start, end) in consistency_proof_ranges(size1, size).unwrap_or_default() {
                    assert!(perfect_pieces(start, end).is_some(), "{start}..{end}");
                }
            }
        }
    }

    #[test]
    fn frontier_restores_from_parts() {
        let all = leaves(13);
        let built = Frontier::from_parts(0, vec![]).map(|mut f| {
            all.iter().for_each(|l| f.push(*l));
            f
        });
        let built = built.unwrap_or_default();
        let restored = Frontier::from_parts(13, built.hashes().to_vec());
        assert_eq!(restored.as_ref().map(Frontier::root), Ok(built.root()));
        assert_eq!(
            Frontier::from_parts(13, vec![EMPTY_ROOT]),
            Err(FrontierError {
                size: 13,
                expected: 3,
                got: 1
            })
        );
    }

    #[test]
    fn generated_proofs_verify_and_have_expected_length() {
        let all = leaves(40);
        for size in 1..=40u64 {
            let root = reference_root(&all[..size as usize]);
            for index in 0..size {
                let proof = inclusion_proof(&all, index, size).unwrap_or_default();
                assert_eq!(proof.len(), inclusion_proof_len(index, size));
                assert_eq!(
                    verify_inclusion(index, size, &all[index as usize], &proof, &root),
                    Ok(())
                );
                if size > 1 {
                    let other = (index + 1) % size;
                    assert!(
                        verify_inclusion(other, size, &all[index as usize], &proof, &root).is_err()
                    );
                }
            }
            for size1 in 1..=size {
                let root1 = reference_root(&all[..size1 as usize]);
                let proof = consistency_proof(&all, size1, size).unwrap_or_default();
                if size1 < size {
                    assert_eq!(proof.len(), consistency_proof_len(size1, size));
                }
                assert_eq!(
                    verify_consistency(size1, size, &proof, &root1, &root),
                    Ok(()),
                    "{size1} -> {size}"
                );
                if size1 < size {
                    assert!(verify_consistency(size1, size, &proof, &root, &root1).is_err());
                }
            }
        }
    }

    #[test]
    fn proof_generation_rejects_bad_requests() {
        let all = leaves(5);
        assert!(matches!(
            inclusion_proof(&all, 5, 5),
            Err(ProveError::Invalid(ProofError::IndexOutOfRange {
                index: 5,
                size: 5
            }))
        ));
        assert!(matches!(
            inclusion_proof(&all, 1, 6),
            Err(ProveError::Invalid(ProofError::NotEnoughLeaves {
                size: 6,
                available: 5
            }))
        ));
        assert!(matches!(
            consistency_proof(&all, 0, 3),
            Err(ProveError::Invalid(ProofError::FromEmptyTree))
        ));
        assert!(matches!(
            consistency_proof(&all, 4, 3),
            Err(ProveError::Invalid(ProofError::SizesReversed { .. }))
        ));
    }
}
