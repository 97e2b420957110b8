//! `mbms-gateway demo`: the whole chain on loopback in one command: a
//! reference BM-SC (gRPC), a synthetic MPEG-TS encoder, a packager writing
//! DASH segments into a watch folder, the gateway (one streaming and one
//! download session) and probes that do what a UE does. Runs across several
//! MTK switches and one MSK change, prints what was sent and verified, and
//! passes only if every packet the encoder sent was decrypted and verified and
//! every file arrived byte-identical.
//!
//! - [`encoder`]: the synthetic encoder (RTP at a fixed rate);
//! - [`loopback_ue`]: a UE and the BM-SC's key management on loopback.

pub mod encoder;
pub mod loopback_ue;

use crate::bmsc::{Bmsc, BmscConfig, GenerateConfig, KeySource};
use crate::gateway::Gateway;
use crate::gateway::config::GatewayConfig;
use crate::gateway::streaming::SessionState;
use crate::protocol::keys::KeyDomainId;
use crate::protocol::srtp::RocSource;
use crate::runtime::key_service::MskClientConfig;
use crate::ue::probe::{
    DownloadProbeConfig, DownloadReport, ObjectStatus, ProbeExpect, ProbeKeySource, ProbeReport,
    StreamingProbeConfig, start_download_probe, start_streaming_probe,
};
use anyhow::{Context, Result};
use encoder::{EncoderConfig, start_encoder};
use loopback_ue::start_loopback_ue;
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Demo settings; the defaults need no arguments.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// How long the encoder sends.
    pub duration: Duration,
    /// Encoder packets per second (7 MPEG-TS packets each).
    pub rate_pps: u32,
    /// Multicast group of the session (kept on the host: TTL 0, 127.0.0.1).
    pub group: Ipv4Addr,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            duration: Duration::from_secs(12),
            rate_pps: 500,
            group: Ipv4Addr::new(239, 255, 77, 1),
        }
    }
}

/// What the demo observed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DemoSummary {
    pub encoder_packets: u64,
    pub gateway_protected: u64,
    pub gateway_mikey_sent: u64,
    pub gateway_mtk_switches: u64,
    pub msks_used: usize,
    pub probe: ProbeReport,
    /// A second probe that tuned in after the encoder's SEQ wrapped: it
    /// learns the ROC from the stream (RFC 4771).
    pub late_probe: ProbeReport,
    /// When the late probe joined, seconds after the encoder started.
    pub late_join_s: f64,
    /// Files the packager wrote into the download session's watch folder.
    pub files_written: usize,
    /// Files the download probe decrypted and found byte-identical.
    pub files_verified: usize,
    pub download: DownloadReport,
    pub passed: bool,
    pub failures: Vec<String>,
}

const KEY_DOMAIN: KeyDomainId = KeyDomainId([0x09, 0xf1, 0x07]);
const KEY_GROUP: u16 = 1;
const DOWNLOAD_KEY_GROUP: u16 = 2;

/// Deterministic bytes standing in for a media file (xorshift64): each seed
/// gives other bytes, so a mix-up of objects shows in their MD5. The demo,
/// the load test and the tests all use it.
pub fn sample_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn free_udp_port() -> Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub async fn run_demo(options: &DemoOptions) -> Result<DemoSummary> {
    let dir = std::env::temp_dir().join(format!("mbms-gateway-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let result = run_in(options, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run_in(options: &DemoOptions, dir: &std::path::Path) -> Result<DemoSummary> {
    let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
    // BM-SC: a new MSK every 8 s, so the run crosses one MSK change.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let bmsc_addr = listener.local_addr()?;
    let bmsc = Bmsc::from_config(&BmscConfig {
        state_dir: Some(dir.join("bmsc")),
        ..BmscConfig::plaintext(
            bmsc_addr,
            KEY_DOMAIN,
            vec![KEY_GROUP, DOWNLOAD_KEY_GROUP],
            KeySource::Generate(GenerateConfig::every(8, 16, 3)),
        )
    })?
    .spawn(listener)?;
    println!("BM-SC        gRPC on {bmsc_addr}, Key Group {KEY_GROUP}, new MSK every 8 s");
    // The probe is a UE: it registers over HTTP Digest and receives its MSKs
    // in MIKEY over UDP (TS 33.246 §6.3.2).
    let (key_management, ue) =
        start_loopback_ue(&dir.join("ue"), bmsc.control.clone(), KEY_DOMAIN, KEY_GROUP).await?;
    println!(
        "UE           registered at {}, MSKs in MIKEY on {}",
        key_management.http_addr,
        ue.mikey_addr()
    );

    let (ingest_port, egress_port) = (free_udp_port()?, free_udp_port()?);
    let flute_port = free_udp_port()?;
    let flute_group = Ipv4Addr::from(u32::from(options.group) + 1);
    let watch = dir.join("watch");
    std::fs::create_dir_all(&watch)?;
    let config = GatewayConfig::parse(&format!(
        r#"
state_dir = "{state}"
instance_id = "demo-gateway"
lease_block = 8
[bmsc]
endpoint = "http://{bmsc_addr}"
key_domain_id = "09f107"
backoff_initial_ms = 100
backoff_max_ms = 1000
[[streaming]]
name = "demo"
key_group = {KEY_GROUP}
destination = "{group}"
interface = "127.0.0.1"
ttl = 0
mtk = {{ period = "3s", lead = "1s", resend = "500ms" }}
[[streaming.flow]]
ingest = "127.0.0.1:{ingest_port}"
port = {egress_port}
[[download]]
name = "dash"
key_group = {DOWNLOAD_KEY_GROUP}
destination = "{flute_group}"
port = {flute_port}
tsi = 1
interface = "127.0.0.1"
ttl = 0
bitrate = "40Mbit"
push = false
fec = {{ scheme = "raptor", repair_overhead = 0.25 }}
carousel = {{ repetitions = 3, fdt_interval = "500ms", fdt_lifetime = "10s" }}
mtk = {{ period = "3s", lead = "1s", resend = "500ms" }}
watch = {{ folder = "{watch}" }}
"#,
        state = dir.join("gateway").display(),
        group = options.group,
        watch = watch.display(),
    ))?;

    // The probe joins first, as a UE already tuned in would.
    let mut probe_config = StreamingProbeConfig::new(
        IpAddr::V4(options.group),
        vec![egress_port],
        KEY_DOMAIN,
        ProbeKeySource::Ue(ue.keys()),
    );
    probe_config.interface = Some(localhost);
    // Socket set-up blocks: keep it off the async workers.
    let probe = tokio::task::spawn_blocking(move || start_streaming_probe(probe_config))
        .await?
        .context("starting the probe")?;

    let mut download_probe_config = DownloadProbeConfig::new(
        IpAddr::V4(flute_group),
        flute_port,
        KEY_DOMAIN,
        ProbeKeySource::Bmsc(MskClientConfig::new(
            format!("http://{bmsc_addr}"),
            KEY_DOMAIN,
            vec![DOWNLOAD_KEY_GROUP],
            "demo-download-probe",
        )),
    );
    download_probe_config.interface = Some(localhost);
    download_probe_config.tsi = Some(1);
    download_probe_config.output_dir = Some(dir.join("received"));
    let download_probe =
        tokio::task::spawn_blocking(move || start_download_probe(download_probe_config))
            .await?
            .context("starting the download probe")?;

    let mut gateway = Gateway::start(&config).context("starting the gateway")?;
    gateway
        .start_ingest()
        .await
        .context("starting the watch folder")?;
    let session = &gateway.streaming[0];
    let mut state = session.state.clone();
    tokio::time::timeout(
        Duration::from_secs(10),
        state.wait_for(|s| matches!(s, SessionState::OnAir { .. })),
    )
    .await
    .context("the session did not go on air within 10 s")??;
    println!(
        "gateway      RTP in on 127.0.0.1:{ingest_port} → SRTP to {}:{egress_port}, MIKEY to {}:2269, MTK every 3 s",
        options.group, options.group
    );
    // Let the probe hold the first MTK before media starts.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut encoder_config =
        EncoderConfig::new(SocketAddr::new(localhost, ingest_port), options.rate_pps);
    encoder_config.duration = Some(options.duration);
    // Start near the top of the SEQ space, so it wraps halfway to the late
    // probe's join and that probe has to learn a ROC of 1 from the stream.
    let late_join = Duration::from_secs(3).min(options.duration / 2);
    let before_wrap = f64::from(options.rate_pps) * late_join.as_secs_f64() / 2.0;
    let first_seq = u16::MAX - before_wrap.min(60_000.0) as u16;
    encoder_config.initial_seq = Some(first_seq);
    let encoder = start_encoder(encoder_config)?;
    let late_probe_config = StreamingProbeConfig {
        interface: Some(localhost),
        ..StreamingProbeConfig::new(
            IpAddr::V4(options.group),
            vec![egress_port],
            KEY_DOMAIN,
            ProbeKeySource::Ue(ue.keys()),
        )
    };
    let mut late_probe = None;
    println!(
        "encoder      MPEG-TS over RTP, {} packets/s for {:.0} s",
        options.rate_pps,
        options.duration.as_secs_f64()
    );
    println!(
        "gateway      files in {} → DCF over FLUTE (Raptor FEC) to {flute_group}:{flute_port}",
        watch.display()
    );
    let started = Instant::now();
    // The packager: a manifest, an init segment, then a segment a second,
    // each written under a temporary name and renamed into place.
    let mut written = Vec::new();
    let mut package = |name: &str, len: usize, seed: u64| -> Result<()> {
        let data = sample_bytes(len, seed);
        let part = watch.join(format!("{name}.part"));
        std::fs::write(&part, &data)?;
        std::fs::rename(&part, watch.join(name))?;
        written.push((name.to_owned(), data));
        Ok(())
    };
    package("manifest.mpd", 1_800, 1)?;
    package("init.mp4", 900, 2)?;
    let mut segment = 1u64;
    while !encoder.is_finished() {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if late_probe.is_none() && started.elapsed() >= late_join {
            let config = late_probe_config.clone();
            let probe = tokio::task::spawn_blocking(move || start_streaming_probe(config))
                .await?
                .context("starting the late probe")?;
            println!(
                "late probe   tuned in {:.1} s after the encoder started, after its SEQ wrapped",
                started.elapsed().as_secs_f64()
            );
            late_probe = Some((probe, started.elapsed()));
        }
        if started.elapsed() >= Duration::from_secs(segment) && segment <= 8 {
            package(&format!("seg-{segment}.m4s"), 250_000, 10 + segment)?;
            segment += 1;
        }
    }
    let sent = encoder.join();
    // Let the last packets through.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let report = tokio::task::spawn_blocking(move || probe.stop()).await?;
    let (late_probe, late_join) =
        late_probe.context("the encoder stopped before the late probe joined")?;
    let late_report = tokio::task::spawn_blocking(move || late_probe.stop()).await?;
    let files = written.len();
    let deadline = Instant::now() + Duration::from_secs(15);
    while download_probe.snapshot().count(ObjectStatus::Complete) < files
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let download = tokio::task::spawn_blocking(move || download_probe.stop()).await?;
    let files_verified = written
        .iter()
        .filter(|(name, data)| {
            std::fs::read(dir.join("received").join(name)).is_ok_and(|got| got == *data)
        })
        .count();
    let stats = session.stats.clone();
    gateway.stop().await;
    ue.stop().await;
    key_management.stop().await;
    bmsc.stop().await?;

    let msks_used: BTreeSet<&str> = report
        .streams
        .iter()
        .flat_map(|s| s.mkis.iter().map(|m| &m[..8]))
        .collect();
    let expect = ProbeExpect {
        min_packets: Some(sent.packets_sent),
        max_auth_failures: Some(0),
        max_lost: Some(0),
        max_mikey_rejected: Some(0),
        min_mtk_switches: Some(2),
        max_payload_errors: Some(0),
    };
    let mut failures = expect.check(&report).err().unwrap_or_default();
    if report.srtp.decrypted != sent.packets_sent {
        failures.push(format!(
            "the probe decrypted {} packets, the encoder sent {}",
            report.srtp.decrypted, sent.packets_sent
        ));
    }
    failures.extend(late_join_failures(
        &late_report,
        first_seq,
        sent.packets_sent,
    ));
    if msks_used.len() < 2 {
        failures.push(format!(
            "the run used {} MSK(s), expected an MSK change",
            msks_used.len()
        ));
    }
    if files_verified != files {
        failures.push(format!(
            "{files_verified} of the {files} files arrived byte-identical"
        ));
    }
    println!("ran {:.1} s", started.elapsed().as_secs_f64());
    Ok(DemoSummary {
        encoder_packets: sent.packets_sent,
        gateway_protected: stats.protected_rtp.load(Ordering::Relaxed),
        gateway_mikey_sent: stats.mikey_sent.load(Ordering::Relaxed),
        gateway_mtk_switches: stats
            .mtk_rotations
            .load(Ordering::Relaxed)
            .saturating_sub(1),
        msks_used: msks_used.len(),
        passed: failures.is_empty(),
        failures,
        probe: report,
        late_probe: late_report,
        late_join_s: late_join.as_secs_f64(),
        files_written: files,
        files_verified,
        download,
    })
}

/// What the late probe must have done: learned the ROC from an RCC packet,
/// then decrypted every packet from that one to the encoder's last, with no
/// authentication failure, loss or payload error.
fn late_join_failures(report: &ProbeReport, first_seq: u16, sent: u64) -> Vec<String> {
    let mut failures = ProbeExpect {
        min_packets: Some(1),
        max_auth_failures: Some(0),
        max_lost: Some(0),
        max_mikey_rejected: Some(0),
        max_payload_errors: Some(0),
        ..ProbeExpect::default()
    }
    .check(report)
    .err()
    .unwrap_or_default();
    let last_index = u64::from(first_seq) + sent - 1;
    match report.streams.as_slice() {
        [stream] => {
            if stream.roc_learned != Some(RocSource::Carried.name()) {
                failures.push(format!(
                    "the late probe learned the ROC as {:?}, not from an RCC packet",
                    stream.roc_learned
                ));
            }
            if stream.highest_index != Some(last_index) {
                failures.push(format!(
                    "the late probe's last packet has index {:?}, the encoder's last is {last_index}",
                    stream.highest_index
                ));
            }
        }
        streams => failures.push(format!(
            "the late probe saw {} streams, expected 1",
            streams.len()
        )),
    }
    failures
        .into_iter()
        .map(|f| format!("late probe: {f}"))
        .collect()
}

impl std::fmt::Display for DemoSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "encoder sent        {} RTP packets",
            self.encoder_packets
        )?;
        writeln!(
            f,
            "gateway protected   {} SRTP packets, {} MIKEY MTK messages, {} MTK switches, {} MSKs",
            self.gateway_protected,
            self.gateway_mikey_sent,
            self.gateway_mtk_switches,
            self.msks_used
        )?;
        write!(f, "{}", self.probe)?;
        writeln!(
            f,
            "late probe          joined {:.1} s in, after the SEQ wrapped; {} packets waited for the ROC",
            self.late_join_s, self.late_probe.srtp.awaiting_roc
        )?;
        write!(f, "{}", self.late_probe)?;
        writeln!(
            f,
            "download probe      {} of {} files decrypted and byte-identical ({} MIKEY objects, {} FDT Instances, {} packets)",
            self.files_verified,
            self.files_written,
            self.download.mikey_objects,
            self.download.fdt_instances,
            self.download.packets
        )?;
        if self.passed {
            writeln!(
                f,
                "PASS: the probes decrypted and verified every packet the encoder sent (the late one every packet from the first that carried the ROC) and every file"
            )
        } else {
            for failure in &self.failures {
                writeln!(f, "FAIL: {failure}")?;
            }
            Ok(())
        }
    }
}
