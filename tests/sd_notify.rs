//! The gateway process speaks systemd's notification protocol on the socket
//! named by `$NOTIFY_SOCKET`: READY=1 once started, RELOADING=1 then READY=1
//! around a SIGHUP, STOPPING=1 on SIGTERM, and WATCHDOG=1 with WATCHDOG_USEC.

mod common;

use common::process::{gateway_command, keyless_gateway_config, signal};
use std::net::Ipv4Addr;
use std::os::unix::net::UnixDatagram;
use std::process::Stdio;
use std::time::Duration;

fn next(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 512];
    let n = socket
        .recv(&mut buf)
        .expect("a notification within the timeout");
    String::from_utf8(buf[..n].to_vec()).unwrap()
}

#[test]
fn ready_reloading_watchdog_and_stopping_are_sent() {
    let dir = tempfile::tempdir().unwrap();
    let config = keyless_gateway_config(dir.path(), "gw-notify", Ipv4Addr::new(239, 255, 42, 2));
    let socket_path = dir.path().join("notify");
    let manager = UnixDatagram::bind(&socket_path).unwrap();
    manager
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut child = gateway_command(&["run", "--config", config.to_str().unwrap()], "warn")
        .env("NOTIFY_SOCKET", &socket_path)
        // A 400 ms watchdog: a keep-alive every 200 ms.
        .env("WATCHDOG_USEC", "400000")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let signal = |sig| signal(&child, sig);

    assert_eq!(
        next(&manager),
        "READY=1\nSTATUS=1 streaming and 0 download session(s)"
    );
    // The first tick of the watchdog interval is immediate, then every 200 ms.
    assert_eq!(next(&manager), "WATCHDOG=1");
    assert_eq!(next(&manager), "WATCHDOG=1");

    signal(libc::SIGHUP);
    let mut seen = Vec::new();
    while !seen.iter().any(|m: &String| m.starts_with("READY=1")) {
        let message = next(&manager);
        if message != "WATCHDOG=1" {
            seen.push(message);
        }
    }
    assert!(
        seen[0].starts_with("RELOADING=1\nMONOTONIC_USEC="),
        "{seen:?}"
    );
    assert_eq!(seen.len(), 2, "{seen:?}");

    signal(libc::SIGTERM);
    loop {
        let message = next(&manager);
        if message != "WATCHDOG=1" {
            assert_eq!(message, "STOPPING=1");
            break;
        }
    }
    assert!(child.wait().unwrap().success());
}
