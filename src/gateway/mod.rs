//! `mbms-gateway run`: the BM-SC Session and Transmission function of
//! TS 33.246. It takes MSKs from a BM-SC, draws MTKs under them, and protects
//! live encoder output (streaming: SRTP) and files (download: DCF over FLUTE)
//! under those MTKs, with the MIKEY MTK messages on air beside them.
//!
//! - [`supervisor`]: the [`Gateway`]: every session of one configuration and
//!   what they share (BM-SC client, key journal, egress threads, ingest
//!   workers); start, reload, stop;
//! - [`streaming`]: RTP in, SRTP out; [`download`]: objects in, FLUTE out;
//! - [`keys`]: MTKs of a session: the key task, leases, the key journal;
//! - [`egress`]: the sender thread per egress socket both kinds share;
//! - [`config`], [`reload`]: the configuration file and what a `SIGHUP` does;
//! - [`service`], [`telemetry`]: the process around it: admin endpoint,
//!   metrics, readiness, systemd.

pub mod config;
pub mod download;
pub mod egress;
pub mod keys;
pub mod reload;
pub mod service;
pub mod streaming;
pub mod supervisor;
pub mod telemetry;

pub use supervisor::Gateway;
