//! The `mbms-gateway` command line (design §5). Scripts depend on these
//! subcommands and flags; keep them stable.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use mbms_gateway::bmsc::{BmscConfig, serve as serve_bmsc};
use mbms_gateway::demo::{DemoOptions, run_demo};
use mbms_gateway::gateway::config::GatewayConfig;
use mbms_gateway::gateway::download::send::send_files;
use mbms_gateway::gateway::service::run_gateway;
use mbms_gateway::protocol::srtp::RocTransmission;
use mbms_gateway::runtime::key_service::MskClientConfig;
use mbms_gateway::runtime::key_service::config::parse_key_domain_id;
use mbms_gateway::runtime::wall_clock;
use mbms_gateway::ue::key_management::{UeConfig, start_ue};
use mbms_gateway::ue::probe::{
    ProbeExpect, ProbeKeySource, StreamingProbeConfig, run_streaming_probe,
};
use std::net::IpAddr;
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
    /// Receive a streaming session as a UE would and report what decrypted.
    Probe(Box<ProbeArgs>),
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
    /// Send files once over a download session of a gateway configuration.
    Send {
        #[arg(long)]
        config: PathBuf,
        /// The download session (needed when the configuration has several).
        #[arg(long)]
        session: Option<String>,
        /// Seconds to wait for the session's first MTK.
        #[arg(long, default_value_t = 30)]
        on_air_timeout: u64,
        /// Files to send; each goes out under its file name.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Validate a gateway configuration without sending anything.
    CheckConfig {
        #[arg(long)]
        config: PathBuf,
    },
    /// Print the SDP description of a streaming session of a gateway
    /// configuration (what `/sessions/NAME/sdp` serves).
    Sdp {
        #[arg(long)]
        config: PathBuf,
        /// The streaming session.
        session: String,
    },
}

#[derive(clap::Args)]
struct ProbeArgs {
    /// Multicast group (or local address) of the session.
    #[arg(long)]
    group: IpAddr,
    /// SRTP port(s) of the session's flows.
    #[arg(long = "port", required = true)]
    ports: Vec<u16>,
    /// Local IPv4 address of the interface to join on.
    #[arg(long)]
    interface: Option<IpAddr>,
    /// Key Domain ID, 6 hex digits.
    #[arg(long)]
    key_domain_id: String,
    /// Key Group(s) whose MSKs to use.
    #[arg(long = "key-group", required_unless_present = "ue_file")]
    key_groups: Vec<u16>,
    /// MSKs from a key file (the reference BM-SC's format) ...
    #[arg(long, conflicts_with_all = ["bmsc", "ue_file"])]
    key_file: Option<PathBuf>,
    /// ... or from a BM-SC (`http://host:port`) ...
    #[arg(long, conflicts_with = "ue_file")]
    bmsc: Option<String>,
    /// ... or as a UE: register to the BM-SC's Key Request function and
    /// receive MSKs in MIKEY over UDP, as the UE file describes; deregisters
    /// on exit.
    #[arg(long)]
    ue_file: Option<PathBuf>,
    /// Stop after this many seconds (default: until SIGINT/SIGTERM).
    #[arg(long)]
    seconds: Option<u64>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Exit non-zero unless at least this many packets decrypted.
    #[arg(long)]
    expect_min_packets: Option<u64>,
    /// Exit non-zero on more SRTP authentication failures than this.
    #[arg(long)]
    expect_max_auth_failures: Option<u64>,
    /// Exit non-zero on more lost packets than this.
    #[arg(long)]
    expect_max_lost: Option<u64>,
    /// Exit non-zero on more rejected MIKEY messages than this.
    #[arg(long)]
    expect_max_mikey_rejected: Option<u64>,
    /// Exit non-zero unless at least this many MTK switches were seen.
    #[arg(long)]
    expect_min_mtk_switches: Option<u64>,
    /// How the session carries the ROC (RFC 4771): none, rccm1, rccm2 or
    /// rccm3, as its `[streaming.srtp] roc_transmission` (default: rccm2).
    #[arg(long)]
    roc_transmission: Option<String>,
    /// R of the session's ROC transmission (default 16).
    #[arg(long)]
    roc_rate: Option<u16>,
}

async fn probe(args: ProbeArgs) -> Result<ExitCode> {
    let key_domain_id = parse_key_domain_id(&args.key_domain_id)
        .map_err(|e| anyhow::anyhow!("--key-domain-id: {e}"))?;
    let mut ue = None;
    let key_source = match (args.key_file, args.bmsc, args.ue_file) {
        (Some(path), None, None) => ProbeKeySource::KeyFile {
            path,
            key_groups: args.key_groups,
        },
        (None, Some(endpoint), None) => ProbeKeySource::Bmsc(MskClientConfig::new(
            endpoint,
            key_domain_id,
            args.key_groups,
            "probe",
        )),
        (None, None, Some(path)) => {
            let running = start_ue(UeConfig::load(&path)?).await?;
            let keys = running.keys();
            ue = Some(running);
            ProbeKeySource::Ue(keys)
        }
        _ => anyhow::bail!("give the MSKs with --key-file, --bmsc or --ue-file"),
    };
    let mut config = StreamingProbeConfig::new(args.group, args.ports, key_domain_id, key_source);
    config.roc = RocTransmission::from_setting(args.roc_transmission.as_deref(), args.roc_rate)
        .map_err(|e| anyhow::anyhow!("--roc-transmission / --roc-rate: {e}"))?;
    config.interface = args.interface;
    config.duration = args.seconds.map(std::time::Duration::from_secs);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        terminated().await;
        let _ = stop_tx.send(true);
    });
    let report = run_streaming_probe(config, stop_rx).await;
    if let Some(ue) = ue {
        let stats = ue.stop().await;
        tracing::info!(?stats, "UE deregistered");
    }
    let report = report?;
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{report}");
    }
    let expect = ProbeExpect {
        min_packets: args.expect_min_packets,
        max_auth_failures: args.expect_max_auth_failures,
        max_lost: args.expect_max_lost,
        max_mikey_rejected: args.expect_max_mikey_rejected,
        min_mtk_switches: args.expect_min_mtk_switches,
        max_payload_errors: None,
    };
    match expect.check(&report) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(failures) => {
            for f in failures {
                eprintln!("probe: expectation not met: {f}");
            }
            Ok(ExitCode::from(3))
        }
    }
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
            run_gateway(&config).await?;
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
        Command::Probe(args) => probe(*args).await,
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
        Command::Send {
            config,
            session,
            on_air_timeout,
            paths,
        } => {
            let config = GatewayConfig::load(&config)?;
            let bar = indicatif::ProgressBar::new(paths.len() as u64).with_style(
                indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} files sent  {msg}")?,
            );
            let done = send_files(
                &config,
                session.as_deref(),
                &paths,
                std::time::Duration::from_secs(on_air_timeout),
                |p| {
                    bar.set_position(p.sent);
                    bar.set_message(format!(
                        "{} protected, {} refused, {:.1} MB on air",
                        p.protected,
                        p.refused,
                        p.alc_bytes as f64 / 1e6
                    ));
                },
            )
            .await;
            bar.finish();
            let done = done?;
            println!(
                "{} file(s) sent, {} bytes of ALC",
                done.sent, done.alc_bytes
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig { config } => {
            let parsed = GatewayConfig::load(&config)?;
            println!(
                "{}: ok ({} streaming and {} download session(s), Key Groups {:?})",
                config.display(),
                parsed.streaming.len(),
                parsed.download.len(),
                parsed.bmsc.key_groups
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Sdp { config, session } => {
            print!("{}", describe_session(&config, &session)?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The SDP of `session` in the configuration at `path`; its version is the
/// file's modification time, so it grows with every edit.
fn describe_session(path: &std::path::Path, session: &str) -> Result<String> {
    let config = GatewayConfig::load(path)?;
    let described = config
        .streaming_session(session)
        .with_context(|| path.display().to_string())?;
    let modified = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .with_context(|| format!("{}: modification time", path.display()))?;
    described
        .sdp(config.bmsc.key_domain_id, wall_clock::ntp_seconds(modified))
        .with_context(|| format!("{}: session `{session}`", path.display()))
}
