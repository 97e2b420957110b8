//! `SIGHUP` reload of the gateway process: a streaming session keeps running
//! through a reload that removes one session and adds another, and through a
//! reload of an invalid file, without losing a packet (verified by the probe,
//! as a UE). Then `SIGTERM` stops the process with status 0.

mod common;

use common::gateway::*;
use common::process::{gateway_command, signal};
use mbms_gateway::bmsc::RunningBmsc;
use mbms_gateway::demo::encoder::{EncoderConfig, start_encoder};
use mbms_gateway::runtime::key_service::MskClientConfig;
use mbms_gateway::ue::probe::{ProbeKeySource, StreamingProbeConfig, start_streaming_probe};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::Child;
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
    let mut text = gateway_header(state_dir, "gw-reload", Some(admin), bmsc);
    for s in sessions {
        text.push_str(&s.toml());
    }
    text
}

fn spawn_gateway(config: &Path) -> Child {
    gateway_command(&["run", "--config", config.to_str().unwrap()], "info")
        .spawn()
        .expect("the gateway binary starts")
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

/// A BM-SC on loopback serving hour-long MSKs of `key_groups`.
async fn start_bmsc_serving(dir: &Path, key_groups: &[u16]) -> RunningBmsc {
    let mut config = bmsc_config(
        "127.0.0.1:0".parse().unwrap(),
        &dir.join("bmsc"),
        3600,
        7200,
    );
    config.key_groups = key_groups.to_vec();
    start_bmsc(&config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_runs_through_reloads_without_loss() {
    let dir = temp_dir("gateway-reload");
    let bmsc = start_bmsc_serving(&dir, &[1, 2, 3]).await;
    let admin = SocketAddr::from((Ipv4Addr::LOCALHOST, free_tcp_port()));
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
    // The ingest thread times its own bursts, for the session it serves.
    assert!(value("mbms_gateway_ingest_to_egress_latency_seconds_count{session=\"keep\"}") > 0.0);
    assert!(value("mbms_gateway_egress_queue_depth{session=\"keep\"}") >= 0.0);

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
    use mbms_gateway::gateway::Gateway;
    use mbms_gateway::gateway::config::GatewayConfig;
    use mbms_gateway::gateway::reload::ReloadRefused;
    use mbms_gateway::gateway::streaming::SessionState;

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

/// In process: a session a reload cannot start (its ingest port is taken)
/// keeps the gateway not ready, naming it and the reason, and the next reload
/// of the same file starts it once the port is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_failed_to_start_is_not_ready_and_retried() {
    use mbms_gateway::gateway::Gateway;
    use mbms_gateway::gateway::config::GatewayConfig;
    use mbms_gateway::gateway::telemetry::watch_gateway;
    use mbms_gateway::runtime::admin::{AdminViews, readiness::Readiness};
    use mbms_gateway::runtime::metrics;
    const RADIO_KEY_GROUP: u16 = 12;

    let dir = temp_dir("gateway-reload-failed");
    let bmsc = start_bmsc_serving(&dir, &[KEY_GROUP, RADIO_KEY_GROUP]).await;
    let setup = GatewaySetup {
        state_dir: dir.join("gw"),
        bmsc: bmsc.local_addr,
        group: Ipv4Addr::new(239, 255, 41, 12),
        ingest_port: free_udp_port(),
        egress_port: 5004,
        period: "2s",
        lead: "200ms",
        resend: "100ms",
    };
    let take_a_port = || {
        let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        (taken, port)
    };
    let with_radio_on = |ingest_port: u16| {
        let text = format!(
            r#"{}[[streaming]]
name = "radio"
key_group = {RADIO_KEY_GROUP}
destination = "239.255.41.13"
interface = "127.0.0.1"
ttl = 0
[[streaming.flow]]
ingest = "127.0.0.1:{ingest_port}"
port = 5004
"#,
            setup.toml()
        );
        GatewayConfig::parse(&text).unwrap()
    };
    let radio = |gateway: &Gateway| {
        gateway
            .streaming
            .iter()
            .find(|h| h.name == "radio")
            .expect("radio runs")
            .stats
            .clone()
    };
    let (taken, radio_port) = take_a_port();
    let mut gateway = Gateway::start(&GatewayConfig::parse(&setup.toml()).unwrap()).unwrap();
    let metrics = metrics::install().unwrap();
    let readiness = Readiness::new();
    let telemetry = watch_gateway(
        &gateway,
        &AdminViews::new(metrics.clone(), readiness.clone()),
    );
    let radio_check =
        |readiness: &Readiness| readiness.report().failing.get("session radio").cloned();

    let report = gateway.reload(with_radio_on(radio_port)).await.unwrap();
    assert_eq!(report.failed.len(), 1, "{report:?}");
    assert_eq!(report.failed[0].0, "radio");
    assert_eq!(gateway.streaming.len(), 1, "tv runs on");
    telemetry.sync(&gateway);
    let reason = radio_check(&readiness).expect("radio is reported not ready");
    assert!(
        reason.starts_with("failed to start") && reason.contains(&radio_port.to_string()),
        "{reason}"
    );

    // The same file again, once the port is free: radio starts.
    drop(taken);
    let report = gateway.reload(with_radio_on(radio_port)).await.unwrap();
    assert_eq!(report.started, ["radio"], "{report:?}");
    assert!(report.failed.is_empty() && gateway.failed_sessions().is_empty());
    assert_eq!(gateway.streaming.len(), 2);
    telemetry.sync(&gateway);
    assert!(
        radio_check(&readiness).is_none_or(|r| !r.starts_with("failed to start")),
        "the failure is no longer reported"
    );

    // A change whose restart fails (the new port is taken) keeps radio's
    // counters for the retry that succeeds.
    let encoder = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for seq in 0..20 {
        encoder
            .send_to(&rtp_packet(seq, 9, 200), ("127.0.0.1", radio_port))
            .unwrap();
    }
    let stats = radio(&gateway);
    wait_for("20 packets into radio", Duration::from_secs(5), || {
        stats.ingest_total() == 20
    })
    .await;
    let (taken, moved_port) = take_a_port();
    let report = gateway.reload(with_radio_on(moved_port)).await.unwrap();
    assert_eq!(report.failed.len(), 1, "{report:?}");
    drop(taken);
    let report = gateway.reload(with_radio_on(moved_port)).await.unwrap();
    assert_eq!(report.started, ["radio"], "{report:?}");
    assert_eq!(radio(&gateway).ingest_total(), 20, "counters carried");

    // A file without radio: its check goes with it.
    let report = gateway
        .reload(GatewayConfig::parse(&setup.toml()).unwrap())
        .await
        .unwrap();
    assert_eq!(report.stopped, ["radio"]);
    telemetry.sync(&gateway);
    let report = readiness.report();
    assert!(
        !report.failing.contains_key("session radio")
            && !report.passing.iter().any(|c| c == "session radio")
    );
    gateway.stop().await;
    bmsc.stop().await.unwrap();
}

/// In process: download sessions follow a reload with what feeds them. An
/// added session starts with its watch folder and its push route; a changed
/// one restarts with its counters and keeps being fed from both; a removed one
/// stops, and pushes to it are answered 404. Readiness and metrics follow.
/// The push endpoint itself is process-wide: changing it needs a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_sessions_follow_a_reload() {
    use common::http::http;
    use mbms_gateway::gateway::Gateway;
    use mbms_gateway::gateway::config::GatewayConfig;
    use mbms_gateway::gateway::download::DownloadHandle;
    use mbms_gateway::gateway::reload::ReloadRefused;
    use mbms_gateway::gateway::streaming::SessionState;
    use mbms_gateway::gateway::telemetry::watch_gateway;
    use mbms_gateway::runtime::admin::{AdminViews, Readiness};
    use mbms_gateway::runtime::metrics;
    use std::sync::atomic::Ordering;

    let dir = temp_dir("gateway-reload-download");
    let bmsc = start_bmsc_serving(&dir, &[31, 32]).await;
    let folder = |name: &str| {
        let f = dir.join("watch").join(name);
        std::fs::create_dir_all(&f).unwrap();
        f
    };
    let (folder_a, folder_b) = (folder("a"), folder("b"));
    let ports = [free_udp_port(), free_udp_port()];
    let session = |name: &str, key_group: u16, port: u16, bitrate: &str, folder: &Path| {
        format!(
            r#"
[[download]]
name = "{name}"
key_group = {key_group}
destination = "239.255.41.20"
port = {port}
tsi = {key_group}
interface = "127.0.0.1"
ttl = 0
bitrate = "{bitrate}"
push = true
watch = {{ folder = "{folder}" }}
"#,
            folder = folder.display()
        )
    };
    let config = |push_port: u16, sessions: &[String]| {
        let head = format!(
            "{}[push]\nlisten = \"127.0.0.1:{push_port}\"\n",
            gateway_header(&dir.join("gw"), "gw-reload-download", None, bmsc.local_addr)
        );
        GatewayConfig::parse(&format!("{head}{}", sessions.concat())).unwrap()
    };
    let push_port = free_tcp_port();
    let a = session("a", 31, ports[0], "5Mbit", &folder_a);
    let a_changed = session("a", 31, ports[0], "6Mbit", &folder_a);
    let b = session("b", 32, ports[1], "5Mbit", &folder_b);

    let mut gateway = Gateway::start(&config(push_port, std::slice::from_ref(&a))).unwrap();
    let push = gateway
        .start_ingest()
        .await
        .unwrap()
        .expect("push endpoint");
    let metrics = metrics::install().unwrap();
    let readiness = Readiness::new();
    let telemetry = watch_gateway(
        &gateway,
        &AdminViews::new(metrics.clone(), readiness.clone()),
    );
    let handle = |gateway: &Gateway, name: &str| -> (usize, u64) {
        let i = gateway
            .download
            .iter()
            .position(|h: &DownloadHandle| h.name == name)
            .unwrap_or_else(|| panic!("session {name} runs"));
        let protected = gateway.download[i]
            .stats
            .objects_protected
            .load(Ordering::Relaxed);
        (i, protected)
    };
    let protected = |gateway: &Gateway, name: &str| handle(gateway, name).1;
    let on_air = |gateway: &Gateway, name: &str| {
        let (i, _) = handle(gateway, name);
        matches!(
            *gateway.download[i].state.borrow(),
            SessionState::OnAir { .. }
        )
    };
    let put = |session: &'static str, name: &'static str| async move {
        let body = format!("pushed {name}");
        http(
            push,
            "PUT",
            &format!("/sessions/{session}/objects/{name}"),
            &format!("Content-Length: {}\r\n", body.len()),
            body.as_bytes(),
        )
        .await
    };
    // Written under a temporary name, renamed into place: one complete file.
    let drop_file = |folder: &Path, name: &str| {
        let tmp = folder.join(format!(".{name}.part"));
        std::fs::write(&tmp, format!("watched {name}")).unwrap();
        std::fs::rename(&tmp, folder.join(name)).unwrap();
    };
    wait_for("a on air", Duration::from_secs(10), || {
        on_air(&gateway, "a")
    })
    .await;
    drop_file(&folder_a, "one.txt");
    wait_for("a protects its first file", Duration::from_secs(10), || {
        protected(&gateway, "a") == 1
    })
    .await;

    // Added: b is fed by its folder and its push route from the start.
    let a_stats = gateway.download[0].stats.clone();
    assert_eq!(
        put("b", "early.txt").await.status,
        404,
        "b is not configured yet"
    );
    let report = gateway
        .reload(config(push_port, &[a.clone(), b.clone()]))
        .await
        .unwrap();
    telemetry.sync(&gateway);
    assert_eq!(report.started, ["b"]);
    assert_eq!(report.unchanged, 1);
    assert!(report.failed.is_empty(), "{:?}", report.failed);
    assert!(
        std::sync::Arc::ptr_eq(&gateway.download[0].stats, &a_stats),
        "a untouched"
    );
    wait_for("b on air", Duration::from_secs(10), || {
        on_air(&gateway, "b")
    })
    .await;
    let reply = put("b", "pushed.txt").await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    drop_file(&folder_b, "two.txt");
    wait_for(
        "b protects a push and a file",
        Duration::from_secs(10),
        || protected(&gateway, "b") == 2,
    )
    .await;
    assert!(readiness.report().passing.contains(&"session b".to_owned()));

    // Changed: a restarts, keeps its counters, and is still fed.
    let report = gateway
        .reload(config(push_port, &[a_changed.clone(), b.clone()]))
        .await
        .unwrap();
    telemetry.sync(&gateway);
    assert_eq!(report.restarted, ["a"]);
    assert_eq!(report.unchanged, 1);
    assert!(
        !std::sync::Arc::ptr_eq(&gateway.download[0].stats, &a_stats),
        "a restarted"
    );
    assert_eq!(protected(&gateway, "a"), 1, "counters carried over");
    wait_for("a on air again", Duration::from_secs(10), || {
        on_air(&gateway, "a")
    })
    .await;
    drop_file(&folder_a, "three.txt");
    assert_eq!(put("a", "four.txt").await.status, 201);
    wait_for(
        "a protects a file and a push",
        Duration::from_secs(10),
        || protected(&gateway, "a") == 3,
    )
    .await;

    // Removed: b stops; its route is gone, its folder no longer watched.
    let report = gateway
        .reload(config(push_port, std::slice::from_ref(&a_changed)))
        .await
        .unwrap();
    telemetry.sync(&gateway);
    assert_eq!(report.stopped, ["b"]);
    assert_eq!(gateway.download.len(), 1);
    assert_eq!(put("b", "late.txt").await.status, 404);
    assert!(
        !readiness.report().passing.iter().any(|c| c == "session b")
            && !readiness.report().failing.contains_key("session b"),
        "b's readiness check is gone"
    );
    let text = metrics.render();
    assert!(
        text.contains("mbms_gateway_sessions{kind=\"download\"} 1"),
        "one download session counted"
    );
    let series_of = |text: &str, session: &str| {
        let label = format!("session=\"{session}\"");
        text.lines()
            .filter(|l| !l.starts_with('#') && l.contains(&label))
            .count()
    };
    assert_eq!(series_of(&text, "b"), 0, "b's series left the scrape");
    assert!(series_of(&text, "a") > 0, "a's series stay");

    // Back again: b's counters go on from where they stopped, so its
    // exported series stay monotonic.
    let report = gateway
        .reload(config(push_port, &[a_changed.clone(), b.clone()]))
        .await
        .unwrap();
    assert_eq!(report.started, ["b"]);
    assert_eq!(protected(&gateway, "b"), 2, "b's counters carried over");
    telemetry.sync(&gateway);
    let ingested = "mbms_gateway_download_objects_ingested_total{session=\"b\",origin=\"push\"}";
    let text = metrics.render();
    assert!(series_of(&text, "b") > 0, "b's series are back");
    assert!(
        text.lines()
            .any(|l| l.starts_with(ingested) && l.ends_with(" 1")),
        "b's series go on from their value"
    );

    // The push endpoint moves without a restart: the new listener serves
    // the same routes, the old one is gone.
    let new_port = free_tcp_port();
    let report = gateway
        .reload(config(new_port, &[a_changed.clone(), b.clone()]))
        .await
        .unwrap();
    assert_eq!(report.unchanged, 2, "the sessions are untouched");
    let moved = gateway.push_addr().expect("push endpoint");
    assert_eq!(moved.port(), new_port);
    let body = "pushed five.txt";
    let reply = http(
        moved,
        "PUT",
        "/sessions/a/objects/five.txt",
        &format!("Content-Length: {}\r\n", body.len()),
        body.as_bytes(),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert!(
        tokio::net::TcpStream::connect(push).await.is_err(),
        "the old listener is closed"
    );
    wait_for("a protects the last push", Duration::from_secs(10), || {
        protected(&gateway, "a") == 4
    })
    .await;
    // An address the new endpoint cannot have: refused, the endpoint stays.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let refused = gateway
        .reload(config(
            taken.local_addr().unwrap().port(),
            &[a_changed.clone(), b.clone()],
        ))
        .await;
    assert!(
        matches!(&refused, Err(ReloadRefused::Push(reason)) if reason.contains("push.listen")),
        "{refused:?}"
    );
    assert_eq!(gateway.push_addr(), Some(moved));
    assert_eq!(
        gateway.config().push.as_ref().unwrap().listen.port(),
        new_port
    );
    gateway.stop().await;
    bmsc.stop().await.unwrap();
}
