//! A slab of datagram slots that is received into with one `recvmmsg`,
//! rewritten in place, and sent from with one `sendmmsg` whose messages are
//! UDP GSO batches (`UDP_SEGMENT`, one per run of equal-size datagrams to one
//! destination).
//!
//! The relay hot path thus costs two system calls per burst of up to 64
//! datagrams and copies nothing in user space: the kernel writes each
//! datagram into its slot, the caller protects it there (growing it by the
//! SRTP trailer), and the send gathers the slots with one iovec each.
//!
//! The slab is owned by one thread and reused for every burst, so the steady
//! state allocates nothing.

use super::udp::{GSO_MAX_BYTES, GSO_MAX_SEGMENTS, SegmentControl, set_int_option, set_segment};
use socket2::SockAddr;
use std::io::{self, IoSlice};
use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Slots of a slab: one GSO send's worth of datagrams.
pub const SLOTS: usize = GSO_MAX_SEGMENTS;

/// One slot's state after a burst.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// Bytes in the slot (the datagram's real length on receive, which is
    /// larger than the slot when it was cut; its new length once rewritten).
    len: usize,
    /// Where the slot goes, as an index into the caller's route table;
    /// `None`: not sent.
    route: Option<u16>,
    /// When the kernel received it (`SO_TIMESTAMPNS`, when the socket has
    /// it on): ns since the Unix epoch.
    arrived_ns: Option<u64>,
}

/// Fixed slots of `slot_len` bytes each.
pub struct DatagramSlab {
    buf: Box<[u8]>,
    slot_len: usize,
    slots: [Slot; SLOTS],
    filled: usize,
}

/// What a send achieved for one route: called once per GSO message.
pub enum Sent {
    Ok {
        route: u16,
        datagrams: usize,
        bytes: usize,
    },
    Failed {
        route: u16,
        datagrams: usize,
        error: io::Error,
    },
}

impl DatagramSlab {
    /// A slab whose slots hold datagrams of up to `slot_len` bytes.
    pub fn new(slot_len: usize) -> Self {
        Self {
            buf: vec![0; slot_len * SLOTS].into_boxed_slice(),
            slot_len,
            slots: [Slot::default(); SLOTS],
            filled: 0,
        }
    }

    /// Bytes a slot holds.
    pub fn slot_len(&self) -> usize {
        self.slot_len
    }

    /// Datagrams of the last [`Self::recv`].
    pub fn filled(&self) -> usize {
        self.filled
    }

    /// Receives what `socket` holds, up to one datagram per slot, without
    /// waiting (`WouldBlock` when nothing is there). A datagram longer than
    /// a slot keeps its real length ([`Self::received_len`] > slot length),
    /// so the caller can refuse it by size. Every slot starts unrouted.
    pub fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        self.filled = 0;
        let slot_len = self.slot_len;
        let base = self.buf.as_mut_ptr();
        // SAFETY: slot `i` lies inside `buf` (SLOTS * slot_len bytes).
        let mut iovs: [libc::iovec; SLOTS] = std::array::from_fn(|i| libc::iovec {
            iov_base: unsafe { base.add(i * slot_len) }.cast(),
            iov_len: slot_len,
        });
        let iov_base = iovs.as_mut_ptr();
        let mut controls = [[0u64; RECV_CONTROL_WORDS]; SLOTS];
        let control_base = controls.as_mut_ptr();
        // SAFETY: an all-zero mmsghdr is a valid empty message.
        let mut msgs: [libc::mmsghdr; SLOTS] = unsafe { std::mem::zeroed() };
        for (i, msg) in msgs.iter_mut().enumerate() {
            // SAFETY: `i` < SLOTS, inside `iovs` and `controls`.
            unsafe {
                msg.msg_hdr.msg_iov = iov_base.add(i);
                msg.msg_hdr.msg_control = control_base.add(i).cast();
            }
            msg.msg_hdr.msg_iovlen = 1;
            msg.msg_hdr.msg_controllen = RECV_CONTROL_WORDS * 8;
        }
        // SAFETY: `msgs` and the iovecs they point to are live for the call;
        // each iovec addresses a disjoint slot of `buf`. MSG_TRUNC makes
        // msg_len the datagram's real length (UDP, recvmsg(2)).
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                msgs.as_mut_ptr(),
                SLOTS as libc::c_uint,
                libc::MSG_DONTWAIT | libc::MSG_TRUNC,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        for (slot, msg) in self.slots.iter_mut().zip(&msgs[..n]) {
            *slot = Slot {
                len: msg.msg_len as usize,
                route: None,
                arrived_ns: arrival(&msg.msg_hdr),
            };
        }
        self.filled = n;
        Ok(n)
    }

    /// How long ago, at `now`, the earliest datagram of the last burst
    /// reached the socket (`None` without kernel timestamps).
    pub fn oldest_age(&self, now: SystemTime) -> Option<Duration> {
        let oldest = self.slots[..self.filled]
            .iter()
            .filter_map(|s| s.arrived_ns)
            .min()?;
        let now = now.duration_since(UNIX_EPOCH).ok()?.as_nanos() as u64;
        Some(Duration::from_nanos(now.saturating_sub(oldest)))
    }

    /// The real length of datagram `i` as received.
    pub fn received_len(&self, i: usize) -> usize {
        self.slots[i].len
    }

    /// Slot `i`, all of it (the datagram is at its start).
    pub fn slot_mut(&mut self, i: usize) -> &mut [u8] {
        &mut self.buf[i * self.slot_len..(i + 1) * self.slot_len]
    }

    /// The datagram in slot `i`, as received or rewritten.
    pub fn datagram(&self, i: usize) -> &[u8] {
        let len = self.slots[i].len.min(self.slot_len);
        &self.buf[i * self.slot_len..i * self.slot_len + len]
    }

    /// Marks slot `i` to be sent to `route` with its first `len` bytes.
    pub fn route(&mut self, i: usize, route: u16, len: usize) {
        debug_assert!(len <= self.slot_len);
        self.slots[i].len = len;
        self.slots[i].route = Some(route);
    }

    /// Sends every routed slot, in slot order, on `socket`: runs of slots
    /// with the same route and length (the last of a run may be shorter)
    /// leave as one GSO message, all messages with one `sendmmsg`. `dests`
    /// maps a route to its address. Where the kernel refuses GSO, `gso` is
    /// cleared and every datagram leaves as a message of its own. `report`
    /// hears of each message's fate.
    pub fn send(
        &self,
        socket: &UdpSocket,
        dests: &[SockAddr],
        gso: &mut bool,
        mut report: impl FnMut(Sent),
    ) {
        let mut runs = Runs::new();
        self.plan(&mut runs, *gso, 0);
        let mut first = 0;
        while first < runs.count {
            match self.send_runs(socket, dests, &runs, first) {
                Ok(sent) => {
                    for run in &runs.runs[first..first + sent] {
                        report(Sent::Ok {
                            route: run.route,
                            datagrams: run.datagrams,
                            bytes: run.bytes,
                        });
                    }
                    first += sent;
                }
                Err(e)
                    if *gso
                        && matches!(
                            e.raw_os_error(),
                            Some(libc::EIO | libc::EINVAL | libc::ENOPROTOOPT)
                        )
                        && runs.runs[first].datagrams > 1 =>
                {
                    tracing::warn!(error = %e, "UDP GSO refused; sending datagrams one by one");
                    *gso = false;
                    // Plan again from the failed run on, one datagram each.
                    let from = runs.runs[first].first_slot;
                    runs = Runs::new();
                    self.plan(&mut runs, false, from);
                    first = 0;
                }
                Err(error) => {
                    let run = &runs.runs[first];
                    report(Sent::Failed {
                        route: run.route,
                        datagrams: run.datagrams,
                        error,
                    });
                    first += 1;
                }
            }
        }
    }

    /// Groups the routed slots from `from` on into runs (of one datagram
    /// each without GSO).
    fn plan(&self, runs: &mut Runs, gso: bool, from: usize) {
        for i in from..self.filled {
            let Slot {
                len,
                route: Some(route),
                ..
            } = self.slots[i]
            else {
                continue;
            };
            let joins = gso && runs.count > 0 && runs.runs[runs.count - 1].admits(route, len);
            if joins {
                let run = &mut runs.runs[runs.count - 1];
                run.end_slot = i + 1;
                run.datagrams += 1;
                run.bytes += len;
                run.last_len = len;
            } else {
                runs.runs[runs.count] = Run {
                    route,
                    segment: len,
                    last_len: len,
                    bytes: len,
                    datagrams: 1,
                    first_slot: i,
                    end_slot: i + 1,
                };
                runs.count += 1;
            }
        }
    }

    /// One `sendmmsg` of runs `first..`; the number of runs the kernel took.
    fn send_runs(
        &self,
        socket: &UdpSocket,
        dests: &[SockAddr],
        runs: &Runs,
        first: usize,
    ) -> io::Result<usize> {
        let runs = &runs.runs[first..runs.count];
        let mut iovs: [IoSlice<'_>; SLOTS] = [IoSlice::new(&[]); SLOTS];
        let mut controls = [SegmentControl::default(); SLOTS];
        // SAFETY: an all-zero mmsghdr is a valid empty message.
        let mut msgs: [libc::mmsghdr; SLOTS] = unsafe { std::mem::zeroed() };
        // First the iovecs of every message, then the messages pointing at them.
        let mut spans = [(0usize, 0usize); SLOTS];
        let mut next_iov = 0;
        for (run, span) in runs.iter().zip(spans.iter_mut()) {
            let at = next_iov;
            for slot in run.first_slot..run.end_slot {
                if self.slots[slot].route.is_some() {
                    iovs[next_iov] = IoSlice::new(self.datagram(slot));
                    next_iov += 1;
                }
            }
            *span = (at, next_iov - at);
        }
        // IoSlice is ABI-compatible with iovec on Unix.
        let iov_base: *mut libc::iovec = iovs.as_mut_ptr().cast();
        let control_base = controls.as_mut_ptr();
        for (i, (run, msg)) in runs.iter().zip(msgs.iter_mut()).enumerate() {
            let dest = &dests[usize::from(run.route)];
            let hdr = &mut msg.msg_hdr;
            hdr.msg_name = dest.as_ptr() as *mut libc::c_void;
            hdr.msg_namelen = dest.len();
            let (at, count) = spans[i];
            // SAFETY: `at + count` <= SLOTS, inside `iovs`; `i` < SLOTS.
            hdr.msg_iov = unsafe { iov_base.add(at) };
            hdr.msg_iovlen = count as _;
            if run.datagrams > 1 {
                // SAFETY: `i` < SLOTS, inside `controls`.
                set_segment(hdr, unsafe { &mut *control_base.add(i) }, run.segment);
            }
        }
        // SAFETY: every message points at live iovecs, addresses and control
        // buffers, all of which outlive the call.
        let sent = unsafe {
            libc::sendmmsg(
                socket.as_raw_fd(),
                msgs.as_mut_ptr(),
                runs.len() as libc::c_uint,
                0,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(sent as usize)
    }
}

/// Room (in u64 words, for alignment) for a received `SCM_TIMESTAMPNS`.
const RECV_CONTROL_WORDS: usize = 4;

/// Asks the kernel to stamp each datagram `socket` receives with its arrival
/// time, which [`DatagramSlab::oldest_age`] reads. When no socket on the host
/// had timestamps on, the kernel switches arrival stamping on from a work queue
/// a moment later and stamps the datagrams of that moment when they are read,
/// so the first ages can read low, never high.
pub fn enable_arrival_timestamps(socket: &UdpSocket) -> io::Result<()> {
    set_int_option(socket, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1)
}

/// The `SCM_TIMESTAMPNS` of a received message, in ns since the Unix epoch.
fn arrival(hdr: &libc::msghdr) -> Option<u64> {
    // SAFETY: the kernel filled the control buffer up to msg_controllen; the
    // CMSG macros walk only within it.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(hdr);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS
            {
                let ts = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::timespec>());
                return Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
            }
            cmsg = libc::CMSG_NXTHDR(hdr, cmsg);
        }
    }
    None
}

/// Routed slots (in `first_slot..end_slot`, unrouted ones skipped) that
/// leave as one message.
#[derive(Debug, Clone, Copy)]
struct Run {
    route: u16,
    /// The GSO segment size: the first datagram's length.
    segment: usize,
    last_len: usize,
    bytes: usize,
    datagrams: usize,
    first_slot: usize,
    end_slot: usize,
}

impl Run {
    const EMPTY: Self = Self {
        route: 0,
        segment: 0,
        last_len: 0,
        bytes: 0,
        datagrams: 0,
        first_slot: 0,
        end_slot: 0,
    };

    /// Whether a datagram of `len` bytes to `route` may join: same route, a
    /// run of full segments so far (only the last may be shorter), and room
    /// left in one GSO send.
    fn admits(&self, route: u16, len: usize) -> bool {
        route == self.route
            && self.last_len == self.segment
            && len <= self.segment
            && self.bytes + len <= GSO_MAX_BYTES
    }
}

struct Runs {
    runs: [Run; SLOTS],
    count: usize,
}

impl Runs {
    fn new() -> Self {
        Self {
            runs: [Run::EMPTY; SLOTS],
            count: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::udp::loopback_egress_socket;
    use std::time::Duration;

    fn pair() -> (UdpSocket, UdpSocket) {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        (tx, rx)
    }

    /// Waits until `socket` has something to read.
    fn readable(socket: &UdpSocket) {
        let mut fd = libc::pollfd {
            fd: socket.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the call's duration.
        assert_eq!(unsafe { libc::poll(&mut fd, 1, 2000) }, 1);
    }

    #[test]
    fn a_burst_is_received_rewritten_and_sent_in_order() {
        let (encoder, ingest) = pair();
        let (_, sink) = pair();
        let mut slab = DatagramSlab::new(200);
        // Sizes chosen to make runs: 3 × 100 (+ a shorter 60 ending the run),
        // a cut datagram, 2 × 100 to the second route, one left unrouted.
        let sizes = [100usize, 100, 100, 60, 500, 100, 100, 100, 100];
        for (i, size) in sizes.iter().enumerate() {
            encoder
                .send_to(&vec![i as u8; *size], ingest.local_addr().unwrap())
                .unwrap();
        }
        readable(&ingest);
        assert_eq!(slab.recv(&ingest).unwrap(), sizes.len());
        for (i, size) in sizes.iter().enumerate() {
            assert_eq!(slab.received_len(i), *size, "the real length of {i}");
        }
        assert_eq!(slab.datagram(4).len(), 200, "a cut datagram holds a slot");
        // Rewrite in place: append two bytes to each (a trailer).
        let sink_addr = SockAddr::from(sink.local_addr().unwrap());
        let dests = [sink_addr.clone(), sink_addr];
        for (i, size) in sizes.iter().enumerate() {
            if i == 4 || i == 7 {
                continue;
            }
            slab.slot_mut(i)[*size..*size + 2].copy_from_slice(&[0xee, i as u8]);
            slab.route(i, u16::from(i >= 5), size + 2);
        }
        let mut reports = Vec::new();
        let tx = loopback_egress_socket(0);
        let mut gso = true;
        slab.send(&tx, &dests, &mut gso, |sent| match sent {
            Sent::Ok {
                route,
                datagrams,
                bytes,
            } => reports.push((route, datagrams, bytes)),
            Sent::Failed { error, .. } => panic!("send failed: {error}"),
        });
        // Runs: slots 0–3 (the shorter 60 ends it), then 5, 6, 8 on route 1
        // (slot 7 skipped, the run goes on).
        assert_eq!(reports, [(0, 4, 3 * 102 + 62), (1, 3, 3 * 102)]);
        let mut buf = [0u8; 2048];
        for (i, size) in sizes.iter().enumerate() {
            if i == 4 || i == 7 {
                continue;
            }
            let n = sink.recv(&mut buf).unwrap();
            let mut want = vec![i as u8; *size];
            want.extend([0xee, i as u8]);
            assert_eq!(&buf[..n], &want[..], "datagram {i}");
        }
    }

    #[test]
    fn arrival_timestamps_date_the_oldest_datagram() {
        let (encoder, ingest) = pair();
        let mut slab = DatagramSlab::new(100);
        encoder
            .send_to(&[1; 10], ingest.local_addr().unwrap())
            .unwrap();
        readable(&ingest);
        slab.recv(&ingest).unwrap();
        assert_eq!(slab.oldest_age(SystemTime::now()), None, "off by default");
        enable_arrival_timestamps(&ingest).unwrap();
        // Until the kernel stamps on arrival, datagrams are stamped when read.
        let stamped_on_arrival = (0..100).any(|_| {
            encoder
                .send_to(&[9; 10], ingest.local_addr().unwrap())
                .unwrap();
            std::thread::sleep(Duration::from_millis(5));
            readable(&ingest);
            slab.recv(&ingest).unwrap();
            slab.oldest_age(SystemTime::now()).unwrap() >= Duration::from_millis(5)
        });
        assert!(stamped_on_arrival, "the kernel never stamped on arrival");
        let before = SystemTime::now();
        encoder
            .send_to(&[2; 10], ingest.local_addr().unwrap())
            .unwrap();
        std::thread::sleep(Duration::from_millis(20));
        encoder
            .send_to(&[3; 10], ingest.local_addr().unwrap())
            .unwrap();
        readable(&ingest);
        assert_eq!(slab.recv(&ingest).unwrap(), 2);
        let now = SystemTime::now();
        let age = slab.oldest_age(now).unwrap();
        assert!(age >= Duration::from_millis(20), "{age:?}");
        assert!(age <= now.duration_since(before).unwrap(), "{age:?}");
    }

    #[test]
    fn nothing_to_receive_would_block() {
        let (_, ingest) = pair();
        let mut slab = DatagramSlab::new(100);
        let e = slab.recv(&ingest).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert_eq!(slab.filled(), 0);
    }

    #[test]
    fn a_full_burst_fills_every_slot_and_leaves_the_rest() {
        let (encoder, ingest) = pair();
        let mut slab = DatagramSlab::new(64);
        for i in 0..SLOTS + 3 {
            encoder
                .send_to(&[i as u8; 10], ingest.local_addr().unwrap())
                .unwrap();
        }
        readable(&ingest);
        assert_eq!(slab.recv(&ingest).unwrap(), SLOTS);
        assert_eq!(slab.datagram(SLOTS - 1), &[(SLOTS - 1) as u8; 10]);
        assert_eq!(slab.recv(&ingest).unwrap(), 3);
        assert_eq!(slab.datagram(0), &[SLOTS as u8; 10]);
    }
}
