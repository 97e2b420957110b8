//! FEC for FLUTE download sessions (TS 26.346 §7): one sender shape over
//! Compact No-Code (RFC 5445), Raptor (RFC 5053) and RaptorQ (RFC 6330),
//! chosen per session, and the matching object decoder for probes and tests.
//!
//! Every sender is driven the same way: ask [`FecObjectSender::next_symbol`]
//! which object bytes the next packet needs (an empty range for a repair
//! symbol), pass exactly those to [`FecObjectSender::write_packet`], get one
//! ALC packet in the caller's buffer.

pub mod decoder;
pub mod raptor;
pub mod raptorq;
pub mod systematic;

use self::raptor::RaptorSender;
use self::raptorq::RaptorQSender;
use super::FluteError;
use super::object_sender::{ObjectSender, ObjectSenderConfig, SymbolRequest};
use super::oti::{FecEncodingId, Oti};

pub use self::decoder::{FecDecodeError, ObjectDecoder};

/// The FEC scheme of a download session, from its configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FecScheme {
    /// FEC Encoding ID 0: source symbols only.
    CompactNoCode,
    /// FEC Encoding ID 1, the scheme TS 26.346 mandates: `repair_overhead`
    /// as for RaptorQ.
    Raptor { repair_overhead: f32 },
    /// FEC Encoding ID 6: `repair_overhead` is the fraction of each block's
    /// K source symbols added as repair symbols (0.25 → ⌈K/4⌉).
    RaptorQ { repair_overhead: f32 },
}

impl FecScheme {
    pub fn encoding_id(&self) -> FecEncodingId {
        match self {
            Self::CompactNoCode => FecEncodingId::CompactNoCode,
            Self::Raptor { .. } => FecEncodingId::Raptor,
            Self::RaptorQ { .. } => FecEncodingId::RaptorQ,
        }
    }
}

/// An object sender for any supported FEC scheme.
#[derive(Debug, Clone)]
pub enum FecObjectSender {
    CompactNoCode(ObjectSender),
    Raptor(RaptorSender),
    RaptorQ(RaptorQSender),
}

macro_rules! each {
    ($self:expr, $s:ident => $e:expr) => {
        match $self {
            FecObjectSender::CompactNoCode($s) => $e,
            FecObjectSender::Raptor($s) => $e,
            FecObjectSender::RaptorQ($s) => $e,
        }
    };
}

impl FecObjectSender {
    /// `config.max_source_block_length` is B for every scheme: the No-Code
    /// block length, or the largest K of Raptor (at most 8192) or RaptorQ.
    pub fn new(config: &ObjectSenderConfig, scheme: FecScheme) -> Result<Self, FluteError> {
        Ok(match scheme {
            FecScheme::CompactNoCode => Self::CompactNoCode(ObjectSender::new(config)?),
            FecScheme::Raptor { repair_overhead } => {
                Self::Raptor(RaptorSender::new(config, repair_overhead)?)
            }
            FecScheme::RaptorQ { repair_overhead } => {
                Self::RaptorQ(RaptorQSender::new(config, repair_overhead)?)
            }
        })
    }

    /// The OTI for the object's FDT entry and EXT_FTI.
    pub fn oti(&self) -> &Oti {
        each!(self, s => s.oti())
    }

    /// Packets of one full pass (source and repair).
    pub fn packet_count(&self) -> u64 {
        each!(self, s => s.packet_count())
    }

    pub fn packets_sent(&self) -> u64 {
        each!(self, s => s.packets_sent())
    }

    pub fn is_complete(&self) -> bool {
        each!(self, s => s.is_complete())
    }

    pub fn rewind(&mut self) {
        each!(self, s => s.rewind())
    }

    /// The next packet's symbol; ranges are contiguous in object order and
    /// empty for repair symbols.
    pub fn next_symbol(&self) -> Option<SymbolRequest> {
        each!(self, s => s.next_symbol())
    }

    /// Writes the packet for [`Self::next_symbol`] from exactly its bytes.
    pub fn write_packet(&mut self, symbol: &[u8], out: &mut [u8]) -> Result<usize, FluteError> {
        each!(self, s => s.write_packet(symbol, out))
    }

    /// For objects in memory.
    pub fn next_packet(
        &mut self,
        object: &[u8],
        out: &mut [u8],
    ) -> Option<Result<usize, FluteError>> {
        each!(self, s => s.next_packet(object, out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::codec::Codec;
    use crate::protocol::flute::alc::AlcPacket;
    use crate::protocol::flute::object_sender::ObjectKind;
    use crate::protocol::flute::oti::FecPayloadId;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use std::collections::HashMap;

    const MAX_PACKET: usize = 1428;

    fn object(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(151).wrapping_add(seed) ^ (i >> 11) as u8)
            .collect()
    }

    fn config(len: usize) -> ObjectSenderConfig {
        ObjectSenderConfig::new(0x1234, ObjectKind::File { toi: 5 }, len as u64, MAX_PACKET)
    }

    fn all_packets(config: &ObjectSenderConfig, scheme: FecScheme, data: &[u8]) -> Vec<Vec<u8>> {
        let mut sender = FecObjectSender::new(config, scheme).unwrap();
        let mut buf = [0u8; MAX_PACKET];
        let mut out = Vec::new();
        // Streamed: each request's range starts where the last one ended.
        let mut at = 0;
        while let Some(req) = sender.next_symbol() {
            assert_eq!(req.range.start, at);
            at = req.range.end;
            let len = sender
                .write_packet(&data[req.range.start as usize..at as usize], &mut buf)
                .unwrap();
            out.push(buf[..len].to_vec());
        }
        assert_eq!(at, data.len() as u64);
        assert_eq!(out.len() as u64, sender.packet_count());
        out
    }

    /// Outcome of receiving what survives `loss`: per block (received, K) and
    /// the decoder's verdict.
    struct Reception {
        received: HashMap<u32, u64>,
        ids: Vec<FecPayloadId>,
        result: Result<Vec<u8>, FecDecodeError>,
    }

    fn receive(packets: &[Vec<u8>], loss: f64, rng: &mut StdRng) -> Reception {
        let mut decoder: Option<ObjectDecoder> = None;
        let mut received = HashMap::new();
        let mut ids = Vec::new();
        for pkt in packets {
            if rng.random_bool(loss) {
                continue;
            }
            let alc = AlcPacket::decode(pkt).unwrap();
            let oti = alc.oti().unwrap().unwrap();
            let decoder = decoder.get_or_insert_with(|| ObjectDecoder::new(&oti, 1 << 30).unwrap());
            *received.entry(alc.payload_id.unwrap().sbn).or_insert(0) += 1;
            ids.extend(alc.payload_id);
            decoder.push_packet(&alc).unwrap();
        }
        Reception {
            received,
            ids,
            result: decoder.map_or(
                Err(FecDecodeError::Incomplete(vec![0])),
                ObjectDecoder::finish,
            ),
        }
    }

    fn raptorq() -> FecScheme {
        FecScheme::RaptorQ {
            repair_overhead: 0.25,
        }
    }

    fn raptor() -> FecScheme {
        FecScheme::Raptor {
            repair_overhead: 0.25,
        }
    }

    #[test]
    fn lossless_round_trip_every_scheme_and_size() {
        let one_symbol = usize::from(config(0).symbol_length);
        for scheme in [FecScheme::CompactNoCode, raptor(), raptorq()] {
            // Raptor needs four source symbols: at least four bytes.
            let smallest = if scheme == raptor() { 4 } else { 1 };
            for len in [
                0,
                smallest,
                one_symbol - 1,
                one_symbol,
                one_symbol + 1,
                1_500_000,
            ] {
                let data = object(len, 1);
                let packets = all_packets(&config(len), scheme, &data);
                let got = receive(&packets, 0.0, &mut StdRng::seed_from_u64(0));
                assert_eq!(got.result.as_deref(), Ok(&data[..]), "{scheme:?} len {len}");
            }
        }
    }

    /// RaptorQ at 25 % overhead under 10 % and 20 % i.i.d. loss. A block
    /// with fewer than K symbols cannot be recovered and must be reported;
    /// one with K + 2 or more is recovered with probability above 1 − 10⁻⁶
    /// (RFC 6330 §1), so the test asserts that.
    #[test]
    fn raptorq_recovers_under_random_loss() {
        let one_symbol = usize::from(config(0).symbol_length);
        let sizes = [1, one_symbol, 1_000_003, 3_000_001];
        let mut recovered_at_10 = 0;
        for (loss, seeds) in [(0.10, 0..4u64), (0.20, 0..4)] {
            for seed in seeds {
                let mut rng = StdRng::seed_from_u64(seed);
                for (i, &len) in sizes.iter().enumerate() {
                    let data = object(len, i as u8);
                    let config = config(len);
                    let sender = RaptorQSender::new(&config, 0.25).unwrap();
                    let partition = sender.layout().partition;
                    let packets = all_packets(&config, raptorq(), &data);
                    let got = receive(&packets, loss, &mut rng);
                    let missing = match &got.result {
                        Ok(rebuilt) => {
                            assert!(rebuilt == &data, "len {len}: wrong bytes");
                            Vec::new()
                        }
                        Err(FecDecodeError::Incomplete(blocks)) => blocks.clone(),
                        Err(e) => panic!("{e}"),
                    };
                    for sbn in 0..partition.blocks as u32 {
                        let k = partition.block_len(sbn.into()).unwrap();
                        let n = got.received.get(&sbn).copied().unwrap_or(0);
                        if n < k {
                            assert!(missing.contains(&sbn), "block {sbn}: {n} < K = {k}");
                        } else if n >= k + 2 {
                            assert!(
                                !missing.contains(&sbn),
                                "block {sbn}: {n} ≥ K + 2 = {}",
                                k + 2
                            );
                        }
                    }
                    if loss == 0.10 && missing.is_empty() {
                        recovered_at_10 += 1;
                    }
                }
            }
        }
        // 10 % loss leaves ≈ 1.125·K symbols per block: only the two-packet
        // 1-symbol objects can realistically lose both.
        assert!(
            recovered_at_10 >= 14,
            "{recovered_at_10} of 16 objects at 10 % loss"
        );
    }

    /// Raptor at 25 % overhead under 10 % i.i.d. loss, ten objects of
    /// blocks of 100 to 1024 symbols: each block then receives about
    /// 1.125·K symbols, far above the K + 2 that decode with high
    /// probability, and every block of every object must be recovered,
    /// each from some of its repair symbols.
    #[test]
    fn raptor_recovers_every_block_under_random_loss() {
        let one_symbol = usize::from(config(0).symbol_length);
        let mut rng = StdRng::seed_from_u64(0x5053);
        let (mut blocks, mut repaired_blocks) = (0, 0);
        for i in 0..10u8 {
            let len = rng.random_range(100 * one_symbol..1_600_000);
            let data = object(len, i);
            let packets = all_packets(&config(len), raptor(), &data);
            let sender = RaptorSender::new(&config(len), 0.25).unwrap();
            let partition = sender.layout().partition;
            let got = receive(&packets, 0.10, &mut rng);
            assert!(
                got.result.as_deref() == Ok(&data[..]),
                "object {i}, {len} bytes"
            );
            blocks += partition.blocks;
            for sbn in 0..partition.blocks {
                let k = partition.block_len(sbn).unwrap();
                let n = got.received[&(sbn as u32)];
                assert!(n >= k + 2, "block {sbn}: {n} symbols for K = {k}");
                let source_received = got
                    .ids
                    .iter()
                    .filter(|id| u64::from(id.sbn) == sbn && u64::from(id.esi) < k)
                    .count() as u64;
                repaired_blocks += u64::from(source_received < k);
            }
        }
        // With K ≥ 100, a block keeps all its source symbols with probability
        // 0.9^K < 10⁻⁴: every block needed its repair symbols.
        assert_eq!(repaired_blocks, blocks);
    }

    #[test]
    fn no_code_reports_missing_blocks() {
        let data = object(100_000, 3);
        let mut config = config(data.len());
        config.max_source_block_length = 16;
        let packets = all_packets(&config, FecScheme::CompactNoCode, &data);
        // 72 symbols in blocks of 15, 15, 14, 14, 14: drop the first symbol of
        // block 2 and the last of block 4.
        let mut decoder = None;
        for pkt in &packets {
            let alc = AlcPacket::decode(pkt).unwrap();
            let id = alc.payload_id.unwrap();
            if id == (FecPayloadId { sbn: 2, esi: 0 }) || id == (FecPayloadId { sbn: 4, esi: 13 }) {
                continue;
            }
            let oti = alc.oti().unwrap().unwrap();
            decoder
                .get_or_insert_with(|| ObjectDecoder::new(&oti, 1 << 20).unwrap())
                .push_packet(&alc)
                .unwrap();
        }
        let decoder = decoder.unwrap();
        assert!(!decoder.is_complete());
        assert_eq!(decoder.incomplete_blocks(), [2, 4]);
        assert_eq!(
            decoder.finish(),
            Err(FecDecodeError::Incomplete(vec![2, 4]))
        );
    }

    #[test]
    fn scheme_picks_the_codepoint_and_oti() {
        let data = object(10_000, 4);
        for (scheme, cp) in [(FecScheme::CompactNoCode, 0), (raptor(), 1), (raptorq(), 6)] {
            let sender = FecObjectSender::new(&config(data.len()), scheme).unwrap();
            assert_eq!(sender.oti().encoding_id(), scheme.encoding_id());
            let packets = all_packets(&config(data.len()), scheme, &data);
            let alc = AlcPacket::decode(&packets[0]).unwrap();
            assert_eq!(alc.header.codepoint, cp);
            assert_eq!(alc.oti(), Some(Ok(*sender.oti())));
            let last = AlcPacket::decode(packets.last().unwrap()).unwrap();
            assert!(last.header.close_object);
        }
    }
}
