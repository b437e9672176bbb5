//! The `flowgate` binary: argument parsing (clap lives only here), configuration loading from
//! the file and the environment, logging set-up, and one module per command family. Errors
//! end the process with one line on stderr and a non-zero exit code.

mod commands;
mod output;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "flowgate",
    version,
    about = "A self-hosted, governed AI gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the configuration comes from.
#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// Configuration file (default: $FLOWGATE_CONFIG, else ./flowgate.toml when it exists).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Development mode: no secrets needed, SQLite under ./data, built-in mock provider.
    #[arg(long)]
    dev: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway.
    Serve(ConfigArgs),
    /// Manage tenants directly in the store.
    Tenants {
        #[command(subcommand)]
        command: commands::tenants::TenantCommand,
    },
    /// API keys: rotation for one tenant or all.
    Keys {
        #[command(subcommand)]
        command: commands::keys::KeysCommand,
    },
    /// Upstream providers: list them, store their credentials encrypted.
    Providers {
        #[command(subcommand)]
        command: commands::providers::ProvidersCommand,
    },
    /// Apply pending database migrations.
    Migrate {
        #[command(flatten)]
        config: ConfigArgs,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a new random master key (base64, 32 bytes) for FLOWGATE_MASTER_KEY.
    GenMasterKey,
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Policy rules: check and try rules files, compile signed bundles.
    Rules {
        #[command(subcommand)]
        command: commands::rules::RulesCommand,
    },
    /// Audit log: verify, export, proofs, public key, stats, retention.
    Audit {
        #[command(subcommand)]
        command: commands::audit::AuditCommand,
    },
    /// Back up the store: a SQLite snapshot (VACUUM INTO), or pg_dump for PostgreSQL.
    Backup {
        #[command(flatten)]
        config: ConfigArgs,
        /// The backup file to create.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Restore a backup into the configured store (stop the gateways first).
    Restore {
        #[command(flatten)]
        config: ConfigArgs,
        /// The backup file.
        file: PathBuf,
        /// Replace a store that already holds data.
        #[arg(long)]
        force: bool,
    },
    /// Check that a running gateway answers /health (for container health checks).
    Healthcheck {
        /// Health URL (default: http://127.0.0.1:$FLOWGATE_PORT/health).
        #[arg(long)]
        url: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate the configuration file and environment, then exit.
    Check(ConfigArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            output::error_line(&format!("cannot start the async runtime: {err}"));
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => commands::serve::run(&args).await,
            Command::Tenants { command } => commands::tenants::run(command).await,
            Command::Keys { command } => commands::keys::run(command).await,
            Command::Providers { command } => commands::providers::run(command).await,
            Command::Migrate { config, json } => commands::migrate(&config, json).await,
            Command::GenMasterKey => {
                output::line(&flowgate_types::MasterKey::generate().to_base64());
                Ok(())
            }
            Command::Config {
                command: ConfigCommand::Check(args),
            } => commands::config_check(&args).await,
            Command::Backup { config, out } => commands::backup::backup(&config, &out).await,
            Command::Restore {
                config,
                file,
                force,
            } => commands::backup::restore(&config, &file, force).await,
            Command::Healthcheck { url } => commands::healthcheck(url).await,
            Command::Audit { command } => commands::audit::run(command).await,
            Command::Rules { command } => commands::rules::run(command),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            output::error_line(&format!("{err:#}"));
            match err.downcast_ref::<commands::audit::VerifyExit>() {
                Some(exit) => ExitCode::from(u8::try_from(exit.code).unwrap_or(1)),
                None => ExitCode::FAILURE,
            }
        }
    }
}
