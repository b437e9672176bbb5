//! Integration tests of flowgate-audit: published Merkle vectors, the signed-note known
//! answer, and tamper detection over in-memory logs and export files.

mod merkle_vectors;
