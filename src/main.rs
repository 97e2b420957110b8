//! The `mbms-gateway` command line (design §5). Scripts depend on these
//! subcommands and flags; keep them stable.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use mbms_gateway::runtime::bmsc::{BmscConfig, serve as serve_bmsc};
use mbms_gateway::runtime::config::GatewayConfig;
use mbms_gateway::runtime::demo::{DemoOptions, run_demo};
use mbms_gateway::runtime::gateway::Gateway;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "mbms-gateway",
    version,
    about = "3GPP MBMS / 5G broadcast head-end gateway"
)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Run {
        #[arg(long)]
        config: PathBuf,
    },
    /// Run the reference BM-SC key server (gRPC).
    Bmsc {
        #[arg(long)]
        config: PathBuf,
    },
    /// Run BM-SC, encoder, gateway and probe on loopback and verify the chain.
    Demo {
        /// Seconds the encoder sends.
        #[arg(long, default_value_t = 12)]
        seconds: u64,
        /// Encoder packets per second.
        #[arg(long, default_value_t = 500)]
        rate: u32,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Validate a gateway configuration without sending anything.
    CheckConfig {
        #[arg(long)]
        config: PathBuf,
    },
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn terminated() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = int.recv() => tracing::info!("SIGINT: stopping"),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(cli.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mbms-gateway: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mbms-gateway: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Run { config } => {
            let config = GatewayConfig::load(&config)?;
            let gateway = Gateway::start(&config)?;
            tracing::info!(sessions = gateway.streaming.len(), "gateway running");
            terminated().await;
            gateway.stop().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bmsc { config } => {
            let text = std::fs::read_to_string(&config)
                .with_context(|| format!("reading {}", config.display()))?;
            let config = BmscConfig::from_toml(&text)
                .with_context(|| format!("config {}", config.display()))?;
            tracing::info!(listen = %config.listen, "reference BM-SC running");
            serve_bmsc(config, terminated()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo {
            seconds,
            rate,
            json,
        } => {
            let options = DemoOptions {
                duration: std::time::Duration::from_secs(seconds),
                rate_pps: rate,
                ..DemoOptions::default()
            };
            let summary = run_demo(&options).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                print!("{summary}");
            }
            Ok(if summary.passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::CheckConfig { config } => {
            let parsed = GatewayConfig::load(&config)?;
            println!(
                "{}: ok ({} streaming session(s), Key Groups {:?})",
                config.display(),
                parsed.streaming.len(),
                parsed.bmsc.key_groups
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
