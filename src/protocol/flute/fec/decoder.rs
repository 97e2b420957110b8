//! Object reconstruction from received ALC packets (probe side): symbols are
//! placed by their FEC Payload ID under the object's OTI; No-Code blocks are
//! complete when every source symbol arrived, Raptor and RaptorQ blocks when
//! their block decoder (our RFC 5053 one, the `raptorq` crate's) recovers
//! them from any K-ish symbols.
//!
//! Every input is checked before it reaches the codec (OTI limits, SBN, ESI,
//! symbol length), so wire data can never make it panic, and the object's
//! size is bounded by the caller.

use std::iter;

use raptorq::{EncodingPacket, PayloadId, SourceBlockDecoder};
use thiserror::Error;

use super::super::FluteError;
use super::super::alc::AlcPacket;
use super::super::oti::{FecPayloadId, Oti, SchemeOti};
use super::super::partition::BlockPartition;
use super::raptor::{BlockDecoder, RaptorLayout};
use super::raptorq::RaptorQLayout;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FecDecodeError {
    #[error("OTI rejected: {0}")]
    Oti(#[from] FluteError),
    #[error("transfer length {length} exceeds the receiver's limit {limit}")]
    ObjectTooLarge { length: u64, limit: u64 },
    #[error("source block number {sbn} is past the object's {blocks} source blocks")]
    UnknownBlock { sbn: u32, blocks: u64 },
    #[error("ESI {esi} is past the {symbols} source symbols of No-Code block {sbn}")]
    UnknownSymbol { sbn: u32, esi: u32, symbols: u64 },
    #[error("symbol SBN {sbn} ESI {esi} has {got} bytes where {expected} are expected")]
    SymbolLength {
        sbn: u32,
        esi: u32,
        expected: usize,
        got: usize,
    },
    #[error("object incomplete: source blocks {0:?} not recovered")]
    Incomplete(Vec<u32>),
}

#[derive(Debug)]
enum BlockState {
    /// No-Code: which source symbols arrived, and how many are missing.
    Placing {
        have: Vec<bool>,
        missing: u64,
    },
    Decoding(Box<SourceBlockDecoder>),
    Raptor(Box<BlockDecoder>),
    Done,
}

#[derive(Debug)]
enum Scheme {
    CompactNoCode,
    Raptor,
    RaptorQ(RaptorQLayout),
}

/// Rebuilds one object from its encoding symbols.
#[derive(Debug)]
pub struct ObjectDecoder {
    oti: Oti,
    partition: BlockPartition,
    scheme: Scheme,
    blocks: Vec<BlockState>,
    data: Vec<u8>,
}

impl ObjectDecoder {
    /// `max_transfer_length` bounds the memory an OTI off the wire may claim.
    pub fn new(oti: &Oti, max_transfer_length: u64) -> Result<Self, FecDecodeError> {
        if oti.transfer_length > max_transfer_length {
            return Err(FecDecodeError::ObjectTooLarge {
                length: oti.transfer_length,
                limit: max_transfer_length,
            });
        }
        oti.validate()?;
        let (scheme, partition) = match oti.scheme {
            SchemeOti::CompactNoCode {
                max_source_block_length,
            } => (
                Scheme::CompactNoCode,
                BlockPartition::new(
                    oti.transfer_length,
                    oti.symbol_length.into(),
                    max_source_block_length.into(),
                )?,
            ),
            SchemeOti::RaptorQ { .. } => {
                let layout = RaptorQLayout::from_oti(oti)?;
                (Scheme::RaptorQ(layout), layout.partition)
            }
            SchemeOti::Raptor { .. } => (Scheme::Raptor, RaptorLayout::from_oti(oti)?.partition),
        };
        let blocks = (0..partition.blocks)
            .map(|sbn| {
                let k = partition.block_len(sbn).unwrap_or(0);
                match &scheme {
                    _ if k == 0 => BlockState::Done,
                    Scheme::CompactNoCode => BlockState::Placing {
                        have: vec![false; k as usize],
                        missing: k,
                    },
                    // The layout keeps K within 4..=8192, so the decoder exists.
                    Scheme::Raptor => BlockDecoder::new(k as u32, oti.symbol_length.into())
                        .map_or(BlockState::Done, |d| BlockState::Raptor(Box::new(d))),
                    Scheme::RaptorQ(layout) => {
                        BlockState::Decoding(Box::new(SourceBlockDecoder::new(
                            sbn as u8,
                            &layout.crate_oti(),
                            k * u64::from(oti.symbol_length),
                        )))
                    }
                }
            })
            .collect();
        Ok(Self {
            oti: *oti,
            partition,
            scheme,
            blocks,
            data: vec![0; oti.transfer_length as usize],
        })
    }

    pub fn oti(&self) -> &Oti {
        &self.oti
    }

    /// Adds the symbol of one packet. Duplicates and symbols of blocks
    /// already recovered are accepted and ignored.
    pub fn push(&mut self, id: FecPayloadId, symbol: &[u8]) -> Result<(), FecDecodeError> {
        let (sbn, esi) = (id.sbn, id.esi);
        if self.partition.symbols == 0 && symbol.is_empty() {
            // The single packet that announces an empty object.
            return Ok(());
        }
        let blocks = self.partition.blocks;
        let state = self
            .blocks
            .get_mut(sbn as usize)
            .ok_or(FecDecodeError::UnknownBlock { sbn, blocks })?;
        let first = self.partition.first_symbol(sbn.into()).unwrap_or(0);
        let t = u64::from(self.oti.symbol_length);
        let start = (first * t) as usize;
        match state {
            BlockState::Done => Ok(()),
            BlockState::Placing { have, missing } => {
                let symbols = have.len() as u64;
                let range = self
                    .partition
                    .symbol_range(sbn.into(), esi.into())
                    .ok_or(FecDecodeError::UnknownSymbol { sbn, esi, symbols })?;
                let expected = (range.end - range.start) as usize;
                if symbol.len() != expected {
                    return Err(FecDecodeError::SymbolLength {
                        sbn,
                        esi,
                        expected,
                        got: symbol.len(),
                    });
                }
                if let Some(seen) = have.get_mut(esi as usize).filter(|seen| !**seen) {
                    *seen = true;
                    *missing -= 1;
                    self.data[range.start as usize..range.end as usize].copy_from_slice(symbol);
                }
                if *missing == 0 {
                    *state = BlockState::Done;
                }
                Ok(())
            }
            BlockState::Raptor(decoder) => {
                check_full_symbol(sbn, esi, symbol, t)?;
                if decoder.push(esi, symbol) {
                    let block = decoder.source().unwrap_or_default();
                    let end = (start + block.len()).min(self.data.len());
                    self.data[start..end].copy_from_slice(&block[..end - start]);
                    *state = BlockState::Done;
                }
                Ok(())
            }
            BlockState::Decoding(decoder) => {
                check_full_symbol(sbn, esi, symbol, t)?;
                let packet = EncodingPacket::new(PayloadId::new(sbn as u8, esi), symbol.to_vec());
                if let Some(block) = decoder.decode(iter::once(packet)) {
                    let end = (start + block.len()).min(self.data.len());
                    let len = end - start;
                    self.data[start..end].copy_from_slice(&block[..len]);
                    *state = BlockState::Done;
                }
                Ok(())
            }
        }
    }

    /// Adds a packet's symbol; a packet without Payload ID carries none.
    pub fn push_packet(&mut self, packet: &AlcPacket<'_>) -> Result<(), FecDecodeError> {
        match packet.payload_id {
            Some(id) => self.push(id, packet.symbol),
            None => Ok(()),
        }
    }

    pub fn is_complete(&self) -> bool {
        self.blocks.iter().all(|b| matches!(b, BlockState::Done))
    }

    /// SBNs of the blocks not yet recovered.
    pub fn incomplete_blocks(&self) -> Vec<u32> {
        self.blocks
            .iter()
            .enumerate()
            .filter(|(_, b)| !matches!(b, BlockState::Done))
            .map(|(sbn, _)| sbn as u32)
            .collect()
    }

    /// The object, or the blocks still missing.
    pub fn finish(self) -> Result<Vec<u8>, FecDecodeError> {
        let missing = self.incomplete_blocks();
        if missing.is_empty() {
            Ok(self.data)
        } else {
            Err(FecDecodeError::Incomplete(missing))
        }
    }

    /// Which FEC scheme the decoder runs, for logs.
    pub fn is_raptorq(&self) -> bool {
        matches!(self.scheme, Scheme::RaptorQ(_))
    }
}

/// Raptor and RaptorQ symbols are always T bytes (the last source symbol
/// padded).
fn check_full_symbol(sbn: u32, esi: u32, symbol: &[u8], t: u64) -> Result<(), FecDecodeError> {
    if symbol.len() as u64 != t {
        return Err(FecDecodeError::SymbolLength {
            sbn,
            esi,
            expected: t as usize,
            got: symbol.len(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_oti() -> impl Strategy<Value = Oti> {
        let scheme = prop_oneof![
            any::<u32>().prop_map(|b| SchemeOti::CompactNoCode {
                max_source_block_length: b
            }),
            (any::<u8>(), any::<u16>(), any::<u8>()).prop_map(|(z, n, al)| SchemeOti::RaptorQ {
                source_blocks: z,
                sub_blocks: n,
                alignment: al,
            }),
            (any::<u16>(), any::<u8>(), any::<u8>()).prop_map(|(z, n, al)| SchemeOti::Raptor {
                source_blocks: z,
                sub_blocks: n,
                alignment: al,
            }),
        ];
        (0u64..20_000, prop_oneof![1u16..64, any::<u16>()], scheme).prop_map(|(f, t, scheme)| Oti {
            transfer_length: f,
            symbol_length: t,
            scheme,
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any OTI and any (SBN, ESI, bytes): an error or a value, never a
        /// panic, and never more memory than the caller's limit allows.
        #[test]
        fn random_input_never_panics(
            oti in any_oti(),
            symbols in proptest::collection::vec(
                (0u32..4, prop_oneof![0u32..80, 0u32..(1 << 24)], proptest::collection::vec(any::<u8>(), 0..80)),
                0..120,
            ),
        ) {
            let Ok(mut decoder) = ObjectDecoder::new(&oti, 10_000) else { return Ok(()) };
            for (sbn, esi, bytes) in symbols {
                let _ = decoder.push(FecPayloadId { sbn, esi }, &bytes);
            }
            let complete = decoder.is_complete();
            let missing = decoder.incomplete_blocks();
            prop_assert_eq!(complete, missing.is_empty());
            match decoder.finish() {
                Ok(data) => prop_assert_eq!(data.len() as u64, oti.transfer_length),
                Err(e) => prop_assert_eq!(e, FecDecodeError::Incomplete(missing)),
            }
        }

        /// Symbols of the right length for a valid Raptor OTI, with random
        /// content and ESIs: decoding is attempted on nonsense and must
        /// either fail or produce some block, never panic.
        #[test]
        fn garbage_raptor_symbols_never_panic(
            f in 4u64..4000, words in 1u16..16, z in 1u16..4,
            symbols in proptest::collection::vec((0u32..4, prop_oneof![0u32..300, any::<u16>().prop_map(u32::from)], any::<u8>()), 0..200),
        ) {
            let t = words * 4;
            let oti = Oti {
                transfer_length: f,
                symbol_length: t,
                scheme: SchemeOti::Raptor { source_blocks: z, sub_blocks: 1, alignment: 4 },
            };
            let Ok(mut decoder) = ObjectDecoder::new(&oti, 1 << 20) else { return Ok(()) };
            for (sbn, esi, fill) in symbols {
                let _ = decoder.push(FecPayloadId { sbn, esi }, &vec![fill; usize::from(t)]);
            }
            let _ = decoder.finish();
        }

        /// Symbols of the right length for a valid RaptorQ OTI, with random
        /// content and ESIs (repair symbols that belong to no real encoding).
        #[test]
        fn garbage_raptorq_symbols_never_panic(
            f in 1u64..4000, words in 1u16..16, z in 1u8..4,
            symbols in proptest::collection::vec((0u32..4, 0u32..300, any::<u8>()), 0..200),
        ) {
            let t = words * 4;
            let oti = Oti {
                transfer_length: f,
                symbol_length: t,
                scheme: SchemeOti::RaptorQ { source_blocks: z, sub_blocks: 1, alignment: 4 },
            };
            let Ok(mut decoder) = ObjectDecoder::new(&oti, 1 << 20) else { return Ok(()) };
            for (sbn, esi, fill) in symbols {
                let _ = decoder.push(FecPayloadId { sbn, esi }, &vec![fill; usize::from(t)]);
            }
            let _ = decoder.finish();
        }
    }

    #[test]
    fn rejections_name_the_problem() {
        let no_code = Oti {
            transfer_length: 5000,
            symbol_length: 1000,
            scheme: SchemeOti::CompactNoCode {
                max_source_block_length: 2,
            },
        };
        assert_eq!(
            ObjectDecoder::new(&no_code, 4999).unwrap_err(),
            FecDecodeError::ObjectTooLarge {
                length: 5000,
                limit: 4999
            }
        );
        let mut d = ObjectDecoder::new(&no_code, 5000).unwrap();
        assert_eq!(
            d.push(FecPayloadId { sbn: 3, esi: 0 }, &[0; 1000]),
            Err(FecDecodeError::UnknownBlock { sbn: 3, blocks: 3 })
        );
        assert_eq!(
            d.push(FecPayloadId { sbn: 2, esi: 1 }, &[0; 1000]),
            Err(FecDecodeError::UnknownSymbol {
                sbn: 2,
                esi: 1,
                symbols: 1
            })
        );
        assert_eq!(
            d.push(FecPayloadId { sbn: 0, esi: 1 }, &[0; 999]),
            Err(FecDecodeError::SymbolLength {
                sbn: 0,
                esi: 1,
                expected: 1000,
                got: 999
            })
        );
        // Sub-blocking (N > 1) is not decoded; the project sends N = 1.
        let raptor = Oti {
            scheme: SchemeOti::Raptor {
                source_blocks: 1,
                sub_blocks: 2,
                alignment: 4,
            },
            ..no_code
        };
        assert!(matches!(
            ObjectDecoder::new(&raptor, 5000).unwrap_err(),
            FecDecodeError::Oti(FluteError::SchemeLimit {
                scheme: "Raptor",
                what: "sub-block count",
                ..
            })
        ));
        let rq = Oti {
            scheme: SchemeOti::RaptorQ {
                source_blocks: 1,
                sub_blocks: 1,
                alignment: 4,
            },
            ..no_code
        };
        let mut d = ObjectDecoder::new(&rq, 5000).unwrap();
        // The short last source symbol travels padded to T.
        assert_eq!(
            d.push(FecPayloadId { sbn: 0, esi: 4 }, &[0; 1]),
            Err(FecDecodeError::SymbolLength {
                sbn: 0,
                esi: 4,
                expected: 1000,
                got: 1
            })
        );
    }
}
