//! `KafkaSink` (cargo feature `kafka`): the `AuditSink` over Kafka through rdkafka (bundled
//! librdkafka). An idempotent producer (`acks=all`) sends every message of a batch keyed by
//! origin (one node's log stays in order within one partition) with the same headers as the
//! NATS sink, the de-duplication id in `Flowgate-Msg-Id`; then every delivery report is
//! awaited. Kafka has no broker-side de-duplication by id across producer sessions, so a
//! consumer that must not see a republished copy drops repeats of `Flowgate-Msg-Id`.

use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

use super::message::MessageKind;
use super::{AuditSink, Published, SinkError, SinkMessage};

/// Longest time librdkafka keeps trying to deliver one message before reporting failure.
const MESSAGE_TIMEOUT_MS: &str = "10000";

/// The Kafka sink of one gateway node.
pub struct KafkaSink {
    name: String,
    topic: String,
    producer: FutureProducer,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("KafkaSink")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl KafkaSink {
    /// A producer for `brokers` (comma-separated `host:port`); it connects in the background.
    ///
    /// # Errors
    /// [`SinkError::Setup`] when librdkafka refuses the configuration.
    pub fn new(brokers: &str, topic: &str) -> Result<Self, SinkError> {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", MESSAGE_TIMEOUT_MS)
            .create()
            .map_err(|err| SinkError::Setup {
                stream: topic.to_owned(),
                source: Box::new(err),
            })?;
        Ok(Self {
            name: format!("kafka/{topic}"),
            topic: topic.to_owned(),
            producer,
        })
    }
}

#[async_trait::async_trait]
impl AuditSink for KafkaSink {
    fn name(&self) -> &str {
        &self.name
    }

    /// Nothing to set up: the producer connects on its own, and the topic is the operator's
    /// (or auto-created by the brokers).
    async fn prepare(&self) -> Result<(), SinkError> {
        Ok(())
    }

    async fn publish(&self, messages: &[SinkMessage]) -> Result<Published, SinkError> {
        let failed = |message: &SinkMessage, err: Box<dyn std::error::Error + Send + Sync>| {
            SinkError::Publish {
                id: message.id.clone(),
                source: err,
            }
        };
        let mut pending: Vec<(&SinkMessage, DeliveryFuture)> = Vec::with_capacity(messages.len());
        for message in messages {
            let (kind, position_name, position) = match message.kind {
                MessageKind::Record { index } => ("record", "Flowgate-Index", index),
                MessageKind::Checkpoint { size } => ("checkpoint", "Flowgate-Size", size),
            };
            let position = position.to_string();
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "Flowgate-Msg-Id",
                    value: Some(message.id.as_str()),
                })
                .insert(Header {
                    key: "Flowgate-Origin",
                    value: Some(message.origin.as_str()),
                })
                .insert(Header {
                    key: "Flowgate-Kind",
                    value: Some(kind),
                })
                .insert(Header {
                    key: position_name,
                    value: Some(position.as_str()),
                });
            let record = FutureRecord::to(&self.topic)
                .key(message.origin.as_str())
                .payload(&message.payload[..])
                .headers(headers);
            let delivery = self
                .producer
                .send_result(record)
                .map_err(|(err, _)| failed(message, Box::new(err)))?;
            pending.push((message, delivery));
        }
        let mut published = Published::default();
        for (message, delivery) in pending {
            match delivery.await {
                Ok(Ok(_)) => published.stored += 1,
                Ok(Err((err, _))) => return Err(failed(message, Box::new(err))),
                Err(canceled) => return Err(failed(message, Box::new(canceled))),
            }
        }
        Ok(published)
    }
}
