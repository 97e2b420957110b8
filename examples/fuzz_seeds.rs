//! Writes the seed corpora of the fuzz targets (`fuzz/corpus/<target>/`)
//! from the project's test vectors and example files: libsrtp's published
//! SRTP packet, the wire reference's MIKEY vector inputs, FLUTE packets of
//! a real object and its FDT, a DCF from the writer, Key Request bodies, the
//! RFC 7616 Digest example, and the configuration examples under `deploy/`.
//!
//! ```sh
//! cargo run --example fuzz_seeds            # writes fuzz/corpus
//! ```
//!
//! The seeds are committed; `tests/fuzz_corpus.rs` replays them on stable.

#[path = "../tests/fuzz_harness/mod.rs"]
mod harness;

use harness::*;
use mbms_gateway::protocol::codec::Codec;
use mbms_gateway::protocol::dcf::{DcfParams, DcfWriter, EncryptionMethod};
use mbms_gateway::protocol::flute::fdt::{FdtFile, FdtInstance, FdtTemplate};
use mbms_gateway::protocol::flute::object_sender::{ObjectKind, ObjectSender, ObjectSenderConfig};
use mbms_gateway::protocol::key_request::{
    AuthenticationInfo, Challenge, Credentials, KeyRef, KeyRequest, KeyResponse, Status,
};
use mbms_gateway::protocol::keys::{Msk, MskId, Mtk, MtkId, MtkKey, MtkSalt, Muk};
use mbms_gateway::protocol::mikey::{
    Id, MskMessageContent, MskMessageParams, MtkIdInterval, MtkMessageParams, MukId, build_msk_ack,
    build_msk_message, build_mtk_message,
};
use mbms_gateway::protocol::srtp::{RtcpHeader, RtpExtension, RtpHeader, SrtpConfig, SrtpSender};
use mbms_gateway::runtime::synthetic::{SYNTHETIC_RTP_LEN, SyntheticPacket, build_synthetic_rtp};
use std::path::Path;

/// libsrtp's `srtp_validate` plaintext.
const LIBSRTP_RTP: &str = "800f1234decafbadcafebabeabababababababababababababababab";
const LIBSRTP_RTCP: &str = "81c8000bcafebabeabababababababababababababababab";

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut written = 0;
    for (target, seeds) in seeds() {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir)?;
        for (name, bytes) in seeds {
            std::fs::write(dir.join(name), bytes)?;
            written += 1;
        }
    }
    println!("{written} seeds in {}", root.display());
    Ok(())
}

type Seeds = Vec<(&'static str, Vec<Vec<u8>>)>;
/// Files of one target's corpus: name and bytes.
type Files = Vec<(String, Vec<u8>)>;

fn named(seeds: Vec<Vec<u8>>) -> Files {
    seeds
        .into_iter()
        .enumerate()
        .map(|(i, s)| (format!("seed-{i:02}"), s))
        .collect()
}

fn seeds() -> Vec<(&'static str, Files)> {
    let by_target: Seeds = vec![
        ("rtp_ingest", rtp()),
        ("srtp_unprotect", srtp()),
        ("srtp_round_trip", structured()),
        ("mikey_mtk", mtk_messages()),
        ("mikey_msk", msk_messages()),
        ("mikey_structured", structured()),
        ("lct_alc", alc_packets()),
        (
            "fec_payload_id",
            vec![vec![0, 1, 0, 2], vec![0, 0, 0, 0], vec![3, 0, 0, 9]],
        ),
        ("flute_receiver", flute_session()),
        ("fdt_xml", fdt()),
        ("dcf_reader", dcf()),
        ("key_request_bodies", bodies()),
        ("digest_headers", digest()),
        (
            "push_request",
            vec![
                b"/sessions/files/objects/live/seg%201.m4s\nvideo/mp4".to_vec(),
                b"/sessions/files/objects\napplication/dash+xml; charset=utf-8".to_vec(),
                b"/sessions/files/objects/../etc/passwd\n".to_vec(),
            ],
        ),
        ("config_toml", configs()),
    ];
    assert_eq!(by_target.len(), TARGETS.len());
    by_target
        .into_iter()
        .map(|(target, seeds)| (target, named(seeds)))
        .collect()
}

fn rtp() -> Vec<Vec<u8>> {
    let mut synthetic = vec![0u8; SYNTHETIC_RTP_LEN];
    build_synthetic_rtp(
        &SyntheticPacket {
            ssrc: 0x1234_5678,
            sequence_number: 65535,
            timestamp: 90_000,
            payload_type: 33,
            counter: 7,
        },
        &mut synthetic,
    );
    let csrcs = [0x11u8; 8];
    let extension = [0xbe, 0xde, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06];
    let mut with_extension = RtpHeader {
        padding: true,
        marker: true,
        payload_type: 96,
        sequence_number: 7,
        timestamp: 3003,
        ssrc: 0xcafe_babe,
        csrcs: &csrcs,
        extension: Some(RtpExtension {
            profile: 0xbede,
            data: &extension,
        }),
    }
    .to_vec();
    with_extension.extend_from_slice(&[1, 2, 3, 0, 0, 3]);
    let sr = RtcpHeader {
        padding: false,
        count: 0,
        packet_type: 200,
        length: 6,
        ssrc: 0xfeed_0001,
    }
    .to_vec();
    vec![
        hex::decode(LIBSRTP_RTP).unwrap(),
        hex::decode(LIBSRTP_RTCP).unwrap(),
        synthetic,
        with_extension,
        [sr, vec![0; 20]].concat(),
    ]
}

/// SRTP and SRTCP under the key and MKI the target's receiver holds, with
/// each way of carrying the ROC, an RCC packet and one that is not.
fn srtp() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    for roc in roc_transmissions() {
        let mut tx = SrtpSender::new(SrtpConfig {
            roc,
            ..SrtpConfig::mbms()
        })
        .unwrap();
        let mki = SRTP_MKI.to_bytes();
        tx.add_master_key(&mki, &srtp_mtk()).unwrap();
        tx.set_active_key(&mki).unwrap();
        for seq in [0x1234u16, 0x1235] {
            let mut packet = hex::decode(LIBSRTP_RTP).unwrap();
            packet[2..4].copy_from_slice(&seq.to_be_bytes());
            let len = packet.len();
            packet.resize(len + tx.config().rtp_overhead(), 0);
            let srtp_len = tx.protect(&mut packet, len).unwrap();
            packet.truncate(srtp_len);
            seeds.push(packet);
        }
        let mut rtcp = hex::decode(LIBSRTP_RTCP).unwrap();
        let len = rtcp.len();
        rtcp.resize(len + tx.config().rtcp_overhead(), 0);
        let srtcp_len = tx.protect_rtcp(&mut rtcp, len).unwrap();
        rtcp.truncate(srtcp_len);
        seeds.push(rtcp);
    }
    seeds
}

/// Inputs for the structure-aware targets: their bytes become fields.
fn structured() -> Vec<Vec<u8>> {
    vec![
        (0..=255u8).collect(),
        (0..512u32).map(|i| (i * 37 % 251) as u8).collect(),
        vec![0; 300],
    ]
}

/// MTK messages of the wire reference's vector inputs (§3.5: the MSK
/// 000102…0f, CSB ID 0x12345678, RAND a0…af) at two counters.
fn mtk_messages() -> Vec<Vec<u8>> {
    let mtk = Mtk {
        key: MtkKey::new([0x11; 16]),
        salt: MtkSalt::new([0x22; 14]),
    };
    let rand: [u8; 16] = std::array::from_fn(|i| 0xa0 + i as u8);
    [1u32, 2]
        .iter()
        .map(|&counter| {
            let mut out = Vec::new();
            build_mtk_message(
                &Msk::new(VECTOR_KEY),
                &MtkMessageParams {
                    key_domain_id: KEY_DOMAIN,
                    msk_id: MskId::new(1, 1),
                    mtk_id: MtkId(counter as u16),
                    counter,
                    mtk: &mtk,
                    rand,
                    csb_id: 0x1234_5678,
                },
                &mut out,
            );
            out
        })
        .collect()
}

/// MSK messages of each kind under the target's MUK, and an acknowledgement.
fn msk_messages() -> Vec<Vec<u8>> {
    let muk = Muk::new([0x11; 32]);
    let msk = Msk::new(VECTOR_KEY);
    let params = |counter, content| MskMessageParams {
        key_domain_id: KEY_DOMAIN,
        counter,
        muk_id: MukId {
            idi: Id::new(1, IDI).unwrap(),
            idr: Id::new(0, IDR).unwrap(),
        },
        rand: [0xa5; 16],
        csb_id: 0x1234_5678,
        content,
    };
    let validity = MtkIdInterval {
        seq_l: MtkId(1),
        seq_u: MtkId(0xffff),
    };
    let contents = [
        MskMessageContent::Delivery {
            msk_id: MskId::new(1, 1),
            msk: &msk,
            validity,
            request_ack: true,
        },
        MskMessageContent::ValidityUpdate {
            msk_id: MskId::new(1, 1),
            validity: MtkIdInterval::INVALIDATED,
            request_ack: false,
        },
        MskMessageContent::SolicitedPull { key_group: 1 },
    ];
    let mut seeds: Vec<Vec<u8>> = contents
        .into_iter()
        .enumerate()
        .map(|(i, content)| {
            let mut out = Vec::new();
            build_msk_message(&muk, &params(i as u32 + 1, content), &mut out);
            out
        })
        .collect();
    let mut ack = Vec::new();
    build_msk_ack(&muk, &seeds[0], 1, &mut ack).unwrap();
    seeds.push(ack);
    seeds
}

/// The ALC packets of a small object and of its FDT Instance.
fn object_packets(kind: ObjectKind, object: &[u8]) -> Vec<Vec<u8>> {
    let config = ObjectSenderConfig::new(1, kind, object.len() as u64, 600);
    let mut sender = ObjectSender::new(&config).unwrap();
    let mut packets = Vec::new();
    let mut buf = vec![0u8; 600];
    while let Some(request) = sender.next_symbol() {
        let symbol = &object[request.range.start as usize..request.range.end as usize];
        let len = sender.write_packet(symbol, &mut buf).unwrap();
        packets.push(buf[..len].to_vec());
    }
    packets
}

fn sample_object() -> Vec<u8> {
    (0..1500u32).map(|i| (i * 13) as u8).collect()
}

fn rendered_fdt() -> String {
    let template = FdtTemplate::parse(
        "3gpp-rel12.xml",
        mbms_gateway::gateway::download::config::DEFAULT_FDT_TEMPLATE,
    )
    .unwrap();
    let mut file = FdtFile::new("live/seg-1.m4s", 1);
    file.content_length = Some(1500);
    file.content_type = Some("video/mp4".into());
    let mut key = FdtFile::new("mbms-keys/00010001-0001.mikey", 2);
    key.content_type = Some("application/mikey".into());
    template
        .render(&FdtInstance {
            expires: 3_900_000_000,
            complete: false,
            full_fdt: true,
            fec_oti: None,
            files: vec![file, key],
        })
        .unwrap()
}

fn alc_packets() -> Vec<Vec<u8>> {
    let mut packets = object_packets(ObjectKind::File { toi: 1 }, &sample_object());
    packets.truncate(2);
    packets.extend(object_packets(
        ObjectKind::FdtInstance { instance_id: 1 },
        rendered_fdt().as_bytes(),
    ));
    packets
}

/// A session as datagrams of u16 length ‖ bytes: the FDT, then the object.
fn flute_session() -> Vec<Vec<u8>> {
    let mut session = Vec::new();
    let fdt = object_packets(
        ObjectKind::FdtInstance { instance_id: 1 },
        rendered_fdt().as_bytes(),
    );
    for packet in fdt.iter().chain(&object_packets(
        ObjectKind::File { toi: 1 },
        &sample_object(),
    )) {
        session.extend_from_slice(&(packet.len() as u16).to_be_bytes());
        session.extend_from_slice(packet);
    }
    vec![session]
}

fn fdt() -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    vec![
        rendered_fdt().into_bytes(),
        std::fs::read(root.join("fdt-templates/3gpp-rel12.xml")).unwrap(),
        std::fs::read(root.join("fdt-templates/minimal.xml")).unwrap(),
    ]
}

fn dcf() -> Vec<Vec<u8>> {
    let plaintext = sample_object();
    [EncryptionMethod::Aes128Cbc, EncryptionMethod::Aes128Ctr]
        .into_iter()
        .map(|method| {
            let params = DcfParams {
                content_type: "video/mp4".into(),
                content_id: "cid:seg-1@mbms".into(),
                rights_issuer_url: String::new(),
                textual_headers: vec![("MBMS-Key-ID".into(), "09f10700010001 0001".into())],
                method,
                plaintext_len: plaintext.len() as u64,
            };
            let mut writer = DcfWriter::new(params, &MtkKey::new(SRTP_KEY), [7; 16]).unwrap();
            let mut out = writer.header().to_vec();
            writer.encrypt(&plaintext, &mut out).unwrap();
            writer.finish(&mut out).unwrap();
            out
        })
        .collect()
}

fn bodies() -> Vec<Vec<u8>> {
    let service = "urn:example:tv".to_owned();
    let key = KeyRef {
        key_domain_id: KEY_DOMAIN,
        msk_id: MskId::new(1, 0),
    };
    [
        KeyRequest::Register {
            service_ids: vec![service.clone()],
        }
        .to_xml(),
        KeyRequest::Deregister {
            service_ids: vec![service.clone()],
        }
        .to_xml(),
        KeyRequest::Msk { keys: vec![key] }.to_xml(),
        KeyResponse::Registration(vec![(service, Status::Ok)]).to_xml(),
        KeyResponse::Msk(vec![(key, Status::NotFound)]).to_xml(),
    ]
    .into_iter()
    .map(String::into_bytes)
    .collect()
}

/// RFC 7616 §3.9.1's challenge, an answer to it, and the server's
/// Authentication-Info.
fn digest() -> Vec<Vec<u8>> {
    let challenge = Challenge::parse(
        "Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", algorithm=SHA-256, \
         nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", \
         opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"",
    )
    .unwrap();
    let credentials = Credentials::answer(
        &challenge,
        "Mufasa",
        "Circle of Life",
        "POST",
        "/keymanagement",
        "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
        1,
    );
    let info = AuthenticationInfo::for_credentials(&credentials, "Circle of Life");
    [
        challenge.to_header().unwrap(),
        credentials.to_header().unwrap(),
        info.to_header().unwrap(),
    ]
    .into_iter()
    .map(String::into_bytes)
    .collect()
}

fn configs() -> Vec<Vec<u8>> {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    [
        "gateway.example.toml",
        "bmsc.example.toml",
        "ue.example.toml",
        "bmsc-ues.example.toml",
        "bmsc-keys.example.toml",
    ]
    .iter()
    .map(|name| std::fs::read(deploy.join(name)).unwrap())
    .collect()
}
