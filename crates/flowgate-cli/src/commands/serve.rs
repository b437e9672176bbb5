//! `flowgate serve [--dev]`: logging, store, secrets, development bootstrap, the gateway, and
//! a graceful stop on SIGINT/SIGTERM.

use crate::ConfigArgs;
use crate::output;
use flowgate_config::{Config, LogLevel};
use flowgate_gateway::bootstrap;
use flowgate_gateway::{Gateway, Secrets};
use std::sync::Arc;

pub async fn run(args: &ConfigArgs) -> anyhow::Result<()> {
    let config = crate::commands::load_config(args)?;
    let _log_guard = init_logging(config.log_level);
    let (secrets, admin_created) = if config.is_development() {
        bootstrap::development_secrets(&config)?
    } else {
        (bootstrap::configured_secrets(&config)?, false)
    };
    let store = bootstrap::open_store(&config).await?;
    let demo_key = if config.is_development() {
        bootstrap::ensure_demo_tenant(store.as_ref(), &secrets.master_key).await?
    } else {
        None
    };
    let config = Arc::new(config);
    let gateway = Gateway::start(Arc::clone(&config), store, &secrets).await?;
    if config.is_development() {
        print_dev_banner(
            &gateway,
            &config,
            &secrets,
            admin_created,
            demo_key.as_ref().map(|k| k.api_key.as_str()),
        );
    }
    let token = gateway.shutdown_token();
    tokio::spawn(async move {
        wait_for_signal().await;
        token.cancel();
    });
    if !gateway.run_until_stopped().await {
        tracing::warn!("some requests were cut off by the shutdown deadline");
    }
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// JSON lines on stdout through a non-blocking writer, so a slow terminal never stalls
/// requests. The guard flushes on drop.
fn init_logging(level: LogLevel) -> tracing_appender::non_blocking::WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking(std::io::stdout());
    let filter = tracing_subscriber::EnvFilter::new(format!(
        "{level},hyper=warn,h2=warn,sqlx=warn,rustls=warn",
        level = level.as_str()
    ));
    let installed = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_env_filter(filter)
        .with_writer(writer)
        .try_init();
    if installed.is_err() {
        output::error_line("a logger was already installed; keeping it");
    }
    guard
}

fn print_dev_banner(
    gateway: &Gateway,
    config: &Config,
    secrets: &Secrets,
    admin_created: bool,
    demo_key: Option<&str>,
) {
    // A wildcard bind is reachable on loopback; show the address a newcomer can paste.
    let mut reachable = gateway.public_addr;
    if reachable.ip().is_unspecified() {
        reachable.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let base = format!("http://{reachable}");
    let mut lines = vec![
        String::new(),
        "flowgate is running in DEVELOPMENT mode (SQLite under the data folder, built-in mock provider).".to_owned(),
        format!("  gateway:   {base}   (OpenAI base URL: {base}/v1)"),
        format!("  internal:  http://{}  (health)", gateway.internal_addr),
        format!("  data:      {}", config.data_dir.display()),
    ];
    if admin_created {
        lines.push(format!(
            "  admin key: {}   (shown once; also kept in {}/admin.key)",
            secrets.admin_api_key,
            config.data_dir.display()
        ));
    } else {
        lines.push(format!(
            "  admin key: in {}/admin.key (or FLOWGATE_ADMIN_API_KEY)",
            config.data_dir.display()
        ));
    }
    match demo_key {
        Some(key) => {
            lines.push(format!("  demo tenant key: {key}   (shown once: save it now)"));
            lines.push(String::new());
            lines.push("Try it:".to_owned());
            lines.push(format!(
                "  curl {base}/v1/chat/completions -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\\n    -d '{{\"model\":\"{}\",\"messages\":[{{\"role\":\"user\",\"content\":\"Hello!\"}}]}}'",
                bootstrap::DEV_CHAT_MODEL
            ));
        }
        None => lines.push(format!(
            "  demo tenant exists; issue a new key with: curl -X POST {base}/v1/tenants/<id>/keys -H 'Authorization: Bearer <admin key>'"
        )),
    }
    lines.push(String::new());
    output::line(&lines.join("\n"));
}
