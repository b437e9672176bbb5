//! The audit record (schema version 1): one per request-side event, completion or gap, with
//! its RFC 8785 canonical encoding (the exact bytes hashed into the Merkle tree) and parsing.
//!
//! The encoder writes the fixed schema directly in JCS member order without building a
//! `serde_json::Value`; a property test checks it against the generic [`crate::canonical`]
//! writer. Leaves out computing content hashes (see [`crate::content`]) and storage.

use serde::{Deserialize, Serialize};

use crate::canonical::{MAX_SAFE_INTEGER, write_str, write_u64};

/// Writes a counter, saturated at 2^53 - 1 so every record stays valid I-JSON and parses back
/// into integers.
fn write_count(value: u64, out: &mut Vec<u8>) {
    write_u64(value.min(MAX_SAFE_INTEGER), out);
}

/// The schema version this crate writes and the newest it reads.
pub const SCHEMA_VERSION: u32 = 1;

/// What a record describes. Both a request-side record and a completion record may be logged
/// for one request (same `request_id`): the request-side one is made durable while the
/// upstream call is in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// Written when the request was admitted and decided, before the upstream answers.
    Request,
    /// Written when the response (or error) was sent to the client.
    Completion,
    /// Marks records lost because the spool was full in `serve` mode.
    Gap,
}

impl RecordKind {
    /// The name in the canonical record (`request`, `completion`, `gap`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Request => "request",
            Self::Completion => "completion",
            Self::Gap => "gap",
        }
    }
}

/// The policy decision recorded for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Decision {
    /// Passed unchanged.
    Allow,
    /// Passed, with findings flagged for review.
    Flag,
    /// Passed after redacting matched content.
    Redact,
    /// Refused by policy.
    Block,
    /// Failed (upstream or internal error).
    Error,
}

impl Decision {
    /// The wire name (`ALLOW`, `FLAG`, ...).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "ALLOW",
            Self::Flag => "FLAG",
            Self::Redact => "REDACT",
            Self::Block => "BLOCK",
            Self::Error => "ERROR",
        }
    }
}

/// One rule that matched: which rule, what it did, and how many matches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFinding {
    /// Stable rule identifier from the policy configuration.
    pub rule_id: String,
    /// The rule's action in the policy vocabulary (for example `flag`, `redact`, `block`).
    pub action: String,
    /// Number of matches in the request or response.
    pub count: u64,
}

/// Token usage of a completed request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Usage {
    /// Prompt tokens.
    pub input: u64,
    /// Completion tokens.
    pub output: u64,
    /// Prompt tokens served from the provider's cache.
    pub cached: u64,
    /// True when counted locally because the provider reported no usage.
    pub estimated: bool,
}

/// Latencies in microseconds; each is absent when not measured for this record kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Latencies {
    /// Whole request as seen by the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_us: Option<u64>,
    /// Time spent waiting on the upstream provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_us: Option<u64>,
    /// Gateway overhead (total minus upstream).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overhead_us: Option<u64>,
    /// Time to first token of a streamed response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_us: Option<u64>,
}

impl Latencies {
    fn is_empty(&self) -> bool {
        self.total_us.is_none()
            && self.upstream_us.is_none()
            && self.overhead_us.is_none()
            && self.ttft_us.is_none()
    }
}

/// What a gap marker says was lost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GapInfo {
    /// Records dropped since the previous record.
    pub lost: u64,
    /// Why (for example `spool_full`).
    pub reason: String,
}

/// One audit record. Field names are the JSON member names. Integers are saturated at
/// 2^53 - 1 when encoded (larger values have no exact I-JSON form).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    /// Record schema version ([`SCHEMA_VERSION`] when written by this crate).
    pub schema: u32,
    /// Request-side, completion or gap marker.
    pub kind: RecordKind,
    /// Request id shared by the request-side and completion records of one request.
    pub request_id: String,
    /// Log time in epoch milliseconds. Non-decreasing along the log: the appender raises it
    /// to the previous record's time when the caller's clock stepped back.
    pub time_ms: u64,
    /// Tenant the request belongs to.
    pub tenant_id: String,
    /// API key id (never the key itself).
    pub key_id: String,
    /// Route or endpoint (for example `/v1/chat/completions`).
    pub route: String,
    /// Upstream provider name.
    pub provider: String,
    /// Model requested or routed to.
    pub model: String,
    /// Whether the response was streamed.
    pub stream: bool,
    /// Policy decision.
    pub decision: Decision,
    /// Rules that matched, in evaluation order.
    pub findings: Vec<RuleFinding>,
    /// Hex HMAC-SHA-256 of the normalised request content under the tenant key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_hash: Option<String>,
    /// Hex HMAC-SHA-256 of the normalised response content under the tenant key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_hash: Option<String>,
    /// Content encrypted under the tenant data key (base64), only when prompts are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypted_content: Option<String>,
    /// Token usage (completion records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Latencies measured so far.
    #[serde(default, skip_serializing_if = "Latencies::is_empty")]
    pub latency: Latencies,
    /// HTTP status returned to the client (completion records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// What was lost (gap markers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap: Option<GapInfo>,
}

/// A record's bytes did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Not valid JSON for the schema.
    #[error("record does not parse: {detail}")]
    Invalid {
        /// serde_json's message (position and cause).
        detail: String,
    },
    /// Written by a newer schema this build cannot check.
    #[error("record schema {schema} is newer than supported {SCHEMA_VERSION}")]
    UnsupportedSchema {
        /// The record's schema number.
        schema: u32,
    },
}

impl AuditRecord {
    /// A record of `kind` at `time_ms` with this schema version and every other field empty
    /// (`decision` `ERROR` until the writer sets it).
    #[must_use]
    pub fn empty(kind: RecordKind, time_ms: u64) -> Self {
        Self {
            schema: SCHEMA_VERSION,
            kind,
            request_id: String::new(),
            time_ms,
            tenant_id: String::new(),
            key_id: String::new(),
            route: String::new(),
            provider: String::new(),
            model: String::new(),
            stream: false,
            decision: Decision::Error,
            findings: Vec::new(),
            request_hash: None,
            response_hash: None,
            encrypted_content: None,
            usage: None,
            latency: Latencies::default(),
            http_status: None,
            gap: None,
        }
    }

    /// A gap marker: `lost` records were dropped for `reason` (every other field empty).
    #[must_use]
    pub fn gap(time_ms: u64, lost: u64, reason: &str) -> Self {
        Self {
            gap: Some(GapInfo {
                lost,
                reason: reason.to_owned(),
            }),
            ..Self::empty(RecordKind::Gap, time_ms)
        }
    }

    /// Parses canonical record bytes (any valid JSON of the schema is accepted).
    ///
    /// # Errors
    /// [`RecordError::Invalid`] or [`RecordError::UnsupportedSchema`].
    pub fn parse(bytes: &[u8]) -> Result<Self, RecordError> {
        let record: Self = serde_json::from_slice(bytes).map_err(|error| RecordError::Invalid {
            detail: error.to_string(),
        })?;
        if record.schema > SCHEMA_VERSION {
            return Err(RecordError::UnsupportedSchema {
                schema: record.schema,
            });
        }
        Ok(record)
    }

    /// The canonical (RFC 8785) encoding in a fresh buffer.
    #[must_use]
    pub fn to_canonical(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1024);
        self.write_canonical(self.time_ms, &mut out);
        out
    }

    /// Appends the canonical encoding to `out`, with `time_ms` in place of the field (the
    /// appender passes the clamped log time).
    pub fn write_canonical(&self, time_ms: u64, out: &mut Vec<u8>) {
        // Members in RFC 8785 order; all names are ASCII so byte order is UTF-16 order.
        out.extend_from_slice(b"{\"decision\":\"");
        out.extend_from_slice(self.decision.as_str().as_bytes());
        out.push(b'"');
        if let Some(content) = &self.encrypted_content {
            out.extend_from_slice(b",\"encrypted_content\":");
            write_str(content, out);
        }
        out.extend_from_slice(b",\"findings\":[");
        for (position, finding) in self.findings.iter().enumerate() {
            if position > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"action\":");
            write_str(&finding.action, out);
            out.extend_from_slice(b",\"count\":");
            write_count(finding.count, out);
            out.extend_from_slice(b",\"rule_id\":");
            write_str(&finding.rule_id, out);
            out.push(b'}');
        }
        out.push(b']');
        if let Some(gap) = &self.gap {
            out.extend_from_slice(b",\"gap\":{\"lost\":");
            write_count(gap.lost, out);
            out.extend_from_slice(b",\"reason\":");
            write_str(&gap.reason, out);
            out.push(b'}');
        }
        if let Some(status) = self.http_status {
            out.extend_from_slice(b",\"http_status\":");
            write_count(u64::from(status), out);
        }
        out.extend_from_slice(b",\"key_id\":");
        write_str(&self.key_id, out);
        out.extend_from_slice(b",\"kind\":\"");
        out.extend_from_slice(self.kind.as_str().as_bytes());
        out.push(b'"');
        if !self.latency.is_empty() {
            out.extend_from_slice(b",\"latency\":{");
            let mut first = true;
            for (name, value) in [
                ("overhead_us", self.latency.overhead_us),
                ("total_us", self.latency.total_us),
                ("ttft_us", self.latency.ttft_us),
                ("upstream_us", self.latency.upstream_us),
            ] {
                if let Some(value) = value {
                    if !first {
                        out.push(b',');
                    }
                    first = false;
                    out.push(b'"');
                    out.extend_from_slice(name.as_bytes());
                    out.extend_from_slice(b"\":");
                    write_count(value, out);
                }
            }
            out.push(b'}');
        }
        out.extend_from_slice(b",\"model\":");
        write_str(&self.model, out);
        out.extend_from_slice(b",\"provider\":");
        write_str(&self.provider, out);
        if let Some(hash) = &self.request_hash {
            out.extend_from_slice(b",\"request_hash\":");
            write_str(hash, out);
        }
        out.extend_from_slice(b",\"request_id\":");
        write_str(&self.request_id, out);
        if let Some(hash) = &self.response_hash {
            out.extend_from_slice(b",\"response_hash\":");
            write_str(hash, out);
        }
        out.extend_from_slice(b",\"route\":");
        write_str(&self.route, out);
        out.extend_from_slice(b",\"schema\":");
        write_count(u64::from(self.schema), out);
        out.extend_from_slice(if self.stream {
            b",\"stream\":true"
        } else {
            b",\"stream\":false"
        });
        out.extend_from_slice(b",\"tenant_id\":");
        write_str(&self.tenant_id, out);
        out.extend_from_slice(b",\"time_ms\":");
        write_count(time_ms, out);
        if let Some(usage) = &self.usage {
            out.extend_from_slice(b",\"usage\":{\"cached\":");
            write_count(usage.cached, out);
            out.extend_from_slice(if usage.estimated {
                b",\"estimated\":true"
            } else {
                b",\"estimated\":false"
            });
            out.extend_from_slice(b",\"input\":");
            write_count(usage.input, out);
            out.extend_from_slice(b",\"output\":");
            write_count(usage.output, out);
            out.push(b'}');
        }
        out.push(b'}');
    }
}

/// Reads only the fields the verifier needs from record bytes, borrowing strings, after a
/// full syntactic and schema check of the record.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[expect(dead_code, reason = "fields are parsed to check the schema, not read")]
pub(crate) struct RecordCheck<'a> {
    pub(crate) schema: u32,
    kind: RecordKind,
    #[serde(borrow)]
    request_id: std::borrow::Cow<'a, str>,
    pub(crate) time_ms: u64,
    #[serde(borrow)]
    tenant_id: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    key_id: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    route: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    provider: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    model: std::borrow::Cow<'a, str>,
    stream: bool,
    decision: Decision,
    #[serde(borrow)]
    findings: Vec<FindingCheck<'a>>,
    #[serde(default, borrow)]
    request_hash: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    response_hash: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    encrypted_content: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    latency: Option<Latencies>,
    #[serde(default)]
    http_status: Option<u16>,
    #[serde(default, borrow)]
    gap: Option<GapCheck<'a>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[expect(dead_code, reason = "fields are parsed to check the schema, not read")]
struct FindingCheck<'a> {
    #[serde(borrow)]
    rule_id: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    action: std::borrow::Cow<'a, str>,
    count: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[expect(dead_code, reason = "fields are parsed to check the schema, not read")]
struct GapCheck<'a> {
    lost: u64,
    #[serde(borrow)]
    reason: std::borrow::Cow<'a, str>,
}

/// Checks record bytes against the schema and returns the record's `time_ms`.
///
/// Canonical schema-1 records take the fast strict scanner; anything else is diagnosed with
/// serde: a newer schema, a parse error, or valid JSON that is not in canonical form.
pub(crate) fn check_record(bytes: &[u8]) -> Result<u64, RecordError> {
    if let Some(time_ms) = crate::scan::canonical_record_time(bytes) {
        return Ok(time_ms);
    }
    #[derive(Deserialize)]
    struct SchemaOnly {
        schema: u32,
    }
    if let Ok(SchemaOnly { schema }) = serde_json::from_slice::<SchemaOnly>(bytes)
        && schema > SCHEMA_VERSION
    {
        return Err(RecordError::UnsupportedSchema { schema });
    }
    let check: RecordCheck<'_> =
        serde_json::from_slice(bytes).map_err(|error| RecordError::Invalid {
            detail: error.to_string(),
        })?;
    if check.schema > SCHEMA_VERSION {
        return Err(RecordError::UnsupportedSchema {
            schema: check.schema,
        });
    }
    Err(RecordError::Invalid {
        detail: "record is valid JSON but not in canonical form".to_owned(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use proptest::prelude::*;

    use super::*;

    pub(crate) fn sample() -> AuditRecord {
        AuditRecord {
            schema: SCHEMA_VERSION,
            kind: RecordKind::Completion,
            request_id: "req-01".into(),
            time_ms: 1_763_700_000_000,
            tenant_id: "acme".into(),
            key_id: "key-7".into(),
            route: "/v1/chat/completions".into(),
            provider: "openai".into(),
            model: "gpt-4o-mini".into(),
            stream: true,
            decision: Decision::Redact,
            findings: vec![RuleFinding {
                rule_id: "pii.email".into(),
                action: "redact".into(),
                count: 2,
            }],
            request_hash: Some("ab".repeat(32)),
            response_hash: None,
            encrypted_content: None,
            usage: Some(Usage {
                input: 12,
                output: 40,
                cached: 0,
                estimated: false,
            }),
            latency: Latencies {
                total_us: Some(1500),
                upstream_us: Some(1400),
                overhead_us: Some(100),
                ttft_us: None,
            },
            http_status: Some(200),
            gap: None,
        }
    }

    fn generic_canonical(record: &AuditRecord) -> Vec<u8> {
        let value = serde_json::to_value(record).expect("records serialise");
        crate::canonical::to_vec(&value).expect("no floats")
    }

    #[test]
    fn sample_encoding_is_canonical_and_parses_back() {
        let record = sample();
        let bytes = record.to_canonical();
        assert_eq!(bytes, generic_canonical(&record));
        assert_eq!(AuditRecord::parse(&bytes), Ok(record));
        assert_eq!(check_record(&bytes), Ok(1_763_700_000_000));
        let text = String::from_utf8(bytes).expect("UTF-8");
        assert!(text.starts_with("{\"decision\":\"REDACT\",\"findings\":[{\"action\":\"redact\""));
        assert!(
            text.ends_with(
                "\"usage\":{\"cached\":0,\"estimated\":false,\"input\":12,\"output\":40}}"
            )
        );
    }

    #[test]
    fn gap_marker_encodes() {
        let gap = AuditRecord::gap(5, 3, "spool_full");
        let bytes = gap.to_canonical();
        assert_eq!(bytes, generic_canonical(&gap));
        assert_eq!(AuditRecord::parse(&bytes), Ok(gap));
    }

    #[test]
    fn newer_schema_and_unknown_fields_are_refused() {
        let mut record = sample();
        record.schema = 2;
        assert_eq!(
            AuditRecord::parse(&record.to_canonical()),
            Err(RecordError::UnsupportedSchema { schema: 2 })
        );
        assert_eq!(
            check_record(&record.to_canonical()),
            Err(RecordError::UnsupportedSchema { schema: 2 })
        );
        let mut bytes = sample().to_canonical();
        bytes.pop();
        bytes.extend_from_slice(b",\"zzz\":1}");
        assert!(AuditRecord::parse(&bytes).is_err());
        assert!(check_record(&bytes).is_err());
        assert!(check_record(b"{").is_err());
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z0-9_./-]{0,12}",
            any::<String>(),
            Just("\u{1f600}\u{fb33}\"\\\n\u{0}".to_owned()),
        ]
    }

    prop_compose! {
        fn records()(
            kind in prop_oneof![Just(RecordKind::Request), Just(RecordKind::Completion), Just(RecordKind::Gap)],
            decision in prop_oneof![Just(Decision::Allow), Just(Decision::Flag), Just(Decision::Redact), Just(Decision::Block), Just(Decision::Error)],
            strings in proptest::collection::vec(text(), 9),
            numbers in proptest::collection::vec(0..=MAX_SAFE_INTEGER, 9),
            flags in proptest::collection::vec(any::<bool>(), 12),
            findings in proptest::collection::vec((text(), text(), 0..=MAX_SAFE_INTEGER), 0..3),
            status in any::<u16>(),
        ) -> AuditRecord {
            AuditRecord {
                schema: SCHEMA_VERSION,
                kind,
                request_id: strings[0].clone(),
                time_ms: numbers[0],
                tenant_id: strings[1].clone(),
                key_id: strings[2].clone(),
                route: strings[3].clone(),
                provider: strings[4].clone(),
                model: strings[5].clone(),
                stream: flags[0],
                decision,
                findings: findings.into_iter().map(|(rule_id, action, count)| RuleFinding { rule_id, action, count }).collect(),
                request_hash: flags[1].then(|| strings[6].clone()),
                response_hash: flags[2].then(|| strings[7].clone()),
                encrypted_content: flags[3].then(|| strings[8].clone()),
                usage: flags[4].then_some(Usage { input: numbers[1], output: numbers[2], cached: numbers[3], estimated: flags[5] }),
                latency: Latencies {
                    total_us: flags[6].then_some(numbers[4]),
                    upstream_us: flags[7].then_some(numbers[5]),
                    overhead_us: flags[8].then_some(numbers[6]),
                    ttft_us: flags[9].then_some(numbers[7]),
                },
                http_status: flags[10].then_some(status),
                gap: flags[11].then(|| GapInfo { lost: numbers[8], reason: strings[0].clone() }),
            }
        }
    }

    proptest! {
        #[test]
        fn direct_encoder_matches_generic_jcs(record in records()) {
            let direct = record.to_canonical();
            prop_assert_eq!(&direct, &generic_canonical(&record));
            prop_assert_eq!(crate::scan::canonical_record_time(&direct), Some(record.time_ms));
            prop_assert_eq!(check_record(&direct), Ok(record.time_ms));
        }

        /// The fast scanner accepts a mutated record only if it is still the canonical
        /// encoding of a valid record.
        #[test]
        fn scanner_accepts_only_canonical_records(
            record in records(),
            position in any::<prop::sample::Index>(),
            replacement in any::<u8>(),
        ) {
            let mut bytes = record.to_canonical();
            let at = position.index(bytes.len());
            bytes[at] = replacement;
            if crate::scan::canonical_record_time(&bytes).is_some() {
                let parsed = AuditRecord::parse(&bytes);
                prop_assert!(parsed.is_ok(), "scanner accepted unparseable bytes");
                if let Ok(parsed) = parsed {
                    prop_assert_eq!(parsed.to_canonical(), bytes);
                }
            } else {
                prop_assert!(check_record(&bytes).is_err());
            }
        }
    }

    #[test]
    fn non_canonical_but_valid_json_is_rejected() {
        let value = serde_json::to_value(sample()).expect("serialises");
        let pretty = serde_json::to_vec_pretty(&value).expect("serialises");
        assert!(AuditRecord::parse(&pretty).is_ok());
        assert!(matches!(
            check_record(&pretty),
            Err(RecordError::Invalid { .. })
        ));
    }
}
