//! Every class of configuration error names the field and the line it is on,
//! as `mbms-gateway check-config` prints it: unknown keys, bad addresses,
//! zero where a positive value is needed, duplicate destinations, a missing
//! Key Group, flows that cannot be announced in SDP, and settings the gateway
//! refuses to start with.

use mbms_gateway::gateway::config::GatewayConfig;
use std::process::Command;

const GOOD: &str = r#"state_dir = "/tmp/x"
instance_id = "gw-a"
[bmsc]
endpoint = "http://127.0.0.1:50051"
key_domain_id = "64f000"
[[streaming]]
name = "tv"
key_group = 1
destination = "239.1.1.1"
mtk = { period = "10s", lead = "2s", resend = "500ms" }
[[streaming.flow]]
ingest = "127.0.0.1:5004"
port = 5004
[[streaming]]
name = "radio"
key_group = 2
destination = "239.1.1.2"
[[streaming.flow]]
ingest = "127.0.0.1:5006"
port = 5006
"#;

/// The error of `text`, as the CLI prints it.
fn error(text: &str) -> String {
    format!("{:#}", GatewayConfig::parse(text).unwrap_err())
}

/// The 1-based line on which `needle` starts in `text`.
fn line(text: &str, needle: &str) -> usize {
    let at = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in the text"));
    text[..at].matches('\n').count() + 1
}

/// Replaces the one occurrence of `from`.
fn edit(from: &str, to: &str) -> String {
    assert_eq!(GOOD.matches(from).count(), 1, "{from:?}");
    GOOD.replace(from, to)
}

fn assert_names(text: &str, field: &str, line_text: &str) -> String {
    assert_names_at(text, field, line(text, line_text))
}

fn assert_names_at(text: &str, field: &str, line: usize) -> String {
    let e = error(text);
    assert!(e.contains(field), "the error names `{field}`: {e}");
    assert!(
        e.contains(&format!("line {line}")),
        "the error names line {line}: {e}"
    );
    e
}

#[test]
fn the_good_config_parses() {
    let c = GatewayConfig::parse(GOOD).unwrap();
    assert_eq!(c.streaming.len(), 2);
    assert_eq!(c.bmsc.key_groups, [1, 2]);
}

#[test]
fn unknown_keys() {
    let text = edit("port = 5006", "port = 5006\nprot = 1");
    assert_names(&text, "prot", "prot = 1");
    let text = edit("key_group = 2", "key_group = 2\nkey_grup = 3");
    assert_names(&text, "key_grup", "key_grup");
    let text = edit("[bmsc]", "[bmsc]\nendpiont = \"x\"");
    assert_names(&text, "endpiont", "endpiont");
    let text = format!("statedir = \"/x\"\n{GOOD}");
    assert_names(&text, "statedir", "statedir");
}

#[test]
fn bad_addresses() {
    let text = edit("\"239.1.1.2\"", "\"239.1.1\"");
    let e = assert_names(&text, "destination", "destination = \"239.1.1\"");
    assert!(e.contains("invalid IP address"), "{e}");
    let text = edit("\"127.0.0.1:5006\"", "\"127.0.0.1\"");
    assert_names(&text, "ingest", "ingest = \"127.0.0.1\"");
    let text = edit("\"239.1.1.2\"", "\"0.0.0.0\"");
    let e = assert_names(
        &text,
        "streaming[1].destination",
        "destination = \"0.0.0.0\"",
    );
    assert!(e.contains("unspecified"), "{e}");
}

#[test]
fn zero_where_a_positive_value_is_needed() {
    let text = format!("lease_block = 0\n{GOOD}");
    assert_names(&text, "lease_block", "lease_block = 0");
    let text = edit("period = \"10s\"", "period = \"0s\"");
    assert_names(&text, "streaming[0].mtk.period", "mtk = {");
    let text = edit("resend = \"500ms\"", "resend = \"500ms\", max_packets = 0");
    assert_names(&text, "streaming[0].mtk.max_packets", "mtk = {");
    let text = edit("port = 5006", "port = 0");
    assert_names(&text, "streaming[1].flow[0].port", "port = 0");
    let text = edit("\"127.0.0.1:5006\"", "\"127.0.0.1:0\"");
    assert_names(
        &text,
        "streaming[1].flow[0].ingest",
        "ingest = \"127.0.0.1:0\"",
    );
}

#[test]
fn bad_ingest_settings() {
    let text = format!("{GOOD}[ingest]\nworkers = 0\n");
    assert_names(&text, "ingest.workers", "workers = 0");
    let text = format!("{GOOD}[ingest]\nmin_wake_interval = \"soon\"\n");
    assert_names(&text, "min_wake_interval", "min_wake_interval = \"soon\"");
    let text = format!("{GOOD}[ingest]\nmin_wake_interval = \"1s\"\n");
    let e = assert_names(
        &text,
        "ingest.min_wake_interval",
        "min_wake_interval = \"1s\"",
    );
    assert!(e.contains("at most 20ms"), "{e}");
    let text = format!("{GOOD}[ingest]\nthreads = 2\n");
    assert_names(&text, "threads", "threads = 2");
    let c = GatewayConfig::parse(&format!(
        "{GOOD}[ingest]\nworkers = 3\nmin_wake_interval = \"250us\"\n"
    ))
    .unwrap();
    assert_eq!(c.ingest.worker_count(), 3);
    assert_eq!(
        c.ingest.min_wake_interval,
        std::time::Duration::from_micros(250)
    );
}

#[test]
fn duplicate_destination_group_and_port() {
    // Both sessions send to 239.1.1.1:5004.
    let text = edit("\"239.1.1.2\"", "\"239.1.1.1\"");
    let text = text.replace("port = 5006", "port = 5004");
    let e = assert_names(
        &text,
        "streaming[1].destination",
        "destination = \"239.1.1.1\"\n[[streaming.flow]]\ningest = \"127.0.0.1:5006\"",
    );
    assert!(e.contains("239.1.1.1"), "{e}");
    // Two flows of one session on one port.
    let text = format!("{GOOD}[[streaming.flow]]\ningest = \"127.0.0.1:5008\"\nport = 5006\n");
    let e = assert_names_at(
        &text,
        "streaming[1].flow[1].port",
        line(&text, "ingest = \"127.0.0.1:5008\"") + 1,
    );
    assert!(e.contains("duplicate destination 239.1.1.2:5006"), "{e}");
    // The same ingest address twice.
    let text = edit("\"127.0.0.1:5006\"", "\"127.0.0.1:5004\"");
    assert_names(
        &text,
        "streaming[1].flow[0].ingest",
        "ingest = \"127.0.0.1:5004\"\nport = 5006",
    );
}

#[test]
fn key_group_missing_or_shared() {
    let text = edit("key_group = 2\n", "");
    assert_names(&text, "key_group", "[[streaming]]\nname = \"radio\"");
    let text = edit("key_group = 2", "key_group = 1");
    let e = assert_names(
        &text,
        "streaming[1].key_group",
        "key_group = 1\ndestination = \"239.1.1.2\"",
    );
    assert!(e.contains("`tv`"), "{e}");
    let text = edit("key_group = 2", "key_group = 70000");
    assert_names(&text, "key_group", "key_group = 70000");
}

#[test]
fn an_admin_endpoint_off_loopback_without_a_token() {
    let text = format!("{GOOD}[admin]\nlisten = \"0.0.0.0:9464\"\n");
    let e = assert_names(&text, "admin.listen", "listen = \"0.0.0.0:9464\"");
    assert!(e.contains("token"), "{e}");
    let text = format!("{GOOD}[admin]\nlisten = \"0.0.0.0:9464\"\ntoken = \"short\"\n");
    assert_names(&text, "admin.token", "token = \"short\"");
}

#[test]
fn two_flows_of_a_session_under_one_name() {
    let text = edit(
        "[[streaming.flow]]\ningest = \"127.0.0.1:5006\"",
        "[[streaming.flow]]\nname = \"video\"\ningest = \"127.0.0.1:5006\"",
    );
    let text = format!(
        "{text}[[streaming.flow]]\nname = \"video\"\ningest = \"127.0.0.1:5008\"\nport = 5008\n"
    );
    let e = assert_names_at(
        &text,
        "streaming[1].flow[1].name",
        line(&text, "name = \"video\"\ningest = \"127.0.0.1:5008\""),
    );
    assert!(e.contains("`video`"), "{e}");
}

#[test]
fn bmsc_fields_the_gateway_derives_are_not_written() {
    let text = edit(
        "key_domain_id = \"64f000\"\n",
        "key_domain_id = \"64f000\"\nkey_groups = [1]\n",
    );
    assert_names(&text, "bmsc.key_groups", "key_groups = [1]");
    let text = edit(
        "key_domain_id = \"64f000\"\n",
        "key_domain_id = \"64f000\"\nclient_id = \"gw\"\n",
    );
    assert_names(&text, "bmsc.client_id", "client_id = \"gw\"");
}

#[test]
fn check_config_prints_the_line_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, edit("port = 5006", "port = 0")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mbms-gateway"))
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("streaming[1].flow[0].port") && stderr.contains("line 20"),
        "{stderr}"
    );
    std::fs::write(&path, GOOD).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mbms-gateway"))
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn bad_roc_transmission_settings() {
    let text = edit(
        "key_group = 2\n",
        "key_group = 2\nsrtp = { roc_transmission = \"rcc\" }\n",
    );
    let e = assert_names(&text, "streaming[1].srtp.roc_transmission", "srtp = {");
    assert!(e.contains("expected none, rccm1, rccm2 or rccm3"), "{e}");
    let text = edit(
        "key_group = 2\n",
        "key_group = 2\nsrtp = { roc_transmission = \"rccm1\", roc_rate = 0 }\n",
    );
    let e = assert_names(&text, "streaming[1].srtp.roc_rate", "srtp = {");
    assert!(e.contains("at least 1"), "{e}");
    let text = edit(
        "key_group = 2\n",
        "key_group = 2\nsrtp = { roc_transmission = \"none\", roc_rate = 8 }\n",
    );
    let e = assert_names(&text, "streaming[1].srtp.roc_rate", "srtp = {");
    assert!(e.contains("not transmitted"), "{e}");
    let text = edit(
        "key_group = 2\n",
        "key_group = 2\nsrtp = { roc_rates = 8 }\n",
    );
    assert_names(&text, "roc_rates", "srtp = {");
    let text = edit(
        "key_group = 2\n",
        "key_group = 2\nsrtp = { roc_transmission = \"rccm1\", roc_rate = 4 }\n",
    );
    let config = GatewayConfig::parse(&text).unwrap();
    let roc = config.streaming[1].srtp.roc().unwrap();
    assert_eq!((roc.mode_name(), roc.rate()), ("rccm1", Some(4)));
    let default = config.streaming[0].srtp.roc().unwrap();
    assert_eq!((default.mode_name(), default.rate()), ("rccm2", Some(16)));
}

#[test]
fn flow_sdp_tables_that_cannot_be_announced() {
    let video = "sdp = { media = \"video\", payload_type = 96, bitrate = \"4Mbit\" }";
    let good = edit("port = 5004\n", &format!("port = 5004\n{video}\n"));
    let sdp = GatewayConfig::parse(&good).unwrap().streaming[0]
        .sdp(
            mbms_gateway::protocol::keys::KeyDomainId([0x64, 0xf0, 0]),
            1,
        )
        .unwrap();
    assert!(sdp.contains("m=video 5004 RTP/SAVP 96\r\n"), "{sdp}");

    let bad = |from: &str, to: &str| {
        edit(
            "port = 5004\n",
            &format!("port = 5004\n{}\n", video.replace(from, to)),
        )
    };
    let text = bad("payload_type = 96", "payload_type = 128");
    assert_names(&text, "payload_type", "sdp = {");
    let text = bad("\"video\"", "\"image\"");
    let e = assert_names(&text, "streaming[0].flow[0].sdp", "sdp = {");
    assert!(e.contains("image"), "{e}");
    let text = bad(", bitrate = \"4Mbit\"", "");
    assert_names(&text, "bitrate", "sdp = {");
    let text = bad("\"4Mbit\"", "\"4\"");
    let e = assert_names(&text, "bitrate", "sdp = {");
    assert!(e.contains("no unit"), "{e}");
    let text = bad("bitrate", "bitrat");
    assert_names(&text, "bitrat", "sdp = {");
    let text = bad(
        "media = \"video\"",
        "media = \"video\", rtpmap = \"H264/90000\\r\\na=x\"",
    );
    let e = assert_names(&text, "streaming[0].flow[0].sdp", "sdp = {");
    assert!(e.contains("rtpmap"), "{e}");
}

#[test]
fn a_session_announces_all_its_flows_or_none() {
    let video = "sdp = { media = \"video\", payload_type = 96, bitrate = \"4Mbit\" }";
    let text = format!(
        "{}[[streaming.flow]]\ningest = \"127.0.0.1:5008\"\nport = 5008\n",
        GOOD.replacen("port = 5006\n", &format!("port = 5006\n{video}\n"), 1)
    );
    let e = error(&text);
    assert!(e.contains("streaming[1].flow[1].sdp: missing"), "{e}");
}

#[test]
fn a_source_specific_session_announced_without_its_source() {
    let video = "sdp = { media = \"video\", payload_type = 96, bitrate = \"4Mbit\" }";
    let text = edit("port = 5004\n", &format!("port = 5004\n{video}\n"))
        .replace("\"239.1.1.1\"", "\"232.1.1.1\"");
    let e = error(&text);
    assert!(
        e.contains("streaming[0].interface")
            && e.contains("232.1.1.1")
            && e.contains("source-specific"),
        "{e}"
    );
}
