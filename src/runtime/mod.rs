//! The runtime around the protocol core: sockets, sender threads, the BM-SC
//! connection, the key journal, configuration.

pub mod config;
pub mod egress;
pub mod journal;
pub mod udp;
pub mod units;
