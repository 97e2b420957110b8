//! Every metric the gateway exports, in one table: name, type, label keys,
//! histogram buckets and help text. Names follow the Prometheus conventions:
//! one prefix, base units (`_seconds`, `_bytes`), `_total` on counters.
//! Call sites never spell a name; they use the typed handles in
//! [`super::handles`].

/// Builds a metric name under the one gateway prefix.
macro_rules! name {
    ($suffix:literal) => {
        concat!("mbms_gateway_", $suffix)
    };
}

/// The prefix shared by every metric name.
pub const PREFIX: &str = name!("");

/// Label keys. Values come only from configured names (`session`, `input`) and
/// fixed enums (the rest), never from packet contents (TOI, SSRC, addresses,
/// key IDs), so series cardinality is bounded by the configuration.
pub mod label {
    pub const SESSION: &str = "session";
    pub const INPUT: &str = "input";
    pub const KIND: &str = "kind";
    pub const REASON: &str = "reason";
    pub const TRANSPORT: &str = "transport";
    pub const STATE: &str = "state";
    /// How a download object entered the gateway (watch folder or HTTP push).
    pub const ORIGIN: &str = "origin";
    pub const RESULT: &str = "result";
    /// Only on [`super::BUILD_INFO`]: the crate version.
    pub const VERSION: &str = "version";

    /// Every label key in use.
    pub const ALL: [&str; 9] = [
        SESSION, INPUT, KIND, REASON, TRANSPORT, STATE, ORIGIN, RESULT, VERSION,
    ];
}

/// How a metric is exported.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MetricType {
    Counter,
    Gauge,
    /// A Prometheus histogram with these upper bucket bounds (in the metric's
    /// base unit); never a summary, so series aggregate across instances.
    Histogram(&'static [f64]),
}

/// One exported metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricDef {
    pub name: &'static str,
    pub kind: MetricType,
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

use label::{INPUT, KIND, ORIGIN, REASON, RESULT, SESSION, STATE, TRANSPORT, VERSION};

/// Pacing error of one packet: how long after its due time it left. A paced
/// stream at a few Mbit/s has inter-packet gaps of about 1 ms, so the buckets
/// resolve 100 µs and reach a quarter second (a stall).
pub const PACER_LATENESS_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
];

/// Time from an RTP packet's arrival at the ingest socket to the send of its
/// SRTP form: up to the ingest workers' `min_wake_interval` (1 ms by default)
/// when healthy, more under queueing.
pub const INGEST_TO_EGRESS_BUCKETS: &[f64] = &[
    0.00002, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1,
];

/// BM-SC unary call duration: a LAN round trip up to the call timeout.
pub const BMSC_RPC_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

pub const INGEST_PACKETS: MetricDef = MetricDef {
    name: name!("ingest_packets_total"),
    kind: MetricType::Counter,
    labels: &[SESSION, INPUT],
    help: "RTP packets received on an input of a streaming session.",
};

pub const INGEST_BYTES: MetricDef = MetricDef {
    name: name!("ingest_bytes_total"),
    kind: MetricType::Counter,
    labels: &[SESSION, INPUT],
    help: "Bytes of RTP packets (UDP payload) received on an input of a streaming session.",
};

pub const INGEST_DROPPED: MetricDef = MetricDef {
    name: name!("ingest_dropped_total"),
    kind: MetricType::Counter,
    labels: &[SESSION, REASON],
    help: "Ingest packets dropped before egress, by reason.",
};

pub const EGRESS_PACKETS: MetricDef = MetricDef {
    name: name!("egress_packets_total"),
    kind: MetricType::Counter,
    labels: &[SESSION, KIND],
    help: "Datagrams sent, by kind (srtp, srtcp, alc, mikey).",
};

pub const EGRESS_BYTES: MetricDef = MetricDef {
    name: name!("egress_bytes_total"),
    kind: MetricType::Counter,
    labels: &[SESSION, KIND],
    help: "Bytes sent (UDP payload), by kind (srtp, srtcp, alc, mikey).",
};

pub const EGRESS_SEND_ERRORS: MetricDef = MetricDef {
    name: name!("egress_send_errors_total"),
    kind: MetricType::Counter,
    labels: &[SESSION],
    help: "Send system calls that failed; their datagrams are lost.",
};

pub const EGRESS_QUEUE_FULL: MetricDef = MetricDef {
    name: name!("egress_queue_full_total"),
    kind: MetricType::Counter,
    labels: &[SESSION],
    help: "Times a download session's sender found the egress queue full and waited (back-pressure; streaming workers send on the egress socket themselves).",
};

pub const EGRESS_QUEUE_DEPTH: MetricDef = MetricDef {
    name: name!("egress_queue_depth"),
    kind: MetricType::Gauge,
    labels: &[SESSION],
    help: "Batches of this download session waiting in its egress queue (sessions with equal socket settings share one queue).",
};

pub const PACER_LATENESS: MetricDef = MetricDef {
    name: name!("pacer_lateness_seconds"),
    kind: MetricType::Histogram(PACER_LATENESS_BUCKETS),
    labels: &[SESSION],
    help: "Per burst of a download session: how long after it could have left (pacer allowed, sender free) its latest packet was let go; a full egress queue is not counted.",
};

pub const INGEST_TO_EGRESS: MetricDef = MetricDef {
    name: name!("ingest_to_egress_latency_seconds"),
    kind: MetricType::Histogram(INGEST_TO_EGRESS_BUCKETS),
    labels: &[SESSION],
    help: "Time from the kernel's receive timestamp of the oldest packet of an ingest burst to the send of the burst's protected packets (one observation per burst).",
};

pub const MTK_ROTATIONS: MetricDef = MetricDef {
    name: name!("mtk_rotations_total"),
    kind: MetricType::Counter,
    labels: &[SESSION],
    help: "MTK changes (a new MTK became the one protecting traffic).",
};

pub const MIKEY_SENT: MetricDef = MetricDef {
    name: name!("mikey_messages_sent_total"),
    kind: MetricType::Counter,
    labels: &[SESSION, TRANSPORT],
    help: "MIKEY MTK messages sent, by transport (udp: port 2269; flute: in-band object).",
};

pub const MSK_VALIDITY_SECONDS: MetricDef = MetricDef {
    name: name!("msk_validity_remaining_seconds"),
    kind: MetricType::Gauge,
    labels: &[SESSION],
    help: "Seconds until the MSK protecting the session's MTKs expires (0: none valid).",
};

pub const MSK_VALIDITY_MTK_IDS: MetricDef = MetricDef {
    name: name!("msk_validity_remaining_mtk_ids"),
    kind: MetricType::Gauge,
    labels: &[SESSION],
    help: "MTK IDs left under the current MSK before its MTK ID range is exhausted.",
};

pub const FLUTE_OBJECTS_SENT: MetricDef = MetricDef {
    name: name!("flute_objects_sent_total"),
    kind: MetricType::Counter,
    labels: &[SESSION],
    help: "Transmissions of FLUTE file objects sent to their last packet (each carousel repetition counts; MIKEY objects do not).",
};

pub const FLUTE_FDT_INSTANCES_SENT: MetricDef = MetricDef {
    name: name!("flute_fdt_instances_sent_total"),
    kind: MetricType::Counter,
    labels: &[SESSION],
    help: "FLUTE FDT Instances sent.",
};

pub const DOWNLOAD_OBJECTS_INGESTED: MetricDef = MetricDef {
    name: name!("download_objects_ingested_total"),
    kind: MetricType::Counter,
    labels: &[SESSION, ORIGIN],
    help: "Complete objects handed to a download session, by origin (watch, push).",
};

pub const DOWNLOAD_BYTES_INGESTED: MetricDef = MetricDef {
    name: name!("download_bytes_ingested_total"),
    kind: MetricType::Counter,
    labels: &[SESSION, ORIGIN],
    help: "Bytes of the objects handed to a download session, by origin (watch, push).",
};

pub const DOWNLOAD_OBJECTS_REJECTED: MetricDef = MetricDef {
    name: name!("download_objects_rejected_total"),
    kind: MetricType::Counter,
    labels: &[SESSION, REASON],
    help: "Objects of a download session refused or abandoned before sending, by reason.",
};

pub const PUSH_REQUESTS_REJECTED: MetricDef = MetricDef {
    name: name!("push_requests_rejected_total"),
    kind: MetricType::Counter,
    labels: &[REASON],
    help: "HTTP push requests refused before they named a configured download session, by reason.",
};

pub const BMSC_CONNECTION_STATE: MetricDef = MetricDef {
    name: name!("bmsc_connection_state"),
    kind: MetricType::Gauge,
    labels: &[STATE],
    help: "1 for the BM-SC connection's current state, 0 for the others.",
};

pub const BMSC_RPC_DURATION: MetricDef = MetricDef {
    name: name!("bmsc_rpc_duration_seconds"),
    kind: MetricType::Histogram(BMSC_RPC_BUCKETS),
    labels: &[KIND],
    help: "Duration of BM-SC unary calls that completed, by call.",
};

pub const BMSC_RPC_ERRORS: MetricDef = MetricDef {
    name: name!("bmsc_rpc_errors_total"),
    kind: MetricType::Counter,
    labels: &[KIND, REASON],
    help: "BM-SC unary calls that failed, by call and reason (status, timeout).",
};

pub const BMSC_REJECTED_ANSWERS: MetricDef = MetricDef {
    name: name!("bmsc_rejected_answers_total"),
    kind: MetricType::Counter,
    labels: &[],
    help: "BM-SC answers the gateway refused after validation.",
};

pub const CONFIG_RELOADS: MetricDef = MetricDef {
    name: name!("config_reloads_total"),
    kind: MetricType::Counter,
    labels: &[RESULT],
    help: "Configuration reloads (SIGHUP), by result (applied; partial: some sessions failed to start; refused: invalid or not reloadable, the running configuration stays).",
};

pub const SESSIONS: MetricDef = MetricDef {
    name: name!("sessions"),
    kind: MetricType::Gauge,
    labels: &[KIND],
    help: "Sessions running, by kind (streaming, download).",
};

pub const BUILD_INFO: MetricDef = MetricDef {
    name: name!("build_info"),
    kind: MetricType::Gauge,
    labels: &[VERSION],
    help: "Always 1; the label carries the gateway version.",
};

/// Every metric, for describing and bucket configuration at install time.
pub const ALL: &[MetricDef] = &[
    INGEST_PACKETS,
    INGEST_BYTES,
    INGEST_DROPPED,
    EGRESS_PACKETS,
    EGRESS_BYTES,
    EGRESS_SEND_ERRORS,
    EGRESS_QUEUE_FULL,
    EGRESS_QUEUE_DEPTH,
    PACER_LATENESS,
    INGEST_TO_EGRESS,
    MTK_ROTATIONS,
    MIKEY_SENT,
    MSK_VALIDITY_SECONDS,
    MSK_VALIDITY_MTK_IDS,
    FLUTE_OBJECTS_SENT,
    FLUTE_FDT_INSTANCES_SENT,
    DOWNLOAD_OBJECTS_INGESTED,
    DOWNLOAD_BYTES_INGESTED,
    DOWNLOAD_OBJECTS_REJECTED,
    PUSH_REQUESTS_REJECTED,
    BMSC_CONNECTION_STATE,
    BMSC_RPC_DURATION,
    BMSC_RPC_ERRORS,
    BMSC_REJECTED_ANSWERS,
    CONFIG_RELOADS,
    SESSIONS,
    BUILD_INFO,
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_follow_the_conventions() {
        let mut seen = HashSet::new();
        for def in ALL {
            assert!(seen.insert(def.name), "{} listed twice", def.name);
            let suffix = def.name.strip_prefix(PREFIX).unwrap_or_else(|| {
                panic!("{} lacks the prefix {PREFIX}", def.name);
            });
            assert!(
                suffix
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{}",
                def.name
            );
            assert_eq!(
                def.kind == MetricType::Counter,
                def.name.ends_with("_total"),
                "{}: `_total` exactly on counters",
                def.name
            );
            assert!(!def.help.is_empty(), "{} has no help", def.name);
            for key in def.labels {
                assert!(label::ALL.contains(key), "{}: label {key}", def.name);
            }
            if def.labels.contains(&label::VERSION) {
                assert_eq!(def.name, BUILD_INFO.name);
            }
        }
    }

    #[test]
    fn histograms_have_increasing_buckets_in_seconds() {
        let histograms: Vec<_> = ALL
            .iter()
            .filter_map(|d| match d.kind {
                MetricType::Histogram(b) => Some((d.name, b)),
                _ => None,
            })
            .collect();
        assert_eq!(histograms.len(), 3);
        for (name, buckets) in histograms {
            assert!(name.ends_with("_seconds"), "{name}");
            assert!(!buckets.is_empty());
            assert!(buckets.windows(2).all(|w| w[0] < w[1]), "{name}");
            assert!(buckets[0] > 0.0, "{name}");
        }
    }
}
