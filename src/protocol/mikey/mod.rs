//! MIKEY (RFC 3830, RFC 4563) as profiled by TS 33.246 for MBMS: the payload
//! codecs, the MIKEY-1 PRF and envelope keys, and the two message families the
//! project speaks.
//!
//! - MTK messages (`HDR, EXT, T, RAND, KEMAC` under an MSK): built by the
//!   gateway ([`build_mtk_message`]), opened by a UE ([`open_mtk_message`]).
//! - MSK messages (`HDR, EXT, T, IDi, IDr, RAND, KEMAC` under a MUK): built by
//!   the reference BM-SC ([`build_msk_message`]), opened by a UE
//!   ([`open_msk_message`]), and acknowledged with a verification message
//!   when the V bit asks for it ([`build_msk_ack`], [`verify_msk_ack`]).
//!
//! [`peek_message`] reads what EXT says a message is, and its key identifiers,
//! before any key is chosen.
//!
//! Every payload implements [`Codec`](crate::protocol::codec::Codec) for its
//! body; the next-payload bytes that chain payloads together belong to the
//! [`message`] layer. Wire choices that TS 33.246 leaves open come from
//! [`profile::mikey`](crate::protocol::profile::mikey).

pub mod ack;
pub mod envelope;
pub mod ext;
pub mod hdr;
pub mod id;
pub mod kemac;
pub mod key_data;
pub mod message;
pub mod msk_message;
pub mod mtk_message;
pub mod prf;
mod protected;
pub mod rand;
pub mod reception;
pub mod serial;
pub mod timestamp;
pub mod verification;

pub use ack::{build_msk_ack, verify_msk_ack};
pub use ext::{GeneralExtension, KeyIds};
pub use hdr::{CsIdMap, Hdr, SrtpCs, SrtpIdMap};
pub use id::Id;
pub use kemac::Kemac;
pub use key_data::{KeyData, KeyType, KeyValidity, MtkIdInterval};
pub use message::{Message, Payload, PayloadType};
pub use msk_message::{
    MskMessageContent, MskMessageInfo, MskMessageParams, MukId, build_msk_message, peek_msk_message,
};
pub use mtk_message::{MtkKeyIds, MtkMessageParams, build_mtk_message, peek_mtk_key_ids};
pub use rand::Rand;
pub use reception::{
    MskUpdate, MtkReceptionState, MukReceptionState, OpenedMskMessage, OpenedMtk, PeekedMessage,
    open_msk_message, open_mtk_message, peek_message,
};
pub use timestamp::Timestamp;
pub use verification::Verification;

use crate::protocol::codec::DecodeError;
use crate::protocol::keys::MtkId;
use thiserror::Error;

/// Why a MIKEY message was not built into keys. Each UE-side rejection rule of
/// TS 33.246 §6.4.6 / §6.5 is its own variant, so a probe can count them apart.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MikeyError {
    #[error("MIKEY message malformed: {0}")]
    Malformed(#[from] DecodeError),
    #[error("MIKEY message lacks the {0} payload")]
    MissingPayload(&'static str),
    #[error("MIKEY message carries more than one {0} payload")]
    DuplicatePayload(&'static str),
    #[error("MIKEY message carries an unexpected {0} payload")]
    UnexpectedPayload(&'static str),
    #[error("not the expected MIKEY message kind: {0}")]
    WrongMessageKind(&'static str),
    #[error("MIKEY {field} {value} is outside the project profile")]
    Unsupported { field: &'static str, value: u64 },
    #[error(
        "MIKEY timestamp counter {counter} is not after the stored replay counter {last} (RFC 1982)"
    )]
    Replayed { counter: u32, last: u32 },
    #[error("MTK ID {} is not above the current MTK ID {}", mtk_id.0, current.0)]
    StaleMtkId { mtk_id: MtkId, current: MtkId },
    #[error("MTK ID {} is outside the MSK's validity [{}, {}]", mtk_id.0, validity.seq_l.0, validity.seq_u.0)]
    OutsideValidity {
        mtk_id: MtkId,
        validity: MtkIdInterval,
    },
    #[error("MIKEY KEMAC MAC does not verify (wrong key or altered message)")]
    BadMac,
}
