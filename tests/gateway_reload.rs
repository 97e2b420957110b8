//! `SIGHUP` reload of the gateway process: a streaming session keeps running
//! through a reload that removes one session and adds another, and through a
//! reload of an invalid file, without losing a packet (verified by the probe,
//! as a UE). Then `SIGTERM` stops the process with status 0.

mod common;

use common::gateway::*;
use mbms_gateway::runtime::bmsc::MskClientConfig;
use mbms_gateway::runtime::encoder::{EncoderConfig, start_encoder};
use mbms_gateway::runtime::probe::{ProbeKeySource, StreamingProbeConfig, start_streaming_probe};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Groups used by no other test.
const KEEP: Ipv4Addr = Ipv4Addr::new(239, 255, 41, 1);
const REMOVED: Ipv4Addr = Ipv4Addr::new(239, 255, 41, 2);
const ADDED: Ipv4Addr = Ipv4Addr::new(239, 255, 41, 3);

struct Session {
    name: &'static str,
    key_group: u16,
    group: Ipv4Addr,
    ingest: u16,
    egress: u16,
}

impl Session {
    fn new(name: &'static str, key_group: u16, group: Ipv4Addr) -> Self {
        Self {
            name,
            key_group,
            group,
            ingest: free_udp_port(),
            egress: free_udp_port(),
        }
    }

    fn toml(&self) -> String {
        format!(
            r#"
[[streaming]]
name = "{name}"
key_group = {key_group}
destination = "{group}"
interface = "127.0.0.1"
ttl = 0
mtk = {{ period = "600ms", lead = "200ms", resend = "100ms", retire_after = "500ms" }}
[[streaming.flow]]
ingest = "127.0.0.1:{ingest}"
port = {egress}
"#,
            name = self.name,
            key_group = self.key_group,
            group = self.group,
            ingest = self.ingest,
            egress = self.egress,
        )
    }
}

fn gateway_toml(
    state_dir: &Path,
    bmsc: SocketAddr,
    admin: SocketAddr,
    sessions: &[&Session],
) -> String {
    let mut text = format!(
        r#"
state_dir = "{state}"
instance_id = "gw-reload"
lease_block = 4
[admin]
listen = "{admin}"
[bmsc]
endpoint = "http://{bmsc}"
key_domain_id = "09f107"
backoff_initial_ms = 100
backoff_max_ms = 300
"#,
        state = state_dir.display(),
    );
    for s in sessions {
        text.push_str(&s.toml());
    }
    text
}

fn spawn_gateway(config: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_mbms-gateway"))
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the gateway binary starts")
}

fn signal(child: &Child, signal: i32) {
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
}

/// A GET on the admin endpoint: (status, body); `None` while it is not up.
fn get(admin: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(admin).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).ok()?;
    let status = raw.get(9..12)?.parse().ok()?;
    let body = raw.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}

/// The value of the sample `name{labels}` in a Prometheus text body.
fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

fn reloads(admin: SocketAddr, result: &str) -> f64 {
    get(admin, "/metrics")
        .and_then(|(_, body)| {
            sample(
                &body,
                &format!("mbms_gateway_config_reloads_total{{result=\"{result}\"}}"),
            )
        })
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_runs_through_reloads_without_loss() {
    let dir = temp_dir("gateway-reload");
    let mut bmsc_conf = bmsc_config(
        "127.0.0.1:0".parse().unwrap(),
        &dir.join("bmsc"),
        3600,
        7200,
    );
    bmsc_conf.key_groups = vec![1, 2, 3];
    let bmsc = start_bmsc(&bmsc_conf).await;
    let admin: SocketAddr = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let keep = Session::new("keep", 1, KEEP);
    let removed = Session::new("removed", 2, REMOVED);
    let added = Session::new("added", 3, ADDED);
    let config = dir.join("gateway.toml");
    let write = |sessions: &[&Session]| {
        std::fs::write(
            &config,
            gateway_toml(&dir.join("gw"), bmsc.local_addr, admin, sessions),
        )
        .unwrap()
    };
    write(&[&keep, &removed]);
    let mut gateway = spawn_gateway(&config);
    wait_for("/readyz 200", Duration::from_secs(15), || {
        get(admin, "/readyz").is_some_and(|(status, _)| status == 200)
    })
    .await;

    // The probe tunes in to `keep` as a UE would, and holds its MTK before
    // the media starts.
    let mut probe_config = StreamingProbeConfig::new(
        KEEP.into(),
        vec![keep.egress],
        KEY_DOMAIN,
        ProbeKeySource::Bmsc(MskClientConfig::new(
            format!("http://{}", bmsc.local_addr),
            KEY_DOMAIN,
            vec![keep.key_group],
            "reload-probe",
        )),
    );
    probe_config.interface = Some(Ipv4Addr::LOCALHOST.into());
    let probe = tokio::task::spawn_blocking(move || start_streaming_probe(probe_config))
        .await
        .unwrap()
        .unwrap();
    wait_for("the probe holds an MTK", Duration::from_secs(10), || {
        probe.snapshot().mikey.accepted > 0
    })
    .await;
    let removed_srtp = Capture::start(REMOVED, removed.egress);
    let added_srtp = Capture::start(ADDED, added.egress);
    let encoder = |session: &Session| {
        let mut c =
            EncoderConfig::new(SocketAddr::from((Ipv4Addr::LOCALHOST, session.ingest)), 500);
        c.interface = Some(Ipv4Addr::LOCALHOST.into());
        start_encoder(c).unwrap()
    };
    let keep_encoder = encoder(&keep);
    let removed_encoder = encoder(&removed);
    let added_encoder = encoder(&added);
    wait_for(
        "SRTP of the session to be removed",
        Duration::from_secs(5),
        || removed_srtp.count() > 200,
    )
    .await;
    assert_eq!(added_srtp.count(), 0, "not configured yet");

    tokio::time::sleep(Duration::from_secs(1)).await;
    // Reload: `removed` goes, `added` comes, `keep` is untouched.
    write(&[&keep, &added]);
    signal(&gateway, libc::SIGHUP);
    wait_for("the reload", Duration::from_secs(10), || {
        reloads(admin, "applied") == 1.0
    })
    .await;
    wait_for("SRTP of the added session", Duration::from_secs(10), || {
        added_srtp.count() > 200
    })
    .await;
    let removed_after_reload = removed_srtp.count();
    let (_, metrics) = get(admin, "/metrics").unwrap();
    let value =
        |series: &str| sample(&metrics, series).unwrap_or_else(|| panic!("no sample {series}"));
    assert_eq!(value("mbms_gateway_sessions{kind=\"streaming\"}"), 2.0);
    // The BM-SC issued the MSKs with 7200 s of life and MTK IDs up to 0xFFFF.
    let left = value("mbms_gateway_msk_validity_remaining_seconds{session=\"keep\"}");
    assert!((3600.0..=7200.0).contains(&left), "{left}");
    let ids = value("mbms_gateway_msk_validity_remaining_mtk_ids{session=\"added\"}");
    assert!((0xff00 as f64..0xffff as f64).contains(&ids), "{ids}");
    assert!(value("mbms_gateway_bmsc_rpc_duration_seconds_count{kind=\"lease_mtk_ids\"}") >= 3.0);

    // An invalid file is refused; everything keeps running.
    std::fs::write(&config, "state_dir = \"/x\"\nbogus = 1\n").unwrap();
    signal(&gateway, libc::SIGHUP);
    wait_for("the refused reload", Duration::from_secs(10), || {
        reloads(admin, "refused") == 1.0
    })
    .await;
    let added_before = added_srtp.count();
    wait_for(
        "SRTP after the refused reload",
        Duration::from_secs(5),
        || added_srtp.count() > added_before + 200,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (status, body) = get(admin, "/readyz").unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains("removed"), "{body}");

    let sent = keep_encoder.stop();
    removed_encoder.stop();
    added_encoder.stop();
    // SIGTERM: ingest stops, queues drain, exit 0.
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal(&gateway, libc::SIGTERM);
    let status = tokio::task::spawn_blocking(move || gateway.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(
        status.success(),
        "SIGTERM stops the gateway cleanly: {status}"
    );
    let report = tokio::task::spawn_blocking(move || probe.stop())
        .await
        .unwrap();
    let removed_total = removed_srtp.finish().len();
    added_srtp.finish();
    bmsc.stop().await.unwrap();

    assert!(sent.packets_sent > 1000, "{sent:?}");
    assert_eq!(report.srtp.auth_failures, 0, "{report}");
    assert_eq!(report.lost(), 0, "{report}");
    assert_eq!(
        report.srtp.decrypted, sent.packets_sent,
        "every packet sent to `keep` decrypted: {report}"
    );
    assert_eq!(report.payload_errors(), 0, "{report}");
    assert_eq!(
        removed_total, removed_after_reload,
        "the removed session sent nothing after the reload"
    );
}

/// In process: a session whose configuration changed is restarted (new
/// handle, back on air) and its counters continue from the old ones; a
/// reload that changes a process-wide setting is refused and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_session_restarts_and_keeps_its_counters() {
    use mbms_gateway::runtime::config::GatewayConfig;
    use mbms_gateway::runtime::gateway::Gateway;
    use mbms_gateway::runtime::reload::ReloadRefused;
    use mbms_gateway::runtime::streaming::SessionState;

    let dir = temp_dir("gateway-reload-changed");
    let bmsc = start_bmsc(&bmsc_config(
        "127.0.0.1:0".parse().unwrap(),
        &dir.join("bmsc"),
        3600,
        7200,
    ))
    .await;
    let ingest_port = free_udp_port();
    let setup = |period| GatewaySetup {
        state_dir: dir.join("gw"),
        bmsc: bmsc.local_addr,
        group: Ipv4Addr::new(239, 255, 41, 9),
        ingest_port,
        egress_port: 5004,
        period,
        lead: "200ms",
        resend: "100ms",
    };
    let mut gateway = Gateway::start(&GatewayConfig::parse(&setup("2s").toml()).unwrap()).unwrap();
    let on_air = |gateway: &Gateway| {
        matches!(
            *gateway.streaming[0].state.borrow(),
            SessionState::OnAir { .. }
        )
    };
    wait_for("on air", Duration::from_secs(10), || on_air(&gateway)).await;
    let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for seq in 0..50 {
        sender
            .send_to(
                &rtp_packet(seq, 7, 200),
                gateway.streaming[0].ingest_addrs()[0],
            )
            .unwrap();
    }
    let old_stats = gateway.streaming[0].stats.clone();
    wait_for("50 packets in", Duration::from_secs(5), || {
        old_stats.ingest_total() == 50
    })
    .await;

    // Another state directory needs a restart: refused, nothing changes.
    let mut moved = GatewayConfig::parse(&setup("2s").toml()).unwrap();
    moved.state_dir = dir.join("elsewhere");
    assert_eq!(
        gateway.reload(moved).await,
        Err(ReloadRefused::NeedsRestart { field: "state_dir" })
    );
    assert!(std::sync::Arc::ptr_eq(
        &gateway.streaming[0].stats,
        &old_stats
    ));

    // An equal configuration touches nothing.
    let same = gateway
        .reload(GatewayConfig::parse(&setup("2s").toml()).unwrap())
        .await
        .unwrap();
    assert_eq!((same.unchanged, same.restarted.len()), (1, 0));
    assert!(std::sync::Arc::ptr_eq(
        &gateway.streaming[0].stats,
        &old_stats
    ));

    // A new MTK period restarts the session.
    let report = gateway
        .reload(GatewayConfig::parse(&setup("3s").toml()).unwrap())
        .await
        .unwrap();
    assert_eq!(report.restarted, ["tv"]);
    assert!(report.started.is_empty() && report.stopped.is_empty() && report.failed.is_empty());
    let new_stats = gateway.streaming[0].stats.clone();
    assert!(!std::sync::Arc::ptr_eq(&new_stats, &old_stats));
    assert_eq!(new_stats.ingest_total(), 50, "counters carried over");
    assert!(
        new_stats
            .mtk_rotations
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    wait_for("on air again", Duration::from_secs(10), || on_air(&gateway)).await;
    gateway.stop().await;
    bmsc.stop().await.unwrap();
}
