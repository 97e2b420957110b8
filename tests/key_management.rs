//! The seeds' key management procedures on loopback: the reference BM-SC's Key
//! Request function (HTTP Digest) and Key Distribution function (MIKEY MSK
//! messages over UDP), a UE agent, and the probe decrypting the gateway's SRTP
//! with the MSKs the UE obtained.

mod common;

use common::gateway::*;
use common::pki::Pki;
use mbms_gateway::bmsc::key_management::{
    KeyManagementConfig, RunningKeyManagement, UserServiceConfig, start_key_management,
};
use mbms_gateway::bmsc::{BmscConfig, RunningBmsc};
use mbms_gateway::gateway::Gateway;
use mbms_gateway::gateway::config::GatewayConfig;
use mbms_gateway::gateway::streaming::SessionState;
use mbms_gateway::protocol::key_request::{
    BackOff, KeyRef, KeyRequest, KeyResponse, MskOutcome, Status, UeMskStore, UeSecurityAssociation,
};
use mbms_gateway::protocol::keys::{Msk, MskId, MtkId, Muk};
use mbms_gateway::runtime::key_service::{MskRecord, MskSet};
use mbms_gateway::ue::key_management::{
    KeyRequestClient, KeyRequestError, RunningUe, UeConfig, start_ue,
};
use mbms_gateway::ue::probe::{ProbeKeySource, StreamingProbeConfig, start_streaming_probe};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const B_TID: &str = "cmFuZDE=@bsf.example.org";
const KS_NAF: [u8; 32] = [0x11; 32];
const TV: &str = "urn:example:mbms:tv";
const RADIO: &str = "urn:example:mbms:radio";
const NAF_ID: &str = "bmsc.example.org";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn sa(ks_naf: [u8; 32]) -> UeSecurityAssociation {
    UeSecurityAssociation {
        b_tid: B_TID.into(),
        impi: "001010000000001@ims.example.org".into(),
        ks_naf: mbms_gateway::protocol::key_request::KsNaf::new(ks_naf),
    }
}

fn record(group: u16, number: u16, key: u8) -> MskRecord {
    MskRecord {
        key_domain_id: KEY_DOMAIN,
        msk_id: MskId::new(group, number),
        key: Msk::new([key; 16]),
        validity: (MtkId(1), MtkId(0xFFFF)),
        not_before: now() - 60 + i64::from(number),
        not_after: now() + 3600,
    }
}

/// Datagrams from the BM-SC to the UE, recorded and (unless `drop`) forwarded.
struct Tap {
    port: u16,
    seen: Arc<Mutex<Vec<Vec<u8>>>>,
    drop: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Tap {
    fn start(forward_to: SocketAddr) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let port = socket.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let drop = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, d, st) = (seen.clone(), drop.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // The BM-SC's address, learnt from its first message: the UE's
            // verification messages go back there.
            let mut bmsc = None;
            while !st.load(Ordering::Relaxed) {
                let Ok((n, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                if from == forward_to {
                    if let Some(to) = bmsc {
                        let _ = socket.send_to(&buf[..n], to);
                    }
                    continue;
                }
                bmsc = Some(from);
                s.lock().unwrap().push(buf[..n].to_vec());
                if !d.load(Ordering::Relaxed) {
                    let _ = socket.send_to(&buf[..n], forward_to);
                }
            }
        });
        Self {
            port,
            seen,
            drop,
            stop,
        }
    }

    fn seen(&self) -> Vec<Vec<u8>> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

struct Lab {
    bmsc: RunningBmsc,
    km: RunningKeyManagement,
    ue_port: u16,
    tap: Tap,
    /// The CA of the Key Request function's certificate, when it is HTTPS.
    ca_file: Option<std::path::PathBuf>,
}

fn write_files(dir: &Path, ue_port: u16) -> (std::path::PathBuf, std::path::PathBuf) {
    let ue_file = dir.join("ues.toml");
    std::fs::write(
        &ue_file,
        format!(
            "[[ue]]\nb_tid = \"{B_TID}\"\nimpi = \"001010000000001@ims.example.org\"\nks_naf = \"{}\"\nmikey_port = {ue_port}\nservices = [\"{TV}\"]\n",
            hex::encode(KS_NAF)
        ),
    )
    .unwrap();
    let keys = dir.join("keys.toml");
    let entry = |id: u32, key: u8| {
        format!(
            "[[msk]]\nmsk_id = {id}\nkey = \"{}\"\nseq_l = 1\nseq_u = 65535\nnot_before = {}\nnot_after = {}\n",
            hex::encode([key; 16]),
            now() - 60,
            now() + 3600
        )
    };
    std::fs::write(
        &keys,
        format!(
            "key_domain_id = \"09f107\"\n{}{}",
            entry(0x0001_0001, 0xa1),
            entry(0x0002_0001, 0xb1)
        ),
    )
    .unwrap();
    (ue_file, keys)
}

fn km_config(ue_file: std::path::PathBuf) -> KeyManagementConfig {
    KeyManagementConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls: None,
        mikey_source: "127.0.0.1:0".parse().unwrap(),
        naf_id: NAF_ID.into(),
        digest_algorithm: "SHA-256".into(),
        nonce_lifetime_s: 60,
        request_ack: true,
        ue_file,
        services: vec![
            UserServiceConfig {
                id: TV.into(),
                key_groups: vec![1],
            },
            UserServiceConfig {
                id: RADIO.into(),
                key_groups: vec![2],
            },
        ],
    }
}

/// A BM-SC with key management, its MSKs from a key file (1/1 and 2/1), and a
/// tap in front of the UE's MSK port.
async fn lab(name: &str) -> Lab {
    lab_in(&temp_dir(name), None).await
}

/// [`lab`] in `dir`, the key management's counters journaled in `state_dir`.
async fn lab_in(dir: &Path, state_dir: Option<&Path>) -> Lab {
    lab_with(dir, state_dir, None).await
}

/// [`lab_in`], the Key Request function over HTTPS with `pki`'s server
/// certificate (the UEs trust its CA).
async fn lab_with(dir: &Path, state_dir: Option<&Path>, pki: Option<&Pki>) -> Lab {
    let ue_port = free_udp_port();
    let tap = Tap::start(SocketAddr::from((Ipv4Addr::LOCALHOST, ue_port)));
    let (ue_file, keys) = write_files(dir, tap.port);
    let config = BmscConfig::plaintext(
        "127.0.0.1:0".parse().unwrap(),
        KEY_DOMAIN,
        vec![1, 2],
        mbms_gateway::bmsc::KeySource::File { path: keys },
    );
    let bmsc = start_bmsc(&config).await;
    let config = KeyManagementConfig {
        tls: pki.map(|p| p.server(false)),
        ..km_config(ue_file)
    };
    let km = start_key_management(&config, bmsc.control.clone(), state_dir)
        .await
        .unwrap();
    Lab {
        bmsc,
        km,
        ue_port,
        tap,
        ca_file: pki.map(|p| p.path("ca.pem")),
    }
}

impl Lab {
    fn url(&self) -> String {
        match self.ca_file {
            Some(_) => format!(
                "https://localhost:{}/keymanagement",
                self.km.http_addr.port()
            ),
            None => format!("http://{}/keymanagement", self.km.http_addr),
        }
    }

    fn ue_config(&self) -> UeConfig {
        UeConfig {
            key_request_url: self.url(),
            ca_file: self.ca_file.clone(),
            sa: sa(KS_NAF),
            mikey_listen: SocketAddr::from((Ipv4Addr::LOCALHOST, self.ue_port)),
            key_domain_id: KEY_DOMAIN,
            services: vec![TV.into()],
            key_groups: vec![1],
            backoff: BackOff {
                offset: Duration::from_millis(300),
                random_period: Duration::from_millis(100),
            },
            retry: Duration::from_millis(500),
            max_retry: Duration::from_secs(2),
        }
    }

    async fn ue(&self) -> RunningUe {
        start_ue(self.ue_config()).await.unwrap()
    }
}

async fn wait_msks(ue: &RunningUe, what: &str, done: impl Fn(&MskSet) -> bool) {
    let keys = ue.keys();
    wait_for(what, Duration::from_secs(10), || done(&keys.current())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_wrong_digest_gets_401_with_a_challenge() {
    let lab = lab("km-401").await;
    // No Authorization header at all.
    let addr = lab.km.http_addr;
    let raw = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        let body = KeyRequest::Register {
            service_ids: vec![TV.into()],
        }
        .to_xml();
        write!(
            stream,
            "POST /keymanagement HTTP/1.1\r\nHost: bmsc\r\nContent-Type: application/mbms-register+xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    })
    .await
    .unwrap();
    assert!(raw.starts_with("HTTP/1.1 401"), "{raw}");
    let challenge = raw
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("www-authenticate")
                .then_some(value.trim())
        })
        .expect("WWW-Authenticate header");
    let challenge = mbms_gateway::protocol::key_request::Challenge::parse(challenge).unwrap();
    assert_eq!(challenge.realm, NAF_ID);

    // A wrong password: 401 again after answering the fresh challenge.
    let mut wrong = KeyRequestClient::new(&lab.url(), sa([0x12; 32]), None).unwrap();
    let err = wrong
        .send(&KeyRequest::Register {
            service_ids: vec![TV.into()],
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, KeyRequestError::Unauthorized(ref why) if why.contains("wrong digest")),
        "{err}"
    );
    assert!(lab.km.distribution().registrations(B_TID).is_empty());

    // The right one is accepted, and the BM-SC proves itself (rspauth).
    let mut right = KeyRequestClient::new(&lab.url(), sa(KS_NAF), None).unwrap();
    assert!(
        right
            .send(&KeyRequest::Register {
                service_ids: vec![TV.into()],
            })
            .await
            .is_ok()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthorized_user_service_gets_an_error_status() {
    let lab = lab("km-membership").await;
    let mut client = KeyRequestClient::new(&lab.url(), sa(KS_NAF), None).unwrap();
    let answer = client
        .send(&KeyRequest::Register {
            service_ids: vec![RADIO.into(), TV.into(), "urn:none".into()],
        })
        .await
        .unwrap();
    assert_eq!(
        answer,
        KeyResponse::Registration(vec![
            (RADIO.into(), Status::Forbidden),
            (TV.into(), Status::Ok),
            ("urn:none".into(), Status::NotFound),
        ])
    );
    // MSKs of a Key Group of no registered service are refused as well.
    let answer = client
        .send(&KeyRequest::Msk {
            keys: vec![
                KeyRef {
                    key_domain_id: KEY_DOMAIN,
                    msk_id: MskId::new(2, 0),
                },
                KeyRef {
                    key_domain_id: KEY_DOMAIN,
                    msk_id: MskId::new(1, 0),
                },
            ],
        })
        .await
        .unwrap();
    let KeyResponse::Msk(items) = answer else {
        panic!("MSK response expected")
    };
    assert_eq!(items[0].1, Status::Forbidden);
    assert_eq!(items[1].1, Status::Ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_is_pushed_a_third_msk_evicts_the_older_and_replays_are_dropped() {
    let lab = lab("km-push").await;
    let ue = lab.ue().await;
    wait_msks(&ue, "MSK 1/1 after registration", |set| {
        set.get(MskId::new(1, 1))
            .is_some_and(|r| r.key == Msk::new([0xa1; 16]))
    })
    .await;
    assert!(
        ue.keys().current().get(MskId::new(2, 1)).is_none(),
        "no MSK of a service the UE is not registered to"
    );
    // The V bit is set: the UE answered with verification messages.
    wait_for("verified acks", Duration::from_secs(5), || {
        lab.km.distribution().stats().acks_verified >= 1
    })
    .await;

    // Two rotations on the key server: each is pushed; the third MSK of the
    // Key Group evicts the oldest.
    lab.bmsc.control.publish(record(1, 2, 0xa2)).unwrap();
    wait_msks(&ue, "MSK 1/2 pushed", |set| {
        set.get(MskId::new(1, 2)).is_some()
    })
    .await;
    lab.bmsc.control.publish(record(1, 3, 0xa3)).unwrap();
    wait_msks(&ue, "MSK 1/3 pushed, 1/1 evicted", |set| {
        set.get(MskId::new(1, 3)).is_some() && set.get(MskId::new(1, 1)).is_none()
    })
    .await;
    assert_eq!(ue.keys().current().len(), 2);
    assert!(ue.stats().msks_evicted >= 1);

    // A captured MSK message sent again is a replay: dropped, nothing changes.
    let captured = lab.tap.seen();
    let first = captured.first().unwrap().clone();
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    sender.send_to(&first, ("127.0.0.1", lab.ue_port)).unwrap();
    wait_for("the replay to be counted", Duration::from_secs(5), || {
        ue.stats().replayed >= 1
    })
    .await;
    assert!(ue.keys().current().get(MskId::new(1, 1)).is_none());
    ue.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn solicited_pull_leads_to_an_msk_request() {
    let lab = lab("km-pull").await;
    let ue = lab.ue().await;
    wait_msks(&ue, "MSK 1/1", |set| set.get(MskId::new(1, 1)).is_some()).await;
    let requests_before = ue.stats().msk_requests;
    let deliveries_before = lab.km.distribution().stats().deliveries;
    assert!(lab.km.distribution().solicit_pull(B_TID, 1).await);
    wait_for("the UE's MSK request", Duration::from_secs(10), || {
        ue.stats().solicited_pulls == 1 && ue.stats().msk_requests > requests_before
    })
    .await;
    wait_for("the delivery it caused", Duration::from_secs(5), || {
        lab.km.distribution().stats().deliveries > deliveries_before
    })
    .await;
    // The BM-SC never pulls for a Key Group the UE is not registered to.
    assert!(!lab.km.distribution().solicit_pull(B_TID, 2).await);
    ue.stop().await;
}

/// The T counters of the MSK messages a BM-SC sent (through the tap).
fn msk_counters(lab: &Lab) -> Vec<u32> {
    lab.tap
        .seen()
        .iter()
        .filter_map(|m| mbms_gateway::protocol::mikey::peek_msk_message(m).ok())
        .map(|info| info.counter)
        .collect()
}

/// A BM-SC restarted with its state directory never reuses an MSK message
/// counter, even after sending faster than one message a second: the
/// counters are journaled before they are sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_bmsc_continues_above_every_msk_message_counter() {
    let dir = temp_dir("km-counter-journal");
    let state = dir.join("state");
    let lab = lab_in(&dir, Some(&state)).await;
    let ue = lab.ue().await;
    wait_msks(&ue, "MSK 1/1", |set| set.get(MskId::new(1, 1)).is_some()).await;
    // A burst: each message takes the next counter, ahead of the clock.
    for _ in 0..20 {
        assert!(lab.km.distribution().solicit_pull(B_TID, 1).await);
    }
    wait_for("the pulls at the tap", Duration::from_secs(5), || {
        msk_counters(&lab).len() >= 21
    })
    .await;
    let before = msk_counters(&lab);
    let highest = *before.iter().max().unwrap();
    ue.stop().await;
    let Lab { bmsc, km, .. } = lab;
    km.stop().await;
    bmsc.stop().await.unwrap();

    let lab = lab_in(&dir, Some(&state)).await;
    let ue = lab.ue().await;
    wait_msks(&ue, "MSK 1/1 again", |set| {
        set.get(MskId::new(1, 1)).is_some()
    })
    .await;
    let after = msk_counters(&lab);
    assert!(!after.is_empty());
    for counter in &after {
        assert!(
            mbms_gateway::protocol::mikey::serial::serial_gt(*counter, highest),
            "counter {counter} after the restart is not above {highest}"
        );
    }
    assert!(state.join("muk-counters.json").exists());
    ue.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_msk_update_is_recovered() {
    let lab = lab("km-missed").await;
    let ue = lab.ue().await;
    wait_msks(&ue, "MSK 1/1", |set| set.get(MskId::new(1, 1)).is_some()).await;
    // The push of 1/2 never reaches the UE (out of coverage).
    lab.tap.drop.store(true, Ordering::Relaxed);
    let before = lab.km.distribution().stats().deliveries;
    lab.bmsc.control.publish(record(1, 2, 0xa2)).unwrap();
    wait_for("the lost push", Duration::from_secs(5), || {
        lab.km.distribution().stats().deliveries > before
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(ue.keys().current().get(MskId::new(1, 2)).is_none());
    lab.tap.drop.store(false, Ordering::Relaxed);
    // Traffic under 1/2 shows the UE it missed an update.
    ue.keys().report_missing(MskId::new(1, 2));
    wait_msks(&ue, "MSK 1/2 recovered by an MSK request", |set| {
        set.get(MskId::new(1, 2))
            .is_some_and(|r| r.key == Msk::new([0xa2; 16]))
    })
    .await;
    assert!(ue.stats().msk_requests >= 1);
    ue.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deregistration_invalidates_the_msk_at_the_ue() {
    let lab = lab("km-dereg").await;
    let ue = lab.ue().await;
    wait_msks(&ue, "MSK 1/1", |set| set.get(MskId::new(1, 1)).is_some()).await;
    let stats = ue.stop().await;
    assert!(!stats.registered, "deregistered on stop");
    wait_for("the invalidation", Duration::from_secs(5), || {
        lab.km.distribution().stats().invalidations >= 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Everything the UE's port received, replayed into a UE store in order:
    // the MSK is gone at the end.
    let mut store = UeMskStore::new(
        BackOff::default(),
        Duration::from_secs(1),
        Duration::from_secs(1),
    );
    let muk = Muk::new(KS_NAF);
    let mut outcomes = Vec::new();
    for message in lab.tap.seen() {
        if let Ok(r) = store.on_msk_message(&muk, &message, Duration::ZERO, 0) {
            outcomes.push(r.outcome);
        }
    }
    assert!(
        outcomes.iter().any(
            |o| matches!(o, MskOutcome::Invalidated { key } if key.msk_id == MskId::new(1, 1))
        ),
        "{outcomes:?}"
    );
    assert!(store.get(KEY_DOMAIN, MskId::new(1, 1)).is_none());
    assert!(lab.km.distribution().registrations(B_TID).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_to_decrypted_gateway_srtp() {
    let dir = temp_dir("km-e2e");
    let group = Ipv4Addr::new(239, 255, 36, 1);
    let egress_port = free_udp_port();
    let ue_port = free_udp_port();
    let ue_file = dir.join("ues.toml");
    std::fs::write(
        &ue_file,
        format!(
            "[[ue]]\nb_tid = \"{B_TID}\"\nimpi = \"i\"\nks_naf = \"{}\"\nmikey_port = {ue_port}\nservices = [\"{TV}\"]\n",
            hex::encode(KS_NAF)
        ),
    )
    .unwrap();
    // Generated, rotating MSKs: the UE must get exactly the ones the gateway uses.
    let mut config = bmsc_config(
        "127.0.0.1:0".parse().unwrap(),
        &dir.join("bmsc"),
        3600,
        7200,
    );
    let mut km = km_config(ue_file);
    km.services.truncate(1);
    config.key_management = None;
    let bmsc = start_bmsc(&config).await;
    let km = start_key_management(&km, bmsc.control.clone(), None)
        .await
        .unwrap();

    let ue = start_ue(UeConfig {
        key_request_url: format!("http://{}/keymanagement", km.http_addr),
        ca_file: None,
        sa: sa(KS_NAF),
        mikey_listen: SocketAddr::from((Ipv4Addr::LOCALHOST, ue_port)),
        key_domain_id: KEY_DOMAIN,
        services: vec![TV.into()],
        key_groups: vec![KEY_GROUP],
        backoff: BackOff {
            offset: Duration::from_millis(300),
            random_period: Duration::ZERO,
        },
        retry: Duration::from_millis(500),
        max_retry: Duration::from_secs(2),
    })
    .await
    .unwrap();
    wait_msks(&ue, "the current MSK over MIKEY", |set| !set.is_empty()).await;

    let setup = GatewaySetup {
        state_dir: dir.join("gw"),
        bmsc: bmsc.local_addr,
        group,
        ingest_port: free_udp_port(),
        egress_port,
        period: "700ms",
        lead: "300ms",
        resend: "200ms",
    };
    let gateway = Gateway::start(&GatewayConfig::parse(&setup.toml()).unwrap()).unwrap();
    let state = gateway.streaming[0].state.clone();
    wait_for("the session to go on air", Duration::from_secs(10), || {
        matches!(*state.borrow(), SessionState::OnAir { .. })
    })
    .await;
    let ingest = gateway.streaming[0].ingest_addrs()[0];

    let mut probe_config = StreamingProbeConfig::new(
        group.into(),
        vec![egress_port],
        KEY_DOMAIN,
        ProbeKeySource::Ue(ue.keys()),
    );
    probe_config.interface = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let probe = start_streaming_probe(probe_config).unwrap();

    let encoder = UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..600u16 {
        encoder
            .send_to(&rtp_packet(i, 0xfeed_0036, 1000), ingest)
            .unwrap();
        tokio::time::sleep(Duration::from_millis(4)).await;
    }
    wait_for("decrypted packets", Duration::from_secs(10), || {
        probe.snapshot().srtp.decrypted >= 550
    })
    .await;
    let report = probe.stop();
    gateway.stop().await;
    let gateway_msks = bmsc.control.msks();
    let ue_msks = ue.keys().current();
    ue.stop().await;
    km.stop().await;
    bmsc.stop().await.unwrap();

    assert_eq!(report.srtp.auth_failures, 0);
    assert!(report.mikey.accepted >= 2, "{:?}", report.mikey);
    assert!(report.mtk_switches() >= 1);
    // Every MSK the probe opened MTK messages with came over MIKEY from the
    // BM-SC and is the one the gateway was given over gRPC.
    let mkis: Vec<&String> = report.streams.iter().flat_map(|s| &s.mkis).collect();
    assert!(!mkis.is_empty());
    for mki in mkis {
        let msk_id = MskId(u32::from_str_radix(&mki[..8], 16).unwrap());
        let from_ue = ue_msks
            .get(msk_id)
            .expect("the UE holds the MSK of every MKI");
        let from_grpc = gateway_msks.get(msk_id).expect("the gateway's MSK");
        assert_eq!(from_ue.key, from_grpc.key);
    }
}

#[test]
fn deploy_examples_parse() {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let text = std::fs::read_to_string(deploy.join("bmsc.example.toml")).unwrap();
    let config = BmscConfig::from_toml(&text).unwrap();
    let km = config.key_management.expect("[key_management] documented");
    km.validate(&config.key_groups.iter().copied().collect())
        .unwrap();
    let ues = mbms_gateway::bmsc::key_management::load_ue_file(
        &deploy.join("bmsc-ues.example.toml"),
        &km.service_map(),
    )
    .unwrap();
    let ue = UeConfig::load(&deploy.join("ue.example.toml")).unwrap();
    let provisioned = &ues[&ue.sa.b_tid];
    assert_eq!(provisioned.sa, ue.sa, "the two examples describe one UE");
    assert!(provisioned.services.contains(&ue.services[0]));
    let err = BmscConfig::from_toml(&text.replace("nonce_lifetime_s", "nonce_life_s")).unwrap_err();
    assert!(err.to_string().contains("nonce_life_s"), "{err}");
}

/// The Key Request function over HTTPS: registration, the MSK delivery it
/// leads to, an MSK request and deregistration, with the UE verifying the
/// BM-SC's certificate against its CA file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_request_over_https_end_to_end() {
    let pki = Pki::new();
    let lab = lab_with(&temp_dir("km-https"), None, Some(&pki)).await;
    assert!(lab.url().starts_with("https://"));
    let ue = lab.ue().await;
    wait_msks(&ue, "MSK 1/1 over HTTPS", |set| {
        set.get(MskId::new(1, 1)).is_some()
    })
    .await;
    assert_eq!(
        lab.km.distribution().registrations(B_TID),
        BTreeSet::from([TV.to_owned()])
    );
    let mut client = KeyRequestClient::new(&lab.url(), sa(KS_NAF), lab.ca_file.as_deref()).unwrap();
    let answer = client
        .send(&KeyRequest::Msk {
            keys: vec![KeyRef {
                key_domain_id: KEY_DOMAIN,
                msk_id: MskId::new(1, 0),
            }],
        })
        .await
        .unwrap();
    assert!(
        matches!(&answer, KeyResponse::Msk(items) if items.iter().all(|(_, s)| *s == Status::Ok)),
        "{answer:?}"
    );
    ue.stop().await;
    wait_for("the deregistration", Duration::from_secs(5), || {
        lab.km.distribution().registrations(B_TID).is_empty()
    })
    .await;
}

/// A UE that trusts another CA refuses the BM-SC and says why; plain HTTP
/// is refused off loopback on both sides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_needs_the_right_ca_and_plain_http_stays_on_loopback() {
    let pki = Pki::new();
    let other = Pki::new();
    let lab = lab_with(&temp_dir("km-https-ca"), None, Some(&pki)).await;
    let mut client =
        KeyRequestClient::new(&lab.url(), sa(KS_NAF), Some(&other.path("ca.pem"))).unwrap();
    let err = client
        .send(&KeyRequest::Register {
            service_ids: vec![TV.into()],
        })
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("TLS") && err.contains("invalid peer certificate"),
        "{err}"
    );
    assert!(lab.km.distribution().registrations(B_TID).is_empty());
    // https:// without a CA file, and http:// to a routable address.
    let no_ca = KeyRequestClient::new(&lab.url(), sa(KS_NAF), None)
        .err()
        .unwrap();
    assert!(no_ca.to_string().contains("needs a ca_file"), "{no_ca}");
    let plain = KeyRequestClient::new("http://192.0.2.1:8080/keymanagement", sa(KS_NAF), None)
        .err()
        .unwrap();
    assert!(
        plain.to_string().contains("plain HTTP only to a loopback"),
        "{plain}"
    );
    let config = KeyManagementConfig {
        listen: "0.0.0.0:8443".parse().unwrap(),
        ..km_config("ues.toml".into())
    };
    let err = config
        .validate(&BTreeSet::from([1, 2]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("plain HTTP only on loopback"), "{err}");
    let config = KeyManagementConfig {
        tls: Some(pki.server(false)),
        ..config
    };
    config.validate(&BTreeSet::from([1, 2])).unwrap();
}
