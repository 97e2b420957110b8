//! `--log-format json` writes one JSON object per line, `human` (the default)
//! plain text; both carry the significant events of a gateway run.

mod common;

use common::process::{gateway_command, keyless_gateway_config, signal};
use std::io::Read;
use std::net::Ipv4Addr;
use std::process::Stdio;
use std::time::Duration;

/// Runs the gateway (BM-SC unreachable, so it never gets ready) until it has
/// logged its start, stops it with SIGTERM, and returns its exit status and
/// its log.
fn run_logged(format: &str) -> (std::process::ExitStatus, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = keyless_gateway_config(dir.path(), "gw-log", Ipv4Addr::new(239, 255, 42, 1));
    let config = config.to_str().unwrap();
    let mut child = gateway_command(&["--log-format", format, "run", "--config", config], "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    signal(&child, libc::SIGTERM);
    let status = child.wait().unwrap();
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    (status, log)
}

#[test]
fn json_lines_carry_level_message_and_fields() {
    let (status, log) = run_logged("json");
    assert!(status.success(), "{status}\n{log}");
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    let message = |v: &serde_json::Value| v["fields"]["message"].as_str().unwrap_or("").to_owned();
    let running = lines
        .iter()
        .find(|v| message(v) == "gateway running")
        .unwrap_or_else(|| panic!("no `gateway running` line:\n{log}"));
    assert_eq!(running["level"], "INFO");
    assert_eq!(running["fields"]["streaming"], 1);
    assert!(
        lines.iter().any(|v| message(v) == "gateway stopped"),
        "{log}"
    );
    // The BM-SC is unreachable: said once per attempt, not once per packet.
    assert!(
        lines
            .iter()
            .any(|v| message(v).contains("BM-SC watch stream down")),
        "{log}"
    );
}

#[test]
fn human_lines_are_plain_text() {
    let (status, log) = run_logged("human");
    assert!(status.success(), "{status}\n{log}");
    let running = log
        .lines()
        .find(|l| l.contains("gateway running"))
        .unwrap_or_else(|| panic!("no `gateway running` line:\n{log}"));
    assert!(
        running.contains("INFO") && running.contains("streaming=1"),
        "{running}"
    );
    assert!(!running.trim_start().starts_with('{'), "{running}");
}
