//! Upstream providers: the pooled HTTP client, one `Upstream` per configured provider, the
//! streaming body with idle and total deadlines, and the built-in deterministic `mock`
//! provider. What to send and how to read the answer (wire formats) is the caller's business;
//! this crate moves bytes to and from providers and enforces time limits. `allowlist` and
//! `OutboundClient` guard calls to configured URLs (webhooks; upstream base URLs later)
//! against link-local, metadata and (in production) loopback addresses.

pub mod allowlist;
mod body;
mod client;
pub mod mock;
mod outbound;
pub mod upstream_allowlist;

pub use body::UpstreamBody;
pub use client::{
    DEFAULT_ANTHROPIC_VERSION, HttpClient, Operation, Upstream, UpstreamResponse, build_client,
};
pub use outbound::{OutboundClient, OutboundError};
pub use upstream_allowlist::{UpstreamRefusal, check_upstreams};

use std::time::Duration;

/// Which time limit fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutPhase {
    Connect,
    FirstByte,
    Idle,
    Total,
}

impl TimeoutPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::FirstByte => "first_byte",
            Self::Idle => "idle",
            Self::Total => "total",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot reach upstream `{provider}`: {source}")]
    Connect {
        provider: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("upstream `{provider}` timed out ({phase} limit {limit:?})", phase = .phase.as_str())]
    Timeout {
        provider: String,
        phase: TimeoutPhase,
        limit: Duration,
    },
    #[error("upstream `{provider}` broke the connection: {source}")]
    Broken {
        provider: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("upstream `{provider}` answer exceeds {limit} bytes")]
    TooLarge { provider: String, limit: usize },
    #[error("cannot build the upstream request: {detail}")]
    Request { detail: String },
}

impl UpstreamError {
    /// Whether the failure happened before anything was sent back, so another attempt is safe.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout { .. })
    }
}
