//! mbms-gateway: a 3GPP MBMS / 5G broadcast head-end gateway.
//!
//! [`protocol`] is the sans-IO core (SRTP, MIKEY, DCF, FLUTE); the runtime around
//! it owns sockets, threads and the BM-SC connection.

pub mod protocol;
pub mod runtime;
