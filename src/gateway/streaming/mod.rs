//! Streaming sessions (TS 33.246 §6.3.3.2.2, §6.6.2): RTP from encoders in,
//! SRTP out under the session's MTK, MIKEY MTK messages to the same address
//! on UDP 2269.
//!
//! - [`session`]: one session on air: its ingest side and its key task;
//! - [`ingest_workers`]: the few epoll threads that serve the ingest
//!   sockets of every session.

pub mod ingest_workers;
pub mod session;

pub use session::{
    KeyCommand, MAX_EGRESS_DATAGRAM, SessionContext, SessionState, SessionStats, StreamingHandle,
    start,
};
