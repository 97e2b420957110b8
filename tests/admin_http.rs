//! The admin endpoint over real HTTP on 127.0.0.1 (port 0): Prometheus text
//! checked with a parser, counters moved through the typed handles, readiness
//! transitions, bearer-token enforcement.
//!
//! The recorder is process-wide, so each test uses its own session names.

use mbms_gateway::gateway::egress::{Egress, EgressKind};
use mbms_gateway::runtime::admin::{AdminConfig, AdminServer, AdminViews, Readiness, serve_admin};
use mbms_gateway::runtime::key_service::ConnectionState;
use mbms_gateway::runtime::metrics::names::{self, MetricType, label};
use mbms_gateway::runtime::metrics::{
    self, BmscMetrics, BmscRpc, BmscState, DropReason, EgressLabel, EgressMetrics, GatewayMetrics,
    IngestMetrics, IngestOrigin, IngestRejectReason, LabelValue, LatencyMetrics, MikeyTransport,
    PushMetrics, ReloadResult, RpcFailure, SessionKind, SessionMetrics,
};
use mbms_gateway::runtime::udp::{EgressOptions, egress_socket};
use prometheus_parse::{LineInfo, Sample, Scrape, Value};
use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// Every session and input name the tests in this file configure.
const CONFIGURED_NAMES: &[&str] = &["tv1", "video", "audio", "labels-tv2", "files"];
const TOKEN: &str = "s3cr3t-admin-token-0123";

struct Reply {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

/// One HTTP/1.1 GET (or `method`) on a fresh connection, read to its end.
async fn request(addr: SocketAddr, method: &str, path: &str, auth: Option<&str>) -> Reply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let auth = auth.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    let head = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n{auth}\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("response within 10 s")
        .unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").expect("header/body separator");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("status line {status_line:?}"));
    let headers: HashMap<String, String> = lines
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    if let Some(len) = headers.get("content-length") {
        assert_eq!(len.parse::<usize>().unwrap(), body.len(), "content-length");
    }
    Reply {
        status,
        headers,
        body: body.to_owned(),
    }
}

async fn get(addr: SocketAddr, path: &str) -> Reply {
    request(addr, "GET", path, None).await
}

async fn start(
    token: Option<&str>,
    readiness: Readiness,
) -> (AdminServer, oneshot::Sender<()>, metrics::Metrics) {
    let metrics = metrics::install().unwrap();
    let config = AdminConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        token: token.map(str::to_owned),
        ..AdminConfig::default()
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let server = serve_admin(
        &config,
        AdminViews::new(metrics.clone(), readiness),
        async {
            let _ = stopped.await;
        },
    )
    .await
    .unwrap();
    (server, stop, metrics)
}

/// Parses the exposition strictly: every line must be a comment the parser
/// understands, a sample with a numeric value, or empty (the crate itself
/// skips lines it cannot read).
fn parse(text: &str) -> Scrape {
    for line in text.lines() {
        match LineInfo::parse(line) {
            LineInfo::Ignored => panic!("not Prometheus text: {line:?}"),
            LineInfo::Sample { value, .. } => assert!(
                value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value),
                "value of {line:?}"
            ),
            _ => {}
        }
    }
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap()
}

fn find<'a>(scrape: &'a Scrape, name: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
    scrape.samples.iter().find(|s| {
        s.metric == name
            && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
            && s.labels.len() == labels.len()
    })
}

fn scalar(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    match find(scrape, name, labels).map(|s| &s.value) {
        Some(Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v)) => *v,
        other => panic!("{name}{labels:?}: {other:?}"),
    }
}

/// Bucket bounds and cumulative counts of one histogram series.
fn buckets(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Vec<(f64, f64)> {
    match find(scrape, name, labels).map(|s| &s.value) {
        Some(Value::Histogram(counts)) => counts.iter().map(|c| (c.less_than, c.count)).collect(),
        other => panic!("{name}{labels:?} is not a histogram: {other:?}"),
    }
}

async fn scrape(addr: SocketAddr) -> Scrape {
    let reply = get(addr, "/metrics").await;
    assert_eq!(reply.status, 200);
    assert!(
        reply.headers["content-type"].starts_with("text/plain; version=0.0.4"),
        "{:?}",
        reply.headers
    );
    parse(&reply.body)
}

#[tokio::test]
async fn counters_move_through_the_typed_handles() {
    let (server, stop, _metrics) = start(None, Readiness::new()).await;
    let addr = server.local_addr();
    let session = SessionMetrics::new("tv1");
    let video = session.input("video");
    let s = [("session", "tv1")];
    let before = scrape(addr).await;
    // Registered series exist at 0 before the first event.
    let video_labels = [("session", "tv1"), ("input", "video")];
    assert_eq!(
        scalar(&before, names::INGEST_PACKETS.name, &video_labels),
        0.0
    );
    let no_key = [("session", "tv1"), ("reason", "no_key")];
    assert_eq!(scalar(&before, names::INGEST_DROPPED.name, &no_key), 0.0);

    for len in [1200, 1200, 300] {
        video.received(len);
    }
    session.dropped(DropReason::NoKey);
    session.dropped(DropReason::NoKey);
    session.mtk_rotated();
    session.mikey_sent(MikeyTransport::Udp);
    session.mikey_sent(MikeyTransport::Udp);
    session.mikey_sent(MikeyTransport::Flute);
    session.msk_validity(Duration::from_secs(3600), 250);
    let latency = LatencyMetrics::new("tv1");
    latency.pacer_lateness(Duration::from_micros(300));
    latency.pacer_lateness(Duration::from_millis(30));
    latency.ingest_to_egress(Duration::from_micros(40));

    let after = scrape(addr).await;
    assert_eq!(
        scalar(&after, names::INGEST_PACKETS.name, &video_labels),
        3.0
    );
    assert_eq!(
        scalar(&after, names::INGEST_BYTES.name, &video_labels),
        2700.0
    );
    assert_eq!(scalar(&after, names::INGEST_DROPPED.name, &no_key), 2.0);
    let malformed = [("session", "tv1"), ("reason", "malformed")];
    assert_eq!(scalar(&after, names::INGEST_DROPPED.name, &malformed), 0.0);
    assert_eq!(scalar(&after, names::MTK_ROTATIONS.name, &s), 1.0);
    let udp = [("session", "tv1"), ("transport", "udp")];
    let flute = [("session", "tv1"), ("transport", "flute")];
    assert_eq!(scalar(&after, names::MIKEY_SENT.name, &udp), 2.0);
    assert_eq!(scalar(&after, names::MIKEY_SENT.name, &flute), 1.0);
    assert_eq!(scalar(&after, names::MSK_VALIDITY_SECONDS.name, &s), 3600.0);
    assert_eq!(scalar(&after, names::MSK_VALIDITY_MTK_IDS.name, &s), 250.0);

    // Histogram: the configured bounds plus +Inf, cumulative counts.
    let lateness = buckets(&after, names::PACER_LATENESS.name, &s);
    let bounds: Vec<f64> = lateness.iter().map(|(le, _)| *le).collect();
    let mut expected = names::PACER_LATENESS_BUCKETS.to_vec();
    expected.push(f64::INFINITY);
    assert_eq!(bounds, expected);
    for (le, count) in lateness {
        let want = [0.0003, 0.03].iter().filter(|v| **v <= le).count() as f64;
        assert_eq!(count, want, "le={le}");
    }
    let sum = scalar(&after, &format!("{}_sum", names::PACER_LATENESS.name), &s);
    assert!((sum - 0.0303).abs() < 1e-9, "{sum}");
    let count = scalar(&after, &format!("{}_count", names::PACER_LATENESS.name), &s);
    assert_eq!(count, 2.0);
    let latency = buckets(&after, names::INGEST_TO_EGRESS.name, &s);
    assert_eq!(latency.len(), names::INGEST_TO_EGRESS_BUCKETS.len() + 1);
    assert_eq!(latency.last(), Some(&(f64::INFINITY, 1.0)));

    stop.send(()).unwrap();
    server.join().await.unwrap();
}

#[tokio::test]
async fn egress_thread_counters_and_bmsc_status_are_copied_at_scrape() {
    let (server, stop, metrics) = start(None, Readiness::new()).await;
    let addr = server.local_addr();

    // A real egress thread sending to a local socket.
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let opts = EgressOptions {
        interface: Some("127.0.0.1".parse().unwrap()),
        interface_index: 0,
        ttl: 1,
        dscp: 0,
    };
    let (egress, thread) = Egress::spawn("files", egress_socket(false, &opts).unwrap(), 4).unwrap();
    let stats = egress.stats().clone();
    let egress_metrics = EgressMetrics::new("files");
    let _hook = metrics.on_scrape(move || egress_metrics.observe(&stats.totals()));
    let dest = rx.local_addr().unwrap();
    assert!(egress.send_one(dest, EgressKind::Alc, &[7; 500]));
    assert!(egress.send_one(dest, EgressKind::Alc, &[8; 700]));
    assert!(egress.send_one(dest, EgressKind::Mikey, &[9; 90]));
    let mut buf = [0u8; 2048];
    for _ in 0..3 {
        rx.recv(&mut buf).unwrap();
    }
    drop(egress);
    thread.join().unwrap();

    let bmsc = BmscMetrics::new();
    bmsc.observe(BmscState::from(&ConnectionState::Connected), 2);
    bmsc.rpc_completed(BmscRpc::LeaseMtkIds, Duration::from_millis(20));
    bmsc.rpc_failed(BmscRpc::GetCurrentMsk, RpcFailure::Timeout);

    let after = scrape(addr).await;
    let alc = [("session", "files"), ("kind", "alc")];
    let mikey = [("session", "files"), ("kind", "mikey")];
    let srtp = [("session", "files"), ("kind", "srtp")];
    assert_eq!(scalar(&after, names::EGRESS_PACKETS.name, &alc), 2.0);
    assert_eq!(scalar(&after, names::EGRESS_BYTES.name, &alc), 1200.0);
    assert_eq!(scalar(&after, names::EGRESS_PACKETS.name, &mikey), 1.0);
    assert_eq!(scalar(&after, names::EGRESS_BYTES.name, &mikey), 90.0);
    assert_eq!(scalar(&after, names::EGRESS_PACKETS.name, &srtp), 0.0);
    let files = [("session", "files")];
    assert_eq!(scalar(&after, names::EGRESS_QUEUE_DEPTH.name, &files), 0.0);
    assert_eq!(
        scalar(
            &after,
            names::EGRESS_SEND_ERRORS.name,
            &[("session", "files")]
        ),
        0.0
    );

    for state in BmscState::ALL {
        let want = if *state == BmscState::Connected {
            1.0
        } else {
            0.0
        };
        let labels = [("state", state.as_str())];
        assert_eq!(
            scalar(&after, names::BMSC_CONNECTION_STATE.name, &labels),
            want
        );
    }
    assert_eq!(scalar(&after, names::BMSC_REJECTED_ANSWERS.name, &[]), 2.0);
    let lease = [("kind", "lease_mtk_ids")];
    let lease_buckets = buckets(&after, names::BMSC_RPC_DURATION.name, &lease);
    assert_eq!(lease_buckets.len(), names::BMSC_RPC_BUCKETS.len() + 1);
    for (le, count) in lease_buckets {
        assert_eq!(count, if le >= 0.02 { 1.0 } else { 0.0 }, "le={le}");
    }
    let timeout = [("kind", "get_current_msk"), ("reason", "timeout")];
    assert_eq!(scalar(&after, names::BMSC_RPC_ERRORS.name, &timeout), 1.0);
    let version = [("version", env!("CARGO_PKG_VERSION"))];
    assert_eq!(scalar(&after, names::BUILD_INFO.name, &version), 1.0);

    stop.send(()).unwrap();
    server.join().await.unwrap();
}

/// Every exported series: a known name with help text, label keys from the
/// fixed set, label values from configured names or the fixed enums only.
#[tokio::test]
async fn every_series_is_declared_and_labels_are_bounded() {
    let (server, stop, _metrics) = start(None, Readiness::new()).await;
    let session = SessionMetrics::new("labels-tv2");
    session.input("audio").received(100);
    session.flute_object_sent();
    session.fdt_instance_sent();
    let _egress = EgressMetrics::new("labels-tv2");
    let _latency = LatencyMetrics::new("labels-tv2");
    let _bmsc = BmscMetrics::new();
    IngestMetrics::new("files").ingested(IngestOrigin::Push, 10);
    let _push = PushMetrics::new();
    let _gateway = GatewayMetrics::new();
    let scrape = scrape(server.local_addr()).await;

    let mut allowed_values: BTreeSet<&str> = CONFIGURED_NAMES.iter().copied().collect();
    allowed_values.extend(DropReason::ALL.iter().map(|v| v.as_str()));
    allowed_values.extend(EgressLabel::ALL.iter().map(|v| v.as_str()));
    allowed_values.extend(MikeyTransport::ALL.iter().map(|v| v.as_str()));
    allowed_values.extend(BmscState::ALL.iter().map(|v| v.as_str()));
    allowed_values.extend(BmscRpc::ALL.iter().map(|v| v.as_str()));
    allowed_values.extend(RpcFailure::ALL.iter().map(|v| v.as_str()));
    allowed_values.extend(IngestOrigin::ALL.iter().map(|v| v.as_str()));
    allowed_values.extend(IngestRejectReason::ALL.iter().map(|v| v.as_str()));
    allowed_values.extend(ReloadResult::ALL.iter().map(|v| v.as_str()));
    allowed_values.extend(SessionKind::ALL.iter().map(|v| v.as_str()));
    allowed_values.insert(env!("CARGO_PKG_VERSION"));

    let mut seen = BTreeSet::new();
    for sample in &scrape.samples {
        let def = names::ALL
            .iter()
            .find(|d| {
                sample.metric == d.name
                    || (matches!(d.kind, MetricType::Histogram(_))
                        && [format!("{}_sum", d.name), format!("{}_count", d.name)]
                            .contains(&sample.metric))
            })
            .unwrap_or_else(|| panic!("undeclared series {}", sample.metric));
        seen.insert(def.name);
        assert!(
            scrape.docs.get(def.name).is_some_and(|h| h == def.help),
            "{} help",
            def.name
        );
        for (key, value) in sample.labels.iter() {
            assert!(
                def.labels.contains(&key.as_str()) && label::ALL.contains(&key.as_str()),
                "{}: label key {key}",
                def.name
            );
            assert!(
                allowed_values.contains(value.as_str()),
                "{}: label value {key}={value:?} is neither configured nor an enum value",
                def.name
            );
            assert!(
                value.parse::<IpAddr>().is_err(),
                "{key}={value} is an address"
            );
        }
    }
    let declared: BTreeSet<&str> = names::ALL.iter().map(|d| d.name).collect();
    assert_eq!(seen, declared, "every declared metric is exported");

    stop.send(()).unwrap();
    server.join().await.unwrap();
}

#[tokio::test]
async fn readyz_names_the_failing_check_until_it_passes() {
    let readiness = Readiness::new();
    let (server, stop, _metrics) = start(None, readiness.clone()).await;
    let addr = server.local_addr();
    readiness.set("bmsc", Ok(()));

    let reply = get(addr, "/readyz").await;
    assert_eq!(reply.status, 200);
    let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(body["ready"], true);
    assert_eq!(body["passing"], serde_json::json!(["bmsc"]));

    readiness.set("session tv1", Err("no valid MSK for key group 1".into()));
    let reply = get(addr, "/readyz").await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.headers["content-type"], "application/json");
    let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(body["ready"], false);
    assert_eq!(
        body["failing"],
        serde_json::json!({"session tv1": "no valid MSK for key group 1"})
    );

    readiness.set("session tv1", Ok(()));
    let reply = get(addr, "/readyz").await;
    assert_eq!(reply.status, 200);
    let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(body["passing"], serde_json::json!(["bmsc", "session tv1"]));

    stop.send(()).unwrap();
    server.join().await.unwrap();
}

#[tokio::test]
async fn healthz_and_unknown_requests() {
    let readiness = Readiness::new();
    let (server, stop, _metrics) = start(None, readiness.clone()).await;
    let addr = server.local_addr();
    let reply = get(addr, "/healthz").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.headers["content-type"], "application/json");
    // Not ready is not dead: a BM-SC outage does not ask for a restart.
    readiness.set("bmsc", Err("connecting".into()));
    assert_eq!(get(addr, "/healthz").await.status, 200);
    assert_eq!(get(addr, "/readyz").await.status, 503);
    // A dead data-path thread does.
    let alive = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    readiness.probe_live("data path", {
        let alive = alive.clone();
        move || {
            if alive.load(std::sync::atomic::Ordering::Relaxed) {
                Ok(())
            } else {
                Err("an egress thread stopped".into())
            }
        }
    });
    assert_eq!(get(addr, "/healthz").await.status, 200);
    alive.store(false, std::sync::atomic::Ordering::Relaxed);
    let reply = get(addr, "/healthz").await;
    assert_eq!(reply.status, 503);
    let body: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(body["failing"]["data path"], "an egress thread stopped");
    assert!(body["failing"].get("bmsc").is_none(), "{body}");
    assert_eq!(get(addr, "/nothing").await.status, 404);
    let reply = request(addr, "POST", "/metrics", None).await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.headers["allow"], "GET, HEAD");

    stop.send(()).unwrap();
    server.join().await.unwrap();
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "listener closed after shutdown"
    );
}

#[tokio::test]
async fn bearer_token_guards_every_path() {
    let (server, stop, _metrics) = start(Some(TOKEN), Readiness::new()).await;
    let addr = server.local_addr();
    for path in ["/metrics", "/healthz", "/readyz"] {
        let reply = request(addr, "GET", path, None).await;
        assert_eq!(reply.status, 401, "{path} without a token");
        assert_eq!(reply.headers["www-authenticate"], "Bearer");
        assert!(!reply.body.contains("mbms_gateway_"));
        let wrong = format!("Bearer {TOKEN}x");
        assert_eq!(request(addr, "GET", path, Some(&wrong)).await.status, 401);
        let basic = format!("Basic {TOKEN}");
        assert_eq!(request(addr, "GET", path, Some(&basic)).await.status, 401);
        let right = format!("Bearer {TOKEN}");
        assert_eq!(request(addr, "GET", path, Some(&right)).await.status, 200);
        let lower = format!("bearer {TOKEN}");
        assert_eq!(request(addr, "GET", path, Some(&lower)).await.status, 200);
    }
    stop.send(()).unwrap();
    server.join().await.unwrap();
}

#[tokio::test]
async fn non_loopback_listen_without_token_is_refused_before_binding() {
    let metrics = metrics::install().unwrap();
    let config = AdminConfig {
        listen: "0.0.0.0:0".parse().unwrap(),
        ..AdminConfig::default()
    };
    let error = serve_admin(
        &config,
        AdminViews::new(metrics, Readiness::new()),
        std::future::pending(),
    )
    .await
    .unwrap_err();
    assert!(error.to_string().contains("admin.token"), "{error}");
}
