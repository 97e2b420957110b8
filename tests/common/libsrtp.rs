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
    let records: Vec<PeerRecord> = records
        .iter()
        .map(|(key_number, packet)| PeerRecord {
            key_number: *key_number,
            set_roc: None,
            packet: packet.clone(),
        })
        .collect();
    run(mode, tag_arg(Some(tag)), None, keys, &records)
}

/// One packet for the peer of one SSRC.
pub struct PeerRecord {
    /// The master key a protect mode uses.
    pub key_number: u8,
    /// `srtp_set_stream_roc` to this value before the packet.
    pub set_roc: Option<u32>,
    pub packet: Vec<u8>,
}

/// The SRTP integrity libsrtp is to apply: an HMAC-SHA1 tag, or none
/// (`srtp_crypto_policy_set_aes_cm_128_null_auth`).
pub fn tag_arg(tag: Option<AuthTag>) -> &'static str {
    match tag {
        Some(AuthTag::HmacSha1_80) => "80",
        Some(AuthTag::HmacSha1_32) => "32",
        None => "0",
    }
}

/// Runs the peer with one stream of `ssrc` (so its ROC can be set), SRTP
/// integrity `tag` ([`tag_arg`]); returns (status, packet) per record.
pub fn run_peer_on_ssrc(
    mode: &str,
    tag: Option<AuthTag>,
    ssrc: u32,
    keys: &[MasterKey],
    records: &[PeerRecord],
) -> Vec<(i32, Vec<u8>)> {
    run(mode, tag_arg(tag), Some(ssrc), keys, records)
}

fn run(
    mode: &str,
    tag: &str,
    ssrc: Option<u32>,
    keys: &[MasterKey],
    records: &[PeerRecord],
) -> Vec<(i32, Vec<u8>)> {
    let mut input = Vec::new();
    for record in records {
        input.extend_from_slice(&(record.packet.len() as u32).to_be_bytes());
        if mode.starts_with("protect") {
            input.push(record.key_number);
        }
        if ssrc.is_some() {
            let field = record.set_roc.map_or(0, |roc| roc + 1);
            input.extend_from_slice(&field.to_be_bytes());
        }
        input.extend_from_slice(&record.packet);
    }
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let exe = peer();
    let run = RUNS.fetch_add(1, Ordering::Relaxed);
    let input_path = exe.with_file_name(format!("{mode}-{}-{run}.bin", std::process::id()));
    std::fs::write(&input_path, &input).unwrap();
    let mut command = Command::new(exe);
    command.arg(mode).arg(tag);
    if let Some(ssrc) = ssrc {
        command.arg(format!("ssrc={ssrc:08x}"));
    }
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

/// Opens SRTP captured from a gateway session of the MBMS profile (RCCm2,
/// RFC 4771) with libsrtp and with our receiver, as a UE present from the
/// session's start: libsrtp, which knows only the default transform, must
/// open every packet that does not carry the ROC and refuse (auth_fail)
/// exactly those that do; our receiver must open every packet, and both
/// must agree on the plaintext. Keys are held as a UE holds them: the newest
/// few, installed by the MKI on the packet. Returns the plaintexts.
pub fn open_mbms_capture(keys: &[MasterKey], packets: &[Vec<u8>]) -> Vec<Vec<u8>> {
    use mbms_gateway::protocol::srtp::{MAX_MASTER_KEYS, SrtpConfig, SrtpReceiver};
    const LIBSRTP_AUTH_FAIL: i32 = 7;
    let config = SrtpConfig::mbms();
    let records: Vec<(u8, Vec<u8>)> = packets.iter().map(|p| (0, p.clone())).collect();
    let theirs = run_peer("unprotect", AuthTag::HmacSha1_80, keys, &records);
    let mut ours = SrtpReceiver::new(config).unwrap();
    let mut installed = std::collections::VecDeque::new();
    let mut rcc_packets = 0;
    let plain = packets
        .iter()
        .zip(theirs)
        .enumerate()
        .map(|(i, (packet, (status, libsrtp_plain)))| {
            let mki = config.mki_of(packet).unwrap();
            if !installed.contains(&mki) {
                if installed.len() == MAX_MASTER_KEYS {
                    ours.remove_master_key(installed.pop_front().unwrap())
                        .unwrap();
                }
                let (_, mtk) = keys.iter().find(|(m, _)| m[..] == *mki).unwrap_or_else(|| {
                    panic!("packet {i}: MKI {} not announced", hex::encode(mki))
                });
                ours.add_master_key(mki, mtk).unwrap();
                installed.push_back(mki);
            }
            let mut buf = packet.clone();
            let out = ours
                .unprotect_packet(&mut buf)
                .unwrap_or_else(|e| panic!("packet {i}: {e}"));
            buf.truncate(out.rtp_len);
            let seq = u16::from_be_bytes([packet[2], packet[3]]);
            assert_eq!(out.carried_roc, config.roc.carries_roc(seq), "packet {i}");
            if out.carried_roc {
                assert_eq!(status, LIBSRTP_AUTH_FAIL, "packet {i} carries the ROC");
                rcc_packets += 1;
            } else {
                assert_eq!(status, 0, "libsrtp refused packet {i}");
                assert_eq!(libsrtp_plain, buf, "packet {i}: libsrtp and ours differ");
            }
            buf
        })
        .collect();
    assert!(
        packets.len() < 32 || rcc_packets > 0,
        "a capture this long has packets that carry the ROC"
    );
    plain
}
