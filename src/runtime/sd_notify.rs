//! systemd's service notification protocol (sd_notify(3)): newline-separated
//! `VAR=value` assignments in one datagram to the unix socket named by
//! `$NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace). With
//! `Type=notify` systemd waits for `READY=1`; with `WatchdogSec=` it expects
//! `WATCHDOG=1` at least every `$WATCHDOG_USEC` microseconds. Without
//! `$NOTIFY_SOCKET` (not run by systemd) nothing is sent.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// The environment variable naming the notification socket.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// A connection to the service manager's notification socket.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    target: SocketAddr,
}

impl Notifier {
    /// The notifier `$NOTIFY_SOCKET` asks for, if any.
    pub fn from_env() -> io::Result<Option<Self>> {
        match std::env::var_os(NOTIFY_SOCKET) {
            Some(path) if !path.is_empty() => Self::new(&path.to_string_lossy()).map(Some),
            _ => Ok(None),
        }
    }

    /// A notifier sending to `path` (`@name`: abstract namespace).
    pub fn new(path: &str) -> io::Result<Self> {
        let target = match path.strip_prefix('@') {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(name.as_bytes())?
            }
            None => SocketAddr::from_pathname(path)?,
        };
        Ok(Self {
            socket: UnixDatagram::unbound()?,
            target,
        })
    }

    /// Sends `state` (one or more `VAR=value` lines) as one datagram.
    pub fn notify(&self, state: &str) -> io::Result<()> {
        self.socket.send_to_addr(state.as_bytes(), &self.target)?;
        Ok(())
    }

    /// Start-up is complete; `status` is a one-line description.
    pub fn ready(&self, status: &str) -> io::Result<()> {
        self.notify(&format!("READY=1\nSTATUS={}", one_line(status)))
    }

    /// A configuration reload begins (for `Type=notify-reload`: systemd needs
    /// the monotonic time of the request); [`Notifier::ready`] ends it.
    pub fn reloading(&self) -> io::Result<()> {
        self.notify(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()))
    }

    /// Shut-down begins.
    pub fn stopping(&self) -> io::Result<()> {
        self.notify("STOPPING=1")
    }

    /// The process is alive (the watchdog keep-alive).
    pub fn watchdog(&self) -> io::Result<()> {
        self.notify("WATCHDOG=1")
    }
}

fn one_line(text: &str) -> String {
    text.replace('\n', " ")
}

/// `CLOCK_MONOTONIC` in microseconds, the clock systemd compares with.
fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the call's duration.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000 + (ts.tv_nsec as u64) / 1_000
}

/// How often to send `WATCHDOG=1`: half of `$WATCHDOG_USEC` (the margin
/// sd_watchdog_enabled(3) recommends), when the watchdog is on and meant for
/// this process (`$WATCHDOG_PID` unset or ours).
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recv(socket: &UnixDatagram) -> String {
        let mut buf = [0u8; 512];
        let n = socket.recv(&mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn messages_arrive_on_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let manager = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier::new(path.to_str().unwrap()).unwrap();
        notifier.ready("2 sessions\non air").unwrap();
        assert_eq!(recv(&manager), "READY=1\nSTATUS=2 sessions on air");
        notifier.reloading().unwrap();
        let reloading = recv(&manager);
        let usec = reloading
            .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
            .unwrap();
        assert!(usec.parse::<u64>().unwrap() > 0, "{reloading}");
        notifier.watchdog().unwrap();
        assert_eq!(recv(&manager), "WATCHDOG=1");
        notifier.stopping().unwrap();
        assert_eq!(recv(&manager), "STOPPING=1");
    }

    #[test]
    fn messages_arrive_on_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("mbms-gateway-notify-test-{}", std::process::id());
        let manager =
            UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap())
                .unwrap();
        Notifier::new(&format!("@{name}"))
            .unwrap()
            .stopping()
            .unwrap();
        assert_eq!(recv(&manager), "STOPPING=1");
    }

    #[test]
    fn sending_to_a_missing_socket_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let notifier = Notifier::new(dir.path().join("none").to_str().unwrap()).unwrap();
        assert!(notifier.watchdog().is_err());
    }
}
