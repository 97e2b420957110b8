//! RaptorQ (RFC 6330, FEC Encoding ID 6) object sender, the optional download
//! FEC of TS 26.346: the object is cut into Z source blocks
//! (`Partition[Kt, Z]`, RFC 6330 §4.4.1.2), each sent as its K source symbols
//! (systematic: the object bytes themselves, the last symbol zero-padded to T)
//! followed by ⌈K·overhead⌉ repair symbols with ESIs K, K+1, … (§4.4.2).
//!
//! Streaming: the caller feeds source symbols in object order as with the
//! No-Code sender; only the current block (K·T bytes) is held, and its repair
//! symbols are computed by the `raptorq` crate when its last source symbol
//! arrives. Repair packets ask for no object bytes (their range is empty).

use raptorq::{EncodingPacket, ObjectTransmissionInformation, SourceBlockEncoder};

use super::super::FluteError;
use super::super::object_sender::{
    ObjectSenderConfig, PacketTemplate, SymbolRequest, check_payload_id_range, check_symbol_len,
    object_slice,
};
use super::super::oti::{FecEncodingId, FecPayloadId, Oti, SchemeOti};
use super::super::partition::BlockPartition;

/// Al: symbols are whole 32-bit words, the alignment RFC 6330 §4.3 uses in
/// its example derivation and that receivers expect.
pub const SYMBOL_ALIGNMENT: u8 = 4;

/// K'max, the largest source block RFC 6330 §5.1.2 defines (Table 2).
pub const MAX_SOURCE_BLOCK_SYMBOLS: u64 = 56_403;

/// Largest transfer length F (RFC 6330 §4.4.1.2 as corrected by erratum 5548).
pub const MAX_TRANSFER_LENGTH: u64 = 942_574_504_275;

/// Z is an 8-bit field (RFC 6330 §3.3.3).
pub const MAX_SOURCE_BLOCKS: u64 = 255;

/// Repair overhead resolution: the fraction is kept in parts per million so
/// that e.g. 0.1 means exactly K/10 (an `f32` 0.1 is slightly above it).
const PPM: u64 = 1_000_000;

/// The validated OTI of a RaptorQ object with its partition and the
/// `raptorq` crate's view of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaptorQLayout {
    pub oti: Oti,
    pub partition: BlockPartition,
    pub sub_blocks: u16,
    pub alignment: u8,
}

impl RaptorQLayout {
    /// Checks every RFC 6330 §4.4.1.2 constraint the crate would otherwise
    /// assert on, so that an OTI read off the wire can never make it panic.
    pub fn from_oti(oti: &Oti) -> Result<Self, FluteError> {
        let SchemeOti::RaptorQ {
            source_blocks,
            sub_blocks,
            alignment,
        } = oti.scheme
        else {
            return Err(FluteError::UnsupportedFec(oti.encoding_id() as u8));
        };
        oti.validate()?;
        let limit = |what, value: u64, limit: u64| {
            if value > limit {
                Err(FluteError::SchemeLimit {
                    scheme: "RaptorQ",
                    what,
                    value,
                    limit,
                })
            } else {
                Ok(())
            }
        };
        limit("transfer length", oti.transfer_length, MAX_TRANSFER_LENGTH)?;
        if alignment == 0 || !oti.symbol_length.is_multiple_of(u16::from(alignment)) {
            return Err(FluteError::SymbolAlignment {
                symbol_length: oti.symbol_length,
                alignment,
            });
        }
        // Each of the N sub-blocks needs at least one Al-byte sub-symbol.
        let words = u64::from(oti.symbol_length / u16::from(alignment));
        if sub_blocks == 0 {
            return Err(FluteError::ZeroSubBlocks);
        }
        limit("sub-block count", sub_blocks.into(), words)?;
        let partition = BlockPartition::with_block_count(
            oti.transfer_length,
            oti.symbol_length.into(),
            source_blocks.into(),
        )?;
        limit(
            "source block length",
            partition.large_block_len,
            MAX_SOURCE_BLOCK_SYMBOLS,
        )?;
        Ok(Self {
            oti: *oti,
            partition,
            sub_blocks,
            alignment,
        })
    }

    /// The sender's choice for an object of `transfer_length` bytes: N = 1
    /// (each source symbol is a contiguous object range, so the object can
    /// be streamed) and Z = ⌈Kt/B⌉ with B the configured maximum block
    /// length capped at K'max (RFC 6330 §4.3 with KL = B).
    pub fn for_object(
        transfer_length: u64,
        symbol_length: u16,
        max_source_block_length: u32,
    ) -> Result<Self, FluteError> {
        if max_source_block_length == 0 {
            return Err(FluteError::ZeroBlockLength);
        }
        if symbol_length == 0 {
            return Err(FluteError::ZeroSymbolLength);
        }
        let symbols = transfer_length.div_ceil(symbol_length.into());
        let max_block = u64::from(max_source_block_length).min(MAX_SOURCE_BLOCK_SYMBOLS);
        let blocks = symbols.div_ceil(max_block).max(1);
        let source_blocks = u8::try_from(blocks).map_err(|_| FluteError::SchemeLimit {
            scheme: "RaptorQ",
            what: "source block count",
            value: blocks,
            limit: MAX_SOURCE_BLOCKS,
        })?;
        Self::from_oti(&Oti {
            transfer_length,
            symbol_length,
            scheme: SchemeOti::RaptorQ {
                source_blocks,
                sub_blocks: 1,
                alignment: SYMBOL_ALIGNMENT,
            },
        })
    }

    /// The same parameters as the `raptorq` crate's type (valid by construction).
    pub fn crate_oti(&self) -> ObjectTransmissionInformation {
        ObjectTransmissionInformation::new(
            self.oti.transfer_length,
            self.oti.symbol_length,
            self.partition.blocks as u8,
            self.sub_blocks,
            self.alignment,
        )
    }

    /// Bytes of source block `sbn` as the codec sees it: K·T, the last
    /// symbol of the object zero-padded.
    pub fn padded_block_len(&self, sbn: u64) -> Option<usize> {
        let k = self.partition.block_len(sbn)?;
        Some(k as usize * usize::from(self.oti.symbol_length))
    }
}

/// Repair symbols of a block of `k` source symbols: ⌈k · ppm / 10⁶⌉.
fn repair_count(k: u64, overhead_ppm: u64) -> u64 {
    (k * overhead_ppm).div_ceil(PPM)
}

fn overhead_ppm(repair_overhead: f32) -> Result<u64, FluteError> {
    if !repair_overhead.is_finite() || !(0.0..=10.0).contains(&repair_overhead) {
        return Err(FluteError::RepairOverhead(repair_overhead.to_string()));
    }
    Ok((f64::from(repair_overhead) * PPM as f64).round() as u64)
}

#[derive(Debug, Clone)]
pub struct RaptorQSender {
    layout: RaptorQLayout,
    crate_oti: ObjectTransmissionInformation,
    template: PacketTemplate,
    overhead_ppm: u64,
    /// Position of the next packet: ESI < K is a source symbol, K.. repair.
    sbn: u64,
    esi: u64,
    /// Object offset of the next source symbol.
    offset: u64,
    sent: u64,
    /// Source symbols of the current block, zero-padded to K·T.
    block: Vec<u8>,
    /// Repair symbols of the current block, once its source symbols are in.
    repair: Vec<EncodingPacket>,
}

impl RaptorQSender {
    /// `config.max_source_block_length` is B, `config.symbol_length` T (a
    /// multiple of [`SYMBOL_ALIGNMENT`]); `repair_overhead` is the fraction
    /// of K sent as repair symbols per block (0.25 → ⌈K/4⌉).
    pub fn new(config: &ObjectSenderConfig, repair_overhead: f32) -> Result<Self, FluteError> {
        let overhead_ppm = overhead_ppm(repair_overhead)?;
        let layout = RaptorQLayout::for_object(
            config.transfer_length,
            config.symbol_length,
            config.max_source_block_length,
        )?;
        let template = PacketTemplate::new(config, &layout.oti)?;
        let p = &layout.partition;
        check_payload_id_range(FecEncodingId::RaptorQ, p)?;
        let (_, max_esi) = FecPayloadId::limits(FecEncodingId::RaptorQ);
        let largest_esi = p.large_block_len + repair_count(p.large_block_len, overhead_ppm);
        if largest_esi > u64::from(max_esi) + 1 {
            return Err(FluteError::PayloadIdOverflow {
                what: "repair symbol ID",
                value: largest_esi - 1,
                limit: max_esi.into(),
            });
        }
        let block_capacity = layout.padded_block_len(0).unwrap_or(0);
        Ok(Self {
            crate_oti: layout.crate_oti(),
            layout,
            template,
            overhead_ppm,
            sbn: 0,
            esi: 0,
            offset: 0,
            sent: 0,
            block: Vec::with_capacity(block_capacity),
            repair: Vec::new(),
        })
    }

    pub fn oti(&self) -> &Oti {
        &self.layout.oti
    }

    pub fn layout(&self) -> &RaptorQLayout {
        &self.layout
    }

    /// Repair symbols sent for source block `sbn`.
    pub fn repair_symbols(&self, sbn: u64) -> Option<u64> {
        Some(repair_count(
            self.layout.partition.block_len(sbn)?,
            self.overhead_ppm,
        ))
    }

    /// Packets of one pass: K + repair per block; one empty packet for an
    /// empty object.
    pub fn packet_count(&self) -> u64 {
        let p = &self.layout.partition;
        let per_block = |k| k + repair_count(k, self.overhead_ppm);
        let total = p.large_blocks * per_block(p.large_block_len)
            + (p.blocks - p.large_blocks) * per_block(p.small_block_len);
        total.max(1)
    }

    pub fn packets_sent(&self) -> u64 {
        self.sent
    }

    pub fn is_complete(&self) -> bool {
        self.sent >= self.packet_count()
    }

    /// Starts another pass (carousel); repair symbols are recomputed.
    pub fn rewind(&mut self) {
        self.sbn = 0;
        self.esi = 0;
        self.offset = 0;
        self.sent = 0;
        self.block.clear();
        self.repair.clear();
    }

    fn block_len(&self) -> u64 {
        self.layout.partition.block_len(self.sbn).unwrap_or(0)
    }

    /// The next packet's symbol. A source symbol's range is the object bytes
    /// it carries; a repair symbol's range is empty (at the current offset).
    pub fn next_symbol(&self) -> Option<SymbolRequest> {
        if self.is_complete() {
            return None;
        }
        let end = if self.esi < self.block_len() {
            (self.offset + u64::from(self.layout.oti.symbol_length))
                .min(self.layout.oti.transfer_length)
        } else {
            self.offset
        };
        Some(SymbolRequest {
            sbn: self.sbn as u32,
            esi: self.esi as u32,
            range: self.offset..end,
        })
    }

    /// Writes the packet for [`Self::next_symbol`], given exactly the bytes
    /// of its range (nothing for a repair symbol). The call that takes the
    /// last source symbol of a block also encodes the block's repair symbols.
    pub fn write_packet(&mut self, symbol: &[u8], out: &mut [u8]) -> Result<usize, FluteError> {
        let request = self.next_symbol().ok_or(FluteError::ObjectComplete)?;
        check_symbol_len(&request, symbol)?;
        let id = FecPayloadId {
            sbn: request.sbn,
            esi: request.esi,
        };
        let last = self.sent + 1 == self.packet_count();
        let k = self.block_len();
        let len = if self.esi < k {
            let t = usize::from(self.layout.oti.symbol_length);
            let at = self.block.len();
            self.block.extend_from_slice(symbol);
            self.block.resize(at + t, 0);
            self.template.write(id, last, &self.block[at..], out)?
        } else if k == 0 {
            // The empty object: one packet without a symbol.
            self.template.write(id, last, &[], out)?
        } else {
            let repair = self
                .repair
                .get((self.esi - k) as usize)
                .ok_or(FluteError::ObjectComplete)?;
            self.template.write(id, last, repair.data(), out)?
        };
        self.advance(request.range.end, k);
        Ok(len)
    }

    /// For objects in memory: takes the next symbol from `object`.
    pub fn next_packet(
        &mut self,
        object: &[u8],
        out: &mut [u8],
    ) -> Option<Result<usize, FluteError>> {
        let request = self.next_symbol()?;
        Some(object_slice(object, &request.range).and_then(|symbol| self.write_packet(symbol, out)))
    }

    fn advance(&mut self, offset: u64, k: u64) {
        self.offset = offset;
        self.sent += 1;
        self.esi += 1;
        let repair = repair_count(k, self.overhead_ppm);
        if self.esi == k && repair > 0 {
            let encoder = SourceBlockEncoder::new(self.sbn as u8, &self.crate_oti, &self.block);
            self.repair = encoder.repair_packets(0, repair as u32);
        }
        if self.esi >= k + repair {
            self.sbn += 1;
            self.esi = 0;
            self.block.clear();
            self.repair.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::codec::Codec;
    use crate::protocol::flute::alc::AlcPacket;
    use crate::protocol::flute::object_sender::ObjectKind;
    use proptest::prelude::*;

    fn object(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 13 + i / 509) as u8).collect()
    }

    fn config(len: u64, symbol_length: u16, b: u32) -> ObjectSenderConfig {
        let mut c = ObjectSenderConfig::new(0x1234, ObjectKind::File { toi: 5 }, len, 1428);
        c.symbol_length = symbol_length;
        c.max_source_block_length = b;
        c
    }

    fn packets(config: &ObjectSenderConfig, overhead: f32, data: &[u8]) -> Vec<Vec<u8>> {
        let mut sender = RaptorQSender::new(config, overhead).unwrap();
        let mut buf = [0u8; 1428];
        let mut out = Vec::new();
        while let Some(len) = sender.next_packet(data, &mut buf) {
            out.push(buf[..len.unwrap()].to_vec());
        }
        out
    }

    /// F = 3 000 001, T = 1396, B = 1024: Kt = 2149, Z = ⌈2149/1024⌉ = 3,
    /// Partition[2149, 3] = (KL 717, KS 716, ZL 1, ZS 2); ⌈717/4⌉ = 180 and
    /// ⌈716/4⌉ = 179 repair symbols.
    #[test]
    fn exact_header_fti_and_payload_id_bytes() {
        let data = object(3_000_001);
        let config = config(data.len() as u64, 1396, 1024);
        let sender = RaptorQSender::new(&config, 0.25).unwrap();
        let p = sender.layout().partition;
        assert_eq!(
            (
                p.symbols,
                p.blocks,
                p.large_block_len,
                p.small_block_len,
                p.large_blocks
            ),
            (2149, 3, 717, 716, 1)
        );
        assert_eq!(
            (0..3)
                .map(|b| sender.repair_symbols(b).unwrap())
                .collect::<Vec<_>>(),
            [180, 179, 179]
        );
        assert_eq!(sender.packet_count(), 2149 + 180 + 179 + 179);
        let all = packets(&config, 0.25, &data);
        assert_eq!(all.len(), 2687);
        // Block 1, ESI 716 (its first repair symbol) is packet 717 + 180 + 716.
        let pkt = &all[717 + 180 + 716];
        assert_eq!(
            hex::encode(&pkt[..32]),
            concat!(
                "10100706", // V=1, H=1, HDR_LEN 7 words (28 bytes), codepoint 6
                "00000000", // CCI
                "12340005", // TSI, TOI
                "4004",     // EXT_FTI, HEL 4
                "00002dc6c1",
                "00",
                "0574", // F(40) Res(8) T(16)
                "03",
                "0001",
                "04",
                "0000",     // Z(8) N(16) Al(8) padding
                "010002cc", // SBN(8) = 1, ESI(24) = 716
            )
        );
        assert_eq!(pkt.len(), 32 + 1396);
        // The last packet closes the object; the short last source symbol
        // (3 000 001 − 2148·1396 = 1393 bytes) is zero-padded to T.
        let last_source = &all[717 + 180 + 716 + 179 + 715];
        assert_eq!(&last_source[28..32], &[2, 0, 0x02, 0xcb]);
        assert_eq!(&last_source[32..32 + 1393], &data[2148 * 1396..]);
        assert_eq!(&last_source[32 + 1393..], &[0, 0, 0]);
        assert!(
            AlcPacket::decode(all.last().unwrap())
                .unwrap()
                .header
                .close_object
        );
    }

    /// Our packets carry exactly the `raptorq` crate's own encoding of the
    /// whole object (same partition, same source and repair symbols), and
    /// the crate's object decoder rebuilds the object from them.
    #[test]
    fn packets_equal_raptorq_crate_encoding() {
        for (len, t, b) in [
            (1usize, 1396u16, 1024u32),
            (1396, 1396, 64),
            (200_003, 1000, 50),
            (70_000, 64, 300),
        ] {
            let data = object(len);
            let config = config(len as u64, t, b);
            let sender = RaptorQSender::new(&config, 0.3).unwrap();
            let theirs = raptorq::Encoder::new(&data, sender.layout().crate_oti());
            let mut expected = Vec::new();
            for (sbn, block) in theirs.get_block_encoders().iter().enumerate() {
                expected.extend(block.source_packets());
                expected.extend(
                    block.repair_packets(0, sender.repair_symbols(sbn as u64).unwrap() as u32),
                );
            }
            let ours: Vec<_> = packets(&config, 0.3, &data)
                .iter()
                .map(|p| {
                    let alc = AlcPacket::decode(p).unwrap();
                    let id = alc.payload_id.unwrap();
                    raptorq::EncodingPacket::new(
                        raptorq::PayloadId::new(id.sbn as u8, id.esi),
                        alc.symbol.to_vec(),
                    )
                })
                .collect();
            assert_eq!(ours.len(), expected.len(), "len {len}");
            assert!(ours == expected, "len {len}: symbols differ");
            // A quarter of the source symbols lost (ESI ≡ 1 mod 4): the
            // repair symbols leave more than K + 2 per block.
            let mut decoder = raptorq::Decoder::new(sender.layout().crate_oti());
            let mut result = None;
            for pkt in ours {
                let esi = pkt.payload_id().encoding_symbol_id();
                let sbn = pkt.payload_id().source_block_number();
                let k = sender.layout().partition.block_len(sbn.into()).unwrap();
                if u64::from(esi) < k && esi % 4 == 1 {
                    continue;
                }
                result = result.or(decoder.decode(pkt));
            }
            assert_eq!(result.as_deref(), Some(&data[..]), "len {len}");
        }
    }

    #[test]
    fn rejections_name_the_problem() {
        assert!(matches!(
            RaptorQSender::new(&config(10, 1398, 64), 0.25),
            Err(FluteError::SymbolAlignment {
                symbol_length: 1398,
                alignment: 4
            })
        ));
        assert!(matches!(
            RaptorQSender::new(&config(10, 1396, 64), -0.1),
            Err(FluteError::RepairOverhead(_))
        ));
        assert!(matches!(
            RaptorQSender::new(&config(10, 1396, 64), f32::NAN),
            Err(FluteError::RepairOverhead(_))
        ));
        // 256 blocks do not fit the 8-bit Z.
        assert!(matches!(
            RaptorQSender::new(&config(256 * 1396, 1396, 1), 0.25),
            Err(FluteError::SchemeLimit {
                what: "source block count",
                value: 256,
                ..
            })
        ));
        let rq = |z, n, al, t| Oti {
            transfer_length: 10_000,
            symbol_length: t,
            scheme: SchemeOti::RaptorQ {
                source_blocks: z,
                sub_blocks: n,
                alignment: al,
            },
        };
        let mut huge = rq(255, 1, 4, 65_532);
        huge.transfer_length = MAX_TRANSFER_LENGTH + 1;
        assert!(matches!(
            RaptorQLayout::from_oti(&huge),
            Err(FluteError::SchemeLimit {
                what: "transfer length",
                ..
            })
        ));
        assert_eq!(
            RaptorQLayout::from_oti(&rq(1, 0, 4, 100)),
            Err(FluteError::ZeroSubBlocks)
        );
        assert!(matches!(
            RaptorQLayout::from_oti(&rq(1, 26, 4, 100)),
            Err(FluteError::SchemeLimit {
                what: "sub-block count",
                ..
            })
        ));
        assert!(matches!(
            RaptorQLayout::from_oti(&rq(101, 1, 4, 100)),
            Err(FluteError::BlockCount {
                blocks: 101,
                symbols: 100
            })
        ));
        assert!(matches!(
            RaptorQLayout::from_oti(&rq(1, 1, 0, 100)),
            Err(FluteError::SymbolAlignment { .. })
        ));
        assert!(
            RaptorQLayout::from_oti(&Oti {
                transfer_length: 4 * 56_403,
                symbol_length: 4,
                scheme: SchemeOti::RaptorQ {
                    source_blocks: 1,
                    sub_blocks: 1,
                    alignment: 4
                }
            })
            .is_ok()
        );
        assert!(matches!(
            RaptorQLayout::from_oti(&Oti {
                transfer_length: 4 * 56_404,
                symbol_length: 4,
                scheme: SchemeOti::RaptorQ {
                    source_blocks: 1,
                    sub_blocks: 1,
                    alignment: 4
                }
            }),
            Err(FluteError::SchemeLimit {
                what: "source block length",
                ..
            })
        ));
    }

    /// Streaming holds one block: the buffer never grows past KL·T, and a
    /// second pass (carousel) sends the same packets.
    #[test]
    fn one_block_in_memory_and_rewind_repeats_the_pass() {
        let data = object(300_001);
        let config = config(data.len() as u64, 1000, 64);
        let mut sender = RaptorQSender::new(&config, 0.25).unwrap();
        let block_bytes = sender.layout().padded_block_len(0).unwrap();
        assert_eq!(block_bytes, 61 * 1000); // Kt = 301, Z = 5, KL = 61
        let mut buf = [0u8; 1428];
        let mut pass = |sender: &mut RaptorQSender| {
            let mut out = Vec::new();
            while let Some(len) = sender.next_packet(&data, &mut buf) {
                out.push(buf[..len.unwrap()].to_vec());
                assert!(sender.block.capacity() <= block_bytes);
            }
            out
        };
        let first = pass(&mut sender);
        assert_eq!(
            sender.write_packet(&[], &mut [0u8; 1428]),
            Err(FluteError::ObjectComplete)
        );
        sender.rewind();
        assert!(pass(&mut sender) == first);
    }

    #[test]
    fn overhead_is_exact_in_parts_per_million() {
        let ppm = overhead_ppm(0.1).unwrap();
        assert_eq!(ppm, 100_000);
        assert_eq!(repair_count(10, ppm), 1);
        assert_eq!(repair_count(11, ppm), 2);
        assert_eq!(repair_count(1, overhead_ppm(0.25).unwrap()), 1);
        assert_eq!(repair_count(7, overhead_ppm(0.0).unwrap()), 0);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Our partition is the crate's (`calculate_block_offsets`) for any
        /// object, symbol length and block cap.
        #[test]
        fn partition_matches_raptorq_crate(len in 1usize..300_000, words in 1u16..400, b in 1u32..3000) {
            let t = words * 4;
            let layout = match RaptorQLayout::for_object(len as u64, t, b) {
                Ok(l) => l,
                Err(FluteError::SchemeLimit { what: "source block count", .. }) => return Ok(()),
                Err(e) => panic!("{e}"),
            };
            let crate_oti = layout.crate_oti();
            prop_assert_eq!(&layout.oti.fti_body()[..12], &crate_oti.serialize()[..]);
            let offsets = raptorq::calculate_block_offsets(&vec![0; len], &crate_oti);
            prop_assert_eq!(offsets.len() as u64, layout.partition.blocks);
            for (sbn, (start, end)) in offsets.into_iter().enumerate() {
                let first = layout.partition.first_symbol(sbn as u64).unwrap();
                prop_assert_eq!(start as u64, first * u64::from(t));
                prop_assert_eq!(Some(end - start), layout.padded_block_len(sbn as u64));
            }
        }
    }
}
