//! Interoperability: the `flute` crate's receiver (ypo/flute) reassembles
//! objects from our FDT (rendered from the shipped template) and our
//! Compact No-Code, Raptor and RaptorQ ALC packets, in memory, with its MD5
//! check on.

use std::rc::Rc;
use std::time::{Duration, SystemTime};

use flute::core::UDPEndpoint;
use flute::receiver::MultiReceiver;
use flute::receiver::writer::ObjectWriterBufferBuilder;
use md5::{Digest, Md5};

use mbms_gateway::protocol::flute::fdt::{FdtFecOti, FdtFile, FdtInstance, FdtTemplate};
use mbms_gateway::protocol::flute::fec::{FecObjectSender, FecScheme};
use mbms_gateway::protocol::flute::object_sender::{
    FtiPolicy, ObjectKind, ObjectSender, ObjectSenderConfig,
};
use mbms_gateway::protocol::profile;

const TEMPLATE: &str = include_str!("../fdt-templates/3gpp-rel12.xml");
const MAX_PACKET: usize = 1428;
const TSI: u64 = 0x2a;
/// Seconds between the NTP and Unix epochs.
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

struct Object {
    location: &'static str,
    content_type: &'static str,
    toi: u128,
    data: Vec<u8>,
    max_source_block_length: u32,
}

fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(167).wrapping_add(seed) ^ (i >> 9) as u8)
        .collect()
}

fn objects() -> Vec<Object> {
    let one_symbol = profile_symbol_length() as usize;
    let object = |location, content_type, toi, data, b| Object {
        location,
        content_type,
        toi,
        data,
        max_source_block_length: b,
    };
    vec![
        object(
            "http://example.com/empty.txt",
            "text/plain",
            1,
            Vec::new(),
            64,
        ),
        object(
            "http://example.com/one.bin",
            "application/octet-stream",
            2,
            bytes(1, 1),
            64,
        ),
        object(
            "http://example.com/mikey/1-2",
            profile::flute::MIKEY_CONTENT_TYPE,
            3,
            bytes(one_symbol, 2),
            64,
        ),
        // ~3 MB in 34 source blocks of at most 64 symbols, on a 48-bit TOI.
        object(
            "http://example.com/seg?n=1&q=\"hd\"",
            profile::dcf::CONTENT_TYPE,
            0x1_0000,
            bytes(3_000_001, 3),
            64,
        ),
    ]
}

fn profile_symbol_length() -> u16 {
    ObjectSenderConfig::new(TSI, ObjectKind::File { toi: 1 }, 0, MAX_PACKET).symbol_length
}

fn sender(
    kind: ObjectKind,
    len: usize,
    max_source_block_length: u32,
    fti: FtiPolicy,
) -> ObjectSender {
    let mut config = ObjectSenderConfig::new(TSI, kind, len as u64, MAX_PACKET);
    config.max_source_block_length = max_source_block_length;
    config.fti = fti;
    ObjectSender::new(&config).unwrap()
}

fn fdt_for(objects: &[Object], expires: u32) -> FdtInstance {
    let files = objects
        .iter()
        .map(|o| {
            let sender = sender(
                ObjectKind::File { toi: o.toi },
                o.data.len(),
                o.max_source_block_length,
                FtiPolicy::default(),
            );
            let mut file = FdtFile::new(o.location, o.toi);
            file.content_length = Some(o.data.len() as u64);
            file.transfer_length = Some(o.data.len() as u64);
            file.content_type = Some(o.content_type.to_owned());
            file.content_md5 = Some(Md5::digest(&o.data).into());
            file.fec_oti = Some(FdtFecOti::from(sender.oti()));
            if o.content_type == profile::dcf::CONTENT_TYPE {
                file.decryption_key_uri = Some("http://example.com/mikey/1-2".to_owned());
            }
            file
        })
        .collect();
    FdtInstance {
        expires,
        complete: true,
        full_fdt: true,
        fec_oti: None,
        files,
    }
}

/// Every ALC packet of `data` as `kind`.
fn packets(
    kind: ObjectKind,
    data: &[u8],
    max_source_block_length: u32,
    fti: FtiPolicy,
) -> Vec<Vec<u8>> {
    let mut sender = sender(kind, data.len(), max_source_block_length, fti);
    let mut buf = [0u8; MAX_PACKET];
    let mut out = Vec::new();
    while let Some(len) = sender.next_packet(data, &mut buf) {
        out.push(buf[..len.unwrap()].to_vec());
    }
    out
}

struct Session {
    receiver: MultiReceiver,
    writer: Rc<ObjectWriterBufferBuilder>,
    endpoint: UDPEndpoint,
    now: SystemTime,
}

impl Session {
    fn new() -> Self {
        let writer = Rc::new(ObjectWriterBufferBuilder::new(true));
        let mut receiver = MultiReceiver::new(writer.clone(), None, true);
        let endpoint = UDPEndpoint::new(None, "224.0.0.1".to_owned(), 3000);
        receiver.add_listen_tsi(endpoint.clone(), TSI);
        Self {
            receiver,
            writer,
            endpoint,
            now: SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000),
        }
    }

    fn expires(&self) -> u32 {
        let unix = self
            .now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        (unix + NTP_UNIX_OFFSET + 3600) as u32
    }

    fn send(&mut self, fdt: &FdtInstance, objects: &[Object], fti: FtiPolicy) {
        let template = FdtTemplate::parse("3gpp-rel12.xml", TEMPLATE).unwrap();
        let xml = template.render(fdt).unwrap();
        let mut all = packets(
            ObjectKind::FdtInstance { instance_id: 1 },
            xml.as_bytes(),
            64,
            fti,
        );
        for o in objects {
            all.extend(packets(
                ObjectKind::File { toi: o.toi },
                &o.data,
                o.max_source_block_length,
                fti,
            ));
        }
        for pkt in &all {
            self.receiver.push(&self.endpoint, pkt, self.now).unwrap();
        }
        self.receiver.cleanup(self.now);
    }
}

#[test]
fn flute_receiver_reassembles_our_objects() {
    // With EXT_FTI only on the first packet of each block, the receiver takes
    // the OTI from the FDT entry.
    for fti in [FtiPolicy::EveryPacket, FtiPolicy::FirstOfBlock] {
        receive_all(fti);
    }
}

fn receive_all(fti: FtiPolicy) {
    let objects = objects();
    let mut session = Session::new();
    let fdt = fdt_for(&objects, session.expires());
    session.send(&fdt, &objects, fti);

    let received = session.writer.objects.borrow();
    assert_eq!(received.len(), objects.len());
    for (o, announced) in objects.iter().zip(&fdt.files) {
        let got = received
            .iter()
            .find(|r| r.borrow().meta.content_location == o.location)
            .unwrap_or_else(|| panic!("{} not received", o.location));
        let got = got.borrow();
        assert!(
            got.complete && !got.error,
            "{}: complete {} error {}",
            o.location,
            got.complete,
            got.error
        );
        assert!(got.data == o.data, "{}: data differs", o.location);
        assert_eq!(got.meta.content_type.as_deref(), Some(o.content_type));
        assert_eq!(got.meta.content_length, Some(o.data.len()));
        assert_eq!(got.meta.transfer_length, Some(o.data.len()));
        let oti = got.meta.oti.as_ref().expect("OTI known");
        let announced = announced.fec_oti.as_ref().unwrap();
        assert_eq!(
            Some(oti.encoding_symbol_length),
            announced.encoding_symbol_length
        );
        assert_eq!(
            Some(oti.maximum_source_block_length),
            announced.max_source_block_length
        );
    }
}

#[test]
fn flute_parses_our_headers_the_same_way() {
    let data = bytes(200_000, 9);
    for pkt in packets(
        ObjectKind::File { toi: 0x1_0000 },
        &data,
        16,
        FtiPolicy::EveryPacket,
    ) {
        let alc = flute::core::alc::parse_alc_pkt(&pkt).unwrap();
        assert_eq!(alc.lct.tsi, TSI);
        assert_eq!(alc.lct.toi, 0x1_0000);
        assert_eq!(alc.lct.cp, 0);
        assert_eq!(alc.transfer_length, Some(data.len() as u64));
        let oti = alc.oti.as_ref().unwrap();
        assert_eq!(oti.maximum_source_block_length, 16);
        let id = flute::core::alc::parse_payload_id(&alc, oti).unwrap();
        assert!(id.sbn < 9 && id.esi < 16);
    }
    let fdt = packets(
        ObjectKind::FdtInstance {
            instance_id: 0xabcde,
        },
        b"<x/>",
        64,
        FtiPolicy::EveryPacket,
    );
    let alc = flute::core::alc::parse_alc_pkt(&fdt[0]).unwrap();
    let info = alc.fdt_info.as_ref().unwrap();
    assert_eq!(info.version, u32::from(profile::flute::FDT_VERSION));
    assert_eq!(info.fdt_instance_id, 0xabcde);
    assert!(alc.lct.close_object);
}

/// The MD5 check is live: a wrong Content-MD5 makes the receiver reject the object.
#[test]
fn wrong_content_md5_is_rejected() {
    let objects = vec![Object {
        location: "http://example.com/x.bin",
        content_type: "application/octet-stream",
        toi: 1,
        data: bytes(5000, 4),
        max_source_block_length: 64,
    }];
    let mut session = Session::new();
    let mut fdt = fdt_for(&objects, session.expires());
    fdt.files[0].content_md5 = Some([0; 16]);
    session.send(&fdt, &objects, FtiPolicy::default());
    let received = session.writer.objects.borrow();
    let got = received[0].borrow();
    assert!(got.error && !got.complete);
}

/// Our LCT header bytes equal `ypo/flute`'s `push_lct_header` for the FLUTE
/// profile (16-bit TSI, CCI 0) across every TOI width.
#[test]
fn lct_header_bytes_match_flute() {
    use mbms_gateway::protocol::codec::Codec;
    use mbms_gateway::protocol::flute::ext::Extensions;
    use mbms_gateway::protocol::flute::lct::{FieldWidths, LctHeader};

    for toi in [
        1u128,
        0xffff,
        0x1_0000,
        0xffff_ffff_ffff,
        1 << 48,
        u64::MAX.into(),
        (1 << 112) - 1,
    ] {
        for (tsi, close_object) in [(1u64, false), (0xffff, true)] {
            let ours = LctHeader {
                widths: FieldWidths::flute(toi).unwrap(),
                psi: 0,
                close_session: false,
                close_object,
                codepoint: 0,
                cci: 0,
                tsi,
                toi,
                extensions: Extensions::default(),
            }
            .to_vec();
            let mut theirs = Vec::new();
            flute::core::lct::push_lct_header(
                &mut theirs,
                0,
                &0,
                tsi,
                &toi,
                0,
                close_object,
                false,
            );
            assert_eq!(hex::encode(&ours), hex::encode(&theirs), "toi {toi:#x}");
        }
    }
}

/// Differential: for the same object, TSI, TOI, symbol length and block
/// length, `ypo/flute`'s own No-Code sender emits the same packets, byte for
/// byte, as ours (its FDT differs and is not compared).
#[test]
fn no_code_packets_match_flute_sender() {
    use flute::sender::{ObjectDesc, Sender, TransferConfig};

    let data = bytes(250_000, 5);
    let (symbol_length, block_length) = (1396u16, 32u16);
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000);

    let oti = flute::core::Oti::new_no_code(symbol_length, block_length);
    let endpoint = UDPEndpoint::new(None, "224.0.0.1".to_owned(), 3000);
    let mut sender = Sender::new(endpoint, TSI, &oti, &Default::default());
    let location = url::Url::parse("http://example.com/a.bin").unwrap();
    let object = ObjectDesc::create_from_buffer(
        data.clone(),
        "application/octet-stream",
        &location,
        false,
        TransferConfig::default(),
    )
    .unwrap();
    let toi = sender.add_object(0, object).unwrap();
    sender.publish(now).unwrap();
    let mut theirs = Vec::new();
    while let Some(pkt) = sender.read(now) {
        let alc = flute::core::alc::parse_alc_pkt(&pkt).unwrap();
        if alc.lct.toi == toi {
            theirs.push(pkt);
        }
    }

    let mut config =
        ObjectSenderConfig::new(TSI, ObjectKind::File { toi }, data.len() as u64, MAX_PACKET);
    config.symbol_length = symbol_length;
    config.max_source_block_length = block_length.into();
    let mut ours_sender = ObjectSender::new(&config).unwrap();
    let mut buf = [0u8; MAX_PACKET];
    let mut ours = Vec::new();
    while let Some(len) = ours_sender.next_packet(&data, &mut buf) {
        ours.push(buf[..len.unwrap()].to_vec());
    }

    assert_eq!(ours.len(), 180); // ⌈250 000 / 1396⌉
    assert_eq!(theirs.len(), ours.len());
    // Compare in (SBN, ESI) order: the senders may interleave blocks differently.
    let key = |p: &Vec<u8>| p[28..32].to_vec();
    ours.sort_by_key(key);
    theirs.sort_by_key(key);
    for (a, b) in ours.iter().zip(&theirs) {
        assert_eq!(hex::encode(&a[..32]), hex::encode(&b[..32]));
        assert!(a == b);
    }
}

/// Our parser reads the FDT Instance that `ypo/flute`'s sender writes.
#[test]
fn our_parser_reads_flute_fdt() {
    use flute::sender::{ObjectDesc, Sender, TransferConfig};

    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000);
    let oti = flute::core::Oti::new_no_code(1396, 64);
    let endpoint = UDPEndpoint::new(None, "224.0.0.1".to_owned(), 3000);
    let mut sender = Sender::new(endpoint, TSI, &oti, &Default::default());
    let data = bytes(10_000, 6);
    let location = url::Url::parse("http://example.com/b.bin?x=1&y=2").unwrap();
    let object = ObjectDesc::create_from_buffer(
        data.clone(),
        "video/mp4",
        &location,
        true,
        TransferConfig::default(),
    )
    .unwrap();
    let toi = sender.add_object(0, object).unwrap();
    sender.publish(now).unwrap();
    let xml = String::from_utf8(sender.fdt_xml_data(now).unwrap()).unwrap();

    let fdt = FdtInstance::parse(&xml).unwrap();
    assert_eq!(fdt.files.len(), 1, "{xml}");
    let file = &fdt.files[0];
    assert_eq!(file.content_location, location.as_str());
    assert_eq!(file.toi, toi);
    assert_eq!(file.content_type.as_deref(), Some("video/mp4"));
    assert_eq!(file.transfer_length, Some(10_000));
    assert_eq!(file.content_md5, Some(Md5::digest(&data).into()));
    // ypo/flute puts the FEC OTI on the FDT-Instance as the default for all files.
    assert_eq!(file.fec_oti, None);
    let fec = fdt.fec_oti_for(file).expect(&xml);
    assert_eq!(
        (
            fec.encoding_id,
            fec.encoding_symbol_length,
            fec.max_source_block_length
        ),
        (0, Some(1396), Some(64))
    );
    let unix = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(u64::from(fdt.expires) > unix + NTP_UNIX_OFFSET, "{xml}");
}

/// Sends `objects` with `scheme` (FDT first), dropping every tenth packet
/// but the closing one of each object of more than ten packets, and checks
/// the `flute` crate's receiver rebuilds each object exactly (its MD5
/// check is on). Objects of a few packets travel whole: a Raptor block of
/// K = 5 with one repair symbol that loses ESI 2 keeps ESIs {0, 1, 3, 4,
/// 5, 6}, whose constraint matrix has rank 14 < L = 15, so no decoder can
/// rebuild it (see `raptor::tests::rank_deficient_symbols_wait_for_more`).
fn assert_received_under_loss(scheme: FecScheme, objects: &[Object]) -> usize {
    let fec_sender = |kind, len: usize| {
        let config = ObjectSenderConfig::new(TSI, kind, len as u64, MAX_PACKET);
        FecObjectSender::new(&config, scheme).unwrap()
    };
    let mut session = Session::new();
    let mut fdt = fdt_for(objects, session.expires());
    for (file, o) in fdt.files.iter_mut().zip(objects) {
        let sender = fec_sender(ObjectKind::File { toi: o.toi }, o.data.len());
        file.fec_oti = Some(FdtFecOti::from(sender.oti()));
    }
    let template = FdtTemplate::parse("3gpp-rel12.xml", TEMPLATE).unwrap();
    let xml = template.render(&fdt).unwrap();
    let mut all = packets(
        ObjectKind::FdtInstance { instance_id: 1 },
        xml.as_bytes(),
        64,
        FtiPolicy::EveryPacket,
    );
    let mut lost = 0;
    for o in objects {
        let mut sender = fec_sender(ObjectKind::File { toi: o.toi }, o.data.len());
        let lossy = sender.packet_count() > 10;
        let mut buf = [0u8; MAX_PACKET];
        let mut n = 0;
        while let Some(len) = sender.next_packet(&o.data, &mut buf) {
            n += 1;
            // Keep the closing packet: the receiver learns the object ended.
            if lossy && n % 10 == 3 && !sender.is_complete() {
                lost += 1;
                continue;
            }
            all.push(buf[..len.unwrap()].to_vec());
        }
    }
    for pkt in &all {
        session
            .receiver
            .push(&session.endpoint, pkt, session.now)
            .unwrap();
    }
    session.receiver.cleanup(session.now);

    let received = session.writer.objects.borrow();
    assert_eq!(received.len(), objects.len());
    for o in objects {
        let got = received
            .iter()
            .find(|r| r.borrow().meta.content_location == o.location)
            .unwrap_or_else(|| panic!("{} not received", o.location));
        let got = got.borrow();
        assert!(got.complete && !got.error, "{}", o.location);
        assert!(got.data == o.data, "{}: data differs", o.location);
    }
    lost
}

/// A small object of `smallest` bytes, one of a full symbol, one of ~3 MB
/// (three source blocks of about 716 symbols).
fn fec_objects(locations: [&'static str; 3], toi: u128, smallest: usize) -> Vec<Object> {
    let one_symbol = profile_symbol_length() as usize;
    [
        (locations[0], toi, bytes(smallest, 7)),
        (locations[1], toi + 1, bytes(one_symbol, 8)),
        (locations[2], toi + 2, bytes(3_000_001, 9)),
    ]
    .into_iter()
    .map(|(location, toi, data)| Object {
        location,
        content_type: "application/octet-stream",
        toi,
        data,
        max_source_block_length: 1024,
    })
    .collect()
}

/// The `flute` crate's receiver (its RaptorQ decoder) reassembles our
/// RaptorQ objects, announced in our FDT, with every tenth packet lost, so
/// repair symbols are needed and used.
#[test]
fn flute_receiver_reassembles_our_raptorq_objects() {
    let scheme = FecScheme::RaptorQ {
        repair_overhead: 0.25,
    };
    let locations = [
        "http://example.com/rq/one.bin",
        "http://example.com/rq/symbol.bin",
        "http://example.com/rq/seg.bin",
    ];
    let lost = assert_received_under_loss(scheme, &fec_objects(locations, 11, 1));
    assert!(lost > 250);
}

/// The same with Raptor (FEC Encoding ID 1): the crate reads our RFC 5053
/// EXT_FTI and Payload IDs and its Raptor decoder (the `raptor-code`
/// crate) repairs the losses from our repair symbols. The small object
/// has the smallest size Raptor codes, four bytes in four 1-byte symbols.
#[test]
fn flute_receiver_reassembles_our_raptor_objects() {
    let scheme = FecScheme::Raptor {
        repair_overhead: 0.25,
    };
    let locations = [
        "http://example.com/r10/four.bin",
        "http://example.com/r10/symbol.bin",
        "http://example.com/r10/seg.bin",
    ];
    let lost = assert_received_under_loss(scheme, &fec_objects(locations, 21, 4));
    assert!(lost > 250);
}
