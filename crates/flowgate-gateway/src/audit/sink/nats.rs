//! `NatsSink`: the `AuditSink` over NATS JetStream (async-nats). Connects lazily (the
//! client then reconnects on its own), creates the stream when missing (subjects
//! `<prefix>.>`, file storage, the configured duplicate window), and publishes each batch
//! pipelined: every message is sent with its `Nats-Msg-Id`, then every `PubAck` is awaited.

use std::time::Duration;

use async_nats::jetstream::{self, context::PublishAckFuture, message::PublishMessage};
use async_trait::async_trait;
use flowgate_config::AuditStreamConfig;
use tokio::sync::OnceCell;

use super::message::MessageKind;
use super::{AuditSink, Published, SinkError, SinkMessage};

/// Longest wait for a connection, a stream request or one acknowledgement.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The NATS JetStream sink of one gateway node.
pub struct NatsSink {
    name: String,
    urls: Vec<String>,
    stream: String,
    subjects: String,
    duplicate_window: Duration,
    context: OnceCell<jetstream::Context>,
}

impl std::fmt::Debug for NatsSink {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URLs may carry credentials.
        formatter
            .debug_struct("NatsSink")
            .field("name", &self.name)
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

impl NatsSink {
    /// A sink to the servers of `url` (comma-separated) with `config`'s stream settings.
    pub fn new(url: &str, config: &AuditStreamConfig) -> Self {
        Self {
            name: format!("nats/{}", config.stream),
            urls: url
                .split(',')
                .map(|url| url.trim().to_owned())
                .filter(|url| !url.is_empty())
                .collect(),
            stream: config.stream.clone(),
            subjects: format!("{}.>", config.subject_prefix),
            duplicate_window: config.duplicate_window,
            context: OnceCell::new(),
        }
    }

    async fn connect(&self) -> Result<jetstream::Context, SinkError> {
        let client = async_nats::ConnectOptions::new()
            .name("flowgate-audit-stream")
            .connection_timeout(REQUEST_TIMEOUT)
            .request_timeout(Some(REQUEST_TIMEOUT))
            // Reconnect soon after a server restart: the lag only grows meanwhile.
            .reconnect_delay_callback(|attempts| {
                let exponent = u32::try_from(attempts.min(5)).unwrap_or(5);
                Duration::from_millis(50u64.saturating_mul(1 << exponent))
                    .min(Duration::from_secs(2))
            })
            .connect(self.urls.clone())
            .await
            .map_err(|err| SinkError::Connect {
                source: Box::new(err),
            })?;
        let mut context = jetstream::new(client);
        context.set_timeout(REQUEST_TIMEOUT);
        Ok(context)
    }
}

#[async_trait]
impl AuditSink for NatsSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn prepare(&self) -> Result<(), SinkError> {
        let context = self.context.get_or_try_init(|| self.connect()).await?;
        context
            .get_or_create_stream(jetstream::stream::Config {
                name: self.stream.clone(),
                subjects: vec![self.subjects.clone()],
                storage: jetstream::stream::StorageType::File,
                duplicate_window: self.duplicate_window,
                ..jetstream::stream::Config::default()
            })
            .await
            .map_err(|err| SinkError::Setup {
                stream: self.stream.clone(),
                source: Box::new(err),
            })?;
        Ok(())
    }

    async fn publish(&self, messages: &[SinkMessage]) -> Result<Published, SinkError> {
        let Some(context) = self.context.get() else {
            return Err(SinkError::Connect {
                source: "publish before prepare".into(),
            });
        };
        let failed = |message: &SinkMessage, err: Box<dyn std::error::Error + Send + Sync>| {
            SinkError::Publish {
                id: message.id.clone(),
                source: err,
            }
        };
        let mut pending: Vec<(&SinkMessage, PublishAckFuture)> = Vec::with_capacity(messages.len());
        for message in messages {
            let (kind, position) = match message.kind {
                MessageKind::Record { index } => ("record", index),
                MessageKind::Checkpoint { size } => ("checkpoint", size),
            };
            let publish = PublishMessage::build()
                .payload(message.payload.clone())
                .message_id(&message.id)
                .header("Flowgate-Origin", message.origin.as_str())
                .header("Flowgate-Kind", kind)
                .header(
                    if kind == "record" {
                        "Flowgate-Index"
                    } else {
                        "Flowgate-Size"
                    },
                    position.to_string().as_str(),
                );
            let ack = context
                .send_publish(message.subject.clone(), publish)
                .await
                .map_err(|err| failed(message, Box::new(err)))?;
            pending.push((message, ack));
        }
        let mut published = Published::default();
        for (message, ack) in pending {
            let ack = ack.await.map_err(|err| failed(message, Box::new(err)))?;
            if ack.duplicate {
                published.duplicates += 1;
            } else {
                published.stored += 1;
            }
        }
        Ok(published)
    }
}
