//! The BM-SC `KeyService` contract (`proto/bmsc.proto`, gRPC) and its
//! client. The gateway watches its Key Groups' MSKs and leases MTK-ID /
//! counter ranges through it; the probe can take its MSKs the same way; the
//! reference BM-SC ([`crate::bmsc`]) serves it.
//!
//! - [`msk_set`]: which MSK is current (pure, clock-free rules).
//! - [`validate`]: every BM-SC answer checked before it is installed, and
//!   the wire form of a record.
//! - [`client`]: [`MskClient`], reconnecting watch stream + leases.
//! - [`config`]: the client's TOML settings and the rules every BM-SC
//!   configuration shares.
//! - [`key_file`]: MSKs from a TOML file instead of the BM-SC.

pub mod backoff;
pub mod client;
pub mod config;
pub mod key_file;
pub mod msk_set;
pub mod validate;

pub use client::{
    ClientError, ClientStatus, ConnectionState, CurrentMskError, LeaseError, MskClient, RpcError,
};
pub use config::{ClientTlsFiles, ConfigError, MskClientConfig};
pub use key_file::{load_key_file, parse_key_file};
pub use msk_set::{MskRecord, MskSet, MskSetError, Upsert};
pub use validate::{LeaseAnswerError, LeaseRecord, MskAnswerError, MskScope};

/// Code generated from `proto/bmsc.proto` (package `mbms.bmsc.v1`).
pub mod proto {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("mbms.bmsc.v1");

    /// Redacts the key: wire messages end up in logs through `{:?}`.
    impl std::fmt::Debug for Msk {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Msk")
                .field("key_domain_id", &self.key_domain_id)
                .field("msk_id", &format_args!("{:#010x}", self.msk_id))
                .field("key", &format_args!("<{} bytes>", self.key.len()))
                .field("seq_l", &self.seq_l)
                .field("seq_u", &self.seq_u)
                .field("not_before_unix", &self.not_before_unix)
                .field("not_after_unix", &self.not_after_unix)
                .finish()
        }
    }

    /// Wipes the wire copy of the key when the message is dropped.
    impl Drop for Msk {
        fn drop(&mut self) {
            zeroize::Zeroize::zeroize(&mut self.key);
        }
    }
}
