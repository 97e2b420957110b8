//! A BM-SC, a gateway and capture sockets on loopback for end-to-end tests.
//! Multicast stays on the host: egress is pinned to 127.0.0.1 with TTL 0, and
//! every join is on 127.0.0.1.

use super::libsrtp::MasterKey;
use mbms_gateway::bmsc::{Bmsc, BmscConfig, GenerateConfig, KeySource, RunningBmsc};
use mbms_gateway::protocol::keys::{KeyDomainId, Mki, MskId};
use mbms_gateway::protocol::mikey::{MtkReceptionState, open_mtk_message, peek_mtk_key_ids};
use mbms_gateway::runtime::key_service::MskSet;
use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const KEY_DOMAIN: KeyDomainId = KeyDomainId([0x09, 0xf1, 0x07]);
pub const KEY_GROUP: u16 = 1;

/// A fresh directory under the target's temp dir.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A UDP port free on 127.0.0.1 right now.
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A TCP port free on 127.0.0.1 when this returns.
pub fn free_tcp_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

pub fn bmsc_config(
    listen: SocketAddr,
    state_dir: &Path,
    rotate_every_s: u32,
    lifetime_s: u32,
) -> BmscConfig {
    BmscConfig {
        state_dir: Some(state_dir.to_path_buf()),
        ..BmscConfig::plaintext(
            listen,
            KEY_DOMAIN,
            vec![KEY_GROUP],
            KeySource::Generate(GenerateConfig::every(rotate_every_s, lifetime_s, 1)),
        )
    }
}

/// Starts a BM-SC on `listen` (port 0: any free port).
pub async fn start_bmsc(config: &BmscConfig) -> RunningBmsc {
    let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
    Bmsc::from_config(config).unwrap().spawn(listener).unwrap()
}

/// Gateway settings of the end-to-end tests.
pub struct GatewaySetup {
    pub state_dir: PathBuf,
    pub bmsc: SocketAddr,
    pub group: Ipv4Addr,
    pub ingest_port: u16,
    pub egress_port: u16,
    pub period: &'static str,
    pub lead: &'static str,
    pub resend: &'static str,
}

/// The top of a test gateway configuration: its state directory and
/// instance, the admin listener when `admin` is given, and the BM-SC with a
/// short reconnect back-off. Session tables follow it.
pub fn gateway_header(
    state_dir: &Path,
    instance_id: &str,
    admin: Option<SocketAddr>,
    bmsc: SocketAddr,
) -> String {
    let admin = admin.map_or(String::new(), |a| format!("[admin]\nlisten = \"{a}\"\n"));
    format!(
        r#"state_dir = "{state}"
instance_id = "{instance_id}"
lease_block = 4
{admin}[bmsc]
endpoint = "http://{bmsc}"
key_domain_id = "09f107"
backoff_initial_ms = 100
backoff_max_ms = 300
"#,
        state = state_dir.display(),
    )
}

impl GatewaySetup {
    pub fn toml(&self) -> String {
        let header = gateway_header(
            &self.state_dir,
            "gw-test",
            Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))),
            self.bmsc,
        );
        format!(
            r#"{header}[[streaming]]
name = "tv"
key_group = {group_id}
destination = "{group}"
interface = "127.0.0.1"
ttl = 0
mtk = {{ period = "{period}", lead = "{lead}", resend = "{resend}", retire_after = "500ms" }}
[[streaming.flow]]
ingest = "127.0.0.1:{ingest}"
port = {egress}
"#,
            group_id = KEY_GROUP,
            group = self.group,
            period = self.period,
            lead = self.lead,
            resend = self.resend,
            ingest = self.ingest_port,
            egress = self.egress_port,
        )
    }
}

/// Datagrams with their arrival times.
pub type Captured = Vec<(Instant, Vec<u8>)>;

/// Everything received on one multicast group:port, with arrival times.
pub struct Capture {
    stop: Arc<AtomicBool>,
    packets: Arc<Mutex<Captured>>,
    thread: Option<JoinHandle<()>>,
}

impl Capture {
    pub fn start(group: Ipv4Addr, port: u16) -> Self {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
        socket.set_reuse_address(true).unwrap();
        socket.set_recv_buffer_size(8 << 20).unwrap();
        socket
            .bind(&SocketAddr::from((group, port)).into())
            .unwrap();
        socket
            .join_multicast_v4(&group, &Ipv4Addr::LOCALHOST)
            .unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let socket: UdpSocket = socket.into();
        let stop = Arc::new(AtomicBool::new(false));
        let packets = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, packets) = (stop.clone(), packets.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 65_536];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok(n) = socket.recv(&mut buf) {
                        packets
                            .lock()
                            .unwrap()
                            .push((Instant::now(), buf[..n].to_vec()));
                    }
                }
            })
        };
        Self {
            stop,
            packets,
            thread: Some(thread),
        }
    }

    pub fn count(&self) -> usize {
        self.packets.lock().unwrap().len()
    }

    pub fn snapshot(&self) -> Captured {
        self.packets.lock().unwrap().clone()
    }

    pub fn finish(mut self) -> Captured {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        std::mem::take(&mut *self.packets.lock().unwrap())
    }
}

/// An RTP packet of MPEG-TS payload type with a recognisable payload.
pub fn rtp_packet(seq: u16, ssrc: u32, payload_len: usize) -> Vec<u8> {
    let mut p = vec![0x80, 33];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 3000).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend((0..payload_len).map(|i| (i as u16).wrapping_mul(7).wrapping_add(seq) as u8));
    p
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes.
pub async fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The MTKs announced in captured MIKEY messages, opened as a UE would.
pub fn mtks_from_mikey(
    captured: &[(std::time::Instant, Vec<u8>)],
    msks: &MskSet,
) -> BTreeMap<[u8; 6], MasterKey> {
    let mut states: HashMap<MskId, MtkReceptionState> = HashMap::new();
    let mut keys = BTreeMap::new();
    for (_, message) in captured {
        let ids = peek_mtk_key_ids(message).unwrap();
        let msk = msks
            .get(ids.msk_id)
            .expect("MIKEY under an MSK the BM-SC issued");
        // Re-sends of an MTK already held are dropped by the MTK ID rule.
        if let Ok(opened) =
            open_mtk_message(&msk.key, states.entry(ids.msk_id).or_default(), message)
        {
            let mki = Mki {
                msk_id: ids.msk_id,
                mtk_id: ids.mtk_id,
            }
            .to_bytes();
            keys.insert(mki, (mki, opened.mtk));
        }
    }
    keys
}
