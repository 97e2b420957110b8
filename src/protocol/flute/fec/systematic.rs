//! The sender shape shared by the systematic fountain codes, Raptor
//! (RFC 5053) and RaptorQ (RFC 6330): the object is cut into Z source
//! blocks, each sent as its K source symbols (the object bytes themselves,
//! the last symbol zero-padded to T) followed by ⌈K·overhead⌉ repair
//! symbols with ESIs K, K+1, … .
//!
//! Streaming: the caller feeds source symbols in object order as with the
//! No-Code sender; only the current block (K·T bytes) is held, and its repair
//! symbols are computed by the scheme's [`RepairEncoder`] when its last
//! source symbol arrives. Repair packets ask for no object bytes (their
//! range is empty).

use std::fmt::Debug;

use super::super::FluteError;
use super::super::object_sender::{
    ObjectSenderConfig, PacketTemplate, SymbolRequest, check_payload_id_range, check_symbol_len,
    object_slice,
};
use super::super::oti::{FecPayloadId, Oti};
use super::super::partition::BlockPartition;

/// Repair overhead resolution: the fraction is kept in parts per million so
/// that e.g. 0.1 means exactly K/10 (an `f32` 0.1 is slightly above it).
const PPM: u64 = 1_000_000;

/// Repair symbols of a block of `k` source symbols: ⌈k · ppm / 10⁶⌉.
pub(crate) fn repair_count(k: u64, overhead_ppm: u64) -> u64 {
    (k * overhead_ppm).div_ceil(PPM)
}

pub(crate) fn overhead_ppm(repair_overhead: f32) -> Result<u64, FluteError> {
    if !repair_overhead.is_finite() || !(0.0..=10.0).contains(&repair_overhead) {
        return Err(FluteError::RepairOverhead(repair_overhead.to_string()));
    }
    Ok((f64::from(repair_overhead) * PPM as f64).round() as u64)
}

/// The scheme-specific half of a systematic sender: the repair symbols of
/// one source block.
pub trait RepairEncoder: Debug + Clone {
    /// Appends `count` repair symbols (ESIs K, K+1, …, T bytes each) of
    /// source block `sbn` to `out`; `block` holds its K source symbols
    /// padded to K·T bytes.
    fn encode_repair(&mut self, sbn: u64, block: &[u8], count: u64, out: &mut Vec<u8>);
}

/// An object sender for a systematic code; see the module documentation.
#[derive(Debug, Clone)]
pub struct SystematicSender<E> {
    encoder: E,
    oti: Oti,
    partition: BlockPartition,
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
    /// Repair symbols of the current block (T bytes each), once its source
    /// symbols are in.
    repair: Vec<u8>,
}

impl<E: RepairEncoder> SystematicSender<E> {
    /// `oti` and `partition` are the scheme's validated layout of the
    /// object; checks that every (SBN, ESI) fits the scheme's Payload ID.
    pub(crate) fn with_encoder(
        config: &ObjectSenderConfig,
        oti: Oti,
        partition: BlockPartition,
        repair_overhead: f32,
        encoder: E,
    ) -> Result<Self, FluteError> {
        let overhead_ppm = overhead_ppm(repair_overhead)?;
        let template = PacketTemplate::new(config, &oti)?;
        let fec = oti.encoding_id();
        check_payload_id_range(fec, &partition)?;
        let (_, max_esi) = FecPayloadId::limits(fec);
        let largest_esi =
            partition.large_block_len + repair_count(partition.large_block_len, overhead_ppm);
        if largest_esi > u64::from(max_esi) + 1 {
            return Err(FluteError::PayloadIdOverflow {
                what: "repair symbol ID",
                value: largest_esi - 1,
                limit: max_esi.into(),
            });
        }
        let block_capacity = partition.large_block_len as usize * usize::from(oti.symbol_length);
        Ok(Self {
            encoder,
            oti,
            partition,
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
        &self.oti
    }

    pub fn partition(&self) -> &BlockPartition {
        &self.partition
    }

    pub(crate) fn encoder(&self) -> &E {
        &self.encoder
    }

    /// Capacity of the source block buffer: streaming holds one block.
    #[cfg(test)]
    pub(crate) fn block_capacity(&self) -> usize {
        self.block.capacity()
    }

    /// Repair symbols sent for source block `sbn`.
    pub fn repair_symbols(&self, sbn: u64) -> Option<u64> {
        Some(repair_count(
            self.partition.block_len(sbn)?,
            self.overhead_ppm,
        ))
    }

    /// Packets of one pass: K + repair per block; one empty packet for an
    /// empty object.
    pub fn packet_count(&self) -> u64 {
        let p = &self.partition;
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
        self.partition.block_len(self.sbn).unwrap_or(0)
    }

    /// The next packet's symbol. A source symbol's range is the object bytes
    /// it carries; a repair symbol's range is empty (at the current offset).
    pub fn next_symbol(&self) -> Option<SymbolRequest> {
        if self.is_complete() {
            return None;
        }
        let end = if self.esi < self.block_len() {
            (self.offset + u64::from(self.oti.symbol_length)).min(self.oti.transfer_length)
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
        let t = usize::from(self.oti.symbol_length);
        let len = if self.esi < k {
            let at = self.block.len();
            self.block.extend_from_slice(symbol);
            self.block.resize(at + t, 0);
            self.template.write(id, last, &self.block[at..], out)?
        } else if k == 0 {
            // The empty object: one packet without a symbol.
            self.template.write(id, last, &[], out)?
        } else {
            let at = (self.esi - k) as usize * t;
            let repair = self
                .repair
                .get(at..at + t)
                .ok_or(FluteError::ObjectComplete)?;
            self.template.write(id, last, repair, out)?
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
            self.repair.clear();
            self.encoder
                .encode_repair(self.sbn, &self.block, repair, &mut self.repair);
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

    #[test]
    fn repair_count_is_exact() {
        let ppm = overhead_ppm(0.1).unwrap();
        assert_eq!(ppm, 100_000);
        assert_eq!(repair_count(10, ppm), 1);
        assert_eq!(repair_count(11, ppm), 2);
        assert_eq!(repair_count(1, overhead_ppm(0.25).unwrap()), 1);
        assert_eq!(repair_count(7, overhead_ppm(0.0).unwrap()), 0);
        assert!(overhead_ppm(10.5).is_err());
        assert!(overhead_ppm(f32::INFINITY).is_err());
    }
}
