//! Parsers never panic on hostile input: notes, checkpoints, records and export files,
//! both arbitrary and mutated from valid ones.

use flowgate_audit::checkpoint::{self, Checkpoint};
use flowgate_audit::export::verify_export;
use flowgate_audit::note;
use flowgate_audit::record::AuditRecord;
use flowgate_audit::verify::VerifyError;
use proptest::prelude::*;

use crate::support::{ORIGIN, options, record, signer};

fn valid_note() -> String {
    Checkpoint {
        origin: ORIGIN.into(),
        size: 7,
        root: [5; 32],
        extensions: vec![],
    }
    .sign(&signer())
    .expect("signable")
    .note
}

fn valid_export() -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(
        format!(
            "{{\"type\":\"header\",\"format\":\"flowgate-audit-export\",\"version\":1,\"origin\":\"{ORIGIN}\",\"start\":0,\"frontier\":[],\"last_time_ms\":0}}\n"
        )
        .as_bytes(),
    );
    for i in 0..3 {
        out.extend_from_slice(
            format!("{{\"type\":\"record\",\"index\":{i},\"record\":").as_bytes(),
        );
        out.extend_from_slice(&record(i).to_canonical());
        out.extend_from_slice(b"}\n");
    }
    out
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        let verifiers = [signer().verifier()];
        let _ = note::open(&text, &verifiers);
        let _ = Checkpoint::parse(&text);
        let _ = checkpoint::open(&text, &verifiers);
        let _ = AuditRecord::parse(text.as_bytes());
        let _ = flowgate_audit::note::NoteVerifier::parse(&text);
        let _ = flowgate_audit::note::NoteSigner::parse(&text);
        let result = verify_export(text.as_bytes(), options());
        let is_io = matches!(result, Err(VerifyError::Io { .. }));
        prop_assert!(!is_io, "in-memory input cannot fail to read");
    }

    #[test]
    fn mutated_notes_fail_cleanly(position in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut bytes = valid_note().into_bytes();
        let at = position.index(bytes.len());
        let original = bytes[at];
        bytes[at] = byte;
        if let Ok(text) = String::from_utf8(bytes) {
            let result = checkpoint::open(&text, &[signer().verifier()]);
            if byte != original {
                prop_assert!(result.is_err(), "mutation at {} accepted", at);
            }
        }
    }

    #[test]
    fn mutated_exports_fail_cleanly(position in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut bytes = valid_export();
        let at = position.index(bytes.len());
        bytes[at] = byte;
        let _ = verify_export(bytes.as_slice(), options());
    }
}
