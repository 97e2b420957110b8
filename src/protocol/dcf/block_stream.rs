//! Runs a block mode (CBC encrypt or decrypt) over input that arrives in chunks of
//! any size: whole blocks are processed in one batched call per chunk (AES-NI
//! pipelines CBC decryption across blocks), and an incomplete block is carried
//! to the next call. Output is copied and transformed in L1-sized strides.

use aes::Block;
use aes::cipher::consts::U16;
use aes::cipher::inout::InOutBuf;

pub(super) const BLOCK_LEN: usize = 16;

/// The incomplete trailing block between two chunks.
#[derive(Debug, Default)]
pub(super) struct BlockCarry {
    buf: [u8; BLOCK_LEN],
    len: usize,
}

impl BlockCarry {
    /// Bytes waiting for the rest of their block.
    pub(super) const fn len(&self) -> usize {
        self.len
    }

    /// Appends the processed form of every block completed by `input` to `out`;
    /// `apply` transforms whole blocks in place.
    pub(super) fn process(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<u8>,
        mut apply: impl FnMut(InOutBuf<'_, '_, Block>),
    ) {
        if self.len > 0 {
            let n = (BLOCK_LEN - self.len).min(input.len());
            self.buf[self.len..self.len + n].copy_from_slice(&input[..n]);
            self.len += n;
            input = &input[n..];
            if self.len < BLOCK_LEN {
                return;
            }
            self.len = 0;
            let block = self.buf;
            process_in_place(&block, out, &mut apply);
        }
        let whole = input.len() - input.len() % BLOCK_LEN;
        process_in_place(&input[..whole], out, &mut apply);
        let rest = &input[whole..];
        self.buf[..rest.len()].copy_from_slice(rest);
        self.len = rest.len();
    }

    /// Completes the carried block with RFC 2630 padding (every pad byte holds
    /// the pad length, 1..=16; a full block of 16s when nothing is carried) and
    /// processes it.
    pub(super) fn pad_and_process(
        &mut self,
        out: &mut Vec<u8>,
        mut apply: impl FnMut(InOutBuf<'_, '_, Block>),
    ) {
        let pad = BLOCK_LEN - self.len;
        self.buf[self.len..].fill(pad as u8);
        self.len = 0;
        let block = self.buf;
        process_in_place(&block, out, &mut apply);
    }
}

/// Bytes copied and then transformed per step, so the cipher reads back from
/// L1 what the copy just wrote.
const STRIDE: usize = 16 * 1024;

/// Appends `input` to `out` and transforms the appended bytes in place, one
/// stride at a time.
pub(super) fn extend_transformed(
    input: &[u8],
    out: &mut Vec<u8>,
    mut apply: impl FnMut(&mut [u8]),
) {
    out.reserve(input.len());
    for stride in input.chunks(STRIDE) {
        let start = out.len();
        out.extend_from_slice(stride);
        apply(&mut out[start..]);
    }
}

/// Copies whole blocks to the end of `out` and transforms them there.
fn process_in_place(
    blocks: &[u8],
    out: &mut Vec<u8>,
    apply: &mut impl FnMut(InOutBuf<'_, '_, Block>),
) {
    debug_assert_eq!(blocks.len() % BLOCK_LEN, 0);
    extend_transformed(blocks, out, |bytes| {
        apply(InOutBuf::from(bytes).into_chunks::<U16>().0)
    });
}

/// RFC 2630 §6.3 padding check on the final decrypted block: the last byte is
/// the pad length 1..=16 and every pad byte equals it. Returns the number of
/// plaintext bytes in the block.
pub(super) fn unpadded_len(last_block: &[u8; BLOCK_LEN]) -> Option<usize> {
    let pad = usize::from(last_block[BLOCK_LEN - 1]);
    if pad == 0 || pad > BLOCK_LEN {
        return None;
    }
    let data_len = BLOCK_LEN - pad;
    last_block[data_len..]
        .iter()
        .all(|&b| usize::from(b) == pad)
        .then_some(data_len)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// XOR with the block index, a stand-in transform that shows block order.
    fn tag_blocks(counter: &mut u8) -> impl FnMut(InOutBuf<'_, '_, Block>) + '_ {
        move |mut blocks| {
            for i in 0..blocks.len() {
                for b in blocks.get(i).get_out().iter_mut() {
                    *b ^= *counter;
                }
                *counter += 1;
            }
        }
    }

    #[test]
    fn chunking_does_not_change_output() {
        let input: Vec<u8> = (0..100u8).collect();
        let mut expected = Vec::new();
        let (mut c1, mut carry) = (0u8, BlockCarry::default());
        carry.process(&input, &mut expected, tag_blocks(&mut c1));
        carry.pad_and_process(&mut expected, tag_blocks(&mut c1));

        for split in [1usize, 3, 15, 16, 17, 40] {
            let mut out = Vec::new();
            let (mut c2, mut carry) = (0u8, BlockCarry::default());
            for chunk in input.chunks(split) {
                carry.process(chunk, &mut out, tag_blocks(&mut c2));
            }
            assert_eq!(carry.len(), 100 % 16);
            carry.pad_and_process(&mut out, tag_blocks(&mut c2));
            assert_eq!(out, expected, "split {split}");
        }
        assert_eq!(expected.len(), 112);
        // The last block: 4 data bytes and 12 bytes of value 12, XORed with index 6.
        assert!(expected[100..].iter().all(|&b| b == 12 ^ 6));
    }

    #[test]
    fn padding_rules() {
        let mut block = [16u8; 16];
        assert_eq!(unpadded_len(&block), Some(0));
        block[15] = 1;
        assert_eq!(unpadded_len(&block), Some(15));
        block[15] = 0;
        assert_eq!(unpadded_len(&block), None);
        block[15] = 17;
        assert_eq!(unpadded_len(&block), None);
        let mut block = [3u8; 16];
        block[13] = 4;
        assert_eq!(unpadded_len(&block), None);
    }
}
