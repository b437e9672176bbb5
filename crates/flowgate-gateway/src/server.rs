//! Composition root: builds `AppState`, binds the public and internal listeners (TCP_NODELAY
//! on every accepted connection), runs the store-refresh task and the webhook outbox writer
//! and delivery worker, and shuts down gracefully:
//! stop accepting, let in-flight requests finish until the grace deadline, then cut them.
//! Every task spawned here is tracked and awaited by `Gateway::shutdown`; the webhook tasks
//! stop last, so events emitted while draining (the final audit checkpoint) are kept.

use crate::admin;
use crate::error::ApiError;
use crate::metrics;
use crate::proxy;
use crate::state::{AppState, StartError};
use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt as _;
use flowgate_config::Config;
use flowgate_store::Store;
use flowgate_types::MasterKey;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The resolved secrets a gateway runs with.
#[derive(Debug, Clone)]
pub struct Secrets {
    pub master_key: MasterKey,
    pub admin_api_key: String,
}

/// A running gateway.
#[derive(Debug)]
pub struct Gateway {
    pub public_addr: SocketAddr,
    pub internal_addr: SocketAddr,
    pub state: AppState,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    /// The webhook outbox writer and delivery worker stop last, after the audit log's final
    /// checkpoint has emitted its event.
    webhook_stop: CancellationToken,
    webhook_tasks: TaskTracker,
    grace: Duration,
}

async fn not_found() -> Response {
    ApiError::NotFound { what: "route" }.into_response()
}

async fn method_not_allowed() -> Response {
    let mut response = ApiError::invalid("method not allowed on this route").into_response();
    *response.status_mut() = http::StatusCode::METHOD_NOT_ALLOWED;
    response
}

/// The public listener's routes: data plane, admin API, health.
pub fn public_router(state: AppState) -> Router {
    let admin = admin::router()
        .merge(admin::health_router())
        .merge(metrics::admin_router())
        .layer(axum::middleware::from_fn(admin::stamp_request_id));
    Router::new()
        .merge(proxy::router())
        .merge(admin)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// The internal listener's routes: health and `GET /metrics` (the dashboard joins later).
pub fn internal_router(state: AppState) -> Router {
    admin::health_router()
        .merge(metrics::internal_router())
        .fallback(not_found)
        .with_state(state)
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })
}

impl Gateway {
    /// Starts serving. The store must already be migrated.
    pub async fn start(
        config: Arc<Config>,
        store: Arc<dyn Store>,
        secrets: &Secrets,
    ) -> Result<Self, StartError> {
        let state = AppState::new(
            Arc::clone(&config),
            store,
            &secrets.master_key,
            &secrets.admin_api_key,
        )
        .await?;
        let public = bind(config.server.public_addr).await?;
        let internal = bind(config.server.internal_addr).await?;
        let public_addr = public.local_addr().map_err(|source| StartError::Bind {
            addr: config.server.public_addr,
            source,
        })?;
        let internal_addr = internal.local_addr().map_err(|source| StartError::Bind {
            addr: config.server.internal_addr,
            source,
        })?;
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();

        let public_app = public_router(state.clone());
        let stop = shutdown.clone();
        tasks.spawn(async move {
            let listener = public.tap_io(|tcp| {
                if let Err(err) = tcp.set_nodelay(true) {
                    tracing::debug!(error = %err, "cannot set TCP_NODELAY");
                }
            });
            if let Err(err) = axum::serve(listener, public_app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
            {
                tracing::error!(error = %err, "public listener failed");
            }
        });
        let internal_app = internal_router(state.clone());
        let stop = shutdown.clone();
        tasks.spawn(async move {
            if let Err(err) = axum::serve(internal, internal_app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
            {
                tracing::error!(error = %err, "internal listener failed");
            }
        });
        let refresher = state.clone();
        let stop = shutdown.clone();
        let interval = config.store.refresh_interval;
        tasks.spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    _ = ticker.tick() => {
                        if let Err(err) = refresher.refresh(false).await {
                            tracing::warn!(error = %err, "cache refresh from the store failed; serving the last snapshot");
                        }
                    }
                }
            }
        });
        if !config.server.busy_poll.is_zero() {
            for _ in 0..tokio::runtime::Handle::current().metrics().num_workers() {
                tasks.spawn(Arc::clone(state.busy_poll()).run(shutdown.clone()));
            }
        }
        let webhook_stop = CancellationToken::new();
        let webhook_tasks = TaskTracker::new();
        state.webhooks().start(&webhook_tasks, &webhook_stop).await;
        webhook_tasks.close();
        if let Some(stream) = state.audit_stream() {
            stream.start();
        }
        tasks.close();
        tracing::info!(public = %public_addr, internal = %internal_addr, "flowgate listening");
        Ok(Self {
            public_addr,
            internal_addr,
            state,
            shutdown,
            tasks,
            webhook_stop,
            webhook_tasks,
            grace: config.server.shutdown_grace,
        })
    }

    /// A token that starts the shutdown when cancelled (e.g. from a signal handler).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits until shutdown is requested, then drains: in-flight requests get until the grace
    /// deadline. Returns false when the deadline cut requests off.
    pub async fn run_until_stopped(self) -> bool {
        self.shutdown.cancelled().await;
        self.drain().await
    }

    /// Requests shutdown and drains.
    pub async fn shutdown(self) -> bool {
        self.shutdown.cancel();
        self.drain().await
    }

    async fn drain(self) -> bool {
        tracing::info!(grace = ?self.grace, "shutting down: no new connections, draining in-flight requests");
        let drained = tokio::time::timeout(self.grace, self.tasks.wait())
            .await
            .is_ok();
        if !drained {
            tracing::warn!("shutdown deadline reached with requests still in flight");
        }
        self.state.audit().shutdown().await;
        // After the writer's final flush, so its last records and checkpoint are streamed and
        // the final checkpoint's webhook event reaches the outbox.
        if let Some(stream) = self.state.audit_stream() {
            stream.shutdown().await;
        }
        self.webhook_stop.cancel();
        self.webhook_tasks.wait().await;
        self.state.tracer().shutdown().await;
        drained
    }
}
