//! Typed metric handles. Each is registered once (a name and label set looked up
//! in the recorder) when a session, input or client starts; the per-packet path
//! then only does an atomic add on a held handle. Label values are the
//! configured names passed in here and the fixed enums of [`super::labels`],
//! nothing else, so no packet field can become a series.
//!
//! Handles made before [`super::install`] are inert (the `metrics` crate's
//! no-op recorder), which keeps components usable without an exporter.

use super::labels::{
    BmscRpc, BmscState, DropReason, EgressLabel, IngestOrigin, IngestRejectReason, LabelValue,
    MikeyTransport, ReloadResult, RpcFailure, SessionKind,
};
use super::names::{self, MetricDef, MetricType};
use ::metrics::{Counter, Gauge, Histogram, Key, Label, Level, Metadata};
use std::time::Duration;

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// The key of `def` with `values` for its label keys, in the order
/// [`MetricDef::labels`] lists them.
fn key(def: &MetricDef, values: &[&str]) -> Key {
    assert_eq!(
        def.labels.len(),
        values.len(),
        "{}: label values do not match its keys",
        def.name
    );
    let labels: Vec<Label> = def
        .labels
        .iter()
        .zip(values)
        .map(|(k, v)| Label::new(*k, (*v).to_owned()))
        .collect();
    Key::from_parts(def.name, labels)
}

fn counter(def: &MetricDef, values: &[&str]) -> Counter {
    debug_assert_eq!(def.kind, MetricType::Counter, "{}", def.name);
    ::metrics::with_recorder(|r| r.register_counter(&key(def, values), &METADATA))
}

fn gauge(def: &MetricDef, values: &[&str]) -> Gauge {
    debug_assert_eq!(def.kind, MetricType::Gauge, "{}", def.name);
    ::metrics::with_recorder(|r| r.register_gauge(&key(def, values), &METADATA))
}

fn histogram(def: &MetricDef, values: &[&str]) -> Histogram {
    debug_assert!(matches!(def.kind, MetricType::Histogram(_)), "{}", def.name);
    ::metrics::with_recorder(|r| r.register_histogram(&key(def, values), &METADATA))
}

/// One handle per value of `L`, indexed by [`LabelValue::index`]; every value
/// is registered up front so its series exists (at 0) before the first event.
fn per_value<L: LabelValue, H>(make: impl FnMut(&L) -> H) -> Box<[H]> {
    L::ALL.iter().map(make).collect()
}

/// Ingest counters of one input (one RTP flow) of a streaming session.
#[derive(Debug, Clone)]
pub struct InputMetrics {
    packets: Counter,
    bytes: Counter,
}

impl InputMetrics {
    pub fn new(session: &str, input: &str) -> Self {
        let labels = [session, input];
        Self {
            packets: counter(&names::INGEST_PACKETS, &labels),
            bytes: counter(&names::INGEST_BYTES, &labels),
        }
    }

    /// One packet of `bytes` (UDP payload) received.
    #[inline]
    pub fn received(&self, bytes: usize) {
        self.packets.increment(1);
        self.bytes.increment(bytes as u64);
    }

    /// Copies totals counted elsewhere (monotonic, so `absolute`).
    pub fn observe(&self, packets: u64, bytes: u64) {
        self.packets.absolute(packets);
        self.bytes.absolute(bytes);
    }
}

/// What a session's data path counted since it started, copied into the
/// session's series at scrape time. The data path owns the counters; this
/// is the plain copy the metrics read, so neither depends on the other.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionTotals {
    /// Indexed by [`DropReason::index`].
    pub dropped: [u64; DropReason::ALL.len()],
    pub mtk_rotations: u64,
    /// MIKEY MTK messages sent, indexed by [`MikeyTransport::index`].
    pub mikey_sent: [u64; MikeyTransport::ALL.len()],
    /// Transmissions of file objects sent to their last packet.
    pub flute_objects: u64,
    pub fdt_instances: u64,
}

/// Per-session counters, gauges and histograms (streaming and download).
#[derive(Debug, Clone)]
pub struct SessionMetrics {
    session: String,
    dropped: Box<[Counter]>,
    mtk_rotations: Counter,
    mikey_sent: Box<[Counter]>,
    msk_validity_seconds: Gauge,
    msk_validity_mtk_ids: Gauge,
    flute_objects: Counter,
    fdt_instances: Counter,
}

impl SessionMetrics {
    /// `session` is the configured session name.
    pub fn new(session: &str) -> Self {
        let s = [session];
        Self {
            session: session.to_owned(),
            dropped: per_value(|r: &DropReason| {
                counter(&names::INGEST_DROPPED, &[session, r.as_str()])
            }),
            mtk_rotations: counter(&names::MTK_ROTATIONS, &s),
            mikey_sent: per_value(|t: &MikeyTransport| {
                counter(&names::MIKEY_SENT, &[session, t.as_str()])
            }),
            msk_validity_seconds: gauge(&names::MSK_VALIDITY_SECONDS, &s),
            msk_validity_mtk_ids: gauge(&names::MSK_VALIDITY_MTK_IDS, &s),
            flute_objects: counter(&names::FLUTE_OBJECTS_SENT, &s),
            fdt_instances: counter(&names::FLUTE_FDT_INSTANCES_SENT, &s),
        }
    }

    /// Ingest counters for the configured input `input` of this session.
    pub fn input(&self, input: &str) -> InputMetrics {
        InputMetrics::new(&self.session, input)
    }

    #[inline]
    pub fn dropped(&self, reason: DropReason) {
        self.dropped[reason.index()].increment(1);
    }

    pub fn mtk_rotated(&self) {
        self.mtk_rotations.increment(1);
    }

    pub fn mikey_sent(&self, transport: MikeyTransport) {
        self.mikey_sent[transport.index()].increment(1);
    }

    /// What is left of the MSK that protects this session's MTKs: time until
    /// it expires and MTK IDs before its range runs out (both 0 when no MSK
    /// is valid).
    pub fn msk_validity(&self, remaining: Duration, mtk_ids_left: u64) {
        self.msk_validity_seconds.set(remaining.as_secs_f64());
        self.msk_validity_mtk_ids.set(mtk_ids_left as f64);
    }

    /// Copies what the session's data path counted (its threads count in
    /// plain atomics; this runs at scrape time).
    pub fn observe(&self, totals: &SessionTotals) {
        for (counter, total) in self.dropped.iter().zip(totals.dropped) {
            counter.absolute(total);
        }
        for (counter, total) in self.mikey_sent.iter().zip(totals.mikey_sent) {
            counter.absolute(total);
        }
        self.mtk_rotations.absolute(totals.mtk_rotations);
        self.flute_objects.absolute(totals.flute_objects);
        self.fdt_instances.absolute(totals.fdt_instances);
    }

    pub fn flute_object_sent(&self) {
        self.flute_objects.increment(1);
    }

    pub fn fdt_instance_sent(&self) {
        self.fdt_instances.increment(1);
    }
}

/// Latencies a session's data-path threads observe themselves: a histogram
/// cannot be copied from atomics at scrape time. Each is observed once per
/// batch or pacer wait, never per packet, so the cost stays off the
/// per-packet path. Handles made again for a restarted session are the same
/// series.
#[derive(Debug, Clone)]
pub struct LatencyMetrics {
    ingest_to_egress: Histogram,
    pacer_lateness: Histogram,
}

impl LatencyMetrics {
    pub fn new(session: &str) -> Self {
        Self {
            ingest_to_egress: histogram(&names::INGEST_TO_EGRESS, &[session]),
            pacer_lateness: histogram(&names::PACER_LATENESS, &[session]),
        }
    }

    /// A burst read from the ingest sockets was queued for sending `latency`
    /// after the ingest worker woke to read it (its oldest packet's wait).
    #[inline]
    pub fn ingest_to_egress(&self, latency: Duration) {
        self.ingest_to_egress.record(latency.as_secs_f64());
    }

    /// A paced batch left `late` after the time its pacer allowed.
    #[inline]
    pub fn pacer_lateness(&self, late: Duration) {
        self.pacer_lateness.record(late.as_secs_f64());
    }
}

/// Ingest counters of one download session: objects and bytes taken in, by
/// origin, and objects refused, by reason. Never labelled by Content-Location
/// (unbounded).
#[derive(Debug, Clone)]
pub struct IngestMetrics {
    objects: Box<[Counter]>,
    bytes: Box<[Counter]>,
    rejected: Box<[Counter]>,
}

impl IngestMetrics {
    /// `session` is the configured download session name.
    pub fn new(session: &str) -> Self {
        Self {
            objects: per_value(|o: &IngestOrigin| {
                counter(&names::DOWNLOAD_OBJECTS_INGESTED, &[session, o.as_str()])
            }),
            bytes: per_value(|o: &IngestOrigin| {
                counter(&names::DOWNLOAD_BYTES_INGESTED, &[session, o.as_str()])
            }),
            rejected: per_value(|r: &IngestRejectReason| {
                counter(&names::DOWNLOAD_OBJECTS_REJECTED, &[session, r.as_str()])
            }),
        }
    }

    /// A complete object of `bytes` was handed to the session.
    pub fn ingested(&self, origin: IngestOrigin, bytes: u64) {
        self.objects[origin.index()].increment(1);
        self.bytes[origin.index()].increment(bytes);
    }

    pub fn rejected(&self, reason: IngestRejectReason) {
        self.rejected[reason.index()].increment(1);
    }
}

/// Push requests refused before they could be attributed to a configured
/// session (the session name in such a request is client input, so it never
/// becomes a label).
#[derive(Debug, Clone)]
pub struct PushMetrics {
    rejected: Box<[Counter]>,
}

impl PushMetrics {
    pub fn new() -> Self {
        Self {
            rejected: per_value(|r: &IngestRejectReason| {
                counter(&names::PUSH_REQUESTS_REJECTED, &[r.as_str()])
            }),
        }
    }

    pub fn rejected(&self, reason: IngestRejectReason) {
        self.rejected[reason.index()].increment(1);
    }
}

impl Default for PushMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// What one egress producer counted: datagrams and bytes per kind, failed
/// sends, waits on a full queue, and its batches queued now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EgressTotals {
    /// Indexed by [`EgressLabel::index`].
    pub packets: [u64; EgressLabel::ALL.len()],
    /// Indexed by [`EgressLabel::index`].
    pub bytes: [u64; EgressLabel::ALL.len()],
    pub send_errors: u64,
    pub queue_full: u64,
    pub queued: u64,
}

/// Mirrors one egress thread's counters into metrics. The sender thread
/// keeps counting in its own atomics; [`EgressMetrics::observe`] copies a
/// snapshot of them, typically from a scrape hook
/// ([`super::Metrics::on_scrape`]).
#[derive(Debug, Clone)]
pub struct EgressMetrics {
    packets: Box<[Counter]>,
    bytes: Box<[Counter]>,
    send_errors: Counter,
    queue_full: Counter,
    queue_depth: Gauge,
}

impl EgressMetrics {
    /// `session`: the configured session the egress socket serves.
    pub fn new(session: &str) -> Self {
        let s = [session];
        Self {
            packets: per_value(|k: &EgressLabel| {
                counter(&names::EGRESS_PACKETS, &[session, k.as_str()])
            }),
            bytes: per_value(|k: &EgressLabel| {
                counter(&names::EGRESS_BYTES, &[session, k.as_str()])
            }),
            send_errors: counter(&names::EGRESS_SEND_ERRORS, &s),
            queue_full: counter(&names::EGRESS_QUEUE_FULL, &s),
            queue_depth: gauge(&names::EGRESS_QUEUE_DEPTH, &s),
        }
    }

    /// Copies the thread's counters (monotonic, so `absolute`).
    pub fn observe(&self, totals: &EgressTotals) {
        for (counter, total) in self.packets.iter().zip(totals.packets) {
            counter.absolute(total);
        }
        for (counter, total) in self.bytes.iter().zip(totals.bytes) {
            counter.absolute(total);
        }
        self.send_errors.absolute(totals.send_errors);
        self.queue_full.absolute(totals.queue_full);
        self.queue_depth.set(totals.queued as f64);
    }
}

/// The BM-SC client's health and call latency.
#[derive(Debug, Clone)]
pub struct BmscMetrics {
    state: Box<[Gauge]>,
    rpc_duration: Box<[Histogram]>,
    /// Indexed by `rpc.index() * RpcFailure::ALL.len() + failure.index()`.
    rpc_errors: Box<[Counter]>,
    rejected_answers: Counter,
}

impl BmscMetrics {
    pub fn new() -> Self {
        let rpc_errors = BmscRpc::ALL
            .iter()
            .flat_map(|rpc| {
                RpcFailure::ALL
                    .iter()
                    .map(|f| counter(&names::BMSC_RPC_ERRORS, &[rpc.as_str(), f.as_str()]))
            })
            .collect();
        Self {
            state: per_value(|s: &BmscState| gauge(&names::BMSC_CONNECTION_STATE, &[s.as_str()])),
            rpc_duration: per_value(|rpc: &BmscRpc| {
                histogram(&names::BMSC_RPC_DURATION, &[rpc.as_str()])
            }),
            rpc_errors,
            rejected_answers: counter(&names::BMSC_REJECTED_ANSWERS, &[]),
        }
    }

    /// Publishes the client's status: 1 on its state, 0 on the others, and
    /// the count of answers it rejected since start.
    pub fn observe(&self, current: BmscState, rejected_answers: u64) {
        for state in BmscState::ALL {
            self.state[state.index()].set(if *state == current { 1.0 } else { 0.0 });
        }
        self.rejected_answers.absolute(rejected_answers);
    }

    pub fn rpc_completed(&self, rpc: BmscRpc, elapsed: Duration) {
        self.rpc_duration[rpc.index()].record(elapsed.as_secs_f64());
    }

    pub fn rpc_failed(&self, rpc: BmscRpc, failure: RpcFailure) {
        self.rpc_errors[rpc.index() * RpcFailure::ALL.len() + failure.index()].increment(1);
    }
}

impl Default for BmscMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Process-wide counts: configuration reloads and sessions running.
#[derive(Debug, Clone)]
pub struct GatewayMetrics {
    reloads: Box<[Counter]>,
    sessions: Box<[Gauge]>,
}

impl GatewayMetrics {
    pub fn new() -> Self {
        Self {
            reloads: per_value(|r: &ReloadResult| counter(&names::CONFIG_RELOADS, &[r.as_str()])),
            sessions: per_value(|k: &SessionKind| gauge(&names::SESSIONS, &[k.as_str()])),
        }
    }

    pub fn reloaded(&self, result: ReloadResult) {
        self.reloads[result.index()].increment(1);
    }

    pub fn sessions(&self, kind: SessionKind, running: usize) {
        self.sessions[kind.index()].set(running as f64);
    }
}

impl Default for GatewayMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Sets `build_info{version}` to 1.
pub(super) fn publish_build_info() {
    gauge(&names::BUILD_INFO, &[env!("CARGO_PKG_VERSION")]).set(1.0);
}
