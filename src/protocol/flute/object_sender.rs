//! Compact No-Code packetizer (RFC 5445 on ALC, RFC 5052 §9.1 partitioning):
//! turns one object into ALC packets, one at a time, in caller-owned buffers.
//!
//! The object is never held here. The sender says which byte range the next
//! symbol covers ([`ObjectSender::next_symbol`]); the caller passes exactly
//! those bytes to [`ObjectSender::write_packet`]. Ranges come in object order,
//! each starting where the previous one ended, so a producer that encrypts
//! and streams a large object (a DCF being built) can feed it straight in.
//!
//! The LCT header is built once per object (with and without EXT_FTI); each
//! packet is a header copy, a flag patch, the 4-byte Payload ID and a copy of
//! the symbol. Nothing is allocated per packet.

use std::ops::Range;

use super::FluteError;
use super::ext::{ExtFdt, Extensions, HeaderExtension};
use super::lct::{self, FieldWidths, LctHeader};
use super::oti::{FTI_BODY_LEN, FecEncodingId, FecPayloadId, Oti, PAYLOAD_ID_LEN, SchemeOti};
use super::partition::BlockPartition;
use crate::protocol::codec::Codec;
use crate::protocol::profile;

/// What the object is on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// A file or other object, TOI ≥ 1.
    File { toi: u128 },
    /// An FDT Instance: TOI 0 with EXT_FDT (RFC 3926 §3.4.1).
    FdtInstance { instance_id: u32 },
}

impl ObjectKind {
    fn toi(&self) -> u128 {
        match self {
            Self::File { toi } => *toi,
            Self::FdtInstance { .. } => lct::TOI_FDT,
        }
    }
}

/// When packets carry EXT_FTI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FtiPolicy {
    /// Every packet: a receiver may join at any packet (what most receivers expect).
    EveryPacket,
    /// Only the first packet of each source block.
    FirstOfBlock,
}

impl Default for FtiPolicy {
    fn default() -> Self {
        if profile::flute::FTI_IN_EVERY_PACKET {
            Self::EveryPacket
        } else {
            Self::FirstOfBlock
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectSenderConfig {
    pub tsi: u64,
    pub kind: ObjectKind,
    /// L, bytes of the object as sent (after any content encoding).
    pub transfer_length: u64,
    /// E, bytes per encoding symbol; see [`max_symbol_length`].
    pub symbol_length: u16,
    /// B, symbols per source block at most.
    pub max_source_block_length: u32,
    /// Largest ALC packet (UDP payload) the path carries, e.g. 1428 for a
    /// 1500-byte MTU with IPv4/UDP and headroom.
    pub max_packet_len: usize,
    pub fti: FtiPolicy,
    /// Set B (close object) on the last packet.
    pub close_object: bool,
    /// Set A (close session) on the last packet; only when the session ends.
    pub close_session: bool,
    /// EXT_CENC content encoding, if the object is content-encoded in-band.
    pub cenc: Option<u8>,
}

impl ObjectSenderConfig {
    /// The project defaults: EXT_FTI on every packet, B on the last packet.
    pub fn new(tsi: u64, kind: ObjectKind, transfer_length: u64, max_packet_len: usize) -> Self {
        Self {
            tsi,
            kind,
            transfer_length,
            symbol_length: max_symbol_length(kind, max_packet_len),
            max_source_block_length: DEFAULT_MAX_SOURCE_BLOCK_LENGTH,
            max_packet_len,
            fti: FtiPolicy::default(),
            close_object: true,
            close_session: false,
            cenc: None,
        }
    }

    fn extensions(&self, fti: Option<&[u8]>) -> Result<Extensions<'static>, FluteError> {
        Extensions::build(&extension_list(self.kind, self.cenc, fti))
    }
}

/// The header extensions of every packet of an object, in sending order.
fn extension_list(
    kind: ObjectKind,
    cenc: Option<u8>,
    fti: Option<&[u8]>,
) -> Vec<HeaderExtension<'_>> {
    let fdt = match kind {
        ObjectKind::FdtInstance { instance_id } => Some(HeaderExtension::Fdt(ExtFdt {
            version: profile::flute::FDT_VERSION,
            instance_id,
        })),
        ObjectKind::File { .. } => None,
    };
    fdt.into_iter()
        .chain(cenc.map(HeaderExtension::Cenc))
        .chain(fti.map(HeaderExtension::Fti))
        .collect()
}

/// Source block length used when the caller does not choose one. No-Code
/// has no decoding cost per block; 1024 symbols keeps the 16-bit SBN enough
/// for objects beyond 90 GB at 1400-byte symbols.
pub const DEFAULT_MAX_SOURCE_BLOCK_LENGTH: u32 = 1024;

/// The largest symbol that fits `max_packet_len` with the worst-case header
/// (EXT_FTI present, no EXT_CENC) of `kind` under the FLUTE profile, capped
/// at 65 535. `ObjectSender::new` re-checks the real header.
pub fn max_symbol_length(kind: ObjectKind, max_packet_len: usize) -> u16 {
    let fixed = FieldWidths::flute(kind.toi()).map_or(lct::MAX_HEADER_LEN, |w| w.fixed_len());
    let fti = [0u8; FTI_BODY_LEN];
    let extensions: usize = extension_list(kind, None, Some(&fti))
        .iter()
        .map(Codec::encoded_len)
        .sum();
    let overhead = fixed + extensions + PAYLOAD_ID_LEN;
    max_packet_len
        .saturating_sub(overhead)
        .min(usize::from(u16::MAX)) as u16
}

/// The next symbol the sender needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SymbolRequest {
    pub sbn: u32,
    pub esi: u32,
    /// Object bytes the symbol carries (shorter than E only at the end).
    pub range: Range<u64>,
}

/// The per-object part of every ALC packet, shared by the senders of all FEC
/// schemes: the LCT header built once with and without EXT_FTI, and the
/// closing flags of the last packet.
#[derive(Debug, Clone)]
pub(crate) struct PacketTemplate {
    fec: FecEncodingId,
    header_with_fti: Vec<u8>,
    header_without_fti: Vec<u8>,
    fti: FtiPolicy,
    close_object: bool,
    close_session: bool,
}

impl PacketTemplate {
    /// Checks the TOI and the OTI and that a full symbol with the longest
    /// header fits `config.max_packet_len`.
    pub(crate) fn new(config: &ObjectSenderConfig, oti: &Oti) -> Result<Self, FluteError> {
        if let ObjectKind::File { toi: lct::TOI_FDT } = config.kind {
            return Err(FluteError::ReservedToi);
        }
        oti.validate()?;
        let fec = oti.encoding_id();
        let fti_body = oti.fti_body();
        let header = |fti: Option<&[u8]>| -> Result<Vec<u8>, FluteError> {
            let header = LctHeader {
                widths: FieldWidths::flute(config.kind.toi())?,
                psi: 0,
                close_session: false,
                close_object: false,
                codepoint: profile::flute::codepoint(fec as u8),
                cci: 0,
                tsi: config.tsi,
                toi: config.kind.toi(),
                extensions: config.extensions(fti)?,
            };
            header.validate()?;
            Ok(header.to_vec())
        };
        let header_with_fti = header(Some(&fti_body))?;
        let header_without_fti = header(None)?;

        let needed = header_with_fti.len() + PAYLOAD_ID_LEN + usize::from(oti.symbol_length);
        if needed > config.max_packet_len {
            return Err(FluteError::PacketTooLarge {
                needed,
                header_len: header_with_fti.len() + PAYLOAD_ID_LEN,
                symbol_len: oti.symbol_length.into(),
                max: config.max_packet_len,
            });
        }
        Ok(Self {
            fec,
            header_with_fti,
            header_without_fti,
            fti: config.fti,
            close_object: config.close_object,
            close_session: config.close_session,
        })
    }

    /// Writes one packet into `out`: header (with EXT_FTI as the policy
    /// says), Payload ID, symbol; `last` sets the configured closing flags.
    pub(crate) fn write(
        &self,
        id: FecPayloadId,
        last: bool,
        symbol: &[u8],
        out: &mut [u8],
    ) -> Result<usize, FluteError> {
        let header = match self.fti {
            FtiPolicy::EveryPacket => &self.header_with_fti,
            FtiPolicy::FirstOfBlock if id.esi == 0 => &self.header_with_fti,
            FtiPolicy::FirstOfBlock => &self.header_without_fti,
        };
        let payload_id = id.to_bytes(self.fec)?;
        let id_at = header.len();
        let symbol_at = id_at + PAYLOAD_ID_LEN;
        let len = symbol_at + symbol.len();
        let available = out.len();
        let out = out.get_mut(..len).ok_or(FluteError::OutputTooSmall {
            needed: len,
            available,
        })?;
        out[..id_at].copy_from_slice(header);
        if last {
            lct::set_close_object(out, self.close_object);
            lct::set_close_session(out, self.close_session);
        }
        out[id_at..symbol_at].copy_from_slice(&payload_id);
        out[symbol_at..].copy_from_slice(symbol);
        Ok(len)
    }
}

/// Takes the bytes of `range` from an in-memory object, for the
/// `next_packet` conveniences of the senders.
pub(crate) fn object_slice<'a>(
    object: &'a [u8],
    range: &Range<u64>,
) -> Result<&'a [u8], FluteError> {
    usize::try_from(range.start)
        .ok()
        .zip(usize::try_from(range.end).ok())
        .and_then(|(start, end)| object.get(start..end))
        .ok_or(FluteError::SymbolLengthMismatch {
            expected: (range.end - range.start) as usize,
            got: object.len().saturating_sub(range.start as usize),
        })
}

#[derive(Debug, Clone)]
pub struct ObjectSender {
    oti: Oti,
    partition: BlockPartition,
    template: PacketTemplate,
    /// Position of the next packet.
    sbn: u64,
    esi: u64,
    /// Object offset of the next symbol: symbols are contiguous in (SBN, ESI)
    /// order, so the range needs no partition arithmetic per packet.
    offset: u64,
    /// Packets written so far.
    sent: u64,
}

impl ObjectSender {
    pub fn new(config: &ObjectSenderConfig) -> Result<Self, FluteError> {
        if let ObjectKind::File { toi: lct::TOI_FDT } = config.kind {
            return Err(FluteError::ReservedToi);
        }
        let oti = Oti {
            transfer_length: config.transfer_length,
            symbol_length: config.symbol_length,
            scheme: SchemeOti::CompactNoCode {
                max_source_block_length: config.max_source_block_length,
            },
        };
        oti.validate()?;
        let partition = BlockPartition::new(
            config.transfer_length,
            config.symbol_length.into(),
            config.max_source_block_length.into(),
        )?;
        check_payload_id_range(FecEncodingId::CompactNoCode, &partition)?;
        Ok(Self {
            oti,
            partition,
            template: PacketTemplate::new(config, &oti)?,
            sbn: 0,
            esi: 0,
            offset: 0,
            sent: 0,
        })
    }

    /// The OTI the packets carry, for the object's FDT entry.
    pub fn oti(&self) -> &Oti {
        &self.oti
    }

    pub fn partition(&self) -> &BlockPartition {
        &self.partition
    }

    /// Packets one full pass sends: one per symbol, and one empty packet for
    /// an empty object (so receivers learn it exists and is complete).
    pub fn packet_count(&self) -> u64 {
        self.partition.symbols.max(1)
    }

    pub fn packets_sent(&self) -> u64 {
        self.sent
    }

    pub fn is_complete(&self) -> bool {
        self.sent >= self.packet_count()
    }

    /// Starts another pass over the object (carousel).
    pub fn rewind(&mut self) {
        self.sbn = 0;
        self.esi = 0;
        self.offset = 0;
        self.sent = 0;
    }

    /// The symbol the next packet carries, `None` once the pass is complete.
    pub fn next_symbol(&self) -> Option<SymbolRequest> {
        if self.is_complete() {
            return None;
        }
        let end = (self.offset + self.partition.symbol_length).min(self.partition.transfer_length);
        debug_assert!(
            self.partition
                .symbol_range(self.sbn, self.esi)
                .unwrap_or(0..0)
                == (self.offset..end)
        );
        Some(SymbolRequest {
            sbn: self.sbn as u32,
            esi: self.esi as u32,
            range: self.offset..end,
        })
    }

    /// Writes the packet for [`Self::next_symbol`] into `out`, given exactly
    /// the bytes of its range; returns the packet length.
    pub fn write_packet(&mut self, symbol: &[u8], out: &mut [u8]) -> Result<usize, FluteError> {
        let request = self.next_symbol().ok_or(FluteError::ObjectComplete)?;
        check_symbol_len(&request, symbol)?;
        let id = FecPayloadId {
            sbn: request.sbn,
            esi: request.esi,
        };
        let last = self.sent + 1 == self.packet_count();
        let len = self.template.write(id, last, symbol, out)?;
        self.advance(request.range.end);
        Ok(len)
    }

    /// For objects already in memory (FDT Instances, MIKEY messages): takes
    /// the next symbol from `object` and writes its packet.
    pub fn next_packet(
        &mut self,
        object: &[u8],
        out: &mut [u8],
    ) -> Option<Result<usize, FluteError>> {
        let request = self.next_symbol()?;
        Some(object_slice(object, &request.range).and_then(|symbol| self.write_packet(symbol, out)))
    }

    fn advance(&mut self, offset: u64) {
        self.offset = offset;
        self.sent += 1;
        self.esi += 1;
        if Some(self.esi) >= self.partition.block_len(self.sbn) {
            self.sbn += 1;
            self.esi = 0;
        }
    }
}

/// The symbol passed must be exactly the requested range.
pub(crate) fn check_symbol_len(request: &SymbolRequest, symbol: &[u8]) -> Result<(), FluteError> {
    let expected = (request.range.end - request.range.start) as usize;
    if symbol.len() != expected {
        return Err(FluteError::SymbolLengthMismatch {
            expected,
            got: symbol.len(),
        });
    }
    Ok(())
}

/// Every (SBN, ESI) of the partition's source symbols fits the scheme's
/// FEC Payload ID.
pub(crate) fn check_payload_id_range(
    fec: FecEncodingId,
    partition: &BlockPartition,
) -> Result<(), FluteError> {
    let (max_sbn, max_esi) = FecPayloadId::limits(fec);
    if partition.blocks > u64::from(max_sbn) + 1 {
        return Err(FluteError::PayloadIdOverflow {
            what: "source block count",
            value: partition.blocks,
            limit: u64::from(max_sbn) + 1,
        });
    }
    if partition.large_block_len > u64::from(max_esi) + 1 {
        return Err(FluteError::PayloadIdOverflow {
            what: "source block length",
            value: partition.large_block_len,
            limit: u64::from(max_esi) + 1,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::flute::alc::AlcPacket;
    use proptest::prelude::*;

    const MTU_PAYLOAD: usize = 1428;

    fn object(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 + i / 251) as u8).collect()
    }

    /// Sends every packet of `data` and reassembles it from the decoded packets
    /// alone (payload IDs and EXT_FTI), as a receiver would.
    fn send_and_reassemble(config: &ObjectSenderConfig, data: &[u8]) -> (Vec<u8>, Vec<AlcSummary>) {
        let mut sender = ObjectSender::new(config).unwrap();
        let mut buf = vec![0u8; config.max_packet_len];
        let mut packets = Vec::new();
        let mut rebuilt = vec![None; data.len()];
        let mut oti = None;
        while let Some(res) = sender.next_packet(data, &mut buf) {
            let len = res.unwrap();
            assert!(len <= config.max_packet_len);
            let pkt = AlcPacket::decode(&buf[..len]).unwrap();
            if let Some(o) = pkt.oti() {
                oti = Some(o.unwrap());
            }
            let oti = oti.expect("EXT_FTI before the first symbol");
            let SchemeOti::CompactNoCode {
                max_source_block_length,
            } = oti.scheme
            else {
                panic!("not No-Code")
            };
            let part = BlockPartition::new(
                oti.transfer_length,
                oti.symbol_length.into(),
                max_source_block_length.into(),
            )
            .unwrap();
            let id = pkt.payload_id.unwrap();
            if let Some(range) = part.symbol_range(id.sbn.into(), id.esi.into()) {
                assert_eq!(pkt.symbol.len() as u64, range.end - range.start);
                for (i, b) in range.zip(pkt.symbol) {
                    assert!(
                        rebuilt[i as usize].replace(*b).is_none(),
                        "byte {i} sent twice"
                    );
                }
            } else {
                assert!(pkt.symbol.is_empty() && data.is_empty());
            }
            packets.push(AlcSummary {
                toi: pkt.header.toi,
                close_object: pkt.header.close_object,
                close_session: pkt.header.close_session,
                has_fti: pkt.header.extensions.fti().is_some(),
                fdt: pkt.header.extensions.fdt(),
                esi: id.esi,
            });
        }
        assert!(sender.is_complete());
        assert_eq!(packets.len() as u64, sender.packet_count());
        let rebuilt = rebuilt
            .into_iter()
            .map(|b| b.expect("byte never sent"))
            .collect();
        (rebuilt, packets)
    }

    #[derive(Debug)]
    struct AlcSummary {
        toi: u128,
        close_object: bool,
        close_session: bool,
        has_fti: bool,
        fdt: Option<ExtFdt>,
        esi: u32,
    }

    fn file_config(len: usize) -> ObjectSenderConfig {
        ObjectSenderConfig::new(0x1234, ObjectKind::File { toi: 5 }, len as u64, MTU_PAYLOAD)
    }

    #[test]
    fn symbol_length_fills_the_packet() {
        let config = file_config(10_000);
        // 12 fixed + 16 EXT_FTI + 4 payload ID = 32 bytes of headers.
        assert_eq!(config.symbol_length, 1396);
        let mut sender = ObjectSender::new(&config).unwrap();
        let mut buf = [0u8; MTU_PAYLOAD];
        assert_eq!(
            sender.next_packet(&object(10_000), &mut buf),
            Some(Ok(MTU_PAYLOAD))
        );
        let mut too_big = config.clone();
        too_big.symbol_length += 1;
        assert!(matches!(
            ObjectSender::new(&too_big),
            Err(FluteError::PacketTooLarge {
                needed: 1429,
                max: 1428,
                ..
            })
        ));
    }

    #[test]
    fn empty_object_is_one_closing_packet() {
        let (rebuilt, packets) = send_and_reassemble(&file_config(0), &[]);
        assert!(rebuilt.is_empty());
        assert_eq!(packets.len(), 1);
        assert!(packets[0].close_object && packets[0].has_fti);
    }

    #[test]
    fn small_and_exact_objects() {
        for len in [1, 1395, 1396, 1397] {
            let data = object(len);
            let (rebuilt, packets) = send_and_reassemble(&file_config(len), &data);
            assert_eq!(rebuilt, data);
            assert_eq!(packets.len(), len.div_ceil(1396));
            assert!(packets.last().unwrap().close_object);
            assert!(
                packets
                    .iter()
                    .all(|p| p.toi == 5 && !p.close_session && p.fdt.is_none())
            );
        }
    }

    #[test]
    fn many_blocks_with_fti_only_on_first_of_block() {
        let data = object(300_001);
        let mut config = file_config(data.len());
        config.symbol_length = 1000;
        config.max_source_block_length = 7;
        config.fti = FtiPolicy::FirstOfBlock;
        config.close_session = true;
        let (rebuilt, packets) = send_and_reassemble(&config, &data);
        assert_eq!(rebuilt, data);
        assert_eq!(packets.len(), 301);
        assert!(packets.iter().all(|p| p.has_fti == (p.esi == 0)));
        let (last, rest) = packets.split_last().unwrap();
        assert!(last.close_object && last.close_session);
        assert!(rest.iter().all(|p| !p.close_object && !p.close_session));
    }

    #[test]
    fn fdt_instance_packets_carry_ext_fdt_on_toi_0() {
        let xml = b"<FDT-Instance/>";
        let config = ObjectSenderConfig::new(
            1,
            ObjectKind::FdtInstance { instance_id: 42 },
            15,
            MTU_PAYLOAD,
        );
        assert_eq!(config.symbol_length, 1392);
        let (rebuilt, packets) = send_and_reassemble(&config, xml);
        assert_eq!(rebuilt, xml);
        assert_eq!(packets[0].toi, 0);
        assert_eq!(
            packets[0].fdt,
            Some(ExtFdt {
                version: profile::flute::FDT_VERSION,
                instance_id: 42
            })
        );
    }

    #[test]
    fn rejections_name_the_problem() {
        let mut config = file_config(10);
        config.kind = ObjectKind::File { toi: 0 };
        assert_eq!(
            ObjectSender::new(&config).unwrap_err(),
            FluteError::ReservedToi
        );

        let mut config = file_config(10);
        config.max_source_block_length = 70_000;
        config.transfer_length = 97_000_000; // 69 485 symbols in one block
        assert!(matches!(
            ObjectSender::new(&config),
            Err(FluteError::PayloadIdOverflow {
                what: "source block length",
                ..
            })
        ));
        config.max_source_block_length = 1;
        assert!(matches!(
            ObjectSender::new(&config),
            Err(FluteError::PayloadIdOverflow {
                what: "source block count",
                ..
            })
        ));

        let mut sender = ObjectSender::new(&file_config(10)).unwrap();
        let mut small = [0u8; 20];
        assert!(matches!(
            sender.write_packet(&[0; 10], &mut small),
            Err(FluteError::OutputTooSmall {
                needed: 42,
                available: 20
            })
        ));
        let mut buf = [0u8; MTU_PAYLOAD];
        assert_eq!(
            sender.write_packet(&[0; 9], &mut buf),
            Err(FluteError::SymbolLengthMismatch {
                expected: 10,
                got: 9
            })
        );
        assert_eq!(sender.write_packet(&[0; 10], &mut buf), Ok(42));
        assert_eq!(
            sender.write_packet(&[0; 10], &mut buf),
            Err(FluteError::ObjectComplete)
        );
        sender.rewind();
        assert_eq!(sender.next_symbol().unwrap().range, 0..10);
    }

    /// A 3 GB object is described, not held: the sender needs only its length.
    #[test]
    fn large_object_plan() {
        let len = 3_000_000_000u64;
        let config = ObjectSenderConfig::new(1, ObjectKind::File { toi: 9 }, len, MTU_PAYLOAD);
        let mut sender = ObjectSender::new(&config).unwrap();
        let p = *sender.partition();
        // T = ⌈3e9 / 1396⌉ = 2 148 998, N = ⌈T / 1024⌉ = 2099, A_large = 1024, I = 1721.
        assert_eq!(
            (p.symbols, p.blocks, p.large_block_len, p.large_blocks),
            (2_148_998, 2099, 1024, 1721)
        );
        assert_eq!(sender.packet_count(), 2_148_998);
        let mut buf = [0u8; MTU_PAYLOAD];
        let symbol = [0u8; 1396];
        for _ in 0..1024 {
            sender.write_packet(&symbol, &mut buf).unwrap();
        }
        assert_eq!(
            sender.next_symbol(),
            Some(SymbolRequest {
                sbn: 1,
                esi: 0,
                range: 1024 * 1396..1025 * 1396
            })
        );
    }

    #[test]
    fn streaming_ranges_are_contiguous() {
        let mut config = file_config(50_000);
        config.max_source_block_length = 3;
        let mut sender = ObjectSender::new(&config).unwrap();
        let data = object(50_000);
        let mut buf = [0u8; MTU_PAYLOAD];
        let mut at = 0u64;
        while let Some(req) = sender.next_symbol() {
            assert_eq!(req.range.start, at);
            at = req.range.end;
            sender
                .write_packet(
                    &data[req.range.start as usize..req.range.end as usize],
                    &mut buf,
                )
                .unwrap();
        }
        assert_eq!(at, 50_000);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn every_byte_is_sent_exactly_once(len in 0usize..40_000, e in 1u16..1396, b in 1u32..20) {
            let data = object(len);
            let mut config = file_config(len);
            config.symbol_length = e;
            config.max_source_block_length = b;
            prop_assume!(len.div_ceil(usize::from(e)).div_ceil(b as usize) <= 65_536);
            let (rebuilt, _) = send_and_reassemble(&config, &data);
            prop_assert_eq!(rebuilt, data);
        }
    }
}
