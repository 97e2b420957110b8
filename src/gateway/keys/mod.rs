//! The MTKs of a session (TS 33.246 §6.3.3): the [`key_task`] that drives
//! the MTK schedule and tells the session what to send, the [`mtk_keys`] it
//! draws under the current MSK with IDs and counters leased from the BM-SC,
//! and the [`journal`] that keeps every value used durable across restarts.

pub mod journal;
pub mod key_task;
pub mod mtk_keys;
