//! The bodies of the fuzz targets: one function per decoder that takes bytes
//! from outside, each of which must never panic, whatever the input, and
//! must turn every value it decodes back into the same value where an
//! encoder exists. `fuzz/fuzz_targets/*.rs` (cargo-fuzz, libFuzzer) call
//! them; `tests/fuzz_corpus.rs` replays every committed corpus file and
//! regression through them on stable, in `cargo test`.

#![allow(dead_code)]

use arbitrary::{Arbitrary, Unstructured};
use mbms_gateway::bmsc::BmscConfig;
use mbms_gateway::bmsc::key_management::parse_ue_file;
use mbms_gateway::gateway::config::GatewayConfig;
use mbms_gateway::gateway::download::ingest::{PushResource, is_media_type};
use mbms_gateway::protocol::codec::{Codec, Reader};
use mbms_gateway::protocol::dcf::{DcfHeader, DcfReader, HeaderParse};
use mbms_gateway::protocol::flute::alc::AlcPacket;
use mbms_gateway::protocol::flute::content_location::canonical_content_location;
use mbms_gateway::protocol::flute::fdt::{FdtInstance, FdtTemplate};
use mbms_gateway::protocol::flute::lct::LctHeader;
use mbms_gateway::protocol::flute::oti::{FecEncodingId, FecPayloadId};
use mbms_gateway::protocol::flute::receiver::FluteReceiver;
use mbms_gateway::protocol::ingest::{SequenceContinuity, classify};
use mbms_gateway::protocol::key_request::{
    AuthenticationInfo, Challenge, Credentials, KeyRequest, KeyResponse,
};
use mbms_gateway::protocol::keys::{
    KeyDomainId, Mki, Msk, MskId, Mtk, MtkId, MtkKey, MtkSalt, Muk,
};
use mbms_gateway::protocol::mikey::{
    Id, MskMessageContent, MskMessageParams, MtkIdInterval, MtkMessageParams, MtkReceptionState,
    MukId, MukReceptionState, build_msk_message, build_mtk_message, open_msk_message,
    open_mtk_message, peek_message, peek_msk_message, peek_mtk_key_ids, verify_msk_ack,
};
use mbms_gateway::protocol::profile::key_management as km;
use mbms_gateway::protocol::srtp::{
    RccMode, RocTransmission, RtcpHeader, RtpHeader, SrtpConfig, SrtpError, SrtpReceiver,
    SrtpSender,
};
use mbms_gateway::runtime::key_service::config::MskClientConfig;
use mbms_gateway::runtime::key_service::{MskScope, parse_key_file};
use mbms_gateway::ue::key_management::UeConfig;
use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroU16;

/// The body of one fuzz target.
pub type Target = fn(&[u8]);

/// Every target by name; the names are the folders under `fuzz/corpus/`.
pub const TARGETS: &[(&str, Target)] = &[
    ("rtp_ingest", rtp_ingest),
    ("srtp_unprotect", srtp_unprotect),
    ("srtp_round_trip", srtp_round_trip),
    ("mikey_mtk", mikey_mtk),
    ("mikey_msk", mikey_msk),
    ("mikey_structured", mikey_structured),
    ("lct_alc", lct_alc),
    ("fec_payload_id", fec_payload_id),
    ("flute_receiver", flute_receiver),
    ("fdt_xml", fdt_xml),
    ("dcf_reader", dcf_reader),
    ("key_request_bodies", key_request_bodies),
    ("digest_headers", digest_headers),
    ("push_request", push_request),
    ("config_toml", config_toml),
];

pub const KEY_DOMAIN: KeyDomainId = KeyDomainId([0x09, 0xf1, 0x07]);
/// The wire reference's MIKEY vector key (§3.5), as MSK and as MUK.
pub const VECTOR_KEY: [u8; 16] = [
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
];
/// The RFC 3711 B.3 master key and salt.
pub const SRTP_KEY: [u8; 16] = [
    0xe1, 0xf9, 0x7a, 0x0d, 0x3e, 0x01, 0x8b, 0xe0, 0xd6, 0x4f, 0xa3, 0x2c, 0x06, 0xde, 0x41, 0x39,
];
pub const SRTP_SALT: [u8; 14] = [
    0x0e, 0xc6, 0x75, 0xad, 0x49, 0x8a, 0xfe, 0xeb, 0xb6, 0x96, 0x0b, 0x3a, 0xab, 0xe6,
];
pub const SRTP_MKI: Mki = Mki {
    msk_id: MskId::new(1, 1),
    mtk_id: MtkId(1),
};
pub const IDI: &[u8] = b"bmsc.example.org";
pub const IDR: &[u8] = b"cmFuZDE=@bsf.example.org";

pub fn srtp_mtk() -> Mtk {
    Mtk {
        key: MtkKey::new(SRTP_KEY),
        salt: MtkSalt::new(SRTP_SALT),
    }
}

/// The ways a session carries the ROC, each with a small rate so short
/// inputs reach RCC packets.
pub fn roc_transmissions() -> [RocTransmission; 4] {
    let rate = NonZeroU16::new(4).unwrap();
    let rcc = |mode| RocTransmission::Rcc { mode, rate };
    [
        RocTransmission::None,
        rcc(RccMode::Rccm1),
        rcc(RccMode::Rccm2),
        rcc(RccMode::Rccm3),
    ]
}

fn srtp_config(roc: RocTransmission) -> SrtpConfig {
    SrtpConfig {
        roc,
        ..SrtpConfig::mbms()
    }
}

/// Ingest classification of an encoder datagram, and the RTP / RTCP header
/// codecs: a header that parses encodes back to the same bytes.
pub fn rtp_ingest(data: &[u8]) {
    let _ = classify(data, 1452);
    if let Ok((header, len)) = RtpHeader::parse(data) {
        assert!(len <= data.len());
        assert_eq!(header.to_vec(), data[..len], "RTP header round trip");
        let mut continuity = SequenceContinuity::new(4);
        let seq = continuity.map(header.ssrc, header.sequence_number);
        let mut packet = data.to_vec();
        continuity.rewrite(&mut packet, header.ssrc, seq);
    }
    if let Ok(header) = RtcpHeader::read(&mut Reader::new(data)) {
        let bytes = header.to_vec();
        assert_eq!(bytes, data[..bytes.len()], "RTCP header round trip");
    }
}

/// SRTP and SRTCP unprotection of arbitrary bytes, under every way of
/// carrying the ROC, by a receiver that holds the key the MKI may name.
pub fn srtp_unprotect(data: &[u8]) {
    for roc in roc_transmissions() {
        let mut rx = SrtpReceiver::new(srtp_config(roc)).unwrap();
        rx.add_master_key(&SRTP_MKI.to_bytes(), &srtp_mtk())
            .unwrap();
        rx.set_max_initial_roc(2);
        // Twice: a packet accepted once must be refused as a replay.
        for _ in 0..2 {
            let _ = rx.unprotect(&mut data.to_vec());
            let _ = rx.unprotect_rtcp(&mut data.to_vec());
        }
        let _ = srtp_config(roc).mki_of(data);
    }
}

/// One RTP packet of a stream, as the fuzzer builds it.
#[derive(Debug, Arbitrary)]
struct FuzzRtp {
    marker: bool,
    payload_type: u8,
    seq_step: u16,
    timestamp: u32,
    csrcs: u8,
    payload: Vec<u8>,
}

/// A stream of RTP packets protected by a sender and unprotected by a
/// receiver there from the start: every packet comes back as it was, except
/// that a session carrying the ROC without a tag on every packet may refuse
/// the packets before the first that carries it.
pub fn srtp_round_trip(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(roc_choice) = u.choose_index(4) else {
        return;
    };
    let roc = roc_transmissions()[roc_choice];
    let (Ok(ssrc), Ok(first_seq)) = (u.arbitrary::<u32>(), u.arbitrary::<u16>()) else {
        return;
    };
    let mki = SRTP_MKI.to_bytes();
    let mut tx = SrtpSender::new(srtp_config(roc)).unwrap();
    tx.add_master_key(&mki, &srtp_mtk()).unwrap();
    tx.set_active_key(&mki).unwrap();
    let mut rx = SrtpReceiver::new(srtp_config(roc)).unwrap();
    rx.add_master_key(&mki, &srtp_mtk()).unwrap();
    let csrc_list = [0x5au8; 60];
    let mut seq = first_seq;
    let mut synchronized = false;
    // `Unstructured` yields defaults once its bytes run out: stop there.
    while !u.is_empty() {
        let Ok(packet) = u.arbitrary::<FuzzRtp>() else {
            break;
        };
        let header = RtpHeader {
            padding: false,
            marker: packet.marker,
            payload_type: packet.payload_type & 0x7f,
            sequence_number: seq,
            timestamp: packet.timestamp,
            ssrc,
            csrcs: &csrc_list[..usize::from(packet.csrcs % 16) * 4],
            extension: None,
        };
        let mut buf = header.to_vec();
        buf.extend_from_slice(&packet.payload);
        let plain = buf.clone();
        buf.resize(plain.len() + tx.config().rtp_overhead(), 0);
        let len = tx.protect(&mut buf, plain.len()).unwrap();
        buf.truncate(len);
        match rx.unprotect(&mut buf) {
            Ok(rtp_len) => {
                assert_eq!(buf[..rtp_len], plain[..], "SRTP round trip");
                synchronized = true;
            }
            Err(SrtpError::AwaitingRoc { .. })
                if !synchronized && !matches!(roc, RocTransmission::None) => {}
            Err(e) => panic!("SRTP round trip refused: {e}"),
        }
        // Steps the receiver's index estimate follows (RFC 3711 §3.3.1).
        seq = seq.wrapping_add(1 + packet.seq_step % 0x7000);
    }
}

/// MIKEY MTK messages as a UE receives them on UDP 2269, under the vector
/// MSK: peeked, then opened with fresh reception state.
pub fn mikey_mtk(data: &[u8]) {
    let _ = peek_message(data);
    let _ = peek_mtk_key_ids(data);
    let mut state = MtkReceptionState::default();
    let msk = Msk::new(VECTOR_KEY);
    if open_mtk_message(&msk, &mut state, data).is_ok() {
        // A second copy is a replay, whatever it held.
        assert!(open_mtk_message(&msk, &mut state, data).is_err());
    }
}

/// MIKEY MSK messages and verification messages (acknowledgements) under the
/// vector MUK.
pub fn mikey_msk(data: &[u8]) {
    let _ = peek_msk_message(data);
    let muk = Muk::new([0x11; 32]);
    let mut state = MukReceptionState::default();
    let _ = open_msk_message(&muk, &mut state, data);
    // An acknowledgement of a real MSK message, answered with these bytes.
    let mut message = Vec::new();
    build_msk_message(
        &muk,
        &msk_params(7, MskMessageContent::SolicitedPull { key_group: 1 }),
        &mut message,
    );
    let _ = verify_msk_ack(&muk, &message, data);
    let _ = verify_msk_ack(&muk, data, data);
}

fn msk_params(counter: u32, content: MskMessageContent<'_>) -> MskMessageParams<'_> {
    MskMessageParams {
        key_domain_id: KEY_DOMAIN,
        counter,
        muk_id: MukId {
            idi: Id::new(1, IDI).unwrap(),
            idr: Id::new(0, IDR).unwrap(),
        },
        rand: [0xa5; 16],
        csb_id: 0x1234_5678,
        content,
    }
}

/// Well-formed MIKEY messages with arbitrary field values, built and opened
/// (they must open to what was put in), then with one byte changed (which
/// every MAC-covered byte must make refused).
pub fn mikey_structured(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(fields) = u.arbitrary::<MikeyFields>() else {
        return;
    };
    let mtk = Mtk {
        key: MtkKey::new(fields.mtk_key),
        salt: MtkSalt::new(fields.mtk_salt),
    };
    let msk = Msk::new(fields.key);
    let params = MtkMessageParams {
        key_domain_id: KeyDomainId(fields.key_domain),
        msk_id: MskId(fields.msk_id),
        mtk_id: MtkId(fields.mtk_id),
        counter: fields.counter,
        mtk: &mtk,
        rand: fields.rand,
        csb_id: fields.csb_id,
    };
    let mut message = Vec::new();
    build_mtk_message(&msk, &params, &mut message);
    let opened = open_mtk_message(&msk, &mut MtkReceptionState::default(), &message);
    let opened = opened.unwrap_or_else(|e| panic!("a built MTK message did not open: {e}"));
    assert_eq!(opened.key_ids.mtk_id, params.mtk_id);
    assert_eq!(opened.key_ids.msk_id, params.msk_id);
    assert_eq!(opened.key_ids.counter, params.counter);
    assert_eq!(opened.mtk.key.expose(), mtk.key.expose());
    assert_eq!(opened.mtk.salt.expose(), mtk.salt.expose());
    if let (Ok(at), Ok(flip)) = (u.choose_index(message.len()), u.int_in_range(1..=255u8)) {
        let mut damaged = message.clone();
        damaged[at] ^= flip;
        assert!(
            open_mtk_message(&msk, &mut MtkReceptionState::default(), &damaged).is_err(),
            "an MTK message with byte {at} changed was accepted"
        );
    }

    let muk = Muk::new(fields.muk);
    let delivered = Msk::new(fields.key);
    let validity = MtkIdInterval {
        seq_l: MtkId(fields.seq.0),
        seq_u: MtkId(fields.seq.1),
    };
    let content = match fields.msk_kind % 3 {
        0 => MskMessageContent::Delivery {
            msk_id: MskId(fields.msk_id | 1),
            msk: &delivered,
            validity,
            request_ack: fields.request_ack,
        },
        1 => MskMessageContent::ValidityUpdate {
            msk_id: MskId(fields.msk_id | 1),
            validity,
            request_ack: fields.request_ack,
        },
        _ => MskMessageContent::SolicitedPull {
            key_group: (fields.msk_id >> 16) as u16,
        },
    };
    let mut message = Vec::new();
    build_msk_message(&muk, &msk_params(fields.counter, content), &mut message);
    let opened = open_msk_message(&muk, &mut MukReceptionState::default(), &message);
    let opened = opened.unwrap_or_else(|e| panic!("a built MSK message did not open: {e}"));
    assert_eq!(opened.counter, fields.counter);
    if let (Ok(at), Ok(flip)) = (u.choose_index(message.len()), u.int_in_range(1..=255u8)) {
        let mut damaged = message;
        damaged[at] ^= flip;
        assert!(
            open_msk_message(&muk, &mut MukReceptionState::default(), &damaged).is_err(),
            "an MSK message with byte {at} changed was accepted"
        );
    }
}

#[derive(Debug, Arbitrary)]
struct MikeyFields {
    key: [u8; 16],
    muk: [u8; 32],
    key_domain: [u8; 3],
    msk_id: u32,
    mtk_id: u16,
    counter: u32,
    mtk_key: [u8; 16],
    mtk_salt: [u8; 14],
    rand: [u8; 16],
    csb_id: u32,
    seq: (u16, u16),
    msk_kind: u8,
    request_ack: bool,
}

/// LCT headers and ALC packets with their FEC Object Transmission
/// Information: what decodes encodes back to the same bytes.
pub fn lct_alc(data: &[u8]) {
    if let Ok(header) = LctHeader::read(&mut Reader::new(data)) {
        let _ = header.validate();
        let bytes = header.to_vec();
        assert_eq!(bytes, data[..bytes.len()], "LCT header round trip");
    }
    if let Ok(packet) = AlcPacket::decode(data) {
        let _ = packet.validate();
        let _ = packet.fec_encoding_id();
        if let Some(Ok(oti)) = packet.oti() {
            let _ = oti.validate();
            let _ = oti.transfer_length_bits();
            let _ = oti.scheme_specific_info();
        }
        assert_eq!(packet.to_vec(), data, "ALC packet round trip");
    }
}

/// FEC Payload IDs of each FEC Encoding ID (RFC 5445, 5053, 6330).
pub fn fec_payload_id(data: &[u8]) {
    for id in [
        FecEncodingId::CompactNoCode,
        FecEncodingId::Raptor,
        FecEncodingId::RaptorQ,
    ] {
        let mut r = Reader::new(data);
        if let Ok(payload_id) = FecPayloadId::read(id, &mut r) {
            let bytes = payload_id
                .to_bytes(id)
                .expect("a decoded payload ID encodes");
            assert_eq!(bytes[..], data[..r.position()], "FEC payload ID round trip");
        }
    }
}

/// A FLUTE receiver (the probe's) fed arbitrary datagrams: each input is a
/// run of length-prefixed datagrams of one session.
pub fn flute_receiver(data: &[u8]) {
    let mut receiver = FluteReceiver::new(None, 1 << 20);
    let mut events = Vec::new();
    let mut rest = data;
    while let [hi, lo, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
        let (datagram, next) = tail.split_at(len);
        let _ = receiver.receive(datagram, &mut events);
        rest = next;
    }
    let _ = receiver.pending_files().count();
}

/// FDT-Instance XML: what parses renders, through the project's default
/// template, to an FDT that parses to the same value.
pub fn fdt_xml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = FdtTemplate::parse("fuzz", text);
    if let Ok(fdt) = FdtInstance::parse(text) {
        let template = FdtTemplate::parse(
            "3gpp-rel12.xml",
            mbms_gateway::gateway::download::config::DEFAULT_FDT_TEMPLATE,
        )
        .unwrap();
        if let Ok(rendered) = template.render(&fdt) {
            let again = FdtInstance::parse(&rendered)
                .unwrap_or_else(|e| panic!("a rendered FDT did not parse: {e}\n{rendered}"));
            assert_eq!(again, fdt, "FDT round trip");
        }
    }
}

/// The DCF header of a download object and, when it is complete, the
/// decryption of what follows under a fixed MTK.
pub fn dcf_reader(data: &[u8]) {
    if let Ok(HeaderParse::Complete { header, header_len }) = DcfHeader::parse(data) {
        let _ = header.key_id();
        let _ = header.textual_headers();
        assert!(header_len <= data.len());
        let mut reader = DcfReader::new(header, &MtkKey::new(SRTP_KEY));
        let mut out = Vec::new();
        for chunk in data[header_len..].chunks(7) {
            reader.decrypt(chunk, &mut out);
        }
        let _ = reader.finish(&mut out);
    }
}

/// The media types the Key Request function and the UE accept.
const KEY_MANAGEMENT_TYPES: [&str; 5] = [
    km::REGISTER_TYPE,
    km::REGISTER_RESPONSE_TYPE,
    km::DEREGISTER_TYPE,
    km::MSK_REQUEST_TYPE,
    km::MSK_RESPONSE_TYPE,
];

/// Key Request bodies (registration, deregistration, MSK request and their
/// responses): what parses serializes and parses back to the same value.
pub fn key_request_bodies(data: &[u8]) {
    for media_type in KEY_MANAGEMENT_TYPES {
        if let Ok(request) = KeyRequest::parse(media_type, data) {
            let xml = request.to_xml();
            assert_eq!(
                KeyRequest::parse(request.media_type(), xml.as_bytes()).as_ref(),
                Ok(&request),
                "Key Request body round trip"
            );
        }
        if let Ok(response) = KeyResponse::parse(media_type, data) {
            let xml = response.to_xml();
            assert_eq!(
                KeyResponse::parse(response.media_type(), xml.as_bytes()).as_ref(),
                Ok(&response),
                "Key Response body round trip"
            );
        }
    }
}

/// HTTP Digest headers (RFC 7616): WWW-Authenticate, Authorization and
/// Authentication-Info; what parses writes back to a header that parses to
/// the same value.
pub fn digest_headers(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(challenge) = Challenge::parse(text)
        && let Ok(header) = challenge.to_header()
    {
        assert_eq!(Challenge::parse(&header).as_ref(), Ok(&challenge));
    }
    if let Ok(credentials) = Credentials::parse(text)
        && let Ok(header) = credentials.to_header()
    {
        assert_eq!(Credentials::parse(&header).as_ref(), Ok(&credentials));
        let _ = credentials.verify("password", "POST");
    }
    if let Ok(info) = AuthenticationInfo::parse(text)
        && let Ok(header) = info.to_header()
    {
        assert_eq!(AuthenticationInfo::parse(&header).as_ref(), Ok(&info));
    }
}

/// An HTTP push request target and headers: the resource its path names,
/// the Content-Location made canonical, the Content-Type checked.
pub fn push_request(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (path, content_type) = text.split_once('\n').unwrap_or((text, ""));
    if let Some(PushResource::Object {
        content_location, ..
    }) = PushResource::parse(path)
        && let Ok(canonical) = canonical_content_location(content_location)
    {
        // Canonical is a fixed point.
        assert_eq!(
            canonical_content_location(&canonical).as_deref(),
            Ok(canonical.as_str())
        );
    }
    let _ = canonical_content_location(text);
    let _ = is_media_type(content_type);
}

/// Configuration files: the gateway's, the BM-SC's, a UE's, the BM-SC's UE
/// provisioning file, a BM-SC client's, and an MSK key file.
pub fn config_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = GatewayConfig::parse(text);
    let _ = BmscConfig::from_toml(text);
    let _ = UeConfig::from_toml(text);
    let _ = MskClientConfig::from_toml(text);
    let services = BTreeMap::from([("urn:example:tv".to_owned(), BTreeSet::from([1u16]))]);
    let _ = parse_ue_file(text, &services);
    let scope = MskScope {
        key_domain_id: KEY_DOMAIN,
        key_groups: BTreeSet::from([1]),
    };
    let _ = parse_key_file(text, &scope);
}
