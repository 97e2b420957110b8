//! The gateway binary as a child process, as an operator or systemd runs it.

use std::net::{Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// `mbms-gateway` with `args`, stdout discarded, stderr inherited (callers
/// may redirect it) and `RUST_LOG` at `log`.
pub fn gateway_command(args: &[&str], log: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mbms-gateway"));
    command
        .args(args)
        .env("RUST_LOG", log)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    command
}

/// Sends `signal` to `child`.
pub fn signal(child: &Child, signal: i32) {
    // SAFETY: signalling our own child process.
    assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
}

/// Writes, in `dir`, the configuration of a gateway whose BM-SC is
/// unreachable (it starts and runs but never gets a key), with one streaming
/// session to `group`; returns the file's path.
pub fn keyless_gateway_config(dir: &Path, instance: &str, group: Ipv4Addr) -> PathBuf {
    let ingest = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            r#"state_dir = "{state}"
instance_id = "{instance}"
[admin]
listen = "127.0.0.1:0"
[bmsc]
endpoint = "http://127.0.0.1:1"
key_domain_id = "09f107"
[[streaming]]
name = "tv"
key_group = 1
destination = "{group}"
interface = "127.0.0.1"
ttl = 0
[[streaming.flow]]
ingest = "{ingest}"
port = 5004
"#,
            state = dir.join("state").display()
        ),
    )
    .unwrap();
    config
}
