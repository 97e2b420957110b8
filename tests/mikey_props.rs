//! Property tests for MIKEY: every codec round-trips, no decoder or opener
//! panics on any input, and any change to a sealed message is rejected.

use mbms_gateway::protocol::codec::{Codec, Reader};
use mbms_gateway::protocol::keys::{KeyDomainId, Msk, MskId, Mtk, MtkId, MtkKey, MtkSalt, Muk};
use mbms_gateway::protocol::mikey::key_data::KeyDataChain;
use mbms_gateway::protocol::mikey::{
    CsIdMap, GeneralExtension, Hdr, Id, Kemac, KeyData, KeyIds, KeyType, KeyValidity, Message,
    MskMessageContent, MskMessageParams, MtkIdInterval, MtkMessageParams, MtkReceptionState, MukId,
    MukReceptionState, Payload, Rand, SrtpIdMap, Timestamp, Verification, build_msk_ack,
    build_msk_message, build_mtk_message, open_msk_message, open_mtk_message, peek_msk_message,
    peek_mtk_key_ids, verify_msk_ack,
};
use proptest::prelude::*;
use proptest::sample::select;

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..=max)
}

fn assert_round_trip<'a, T: Codec<'a> + PartialEq + std::fmt::Debug>(
    value: &T,
    buf: &'a mut Vec<u8>,
) -> Result<(), TestCaseError> {
    value.encode(buf);
    prop_assert_eq!(buf.len(), value.encoded_len());
    let decoded = T::decode(buf).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&decoded, value);
    Ok(())
}

fn key_ids() -> impl Strategy<Value = KeyIds> {
    (
        prop::option::of(any::<[u8; 3]>()),
        prop::option::of(any::<u32>()),
        prop::option::of(any::<u16>()),
    )
        .prop_map(|(kd, msk, mtk)| KeyIds {
            key_domain_id: kd.map(KeyDomainId),
            msk_id: msk.map(MskId),
            mtk_id: mtk.map(MtkId),
        })
}

fn timestamp() -> impl Strategy<Value = Timestamp> {
    prop_oneof![
        any::<u64>().prop_map(Timestamp::NtpUtc),
        any::<u64>().prop_map(Timestamp::Ntp),
        any::<u32>().prop_map(Timestamp::Counter),
    ]
}

/// Owned inputs for the borrowed payload types.
#[derive(Debug, Clone)]
struct Inputs {
    data: Vec<u8>,
    other: Vec<u8>,
    small: Vec<u8>,
    mac_alg: u8,
    selector: u8,
    kind: u8,
}

fn inputs() -> impl Strategy<Value = Inputs> {
    (
        bytes(300),
        bytes(40),
        bytes(20),
        0u8..=2,
        any::<u8>(),
        any::<u8>(),
    )
        .prop_map(|(data, other, small, mac_alg, selector, kind)| Inputs {
            data,
            other,
            small,
            mac_alg,
            selector,
            kind,
        })
}

fn mac_of(alg: u8, seed: &[u8]) -> Vec<u8> {
    let len = [0, 20, 32][usize::from(alg)];
    (0..len)
        .map(|i| seed.get(i).copied().unwrap_or(i as u8))
        .collect()
}

proptest! {
    #[test]
    fn payload_codecs_round_trip(ids in key_ids(), t in timestamp(), i in inputs(), csb: u32, v: bool) {
        let mut buf = Vec::new();
        assert_round_trip(&GeneralExtension::KeyIds(ids), &mut buf)?;
        let mut buf = Vec::new();
        assert_round_trip(&GeneralExtension::other(i.kind % 3, &i.data).unwrap(), &mut buf)?;
        let mut buf = Vec::new();
        assert_round_trip(&t, &mut buf)?;
        let mut buf = Vec::new();
        assert_round_trip(&Rand::new(&i.data[..i.data.len().min(255)]).unwrap(), &mut buf)?;
        let mut buf = Vec::new();
        assert_round_trip(&Id::new(i.kind, &i.data).unwrap(), &mut buf)?;
        let mac = mac_of(i.mac_alg, &i.small);
        let mut buf = Vec::new();
        assert_round_trip(&Kemac::new(i.kind, &i.data, i.mac_alg, &mac).unwrap(), &mut buf)?;
        let mut buf = Vec::new();
        assert_round_trip(&Verification::new(i.mac_alg, &mac).unwrap(), &mut buf)?;

        let key_type = [KeyType::Tgk, KeyType::TgkSalt, KeyType::Tek, KeyType::TekSalt]
            [usize::from(i.kind % 4)];
        let salt = key_type.has_salt().then_some(i.small.as_slice());
        let validity = match i.selector % 3 {
            0 => KeyValidity::Null,
            1 => KeyValidity::Spi(&i.small),
            _ => KeyValidity::Interval { from: &i.small, to: &i.other },
        };
        let kd = KeyData::new(key_type, &i.other, salt, validity).unwrap();
        let mut buf = Vec::new();
        assert_round_trip(&kd, &mut buf)?;

        let srtp = &i.data[..i.data.len() / 9 * 9];
        let cs_id_map = if i.selector % 2 == 0 {
            CsIdMap::Empty { num_cs: i.kind }
        } else {
            CsIdMap::Srtp(SrtpIdMap::from_bytes(&srtp[..srtp.len().min(255 * 9)]).unwrap())
        };
        let hdr = Hdr {
            data_type: i.kind,
            next_payload: i.selector,
            verification_requested: v,
            prf_func: i.mac_alg,
            csb_id: csb,
            cs_id_map,
        };
        let mut buf = Vec::new();
        assert_round_trip(&hdr, &mut buf)?;

        let msg = Message {
            hdr: Hdr { next_payload: 21, ..hdr },
            payloads: vec![
                Payload::GeneralExtension(GeneralExtension::KeyIds(ids)),
                Payload::Timestamp(t),
                Payload::Id(Id::new(0, &i.small).unwrap()),
                Payload::Rand(Rand::new(&i.small).unwrap()),
                Payload::Kemac(Kemac::new(1, &i.other, i.mac_alg, &mac).unwrap()),
                Payload::Verification(Verification::new(i.mac_alg, &mac).unwrap()),
            ],
        };
        let mut buf = Vec::new();
        assert_round_trip(&msg, &mut buf)?;
    }

    #[test]
    fn decoders_never_panic(input in bytes(400)) {
        let _ = Hdr::decode(&input);
        let _ = GeneralExtension::decode(&input);
        let _ = Timestamp::decode(&input);
        let _ = Rand::decode(&input);
        let _ = Id::decode(&input);
        let _ = Kemac::decode(&input);
        let _ = KeyData::decode(&input);
        let _ = Verification::decode(&input);
        let _ = Message::decode(&input);
        let _ = Message::read(&mut Reader::new(&input));
        let _ = KeyDataChain::new(&input).count();
        let _ = peek_mtk_key_ids(&input);
        let _ = peek_msk_message(&input);
        let _ = mbms_gateway::protocol::mikey::peek_message(&input);
        let _ = open_mtk_message(&Msk::new([0; 16]), &mut MtkReceptionState::default(), &input);
        let _ = open_msk_message(&Muk::new([0; 32]), &mut MukReceptionState::default(), &input);
        let _ = build_msk_ack(&Muk::new([0; 32]), &input, 1, &mut Vec::new());
        let _ = verify_msk_ack(&Muk::new([0; 32]), &input, &input);
    }

    /// Random bytes behind a valid-looking header reach the payload walkers.
    #[test]
    fn payload_walk_never_panics(first in select(vec![1u8, 5, 6, 9, 11, 21]), body in bytes(300)) {
        let mut input = vec![1, 0, first, 0, 0, 0, 0, 1, 0, 1];
        input.extend_from_slice(&body);
        let _ = Message::decode(&input);
        let _ = peek_mtk_key_ids(&input);
        let _ = peek_msk_message(&input);
        let _ = open_mtk_message(&Msk::new([0; 16]), &mut MtkReceptionState::default(), &input);
        let _ = open_msk_message(&Muk::new([0; 32]), &mut MukReceptionState::default(), &input);
    }

    #[test]
    fn mtk_build_open_round_trip(
        msk: [u8; 16], key: [u8; 16], salt: [u8; 14], kd: [u8; 3], msk_id: u32,
        mtk_id in 1u16.., counter: u32, rand: [u8; 16], csb_id: u32,
        last_counter: u32, previous_mtk_id: u16,
    ) {
        let msk = Msk::new(msk);
        let mtk = Mtk { key: MtkKey::new(key), salt: MtkSalt::new(salt) };
        let params = MtkMessageParams {
            key_domain_id: KeyDomainId(kd),
            msk_id: MskId(msk_id),
            mtk_id: MtkId(mtk_id),
            counter,
            mtk: &mtk,
            rand,
            csb_id,
        };
        let mut out = Vec::new();
        build_mtk_message(&msk, &params, &mut out);
        let mut state = MtkReceptionState {
            last_counter: Some(counter.wrapping_sub(1 + last_counter % 0x7fff_ffff)),
            current_mtk_id: Some(MtkId(previous_mtk_id % mtk_id)),
            validity: None,
        };
        let opened = open_mtk_message(&msk, &mut state, &out)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(opened.mtk, mtk);
        prop_assert_eq!(opened.key_ids.msk_id, MskId(msk_id));
        prop_assert_eq!(opened.key_ids.mtk_id, MtkId(mtk_id));
        prop_assert_eq!(opened.key_ids.key_domain_id, KeyDomainId(kd));
        prop_assert_eq!(state.last_counter, Some(counter));
    }

    /// Every byte of a sealed MTK message is covered: any change is rejected.
    #[test]
    fn any_changed_mtk_byte_is_rejected(at: prop::sample::Index, flip in 1u8.., cut in 0usize..8) {
        let mtk = Mtk { key: MtkKey::new([3; 16]), salt: MtkSalt::new([4; 14]) };
        let params = MtkMessageParams {
            key_domain_id: KeyDomainId([1, 2, 3]),
            msk_id: MskId(9),
            mtk_id: MtkId(2),
            counter: 77,
            mtk: &mtk,
            rand: [5; 16],
            csb_id: 6,
        };
        let msk = Msk::new([8; 16]);
        let mut out = Vec::new();
        build_mtk_message(&msk, &params, &mut out);
        let mut changed = out.clone();
        changed[at.index(out.len())] ^= flip;
        prop_assert!(open_mtk_message(&msk, &mut MtkReceptionState::default(), &changed).is_err());
        let truncated = &out[..out.len() - 1 - cut];
        prop_assert!(open_mtk_message(&msk, &mut MtkReceptionState::default(), truncated).is_err());
    }

    #[test]
    fn msk_build_open_round_trip(
        muk: [u8; 32], msk: [u8; 16], group: u16, number in 1u16.., counter: u32,
        seq_l: u16, seq_u: u16, ack: bool, form in 0u8..3, rand: [u8; 16], csb_id: u32,
    ) {
        let (muk, msk) = (Muk::new(muk), Msk::new(msk));
        let validity = MtkIdInterval { seq_l: MtkId(seq_l), seq_u: MtkId(seq_u) };
        let msk_id = MskId::new(group, number);
        let content = match form {
            0 => MskMessageContent::Delivery { msk_id, msk: &msk, validity, request_ack: ack },
            1 => MskMessageContent::ValidityUpdate { msk_id, validity, request_ack: ack },
            _ => MskMessageContent::SolicitedPull { key_group: group },
        };
        let params = MskMessageParams {
            key_domain_id: KeyDomainId([1, 2, 3]),
            counter,
            muk_id: MukId {
                idi: Id::new(1, b"bmsc").unwrap(),
                idr: Id::new(0, b"ue").unwrap(),
            },
            rand,
            csb_id,
            content,
        };
        let mut out = Vec::new();
        build_msk_message(&muk, &params, &mut out);
        let mut state = MukReceptionState::default();
        let opened = open_msk_message(&muk, &mut state, &out)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        use mbms_gateway::protocol::mikey::MskUpdate;
        let expected = match content {
            MskMessageContent::Delivery { .. } => MskUpdate::Delivery { msk_id, msk, validity },
            MskMessageContent::ValidityUpdate { .. } => MskUpdate::ValidityUpdate { msk_id, validity },
            MskMessageContent::SolicitedPull { .. } => MskUpdate::SolicitedPull {
                key_domain_id: KeyDomainId([1, 2, 3]),
                key_group: group,
            },
        };
        prop_assert_eq!(opened.update, expected);
        prop_assert_eq!(opened.verification_requested, ack && form != 2);
        prop_assert_eq!(state.last_counter, Some(counter));
    }
}
