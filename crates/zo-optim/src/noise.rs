//! Counter-based Gaussian directions, regenerated on demand from seeds.
//!
//! The direction z of one ZO query is a vector of i.i.d. standard normals over the trainable
//! parameters. It is never stored: every element is a pure function of
//! `(step seed, HF parameter path, element index)`, so z does not depend on the order in which
//! parameters are visited, on the thread count or on which parameters are trainable
//! (`DESIGN.md`, key decision 2; MeZO and ZO-Bench instead reseed one global RNG and so depend
//! on parameter order).
//!
//! Construction (fixed here, independent of crate versions, CPU and SIMD width):
//! 1. `h = FNV-1a-64(path)`;
//! 2. a parameter is cut into chunks of [`CHUNK`] elements; chunk `c` starts a SplitMix64
//!    sequence at `seed ^ rotl(h, 17) ^ (c * 0x9E37_79B9_7F4A_7C15)`, drops its first output,
//!    and takes the next 32 outputs as the states of 8 xoshiro256++ generators (lane `l` gets
//!    outputs `4l + 1 ..= 4l + 4` as its words `s0..s3`);
//! 3. the 8 lanes are stepped together; step `t` of the chunk yields one 64-bit output `a_l`
//!    per lane and the 16 elements `16t .. 16t + 16` of the chunk: element `16t + l` is
//!    `r_l cos θ_l` and element `16t + 8 + l` is `r_l sin θ_l` (Box–Muller), with
//!    `u1 = ((a >> 40) + 1) / 2^24 ∈ (0, 1]`, `r = sqrt(−2 ln u1)`,
//!    `θ = 2π (a & (2^24 − 1)) / 2^24`.
//!    The 24-bit `u1` bounds |z| by sqrt(48 ln 2) ≈ 5.77 (P(|z| > 5.77) ≈ 8e-9 for an exact
//!    normal), which changes nothing measurable for ZO estimates.
//! 4. `ln`, `sin` and `cos` are not libm's but fixed f32 polynomials (Cephes `logf`, `sinf`,
//!    `cosf`, with exact range reduction: `ln` on the mantissa in [√½, √2) plus e·ln 2 split in
//!    two parts; the angle reduced to [−π/4, π/4] by integer arithmetic on the 24 bits, then
//!    rotated by its quadrant). Their errors are below one f32 ulp of 1 (measured in the
//!    tests over all 2^24 inputs of each against f64: |Δ ln u1| ≤ 8.2e-8 · |ln u1|,
//!    |Δ sin θ|, |Δ cos θ| ≤ 9.1e-8), far below anything a ZO estimate can see; the
//!    distribution of z is checked on 10^7 samples (moments, tails beyond 3σ and 4σ, CDF).
//!    The arithmetic is plain IEEE f32 add, mul, sqrt and exact int↔float conversions, lane
//!    by lane, with no FMA, so z is bit-identical on every CPU and whether the loop runs
//!    scalar, SSE2, AVX2 or AVX-512 (checked in the tests); a GPU kernel reproduces it
//!    exactly if it also keeps FMA contraction off and uses a correctly rounded sqrt.
//!
//! The lanes exist for speed: the generator and the transform vectorise across them, and a
//! copy compiled for AVX2 or AVX-512 is chosen at run time (`ZO_NOISE_ISA=portable|avx2`
//! forces a narrower one, for benchmarks). The AVX-512 copy runs two generator steps per
//! iteration so that the transform fills its 16 f32 lanes (same values). One core,
//! cache-resident, on the development machine: ~110 Melem/s before (one xoshiro stream per
//! chunk, libm `ln`/`sin_cos`), ~410 portable (SSE2), ~610 AVX2, ~1190 AVX-512
//! (`examples/noise_speed.rs`; ~790 with one step per iteration). Streams of the earlier
//! layout gave other values for the same seeds.

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

/// Independent xoshiro256++ streams per chunk, stepped together (structure of arrays, so the
/// compiler vectorises the generator and the transform across lanes).
const LANES: usize = 8;
/// Normals produced per generator step: two per lane (`r cos θ` for every lane, then `r sin θ`).
const STEP: usize = 2 * LANES;

/// The `LANES` xoshiro256++ states of one chunk: `s[w][l]` is word `w` of lane `l`.
struct ChunkRng {
    s: [[u64; LANES]; 4],
}

fn chunk_rng(key: NoiseKey, h: u64, chunk: u64) -> ChunkRng {
    let mut s = key.0 ^ h.rotate_left(17) ^ chunk.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let _ = splitmix64(&mut s);
    let mut st = [[0u64; LANES]; 4];
    for l in 0..LANES {
        for w in &mut st {
            w[l] = splitmix64(&mut s);
        }
        if (0..4).all(|w| st[w][l] == 0) {
            st[0][l] = 1; // xoshiro's one forbidden state (probability 2^-256)
        }
    }
    ChunkRng { s: st }
}

/// Cephes `logf` coefficients: ln(1 + x) = x − x²/2 + x³ P(x) on x ∈ [√½ − 1, √2 − 1].
const LN_P: [f32; 9] = [
    7.037_683_6e-2,
    -1.151_461e-1,
    1.167_699_9e-1,
    -1.242_014_1e-1,
    1.424_932_3e-1,
    -1.666_805_8e-1,
    2.000_071_5e-1,
    -2.499_999_4e-1,
    3.333_333e-1,
];
/// ln 2 split in a part exact in few bits and a correction (Cephes).
const LN2_HI: f32 = f32::from_bits(0x3F31_8000); // 0.693359375, exact
const LN2_LO: f32 = -2.121_944_4e-4;

/// Steps the `LANES` xoshiro256++ generators (Blackman & Vigna 2019) once and splits each
/// 64-bit output `a` into `hi = a >> 40` and `lo = a & (2^24 − 1)` (`LANES` values each).
#[inline(always)]
fn next_bits(rng: &mut ChunkRng, hi: &mut [u32; LANES], lo: &mut [u32; LANES]) {
    let [s0, s1, s2, s3] = &mut rng.s;
    let mut a = [0u64; LANES];
    for l in 0..LANES {
        a[l] = s0[l]
            .wrapping_add(s3[l])
            .rotate_left(23)
            .wrapping_add(s0[l]);
        let t = s1[l] << 17;
        s2[l] ^= s0[l];
        s3[l] ^= s1[l];
        s1[l] ^= s2[l];
        s0[l] ^= s3[l];
        s2[l] ^= t;
        s3[l] = s3[l].rotate_left(45);
    }
    for l in 0..LANES {
        hi[l] = (a[l] >> 40) as u32;
        lo[l] = a[l] as u32 & 0xFF_FFFF;
    }
}

/// One generator step: `LANES` xoshiro256++ outputs → `STEP` normals (times `scale`) in `z`.
///
/// Pure f32 arithmetic (add, mul, sqrt, int↔float conversions; no FMA, no libm), lane by
/// lane, so the values are bit-identical whatever SIMD width the loop compiles to.
#[inline(always)]
fn step_normals(rng: &mut ChunkRng, scale: f32, z: &mut [f32; STEP]) {
    let mut hi = [0u32; LANES];
    let mut lo = [0u32; LANES];
    next_bits(rng, &mut hi, &mut lo);
    let (zc, zs) = z.split_at_mut(LANES);
    for l in 0..LANES {
        (zc[l], zs[l]) = normal_pair(hi[l], lo[l], scale);
    }
}

/// Two generator steps at once: the same `2 · STEP` normals as two calls of [`step_normals`]
/// (the same arithmetic lane by lane, so the same bits), with the transform run over
/// `2 · LANES` lanes so that it fills a 512-bit vector.
#[inline(always)]
fn step_normals2(rng: &mut ChunkRng, scale: f32, z: &mut [f32; 2 * STEP]) {
    let mut hi = [[0u32; LANES]; 2];
    let mut lo = [[0u32; LANES]; 2];
    for half in 0..2 {
        next_bits(rng, &mut hi[half], &mut lo[half]);
    }
    let hi = hi.as_flattened();
    let lo = lo.as_flattened();
    let mut c = [0.0f32; 2 * LANES];
    let mut s = [0.0f32; 2 * LANES];
    for l in 0..2 * LANES {
        (c[l], s[l]) = normal_pair(hi[l], lo[l], scale);
    }
    for half in 0..2 {
        let (zc, zs) = z[half * STEP..(half + 1) * STEP].split_at_mut(LANES);
        zc.copy_from_slice(&c[half * LANES..(half + 1) * LANES]);
        zs.copy_from_slice(&s[half * LANES..(half + 1) * LANES]);
    }
}

/// `ln((hi + 1) / 2^24)` for a 24-bit `hi` (so the argument is in (0, 1]), Cephes `logf`.
#[inline(always)]
fn ln_u1(hi: u32) -> f32 {
    // ln u1 = ln(k) − 24 ln 2, k = hi + 1 ∈ [1, 2^24] (exact in f32); k = 2^e m.
    let kb = ((hi + 1) as i32 as f32).to_bits();
    let mut e = (kb >> 23) as i32 - 127 - 24;
    let mut mb = (kb & 0x007F_FFFF) | 0x3F80_0000; // m ∈ [1, 2)
    // m > √2 → m/2 ∈ (√½, 1), e + 1 (so x = m − 1 ∈ [√½ − 1, √2 − 1], exact).
    let big = mb > 0x3FB5_04F3;
    mb -= u32::from(big) << 23;
    e += i32::from(big);
    let x = f32::from_bits(mb) - 1.0;
    let x2 = x * x;
    let mut p = LN_P[0];
    for c in &LN_P[1..] {
        p = p * x + *c;
    }
    let ef = e as f32;
    let ln_m = x + (x * x2 * p - 0.5 * x2 + ef * LN2_LO);
    ln_m + ef * LN2_HI
}

/// `(sin θ, cos θ)` for `θ = 2π lo / 2^24`, a 24-bit `lo`: Cephes `sinf`/`cosf` polynomials on
/// [−π/4, π/4] after an exact integer reduction to the nearest quadrant.
#[inline(always)]
fn sin_cos_turn(lo: u32) -> (f32, f32) {
    // θ = n π/2 + y, n = round(4 lo / 2^24) mod 4, y = f π / 2^23 ∈ [−π/4, π/4].
    let kq = (lo + (1 << 21)) & 0xFF_FFFF;
    let n = kq >> 22;
    let f = (kq & 0x3F_FFFF) as i32 - (1 << 21);
    let y = f as f32 * (std::f32::consts::PI / 8_388_608.0);
    let y2 = y * y;
    let sy = ((-1.951_529_6e-4 * y2 + 8.332_161e-3) * y2 - 1.666_665_5e-1) * y2 * y + y;
    let cy =
        ((2.443_315_7e-5 * y2 - 1.388_731_6e-3) * y2 + 4.166_664_6e-2) * y2 * y2 - 0.5 * y2 + 1.0;
    // Rotate by n quadrants: (sin, cos)(y + n π/2), by swapping and flipping sign bits.
    let swap = (n & 1).wrapping_neg();
    let (sb, cb) = (sy.to_bits(), cy.to_bits());
    let sin_b = ((sb & !swap) | (cb & swap)) ^ ((n >> 1) << 31);
    let cos_b = ((cb & !swap) | (sb & swap)) ^ (((n ^ (n >> 1)) & 1) << 31);
    (f32::from_bits(sin_b), f32::from_bits(cos_b))
}

/// Box–Muller on the two 24-bit halves of one 64-bit output `a`, `hi = a >> 40`
/// (u1 = (hi + 1) / 2^24 ∈ (0, 1]) and `lo = a & (2^24 − 1)` (θ = 2π lo / 2^24):
/// `scale · (r cos θ, r sin θ)`.
#[inline(always)]
fn normal_pair(hi: u32, lo: u32, scale: f32) -> (f32, f32) {
    let v = -2.0 * ln_u1(hi);
    let r = if v > 0.0 { v } else { 0.0 }.sqrt() * scale;
    let (s, c) = sin_cos_turn(lo);
    (r * c, r * s)
}

/// Applies `op(element, scale · z)` to every element of one chunk (`out.len() <= CHUNK`) of
/// the direction, chunk index `chunk`. Portable body; [`chunk_apply`] picks a compiled copy.
///
/// `WIDE` runs two generator steps per iteration ([`step_normals2`]; the same values): faster
/// with 32 vector registers (AVX-512: 788 → 1190 Melem/s on one core of the development
/// machine), slower with 16 (AVX2: 607 → 488, SSE2: 404 → 316), so only the AVX-512 copy
/// sets it.
#[inline(always)]
fn chunk_apply_body<const WIDE: bool, F: Fn(&mut f32, f32)>(
    key: NoiseKey,
    h: u64,
    chunk: u64,
    scale: f32,
    out: &mut [f32],
    op: F,
) {
    let mut rng = chunk_rng(key, h, chunk);
    let mut z = [0.0f32; STEP];
    let mut z2 = [0.0f32; 2 * STEP];
    // Two generator steps per iteration; a tail shorter than that takes single steps, which
    // continue the same streams.
    let mut pairs = out.chunks_exact_mut(if WIDE { 2 * STEP } else { usize::MAX });
    for block in &mut pairs {
        step_normals2(&mut rng, scale, &mut z2);
        for (x, v) in block.iter_mut().zip(&z2) {
            op(x, *v);
        }
    }
    for block in pairs.into_remainder().chunks_mut(STEP) {
        step_normals(&mut rng, scale, &mut z);
        for (x, v) in block.iter_mut().zip(&z) {
            op(x, *v);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw")]
fn chunk_apply_avx512<F: Fn(&mut f32, f32)>(
    key: NoiseKey,
    h: u64,
    chunk: u64,
    scale: f32,
    out: &mut [f32],
    op: F,
) {
    chunk_apply_body::<true, _>(key, h, chunk, scale, out, op);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn chunk_apply_avx2<F: Fn(&mut f32, f32)>(
    key: NoiseKey,
    h: u64,
    chunk: u64,
    scale: f32,
    out: &mut [f32],
    op: F,
) {
    chunk_apply_body::<false, _>(key, h, chunk, scale, out, op);
}

/// Which compiled copy of the generator runs: 0 portable (the target's baseline, SSE2 on
/// x86-64), 1 AVX2, 2 AVX-512. The best the CPU supports, or `ZO_NOISE_ISA=portable|avx2`
/// to force a lower one (for benchmarks; every copy gives the same bits).
fn isa() -> u8 {
    static ISA: std::sync::OnceLock<u8> = std::sync::OnceLock::new();
    *ISA.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        let best = if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx512dq")
            && std::arch::is_x86_feature_detected!("avx512bw")
        {
            2
        } else if std::arch::is_x86_feature_detected!("avx2") {
            1
        } else {
            0
        };
        #[cfg(not(target_arch = "x86_64"))]
        let best = 0;
        match std::env::var("ZO_NOISE_ISA").as_deref() {
            Ok("portable") => 0,
            Ok("avx2") => best.min(1),
            _ => best,
        }
    })
}

/// Applies `op(element, scale · z)` to every element of one chunk (`out.len() <= CHUNK`) of
/// the direction, chunk index `chunk`, with the widest SIMD copy the CPU has (same bits).
#[inline(always)]
fn chunk_apply(
    key: NoiseKey,
    h: u64,
    chunk: u64,
    scale: f32,
    out: &mut [f32],
    op: impl Fn(&mut f32, f32),
) {
    match isa() {
        // SAFETY: `isa()` returns 2 only where the CPU has these AVX-512 subsets.
        #[cfg(target_arch = "x86_64")]
        2 => unsafe { chunk_apply_avx512(key, h, chunk, scale, out, op) },
        // SAFETY: `isa()` returns 1 only where the CPU has AVX2.
        #[cfg(target_arch = "x86_64")]
        1 => unsafe { chunk_apply_avx2(key, h, chunk, scale, out, op) },
        _ => chunk_apply_body::<false, _>(key, h, chunk, scale, out, op),
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

    #[test]
    fn pinned_values() {
        // The stream is part of the experiment definition (DESIGN.md, decision 2): changing
        // it changes every run. These values pin it.
        let v = gaussian_vec(NoiseKey(42), "model.layers.0.mlp.up_proj.weight", 20, 1.0);
        let bits: Vec<u32> = v.iter().map(|x| x.to_bits()).collect();
        assert_eq!(bits, PINNED, "values {v:?}");
    }
    /// z[0..20] of key 42, path `model.layers.0.mlp.up_proj.weight`: 1.3596383, −0.5808958,
    /// −0.19446531, −0.5801509, −1.1896594, 0.28537562, 0.3802721, −0.38268963, …
    const PINNED: [u32; 20] = [
        1068370081, 3205805462, 3192332778, 3205792965, 3214427842, 1049763009, 1052947206,
        3200511973, 1072938653, 3181884296, 3221607978, 3209084840, 1059093414, 1061780990,
        3211015114, 3196207268, 1066292739, 1068817719, 1062458408, 1062791636,
    ];

    #[test]
    fn transform_error_bounds() {
        // Every 24-bit input of each polynomial against f64 libm.
        let (mut worst_ln, mut worst_rel) = (0.0f64, 0.0f64);
        for hi in 0..(1u32 << 24) {
            let want = (f64::from(hi + 1) / 16_777_216.0).ln();
            let err = (f64::from(ln_u1(hi)) - want).abs();
            worst_ln = worst_ln.max(err / want.abs().max(1.0));
            if want != 0.0 {
                worst_rel = worst_rel.max(err / want.abs());
            }
        }
        let mut worst_sc = 0.0f64;
        for lo in 0..(1u32 << 24) {
            let t = std::f64::consts::TAU * f64::from(lo) / 16_777_216.0;
            let (s, c) = sin_cos_turn(lo);
            worst_sc = worst_sc
                .max((f64::from(s) - t.sin()).abs())
                .max((f64::from(c) - t.cos()).abs());
        }
        eprintln!(
            "max error: ln {worst_ln:e} (relative above 1, absolute below), ln relative \
             {worst_rel:e}, sin/cos {worst_sc:e} (absolute)"
        );
        // Measured: 8.2e-8, 9.1e-8 (f32 ulp of 1 is 1.2e-7).
        assert!(worst_ln <= 1.0e-7, "ln error {worst_ln:e}");
        assert!(worst_rel <= 1.0e-7, "ln relative error {worst_rel:e}");
        assert!(worst_sc <= 1.0e-7, "sin/cos error {worst_sc:e}");
    }

    #[test]
    fn simd_copies_are_bit_identical_to_portable_code() {
        let h = path_hash("w");
        for c in 0..64u64 {
            let mut portable = vec![0.0f32; CHUNK];
            chunk_apply_body::<false, _>(NoiseKey(5), h, c, 0.75, &mut portable, |x, z| *x = z);
            let mut dispatched = vec![0.0f32; CHUNK];
            chunk_apply(NoiseKey(5), h, c, 0.75, &mut dispatched, |x, z| *x = z);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&portable), bits(&dispatched), "chunk {c}");
            // The two-steps-per-iteration body, in portable code, on a full chunk and on a
            // tail that ends inside a double step.
            for len in [CHUNK, 1000, 17] {
                let mut wide = vec![0.0f32; len];
                chunk_apply_body::<true, _>(NoiseKey(5), h, c, 0.75, &mut wide, |x, z| *x = z);
                assert_eq!(
                    bits(&portable[..len]),
                    bits(&wide),
                    "wide, chunk {c}, {len}"
                );
            }
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx2") {
                    let mut v = vec![0.0f32; CHUNK];
                    // SAFETY: AVX2 is available.
                    unsafe { chunk_apply_avx2(NoiseKey(5), h, c, 0.75, &mut v, |x, z| *x = z) };
                    assert_eq!(bits(&portable), bits(&v), "avx2, chunk {c}");
                }
            }
        }
    }

    #[test]
    fn thread_count_does_not_change_values() {
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let mut v: Vec<f32> = (0..300_001).map(|i| i as f32 * 1e-3).collect();
                add_gaussian(NoiseKey(9), "x.weight", 0, 0.1, &mut v);
                v.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
            })
        };
        assert_eq!(run(1), run(2));
        assert_eq!(run(1), run(3));
    }

    #[test]
    fn distribution_of_1e7_samples() {
        let n = 10_000_000usize;
        let v = gaussian_vec(NoiseKey(2024), "stats.weight", n, 1.0);
        let nf = n as f64;
        let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / nf;
        let m = |k: i32| {
            v.iter()
                .map(|&x| (f64::from(x) - mean).powi(k))
                .sum::<f64>()
                / nf
        };
        let (var, m3, m4) = (m(2), m(3), m(4));
        let skew = m3 / var.powf(1.5);
        let kurt = m4 / (var * var);
        let frac = |f: &dyn Fn(f32) -> bool| v.iter().filter(|&&x| f(x)).count() as f64 / nf;
        let t3 = frac(&|x| x.abs() > 3.0);
        let t4 = frac(&|x| x.abs() > 4.0);
        let below = [-2.0f32, -1.0, 0.0, 0.5, 1.0, 2.0].map(|z| frac(&|x| x < z));
        let max = v.iter().fold(0.0f32, |a, &x| a.max(x.abs()));
        eprintln!(
            "mean {mean:e} var {var} skew {skew:e} kurt {kurt} P(|z|>3) {t3:e} \
             P(|z|>4) {t4:e} CDF {below:?} max |z| {max}"
        );
        // Standard errors at n = 1e7: mean 3.2e-4, var 4.5e-4, skewness 7.7e-4, kurtosis
        // 7.7e-3, P(|z|>3) 1.6e-5, P(|z|>4) 2.5e-6, CDF ≤ 1.6e-4. Bounds ≈ 5 standard errors.
        assert!(mean.abs() < 1.6e-3, "mean {mean}");
        assert!((var - 1.0).abs() < 2.3e-3, "var {var}");
        assert!(skew.abs() < 4e-3, "skewness {skew}");
        assert!((kurt - 3.0).abs() < 4e-2, "kurtosis {kurt}");
        assert!((t3 - 2.699_796e-3).abs() < 8.2e-5, "P(|z|>3) {t3}");
        assert!((t4 - 6.334_248e-5).abs() < 1.3e-5, "P(|z|>4) {t4}");
        let cdf = [
            0.022_750_13,
            0.158_655_25,
            0.5,
            0.691_462_46,
            0.841_344_75,
            0.977_249_87,
        ];
        for (got, want) in below.iter().zip(cdf) {
            assert!((got - want).abs() < 8e-4, "CDF {got} vs {want}");
        }
        assert!(max < 5.8, "max |z| {max}");
        // Neighbours (other lane, same step), the cos/sin partners of one output, and the
        // same lane one step later are uncorrelated.
        for lag in [1usize, 8, 16] {
            let c = v[..n - lag]
                .iter()
                .zip(&v[lag..])
                .map(|(&a, &b)| f64::from(a) * f64::from(b))
                .sum::<f64>()
                / (n - lag) as f64;
            assert!(c.abs() < 1.6e-3, "lag-{lag} correlation {c}");
        }
    }
}
