//! What ships for monitoring works against the gateway that ships: the alert
//! rules pass `promtool check rules` and their unit tests, every dashboard
//! query is valid PromQL, and every metric the rules and the dashboard use is
//! in the scrape of a running gateway process (streaming and download
//! sessions, push endpoint). The same process serves each streaming
//! session's SDP, equal to what `mbms-gateway sdp` prints.

mod common;

use common::gateway::{
    KEY_GROUP, bmsc_config, free_tcp_port, free_udp_port, gateway_header, rtp_packet, start_bmsc,
    temp_dir,
};
use common::http::{Reply, http};
use common::process::{gateway_command, signal};
use mbms_gateway::runtime::metrics::names::{ALL, MetricType};
use serde_json::Value;
use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

const ALERTS: &str = include_str!("../deploy/prometheus/alerts.yml");
const DASHBOARD: &str = include_str!("../deploy/grafana/mbms-gateway.json");

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(path)
}

/// `promtool ARGS` in `dir`; a missing promtool is a failure that says how
/// to install it.
fn promtool(dir: &Path, args: &[&str]) -> Output {
    Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("promtool: {e} (Debian package `prometheus`; scripts/test installs it)")
        })
}

fn assert_success(what: &str, output: &Output) {
    assert!(
        output.status.success(),
        "{what}: {}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn alert_rules_pass_promtool_and_their_unit_tests() {
    let dir = deploy("prometheus");
    let check = promtool(&dir, &["check", "rules", "alerts.yml"]);
    assert_success("promtool check rules", &check);
    let stdout = String::from_utf8_lossy(&check.stdout);
    let alerts = ALERTS.matches("- alert: ").count();
    assert!(
        stdout.contains(&format!("SUCCESS: {alerts} rules found")),
        "{stdout}"
    );
    assert_success(
        "promtool test rules",
        &promtool(&dir, &["test", "rules", "alerts.test.yml"]),
    );
    // Every alert has at least one unit test that expects it to fire.
    let tests = include_str!("../deploy/prometheus/alerts.test.yml");
    for name in ALERTS
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
    {
        assert!(
            tests.contains(&format!(
                "alertname: {name}\n        exp_alerts:\n          - "
            )),
            "no unit test expects {name} to fire"
        );
    }
}

/// Every `expr` of every panel, with the panel's title.
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().expect("every panel has a title");
        if panel["type"] == "row" {
            continue;
        }
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {title:?} has no query");
        for target in targets {
            let expr = target["expr"].as_str().expect("a PromQL expr");
            queries.push((title.to_owned(), expr.to_owned()));
        }
    }
    queries
}

/// The query as Prometheus receives it from Grafana.
fn interpolated(expr: &str) -> String {
    expr.replace("$__rate_interval", "5m")
        .replace("$instance", ".*")
        .replace("$session", ".*")
}

#[test]
fn every_dashboard_query_is_valid_promql() {
    let dashboard: Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    assert_eq!(dashboard["uid"], "mbms-gateway");
    let variables: Vec<&str> = dashboard["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(variables, ["datasource", "instance", "session"]);
    let queries = dashboard_queries(&dashboard);
    for (title, expr) in &queries {
        if expr.contains("mbms_gateway_") && !expr.contains("build_info") {
            assert!(
                expr.contains("instance=~\"$instance\""),
                "{title}: {expr} ignores the instance variable"
            );
        }
    }
    // promtool parses rule expressions: one recording rule per query.
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, (_, expr)) in queries.iter().enumerate() {
        let expr = serde_json::to_string(&interpolated(expr)).unwrap();
        rules.push_str(&format!(
            "      - record: dashboard:query{i}\n        expr: {expr}\n"
        ));
    }
    let dir = temp_dir("dashboard-promql");
    std::fs::write(dir.join("queries.yml"), rules).unwrap();
    let check = promtool(&dir, &["check", "rules", "queries.yml"]);
    assert_success("promtool check rules on the dashboard queries", &check);
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert!(
        stdout.contains(&format!("SUCCESS: {} rules found", queries.len())),
        "{stdout}"
    );
}

/// `mbms_gateway_*` names in `text`, histogram sample suffixes removed.
fn metric_names(text: &str) -> BTreeSet<String> {
    let histograms: BTreeSet<&str> = ALL
        .iter()
        .filter(|d| matches!(d.kind, MetricType::Histogram(_)))
        .map(|d| d.name)
        .collect();
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("mbms_gateway_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|b| histograms.contains(b)))
            .unwrap_or(name);
        names.insert(base.to_owned());
        rest = &tail[end..];
    }
    names
}

const VIDEO_SDP: &str =
    r#"sdp = { media = "video", payload_type = 96, rtpmap = "H264/90000", bitrate = "2Mbit" }"#;
const AUDIO_SDP: &str = r#"sdp = { media = "audio", payload_type = 97, rtpmap = "MP4A-LATM/48000/2", bitrate = "96kbit", language = "en" }"#;

fn gateway_toml(dir: &Path, bmsc: SocketAddr, admin: SocketAddr, ingest: [u16; 2]) -> String {
    let header = gateway_header(&dir.join("gw"), "gw-monitoring", Some(admin), bmsc);
    format!(
        r#"{header}[push]
listen = "127.0.0.1:{push}"
[[streaming]]
name = "tv"
key_group = {tv_group}
destination = "239.77.16.1"
interface = "127.0.0.1"
ttl = 0
[[streaming.flow]]
name = "video"
ingest = "127.0.0.1:{video}"
port = 5004
{VIDEO_SDP}
[[streaming.flow]]
name = "audio"
ingest = "127.0.0.1:{audio}"
port = 5006
{AUDIO_SDP}
[[download]]
name = "files"
key_group = {files_group}
destination = "239.77.16.2"
port = {flute}
tsi = 3
interface = "127.0.0.1"
ttl = 0
bitrate = "20Mbit"
push = true
[download.watch]
folder = "{watch}"
"#,
        push = free_tcp_port(),
        tv_group = KEY_GROUP,
        files_group = KEY_GROUP + 1,
        video = ingest[0],
        audio = ingest[1],
        flute = free_udp_port(),
        watch = dir.join("watch").display(),
    )
}

async fn get(admin: SocketAddr, path: &str) -> Reply {
    http(admin, "GET", path, "", b"").await
}

/// The value of the unlabelled or fully labelled series `series`.
fn sample(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_gateway_exports_what_alerts_and_dashboard_use_and_serves_its_sdp() {
    let dir = temp_dir("monitoring");
    std::fs::create_dir_all(dir.join("watch")).unwrap();
    let mut bmsc = bmsc_config(
        "127.0.0.1:0".parse().unwrap(),
        &dir.join("bmsc"),
        3600,
        7200,
    );
    bmsc.key_groups = vec![KEY_GROUP, KEY_GROUP + 1];
    let bmsc = start_bmsc(&bmsc).await;
    let admin = SocketAddr::from((Ipv4Addr::LOCALHOST, free_tcp_port()));
    let ingest = [free_udp_port(), free_udp_port()];
    let config = dir.join("gateway.toml");
    std::fs::write(&config, gateway_toml(&dir, bmsc.local_addr, admin, ingest)).unwrap();
    let mut child = gateway_command(&["run", "--config", config.to_str().unwrap()], "info")
        .spawn()
        .expect("the gateway binary starts");

    let mut ready = false;
    for _ in 0..200 {
        if let Ok(stream) = tokio::net::TcpStream::connect(admin).await {
            drop(stream);
            if get(admin, "/readyz").await.status == 200 {
                ready = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "the gateway became ready");

    // Traffic on every path: RTP on both flows, one runt datagram (a drop),
    // one file in the watch folder, a reload.
    let encoder = UdpSocket::bind("127.0.0.1:0").unwrap();
    for seq in 0..50u16 {
        for (i, port) in ingest.iter().enumerate() {
            let packet = rtp_packet(seq, 0x1000 + i as u32, 400);
            encoder.send_to(&packet, ("127.0.0.1", *port)).unwrap();
        }
    }
    encoder.send_to(&[0x80], ("127.0.0.1", ingest[0])).unwrap();
    std::fs::write(dir.join("watch/segment-1.m4s"), vec![7u8; 20_000]).unwrap();
    signal(&child, libc::SIGHUP);

    let mut body = String::new();
    let sent = "mbms_gateway_flute_objects_sent_total{session=\"files\"}";
    let dropped = "mbms_gateway_ingest_dropped_total{session=\"tv\",reason=\"malformed\"}";
    let reloaded = "mbms_gateway_config_reloads_total{result=\"applied\"}";
    for _ in 0..200 {
        body = get(admin, "/metrics").await.body;
        let counted = |series| sample(&body, series).is_some_and(|v| v >= 1.0);
        if [sent, dropped, reloaded].into_iter().all(counted) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for series in [sent, dropped, reloaded] {
        assert!(
            sample(&body, series).is_some_and(|v| v >= 1.0),
            "{series} not counted:\n{body}"
        );
    }

    let exported: BTreeSet<String> = body
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    let declared: BTreeSet<String> = ALL.iter().map(|d| d.name.to_owned()).collect();
    assert_eq!(exported, declared, "the scrape has every declared family");
    let alerts = metric_names(ALERTS);
    let dashboard = metric_names(DASHBOARD);
    for (what, used) in [("alerts.yml", &alerts), ("mbms-gateway.json", &dashboard)] {
        let missing: Vec<_> = used.difference(&exported).collect();
        assert!(missing.is_empty(), "{what} uses {missing:?}, not exported");
    }
    let unshown: Vec<_> = declared.difference(&dashboard).collect();
    assert!(unshown.is_empty(), "the dashboard shows no {unshown:?}");

    // The SDP: as the CLI prints it, but for the version (the CLI takes the
    // file's time, the running gateway the time it started the session).
    let served = get(admin, "/sessions/tv/sdp").await;
    assert_eq!(served.status, 200, "{}", served.body);
    assert_eq!(served.headers["content-type"], "application/sdp");
    let printed = Command::new(env!("CARGO_BIN_EXE_mbms-gateway"))
        .args(["sdp", "--config", config.to_str().unwrap(), "tv"])
        .output()
        .unwrap();
    assert_success("mbms-gateway sdp", &printed);
    let printed = String::from_utf8(printed.stdout).unwrap();
    let unversioned = |sdp: &str| -> Vec<String> {
        sdp.split("\r\n")
            .map(|l| match l.strip_prefix("o=") {
                Some(o) => {
                    let fields: Vec<&str> = o.split(' ').collect();
                    assert_eq!(fields.len(), 6, "{l}");
                    assert!(
                        fields[2].parse::<u64>().unwrap() > 3_900_000_000,
                        "NTP: {l}"
                    );
                    format!("o={} {} - {}", fields[0], fields[1], fields[3..].join(" "))
                }
                None => l.to_owned(),
            })
            .collect()
    };
    assert_eq!(unversioned(&served.body), unversioned(&printed));
    for line in [
        "c=IN IP4 239.77.16.1/0",
        "a=source-filter: incl IN IP4 * 127.0.0.1",
        "a=mbms-gateway-keys:key-domain=09f107 key-group=1 mikey=udp/2269",
        "m=video 5004 RTP/SAVP 96",
        "m=audio 5006 RTP/SAVP 97",
        "b=RR:0",
        "a=lang:en",
        "a=mbms-gateway-srtp:AES_CM_128_HMAC_SHA1_80 mki-length=6 roc=rccm2 roc-rate=16",
    ] {
        assert!(
            served.body.split("\r\n").any(|l| l == line),
            "no {line:?} in\n{}",
            served.body
        );
    }

    let unknown = get(admin, "/sessions/radio/sdp").await;
    assert_eq!(unknown.status, 404);
    assert!(unknown.body.contains("radio"), "{}", unknown.body);
    let download = get(admin, "/sessions/files/sdp").await;
    assert_eq!(download.status, 404);
    assert!(
        download.body.contains("`files` is a download session"),
        "{}",
        download.body
    );

    // A new bitrate in an `sdp` table: the description follows with a
    // higher version, the session keeps running (a restarted session would
    // switch to a fresh MTK).
    let version = |sdp: &str| -> u64 {
        let o = sdp
            .split("\r\n")
            .find_map(|l| l.strip_prefix("o="))
            .unwrap();
        o.split(' ').nth(2).unwrap().parse().unwrap()
    };
    let before = version(&served.body);
    let rotations = "mbms_gateway_mtk_rotations_total{session=\"tv\"}";
    let rotations_before = sample(&body, rotations).unwrap();
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("\"2Mbit\"", "\"3Mbit\"")).unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    signal(&child, libc::SIGHUP);
    let mut reannounced = String::new();
    for _ in 0..100 {
        reannounced = get(admin, "/sessions/tv/sdp").await.body;
        if reannounced.contains("b=AS:3000\r\n") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reannounced.contains("b=AS:3000\r\n"), "{reannounced}");
    assert!(version(&reannounced) > before, "{reannounced}");
    let body = get(admin, "/metrics").await.body;
    assert_eq!(sample(&body, reloaded), Some(2.0));
    assert_eq!(
        sample(&body, rotations),
        Some(rotations_before),
        "the session kept its MTK: it was not restarted"
    );

    signal(&child, libc::SIGTERM);
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
}
