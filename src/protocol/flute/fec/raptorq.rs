//! RaptorQ (RFC 6330, FEC Encoding ID 6) object sender, the optional download
//! FEC of TS 26.346: the object is cut into Z source blocks
//! (`Partition[Kt, Z]`, RFC 6330 §4.4.1.2), each sent as its K source symbols
//! (systematic: the object bytes themselves, the last symbol zero-padded to T)
//! followed by ⌈K·overhead⌉ repair symbols with ESIs K, K+1, … (§4.4.2).
//!
//! The sending itself is the shared [`SystematicSender`]; this module gives
//! it the RaptorQ layout and the `raptorq` crate's block encoder.

use raptorq::{ObjectTransmissionInformation, SourceBlockEncoder};

use super::super::FluteError;
use super::super::object_sender::ObjectSenderConfig;
use super::super::oti::{Oti, SchemeOti};
use super::super::partition::BlockPartition;
use super::systematic::{RepairEncoder, SystematicSender};

/// Al: symbols are whole 32-bit words, the alignment RFC 6330 §4.3 uses in
/// its example derivation and that receivers expect.
pub const SYMBOL_ALIGNMENT: u8 = 4;

/// K'max, the largest source block RFC 6330 §5.1.2 defines (Table 2).
pub const MAX_SOURCE_BLOCK_SYMBOLS: u64 = 56_403;

/// Largest transfer length F (RFC 6330 §4.4.1.2 as corrected by erratum 5548).
pub const MAX_TRANSFER_LENGTH: u64 = 942_574_504_275;

/// Z is an 8-bit field (RFC 6330 §3.3.3).
pub const MAX_SOURCE_BLOCKS: u64 = 255;

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

/// RaptorQ's [`RepairEncoder`]: the `raptorq` crate's block encoder.
#[derive(Debug, Clone)]
pub struct RaptorQEncoder {
    layout: RaptorQLayout,
    crate_oti: ObjectTransmissionInformation,
}

impl RepairEncoder for RaptorQEncoder {
    fn encode_repair(&mut self, sbn: u64, block: &[u8], count: u64, out: &mut Vec<u8>) {
        let encoder = SourceBlockEncoder::new(sbn as u8, &self.crate_oti, block);
        for packet in encoder.repair_packets(0, count as u32) {
            out.extend_from_slice(packet.data());
        }
    }
}

/// The RaptorQ object sender.
pub type RaptorQSender = SystematicSender<RaptorQEncoder>;

impl SystematicSender<RaptorQEncoder> {
    /// `config.max_source_block_length` is B, `config.symbol_length` T (a
    /// multiple of [`SYMBOL_ALIGNMENT`]); `repair_overhead` is the fraction
    /// of K sent as repair symbols per block (0.25 → ⌈K/4⌉).
    pub fn new(config: &ObjectSenderConfig, repair_overhead: f32) -> Result<Self, FluteError> {
        let layout = RaptorQLayout::for_object(
            config.transfer_length,
            config.symbol_length,
            config.max_source_block_length,
        )?;
        let encoder = RaptorQEncoder {
            layout,
            crate_oti: layout.crate_oti(),
        };
        Self::with_encoder(
            config,
            layout.oti,
            layout.partition,
            repair_overhead,
            encoder,
        )
    }

    pub fn layout(&self) -> &RaptorQLayout {
        &self.encoder().layout
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
                assert!(sender.block_capacity() <= block_bytes);
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
