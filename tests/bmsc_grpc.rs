//! The BM-SC client against the reference BM-SC (and a misbehaving fake) over real
//! gRPC on 127.0.0.1 ephemeral ports.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

mod common;
use common::pki::Pki;
use mbms_gateway::bmsc::{Bmsc, BmscConfig, GenerateConfig, KeySource, RunningBmsc};
use mbms_gateway::protocol::keys::{KeyDomainId, Msk, MskId, MtkId};
use mbms_gateway::runtime::key_service::proto::key_service_server::{KeyService, KeyServiceServer};
use mbms_gateway::runtime::key_service::proto::{self, msk_event::Event};
use mbms_gateway::runtime::key_service::{
    ClientStatus, ClientTlsFiles, ConnectionState, LeaseError, LeaseRecord, MskClient,
    MskClientConfig, MskRecord, MskSet,
};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

const DOMAIN: KeyDomainId = KeyDomainId([0x09, 0xf1, 0x07]);
/// Upper bound for anything a test waits for; the waits end as soon as the condition
/// holds, this only turns a hang into a failure.
const PATIENCE: Duration = Duration::from_secs(15);

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

struct FileMsk {
    msk_id: MskId,
    key: u8,
    seq: (u16, u16),
    not_before: i64,
    not_after: i64,
}

fn write_key_file(dir: &Path, msks: &[FileMsk]) -> PathBuf {
    let mut text = format!("key_domain_id = \"{}\"\n", hex::encode(DOMAIN.0));
    for m in msks {
        text += &format!(
            "[[msk]]\nmsk_id = {:#010x}\nkey = \"{}\"\nseq_l = {}\nseq_u = {}\nnot_before = {}\nnot_after = {}\n",
            m.msk_id.0,
            hex::encode([m.key; 16]),
            m.seq.0,
            m.seq.1,
            m.not_before,
            m.not_after
        );
    }
    let path = dir.join("keys.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn bmsc_config(keys: KeySource) -> BmscConfig {
    BmscConfig::plaintext("127.0.0.1:0".parse().unwrap(), DOMAIN, vec![1, 2], keys)
}

async fn start_on(config: &BmscConfig, addr: SocketAddr) -> RunningBmsc {
    // Re-binding a port just released may take a moment.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let listener = loop {
        match TcpListener::bind(addr).await {
            Ok(l) => break l,
            Err(e) if tokio::time::Instant::now() < deadline => {
                eprintln!("bind {addr}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("bind {addr}: {e}"),
        }
    };
    Bmsc::from_config(config).unwrap().spawn(listener).unwrap()
}

async fn start(config: &BmscConfig) -> RunningBmsc {
    start_on(config, "127.0.0.1:0".parse().unwrap()).await
}

fn client_config(addr: SocketAddr, groups: Vec<u16>, id: &str) -> MskClientConfig {
    let mut c = MskClientConfig::new(format!("http://{addr}"), DOMAIN, groups, id);
    c.backoff_initial_ms = 20;
    c.backoff_max_ms = 300;
    c.request_timeout_s = 5;
    c.stream_idle_timeout_s = 5;
    c
}

/// Waits until `pred` holds for the watched value; panics with `what` after PATIENCE.
async fn wait_for<T>(rx: &mut watch::Receiver<T>, what: &str, pred: impl Fn(&T) -> bool) {
    let waited = tokio::time::timeout(PATIENCE, rx.wait_for(|v| pred(v))).await;
    match waited {
        Ok(Ok(_)) => {}
        Ok(Err(_)) => panic!("{what}: sender dropped"),
        Err(_) => panic!("{what}: not reached within {PATIENCE:?}"),
    }
}

async fn wait_connected(client: &MskClient) {
    wait_for(&mut client.status(), "Connected", |s: &ClientStatus| {
        s.connection == ConnectionState::Connected
    })
    .await;
}

fn ids(set: &MskSet) -> Vec<MskId> {
    set.iter().map(|r| r.msk_id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_msks_then_rotation_event() {
    let config = bmsc_config(KeySource::Generate(GenerateConfig {
        rotate_every_s: 2,
        lifetime_s: 4,
        announce_ahead_s: 1,
        seq_l: 1,
        seq_u: 0xFFFF,
    }));
    let bmsc = start(&config).await;
    let client = MskClient::start(client_config(bmsc.local_addr, vec![1, 2], "gw-a")).unwrap();
    let mut msks = client.msks();
    wait_for(&mut msks, "first MSK of both groups", |s: &Arc<MskSet>| {
        s.get(MskId::new(1, 1)).is_some() && s.get(MskId::new(2, 1)).is_some()
    })
    .await;
    wait_connected(&client).await;
    {
        let set = msks.borrow();
        let first = set.get(MskId::new(1, 1)).unwrap();
        assert_eq!(first.validity, (MtkId(1), MtkId(0xFFFF)));
        assert_eq!(first.not_after - first.not_before, 4);
        assert_eq!(
            set.current_for(1, first.not_before).unwrap().msk_id,
            MskId::new(1, 1)
        );
    }
    // Key Number 2 is announced one second before it becomes valid, while the stream
    // stays up: it arrives as an event, not in a snapshot.
    wait_for(&mut msks, "rotation to Key Number 2", |s: &Arc<MskSet>| {
        s.get(MskId::new(1, 2)).is_some()
    })
    .await;
    let set = msks.borrow().clone();
    let (first, second) = (
        set.get(MskId::new(1, 1)).unwrap(),
        set.get(MskId::new(1, 2)).unwrap(),
    );
    assert_eq!(second.not_before, first.not_before + 2);
    assert_ne!(first.key, second.key, "each MSK is a fresh random key");
    assert_eq!(
        set.current_for(1, second.not_before).unwrap().msk_id,
        MskId::new(1, 2)
    );
    assert_eq!(
        set.current_for(1, second.not_before - 1).unwrap().msk_id,
        MskId::new(1, 1)
    );
    assert_eq!(
        client.status().borrow().connection,
        ConnectionState::Connected
    );
    assert_eq!(client.status().borrow().rejected_answers, 0);
    // The unary call agrees with the stream.
    let current = client.current_msk(2).await.unwrap();
    assert_eq!(current.key_group(), 2);
    assert_eq!(Some(&current), set.get(current.msk_id));
    drop(client);
    bmsc.stop().await.unwrap();
}

fn assert_disjoint_and_increasing(leases: &[LeaseRecord]) {
    for pair in leases.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        assert!(
            b.mtk_ids.0 > a.mtk_ids.1,
            "MTK IDs overlap or go back: {a:?} then {b:?}"
        );
        assert!(
            b.counters.0 > a.counters.1,
            "counters overlap or go back: {a:?} then {b:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_never_overlap_across_clients_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let msk_id = MskId::new(1, 1);
    let keys = write_key_file(
        dir.path(),
        &[FileMsk {
            msk_id,
            key: 0x11,
            seq: (5, 54),
            not_before: now() - 60,
            not_after: now() + 3600,
        }],
    );
    let mut config = bmsc_config(KeySource::File { path: keys });
    config.state_dir = Some(dir.path().join("state"));

    let mut granted = Vec::new();
    {
        let bmsc = start(&config).await;
        let a = MskClient::start(client_config(bmsc.local_addr, vec![1], "gw-a")).unwrap();
        let b = MskClient::start(client_config(bmsc.local_addr, vec![1], "gw-b")).unwrap();
        wait_connected(&a).await;
        wait_connected(&b).await;
        for _ in 0..2 {
            granted.push(a.lease(msk_id, 10, 100).await.unwrap());
            granted.push(b.lease(msk_id, 10, 100).await.unwrap());
        }
        // Concurrent requests are serialized by the BM-SC.
        let (x, y) = tokio::join!(a.lease(msk_id, 1, 1), b.lease(msk_id, 1, 1));
        let (x, y) = (x.unwrap(), y.unwrap());
        granted.extend(if x.mtk_ids.0 < y.mtk_ids.0 {
            [x, y]
        } else {
            [y, x]
        });
        drop((a, b));
        bmsc.stop().await.unwrap();
    }
    assert_eq!(granted[0].mtk_ids, (MtkId(5), MtkId(14)), "starts at SEQl");
    assert_eq!(granted[0].counters, (1, 100));
    assert_disjoint_and_increasing(&granted);

    // A restarted BM-SC with the same state directory continues above every grant.
    let bmsc = start(&config).await;
    let c = MskClient::start(client_config(bmsc.local_addr, vec![1], "gw-c")).unwrap();
    wait_connected(&c).await;
    let tail = c.lease(msk_id, 10, 10).await.unwrap();
    assert_eq!(tail.mtk_ids, (MtkId(47), MtkId(54)), "cut at SEQu = 54");
    granted.push(tail);
    assert_disjoint_and_increasing(&granted);
    let err = c.lease(msk_id, 1, 1).await.unwrap_err();
    match &err {
        LeaseError::Rpc(_) => {}
        other => panic!("expected the BM-SC to refuse, got {other:?}"),
    }
    assert!(
        err.to_string()
            .contains("ResourceExhausted: LeaseRequest for MSK 0x00010001: MTK-ID window of MSK 0x00010001 is used up (SEQu = 54)"),
        "{err}"
    );
    drop(c);
    bmsc.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_keeps_msks_then_reconnects_for_new_events() {
    let dir = tempfile::tempdir().unwrap();
    let keys = write_key_file(
        dir.path(),
        &[FileMsk {
            msk_id: MskId::new(1, 1),
            key: 0x22,
            seq: (1, 0xFFFF),
            not_before: now() - 60,
            not_after: now() + 3600,
        }],
    );
    let config = bmsc_config(KeySource::File { path: keys });
    let bmsc = start(&config).await;
    let addr = bmsc.local_addr;
    let client = MskClient::start(client_config(addr, vec![1], "gw-a")).unwrap();
    wait_connected(&client).await;
    let msks = client.msks();
    assert_eq!(ids(&msks.borrow()), [MskId::new(1, 1)]);

    bmsc.stop().await.unwrap();
    wait_for(&mut client.status(), "Connecting after the outage", |s: &ClientStatus| {
        matches!(s.connection, ConnectionState::Connecting { attempt, last_error: Some(_) } if attempt >= 1)
    })
    .await;
    // Let several reconnect attempts fail: the keys stay.
    wait_for(&mut client.status(), "three failed attempts", |s: &ClientStatus| {
        matches!(s.connection, ConnectionState::Connecting { attempt, .. } if attempt >= 3)
    })
    .await;
    let held = msks.borrow().clone();
    assert_eq!(
        ids(&held),
        [MskId::new(1, 1)],
        "an outage must not drop valid keys"
    );
    assert!(held.current_for(1, now()).is_some());

    let bmsc = start_on(&config, addr).await;
    wait_connected(&client).await;
    let new = MskRecord {
        key_domain_id: DOMAIN,
        msk_id: MskId::new(1, 2),
        key: Msk::new([0x33; 16]),
        validity: (MtkId(1), MtkId(100)),
        not_before: now() - 1,
        not_after: now() + 3600,
    };
    bmsc.control.publish(new.clone()).unwrap();
    let mut msks = client.msks();
    wait_for(&mut msks, "event after reconnect", |s: &Arc<MskSet>| {
        s.get(MskId::new(1, 2)).is_some()
    })
    .await;
    assert_eq!(msks.borrow().get(MskId::new(1, 2)), Some(&new));
    assert_eq!(
        msks.borrow().current_for(1, now()).unwrap().msk_id,
        MskId::new(1, 2)
    );
    drop(client);
    bmsc.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidation_removes_the_msk_from_current() {
    let dir = tempfile::tempdir().unwrap();
    let t = now();
    let msk = |number: u16, key: u8, not_before: i64| FileMsk {
        msk_id: MskId::new(1, number),
        key,
        seq: (1, 0xFFFF),
        not_before,
        not_after: t + 3600,
    };
    let keys = write_key_file(dir.path(), &[msk(1, 0x41, t - 60), msk(2, 0x42, t - 30)]);
    let bmsc = start(&bmsc_config(KeySource::File { path: keys })).await;
    let client = MskClient::start(client_config(bmsc.local_addr, vec![1], "gw-a")).unwrap();
    wait_connected(&client).await;
    let mut msks = client.msks();
    assert_eq!(
        msks.borrow().current_for(1, t).unwrap().msk_id,
        MskId::new(1, 2)
    );
    client.lease(MskId::new(1, 2), 1, 1).await.unwrap();

    assert!(bmsc.control.invalidate(MskId::new(1, 2)));
    wait_for(&mut msks, "invalidation", |s: &Arc<MskSet>| {
        s.get(MskId::new(1, 2)).is_none()
    })
    .await;
    assert_eq!(
        msks.borrow().current_for(1, t).unwrap().msk_id,
        MskId::new(1, 1)
    );
    assert!(msks.borrow().was_invalidated(MskId::new(1, 2)));
    assert_eq!(
        client.lease(MskId::new(1, 2), 1, 1).await.unwrap_err(),
        LeaseError::UnknownMsk {
            msk_id: 0x0001_0002
        }
    );
    assert_eq!(
        client.current_msk(1).await.unwrap().msk_id,
        MskId::new(1, 1)
    );

    // A validity update with SEQl > SEQu withdraws an MSK too.
    let withdrawn = MskRecord {
        key_domain_id: DOMAIN,
        msk_id: MskId::new(1, 1),
        key: Msk::new([0x41; 16]),
        validity: (MtkId(2), MtkId(1)),
        not_before: t - 60,
        not_after: t + 3600,
    };
    bmsc.control.publish(withdrawn).unwrap();
    wait_for(&mut msks, "inverted window", |s: &Arc<MskSet>| s.is_empty()).await;
    assert_eq!(msks.borrow().current_for(1, t), None);
    assert_eq!(client.status().borrow().rejected_answers, 0);
    drop(client);
    bmsc.stop().await.unwrap();
}

/// A gateway client of the BM-SC at `addr` that trusts `pki`'s CA and,
/// `with_identity`, presents its client certificate.
fn tls_client(pki: &Pki, addr: SocketAddr, with_identity: bool) -> MskClientConfig {
    let mut c = client_config(addr, vec![1], "gw-tls");
    c.endpoint = format!("https://{addr}");
    c.tls = Some(ClientTlsFiles {
        ca_file: pki.path("ca.pem"),
        cert_file: with_identity.then(|| pki.path("client.pem")),
        key_file: with_identity.then(|| pki.path("client.key")),
        domain_name: Some("localhost".into()),
    });
    c
}

fn one_msk_config(dir: &Path) -> BmscConfig {
    let keys = write_key_file(
        dir,
        &[FileMsk {
            msk_id: MskId::new(1, 7),
            key: 0x77,
            seq: (1, 0xFFFF),
            not_before: now() - 60,
            not_after: now() + 3600,
        }],
    );
    bmsc_config(KeySource::File { path: keys })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_mutual_tls() {
    let pki = Pki::new();
    let mut config = one_msk_config(pki.dir.path());

    // Server-authenticated TLS.
    config.tls = Some(pki.server(false));
    let bmsc = start(&config).await;
    let client = MskClient::start(tls_client(&pki, bmsc.local_addr, false)).unwrap();
    wait_connected(&client).await;
    assert!(client.msks().borrow().get(MskId::new(1, 7)).is_some());
    drop(client);
    bmsc.stop().await.unwrap();

    // Mutual TLS: a client with a certificate from the CA gets in.
    config.tls = Some(pki.server(true));
    let bmsc = start(&config).await;
    let client = MskClient::start(tls_client(&pki, bmsc.local_addr, true)).unwrap();
    wait_connected(&client).await;
    assert_eq!(
        client.lease(MskId::new(1, 7), 2, 2).await.unwrap().mtk_ids,
        (MtkId(1), MtkId(2))
    );

    // ... one without a certificate is turned away and never installs anything.
    let anonymous = MskClient::start(tls_client(&pki, bmsc.local_addr, false)).unwrap();
    wait_for(&mut anonymous.status(), "repeated handshake failures", |s: &ClientStatus| {
        matches!(s.connection, ConnectionState::Connecting { attempt, last_error: Some(_) } if attempt >= 2)
    })
    .await;
    assert!(anonymous.msks().borrow().is_empty());
    assert!(anonymous.current_msk(1).await.is_err());
    // ... while the authenticated client is unaffected.
    assert_eq!(
        client.current_msk(1).await.unwrap().msk_id,
        MskId::new(1, 7)
    );
    drop((client, anonymous));
    bmsc.stop().await.unwrap();
}

/// A BM-SC that answers garbage next to good MSKs.
struct GarbageBmsc;

fn wire_msk(msk_id: u32, key_len: usize, seq: (u32, u32)) -> proto::Msk {
    proto::Msk {
        key_domain_id: DOMAIN.0.to_vec(),
        msk_id,
        key: vec![0x5a; key_len],
        seq_l: seq.0,
        seq_u: seq.1,
        not_before_unix: now() - 60,
        not_after_unix: now() + 3600,
    }
}

fn event(event: Event) -> Result<proto::MskEvent, Status> {
    Ok(proto::MskEvent { event: Some(event) })
}

type EventStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<proto::MskEvent, Status>> + Send>>;

#[tonic::async_trait]
impl KeyService for GarbageBmsc {
    type WatchMsksStream = EventStream;

    async fn watch_msks(
        &self,
        _: Request<proto::WatchMsksRequest>,
    ) -> Result<Response<EventStream>, Status> {
        use tokio_stream::StreamExt;
        let events = vec![
            event(Event::MskAdded(wire_msk(0x0001_0001, 16, (1, 100)))),
            event(Event::MskAdded(wire_msk(0x0001_0002, 15, (1, 100)))),
            event(Event::MskAdded(wire_msk(0x0007_0001, 16, (1, 100)))),
            event(Event::MskAdded(wire_msk(0x0001_0003, 16, (1, 0x1_0000)))),
            event(Event::SnapshotComplete(proto::SnapshotComplete {})),
            Ok(proto::MskEvent { event: None }),
        ];
        // Then silence, as a stream that stays open.
        Ok(Response::new(Box::pin(
            tokio_stream::iter(events).chain(tokio_stream::pending()),
        )))
    }

    async fn get_current_msk(
        &self,
        _: Request<proto::GetCurrentMskRequest>,
    ) -> Result<Response<proto::Msk>, Status> {
        Ok(Response::new(wire_msk(0x0001_0002, 15, (1, 100))))
    }

    async fn lease_mtk_ids(
        &self,
        request: Request<proto::LeaseRequest>,
    ) -> Result<Response<proto::Lease>, Status> {
        // Outside the MSK's window [1, 100].
        Ok(Response::new(proto::Lease {
            key_domain_id: DOMAIN.0.to_vec(),
            msk_id: request.into_inner().msk_id,
            first_mtk_id: 95,
            last_mtk_id: 104,
            first_counter: 1,
            last_counter: 10,
        }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_answers_are_rejected_by_name_and_good_ones_kept() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(KeyServiceServer::new(GarbageBmsc))
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                let _ = stopped.await;
            }),
    );

    let client = MskClient::start(client_config(addr, vec![1, 2], "gw-a")).unwrap();
    wait_connected(&client).await;
    wait_for(
        &mut client.status(),
        "four rejections",
        |s: &ClientStatus| s.rejected_answers >= 4,
    )
    .await;
    let status = client.status().borrow().clone();
    assert_eq!(
        Vec::from(status.recent_rejections.clone()),
        [
            "Msk.key of MSK 0x00010002: must be 16 bytes, got 15",
            "Msk.msk_id 0x00070001: unknown Key Group 7 (not asked for)",
            "Msk.seq_u of MSK 0x00010003: 65536 exceeds the 16-bit MTK ID range",
            "MskEvent.event: empty (no known event in the message)",
        ]
    );
    let msks = client.msks();
    assert_eq!(
        ids(&msks.borrow()),
        [MskId::new(1, 1)],
        "only the good MSK is installed"
    );
    assert_eq!(
        msks.borrow().current_for(1, now()).unwrap().msk_id,
        MskId::new(1, 1)
    );

    let err = client.current_msk(1).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "current MSK answer rejected: Msk.key of MSK 0x00010002: must be 16 bytes, got 15"
    );
    let err = client.lease(MskId::new(1, 1), 10, 10).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "lease for MSK 0x00010001 rejected: Lease.first_mtk_id..last_mtk_id: [95, 104] lies outside the window [1, 100] of MSK 0x00010001"
    );
    // Still connected and still holding the good key after all that.
    assert_eq!(
        client.status().borrow().connection,
        ConnectionState::Connected
    );
    assert_eq!(client.status().borrow().rejected_answers, 6);
    assert!(client.msks().borrow().get(MskId::new(1, 1)).is_some());
    drop(client);
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_subscription_reports_failed() {
    let dir = tempfile::tempdir().unwrap();
    let bmsc = start(&one_msk_config(dir.path())).await;
    let client = MskClient::start(client_config(bmsc.local_addr, vec![3], "gw-a")).unwrap();
    wait_for(&mut client.status(), "Failed", |s: &ClientStatus| {
        matches!(s.connection, ConnectionState::Failed { .. })
    })
    .await;
    let ConnectionState::Failed { reason } = client.status().borrow().connection.clone() else {
        unreachable!()
    };
    assert_eq!(
        reason,
        "BM-SC WatchMsks: NotFound: WatchMsksRequest.key_groups: Key Group 3 is not served"
    );
    assert!(client.msks().borrow().is_empty());
    drop(client);
    bmsc.stop().await.unwrap();
}

/// A BM-SC that sends one good MSK and then falls silent (no heartbeats), counting
/// watch calls.
struct SilentBmsc {
    watches: Arc<std::sync::atomic::AtomicUsize>,
}

#[tonic::async_trait]
impl KeyService for SilentBmsc {
    type WatchMsksStream = EventStream;

    async fn watch_msks(
        &self,
        _: Request<proto::WatchMsksRequest>,
    ) -> Result<Response<EventStream>, Status> {
        use tokio_stream::StreamExt;
        self.watches
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let events = vec![
            event(Event::MskAdded(wire_msk(0x0001_0001, 16, (1, 100)))),
            event(Event::SnapshotComplete(proto::SnapshotComplete {})),
        ];
        Ok(Response::new(Box::pin(
            tokio_stream::iter(events).chain(tokio_stream::pending()),
        )))
    }

    async fn get_current_msk(
        &self,
        _: Request<proto::GetCurrentMskRequest>,
    ) -> Result<Response<proto::Msk>, Status> {
        Err(Status::unimplemented("silent"))
    }

    async fn lease_mtk_ids(
        &self,
        _: Request<proto::LeaseRequest>,
    ) -> Result<Response<proto::Lease>, Status> {
        Err(Status::unimplemented("silent"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_stream_is_taken_as_dead_and_replaced() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let watches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(KeyServiceServer::new(SilentBmsc {
                watches: Arc::clone(&watches),
            }))
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                let _ = stopped.await;
            }),
    );
    let mut config = client_config(addr, vec![1], "gw-a");
    config.stream_idle_timeout_s = 1;
    let client = MskClient::start(config).unwrap();
    wait_connected(&client).await;
    // Without heartbeats the client gives up on each stream after 1 s and opens a new
    // one, keeping its key throughout.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while watches.load(std::sync::atomic::Ordering::SeqCst) < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no re-watch after silence"
        );
        assert!(client.msks().borrow().get(MskId::new(1, 1)).is_some());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(client.msks().borrow().get(MskId::new(1, 1)).is_some());
    assert_eq!(client.status().borrow().rejected_answers, 0);
    drop(client);
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
