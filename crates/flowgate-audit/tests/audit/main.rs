//! Integration tests of flowgate-audit: published Merkle vectors, tamper detection over
//! in-memory logs and export files, and the async store drivers.

mod export_files;
mod merkle_vectors;
mod robustness;
mod source_drivers;
mod support;
mod tamper;
