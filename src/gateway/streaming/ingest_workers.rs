//! Ingest workers: a few OS threads (one per core by default), each serving the
//! ingest sockets of many streaming sessions through one epoll set.
//!
//! A thread per session wakes once per datagram; at 200 sessions of 2 Mbit/s
//! that is most of the ingest cost. A worker that finds several sockets ready
//! serves them in one wake-up, and the more loaded it is, the more it serves
//! per wake-up. Sessions are plain state ([`IngestSession`]); the worker owns
//! them, so nothing on the data path is shared or locked.
//!
//! Each readable socket is served with one burst: one `recvmmsg` into the
//! worker's [`DatagramSlab`], protection in place, one `sendmmsg` of GSO
//! batches. A busy worker also waits at least `min_wake_interval` between
//! two wake-ups (unless a socket filled a whole burst, i.e. is behind), so at
//! moderate rates it reads several datagrams per socket per wake-up instead
//! of waking once per datagram; the datagrams wait meanwhile in the socket's
//! receive buffer, at most that long.
//!
//! Key changes reach a session through its own channel; the sender then wakes
//! the session's worker ([`IngestWaker`]), which lets every session of that
//! worker apply what is pending before it reads another datagram.

use crate::runtime::datagram_slab::DatagramSlab;
use crate::runtime::udp::MAX_EGRESS_DATAGRAM;
use crate::runtime::units;
use serde::Deserialize;
use std::collections::HashMap;
use std::io;
use std::num::NonZeroUsize;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// `[ingest]`: the workers that run the streaming sessions' ingest.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestSettings {
    /// Worker threads (default: one per core this process may run on).
    pub workers: Option<usize>,
    /// Shortest time between two wake-ups of a busy worker; datagrams that
    /// arrive meanwhile are read in the same burst. It bounds the latency it
    /// adds. `0s`: wake for every readable socket.
    #[serde(
        default = "default_min_wake_interval",
        deserialize_with = "units::duration"
    )]
    pub min_wake_interval: Duration,
}

fn default_min_wake_interval() -> Duration {
    Duration::from_millis(1)
}

impl Default for IngestSettings {
    fn default() -> Self {
        Self {
            workers: None,
            min_wake_interval: default_min_wake_interval(),
        }
    }
}

/// Longest `min_wake_interval`: beyond it the wait costs more latency than
/// it saves CPU, and a socket buffer may not hold what arrives meanwhile.
pub const MAX_MIN_WAKE_INTERVAL: Duration = Duration::from_millis(20);

impl IngestSettings {
    /// Refuses settings that cannot work, naming the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.workers == Some(0) {
            return Err("ingest.workers: must be at least 1".into());
        }
        if self.min_wake_interval > MAX_MIN_WAKE_INTERVAL {
            return Err(format!(
                "ingest.min_wake_interval: at most {MAX_MIN_WAKE_INTERVAL:?}"
            ));
        }
        Ok(())
    }

    /// The number of workers to start.
    pub fn worker_count(&self) -> usize {
        self.workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, NonZeroUsize::get))
            .max(1)
    }
}

/// One session's ingest side, driven by a worker.
pub trait IngestSession: Send {
    /// The sockets to read, in flow order.
    fn sockets(&self) -> Vec<RawFd>;
    /// Serves one burst of `flow`'s socket through `slab` (receive, process,
    /// send). Returns true when the burst filled the slab: the socket may
    /// hold more.
    fn readable(&mut self, flow: usize, slab: &mut DatagramSlab) -> bool;
    /// Applies pending key changes.
    fn wake(&mut self);
}

/// Token of the worker's own wake-up eventfd in its epoll set.
const WAKE: u64 = u64::MAX;
/// Flows per session that a token can name.
const FLOW_BITS: u32 = 8;
/// Ready events handled per wake-up.
const EVENTS: usize = 256;

/// Wakes one worker (an eventfd); cheap to clone.
#[derive(Clone)]
pub struct IngestWaker(Arc<OwnedFd>);

impl IngestWaker {
    fn new() -> io::Result<Self> {
        // SAFETY: plain syscall; the fd is owned from here on.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        Ok(Self(Arc::new(unsafe { OwnedFd::from_raw_fd(fd) })))
    }

    /// Makes the worker call [`IngestSession::wake`] on its sessions soon.
    pub fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a valid u64 to an eventfd. A full
        // counter (EAGAIN) still leaves the worker woken.
        unsafe { libc::write(self.0.as_raw_fd(), (&raw const one).cast(), 8) };
    }

    fn clear(&self) {
        let mut value: u64 = 0;
        // SAFETY: reads 8 bytes into a valid u64 from a non-blocking eventfd.
        unsafe { libc::read(self.0.as_raw_fd(), (&raw mut value).cast(), 8) };
    }
}

enum Control {
    Add(u64, Box<dyn IngestSession>),
    /// The pool is gone: the worker ends.
    Stop,
    /// Removes a session; the sender learns when it is gone (its sockets
    /// closed).
    Remove(u64, tokio::sync::oneshot::Sender<()>),
}

struct Worker {
    control: Sender<Control>,
    waker: IngestWaker,
    sessions: AtomicUsize,
}

/// The ingest workers of a gateway; cheap to clone. The threads end when the
/// last clone (and the last [`IngestSlot`]) is dropped.
#[derive(Clone)]
pub struct IngestPool {
    workers: Arc<[Worker]>,
    next_id: Arc<AtomicUsize>,
    threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

/// Where a session runs: enough to wake it and to remove it. Dropping it
/// removes the session too, without waiting for it to be gone.
pub struct IngestSlot {
    pool: IngestPool,
    worker: usize,
    id: u64,
    removed: bool,
}

impl IngestSlot {
    pub fn waker(&self) -> IngestWaker {
        self.pool.workers[self.worker].waker.clone()
    }

    /// Removes the session from its worker; returns once its sockets are
    /// closed.
    pub async fn remove(mut self) {
        if let Some(removed) = self.request_removal() {
            let _ = removed.await;
        }
    }

    fn request_removal(&mut self) -> Option<tokio::sync::oneshot::Receiver<()>> {
        if std::mem::replace(&mut self.removed, true) {
            return None;
        }
        let worker = &self.pool.workers[self.worker];
        worker.sessions.fetch_sub(1, Ordering::Relaxed);
        let (done, removed) = tokio::sync::oneshot::channel();
        worker.control.send(Control::Remove(self.id, done)).ok()?;
        worker.waker.wake();
        Some(removed)
    }
}

impl Drop for IngestSlot {
    fn drop(&mut self) {
        self.request_removal();
    }
}

impl IngestPool {
    /// Starts the workers `settings` asks for.
    pub fn new(settings: &IngestSettings) -> io::Result<Self> {
        let mut workers = Vec::new();
        let mut handles = Vec::new();
        let interval = settings.min_wake_interval;
        for i in 0..settings.worker_count() {
            let waker = IngestWaker::new()?;
            let (control, commands) = channel();
            let mut epoll = Epoll::new()?;
            epoll.add(waker.0.as_raw_fd(), WAKE)?;
            let thread_waker = waker.clone();
            handles.push(
                std::thread::Builder::new()
                    .name(format!("ingest-{i}"))
                    .spawn(move || run(epoll, thread_waker, commands, interval))?,
            );
            workers.push(Worker {
                control,
                waker,
                sessions: AtomicUsize::new(0),
            });
        }
        Ok(Self {
            workers: workers.into(),
            next_id: Arc::default(),
            threads: Arc::new(Mutex::new(handles)),
        })
    }

    /// Reserves a place on the least loaded worker for a session about to
    /// start; [`Self::start`] puts it there.
    pub fn reserve(&self) -> IngestSlot {
        let worker = (0..self.workers.len())
            .min_by_key(|&w| self.workers[w].sessions.load(Ordering::Relaxed))
            .unwrap_or(0);
        self.workers[worker]
            .sessions
            .fetch_add(1, Ordering::Relaxed);
        IngestSlot {
            pool: self.clone(),
            worker,
            id: self.next_id.fetch_add(1, Ordering::Relaxed) as u64,
            removed: false,
        }
    }

    /// Hands `session` to the worker of `slot`.
    pub fn start(&self, slot: &IngestSlot, session: Box<dyn IngestSession>) -> io::Result<()> {
        let worker = &self.workers[slot.worker];
        worker
            .control
            .send(Control::Add(slot.id, session))
            .map_err(|_| io::Error::other("the ingest worker stopped"))?;
        worker.waker.wake();
        Ok(())
    }

    /// A check that every worker runs, which does not keep them running.
    pub fn liveness(&self) -> impl Fn() -> bool + Send + Sync + 'static {
        let threads = Arc::downgrade(&self.threads);
        move || threads.upgrade().is_some_and(|t| all_running(&t))
    }
}

impl Drop for Worker {
    /// Runs once, when the last handle of the pool (and every slot) is gone:
    /// the worker thread ends.
    fn drop(&mut self) {
        let _ = self.control.send(Control::Stop);
        self.waker.wake();
    }
}

fn all_running(threads: &Mutex<Vec<JoinHandle<()>>>) -> bool {
    threads
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .all(|t| !t.is_finished())
}

fn token(id: u64, flow: usize) -> u64 {
    (id << FLOW_BITS) | flow as u64
}

/// A worker: waits on every socket of its sessions and its eventfd.
fn run(mut epoll: Epoll, waker: IngestWaker, control: Receiver<Control>, interval: Duration) {
    let mut sessions: HashMap<u64, Box<dyn IngestSession>> = HashMap::new();
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS];
    let mut slab = DatagramSlab::new(MAX_EGRESS_DATAGRAM);
    // Sleeps end close to their deadline (the default slack is 50 µs).
    // SAFETY: PR_SET_TIMERSLACK takes one integer argument.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 10_000 as libc::c_ulong) };
    let mut last_wake: Option<Instant> = None;
    loop {
        if let Some(last) = last_wake.take() {
            let due = last + interval;
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        let ready = match epoll.wait(&mut events) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::error!(error = %e, "ingest worker: epoll_wait failed; the worker stops");
                return;
            }
        };
        let woke = Instant::now();
        let read = events[..ready].iter().any(|e| e.u64 != WAKE);
        let mut behind = false;
        for event in &events[..ready] {
            let at = event.u64;
            if at == WAKE {
                waker.clear();
                loop {
                    match control.try_recv() {
                        Ok(Control::Add(id, session)) => {
                            let fds = session.sockets();
                            for (flow, fd) in fds.iter().enumerate() {
                                if let Err(e) = epoll.add(*fd, token(id, flow)) {
                                    tracing::error!(error = %e, "ingest worker: a socket could not be watched");
                                }
                            }
                            sessions.insert(id, session);
                        }
                        Ok(Control::Remove(id, done)) => {
                            if let Some(session) = sessions.remove(&id) {
                                for fd in session.sockets() {
                                    epoll.delete(fd);
                                }
                            }
                            let _ = done.send(());
                        }
                        Ok(Control::Stop) | Err(TryRecvError::Disconnected) => return,
                        Err(TryRecvError::Empty) => break,
                    }
                }
                for session in sessions.values_mut() {
                    session.wake();
                }
                continue;
            }
            let (id, flow) = (at >> FLOW_BITS, (at & ((1 << FLOW_BITS) - 1)) as usize);
            if let Some(session) = sessions.get_mut(&id) {
                behind |= session.readable(flow, &mut slab);
            }
        }
        // Traffic flows but nothing is behind: let the next datagrams gather.
        if read && !behind && !interval.is_zero() {
            last_wake = Some(woke);
        }
    }
}

/// An epoll set (level-triggered: a socket left with data is reported again).
struct Epoll(OwnedFd);

impl Epoll {
    fn new() -> io::Result<Self> {
        // SAFETY: plain syscall; the fd is owned from here on.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        Ok(Self(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn add(&mut self, fd: RawFd, token: u64) -> io::Result<()> {
        let mut event = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: valid epoll fd, valid event pointer for the call.
        if unsafe { libc::epoll_ctl(self.0.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut event) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn delete(&mut self, fd: RawFd) {
        // SAFETY: valid epoll fd; a null event is allowed for DEL.
        unsafe {
            libc::epoll_ctl(
                self.0.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd,
                std::ptr::null_mut(),
            )
        };
    }

    fn wait(&mut self, events: &mut [libc::epoll_event]) -> io::Result<usize> {
        // SAFETY: `events` is valid for `len` entries for the call.
        let n = unsafe {
            libc::epoll_wait(
                self.0.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as i32,
                -1,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::time::Duration;

    /// Records what the worker asks of it.
    struct Recorder {
        socket: UdpSocket,
        log: Arc<Mutex<Vec<String>>>,
    }

    impl IngestSession for Recorder {
        fn sockets(&self) -> Vec<RawFd> {
            vec![self.socket.as_raw_fd()]
        }
        fn readable(&mut self, flow: usize, slab: &mut DatagramSlab) -> bool {
            let n = slab.recv(&self.socket).unwrap_or(0);
            for i in 0..n {
                let len = slab.received_len(i);
                self.log.lock().unwrap().push(format!("read {flow} {len}"));
            }
            false
        }
        fn wake(&mut self) {
            self.log.lock().unwrap().push("wake".into());
        }
    }

    fn wait_for(log: &Mutex<Vec<String>>, entry: &str) {
        for _ in 0..500 {
            if log.lock().unwrap().iter().any(|e| e == entry) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("no {entry:?} in {:?}", log.lock().unwrap());
    }

    #[tokio::test]
    async fn sessions_are_read_woken_and_removed() {
        let pool = IngestPool::new(&IngestSettings {
            workers: Some(2),
            ..IngestSettings::default()
        })
        .unwrap();
        let mut slots = Vec::new();
        let mut logs = Vec::new();
        let mut addrs = Vec::new();
        for _ in 0..3 {
            let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
            socket.set_nonblocking(true).unwrap();
            addrs.push(socket.local_addr().unwrap());
            let log = Arc::new(Mutex::new(Vec::new()));
            let slot = pool.reserve();
            let session = Recorder {
                socket,
                log: log.clone(),
            };
            pool.start(&slot, Box::new(session)).unwrap();
            slots.push(slot);
            logs.push(log);
        }
        // Spread over both workers, the least loaded first.
        assert_ne!(slots[0].worker, slots[1].worker);
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        for (i, addr) in addrs.iter().enumerate() {
            sender.send_to(&vec![0; 10 + i], addr).unwrap();
        }
        for (i, log) in logs.iter().enumerate() {
            wait_for(log, &format!("read 0 {}", 10 + i));
        }
        // A key change wakes the sessions of that worker.
        logs[1].lock().unwrap().clear();
        slots[1].waker().wake();
        wait_for(&logs[1], "wake");
        // Removal returns once the session (and its socket) is gone.
        let removed = slots.remove(1);
        logs[1].lock().unwrap().clear();
        removed.remove().await;
        assert!(logs[1].lock().unwrap().is_empty());
        assert_eq!(Arc::strong_count(&logs[1]), 1, "the session was dropped");
        // A dropped slot removes its session as well.
        drop(slots.remove(1));
        for _ in 0..500 {
            if Arc::strong_count(&logs[2]) == 1 {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(Arc::strong_count(&logs[2]), 1, "the dropped slot's session");
        // The others still run.
        logs[0].lock().unwrap().clear();
        sender.send_to(&[1; 5], addrs[0]).unwrap();
        wait_for(&logs[0], "read 0 5");
        assert!(pool.liveness()());
        for slot in slots {
            slot.remove().await;
        }
        // The last handle gone, the workers end.
        let threads = pool.threads.clone();
        drop(pool);
        for _ in 0..500 {
            if threads.lock().unwrap().iter().all(|t| t.is_finished()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("the workers still run after the pool was dropped");
    }
}
