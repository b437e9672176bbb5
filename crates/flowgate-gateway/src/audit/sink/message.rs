//! One audit message as every sink sends it: what it is (a record at an index, a checkpoint
//! of a size), its de-duplication id, its subject under the configured prefix and its payload
//! (the canonical record JSON byte for byte, or the C2SP signed note).

use bytes::Bytes;

/// What a message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    Record { index: u64 },
    Checkpoint { size: u64 },
}

/// One message to publish.
#[derive(Debug, Clone)]
pub struct SinkMessage {
    /// The log it belongs to (unsanitised; the subject carries `subject_token(origin)`).
    pub origin: String,
    pub kind: MessageKind,
    /// `<origin>/<index>` or `<origin>/checkpoint/<size>`: the same message always gets the
    /// same id, so a republished copy is recognised.
    pub id: String,
    /// `<prefix>.<origin token>.record` or `.checkpoint`.
    pub subject: String,
    pub payload: Bytes,
}

impl SinkMessage {
    pub fn record(prefix: &str, origin: &str, index: u64, canonical: Vec<u8>) -> Self {
        Self {
            origin: origin.to_owned(),
            kind: MessageKind::Record { index },
            id: format!("{origin}/{index}"),
            subject: format!("{prefix}.{}.record", subject_token(origin)),
            payload: Bytes::from(canonical),
        }
    }

    pub fn checkpoint(prefix: &str, origin: &str, size: u64, note: String) -> Self {
        Self {
            origin: origin.to_owned(),
            kind: MessageKind::Checkpoint { size },
            id: format!("{origin}/checkpoint/{size}"),
            subject: format!("{prefix}.{}.checkpoint", subject_token(origin)),
            payload: Bytes::from(note),
        }
    }
}

/// `origin` as one subject token: characters other than ASCII letters, digits, `_` and `-`
/// (dots, slashes, wildcards, spaces) become `_`. Two origins may share a token; their
/// messages still differ by de-duplication id and `Flowgate-Origin` header.
pub fn subject_token(origin: &str) -> String {
    let token: String = origin
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if token.is_empty() {
        "_".to_owned()
    } else {
        token
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_become_single_subject_tokens() {
        for (origin, token) in [
            ("flowgate-node-1", "flowgate-node-1"),
            ("eu-1.example/log", "eu-1_example_log"),
            ("a*b>c d", "a_b_c_d"),
            ("", "_"),
            ("node_2", "node_2"),
        ] {
            assert_eq!(subject_token(origin), token, "{origin}");
        }
    }

    #[test]
    fn ids_and_subjects() {
        let record = SinkMessage::record("flowgate.audit", "eu-1.example/log", 42, b"{}".to_vec());
        assert_eq!(record.id, "eu-1.example/log/42");
        assert_eq!(record.subject, "flowgate.audit.eu-1_example_log.record");
        assert_eq!(record.kind, MessageKind::Record { index: 42 });
        assert_eq!(&record.payload[..], b"{}");
        let checkpoint = SinkMessage::checkpoint("siem", "node", 100, "note\n".to_owned());
        assert_eq!(checkpoint.id, "node/checkpoint/100");
        assert_eq!(checkpoint.subject, "siem.node.checkpoint");
        assert_eq!(checkpoint.kind, MessageKind::Checkpoint { size: 100 });
    }
}
