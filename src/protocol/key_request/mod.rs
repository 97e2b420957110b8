//! The UE-facing key management of TS 33.246 (seed §6.2.1, §6.3.2): the Key
//! Request function's HTTP Digest authentication and XML bodies, the keys a UE
//! and the BM-SC share after GBA, and the UE's MSK store. The MIKEY MSK
//! messages themselves are in [`crate::protocol::mikey`].

pub mod bodies;
pub mod credentials;
pub mod digest;
pub mod ue_store;

pub use bodies::{BodyError, KeyRef, KeyRequest, KeyResponse, Status};
pub use credentials::{KsNaf, UeSecurityAssociation};
pub use digest::{
    Algorithm, AuthenticationInfo, Challenge, Credentials, DigestError, NonceBook, NonceError,
};
pub use ue_store::{
    BackOff, MAX_PENDING_REQUESTS, MSKS_PER_KEY_GROUP, MskOutcome, MskReception, StoredMsk,
    UeKeyError, UeMskStore,
};
