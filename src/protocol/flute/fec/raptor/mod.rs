//! Raptor (RFC 5053, FEC Encoding ID 1), the download FEC that TS 26.346
//! mandates: the object is cut into Z source blocks (`Partition[Kt, Z]`,
//! RFC 5053 §5.3.1.2) of 4 ≤ K ≤ 8192 symbols, each sent as its K source
//! symbols followed by ⌈K·overhead⌉ repair symbols (ESIs K, K+1, …) that
//! the LT encoder makes from the block's L intermediate symbols (§5.4).
//!
//! Sending is the shared [`SystematicSender`]; this module gives it the
//! Raptor layout and the RFC 5053 encoder of [`code`], and provides the
//! block decoder the probe uses.

pub mod code;
mod tables;

use self::code::{MAX_SOURCE_SYMBOLS, MIN_SOURCE_SYMBOLS, Parameters, Schedule, lt_encode};
use super::super::FluteError;
use super::super::object_sender::ObjectSenderConfig;
use super::super::oti::{Oti, SchemeOti};
use super::super::partition::BlockPartition;
use super::systematic::{RepairEncoder, SystematicSender};

/// Al: symbols are whole 32-bit words (RFC 5053 §4.2 recommends Al = 4).
pub const SYMBOL_ALIGNMENT: u8 = 4;

/// Z is a 16-bit field (RFC 5053 §3.2.3).
pub const MAX_SOURCE_BLOCKS: u64 = 0xffff;

const SCHEME: &str = "Raptor";

/// The validated OTI of a Raptor object and its partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaptorLayout {
    pub oti: Oti,
    pub partition: BlockPartition,
}

impl RaptorLayout {
    /// Checks the OTI against RFC 5053 §5.3.1.2 and what this codec
    /// implements: T a multiple of Al, every block within 4..=8192 symbols,
    /// and one sub-block (N = 1: each symbol a contiguous object range, the
    /// only layout the project sends).
    pub fn from_oti(oti: &Oti) -> Result<Self, FluteError> {
        let SchemeOti::Raptor {
            source_blocks,
            sub_blocks,
            alignment,
        } = oti.scheme
        else {
            return Err(FluteError::UnsupportedFec(oti.encoding_id() as u8));
        };
        oti.validate()?;
        if alignment == 0 || !oti.symbol_length.is_multiple_of(u16::from(alignment)) {
            return Err(FluteError::SymbolAlignment {
                symbol_length: oti.symbol_length,
                alignment,
            });
        }
        if sub_blocks == 0 {
            return Err(FluteError::ZeroSubBlocks);
        }
        if sub_blocks > 1 {
            return Err(FluteError::SchemeLimit {
                scheme: SCHEME,
                what: "sub-block count",
                value: sub_blocks.into(),
                limit: 1,
            });
        }
        let partition = BlockPartition::with_block_count(
            oti.transfer_length,
            oti.symbol_length.into(),
            source_blocks.into(),
        )?;
        if partition.large_block_len > u64::from(MAX_SOURCE_SYMBOLS) {
            return Err(FluteError::SchemeLimit {
                scheme: SCHEME,
                what: "source block length",
                value: partition.large_block_len,
                limit: MAX_SOURCE_SYMBOLS.into(),
            });
        }
        let shortest = if partition.large_blocks < partition.blocks {
            partition.small_block_len
        } else {
            partition.large_block_len
        };
        if partition.symbols > 0 && shortest < u64::from(MIN_SOURCE_SYMBOLS) {
            return Err(FluteError::TooFewSourceSymbols {
                scheme: SCHEME,
                symbols: shortest,
                min: MIN_SOURCE_SYMBOLS.into(),
            });
        }
        Ok(Self {
            oti: *oti,
            partition,
        })
    }

    /// The sender's choice for an object of `transfer_length` bytes: N = 1,
    /// Z = ⌈Kt/B⌉ with B the configured maximum block length capped at
    /// 8192 (RFC 5053 §4.2), but never so many blocks that one falls below
    /// K = 4. An object of fewer than four symbols of T bytes is sent with
    /// smaller symbols (four of them, or more), since J(K) does not exist
    /// for K < 4; one of fewer than four bytes cannot be Raptor-coded.
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
        let min = u64::from(MIN_SOURCE_SYMBOLS);
        let (symbol_length, alignment) = match transfer_length.div_ceil(symbol_length.into()) {
            0 => (symbol_length, SYMBOL_ALIGNMENT),
            symbols if symbols >= min => (symbol_length, SYMBOL_ALIGNMENT),
            _ if transfer_length >= min * min => (
                (transfer_length / (min * min) * min) as u16,
                SYMBOL_ALIGNMENT,
            ),
            _ if transfer_length >= min => ((transfer_length / min) as u16, 1),
            _ => {
                return Err(FluteError::TooFewSourceSymbols {
                    scheme: SCHEME,
                    symbols: transfer_length,
                    min,
                });
            }
        };
        let symbols = transfer_length.div_ceil(symbol_length.into());
        let max_block = u64::from(max_source_block_length).clamp(min, MAX_SOURCE_SYMBOLS.into());
        let blocks = symbols.div_ceil(max_block).min(symbols / min).max(1);
        let source_blocks = u16::try_from(blocks).map_err(|_| FluteError::SchemeLimit {
            scheme: SCHEME,
            what: "source block count",
            value: blocks,
            limit: MAX_SOURCE_BLOCKS,
        })?;
        Self::from_oti(&Oti {
            transfer_length,
            symbol_length,
            scheme: SchemeOti::Raptor {
                source_blocks,
                sub_blocks: 1,
                alignment,
            },
        })
    }
}

/// The RFC 5053 encoder of one block size: its parameters and the solver
/// schedule of its constraint matrix (which depends on K only).
#[derive(Debug, Clone)]
pub struct BlockEncoder {
    params: Parameters,
    schedule: Schedule,
}

impl BlockEncoder {
    /// `None` for K outside 4..=8192.
    pub fn new(k: u32) -> Option<Self> {
        let params = Parameters::new(k)?;
        // A with the LT rows of ESIs 0..K is invertible for every K with a
        // systematic index: that is what J(K) was chosen for (§5.4.2.4.2).
        let matrix = params.constraint_matrix(0..k);
        let schedule = Schedule::solve(matrix, params.l as usize)?;
        Some(Self { params, schedule })
    }

    pub fn params(&self) -> &Parameters {
        &self.params
    }

    /// The L intermediate symbols C of `block` (K source symbols of `t`
    /// bytes) into `c`; `d` is scratch space.
    pub fn intermediate_symbols(&self, block: &[u8], t: usize, d: &mut Vec<u8>, c: &mut Vec<u8>) {
        d.clear();
        d.resize(self.params.precode_rows_len() * t, 0);
        d.extend_from_slice(block);
        self.schedule.apply(d, t, c);
    }
}

/// Raptor's [`RepairEncoder`]: encoders for the (at most two) block sizes
/// of the object, built on first use, and buffers reused across blocks.
#[derive(Debug, Clone)]
pub struct RaptorEncoder {
    t: usize,
    encoders: Vec<BlockEncoder>,
    d: Vec<u8>,
    c: Vec<u8>,
}

impl RaptorEncoder {
    pub fn new(symbol_length: u16) -> Self {
        Self {
            t: symbol_length.into(),
            encoders: Vec::new(),
            d: Vec::new(),
            c: Vec::new(),
        }
    }
}

impl RepairEncoder for RaptorEncoder {
    /// The layout guarantees 4 ≤ K ≤ 8192; a block outside that range (none
    /// exists) would yield no repair symbols, which `write_packet` reports.
    fn encode_repair(&mut self, _sbn: u64, block: &[u8], count: u64, out: &mut Vec<u8>) {
        let Some(k) = block.len().checked_div(self.t).map(|k| k as u32) else {
            return;
        };
        let at = match self.encoders.iter().position(|e| e.params.k == k) {
            Some(at) => at,
            None => match BlockEncoder::new(k) {
                Some(encoder) => {
                    self.encoders.push(encoder);
                    self.encoders.len() - 1
                }
                None => return,
            },
        };
        let encoder = &self.encoders[at];
        encoder.intermediate_symbols(block, self.t, &mut self.d, &mut self.c);
        for esi in k..k + count as u32 {
            let at = out.len();
            out.resize(at + self.t, 0);
            lt_encode(&encoder.params, &self.c, esi, &mut out[at..]);
        }
    }
}

/// The Raptor object sender.
pub type RaptorSender = SystematicSender<RaptorEncoder>;

impl SystematicSender<RaptorEncoder> {
    /// `config.max_source_block_length` is B (capped at 8192),
    /// `config.symbol_length` T (a multiple of [`SYMBOL_ALIGNMENT`]);
    /// `repair_overhead` is the fraction of K sent as repair symbols per
    /// block (0.25 → ⌈K/4⌉).
    pub fn new(config: &ObjectSenderConfig, repair_overhead: f32) -> Result<Self, FluteError> {
        let layout = RaptorLayout::for_object(
            config.transfer_length,
            config.symbol_length,
            config.max_source_block_length,
        )?;
        Self::with_encoder(
            config,
            layout.oti,
            layout.partition,
            repair_overhead,
            RaptorEncoder::new(layout.oti.symbol_length),
        )
    }

    pub fn layout(&self) -> RaptorLayout {
        RaptorLayout {
            oti: *self.oti(),
            partition: *self.partition(),
        }
    }
}

/// Recovers one source block from any encoding symbols (the probe side):
/// source symbols are placed as they come; once K symbols are in and some
/// source symbol is missing, the constraint matrix of the received ESIs is
/// solved for C and the missing source symbols are LT-encoded from it.
#[derive(Debug, Clone)]
pub struct BlockDecoder {
    params: Parameters,
    t: usize,
    /// K source symbols of T bytes, as received or recovered.
    source: Vec<u8>,
    have: Vec<bool>,
    missing: u32,
    /// Repair symbols received, in arrival order, T bytes each.
    repair_esis: Vec<u32>,
    repair: Vec<u8>,
}

/// Repair symbols kept beyond K per block: a decode that fails with K + 32
/// symbols is rarer than 10⁻⁹ (RFC 5053 §5.4.5 puts K + 2 failures near
/// 10⁻⁶ at worst), and the cap bounds memory under garbage input.
const EXTRA_REPAIR: u32 = 32;

impl BlockDecoder {
    /// `None` for K outside 4..=8192.
    pub fn new(k: u32, t: usize) -> Option<Self> {
        let params = Parameters::new(k)?;
        Some(Self {
            params,
            t,
            source: vec![0; k as usize * t],
            have: vec![false; k as usize],
            missing: k,
            repair_esis: Vec::new(),
            repair: Vec::new(),
        })
    }

    pub fn is_complete(&self) -> bool {
        self.missing == 0
    }

    /// The block's K·T bytes once complete.
    pub fn source(&self) -> Option<&[u8]> {
        self.is_complete().then_some(&self.source[..])
    }

    /// Adds the symbol with ESI `esi` (exactly T bytes, checked by the
    /// caller) and decodes when enough symbols are in. Duplicates are
    /// ignored; returns whether the block is complete.
    pub fn push(&mut self, esi: u32, symbol: &[u8]) -> bool {
        if self.is_complete() || symbol.len() != self.t {
            return self.is_complete();
        }
        let k = self.params.k;
        if esi < k {
            let at = esi as usize * self.t;
            if let Some(seen) = self.have.get_mut(esi as usize).filter(|seen| !**seen) {
                *seen = true;
                self.missing -= 1;
                self.source[at..at + self.t].copy_from_slice(symbol);
            }
        } else if !self.repair_esis.contains(&esi)
            && (self.repair_esis.len() as u32) < k + EXTRA_REPAIR
        {
            self.repair_esis.push(esi);
            self.repair.extend_from_slice(symbol);
        } else {
            return false;
        }
        let received = k - self.missing + self.repair_esis.len() as u32;
        if self.missing > 0 && received >= k {
            self.decode();
        }
        self.is_complete()
    }

    /// Solves for C from every symbol received; leaves the block as it is
    /// if they do not determine it yet.
    fn decode(&mut self) {
        let k = self.params.k;
        let t = self.t;
        let received_source = (0..k).filter(|&x| self.have[x as usize]);
        let esis: Vec<u32> = received_source
            .clone()
            .chain(self.repair_esis.iter().copied())
            .collect();
        let matrix = self.params.constraint_matrix(esis.iter().copied());
        let Some(schedule) = Schedule::solve(matrix, self.params.l as usize) else {
            return;
        };
        let mut d = vec![0; self.params.precode_rows_len() * t];
        for x in received_source {
            let at = x as usize * t;
            d.extend_from_slice(&self.source[at..at + t]);
        }
        d.extend_from_slice(&self.repair);
        let mut c = Vec::new();
        schedule.apply(&mut d, t, &mut c);
        for x in 0..k {
            if !self.have[x as usize] {
                let at = x as usize * t;
                lt_encode(&self.params, &c, x, &mut self.source[at..at + t]);
                self.have[x as usize] = true;
            }
        }
        self.missing = 0;
        self.repair_esis = Vec::new();
        self.repair = Vec::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::codec::Codec;
    use crate::protocol::flute::alc::AlcPacket;
    use crate::protocol::flute::object_sender::ObjectKind;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn block(k: usize, t: usize, seed: u64) -> Vec<u8> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..k * t).map(|_| rng.random()).collect()
    }

    /// Encoding symbols `esis` of a block, by our encoder.
    fn our_symbols(k: u32, t: usize, data: &[u8], esis: &[u32]) -> Vec<Vec<u8>> {
        let encoder = BlockEncoder::new(k).unwrap();
        let (mut d, mut c) = (Vec::new(), Vec::new());
        encoder.intermediate_symbols(data, t, &mut d, &mut c);
        esis.iter()
            .map(|&x| {
                let mut out = vec![0; t];
                lt_encode(encoder.params(), &c, x, &mut out);
                out
            })
            .collect()
    }

    /// Source and repair symbols are byte for byte those of the
    /// `raptor-code` crate (an independent RFC 5053 implementation; its
    /// tables are the RFC's, ours were checked against gofountain's
    /// vectors in `code`). Source symbols are computed by the LT encoder
    /// from C, not copied, so they prove the code systematic: J(K) makes
    /// LTEnc(X) = source symbol X for X < K. K = 4 and 8192 are the ends of
    /// the J(K) table.
    #[test]
    fn encoding_symbols_equal_raptor_code_crate() {
        for (k, t) in [
            (4u32, 64usize),
            (5, 16),
            (10, 48),
            (100, 32),
            (1000, 16),
            (8192, 4),
        ] {
            let data = block(k as usize, t, k.into());
            let mut theirs = raptor_code::SourceBlockEncoder::new(&data, k as usize).unwrap();
            assert_eq!(theirs.nb_source_symbols(), k);
            let repair = [k, k + 1, k + 2, k + 97, 2 * k + 5, 65_535];
            let source: Vec<u32> = (0..k).step_by((k as usize / 64).max(1)).collect();
            let esis: Vec<u32> = source.iter().chain(&repair).copied().collect();
            let ours = our_symbols(k, t, &data, &esis);
            for (&esi, symbol) in esis.iter().zip(&ours) {
                assert_eq!(
                    symbol,
                    &theirs.fountain(esi),
                    "K = {k}, ESI {esi} differs from raptor-code"
                );
                if esi < k {
                    let at = esi as usize * t;
                    assert_eq!(symbol, &data[at..at + t], "K = {k}: not systematic");
                }
            }
        }
    }

    /// Decoding from repair symbols only: K + 3 of them (no source symbol).
    #[test]
    fn decodes_from_repair_symbols_only() {
        for k in [4u32, 26, 333] {
            let t = 12;
            let data = block(k as usize, t, 99);
            let esis: Vec<u32> = (k..2 * k + 3).collect();
            let symbols = our_symbols(k, t, &data, &esis);
            let mut decoder = BlockDecoder::new(k, t).unwrap();
            let mut done_at = None;
            for (i, (&esi, symbol)) in esis.iter().zip(&symbols).enumerate() {
                if decoder.push(esi, symbol) {
                    done_at.get_or_insert(i + 1);
                }
            }
            let done_at = done_at.unwrap_or_else(|| panic!("K = {k} not decoded"));
            assert!(done_at >= k as usize);
            assert_eq!(decoder.source(), Some(&data[..]), "K = {k}");
        }
    }

    /// The `raptor-code` crate's decoder rebuilds blocks from our repair
    /// symbols with the first source symbols lost.
    #[test]
    fn raptor_code_crate_decodes_our_repair_symbols() {
        let (k, t) = (50u32, 20usize);
        let data = block(k as usize, t, 5);
        let esis: Vec<u32> = (10..k + 20).collect();
        let symbols = our_symbols(k, t, &data, &esis);
        let mut received: Vec<Option<Vec<u8>>> = vec![None; (k + 20) as usize];
        for (&esi, symbol) in esis.iter().zip(symbols) {
            received[esi as usize] = Some(symbol);
        }
        let decoded = raptor_code::decode_source_block(&received, k as usize, data.len());
        assert_eq!(decoded.as_deref(), Some(&data[..]));
    }

    /// K = 5 with ESIs {0, 1, 3, 4, 5, 6}: K + 1 symbols whose constraint
    /// matrix has rank 14 < L = 15 (checked with an independent model of
    /// §5.4). The decoder must not claim the block, and must recover it
    /// once further repair symbols arrive.
    #[test]
    fn rank_deficient_symbols_wait_for_more() {
        let (k, t) = (5u32, 8usize);
        let data = block(k as usize, t, 2);
        let esis = [0, 1, 3, 4, 5, 6, 7, 8, 9, 10];
        let symbols = our_symbols(k, t, &data, &esis);
        let mut decoder = BlockDecoder::new(k, t).unwrap();
        for (&esi, symbol) in esis[..6].iter().zip(&symbols) {
            assert!(!decoder.push(esi, symbol));
        }
        assert_eq!(decoder.source(), None);
        let mut more = esis[6..].iter().zip(&symbols[6..]);
        assert!(more.any(|(&esi, symbol)| decoder.push(esi, symbol)));
        assert_eq!(decoder.source(), Some(&data[..]));
    }

    #[test]
    fn duplicate_and_short_symbols_do_not_count() {
        let (k, t) = (6u32, 8usize);
        let data = block(k as usize, t, 1);
        let symbols = our_symbols(k, t, &data, &[7]);
        let mut decoder = BlockDecoder::new(k, t).unwrap();
        for _ in 0..10 {
            assert!(!decoder.push(7, &symbols[0]));
            assert!(!decoder.push(8, &[0; 7]));
        }
        assert_eq!(decoder.source(), None);
    }

    fn config(len: u64, t: u16, b: u32) -> ObjectSenderConfig {
        let mut c = ObjectSenderConfig::new(0x1234, ObjectKind::File { toi: 5 }, len, 1428);
        c.symbol_length = t;
        c.max_source_block_length = b;
        c
    }

    /// F = 3 000 001, T = 1396, B = 1024: Kt = 2149, Z = 3, Partition[2149, 3]
    /// = (717, 716, 1, 2); EXT_FTI and Payload ID as RFC 5053 §3.1/§3.2.3
    /// lay them out (codepoint 1, F(48) Res(16) T(16) Z(16) N(8) Al(8),
    /// SBN(16) ESI(16)).
    #[test]
    fn exact_header_fti_and_payload_id_bytes() {
        let data = block(3_000_001, 1, 3);
        let config = config(data.len() as u64, 1396, 1024);
        let mut sender = RaptorSender::new(&config, 0.25).unwrap();
        let p = sender.layout().partition;
        assert_eq!(
            (p.symbols, p.blocks, p.large_block_len, p.small_block_len),
            (2149, 3, 717, 716)
        );
        assert_eq!(sender.packet_count(), 2149 + 180 + 179 + 179);
        let mut buf = [0u8; 1428];
        let mut all = Vec::new();
        while let Some(len) = sender.next_packet(&data, &mut buf) {
            all.push(buf[..len.unwrap()].to_vec());
        }
        let pkt = &all[717 + 180 + 716];
        assert_eq!(
            hex::encode(&pkt[..32]),
            concat!(
                "10100701", // V=1, H=1, HDR_LEN 7, codepoint 1
                "00000000", // CCI
                "12340005", // TSI, TOI
                "4004",     // EXT_FTI, HEL 4
                "0000002dc6c1",
                "0000",     // F(48) Res(16)
                "0574",     // T
                "0003",     // Z
                "01",       // N
                "04",       // Al
                "000102cc", // SBN(16) = 1, ESI(16) = 716
            )
        );
        assert!(
            AlcPacket::decode(all.last().unwrap())
                .unwrap()
                .header
                .close_object
        );
    }

    #[test]
    fn small_objects_get_at_least_four_symbols() {
        // 100 bytes at T = 1396: T becomes ⌊100/16⌋·4 = 24, Kt = 5.
        let l = RaptorLayout::for_object(100, 1396, 1024).unwrap();
        assert_eq!((l.oti.symbol_length, l.partition.symbols), (24, 5));
        // 7 bytes: T = 1 with Al = 1, K = 7.
        let l = RaptorLayout::for_object(7, 1396, 1024).unwrap();
        assert_eq!((l.oti.symbol_length, l.partition.symbols), (1, 7));
        assert!(matches!(
            l.oti.scheme,
            SchemeOti::Raptor {
                alignment: 1,
                sub_blocks: 1,
                source_blocks: 1
            }
        ));
        // Blocks never fall below four symbols, whatever B says.
        let l = RaptorLayout::for_object(9 * 1396, 1396, 2).unwrap();
        assert_eq!((l.partition.blocks, l.partition.small_block_len), (2, 4));
        assert_eq!(
            RaptorLayout::for_object(3, 1396, 1024),
            Err(FluteError::TooFewSourceSymbols {
                scheme: "Raptor",
                symbols: 3,
                min: 4
            })
        );
        // The empty object is one packet without a symbol.
        let l = RaptorLayout::for_object(0, 1396, 1024).unwrap();
        assert_eq!((l.partition.blocks, l.partition.symbols), (1, 0));
    }

    #[test]
    fn oti_rejections_name_the_problem() {
        let raptor = |z, n, al, t| Oti {
            transfer_length: 100_000,
            symbol_length: t,
            scheme: SchemeOti::Raptor {
                source_blocks: z,
                sub_blocks: n,
                alignment: al,
            },
        };
        assert_eq!(
            RaptorLayout::from_oti(&raptor(1, 1, 4, 1002)),
            Err(FluteError::SymbolAlignment {
                symbol_length: 1002,
                alignment: 4
            })
        );
        assert_eq!(
            RaptorLayout::from_oti(&raptor(1, 0, 4, 1000)),
            Err(FluteError::ZeroSubBlocks)
        );
        assert!(matches!(
            RaptorLayout::from_oti(&raptor(1, 2, 4, 1000)),
            Err(FluteError::SchemeLimit {
                what: "sub-block count",
                ..
            })
        ));
        // 100 symbols in 30 blocks: some hold 3 < 4.
        assert!(matches!(
            RaptorLayout::from_oti(&raptor(30, 1, 4, 1000)),
            Err(FluteError::TooFewSourceSymbols { symbols: 3, .. })
        ));
        // 25 000 symbols in one block: K > 8192.
        assert!(matches!(
            RaptorLayout::from_oti(&raptor(1, 1, 4, 4)),
            Err(FluteError::SchemeLimit {
                what: "source block length",
                value: 25_000,
                ..
            })
        ));
        assert!(RaptorLayout::from_oti(&raptor(4, 1, 4, 4)).is_ok());
    }
}
