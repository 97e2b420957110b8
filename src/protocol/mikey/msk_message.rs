//! MSK messages (TS 33.246 §6.3.2, §6.4.6.1, §6.5.2–§6.5.3): an MSK, a Key
//! Validity update, or a solicited pull, under the MUK, in
//! `HDR, EXT(Key Domain ID, MSK ID), T(COUNTER), IDi, IDr, RAND, KEMAC`.
//! The reference BM-SC builds them; a UE opens them with
//! [`open_msk_message`](super::open_msk_message).

use super::MikeyError;
use super::ext::{GeneralExtension, KeyIds};
use super::id::Id;
use super::key_data::{KeyData, KeyType, KeyValidity, MtkIdInterval, kv};
use super::message::Payload;
use super::protected::{SealInput, Sealed, seal};
use super::rand::Rand;
use super::timestamp::Timestamp;
use crate::protocol::keys::{KeyDomainId, Msk, MskId, Muk};
use crate::protocol::profile::mikey as profile;

pub(crate) const MSK_KEY_TYPE: KeyType = KeyType::from_profile(profile::MSK_KEY_DATA_TYPE);
// MSK key data carries the MTK-ID interval and no salt; a profile change that
// breaks this must not compile.
const _: () = assert!(!MSK_KEY_TYPE.has_salt() && profile::MSK_KEY_VALIDITY == kv::INTERVAL);
// A validity-only message sends an empty key (see the profile constant).
const _: () = assert!(profile::MSK_VALIDITY_ONLY_KEY_LEN == 0);

/// The MUK identity of an MSK message: IDi and IDr (seed §6.4.6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MukId<'a> {
    pub idi: Id<'a>,
    pub idr: Id<'a>,
}

impl MukId<'_> {
    /// The MUK ID as one byte string, the ID data concatenated in the order of
    /// `profile::mikey::MUK_ID_IDI_FIRST`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let (first, second) = if profile::MUK_ID_IDI_FIRST {
            (self.idi, self.idr)
        } else {
            (self.idr, self.idi)
        };
        [first.data(), second.data()].concat()
    }
}

/// What an MSK message does. `request_ack` sets the HDR V bit: the UE answers
/// with a MIKEY verification message (seed §6.3.2.3.1).
#[derive(Debug, Clone, Copy)]
pub enum MskMessageContent<'a> {
    /// A new MSK (it replaces a stored one with the same MSK ID) and its validity.
    Delivery {
        msk_id: MskId,
        msk: &'a Msk,
        validity: MtkIdInterval,
        request_ack: bool,
    },
    /// Only new Key Validity data; [`MtkIdInterval::INVALIDATED`] (SEQl > SEQu)
    /// invalidates the MSK (seed §6.5.3, §6.3.2.1B).
    ValidityUpdate {
        msk_id: MskId,
        validity: MtkIdInterval,
        request_ack: bool,
    },
    /// "Ask me for the current MSK of this Key Group": Key Number 0, V bit
    /// never set, MAC-only KEMAC (seed §6.3.2.2.4).
    SolicitedPull { key_group: u16 },
}

/// One MSK message. `counter` must increase per MUK (RFC 1982); `rand` and
/// `csb_id` must be fresh random values.
#[derive(Debug, Clone, Copy)]
pub struct MskMessageParams<'a> {
    pub key_domain_id: KeyDomainId,
    pub counter: u32,
    pub muk_id: MukId<'a>,
    pub rand: [u8; profile::RAND_LEN],
    pub csb_id: u32,
    pub content: MskMessageContent<'a>,
}

/// Header fields of an MSK message, readable without the MUK: the UE picks
/// the MUK by `muk_id`. Nothing here is authenticated yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MskMessageInfo<'a> {
    pub key_domain_id: KeyDomainId,
    pub msk_id: MskId,
    pub counter: u32,
    pub muk_id: MukId<'a>,
    pub verification_requested: bool,
}

/// Appends one MSK message to `out`.
pub fn build_msk_message(muk: &Muk, params: &MskMessageParams<'_>, out: &mut Vec<u8>) {
    let (msk_id, key, validity, request_ack) = match params.content {
        MskMessageContent::Delivery {
            msk_id,
            msk,
            validity,
            request_ack,
        } => (
            msk_id,
            Some(msk.expose().as_slice()),
            Some(validity),
            request_ack,
        ),
        MskMessageContent::ValidityUpdate {
            msk_id,
            validity,
            request_ack,
        } => (msk_id, Some(&[][..]), Some(validity), request_ack),
        MskMessageContent::SolicitedPull { key_group } => (
            MskId::new(key_group, MskId::CURRENT_KEY_NUMBER),
            None,
            None,
            false,
        ),
    };
    let interval = validity.map(MtkIdInterval::to_bytes);
    let key_data = key.zip(interval.as_ref()).map(|(key, (from, to))| {
        KeyData::new(MSK_KEY_TYPE, key, None, KeyValidity::Interval { from, to })
            .expect("an MSK (or no key) with 2-byte bounds fits a key data sub-payload")
    });
    let timestamp = Timestamp::Counter(params.counter);
    let rand = Rand::from_array(&params.rand);
    let key_ids = KeyIds {
        key_domain_id: Some(params.key_domain_id),
        msk_id: Some(msk_id),
        mtk_id: None,
    };
    let payloads = [
        Payload::GeneralExtension(GeneralExtension::KeyIds(key_ids)),
        Payload::Timestamp(timestamp),
        Payload::Id(params.muk_id.idi),
        Payload::Id(params.muk_id.idr),
        Payload::Rand(rand),
    ];
    let input = SealInput {
        verification_requested: request_ack,
        csb_id: params.csb_id,
        timestamp,
        rand,
        payloads: &payloads,
        key_data,
    };
    seal(muk.expose(), &input, out);
}

/// Reads the identifiers of an MSK message without checking its MAC
/// (seed §6.4.6.1 step 1).
pub fn peek_msk_message(bytes: &[u8]) -> Result<MskMessageInfo<'_>, MikeyError> {
    parse(bytes).map(|(_, info)| info)
}

/// Parses an MSK message and checks that EXT marks it as one (no MTK ID).
pub(crate) fn parse(bytes: &[u8]) -> Result<(Sealed<'_>, MskMessageInfo<'_>), MikeyError> {
    let sealed = Sealed::parse(bytes)?;
    let info = info(&sealed)?;
    Ok((sealed, info))
}

/// The MSK message identifiers of a parsed message (seed §6.4.6.1 step 1).
pub(crate) fn info<'a>(sealed: &Sealed<'a>) -> Result<MskMessageInfo<'a>, MikeyError> {
    if sealed.key_ids.mtk_id.is_some() {
        return Err(MikeyError::WrongMessageKind(
            "EXT has an MTK ID, so this is an MTK message, not an MSK message",
        ));
    }
    Ok(MskMessageInfo {
        key_domain_id: sealed.key_domain_id()?,
        msk_id: sealed.msk_id()?,
        counter: sealed.counter()?,
        muk_id: MukId {
            idi: sealed.idi.ok_or(MikeyError::MissingPayload("IDi"))?,
            idr: sealed.idr.ok_or(MikeyError::MissingPayload("IDr"))?,
        },
        verification_requested: sealed.hdr.verification_requested,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::codec::Codec;
    use crate::protocol::keys::MtkId;
    use crate::protocol::mikey::id::id_type;
    use crate::protocol::mikey::{Message, Payload};

    #[test]
    fn muk_id_order_follows_profile() {
        let muk_id = MukId {
            idi: Id::new(id_type::URI, b"bmsc").unwrap(),
            idr: Id::new(id_type::NAI, b"ue").unwrap(),
        };
        let expected: &[u8] = if profile::MUK_ID_IDI_FIRST {
            b"bmscue"
        } else {
            b"uebmsc"
        };
        assert_eq!(muk_id.to_bytes(), expected);
    }

    #[test]
    fn delivery_layout() {
        let idi = Id::new(id_type::URI, b"bmsc.example").unwrap();
        let idr = Id::new(id_type::NAI, b"ue@example").unwrap();
        let msk = Msk::new([0x33; 16]);
        let params = MskMessageParams {
            key_domain_id: KeyDomainId([1, 2, 3]),
            counter: 7,
            muk_id: MukId { idi, idr },
            rand: [0x44; 16],
            csb_id: 0x0102_0304,
            content: MskMessageContent::Delivery {
                msk_id: MskId::new(5, 6),
                msk: &msk,
                validity: MtkIdInterval {
                    seq_l: MtkId(1),
                    seq_u: MtkId(100),
                },
                request_ack: true,
            },
        };
        let mut out = Vec::new();
        build_msk_message(&Muk::new([0x55; 32]), &params, &mut out);
        let msg = Message::decode(&out).unwrap();
        assert!(msg.hdr.verification_requested);
        let kinds: Vec<_> = msg.payloads.iter().map(Payload::payload_type).collect();
        use crate::protocol::mikey::PayloadType as P;
        assert_eq!(
            kinds,
            [
                P::GeneralExtension,
                P::Timestamp,
                P::Id,
                P::Id,
                P::Rand,
                P::Kemac
            ]
        );
        let Payload::Kemac(kemac) = &msg.payloads[5] else {
            panic!("KEMAC last");
        };
        // next(1) type/KV(1) key len(2) key(16) VF len(1) VF(2) VT len(1) VT(2)
        assert_eq!(kemac.encr_data().len(), 26);
        let info = peek_msk_message(&out).unwrap();
        assert_eq!(info.msk_id, MskId::new(5, 6));
        assert_eq!(info.counter, 7);
        assert_eq!(info.muk_id, MukId { idi, idr });
    }
}
