//! The `[audit.stream]` section: streaming this node's audit records and signed checkpoints
//! to NATS JetStream (or Kafka, when the gateway is built with its `kafka` feature) for SIEMs.
//! Absent means no stream. Owns `AuditStreamConfig`, `AuditSinkConfig` and their validation
//! (server URLs, subject prefix, stream and topic names checked once here); the publisher
//! itself is `flowgate_gateway::audit::sink`.

use crate::raw::RawAuditStream;
use crate::{ConfigError, Secret};
use std::time::Duration;

/// Validated `[audit.stream]` settings.
#[derive(Debug, Clone)]
pub struct AuditStreamConfig {
    /// Where the stream goes: `nats_url` or `kafka_brokers` (exactly one).
    pub sink: AuditSinkConfig,
    /// NATS: records go to `<prefix>.<origin>.record`, checkpoints to `<prefix>.<origin>.checkpoint`.
    pub subject_prefix: String,
    /// NATS: the JetStream stream (created with subjects `<prefix>.>` when missing).
    pub stream: String,
    /// NATS: the de-duplication window of a stream this node creates: a republished
    /// record with the same `Nats-Msg-Id` inside it is dropped by the server.
    pub duplicate_window: Duration,
    /// Most records published per round (each round awaits every acknowledgement).
    pub batch_size: usize,
    /// How often the publisher looks for new records once it has caught up.
    pub poll_interval: Duration,
    /// Longest wait for the final drain at shutdown.
    pub drain_timeout: Duration,
}

/// The external log the stream goes to.
#[derive(Debug, Clone)]
pub enum AuditSinkConfig {
    /// NATS server URL(s), comma-separated (`nats://host:4222`, `tls://…`); may carry
    /// credentials (`nats://user:pass@host`), hence a `Secret`.
    Nats { url: Secret },
    /// Kafka bootstrap servers (`host:port`, comma-separated) and the topic; messages are
    /// keyed by origin, so one node's log stays in order in one partition.
    Kafka { brokers: String, topic: String },
}

impl AuditStreamConfig {
    pub const DEFAULT_SUBJECT_PREFIX: &str = "flowgate.audit";
    pub const DEFAULT_STREAM: &str = "FLOWGATE_AUDIT";
    pub const DEFAULT_KAFKA_TOPIC: &str = "flowgate-audit";
}

/// Most records per publish round.
const MAX_BATCH_SIZE: u64 = 2_000;

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

fn check_urls(text: &str) -> Result<(), String> {
    let mut count = 0;
    for url in text.split(',').map(str::trim) {
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(format!("`{}` is not a URL (nats://host:port)", redact(url)));
        };
        if !matches!(scheme, "nats" | "tls") {
            return Err(format!("scheme `{scheme}` is not nats or tls"));
        }
        let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
        if host.is_empty() || host.contains(['/', ' ']) {
            return Err(format!("`{}` has no host[:port]", redact(url)));
        }
        count += 1;
    }
    if count == 0 {
        return Err("no server URL".to_owned());
    }
    Ok(())
}

/// The URL without its credentials, for error messages.
fn redact(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://***@{host}"),
            None => url.to_owned(),
        },
        None => url
            .rsplit_once('@')
            .map_or_else(|| url.to_owned(), |(_, host)| format!("***@{host}")),
    }
}

fn check_brokers(text: &str) -> Result<(), String> {
    for broker in text.split(',').map(str::trim) {
        let valid = broker.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|port| port > 0)
        });
        if !valid {
            return Err(format!("`{broker}` is not host:port"));
        }
    }
    Ok(())
}

fn sink_config(raw: &RawAuditStream) -> Result<AuditSinkConfig, ConfigError> {
    match (raw.nats_url.as_deref(), raw.kafka_brokers.as_deref()) {
        (Some(url), None) => {
            let url = url.trim();
            check_urls(url).map_err(|detail| ConfigError::new("audit.stream.nats_url", detail))?;
            if raw.kafka_topic.is_some() {
                return Err(ConfigError::new(
                    "audit.stream.kafka_topic",
                    "only applies with kafka_brokers",
                ));
            }
            Ok(AuditSinkConfig::Nats {
                url: Secret::new(url),
            })
        }
        (None, Some(brokers)) => {
            let brokers = brokers.trim();
            check_brokers(brokers)
                .map_err(|detail| ConfigError::new("audit.stream.kafka_brokers", detail))?;
            let topic = raw
                .kafka_topic
                .as_deref()
                .map_or(AuditStreamConfig::DEFAULT_KAFKA_TOPIC, str::trim);
            if topic.is_empty()
                || topic.len() > 249
                || !topic.chars().all(|c| is_token_char(c) || c == '.')
            {
                return Err(ConfigError::new(
                    "audit.stream.kafka_topic",
                    "must be 1 to 249 letters, digits, `.`, `_` or `-`",
                ));
            }
            Ok(AuditSinkConfig::Kafka {
                brokers: brokers.to_owned(),
                topic: topic.to_owned(),
            })
        }
        _ => Err(ConfigError::new(
            "audit.stream",
            "set exactly one of nats_url or kafka_brokers",
        )),
    }
}

fn positive(key: &'static str, value: Option<u64>, default: u64) -> Result<u64, ConfigError> {
    match value {
        Some(0) => Err(ConfigError::new(key, "must be at least 1")),
        value => Ok(value.unwrap_or(default)),
    }
}

pub(crate) fn audit_stream_config(
    raw: Option<&RawAuditStream>,
) -> Result<Option<AuditStreamConfig>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let sink = sink_config(raw)?;
    let subject_prefix = raw
        .subject_prefix
        .as_deref()
        .map_or(AuditStreamConfig::DEFAULT_SUBJECT_PREFIX, str::trim);
    if subject_prefix
        .split('.')
        .any(|token| token.is_empty() || !token.chars().all(is_token_char))
    {
        return Err(ConfigError::new(
            "audit.stream.subject_prefix",
            "must be dot-separated tokens of letters, digits, `_` or `-` (no wildcards)",
        ));
    }
    let stream = raw
        .stream
        .as_deref()
        .map_or(AuditStreamConfig::DEFAULT_STREAM, str::trim);
    if stream.is_empty() || !stream.chars().all(is_token_char) {
        return Err(ConfigError::new(
            "audit.stream.stream",
            "must be letters, digits, `_` or `-`",
        ));
    }
    let batch_size = positive("audit.stream.batch_size", raw.batch_size, 500)?;
    // A round's messages are all in flight before the first acknowledgement is awaited, and
    // the NATS client allows 5,000 unacknowledged publishes.
    if batch_size > MAX_BATCH_SIZE {
        return Err(ConfigError::new(
            "audit.stream.batch_size",
            format!("must be at most {MAX_BATCH_SIZE}"),
        ));
    }
    Ok(Some(AuditStreamConfig {
        sink,
        subject_prefix: subject_prefix.to_owned(),
        stream: stream.to_owned(),
        duplicate_window: Duration::from_secs(positive(
            "audit.stream.duplicate_window_seconds",
            raw.duplicate_window_seconds,
            120,
        )?),
        batch_size: usize::try_from(batch_size).unwrap_or(500),
        poll_interval: Duration::from_millis(positive(
            "audit.stream.poll_interval_ms",
            raw.poll_interval_ms,
            200,
        )?),
        drain_timeout: Duration::from_millis(positive(
            "audit.stream.drain_timeout_ms",
            raw.drain_timeout_ms,
            5_000,
        )?),
    }))
}

#[cfg(test)]
mod tests {
    use super::AuditSinkConfig;
    use crate::from_sources;
    use std::collections::BTreeMap;
    use std::time::Duration;

    fn parse(file: &str) -> Result<crate::Config, crate::ConfigError> {
        from_sources(Some(file), &BTreeMap::new(), true)
    }

    #[test]
    fn absent_means_no_stream() {
        let config = parse("").unwrap_or_else(|err| panic!("{err}"));
        assert!(config.audit.stream.is_none());
    }

    #[test]
    fn defaults_and_explicit_values() {
        let config = parse("[audit.stream]\nnats_url = \"nats://127.0.0.1:4222\"\n")
            .unwrap_or_else(|err| panic!("{err}"));
        let stream = config
            .audit
            .stream
            .unwrap_or_else(|| panic!("stream configured"));
        match &stream.sink {
            AuditSinkConfig::Nats { url } => assert_eq!(url.expose(), "nats://127.0.0.1:4222"),
            other => panic!("not NATS: {other:?}"),
        }
        assert_eq!(stream.subject_prefix, "flowgate.audit");
        assert_eq!(stream.stream, "FLOWGATE_AUDIT");
        assert_eq!(stream.duplicate_window, Duration::from_secs(120));
        assert_eq!(stream.batch_size, 500);
        assert_eq!(stream.poll_interval, Duration::from_millis(200));
        assert_eq!(stream.drain_timeout, Duration::from_secs(5));

        let config = parse(
            "[audit.stream]\nnats_url = \"nats://u:p@a:4222, tls://b:4443\"\nsubject_prefix = \"siem.eu-1\"\nstream = \"AUDIT_EU\"\nduplicate_window_seconds = 600\nbatch_size = 50\npoll_interval_ms = 20\ndrain_timeout_ms = 100\n",
        )
        .unwrap_or_else(|err| panic!("{err}"));
        let stream = config
            .audit
            .stream
            .unwrap_or_else(|| panic!("stream configured"));
        assert_eq!(stream.subject_prefix, "siem.eu-1");
        assert_eq!(stream.stream, "AUDIT_EU");
        assert_eq!(stream.duplicate_window, Duration::from_secs(600));
        assert_eq!(stream.batch_size, 50);
        assert_eq!(stream.poll_interval, Duration::from_millis(20));
        assert_eq!(stream.drain_timeout, Duration::from_millis(100));
    }

    #[test]
    fn kafka_brokers_and_topic() {
        let config = parse("[audit.stream]\nkafka_brokers = \"k1:9092, k2:9092\"\n")
            .unwrap_or_else(|err| panic!("{err}"));
        let stream = config
            .audit
            .stream
            .unwrap_or_else(|| panic!("stream configured"));
        match stream.sink {
            AuditSinkConfig::Kafka { brokers, topic } => {
                assert_eq!(brokers, "k1:9092, k2:9092");
                assert_eq!(topic, "flowgate-audit");
            }
            other => panic!("not Kafka: {other:?}"),
        }
        let config =
            parse("[audit.stream]\nkafka_brokers = \"k:9092\"\nkafka_topic = \"siem.audit-1\"\n")
                .unwrap_or_else(|err| panic!("{err}"));
        assert!(matches!(
            config.audit.stream.map(|stream| stream.sink),
            Some(AuditSinkConfig::Kafka { topic, .. }) if topic == "siem.audit-1"
        ));
    }

    #[test]
    fn bad_values_name_their_key() {
        for (file, key) in [
            (
                "[audit.stream]\n",
                "exactly one of nats_url or kafka_brokers",
            ),
            (
                "[audit.stream]\nnats_url = \"nats://a:1\"\nkafka_brokers = \"k:9092\"\n",
                "exactly one of nats_url or kafka_brokers",
            ),
            (
                "[audit.stream]\nnats_url = \"nats://a:1\"\nkafka_topic = \"t\"\n",
                "audit.stream.kafka_topic",
            ),
            (
                "[audit.stream]\nkafka_brokers = \"k\"\n",
                "audit.stream.kafka_brokers",
            ),
            (
                "[audit.stream]\nkafka_brokers = \"k:0\"\n",
                "audit.stream.kafka_brokers",
            ),
            (
                "[audit.stream]\nkafka_brokers = \"k:9092\"\nkafka_topic = \"a/b\"\n",
                "audit.stream.kafka_topic",
            ),
            ("[audit.stream]\nnats_url = \"\"\n", "audit.stream.nats_url"),
            (
                "[audit.stream]\nnats_url = \"127.0.0.1:4222\"\n",
                "audit.stream.nats_url",
            ),
            (
                "[audit.stream]\nnats_url = \"http://x:1\"\n",
                "audit.stream.nats_url",
            ),
            (
                "[audit.stream]\nnats_url = \"nats://\"\n",
                "audit.stream.nats_url",
            ),
            (
                "[audit.stream]\nnats_url = \"nats://a:1\"\nsubject_prefix = \"a.*\"\n",
                "audit.stream.subject_prefix",
            ),
            (
                "[audit.stream]\nnats_url = \"nats://a:1\"\nsubject_prefix = \"a..b\"\n",
                "audit.stream.subject_prefix",
            ),
            (
                "[audit.stream]\nnats_url = \"nats://a:1\"\nstream = \"A.B\"\n",
                "audit.stream.stream",
            ),
            (
                "[audit.stream]\nnats_url = \"nats://a:1\"\nbatch_size = 0\n",
                "audit.stream.batch_size",
            ),
            (
                "[audit.stream]\nnats_url = \"nats://a:1\"\nbatch_size = 2001\n",
                "audit.stream.batch_size",
            ),
            (
                "[audit.stream]\nnats_url = \"nats://a:1\"\nduplicate_window_seconds = 0\n",
                "audit.stream.duplicate_window_seconds",
            ),
            (
                "[audit.stream]\nnats_url = \"nats://a:1\"\nsubject = \"x\"\n",
                "subject",
            ),
        ] {
            let err = match parse(file) {
                Ok(_) => panic!("accepted: {file}"),
                Err(err) => err.to_string(),
            };
            assert!(err.contains(key), "{file}: {err}");
        }
    }

    #[test]
    fn credentials_stay_out_of_errors() {
        let err = match parse("[audit.stream]\nnats_url = \"user:hunter2@host:4222\"\n") {
            Ok(_) => panic!("accepted a URL without scheme"),
            Err(err) => err.to_string(),
        };
        assert!(!err.contains("hunter2"), "{err}");
    }
}
