//! The MIKEY-1 PRF (RFC 3830 §4.1.2; wire reference §3.1), built on
//! HMAC-SHA-1.

use hmac::{Hmac, Mac};
use sha1::Sha1;
use zeroize::Zeroize;

type HmacSha1 = Hmac<Sha1>;

/// Input keys are split into chunks of 256 bits.
const CHUNK_LEN: usize = 32;
const BLOCK_LEN: usize = 20;

/// Fills `out` with `PRF(inkey, label, out.len())`: the XOR over the 32-byte
/// chunks of `inkey` of `P(chunk, label, m)`, truncated. The last chunk is
/// whatever remains, so a key whose length is a multiple of 32 has no empty
/// chunk (minisip's `% 32` gets this wrong, wire reference §8a). An empty key
/// is one empty chunk, which HMAC accepts.
pub fn prf(inkey: &[u8], label: &[u8], out: &mut [u8]) {
    prf_many(inkey, &mut [(label, out)]);
}

/// [`prf`] for several `(label, out)` pairs under one key, keying HMAC once
/// per chunk instead of once per output.
pub fn prf_many(inkey: &[u8], outputs: &mut [(&[u8], &mut [u8])]) {
    for (_, out) in outputs.iter_mut() {
        out.fill(0);
    }
    let empty_key = inkey.is_empty().then_some(&[][..]);
    for chunk in empty_key.into_iter().chain(inkey.chunks(CHUNK_LEN)) {
        let keyed = HmacSha1::new_from_slice(chunk).expect("HMAC takes a key of any length");
        for (label, out) in outputs.iter_mut() {
            xor_p(&keyed, label, out);
        }
    }
}

/// XORs `P(s, label, m)` into `out`, with `m = ceil(out.len() / 20)` and
/// `keyed` = HMAC keyed with s: `A0 = label`, `Ai = HMAC(s, A(i-1))`,
/// block i = `HMAC(s, Ai ‖ label)`.
fn xor_p(keyed: &HmacSha1, label: &[u8], out: &mut [u8]) {
    let mut a: [u8; BLOCK_LEN] = [0; BLOCK_LEN];
    for (i, block_out) in out.chunks_mut(BLOCK_LEN).enumerate() {
        let mut mac = keyed.clone();
        mac.update(if i == 0 { label } else { &a });
        a = mac.finalize().into_bytes().into();
        let mut mac = keyed.clone();
        mac.update(&a);
        mac.update(label);
        let mut block: [u8; BLOCK_LEN] = mac.finalize().into_bytes().into();
        for (o, b) in block_out.iter_mut().zip(block.iter()) {
            *o ^= b;
        }
        block.zeroize();
    }
    a.zeroize();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &[u8], label: &[u8], len: usize) -> Vec<u8> {
        let mut out = vec![0; len];
        xor_p(&HmacSha1::new_from_slice(s).unwrap(), label, &mut out);
        out
    }

    /// Straight from the RFC text, for cross-checking the chunk loop.
    fn p_reference(s: &[u8], label: &[u8], m: usize) -> Vec<u8> {
        let hmac = |data: &[u8]| {
            let mut mac = HmacSha1::new_from_slice(s).unwrap();
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        };
        let mut a = label.to_vec();
        let mut out = Vec::new();
        for _ in 0..m {
            a = hmac(&a);
            out.extend(hmac(&[a.as_slice(), label].concat()));
        }
        out
    }

    #[test]
    fn one_chunk_is_p_truncated() {
        let key = [3u8; 16];
        let mut out = [0u8; 45];
        prf(&key, b"label", &mut out);
        assert_eq!(out.as_slice(), &p_reference(&key, b"label", 3)[..45]);
    }

    #[test]
    fn chunks_are_xored_and_a_multiple_of_32_has_no_empty_chunk() {
        let key: Vec<u8> = (0u8..64).collect();
        let mut out = [0u8; 20];
        prf(&key, b"L", &mut out);
        let expected: Vec<u8> = p(&key[..32], b"L", 20)
            .iter()
            .zip(p(&key[32..], b"L", 20))
            .map(|(a, b)| a ^ b)
            .collect();
        assert_eq!(out.as_slice(), expected.as_slice());
        assert_eq!(
            p(&key[..32], b"L", 20),
            p_reference(&key[..32], b"L", 1),
            "P itself matches the RFC definition"
        );
        // A trailing empty chunk (the minisip bug) would XOR in P("", ...).
        let with_bug: Vec<u8> = expected
            .iter()
            .zip(p(&[], b"L", 20))
            .map(|(a, b)| a ^ b)
            .collect();
        assert_ne!(out.as_slice(), with_bug.as_slice());
    }

    #[test]
    fn many_outputs_equal_single_runs() {
        let key: Vec<u8> = (0u8..70).collect();
        let (mut a, mut b) = ([0u8; 16], [0u8; 45]);
        prf_many(&key, &mut [(b"one", &mut a), (b"two", &mut b)]);
        let (mut a1, mut b1) = ([0u8; 16], [0u8; 45]);
        prf(&key, b"one", &mut a1);
        prf(&key, b"two", &mut b1);
        assert_eq!((a, b), (a1, b1));
    }

    #[test]
    fn empty_key_is_one_empty_chunk() {
        let mut out = [0u8; 20];
        prf(&[], b"L", &mut out);
        assert_eq!(out.as_slice(), p_reference(&[], b"L", 1).as_slice());
    }

    #[test]
    fn short_last_chunk() {
        let key: Vec<u8> = (0u8..40).collect();
        let mut out = [0u8; 16];
        prf(&key, b"L", &mut out);
        let expected: Vec<u8> = p(&key[..32], b"L", 16)
            .iter()
            .zip(p(&key[32..], b"L", 16))
            .map(|(a, b)| a ^ b)
            .collect();
        assert_eq!(out.as_slice(), expected.as_slice());
    }
}
