//! `kill -9` of the gateway process mid-stream, then a restart: the key journal
//! (and the BM-SC leases) make MTK IDs and MIKEY counters continue above every
//! value sent before, and the stream after the restart decrypts (design §3
//! "Counters survive").

mod common;

use common::gateway::*;
use common::libsrtp::{MasterKey, open_mbms_capture};
use mbms_gateway::protocol::mikey::peek_mtk_key_ids;
use mbms_gateway::protocol::profile::MIKEY_UDP_PORT;
use std::net::{Ipv4Addr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn spawn_gateway(config: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_mbms-gateway"))
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the gateway binary starts")
}

/// (MSK ID, MTK ID, counter) of every captured MIKEY message.
fn key_ids(captured: &Captured) -> Vec<(u32, u16, u32)> {
    captured
        .iter()
        .map(|(_, m)| {
            let ids = peek_mtk_key_ids(m).unwrap();
            (ids.msk_id.0, ids.mtk_id.0, ids.counter)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_and_restart_continues_above_every_value_sent() {
    let group = Ipv4Addr::new(239, 255, 20, 4);
    let port = free_udp_port();
    let dir = temp_dir("gateway-crash");
    let bmsc = start_bmsc(&bmsc_config(
        "127.0.0.1:0".parse().unwrap(),
        &dir.join("bmsc"),
        3600,
        7200,
    ))
    .await;
    let ingest_port = free_udp_port();
    let setup = GatewaySetup {
        state_dir: dir.join("gw"),
        bmsc: bmsc.local_addr,
        group,
        ingest_port,
        egress_port: port,
        period: "400ms",
        lead: "150ms",
        resend: "100ms",
    };
    let config = dir.join("gateway.toml");
    std::fs::write(&config, setup.toml()).unwrap();

    let srtp = Capture::start(group, port);
    let mikey = Capture::start(group, MIKEY_UDP_PORT);
    let stop = Arc::new(AtomicBool::new(false));
    let encoder = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
            let mut seq = 0u16;
            while !stop.load(Ordering::Relaxed) {
                let _ = socket.send_to(
                    &rtp_packet(seq, 0x0c0ffee, 1316),
                    ("127.0.0.1", ingest_port),
                );
                seq = seq.wrapping_add(1);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };

    let mut first = spawn_gateway(&config);
    wait_for("SRTP from the first run", Duration::from_secs(10), || {
        srtp.count() > 300
    })
    .await;
    wait_for("several MTKs", Duration::from_secs(10), || {
        let ids = key_ids(&mikey.snapshot());
        ids.iter().map(|k| k.1).max() >= ids.iter().map(|k| k.1).min().map(|m| m + 2)
    })
    .await;
    first.kill().unwrap(); // SIGKILL: no shutdown code runs
    first.wait().unwrap();
    let crash = Instant::now();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut second = spawn_gateway(&config);
    let before_restart = srtp.count();
    wait_for("SRTP after the restart", Duration::from_secs(10), || {
        srtp.count() > before_restart + 300
    })
    .await;
    // SIGTERM: a clean stop with exit status 0.
    // SAFETY: sending a signal to our own child process.
    assert_eq!(unsafe { libc::kill(second.id() as i32, libc::SIGTERM) }, 0);
    let status = second.wait().unwrap();
    assert!(
        status.success(),
        "SIGTERM stops the gateway cleanly: {status}"
    );
    stop.store(true, Ordering::Relaxed);
    encoder.join().unwrap();

    let announced = mikey.finish();
    let captured = srtp.finish();
    let msks = bmsc.control.msks();
    bmsc.stop().await.unwrap();

    let (before, after): (Vec<_>, Vec<_>) =
        announced.iter().cloned().partition(|(t, _)| *t < crash);
    let (ids_before, ids_after) = (key_ids(&before), key_ids(&after));
    assert!(!ids_before.is_empty() && !ids_after.is_empty());
    let max_mtk_before = ids_before.iter().map(|k| k.1).max().unwrap();
    let max_counter_before = ids_before.iter().map(|k| k.2).max().unwrap();
    for (msk, mtk, counter) in &ids_after {
        assert_eq!(*msk, ids_before[0].0, "same MSK across the restart");
        assert!(
            *mtk > max_mtk_before,
            "MTK ID {mtk} after the restart is not above {max_mtk_before}"
        );
        assert!(
            *counter > max_counter_before,
            "counter {counter} after the restart is not above {max_counter_before}"
        );
    }

    // Every packet sent after the restart decrypts in libsrtp under the MTKs
    // announced after the restart.
    let keys: Vec<MasterKey> = mtks_from_mikey(&after, &msks).into_values().collect();
    let after_packets: Vec<Vec<u8>> = captured
        .iter()
        .filter(|(t, _)| *t > crash)
        .map(|(_, p)| p.clone())
        .collect();
    assert!(after_packets.len() > 300);
    assert_eq!(
        open_mbms_capture(&keys, &after_packets).len(),
        after_packets.len()
    );
}
