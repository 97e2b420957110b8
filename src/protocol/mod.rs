//! The sans-IO protocol core: pure functions and state machines over caller-owned
//! buffers. Time and randomness come in as arguments; nothing here touches a
//! socket, a file, a thread or the system clock.

pub mod codec;
pub mod dcf;
pub mod flute;
pub mod ingest;
pub mod key_request;
pub mod keys;
pub mod mikey;
pub mod mtk_schedule;
pub mod pacer;
pub mod profile;
pub mod reservation;
pub mod sdp;
pub mod srtp;
