//! The gateway: the data plane (`proxy`), the admin API (`admin`), the shared state and its
//! in-memory snapshot (`state`), error mapping (`error`), Prometheus metrics (`metrics`), the
//! composition root that binds listeners and shuts down gracefully (`server`), and webhooks
//! (`webhooks`: event queue, durable outbox, signed delivery). Only this crate knows axum.

pub mod admin;
pub mod audit;
pub mod bootstrap;
pub mod busy_poll;
pub mod credentials;
pub mod data_keys;
pub mod error;
pub mod metrics;
pub mod proxy;
pub mod server;
pub mod state;
pub mod tenants;
pub mod trace;
pub mod webhooks;

pub use server::{Gateway, Secrets};
pub use state::{AppState, StartError};
