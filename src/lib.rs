//! mbms-gateway: a 3GPP MBMS / 5G broadcast head-end gateway.
//!
//! The tree follows the network functions of TS 33.246, each a wing over
//! one shared core:
//!
//! - [`protocol`]: the sans-IO core (SRTP, MIKEY, DCF, FLUTE, the Key Request
//!   bodies); pure functions and state machines, no socket and no clock;
//! - [`runtime`]: the floor every wing stands on: sockets, the HTTP server
//!   loop and admin endpoint, metrics, durable files, and the BM-SC
//!   `KeyService` contract with its client;
//! - [`gateway`]: `mbms-gateway run`, the BM-SC Session and Transmission
//!   function: streaming and download sessions under MTKs it generates;
//! - [`bmsc`]: `mbms-gateway bmsc`, the reference BM-SC: the key server the
//!   gateway takes MSKs from, and the UE-facing Key Request and Key
//!   Distribution functions;
//! - [`ue`]: `mbms-gateway probe`, the UE side: key management and the probe
//!   that receives and verifies what a phone would;
//! - [`demo`]: `mbms-gateway demo`, all of the above on loopback.
//!
//! A wing imports the floor and the core, never another wing; only the demo
//! puts the wings together.

pub mod bmsc;
pub mod demo;
pub mod gateway;
pub mod protocol;
pub mod runtime;
pub mod ue;
