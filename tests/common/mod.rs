//! Helpers shared by the integration tests.

#![allow(dead_code)]

pub mod gateway;
pub mod http;
pub mod libsrtp;
pub mod pki;
pub mod process;
