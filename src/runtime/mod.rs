//! The runtime around the sans-IO core: threads, tasks, sockets, files and the
//! BM-SC connection. Time and randomness are read here and passed into
//! [`crate::protocol`].

pub mod admin;
pub mod bearer_token;
pub mod bmsc;
pub mod config;
pub mod config_lines;
pub mod demo;
pub mod download;
pub mod durable;
pub mod egress;
pub mod encoder;
pub mod gateway;
pub mod http_server;
pub mod ingest_pool;
pub mod journal;
pub mod key_task;
pub mod log_limit;
pub mod metrics;
pub mod mtk_keys;
pub mod probe;
pub mod reload;
pub mod sd_notify;
pub mod service;
pub mod streaming;
pub mod synthetic;
pub mod telemetry;
pub mod udp;
pub mod ue;
pub mod units;
