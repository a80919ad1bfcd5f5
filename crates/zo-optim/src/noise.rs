//! Counter-based Gaussian directions, regenerated on demand from seeds.
//!
//! The direction z of one ZO query is a vector of i.i.d. standard normals over the trainable
//! parameters. It is never stored: every element is a pure function of
//! `(step seed, HF parameter path, element index)`, so z does not depend on the order in which
//! parameters are visited, on the thread count or on which parameters are trainable
//! (`DESIGN.md`, key decision 2; MeZO and ZO-Bench instead reseed one global RNG and so depend
//! on parameter order).
//!
//! Construction (fixed here, independent of crate versions):
//! 1. `h = FNV-1a-64(path)`;
//! 2. a parameter is cut into chunks of [`CHUNK`] elements; chunk `c` gets the state of a
//!    xoshiro256++ generator made of four successive SplitMix64 outputs started from
//!    `seed ^ rotl(h, 17) ^ (c * 0x9E37_79B9_7F4A_7C15)`, then mixed once more;
//! 3. each 64-bit output `a` gives two normals by the Box–Muller transform in f32:
//!    `u1 = ((a >> 40) + 1) / 2^24 ∈ (0, 1]`, `u2 = (a & (2^24 − 1)) / 2^24 ∈ [0, 1)`,
//!    `z0 = sqrt(−2 ln u1) cos(2π u2)`, `z1 = sqrt(−2 ln u1) sin(2π u2)`.
//!    The 24-bit `u1` bounds |z| by sqrt(48 ln 2) ≈ 5.77 (P(|z| > 5.77) ≈ 8e-9 for an exact
//!    normal), which changes nothing measurable for ZO estimates and halves the generator
//!    calls.

use rand_xoshiro::Xoshiro256PlusPlus;
use rand_xoshiro::rand_core::{RngCore, SeedableRng};
use rayon::prelude::*;

/// Elements per generator chunk. Changing it changes every direction.
pub const CHUNK: usize = 4096;

/// The key of one direction: a step seed (already mixed with the query index).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NoiseKey(pub u64);

impl NoiseKey {
    /// Key of query `query` (0-based) at training step `step` of a run with seed `run_seed`.
    pub fn for_step(run_seed: u64, step: u64, query: u64) -> Self {
        let mut s = run_seed ^ 0xD1B5_4A32_D192_ED03;
        let a = splitmix64(&mut s);
        let mut t = a ^ step.wrapping_mul(0xA24B_AED4_963E_E407);
        let b = splitmix64(&mut t);
        let mut u = b ^ query.wrapping_mul(0x9FB2_1C65_1E98_DF25);
        NoiseKey(splitmix64(&mut u))
    }
}

/// FNV-1a 64-bit hash of a parameter path.
pub fn path_hash(path: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in path.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// SplitMix64 step (Steele, Lea & Flood 2014): advances `state` and returns a mixed output.
pub fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn chunk_rng(key: NoiseKey, h: u64, chunk: u64) -> Xoshiro256PlusPlus {
    let mut s = key.0 ^ h.rotate_left(17) ^ chunk.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let _ = splitmix64(&mut s);
    let mut seed = [0u8; 32];
    for i in 0..4 {
        seed[i * 8..i * 8 + 8].copy_from_slice(&splitmix64(&mut s).to_le_bytes());
    }
    Xoshiro256PlusPlus::from_seed(seed)
}

/// Applies `op(element, scale · z)` to every element of one chunk (`out.len() <= CHUNK`) of
/// the direction, chunk index `chunk`.
#[inline(always)]
fn chunk_apply(
    key: NoiseKey,
    h: u64,
    chunk: u64,
    scale: f32,
    out: &mut [f32],
    op: impl Fn(&mut f32, f32),
) {
    const INV_2_24: f32 = 1.0 / 16_777_216.0;
    let mut rng = chunk_rng(key, h, chunk);
    let mut pairs = out.chunks_exact_mut(2);
    let mut draw = || {
        let a = rng.next_u64();
        let u1 = ((a >> 40) + 1) as f32 * INV_2_24;
        let u2 = (a & 0xFF_FFFF) as f32 * INV_2_24;
        let r = (-2.0 * u1.ln()).sqrt() * scale;
        let (s, c) = (std::f32::consts::TAU * u2).sin_cos();
        (r * c, r * s)
    };
    for pair in &mut pairs {
        let (z0, z1) = draw();
        op(&mut pair[0], z0);
        op(&mut pair[1], z1);
    }
    if let [last] = pairs.into_remainder() {
        op(last, draw().0);
    }
}

/// Writes `scale * z` of chunk `chunk` of the parameter with path hash `h` into `out`
/// (`out.len() <= CHUNK`; the first `out.len()` elements of that chunk). Crate-internal building
/// block of the fused multi-direction passes in [`crate::pass`].
pub(crate) fn fill_chunk(key: NoiseKey, h: u64, chunk: u64, scale: f32, out: &mut [f32]) {
    chunk_apply(key, h, chunk, scale, out, |x, z| *x = z);
}

/// Applies `op(element, scale · z)` over one chunk of a parameter (chunk index `chunk`) without
/// a direction buffer: the generator feeds `op` directly. Crate-internal fast path of
/// [`crate::pass`].
#[inline(always)]
pub(crate) fn apply_chunk(
    key: NoiseKey,
    h: u64,
    chunk: u64,
    scale: f32,
    out: &mut [f32],
    op: impl Fn(&mut f32, f32),
) {
    chunk_apply(key, h, chunk, scale, out, op);
}

fn apply(
    key: NoiseKey,
    path: &str,
    start: usize,
    scale: f32,
    out: &mut [f32],
    op: impl Fn(&mut f32, f32) + Sync + Copy,
) {
    assert!(
        start.is_multiple_of(CHUNK),
        "noise: start {start} is not a multiple of {CHUNK}"
    );
    let h = path_hash(path);
    let first = (start / CHUNK) as u64;
    out.par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(i, c)| chunk_apply(key, h, first + i as u64, scale, c, op));
}

/// Writes `scale * z[path][start .. start + out.len()]` into `out`, where `z[path]` is the
/// direction of parameter `path` under `key`. `start` must be a multiple of [`CHUNK`].
/// Chunks are filled in parallel on the rayon pool; the result does not depend on the number
/// of threads.
///
/// # Panics
/// If `start` is not a multiple of [`CHUNK`].
pub fn fill_gaussian(key: NoiseKey, path: &str, start: usize, scale: f32, out: &mut [f32]) {
    apply(key, path, start, scale, out, |x, z| *x = z);
}

/// Adds `scale * z[path][start .. start + out.len()]` to `out` in place (one pass over memory,
/// no buffer). Same element values as [`fill_gaussian`].
///
/// # Panics
/// If `start` is not a multiple of [`CHUNK`].
pub fn add_gaussian(key: NoiseKey, path: &str, start: usize, scale: f32, out: &mut [f32]) {
    apply(key, path, start, scale, out, |x, z| *x += z);
}

/// Returns `scale * z[path]` for a parameter of `n` elements (a new vector of length `n`).
pub fn gaussian_vec(key: NoiseKey, path: &str, n: usize, scale: f32) -> Vec<f32> {
    let mut v = vec![0.0f32; n];
    fill_gaussian(key, path, 0, scale, &mut v);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_key_same_values_and_prefix_consistency() {
        let k = NoiseKey::for_step(7, 3, 0);
        let a = gaussian_vec(
            k,
            "encoder.layer.0.attention.self.query.weight",
            10_000,
            1.0,
        );
        let b = gaussian_vec(
            k,
            "encoder.layer.0.attention.self.query.weight",
            10_000,
            1.0,
        );
        assert_eq!(a, b);
        // Element i depends only on (key, path, i): a longer tensor shares the prefix.
        let c = gaussian_vec(
            k,
            "encoder.layer.0.attention.self.query.weight",
            12_345,
            1.0,
        );
        assert_eq!(&a[..], &c[..10_000]);
        // Filling from an offset reproduces the tail.
        let mut tail = vec![0.0; 12_345 - CHUNK];
        fill_gaussian(
            k,
            "encoder.layer.0.attention.self.query.weight",
            CHUNK,
            1.0,
            &mut tail,
        );
        assert_eq!(&tail[..], &c[CHUNK..]);
    }

    #[test]
    fn different_paths_steps_and_queries_differ() {
        let k = NoiseKey::for_step(7, 3, 0);
        let a = gaussian_vec(k, "a.weight", 64, 1.0);
        let b = gaussian_vec(k, "b.weight", 64, 1.0);
        let c = gaussian_vec(NoiseKey::for_step(7, 4, 0), "a.weight", 64, 1.0);
        let d = gaussian_vec(NoiseKey::for_step(7, 3, 1), "a.weight", 64, 1.0);
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
    }

    #[test]
    fn moments_are_standard_normal() {
        let v = gaussian_vec(NoiseKey(12345), "p", 1 << 20, 1.0);
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
        let kurt = v.iter().map(|&x| (x as f64 - mean).powi(4)).sum::<f64>() / n / var.powi(2);
        // Standard errors at n = 2^20: mean 1e-3, var 1.4e-3, kurtosis 4.8e-3.
        assert!(mean.abs() < 5e-3, "mean {mean}");
        assert!((var - 1.0).abs() < 7e-3, "var {var}");
        assert!((kurt - 3.0).abs() < 3e-2, "kurtosis {kurt}");
        // Neighbouring chunks are not correlated.
        let cov: f64 = v[..CHUNK]
            .iter()
            .zip(&v[CHUNK..2 * CHUNK])
            .map(|(&a, &b)| (a * b) as f64)
            .sum::<f64>()
            / CHUNK as f64;
        assert!(cov.abs() < 0.06, "cross-chunk covariance {cov}");
    }

    #[test]
    fn add_matches_fill() {
        let k = NoiseKey(77);
        let base: Vec<f32> = (0..10_001).map(|i| i as f32 * 0.5).collect();
        let mut added = base.clone();
        add_gaussian(k, "w", 0, 0.25, &mut added);
        let z = gaussian_vec(k, "w", base.len(), 0.25);
        for i in 0..base.len() {
            assert_eq!(added[i], base[i] + z[i]);
        }
    }

    #[test]
    fn scale_multiplies() {
        let k = NoiseKey(1);
        let a = gaussian_vec(k, "p", 100, 1.0);
        let b = gaussian_vec(k, "p", 100, -2.0);
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(*y, *x * -2.0);
        }
    }
}
