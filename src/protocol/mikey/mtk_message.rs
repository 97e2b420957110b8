//! MTK messages (TS 33.246 §6.3.3.2, design §2): the MTK and its salt under
//! the MSK, in `HDR, EXT(Key Domain ID, MSK ID, MTK ID), T(COUNTER), RAND,
//! KEMAC(TEK+SALT, KV null)`. The gateway builds them; a UE opens them with
//! [`open_mtk_message`](super::open_mtk_message).

use super::MikeyError;
use super::ext::{GeneralExtension, KeyIds};
use super::key_data::{KeyData, KeyType, KeyValidity, kv};
use super::message::Payload;
use super::protected::{SealInput, Sealed, seal};
use super::rand::Rand;
use super::timestamp::Timestamp;
use crate::protocol::keys::{KeyDomainId, Msk, MskId, Mtk, MtkId};
use crate::protocol::profile::mikey as profile;

const MTK_KEY_TYPE: KeyType = KeyType::from_profile(profile::MTK_KEY_DATA_TYPE);
// The builder below writes a salted key with null validity; a profile change
// that breaks this must not compile.
const _: () = assert!(MTK_KEY_TYPE.has_salt() && profile::MTK_KEY_VALIDITY == kv::NULL);

/// What one MTK message says. `counter` must be strictly increasing per MSK
/// (RFC 1982) and journaled before the message leaves (design §3); `rand` and
/// `csb_id` must be fresh random values for every message.
#[derive(Debug, Clone)]
pub struct MtkMessageParams<'a> {
    pub key_domain_id: KeyDomainId,
    pub msk_id: MskId,
    pub mtk_id: MtkId,
    pub counter: u32,
    pub mtk: &'a Mtk,
    pub rand: [u8; profile::RAND_LEN],
    pub csb_id: u32,
}

/// The key identifiers and counter of an MTK message, readable without the
/// MSK: a UE picks its MSK by them, a monitor detects missed keys by them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MtkKeyIds {
    pub key_domain_id: KeyDomainId,
    pub msk_id: MskId,
    pub mtk_id: MtkId,
    pub counter: u32,
}

/// Appends one MTK message to `out` (wire reference §2.7, profile H1: the MTK
/// is the SRTP master key, the salt the master salt).
pub fn build_mtk_message(msk: &Msk, params: &MtkMessageParams<'_>, out: &mut Vec<u8>) {
    let timestamp = Timestamp::Counter(params.counter);
    let rand = Rand::from_array(&params.rand);
    let key_ids = KeyIds {
        key_domain_id: Some(params.key_domain_id),
        msk_id: Some(params.msk_id),
        mtk_id: Some(params.mtk_id),
    };
    let payloads = [
        Payload::GeneralExtension(GeneralExtension::KeyIds(key_ids)),
        Payload::Timestamp(timestamp),
        Payload::Rand(rand),
    ];
    let key_data = KeyData::new(
        MTK_KEY_TYPE,
        params.mtk.key.expose(),
        Some(params.mtk.salt.expose()),
        KeyValidity::Null,
    )
    .expect("a 16-byte key with a 14-byte salt fits a key data sub-payload");
    let input = SealInput {
        verification_requested: false,
        csb_id: params.csb_id,
        timestamp,
        rand,
        payloads: &payloads,
        key_data: Some(key_data),
    };
    seal(msk.expose(), &input, out);
}

/// Reads the key identifiers and counter of an MTK message without checking
/// its MAC (seed §6.4.6.2 step 1). Nothing here is authenticated yet.
pub fn peek_mtk_key_ids(bytes: &[u8]) -> Result<MtkKeyIds, MikeyError> {
    parse(bytes).map(|(_, ids)| ids)
}

/// Parses an MTK message and checks that EXT marks it as one.
pub(crate) fn parse(bytes: &[u8]) -> Result<(Sealed<'_>, MtkKeyIds), MikeyError> {
    let sealed = Sealed::parse(bytes)?;
    let ids = key_ids(&sealed)?;
    Ok((sealed, ids))
}

/// The MTK message identifiers of a parsed message (seed §6.4.6.2 step 1).
pub(crate) fn key_ids(sealed: &Sealed<'_>) -> Result<MtkKeyIds, MikeyError> {
    let mtk_id = sealed.key_ids.mtk_id.ok_or(MikeyError::WrongMessageKind(
        "EXT has no MTK ID, so this is not an MTK message",
    ))?;
    if sealed.idi.is_some() {
        return Err(MikeyError::UnexpectedPayload("ID"));
    }
    Ok(MtkKeyIds {
        key_domain_id: sealed.key_domain_id()?,
        msk_id: sealed.msk_id()?,
        mtk_id,
        counter: sealed.counter()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::codec::Codec;
    use crate::protocol::keys::{MtkKey, MtkSalt};
    use crate::protocol::mikey::{Message, hdr::Hdr};

    pub(crate) fn sample_mtk() -> Mtk {
        Mtk {
            key: MtkKey::new(*b"0123456789abcdef"),
            salt: MtkSalt::new(*b"saltsaltsalt14"),
        }
    }

    #[test]
    fn layout_follows_the_profile() {
        let mtk = sample_mtk();
        let params = MtkMessageParams {
            key_domain_id: KeyDomainId([0x32, 0xf4, 0x10]),
            msk_id: MskId::new(1, 2),
            mtk_id: MtkId(3),
            counter: 0x0102_0304,
            mtk: &mtk,
            rand: [0xa5; 16],
            csb_id: 0xcafe_f00d,
        };
        let mut out = vec![0xff]; // appends, keeps what was there
        build_mtk_message(&Msk::new([9; 16]), &params, &mut out);
        let msg = &out[1..];
        // HDR: v1, data type 0, next EXT(21), V=0 PRF 0, CSB ID, #CS 0, map type 1.
        assert_eq!(hex::encode(&msg[..10]), "01001500cafef00d0001");
        // EXT: next T(5), type 3, 18 bytes of Key ID entries.
        assert_eq!(
            hex::encode(&msg[10..32]),
            "05030012000003 32f410 010004 00010002 020002 0003".replace(' ', "")
        );
        // T: next RAND(11), COUNTER.
        assert_eq!(hex::encode(&msg[32..38]), "0b0201020304");
        // RAND: next KEMAC(1), 16 bytes.
        assert_eq!(msg[38], 1);
        assert_eq!(msg[39], 16);
        assert_eq!(&msg[40..56], &[0xa5; 16]);
        // KEMAC: last, AES-CM-128, 36 bytes of key data, HMAC-SHA-1-160.
        assert_eq!(hex::encode(&msg[56..60]), "00010024");
        assert_eq!(msg[60 + 36], 1);
        assert_eq!(msg.len(), 60 + 36 + 1 + 20);

        let decoded = Message::decode(msg).unwrap();
        assert_eq!(decoded.payloads.len(), 4);
        assert_eq!(
            decoded.to_vec(),
            msg,
            "generic codec round-trips a built message"
        );
        assert!(!decoded.hdr.verification_requested);
        assert_eq!(Hdr::decode(&msg[..10]).unwrap().csb_id, 0xcafe_f00d);
        assert_eq!(
            peek_mtk_key_ids(msg).unwrap(),
            MtkKeyIds {
                key_domain_id: params.key_domain_id,
                msk_id: params.msk_id,
                mtk_id: params.mtk_id,
                counter: params.counter,
            }
        );
    }

    #[test]
    fn ciphertext_hides_the_mtk() {
        let mtk = sample_mtk();
        let params = MtkMessageParams {
            key_domain_id: KeyDomainId([0; 3]),
            msk_id: MskId(0),
            mtk_id: MtkId(1),
            counter: 1,
            mtk: &mtk,
            rand: [0; 16],
            csb_id: 0,
        };
        let mut out = Vec::new();
        build_mtk_message(&Msk::new([1; 16]), &params, &mut out);
        let has = |needle: &[u8]| out.windows(needle.len()).any(|w| w == needle);
        assert!(!has(mtk.key.expose()) && !has(mtk.salt.expose()));
    }
}
