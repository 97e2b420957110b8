//! MIKEY end to end through the public API: MTK and MSK messages built as the
//! gateway and the BM-SC build them, opened as a UE opens them (TS 33.246
//! §6.4.6, §6.5), one test per rejection rule.

use mbms_gateway::protocol::codec::Codec;
use mbms_gateway::protocol::keys::{KeyDomainId, Msk, MskId, Mtk, MtkId, MtkKey, MtkSalt, Muk};
use mbms_gateway::protocol::mikey::id::id_type;
use mbms_gateway::protocol::mikey::{
    Id, MikeyError, MskMessageContent, MskMessageParams, MskUpdate, MtkIdInterval, MtkKeyIds,
    MtkMessageParams, MtkReceptionState, MukId, MukReceptionState, build_msk_message,
    build_mtk_message, open_msk_message, open_mtk_message, peek_mtk_key_ids,
};

const KEY_DOMAIN: KeyDomainId = KeyDomainId([0x32, 0xf4, 0x10]);
const MSK_ID: MskId = MskId::new(0x0102, 0x0001);

fn msk() -> Msk {
    Msk::new(*b"service-key-0001")
}

fn mtk(seed: u8) -> Mtk {
    Mtk {
        key: MtkKey::new([seed; 16]),
        salt: MtkSalt::new([seed ^ 0x5a; 14]),
    }
}

fn mtk_message(msk: &Msk, mtk_id: u16, counter: u32, mtk: &Mtk) -> Vec<u8> {
    let params = MtkMessageParams {
        key_domain_id: KEY_DOMAIN,
        msk_id: MSK_ID,
        mtk_id: MtkId(mtk_id),
        counter,
        mtk,
        rand: [counter as u8; 16],
        csb_id: 0x1000_0000 | counter,
    };
    let mut out = Vec::new();
    build_mtk_message(msk, &params, &mut out);
    out
}

#[test]
fn mtk_message_round_trip_updates_state() {
    let key = mtk(0x11);
    let bytes = mtk_message(&msk(), 7, 100, &key);
    let mut state = MtkReceptionState::default();
    let opened = open_mtk_message(&msk(), &mut state, &bytes).unwrap();
    assert_eq!(opened.mtk, key);
    assert_eq!(
        opened.key_ids,
        MtkKeyIds {
            key_domain_id: KEY_DOMAIN,
            msk_id: MSK_ID,
            mtk_id: MtkId(7),
            counter: 100,
        }
    );
    assert_eq!(state.last_counter, Some(100));
    assert_eq!(state.current_mtk_id, Some(MtkId(7)));
    assert_eq!(peek_mtk_key_ids(&bytes).unwrap(), opened.key_ids);
}

#[test]
fn replayed_counter_is_dropped() {
    let bytes = mtk_message(&msk(), 7, 100, &mtk(1));
    let mut state = MtkReceptionState::default();
    open_mtk_message(&msk(), &mut state, &bytes).unwrap();
    assert_eq!(
        open_mtk_message(&msk(), &mut state, &bytes),
        Err(MikeyError::Replayed {
            counter: 100,
            last: 100
        })
    );
    // A new MTK ID does not excuse an old counter.
    let older = mtk_message(&msk(), 8, 99, &mtk(2));
    assert_eq!(
        open_mtk_message(&msk(), &mut state, &older),
        Err(MikeyError::Replayed {
            counter: 99,
            last: 100
        })
    );
}

#[test]
fn counter_wrap_is_forward_in_rfc1982_terms() {
    let mut state = MtkReceptionState {
        last_counter: Some(0xFFFF_FFF0),
        current_mtk_id: Some(MtkId(1)),
        validity: None,
    };
    let bytes = mtk_message(&msk(), 2, 5, &mtk(3));
    let opened = open_mtk_message(&msk(), &mut state, &bytes).unwrap();
    assert_eq!(opened.key_ids.counter, 5);
    assert_eq!(state.last_counter, Some(5));
}

#[test]
fn old_or_equal_mtk_id_is_dropped() {
    let mut state = MtkReceptionState::default();
    open_mtk_message(&msk(), &mut state, &mtk_message(&msk(), 7, 1, &mtk(1))).unwrap();
    for old in [7, 6] {
        assert_eq!(
            open_mtk_message(&msk(), &mut state, &mtk_message(&msk(), old, 2, &mtk(2))),
            Err(MikeyError::StaleMtkId {
                mtk_id: MtkId(old),
                current: MtkId(7)
            })
        );
    }
    assert_eq!(
        state.last_counter,
        Some(1),
        "rejections leave the state alone"
    );
}

#[test]
fn mtk_id_outside_validity_is_dropped() {
    let validity = MtkIdInterval {
        seq_l: MtkId(10),
        seq_u: MtkId(20),
    };
    let mut state = MtkReceptionState {
        validity: Some(validity),
        ..Default::default()
    };
    for id in [9, 21] {
        assert_eq!(
            open_mtk_message(&msk(), &mut state, &mtk_message(&msk(), id, 1, &mtk(1))),
            Err(MikeyError::OutsideValidity {
                mtk_id: MtkId(id),
                validity
            })
        );
    }
    open_mtk_message(&msk(), &mut state, &mtk_message(&msk(), 10, 1, &mtk(1))).unwrap();
    state.validity = Some(MtkIdInterval::INVALIDATED);
    assert!(matches!(
        open_mtk_message(&msk(), &mut state, &mtk_message(&msk(), 11, 2, &mtk(1))),
        Err(MikeyError::OutsideValidity { .. })
    ));
}

#[test]
fn tampered_byte_fails_the_mac() {
    let bytes = mtk_message(&msk(), 7, 100, &mtk(1));
    // CSB ID (HDR), a RAND byte, a ciphertext byte, a MAC byte.
    for at in [5, 45, 70, bytes.len() - 1] {
        let mut tampered = bytes.clone();
        tampered[at] ^= 0x01;
        let mut state = MtkReceptionState::default();
        assert_eq!(
            open_mtk_message(&msk(), &mut state, &tampered),
            Err(MikeyError::BadMac),
            "byte {at}"
        );
        assert_eq!(state, MtkReceptionState::default());
    }
}

#[test]
fn wrong_msk_fails_the_mac() {
    let bytes = mtk_message(&msk(), 7, 100, &mtk(1));
    let mut state = MtkReceptionState::default();
    assert_eq!(
        open_mtk_message(&Msk::new([0; 16]), &mut state, &bytes),
        Err(MikeyError::BadMac)
    );
    assert_eq!(state, MtkReceptionState::default());
}

#[test]
fn unsupported_header_values_are_named() {
    let mut bytes = mtk_message(&msk(), 7, 100, &mtk(1));
    bytes[1] = 1; // PSK verification message, not an initiation
    assert_eq!(
        open_mtk_message(&msk(), &mut MtkReceptionState::default(), &bytes),
        Err(MikeyError::Unsupported {
            field: "HDR data type",
            value: 1
        })
    );
}

#[test]
fn truncated_or_extended_messages_are_malformed() {
    let bytes = mtk_message(&msk(), 7, 100, &mtk(1));
    let mut state = MtkReceptionState::default();
    for len in [0, 9, 40, bytes.len() - 1] {
        assert!(matches!(
            open_mtk_message(&msk(), &mut state, &bytes[..len]),
            Err(MikeyError::Malformed(_))
        ));
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(
        open_mtk_message(&msk(), &mut state, &longer),
        Err(MikeyError::Malformed(_))
    ));
}

// ---- MSK messages ----

fn muk() -> Muk {
    Muk::new(*b"user-key-from-gba-run-0123456789")
}

fn muk_id() -> MukId<'static> {
    MukId {
        idi: Id::new(id_type::URI, b"https://bmsc.example").unwrap(),
        idr: Id::new(id_type::NAI, b"ue@example").unwrap(),
    }
}

fn msk_message(counter: u32, content: MskMessageContent<'_>) -> Vec<u8> {
    let params = MskMessageParams {
        key_domain_id: KEY_DOMAIN,
        counter,
        muk_id: muk_id(),
        rand: [0x42; 16],
        csb_id: 0x0bad_cafe,
        content,
    };
    let mut out = Vec::new();
    build_msk_message(&muk(), &params, &mut out);
    out
}

const WINDOW: MtkIdInterval = MtkIdInterval {
    seq_l: MtkId(1),
    seq_u: MtkId(500),
};

#[test]
fn msk_delivery_round_trip_with_ack_request() {
    let key = msk();
    let bytes = msk_message(
        3,
        MskMessageContent::Delivery {
            msk_id: MSK_ID,
            msk: &key,
            validity: WINDOW,
            request_ack: true,
        },
    );
    let mut state = MukReceptionState::default();
    let opened = open_msk_message(&muk(), &mut state, &bytes).unwrap();
    assert_eq!(opened.key_domain_id, KEY_DOMAIN);
    assert_eq!(opened.counter, 3);
    assert!(opened.verification_requested);
    assert_eq!(
        opened.update,
        MskUpdate::Delivery {
            msk_id: MSK_ID,
            msk: key,
            validity: WINDOW
        }
    );
    assert_eq!(state.last_counter, Some(3));
}

#[test]
fn msk_message_replay_is_per_muk() {
    let key = msk();
    let content = MskMessageContent::Delivery {
        msk_id: MSK_ID,
        msk: &key,
        validity: WINDOW,
        request_ack: false,
    };
    let first = msk_message(10, content);
    let mut state = MukReceptionState::default();
    open_msk_message(&muk(), &mut state, &first).unwrap();
    for counter in [10, 9] {
        assert_eq!(
            open_msk_message(&muk(), &mut state, &msk_message(counter, content)),
            Err(MikeyError::Replayed { counter, last: 10 })
        );
    }
    assert_eq!(
        state.last_counter,
        Some(10),
        "rejections leave the counter alone"
    );
    open_msk_message(&muk(), &mut state, &msk_message(11, content)).unwrap();
    assert_eq!(state.last_counter, Some(11));
    // The counter belongs to the MUK's state, not to the MSK ID: a fresh MUK
    // state (another MUK) accepts the same counter value.
    assert!(open_msk_message(&muk(), &mut MukReceptionState::default(), &first).is_ok());
}

#[test]
fn validity_update_and_invalidation() {
    let update = msk_message(
        1,
        MskMessageContent::ValidityUpdate {
            msk_id: MSK_ID,
            validity: WINDOW,
            request_ack: false,
        },
    );
    let mut state = MukReceptionState::default();
    assert_eq!(
        open_msk_message(&muk(), &mut state, &update)
            .unwrap()
            .update,
        MskUpdate::ValidityUpdate {
            msk_id: MSK_ID,
            validity: WINDOW
        }
    );
    let invalidate = msk_message(
        2,
        MskMessageContent::ValidityUpdate {
            msk_id: MSK_ID,
            validity: MtkIdInterval {
                seq_l: MtkId(9),
                seq_u: MtkId(3),
            },
            request_ack: false,
        },
    );
    let MskUpdate::ValidityUpdate { validity, .. } =
        open_msk_message(&muk(), &mut state, &invalidate)
            .unwrap()
            .update
    else {
        panic!("expected a validity update");
    };
    assert!(validity.is_invalidation());
    assert!(!validity.contains(MtkId(5)));
}

#[test]
fn solicited_pull_is_parsed() {
    let bytes = msk_message(4, MskMessageContent::SolicitedPull { key_group: 0x0102 });
    let mut state = MukReceptionState::default();
    let opened = open_msk_message(&muk(), &mut state, &bytes).unwrap();
    assert!(!opened.verification_requested);
    assert_eq!(
        opened.update,
        MskUpdate::SolicitedPull {
            key_domain_id: KEY_DOMAIN,
            key_group: 0x0102
        }
    );
    assert_eq!(state.last_counter, Some(4));
}

#[test]
fn solicited_pull_must_name_the_current_key_and_is_mac_protected() {
    let mut bytes = msk_message(4, MskMessageContent::SolicitedPull { key_group: 0x0102 });
    let mut state = MukReceptionState::default();
    assert_eq!(
        open_msk_message(&Muk::new([1; 32]), &mut state, &bytes),
        Err(MikeyError::BadMac)
    );
    // EXT MSK ID entry: HDR(10) + next/type/len(4) + Key Domain entry(6) +
    // MSK ID entry header(3) + key group(2): the Key Number's low byte.
    bytes[10 + 4 + 6 + 3 + 3] = 1;
    assert!(matches!(
        open_msk_message(&muk(), &mut state, &bytes),
        Err(MikeyError::WrongMessageKind(_))
    ));
}

#[test]
fn message_kinds_are_not_confused() {
    let mtk_bytes = mtk_message(&msk(), 7, 100, &mtk(1));
    assert!(matches!(
        open_msk_message(&muk(), &mut MukReceptionState::default(), &mtk_bytes),
        Err(MikeyError::WrongMessageKind(_))
    ));
    let msk_bytes = msk_message(1, MskMessageContent::SolicitedPull { key_group: 1 });
    assert!(matches!(
        open_mtk_message(&msk(), &mut MtkReceptionState::default(), &msk_bytes),
        Err(MikeyError::WrongMessageKind(_))
    ));
}

#[test]
fn peek_tells_message_kinds_apart() {
    use mbms_gateway::protocol::mikey::{PeekedMessage, peek_message};
    let mtk_bytes = mtk_message(&msk(), 7, 100, &mtk(1));
    let Ok(PeekedMessage::Mtk(ids)) = peek_message(&mtk_bytes) else {
        panic!("expected an MTK message");
    };
    assert_eq!(
        (ids.msk_id, ids.mtk_id, ids.counter),
        (MSK_ID, MtkId(7), 100)
    );
    let msk_bytes = msk_message(1, MskMessageContent::SolicitedPull { key_group: 3 });
    let Ok(PeekedMessage::Msk(info)) = peek_message(&msk_bytes) else {
        panic!("expected an MSK message");
    };
    assert_eq!(info.msk_id, MskId::new(3, 0));
    assert_eq!(info.muk_id, muk_id());
}

#[test]
fn debug_output_never_shows_key_bytes() {
    // 0xA7 is 167 in decimal; neither spelling may appear.
    let msk = Msk::new([0xa7; 16]);
    let muk = Muk::new([0xa7; 32]);
    let key = Mtk {
        key: MtkKey::new([0xa7; 16]),
        salt: MtkSalt::new([0xa7; 14]),
    };
    let mtk_params = MtkMessageParams {
        key_domain_id: KeyDomainId([1, 2, 3]),
        msk_id: MskId(4),
        mtk_id: MtkId(5),
        counter: 6,
        mtk: &key,
        rand: [0; 16],
        csb_id: 8,
    };
    let mut mtk_bytes = Vec::new();
    build_mtk_message(&msk, &mtk_params, &mut mtk_bytes);
    let opened_mtk = open_mtk_message(&msk, &mut MtkReceptionState::default(), &mtk_bytes).unwrap();
    let content = MskMessageContent::Delivery {
        msk_id: MskId(4),
        msk: &msk,
        validity: WINDOW,
        request_ack: false,
    };
    let msk_params = MskMessageParams {
        key_domain_id: KeyDomainId([1, 2, 3]),
        counter: 1,
        muk_id: muk_id(),
        rand: [0; 16],
        csb_id: 8,
        content,
    };
    let mut msk_bytes = Vec::new();
    build_msk_message(&muk, &msk_params, &mut msk_bytes);
    let opened_msk = open_msk_message(&muk, &mut MukReceptionState::default(), &msk_bytes).unwrap();
    let text = format!(
        "{msk:?}{muk:?}{key:?}{mtk_params:?}{opened_mtk:?}{content:?}{msk_params:?}{opened_msk:?}"
    )
    .to_lowercase();
    assert!(!text.contains("167") && !text.contains("a7"), "{text}");
}

#[test]
fn generic_decoder_reads_built_messages() {
    use mbms_gateway::protocol::mikey::Message;
    let bytes = msk_message(1, MskMessageContent::SolicitedPull { key_group: 9 });
    let msg = Message::decode(&bytes).unwrap();
    assert_eq!(msg.hdr.csb_id, 0x0bad_cafe);
    assert_eq!(msg.to_vec(), bytes);
}
