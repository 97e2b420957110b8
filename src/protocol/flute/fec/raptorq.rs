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
