//! The Raptor code of RFC 5053 §5.4 for one source block of K symbols:
//! the code parameters (§5.4.2.3), the pseudo-random generators (§5.4.4),
//! the constraint matrix A (§5.4.2.4.2: S LDPC rows, H Half rows, one LT
//! row per encoding symbol) and a GF(2) solver for A·C = D.
//!
//! The solver is Gauss–Jordan elimination on a bit matrix that always takes
//! its next pivot from a row with the fewest ones left (so the sparse LT
//! rows peel like belief propagation and only the dense residue fills in).
//! It records its row operations as a [`Schedule`], which is then replayed
//! on the symbols: the encoder's matrix depends on K only, so one schedule
//! serves every block of that size.

use super::tables::{SYSTEMATIC_INDEX, V0, V1};

/// Smallest and largest K with a systematic index (RFC 5053 §5.7).
pub const MIN_SOURCE_SYMBOLS: u32 = 4;
pub const MAX_SOURCE_SYMBOLS: u32 = 8192;

/// Largest LT degree of the degree generator (§5.4.4.2).
pub const MAX_DEGREE: usize = 40;

/// The parameters of a source block of K symbols, RFC 5053 §5.4.2.3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parameters {
    /// K, source symbols.
    pub k: u32,
    /// S, LDPC symbols.
    pub s: u32,
    /// H, Half symbols.
    pub h: u32,
    /// L = K + S + H, intermediate symbols.
    pub l: u32,
    /// L', the smallest prime ≥ L.
    pub l_prime: u32,
    /// J(K), the systematic index.
    systematic_index: u32,
}

/// (d, a, b) of the triple generator (§5.4.4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Triple {
    pub d: u32,
    pub a: u32,
    pub b: u32,
}

fn is_prime(n: u32) -> bool {
    n >= 2
        && (2..)
            .take_while(|d| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
}

fn next_prime(mut n: u32) -> u32 {
    while !is_prime(n) {
        n += 1;
    }
    n
}

/// C(n, r), exact in u64 for the n ≤ 64 the Half symbols need.
fn choose(n: u64, r: u64) -> u64 {
    (0..r).fold(1, |acc, i| acc * (n - i) / (i + 1))
}

/// Rand[X, i, m] (§5.4.4.1).
fn rand(x: u32, i: u32, m: u32) -> u32 {
    let v0 = V0[((x.wrapping_add(i)) % 256) as usize];
    let v1 = V1[((x / 256 + i) % 256) as usize];
    (v0 ^ v1) % m
}

/// Deg[v] (§5.4.4.2) for v < 2^20.
fn degree(v: u32) -> u32 {
    const F: [u32; 7] = [10241, 491582, 712794, 831695, 948446, 1032189, 1048576];
    const D: [u32; 7] = [1, 2, 3, 4, 10, 11, 40];
    F.iter()
        .position(|&f| v < f)
        .map_or(MAX_DEGREE as u32, |j| D[j])
}

impl Parameters {
    /// `None` for K outside 4..=8192, where J(K) is undefined.
    pub fn new(k: u32) -> Option<Self> {
        if !(MIN_SOURCE_SYMBOLS..=MAX_SOURCE_SYMBOLS).contains(&k) {
            return None;
        }
        let systematic_index = u32::from(SYSTEMATIC_INDEX[(k - MIN_SOURCE_SYMBOLS) as usize]);
        // X: the smallest positive integer with X·(X − 1) ≥ 2·K.
        let x = (1u32..).find(|x| x * (x - 1) >= 2 * k).unwrap_or(1);
        let s = next_prime(k.div_ceil(100) + x);
        let h = (1u32..)
            .find(|&h| choose(h.into(), h.div_ceil(2).into()) >= u64::from(k + s))
            .unwrap_or(1);
        let l = k + s + h;
        Some(Self {
            k,
            s,
            h,
            l,
            l_prime: next_prime(l),
            systematic_index,
        })
    }

    /// H' = ⌈H/2⌉, the weight of each Half-symbol Gray code.
    fn h_prime(&self) -> u32 {
        self.h.div_ceil(2)
    }

    /// Trip[K, X] (§5.4.4.4) for encoding symbol ID `x`.
    pub fn triple(&self, x: u32) -> Triple {
        const Q: u64 = 65521;
        let j = u64::from(self.systematic_index);
        let a = (53591 + j * 997) % Q;
        let b = 10267 * (j + 1) % Q;
        let y = ((b + u64::from(x) * a) % Q) as u32;
        Triple {
            d: degree(rand(y, 0, 1 << 20)),
            a: 1 + rand(y, 1, self.l_prime - 1),
            b: rand(y, 2, self.l_prime),
        }
    }

    /// The intermediate symbols LTEnc (§5.4.4.3) adds up for ESI `x`;
    /// returns how many of `out` it filled.
    pub fn lt_indices(&self, x: u32, out: &mut [u32; MAX_DEGREE]) -> usize {
        let Triple { d, a, mut b } = self.triple(x);
        let d = d.min(self.l) as usize;
        let step = |b: u32| (b + a) % self.l_prime;
        while b >= self.l {
            b = step(b);
        }
        out[0] = b;
        for slot in out.iter_mut().take(d).skip(1) {
            b = step(b);
            while b >= self.l {
                b = step(b);
            }
            *slot = b;
        }
        d
    }

    /// The S + H pre-coding rows of A (§5.4.2.3), each summing to zero:
    /// LDPC symbol K + b is the sum of the C[i] (i < K) that the LDPC
    /// recurrence adds to it, each C[i] to three of them; Half symbol
    /// K + S + h the sum of the C[j] (j < K + S) whose Gray code m[j] has
    /// bit h set. XOR (`set` toggles) is the RFC's own accumulation.
    fn precode_rows(&self, matrix: &mut BitMatrix) {
        let (k, s, h) = (self.k, self.s, self.h);
        for i in 0..k {
            let a = 1 + (i / s) % (s - 1);
            let mut b = i % s;
            for _ in 0..3 {
                matrix.set(b as usize, i as usize);
                b = (b + a) % s;
            }
        }
        for i in 0..s {
            matrix.set(i as usize, (k + i) as usize);
        }
        // m[j]: the j-th Gray code g[i] = i ⊕ ⌊i/2⌋ with exactly H' bits set.
        let h_prime = self.h_prime();
        let gray = (0u64..)
            .map(|i| i ^ (i >> 1))
            .filter(|g| g.count_ones() == h_prime)
            .take((k + s) as usize);
        for (j, m) in gray.enumerate() {
            for row in 0..h {
                if m >> row & 1 == 1 {
                    matrix.set((s + row) as usize, j);
                }
            }
        }
        for row in 0..h {
            matrix.set((s + row) as usize, (k + s + row) as usize);
        }
    }

    /// A for the encoding symbols `esis`: S + H pre-coding rows, then one
    /// LT row per ESI, over L columns.
    pub fn constraint_matrix(&self, esis: impl ExactSizeIterator<Item = u32>) -> BitMatrix {
        let precode = (self.s + self.h) as usize;
        let mut matrix = BitMatrix::new(precode + esis.len(), self.l as usize);
        self.precode_rows(&mut matrix);
        let mut indices = [0; MAX_DEGREE];
        for (row, x) in esis.enumerate() {
            let d = self.lt_indices(x, &mut indices);
            for &c in &indices[..d] {
                // LT indices are distinct (b walks a full cycle mod the prime L').
                matrix.set(precode + row, c as usize);
            }
        }
        matrix
    }

    /// Rows of D that the pre-coding constraints fix to zero.
    pub fn precode_rows_len(&self) -> usize {
        (self.s + self.h) as usize
    }
}

/// A dense GF(2) matrix, one bit per entry, rows of 64-bit words.
#[derive(Debug, Clone)]
pub struct BitMatrix {
    words: usize,
    rows: usize,
    bits: Vec<u64>,
}

impl BitMatrix {
    pub fn new(rows: usize, columns: usize) -> Self {
        let words = columns.div_ceil(64);
        Self {
            words,
            rows,
            bits: vec![0; rows * words],
        }
    }

    fn set(&mut self, row: usize, column: usize) {
        self.bits[row * self.words + column / 64] ^= 1 << (column % 64);
    }

    fn get(&self, row: usize, column: usize) -> bool {
        self.bits[row * self.words + column / 64] >> (column % 64) & 1 == 1
    }

    fn row(&self, row: usize) -> &[u64] {
        &self.bits[row * self.words..(row + 1) * self.words]
    }

    /// Row `dst` ^= row `src` (distinct rows).
    fn add_row(&mut self, src: usize, dst: usize) {
        let w = self.words;
        let (src, dst) = if src < dst {
            let (a, b) = self.bits.split_at_mut(dst * w);
            (&a[src * w..(src + 1) * w], &mut b[..w])
        } else {
            let (a, b) = self.bits.split_at_mut(src * w);
            (&b[..w], &mut a[dst * w..(dst + 1) * w])
        };
        for (d, s) in dst.iter_mut().zip(src) {
            *d ^= s;
        }
    }

    /// Ones of `row` among the columns still set in `mask`.
    fn weight(&self, row: usize, mask: &[u64]) -> u32 {
        self.row(row)
            .iter()
            .zip(mask)
            .map(|(r, m)| (r & m).count_ones())
            .sum()
    }

    fn first_in(&self, row: usize, mask: &[u64]) -> Option<usize> {
        self.row(row)
            .iter()
            .zip(mask)
            .enumerate()
            .find(|(_, (r, m))| *r & *m != 0)
            .map(|(w, (r, m))| w * 64 + (r & m).trailing_zeros() as usize)
    }
}

/// The unused row with the fewest ones left (the first of weight 1, which
/// is a plain peeling step); `None` when no unused row has any.
fn lightest_row(weight: &[u32]) -> Option<usize> {
    let mut best: Option<(usize, u32)> = None;
    for (row, &w) in weight.iter().enumerate() {
        if w == 0 || w == u32::MAX || best.is_some_and(|(_, b)| b <= w) {
            continue;
        }
        best = Some((row, w));
        if w == 1 {
            break;
        }
    }
    best.map(|(row, _)| row)
}

/// The row operations that solve A·C = D, to replay on the symbols of D.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// `(src, dst)`: row `dst` of D ^= row `src`, in order.
    ops: Vec<(u32, u32)>,
    /// For column c, the row of D that holds C[c] once the ops are applied.
    pivot_rows: Vec<u32>,
}

impl Schedule {
    /// Gauss–Jordan on `matrix` (rows ≥ columns); `None` if its rank is
    /// below `columns`, i.e. the symbols received do not determine C.
    pub fn solve(mut matrix: BitMatrix, columns: usize) -> Option<Self> {
        let rows = matrix.rows;
        let mut remaining = vec![0u64; matrix.words];
        for c in 0..columns {
            remaining[c / 64] |= 1 << (c % 64);
        }
        // u32::MAX marks a row already used as a pivot.
        let mut weight: Vec<u32> = (0..rows).map(|r| matrix.weight(r, &remaining)).collect();
        let mut ops = Vec::new();
        let mut pivot_rows = vec![0u32; columns];
        for _ in 0..columns {
            let pivot = lightest_row(&weight)?;
            let column = matrix.first_in(pivot, &remaining)?;
            remaining[column / 64] &= !(1 << (column % 64));
            weight[pivot] = u32::MAX;
            pivot_rows[column] = pivot as u32;
            for (row, weight) in weight.iter_mut().enumerate() {
                if row != pivot && matrix.get(row, column) {
                    matrix.add_row(pivot, row);
                    ops.push((pivot as u32, row as u32));
                    if *weight != u32::MAX {
                        *weight = matrix.weight(row, &remaining);
                    }
                }
            }
        }
        Some(Self { ops, pivot_rows })
    }

    /// Turns `d` (rows of `t` bytes, as many as the matrix had) into C,
    /// written to `c` (L rows of `t` bytes).
    pub fn apply(&self, d: &mut [u8], t: usize, c: &mut Vec<u8>) {
        for &(src, dst) in &self.ops {
            let (src, dst) = (src as usize * t, dst as usize * t);
            let (from, to) = if src < dst {
                let (a, b) = d.split_at_mut(dst);
                (&a[src..src + t], &mut b[..t])
            } else {
                let (a, b) = d.split_at_mut(src);
                (&b[..t], &mut a[dst..dst + t])
            };
            xor_into(to, from);
        }
        c.clear();
        for &row in &self.pivot_rows {
            let at = row as usize * t;
            c.extend_from_slice(&d[at..at + t]);
        }
    }
}

/// `dst ^= src`, a word at a time.
pub fn xor_into(dst: &mut [u8], src: &[u8]) {
    let mut d = dst.chunks_exact_mut(8);
    let mut s = src.chunks_exact(8);
    for (d, s) in (&mut d).zip(&mut s) {
        let x = u64::from_ne_bytes(d.try_into().unwrap_or_default())
            ^ u64::from_ne_bytes(s.try_into().unwrap_or_default());
        d.copy_from_slice(&x.to_ne_bytes());
    }
    for (d, s) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *d ^= s;
    }
}

/// LTEnc[K, C, Trip[K, X]]: the encoding symbol with ESI `x`, written to
/// `out` (T bytes) from the intermediate symbols `c` (L rows of T bytes).
pub fn lt_encode(params: &Parameters, c: &[u8], x: u32, out: &mut [u8]) {
    let t = out.len();
    let mut indices = [0; MAX_DEGREE];
    let d = params.lt_indices(x, &mut indices);
    out.fill(0);
    for &i in &indices[..d] {
        let at = i as usize * t;
        xor_into(out, &c[at..at + t]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Vectors of Google's gofountain (an independent Go implementation of
    /// RFC 5053), as carried by the `raptor-code` crate's unit tests.
    #[test]
    fn parameters_match_gofountain() {
        for (k, l, s, h) in [
            (10, 23, 7, 6),
            (14, 28, 7, 7),
            (500, 553, 41, 12),
            (5000, 5166, 151, 15),
        ] {
            let p = Parameters::new(k).unwrap();
            assert_eq!((p.l, p.s, p.h), (l, s, h), "K = {k}");
            assert!(is_prime(p.l_prime) && p.l_prime >= p.l);
            assert!((p.l..p.l_prime).all(|n| !is_prime(n)));
        }
        assert_eq!(Parameters::new(3), None);
        assert_eq!(Parameters::new(8193), None);
        assert!(Parameters::new(4).is_some() && Parameters::new(8192).is_some());
    }

    #[test]
    fn triples_match_gofountain() {
        for (k, x, d, a, b) in [
            (4, 0, 10, 13, 1),
            (4, 4, 4, 6, 2),
            (500, 514, 2, 107, 279),
            (1000, 52918, 3, 1070, 121),
        ] {
            let p = Parameters::new(k).unwrap();
            assert_eq!(p.triple(x), Triple { d, a, b }, "K = {k}, X = {x}");
        }
    }

    #[test]
    fn lt_indices_match_gofountain() {
        let cases: [(u32, u32, &[u32]); 5] = [
            (4, 0, &[1, 2, 3, 4, 6, 7, 8, 10, 11, 12]),
            (4, 4, &[2, 3, 8, 9]),
            (100, 1, &[51, 104]),
            (1000, 727, &[306, 687, 1040]),
            (10, 57279, &[19, 20, 21, 22]),
        ];
        for (k, x, expected) in cases {
            let p = Parameters::new(k).unwrap();
            let mut out = [0; MAX_DEGREE];
            let d = p.lt_indices(x, &mut out);
            let mut got = out[..d].to_vec();
            got.sort_unstable();
            assert_eq!(got, expected, "K = {k}, X = {x}");
        }
    }

    /// The first LDPC row of A for K = 10, as gofountain's matrix test
    /// lists it (its later rows are shown after its on-the-fly elimination):
    /// C[0], C[5], C[6], C[7] and the LDPC symbol's own C[10].
    #[test]
    fn first_ldpc_row_matches_gofountain() {
        let p = Parameters::new(10).unwrap();
        let a = p.constraint_matrix(0..10);
        let ones: Vec<usize> = (0..p.l as usize).filter(|&c| a.get(0, c)).collect();
        assert_eq!(ones, [0, 5, 6, 7, 10]);
    }

    /// Degree distribution edges of §5.4.4.2.
    #[test]
    fn degree_table_edges() {
        assert_eq!(degree(0), 1);
        assert_eq!(degree(10240), 1);
        assert_eq!(degree(10241), 2);
        assert_eq!(degree(1032188), 11);
        assert_eq!(degree(1032189), 40);
        assert_eq!(degree((1 << 20) - 1), 40);
    }

    /// The solver's C satisfies every row of A, and a rank-deficient A is
    /// reported rather than solved.
    #[test]
    fn solution_satisfies_the_constraints() {
        let t = 8;
        for k in [4u32, 17, 300] {
            let p = Parameters::new(k).unwrap();
            let a = p.constraint_matrix(0..k);
            let schedule = Schedule::solve(a.clone(), p.l as usize).unwrap();
            let mut d = vec![0u8; p.precode_rows_len() * t];
            d.extend((0..k as usize * t).map(|i| (i * 31 + 7) as u8));
            let original = d.clone();
            let mut c = Vec::new();
            schedule.apply(&mut d, t, &mut c);
            assert_eq!(c.len(), p.l as usize * t);
            for row in 0..a.rows {
                let mut sum = vec![0u8; t];
                for col in (0..p.l as usize).filter(|&col| a.get(row, col)) {
                    xor_into(&mut sum, &c[col * t..(col + 1) * t]);
                }
                assert_eq!(sum, original[row * t..(row + 1) * t], "K {k} row {row}");
            }
            // K − 1 LT rows cannot determine L intermediate symbols.
            let short = p.constraint_matrix(0..k - 1);
            assert_eq!(Schedule::solve(short, p.l as usize), None);
        }
    }
}
