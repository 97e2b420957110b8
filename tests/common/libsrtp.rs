//! libsrtp (Debian `libsrtp2-dev`) as an independent SRTP/SRTCP peer:
//! `tests/interop/srtp_peer.c`, compiled once per test binary with `cc`.

#![allow(dead_code)]

use mbms_gateway::protocol::keys::Mtk;
use mbms_gateway::protocol::srtp::AuthTag;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// One master key: MKI and MTK.
pub type MasterKey = ([u8; 6], Mtk);

/// Builds the libsrtp peer once per test binary.
pub fn peer() -> &'static PathBuf {
    static PEER: OnceLock<PathBuf> = OnceLock::new();
    PEER.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("libsrtp_interop");
        std::fs::create_dir_all(&dir).unwrap();
        // Built under a per-process name, then renamed: concurrent test runs
        // never see a half-written binary, and runs do not pile up copies.
        let exe = dir.join("srtp_peer");
        let built = dir.join(format!("srtp_peer.{}", std::process::id()));
        let flags = Command::new("pkg-config")
            .args(["--cflags", "--libs", "libsrtp2"])
            .output()
            .expect("pkg-config runs (scripts/test installs pkg-config and libsrtp2-dev)");
        assert!(flags.status.success(), "libsrtp2 is not installed");
        let source = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/srtp_peer.c");
        let status = Command::new("cc")
            .args(["-O2", "-Wall", "-Wextra", source, "-o"])
            .arg(&built)
            .args(String::from_utf8(flags.stdout).unwrap().split_whitespace())
            .status()
            .expect("cc runs");
        assert!(status.success(), "compiling {source} failed");
        std::fs::rename(&built, &exe).unwrap();
        exe
    })
}

/// Runs the libsrtp peer over `records`; returns (status, packet) per record.
pub fn run_peer(
    mode: &str,
    tag: AuthTag,
    keys: &[MasterKey],
    records: &[(u8, Vec<u8>)],
) -> Vec<(i32, Vec<u8>)> {
    let mut input = Vec::new();
    for (key_number, packet) in records {
        input.extend_from_slice(&(packet.len() as u32).to_be_bytes());
        if mode.starts_with("protect") {
            input.push(*key_number);
        }
        input.extend_from_slice(packet);
    }
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let exe = peer();
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    let input_path = exe.with_file_name(format!("{mode}-{}-{run}.bin", std::process::id()));
    std::fs::write(&input_path, &input).unwrap();
    let mut command = Command::new(exe);
    command.arg(mode).arg(match tag {
        AuthTag::HmacSha1_80 => "80",
        AuthTag::HmacSha1_32 => "32",
    });
    for (mki, mtk) in keys {
        let mut master = mtk.key.expose().to_vec();
        master.extend_from_slice(mtk.salt.expose());
        command.arg(hex::encode(mki)).arg(hex::encode(master));
    }
    let output = command
        .stdin(Stdio::from(std::fs::File::open(&input_path).unwrap()))
        .output()
        .unwrap();
    std::fs::remove_file(&input_path).unwrap();
    assert!(
        output.status.success(),
        "srtp_peer {mode}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut out = output.stdout.as_slice();
    let mut results = Vec::new();
    while !out.is_empty() {
        let status = i32::from_be_bytes(out[..4].try_into().unwrap());
        let len = u32::from_be_bytes(out[4..8].try_into().unwrap()) as usize;
        results.push((status, out[8..8 + len].to_vec()));
        out = &out[8 + len..];
    }
    assert_eq!(results.len(), records.len());
    results
}
