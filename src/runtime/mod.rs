//! The runtime floor: what more than one wing stands on. Threads, sockets,
//! files and clocks live here and in the wings; time and randomness are read
//! here and passed into [`crate::protocol`]. Nothing here imports a wing.

pub mod admin;
pub mod bearer_token;
pub mod config_lines;
pub mod datagram_slab;
pub mod durable;
pub mod http_server;
pub mod key_service;
pub mod log_limit;
pub mod metrics;
pub mod sd_notify;
pub mod synthetic;
pub mod tls;
pub mod udp;
pub mod units;
pub mod wall_clock;
