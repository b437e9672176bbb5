//! Audit streaming: this node's stored audit records and signed checkpoints published to an
//! external log (NATS JetStream) for SIEMs. The store stays the record of truth: the
//! `AuditStream` publisher tails it from a cursor persisted per (origin, sink) and advances
//! the cursor only after the sink acknowledged every message of a round, so delivery is
//! at-least-once; each message carries the de-duplication id `<origin>/<index>` (records) or
//! `<origin>/checkpoint/<size>` (checkpoints), which JetStream uses to drop republished
//! copies. The request path never waits on a sink.
//!
//! Owns the `AuditSink` interface, the message shape and subjects (`message`), the publisher
//! task (`publisher`), the NATS JetStream sink (`nats`) and, with the `kafka` cargo feature,
//! the Kafka sink (`kafka`). Leaves out the audit writer (`crate::audit`) and how records are
//! stored (`flowgate_store`).

#[cfg(feature = "kafka")]
mod kafka;
mod message;
mod nats;
mod publisher;

#[cfg(feature = "kafka")]
pub use kafka::KafkaSink;
pub use message::{MessageKind, SinkMessage, subject_token};
pub use nats::NatsSink;
pub use publisher::{AuditStream, StreamStatus, StreamTotals};

use std::sync::Arc;

use async_trait::async_trait;
use flowgate_config::{AuditSinkConfig, AuditStreamConfig};

/// The sink `[audit.stream]` names.
///
/// # Errors
/// [`SinkError::Setup`] for Kafka in a build without the `kafka` feature, or when the Kafka
/// producer cannot be created.
pub fn sink_for(config: &AuditStreamConfig) -> Result<Arc<dyn AuditSink>, SinkError> {
    match &config.sink {
        AuditSinkConfig::Nats { url } => Ok(Arc::new(NatsSink::new(url.expose(), config))),
        #[cfg(feature = "kafka")]
        AuditSinkConfig::Kafka { brokers, topic } => Ok(Arc::new(KafkaSink::new(brokers, topic)?)),
        #[cfg(not(feature = "kafka"))]
        AuditSinkConfig::Kafka { topic, .. } => Err(SinkError::Setup {
            stream: topic.clone(),
            source: "this flowgate was built without the `kafka` feature".into(),
        }),
    }
}

/// Why a round of publishing failed; the publisher backs off and retries from its cursor.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot connect to the audit stream: {source}")]
    Connect {
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot set up the audit stream `{stream}`: {source}")]
    Setup {
        stream: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("publishing audit message `{id}` failed: {source}")]
    Publish {
        id: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// What one acknowledged batch held.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Published {
    /// Messages the sink stored for the first time.
    pub stored: u64,
    /// Messages the sink already had (same de-duplication id): a retry after a lost ack.
    pub duplicates: u64,
}

/// An external log that takes audit messages and acknowledges them once stored. The
/// publisher calls `prepare` before its first batch and after every failure, then `publish`
/// with batches in log order.
#[async_trait]
pub trait AuditSink: Send + Sync + std::fmt::Debug {
    /// Names this sink's cursor in the store (`nats/<stream>`): a sink with another name
    /// starts from the beginning of the log.
    fn name(&self) -> &str;

    /// Connects and makes sure the destination exists (e.g. creates the stream).
    ///
    /// # Errors
    /// [`SinkError::Connect`] or [`SinkError::Setup`].
    async fn prepare(&self) -> Result<(), SinkError>;

    /// Publishes every message, in order, and returns once the sink acknowledged all of them.
    ///
    /// # Errors
    /// [`SinkError`] when any message was not acknowledged; none of the batch then counts as
    /// delivered (some may have been, and the retry's de-duplication ids cover them).
    async fn publish(&self, messages: &[SinkMessage]) -> Result<Published, SinkError>;
}
