//! Walks every transparency-dev inclusion and consistency vector under `tests/data/merkle`
//! and checks that exactly the files with `wantErr: false` verify.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use flowgate_audit::merkle::{verify_consistency_bytes, verify_inclusion_bytes};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InclusionProbe {
    leaf_idx: u64,
    tree_size: u64,
    root: Option<String>,
    leaf_hash: Option<String>,
    proof: Option<Vec<String>>,
    desc: String,
    want_err: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConsistencyProbe {
    size1: u64,
    size2: u64,
    root1: Option<String>,
    root2: Option<String>,
    proof: Option<Vec<String>>,
    desc: String,
    want_err: bool,
}

fn data_dir(kind: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/merkle")
        .join(kind)
}

fn json_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("test data directory is readable") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            json_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "json") {
            out.push(path);
        }
    }
}

fn decode(value: Option<&String>) -> Vec<u8> {
    value.map_or_else(Vec::new, |text| {
        STANDARD.decode(text).expect("vector hashes are base64")
    })
}

fn decode_proof(proof: Option<&Vec<String>>) -> Vec<Vec<u8>> {
    proof.map_or_else(Vec::new, |hashes| {
        hashes.iter().map(|h| decode(Some(h))).collect()
    })
}

#[test]
fn inclusion_vectors_accept_exactly_the_valid_ones() {
    let mut files = Vec::new();
    json_files(&data_dir("inclusion"), &mut files);
    assert!(
        files.len() >= 90,
        "only {} inclusion vectors found",
        files.len()
    );
    let mut accepted = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).expect("vector is readable");
        let probe: InclusionProbe = serde_json::from_str(&text).expect("vector parses");
        let result = verify_inclusion_bytes(
            probe.leaf_idx,
            probe.tree_size,
            &decode(probe.leaf_hash.as_ref()),
            &decode_proof(probe.proof.as_ref()),
            &decode(probe.root.as_ref()),
        );
        assert_eq!(
            result.is_err(),
            probe.want_err,
            "{} ({}): {result:?}",
            file.display(),
            probe.desc
        );
        accepted += usize::from(result.is_ok());
    }
    assert_eq!(accepted, 6, "the data set holds six valid inclusion proofs");
}

#[test]
fn consistency_vectors_accept_exactly_the_valid_ones() {
    let mut files = Vec::new();
    json_files(&data_dir("consistency"), &mut files);
    assert!(
        files.len() >= 90,
        "only {} consistency vectors found",
        files.len()
    );
    let mut accepted = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).expect("vector is readable");
        let probe: ConsistencyProbe = serde_json::from_str(&text).expect("vector parses");
        let result = verify_consistency_bytes(
            probe.size1,
            probe.size2,
            &decode_proof(probe.proof.as_ref()),
            &decode(probe.root1.as_ref()),
            &decode(probe.root2.as_ref()),
        );
        assert_eq!(
            result.is_err(),
            probe.want_err,
            "{} ({}): {result:?}",
            file.display(),
            probe.desc
        );
        accepted += usize::from(result.is_ok());
    }
    assert_eq!(
        accepted, 6,
        "the data set holds six valid consistency proofs"
    );
}
