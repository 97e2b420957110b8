//! The download path end to end on loopback: a reference BM-SC over real
//! gRPC, the gateway's download session (DCF protection, FLUTE carousel,
//! pacing) on a real multicast socket, and the download probe (or the `flute`
//! crate's receiver) on the group.

mod common;

use common::gateway::*;
use mbms_gateway::bmsc::RunningBmsc;
use mbms_gateway::demo::sample_bytes;
use mbms_gateway::gateway::Gateway;
use mbms_gateway::gateway::config::GatewayConfig;
use mbms_gateway::gateway::download::DownloadHandle;
use mbms_gateway::gateway::download::ingest::{IngestedObject, ObjectOrigin};
use mbms_gateway::gateway::streaming::SessionState;
use mbms_gateway::runtime::key_service::MskClientConfig;
use mbms_gateway::runtime::metrics::labels::IngestRejectReason;
use mbms_gateway::ue::probe::{
    DownloadProbeConfig, DownloadProbeHandle, DownloadReport, ObjectStatus, ProbeKeySource,
    start_download_probe,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

struct Running {
    dir: PathBuf,
    bmsc: RunningBmsc,
    gateway: Gateway,
    group: IpAddr,
    port: u16,
}

/// Session settings that differ between tests, as TOML lines of `[[download]]`.
async fn start(name: &str, group: impl Into<IpAddr>, session: &str) -> Running {
    let group = group.into();
    // IPv4 multicast stays on the host through the loopback interface.
    let interface = if group.is_ipv4() {
        r#"interface = "127.0.0.1""#
    } else {
        ""
    };
    let dir = temp_dir(name);
    let bmsc = start_bmsc(&bmsc_config(
        "127.0.0.1:0".parse().unwrap(),
        &dir.join("bmsc"),
        3600,
        7200,
    ))
    .await;
    let port = free_udp_port();
    let header = gateway_header(&dir.join("gw"), "gw-download", None, bmsc.local_addr);
    let toml = format!(
        r#"{header}[[download]]
name = "files"
key_group = {key_group}
destination = "{group}"
port = {port}
tsi = 7
{interface}
ttl = 0
{session}
"#,
        key_group = KEY_GROUP,
    );
    let config = GatewayConfig::parse(&toml).unwrap();
    let gateway = Gateway::start(&config).unwrap();
    let state = gateway.download[0].state.clone();
    wait_for("the session to go on air", Duration::from_secs(10), || {
        matches!(*state.borrow(), SessionState::OnAir { .. })
    })
    .await;
    Running {
        dir,
        bmsc,
        gateway,
        group,
        port,
    }
}

impl Running {
    fn session(&self) -> &DownloadHandle {
        &self.gateway.download[0]
    }

    fn probe(&self, loss: f64) -> DownloadProbeHandle {
        let mut client = MskClientConfig::new(
            format!("http://{}", self.bmsc.local_addr),
            KEY_DOMAIN,
            vec![KEY_GROUP],
            "probe",
        );
        client.backoff_initial_ms = 20;
        self.probe_with(ProbeKeySource::Bmsc(client), loss)
    }

    fn probe_with(&self, keys: ProbeKeySource, loss: f64) -> DownloadProbeHandle {
        let mut config = DownloadProbeConfig::new(self.group, self.port, KEY_DOMAIN, keys);
        config.interface = self.group.is_ipv4().then_some(Ipv4Addr::LOCALHOST.into());
        config.tsi = Some(7);
        config.output_dir = Some(self.dir.join("received"));
        config.simulated_loss = loss;
        start_download_probe(config).unwrap()
    }

    /// Writes a source file and hands it to the session.
    async fn send(&self, location: &str, data: &[u8]) -> PathBuf {
        let path = self.dir.join("sources").join(location);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, data).unwrap();
        self.send_path(location, &path).await;
        path
    }

    async fn send_path(&self, location: &str, path: &Path) {
        self.session()
            .queue()
            .send(IngestedObject {
                content_location: location.to_owned(),
                content_type: Some("application/octet-stream".into()),
                path: path.to_owned(),
                origin: ObjectOrigin::Push,
                spooled: false,
            })
            .await
            .unwrap();
    }

    /// Waits until the probe has every object of `sent` complete, and checks
    /// that each file it wrote is byte-identical to what was sent.
    async fn expect_delivered<L: AsRef<str>>(
        &self,
        probe: &DownloadProbeHandle,
        sent: &[(L, Vec<u8>)],
        timeout: Duration,
    ) -> DownloadReport {
        let report = wait_complete(probe, sent.len(), timeout).await;
        let locations: Vec<&str> = sent.iter().map(|(l, _)| l.as_ref()).collect();
        assert_all_complete(&report, &locations);
        for (location, data) in sent {
            let location = location.as_ref();
            assert!(
                self.received(location) == *data,
                "{location}: content differs"
            );
        }
        report
    }

    fn received(&self, location: &str) -> Vec<u8> {
        std::fs::read(self.dir.join("received").join(location)).unwrap()
    }
}

async fn wait_complete(
    probe: &DownloadProbeHandle,
    objects: usize,
    timeout: Duration,
) -> DownloadReport {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let report = probe.snapshot();
        if report.count(ObjectStatus::Complete) >= objects {
            return report;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {objects} objects at the probe: {}",
            report.to_json()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn assert_all_complete(report: &DownloadReport, locations: &[&str]) {
    for location in locations {
        let outcome = report
            .objects
            .get(*location)
            .unwrap_or_else(|| panic!("{location} never seen: {}", report.to_json()));
        assert_eq!(
            outcome.status,
            ObjectStatus::Complete,
            "{location}: {}",
            report.to_json()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_of_every_size_arrive_byte_identical_across_an_mtk_switch() {
    let run = start(
        "download-sizes",
        Ipv4Addr::new(239, 255, 40, 1),
        r#"bitrate = "400Mbit"
mtk = { period = "2s", lead = "500ms", resend = "500ms", retire_after = "500ms" }
carousel = { repetitions = 2 }"#,
    )
    .await;
    let probe = run.probe(0.0);
    let symbol = 1428 - 44; // one symbol of DCF payload at the default packet size
    let first = run.session().state.borrow().clone();
    let mut sent = Vec::new();
    for (location, len) in [("empty.bin", 0), ("one.bin", 1), ("symbol.bin", symbol)] {
        let data = sample_bytes(len, len as u64);
        run.send(location, &data).await;
        sent.push((location, data));
    }
    // The large objects go under the next MTK.
    let state = run.session().state.clone();
    wait_for("an MTK switch", Duration::from_secs(10), || {
        *state.borrow() != first
    })
    .await;
    for (location, len) in [
        ("big/ten.bin", 10_000_000),
        ("big/two-hundred.bin", 200_000_000),
    ] {
        let data = sample_bytes(len, len as u64);
        run.send(location, &data).await;
        sent.push((location, data));
    }
    run.expect_delivered(&probe, &sent, Duration::from_secs(120))
        .await;
    let report = probe.stop();
    assert!(report.mikey_objects >= 2, "{}", report.to_json());
    assert_eq!(report.mikey.bad_mac + report.mikey.malformed, 0);
    let stats = &run.session().stats;
    assert_eq!(stats.objects_protected.load(Ordering::Relaxed), 5);
    assert!(stats.mtk_rotations.load(Ordering::Relaxed) >= 2);
    run.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_objects_are_refused_by_reason_and_the_rest_go_out() {
    let run = start(
        "download-bad",
        Ipv4Addr::new(239, 255, 40, 2),
        r#"bitrate = "50Mbit"
max_object_size = "1MiB"
carousel = { repetitions = 2 }"#,
    )
    .await;
    let probe = run.probe(0.0);
    run.send("before.bin", &sample_bytes(5000, 1)).await;
    run.send_path("missing.bin", &run.dir.join("no-such-file"))
        .await;
    run.send_path("a-directory", &run.dir).await;
    run.send("huge.bin", &sample_bytes(2 << 20, 2)).await;
    run.send("after.bin", &sample_bytes(7000, 3)).await;
    let report = wait_complete(&probe, 2, Duration::from_secs(20)).await;
    assert_all_complete(&report, &["before.bin", "after.bin"]);
    let stats = &run.session().stats;
    wait_for("every object handled", Duration::from_secs(5), || {
        stats.objects_in.load(Ordering::Relaxed) == 5
    })
    .await;
    assert_eq!(stats.rejected(IngestRejectReason::Unreadable), 2);
    assert_eq!(stats.rejected(IngestRejectReason::TooLarge), 1);
    assert_eq!(stats.objects_protected.load(Ordering::Relaxed), 2);
    for refused in ["missing.bin", "a-directory", "huge.bin"] {
        assert!(!report.objects.contains_key(refused), "{refused} was sent");
    }
    drop(probe);
    run.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raptorq_at_25_percent_overhead_delivers_through_10_percent_loss() {
    fec_recovers_loss("raptorq", Ipv4Addr::new(239, 255, 40, 3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raptor_at_25_percent_overhead_delivers_through_10_percent_loss() {
    fec_recovers_loss("raptor", Ipv4Addr::new(239, 255, 40, 6)).await;
}

/// Each object is sent once with 25% repair symbols while the probe loses
/// 10% of the packets at random; the FDT goes out in several copies.
async fn fec_recovers_loss(scheme: &str, group: Ipv4Addr) {
    let run = start(
        &format!("download-{scheme}-loss"),
        group,
        &format!(
            r#"bitrate = "20Mbit"
fec = {{ scheme = "{scheme}", repair_overhead = 0.25 }}
carousel = {{ repetitions = 1, fdt_copies = 8 }}"#
        ),
    )
    .await;
    let probe = run.probe(0.10);
    let mut sent = Vec::new();
    for i in 0..6u64 {
        let location = format!("obj-{i}.bin");
        // Blocks of 140 to 320 symbols: at 25% repair and 10% loss a block
        // fails to decode with a probability below 1e-4.
        let data = sample_bytes(200_000 + 50_000 * i as usize, i + 10);
        run.send(&location, &data).await;
        sent.push((location, data));
    }
    let report = run
        .expect_delivered(&probe, &sent, Duration::from_secs(30))
        .await;
    assert!(report.packets_dropped_by_loss > 0);
    // Each object went out once: FEC alone repaired the loss. (The probe
    // may decode an object before its last repair symbols are sent.)
    let stats = &run.session().sender_stats;
    wait_for("the last transmission", Duration::from_secs(20), || {
        stats.objects_completed.load(Ordering::Relaxed) == sent.len() as u64
    })
    .await;
    assert_eq!(
        (
            stats.object_transmissions.load(Ordering::Relaxed),
            stats.mikey_transmissions.load(Ordering::Relaxed)
        ),
        (sent.len() as u64, 1),
        "objects and one MIKEY object, once each"
    );
    drop(probe);
    run.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_code_recovers_10_percent_loss_through_repetition() {
    let run = start(
        "download-nocode-loss",
        Ipv4Addr::new(239, 255, 40, 4),
        r#"bitrate = "100Mbit"
carousel = { repetitions = 12 }"#,
    )
    .await;
    let probe = run.probe(0.10);
    let mut sent = Vec::new();
    for i in 0..4u64 {
        let location = format!("seg-{i}.m4s");
        let data = sample_bytes(60_000 + 10_000 * i as usize, i + 20);
        run.send(&location, &data).await;
        sent.push((location, data));
    }
    run.expect_delivered(&probe, &sent, Duration::from_secs(30))
        .await;
    drop(probe);
    run.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_joining_mid_carousel_receives_every_object() {
    let run = start(
        "download-late-join",
        Ipv4Addr::new(239, 255, 40, 5),
        r#"bitrate = "20Mbit"
carousel = { repetitions = 1000, fdt_interval = "200ms", fdt_lifetime = "10s" }"#,
    )
    .await;
    let sent = [
        ("live/manifest.mpd", sample_bytes(2_000, 31)),
        ("live/init.mp4", sample_bytes(900, 32)),
        ("live/seg-1.m4s", sample_bytes(300_000, 33)),
        ("live/seg-2.m4s", sample_bytes(250_000, 34)),
    ];
    for (location, data) in &sent {
        run.send(location, data).await;
    }
    // Several passes are over before the probe joins.
    let stats = run.session().sender_stats.clone();
    wait_for("a few carousel passes", Duration::from_secs(20), || {
        stats.object_transmissions.load(Ordering::Relaxed) > 3 * sent.len() as u64
    })
    .await;
    let probe = run.probe(0.0);
    run.expect_delivered(&probe, &sent, Duration::from_secs(20))
        .await;
    drop(probe);
    run.gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flute_crate_receiver_reassembles_our_encrypted_objects_from_the_group() {
    flute_crate_reassembles("download-flute-crate", Ipv4Addr::new(239, 255, 40, 7), "").await;
}

/// Without Content-MD5 (`content_md5 = false`) the FDT carries none, and the
/// flute crate and the probe still take every object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_without_content_md5_arrive_all_the_same() {
    flute_crate_reassembles(
        "download-no-md5",
        Ipv4Addr::new(239, 255, 40, 9),
        "content_md5 = false",
    )
    .await;
}

/// Runs a session with `extra` settings, captures the group and feeds it to
/// the flute crate's receiver: every object complete, a DCF, its MD5 in the
/// FDT unless `extra` turns it off.
async fn flute_crate_reassembles(name: &str, group: Ipv4Addr, extra: &str) {
    use flute::core::UDPEndpoint;
    use flute::receiver::MultiReceiver;
    use flute::receiver::writer::ObjectWriterBufferBuilder;
    use std::rc::Rc;

    let with_md5 = !extra.contains("content_md5 = false");
    let run = start(
        name,
        group,
        &format!(
            r#"bitrate = "50Mbit"
carousel = {{ repetitions = 2 }}
{extra}"#
        ),
    )
    .await;
    let capture = Capture::start(group, run.port);
    let probe = run.probe(0.0);
    let sent = [
        ("a/manifest.mpd", sample_bytes(1_500, 41)),
        ("a/init.mp4", sample_bytes(1, 42)),
        ("a/seg-1.m4s", sample_bytes(400_000, 43)),
    ];
    for (location, data) in &sent {
        run.send(location, data).await;
    }
    run.expect_delivered(&probe, &sent, Duration::from_secs(20))
        .await;
    let stats = run.session().sender_stats.clone();
    wait_for("every transmission", Duration::from_secs(20), || {
        stats.objects_completed.load(Ordering::Relaxed) == sent.len() as u64
    })
    .await;
    drop(probe);
    run.gateway.stop().await;
    let captured = capture.finish();

    let writer = Rc::new(ObjectWriterBufferBuilder::new(true));
    let mut receiver = MultiReceiver::new(writer.clone(), None, true);
    let endpoint = UDPEndpoint::new(None, group.to_string(), run.port);
    receiver.add_listen_tsi(endpoint.clone(), 7);
    let now = std::time::SystemTime::now();
    for (_, datagram) in &captured {
        receiver.push(&endpoint, datagram, now).unwrap();
    }
    let objects = writer.objects.borrow();
    let find = |location: &str| {
        objects
            .iter()
            .find(|o| o.borrow().meta.content_location == location)
            .unwrap_or_else(|| panic!("the flute crate never saw {location}"))
            .clone()
    };
    for (location, data) in &sent {
        let object = find(location);
        let object = object.borrow();
        assert!(object.complete && !object.error, "{location}");
        assert_eq!(
            object.meta.content_type.as_deref(),
            Some("application/vnd.oma.drm.dcf"),
            "{location}"
        );
        // A DCF: the plaintext is not in it, and it is longer by its headers.
        assert!(object.data.len() > data.len(), "{location}");
        assert!(object.data.starts_with(&[0, 0, 0]) && &object.data[4..8] == b"ftyp");
        assert_eq!(object.meta.transfer_length, Some(object.data.len()));
        assert_eq!(object.meta.md5.is_some(), with_md5, "{location}");
    }
    let keys: Vec<_> = objects
        .iter()
        .filter(|o| o.borrow().meta.content_type.as_deref() == Some("application/mikey"))
        .collect();
    assert!(!keys.is_empty(), "no MIKEY object reached the flute crate");
    assert!(
        keys.iter()
            .all(|k| k.borrow().complete && !k.borrow().error)
    );
}

/// The UE chain for download: the probe registers with the BM-SC's Key
/// Request function (HTTP Digest), receives its MSK in a MIKEY MSK message
/// over UDP, opens the MIKEY objects of the FLUTE session with it and decrypts
/// the DCF files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_ue_decrypts_dcf_files_with_the_msk_delivered_to_it() {
    let run = start(
        "download-ue",
        Ipv4Addr::new(239, 255, 40, 8),
        r#"bitrate = "50Mbit"
carousel = { repetitions = 3 }"#,
    )
    .await;
    let (key_management, ue) = mbms_gateway::demo::loopback_ue::start_loopback_ue(
        &run.dir.join("ue"),
        run.bmsc.control.clone(),
        KEY_DOMAIN,
        KEY_GROUP,
    )
    .await
    .unwrap();
    let probe = run.probe_with(ProbeKeySource::Ue(ue.keys()), 0.0);
    let sent = [
        ("ue/one.bin", sample_bytes(30_000, 51)),
        ("ue/two.bin", sample_bytes(70_000, 52)),
    ];
    for (location, data) in &sent {
        run.send(location, data).await;
    }
    let report = run
        .expect_delivered(&probe, &sent, Duration::from_secs(20))
        .await;
    assert_eq!(report.mikey.bad_mac, 0);
    drop(probe);
    ue.stop().await;
    key_management.stop().await;
    run.gateway.stop().await;
}

/// IPv6 egress (unicast to ::1: `lo` does not loop IPv6 multicast back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_over_ipv6() {
    let run = start(
        "download-ipv6",
        Ipv6Addr::LOCALHOST,
        r#"bitrate = "50Mbit"
carousel = { repetitions = 2 }"#,
    )
    .await;
    let probe = run.probe(0.0);
    let data = sample_bytes(123_456, 61);
    run.send("v6.bin", &data).await;
    let report = wait_complete(&probe, 1, Duration::from_secs(20)).await;
    assert_all_complete(&report, &["v6.bin"]);
    assert!(run.received("v6.bin") == data);
    drop(probe);
    run.gateway.stop().await;
}
