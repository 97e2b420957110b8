//! Block partitioning, RFC 5052 §9.1: an object of L bytes is cut into
//! T = ⌈L/E⌉ source symbols of E bytes (the last one possibly short) and
//! N = ⌈T/B⌉ source blocks; the first I blocks hold A_large = ⌈T/N⌉ symbols,
//! the rest A_small = ⌊T/N⌋, where I = T − A_small·N.

use std::ops::Range;

use super::FluteError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockPartition {
    /// L, bytes.
    pub transfer_length: u64,
    /// E, bytes.
    pub symbol_length: u64,
    /// T, source symbols in the object.
    pub symbols: u64,
    /// N, source blocks.
    pub blocks: u64,
    /// A_large, symbols in each of the first `large_blocks` blocks.
    pub large_block_len: u64,
    /// A_small, symbols in each remaining block.
    pub small_block_len: u64,
    /// I, blocks of A_large symbols.
    pub large_blocks: u64,
}

impl BlockPartition {
    /// `max_block_len` is B, the maximum source block length in symbols.
    pub fn new(
        transfer_length: u64,
        symbol_length: u64,
        max_block_len: u64,
    ) -> Result<Self, FluteError> {
        if symbol_length == 0 {
            return Err(FluteError::ZeroSymbolLength);
        }
        if max_block_len == 0 {
            return Err(FluteError::ZeroBlockLength);
        }
        let symbols = transfer_length.div_ceil(symbol_length);
        Ok(Self::split(
            transfer_length,
            symbol_length,
            symbols,
            symbols.div_ceil(max_block_len),
        ))
    }

    /// RFC 6330 §4.4.1.2 `Partition[Kt, Z]`: the same split with the block
    /// count Z given (Raptor and RaptorQ carry Z in the OTI, not B).
    /// `blocks` must not exceed the symbol count, or some block would be empty.
    pub fn with_block_count(
        transfer_length: u64,
        symbol_length: u64,
        blocks: u64,
    ) -> Result<Self, FluteError> {
        if symbol_length == 0 {
            return Err(FluteError::ZeroSymbolLength);
        }
        let symbols = transfer_length.div_ceil(symbol_length);
        if blocks == 0 || blocks > symbols.max(1) {
            return Err(FluteError::BlockCount { blocks, symbols });
        }
        Ok(Self::split(transfer_length, symbol_length, symbols, blocks))
    }

    fn split(transfer_length: u64, symbol_length: u64, symbols: u64, blocks: u64) -> Self {
        let (large_block_len, small_block_len, large_blocks) = match symbols.checked_div(blocks) {
            None => (0, 0, 0),
            Some(small) => (symbols.div_ceil(blocks), small, symbols - small * blocks),
        };
        Self {
            transfer_length,
            symbol_length,
            symbols,
            blocks,
            large_block_len,
            small_block_len,
            large_blocks,
        }
    }

    /// Source symbols in block `sbn`, `None` past the last block.
    pub fn block_len(&self, sbn: u64) -> Option<u64> {
        if sbn >= self.blocks {
            None
        } else if sbn < self.large_blocks {
            Some(self.large_block_len)
        } else {
            Some(self.small_block_len)
        }
    }

    /// Index (in the whole object) of the first symbol of block `sbn`.
    pub fn first_symbol(&self, sbn: u64) -> Option<u64> {
        self.block_len(sbn)?;
        let large = sbn.min(self.large_blocks);
        Some(large * self.large_block_len + (sbn - large) * self.small_block_len)
    }

    /// Object bytes carried by symbol `esi` of block `sbn`.
    pub fn symbol_range(&self, sbn: u64, esi: u64) -> Option<Range<u64>> {
        if esi >= self.block_len(sbn)? {
            return None;
        }
        let start = (self.first_symbol(sbn)? + esi) * self.symbol_length;
        Some(start..(start + self.symbol_length).min(self.transfer_length))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Worked by hand from the RFC 5052 §9.1 formulas.
    #[test]
    fn rfc_5052_algorithm_examples() {
        // L = 10 000, E = 1000, B = 4: T = 10, N = 3, A_large = 4, A_small = 3, I = 1.
        let p = BlockPartition::new(10_000, 1000, 4).unwrap();
        assert_eq!(
            (
                p.symbols,
                p.blocks,
                p.large_block_len,
                p.small_block_len,
                p.large_blocks
            ),
            (10, 3, 4, 3, 1)
        );
        assert_eq!(
            (0..3).map(|b| p.block_len(b).unwrap()).collect::<Vec<_>>(),
            [4, 3, 3]
        );
        // L = 3 000 001, E = 1428, B = 64: T = 2101, N = 33, A_large = 64,
        // A_small = 63, I = 2101 - 63·33 = 22.
        let p = BlockPartition::new(3_000_001, 1428, 64).unwrap();
        assert_eq!(
            (
                p.symbols,
                p.blocks,
                p.large_block_len,
                p.small_block_len,
                p.large_blocks
            ),
            (2101, 33, 64, 63, 22)
        );
        assert_eq!(p.symbol_range(32, 62), Some(2_998_800..3_000_001));
        assert_eq!(p.symbol_range(32, 63), None);
        // Exact multiple: L = 4096, E = 1024, B = 2 → two blocks of two.
        let p = BlockPartition::new(4096, 1024, 2).unwrap();
        assert_eq!(
            (
                p.blocks,
                p.large_block_len,
                p.small_block_len,
                p.large_blocks
            ),
            (2, 2, 2, 0)
        );
        // Empty object: no symbol, no block.
        let p = BlockPartition::new(0, 1024, 64).unwrap();
        assert_eq!((p.symbols, p.blocks, p.block_len(0)), (0, 0, None));
        // One byte: one block of one short symbol.
        let p = BlockPartition::new(1, 1428, 64).unwrap();
        assert_eq!(p.symbol_range(0, 0), Some(0..1));
    }

    #[test]
    fn zero_parameters_are_rejected() {
        assert_eq!(
            BlockPartition::new(1, 0, 1),
            Err(FluteError::ZeroSymbolLength)
        );
        assert_eq!(
            BlockPartition::new(1, 1, 0),
            Err(FluteError::ZeroBlockLength)
        );
    }

    proptest! {
        #[test]
        fn blocks_cover_every_symbol_and_differ_by_at_most_one(
            l in 0u64..2_000_000, e in 256u64..3000, b in 1u64..5000,
        ) {
            let p = BlockPartition::new(l, e, b).unwrap();
            let lens: Vec<u64> = (0..p.blocks).map(|s| p.block_len(s).unwrap()).collect();
            prop_assert_eq!(lens.iter().sum::<u64>(), p.symbols);
            if let (Some(max), Some(min)) = (lens.iter().max(), lens.iter().min()) {
                prop_assert!(max - min <= 1);
                prop_assert!(*max <= b && *min >= 1);
                // Larger blocks come first.
                prop_assert!(lens.windows(2).all(|w| w[0] >= w[1]));
            }
            // Symbols tile the object without gap or overlap.
            let mut next = 0;
            for sbn in 0..p.blocks {
                for esi in 0..lens[sbn as usize] {
                    let r = p.symbol_range(sbn, esi).unwrap();
                    prop_assert_eq!(r.start, next);
                    prop_assert!(!r.is_empty());
                    next = r.end;
                }
            }
            prop_assert_eq!(next, l);
        }
    }
}
