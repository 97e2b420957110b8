//! `--log-format json` writes one JSON object per line, `human` (the default)
//! plain text; both carry the significant events of a gateway run.

use std::io::Read;
use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Runs the gateway (BM-SC unreachable, so it never gets ready) until it has
/// logged its start, stops it with SIGTERM, and returns its exit status and
/// its log.
fn run_logged(format: &str) -> (std::process::ExitStatus, String) {
    let dir = tempfile::tempdir().unwrap();
    let ingest = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            r#"state_dir = "{state}"
instance_id = "gw-log"
[admin]
listen = "127.0.0.1:0"
[bmsc]
endpoint = "http://127.0.0.1:1"
key_domain_id = "09f107"
[[streaming]]
name = "tv"
key_group = 1
destination = "239.255.42.1"
interface = "127.0.0.1"
ttl = 0
[[streaming.flow]]
ingest = "{ingest}"
port = 5004
"#,
            state = dir.path().join("state").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mbms-gateway"))
        .args(["--log-format", format, "run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: signalling our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
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
