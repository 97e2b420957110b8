//! `mbms-gateway bmsc`: a reference BM-SC for labs, demos and tests. It
//! serves the `KeyService` contract ([`crate::runtime::key_service`]) to
//! gateways from a key file or generated, rotating MSKs ([`server`]), grants
//! lease ranges that never overlap ([`lease_book`]), and, when configured,
//! runs the UE-facing Key Request, Membership and Key Distribution functions
//! of TS 33.246 §6.3.2 ([`key_management`]).

pub mod config;
pub mod key_management;
pub mod lease_book;
pub mod server;

pub use config::{BmscConfig, GenerateConfig, KeySource, ServerTlsFiles};
pub use server::{Bmsc, BmscControl, RunningBmsc, serve};
