//! The MIKEY verification message with which a UE acknowledges an MSK message
//! whose V bit is set (seed §6.3.2.3.1; RFC 3830 §3.1 `R_MESSAGE = HDR, T,
//! [IDr], V`). Its V payload holds HMAC-SHA-1 under the auth_key of the MSK
//! message (same MUK, CSB ID and RAND) over the verification message up to the
//! MAC, followed by the identities and the timestamp value of the MSK message
//! (RFC 3830 §5.2: "the identities (not whole payloads) … directly follow the
//! MIKEY message"). minisip appends only the timestamp because it sends no ID
//! payloads; no second implementation with IDs was available to cross-check.

use super::MikeyError;
use super::envelope::{EnvelopeKeys, MAC_LEN};
use super::hdr::{CsIdMap, Hdr, data_type};
use super::message::{Payload, PayloadIter, PayloadType};
use super::msk_message;
use super::protected::{Sealed, counter_of};
use super::timestamp::Timestamp;
use crate::protocol::codec::{Codec, DecodeError};
use crate::protocol::keys::Muk;
use crate::protocol::profile::mikey as profile;

/// Appends the verification message for `msk_message`, an MSK message the UE
/// has accepted and whose V bit is set. `counter` is the UE's T value.
pub fn build_msk_ack(
    muk: &Muk,
    msk_message: &[u8],
    counter: u32,
    out: &mut Vec<u8>,
) -> Result<(), MikeyError> {
    let (init, info) = msk_message::parse(msk_message)?;
    if !info.verification_requested {
        return Err(MikeyError::WrongMessageKind(
            "the MSK message does not request verification (V bit clear)",
        ));
    }
    let hdr = Hdr {
        data_type: data_type::PSK_VERIFY,
        next_payload: PayloadType::Timestamp as u8,
        verification_requested: false,
        prf_func: profile::PRF_FUNC,
        csb_id: init.hdr.csb_id,
        cs_id_map: CsIdMap::Empty {
            num_cs: profile::NUM_CS,
        },
    };
    let start = out.len();
    hdr.encode(out);
    out.push(PayloadType::Verification as u8);
    Timestamp::Counter(counter).encode(out);
    out.push(PayloadType::Last as u8);
    out.push(profile::MAC_ALG);
    let keys = EnvelopeKeys::derive(muk.expose(), init.hdr.csb_id, init.rand);
    let mac = with_init_suffix(&init, &out[start..], |parts| keys.mac_parts(parts));
    out.extend_from_slice(&mac);
    Ok(())
}

/// Checks a verification message against the MSK message it acknowledges
/// (the BM-SC side) and returns the UE's T counter.
pub fn verify_msk_ack(muk: &Muk, msk_message: &[u8], ack: &[u8]) -> Result<u32, MikeyError> {
    let (init, _) = msk_message::parse(msk_message)?;
    let (hdr, mut payloads) = PayloadIter::start(ack)?;
    if hdr.data_type != data_type::PSK_VERIFY {
        return Err(MikeyError::WrongMessageKind(
            "HDR data type is not a pre-shared-key verification message",
        ));
    }
    if hdr.csb_id != init.hdr.csb_id {
        return Err(MikeyError::WrongMessageKind(
            "CSB ID differs from the acknowledged MSK message",
        ));
    }
    let (mut timestamp, mut verification) = (None, None);
    for located in payloads.by_ref() {
        if verification.is_some() {
            return Err(DecodeError::invalid("V", "not the last payload").into());
        }
        match located?.payload {
            Payload::Timestamp(t) if timestamp.is_none() => timestamp = Some(t),
            Payload::Timestamp(_) => return Err(MikeyError::DuplicatePayload("T")),
            Payload::Id(_) => {}
            Payload::Verification(v) => verification = Some(v),
            _ => return Err(MikeyError::UnexpectedPayload("other than T, IDr, V")),
        }
    }
    payloads.expect_end()?;
    let v = verification.ok_or(MikeyError::MissingPayload("V"))?;
    let counter = counter_of(timestamp.ok_or(MikeyError::MissingPayload("T"))?)?;
    if v.mac_alg() != profile::MAC_ALG {
        return Err(MikeyError::Unsupported {
            field: "V MAC alg",
            value: v.mac_alg().into(),
        });
    }
    let covered = ack
        .get(..ack.len().saturating_sub(MAC_LEN))
        .unwrap_or_default();
    let keys = EnvelopeKeys::derive(muk.expose(), init.hdr.csb_id, init.rand);
    if !with_init_suffix(&init, covered, |parts| {
        keys.verify_mac_parts(parts, v.mac())
    }) {
        return Err(MikeyError::BadMac);
    }
    Ok(counter)
}

/// Runs `f` on `message ‖ IDi ‖ IDr ‖ T` of the acknowledged MSK message.
fn with_init_suffix<R>(init: &Sealed<'_>, message: &[u8], f: impl FnOnce(&[&[u8]]) -> R) -> R {
    let t = init.timestamp.value_bytes();
    let idi = init.idi.map_or(&[][..], |id| id.data());
    let idr = init.idr.map_or(&[][..], |id| id.data());
    f(&[message, idi, idr, t.as_bytes()])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::keys::{KeyDomainId, Msk, MskId, MtkId};
    use crate::protocol::mikey::id::id_type;
    use crate::protocol::mikey::{
        Id, Message, MskMessageContent, MskMessageParams, MtkIdInterval, MukId, build_msk_message,
    };

    fn msk_message(request_ack: bool, csb_id: u32) -> Vec<u8> {
        let msk = Msk::new([1; 16]);
        let params = MskMessageParams {
            key_domain_id: KeyDomainId([1, 2, 3]),
            counter: 5,
            muk_id: MukId {
                idi: Id::new(id_type::URI, b"bmsc").unwrap(),
                idr: Id::new(id_type::NAI, b"ue").unwrap(),
            },
            rand: [2; 16],
            csb_id,
            content: MskMessageContent::Delivery {
                msk_id: MskId::new(1, 1),
                msk: &msk,
                validity: MtkIdInterval {
                    seq_l: MtkId(1),
                    seq_u: MtkId(9),
                },
                request_ack,
            },
        };
        let mut out = Vec::new();
        build_msk_message(&Muk::new([3; 32]), &params, &mut out);
        out
    }

    fn ack_for(init: &[u8]) -> Vec<u8> {
        let mut ack = Vec::new();
        build_msk_ack(&Muk::new([3; 32]), init, 77, &mut ack).unwrap();
        ack
    }

    #[test]
    fn ack_round_trip_and_layout() {
        let init = msk_message(true, 0x0102_0304);
        let ack = ack_for(&init);
        // HDR (data type 1, next T, CSB ID of the MSK message), T, V.
        assert_eq!(hex::encode(&ack[..10]), "01010500010203040001");
        assert_eq!(hex::encode(&ack[10..16]), "09020000004d");
        assert_eq!(&ack[16..18], &[0, 1]);
        assert_eq!(ack.len(), 18 + 20);
        assert_eq!(Message::decode(&ack).unwrap().payloads.len(), 2);
        assert_eq!(verify_msk_ack(&Muk::new([3; 32]), &init, &ack), Ok(77));
    }

    #[test]
    fn ack_rejections() {
        let init = msk_message(true, 0x0102_0304);
        let ack = ack_for(&init);
        assert_eq!(
            verify_msk_ack(&Muk::new([4; 32]), &init, &ack),
            Err(MikeyError::BadMac)
        );
        let mut tampered = ack.clone();
        tampered[15] ^= 1;
        assert_eq!(
            verify_msk_ack(&Muk::new([3; 32]), &init, &tampered),
            Err(MikeyError::BadMac)
        );
        let other_init = msk_message(true, 0x0a0b_0c0d);
        assert!(matches!(
            verify_msk_ack(&Muk::new([3; 32]), &other_init, &ack),
            Err(MikeyError::WrongMessageKind(_))
        ));
        let mut out = Vec::new();
        assert!(matches!(
            build_msk_ack(&Muk::new([3; 32]), &msk_message(false, 1), 1, &mut out),
            Err(MikeyError::WrongMessageKind(_))
        ));
        assert!(out.is_empty());
    }
}
