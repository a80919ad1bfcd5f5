//! Parameter selection over a scheme's trainable set: sparse masks, block schedules, hybrid
//! ZO/FO splits (`DESIGN.md`, key decision 5). All three are data consumed by the optimizers in
//! [`crate::optim`], not separate code paths.
//!
//! ## Sparse masks
//!
//! A mask keeps ("masks in") a subset of the coordinates of the ZO-trained parameters: only
//! those are perturbed and updated (masked-out coordinates, and their optimizer state, do not
//! change). It is stored as one bitset per parameter (`numel / 8` bytes; counted in
//! [`crate::Optimizer::state_bytes`]) and resampled every `resample_every` steps.
//!
//! * **Exact fraction** (default): exactly `round(sparsity · n)` coordinates are dropped, with
//!   `n` the parameter's size (`group = layer`) or the size of the whole ZO set
//!   (`group = global`).
//!   - `random`: the dropped set is a uniformly random subset of that size, drawn by
//!     sequential selection sampling (Knuth, TAOCP vol. 2, Algorithm 3.4.2 S: element `i` is
//!     dropped with probability `(k − dropped) / (n − i)`), one pass, O(1) memory, from a
//!     xoshiro256++ stream seeded by `(run_seed, resample epoch)`;
//!   - `magnitude`: the dropped coordinates are the `k` of **largest** |θ| (the kept ones are
//!     the small-magnitude weights, as Sparse-MeZO, Liu et al. 2024, perturbs); ties are broken
//!     by position (store order, then index), so the count is exact. The threshold is found by
//!     a two-pass radix select on the bits of |θ| (two 65 536-bin histograms), no copy of θ.
//! * **ZO-Bench parity** (`zo_bench_parity = true`): ZO-Bench's `fast_random_mask_like` drops a
//!   coordinate when a standard-normal sample is `< r` (here `r = sparsity`), so the dropped
//!   fraction is Φ(r) in expectation, not r (r = 0.5 drops ≈ 69 %; r = 0 drops 50 %), and it is
//!   not exact. With `group = global`, ZO-Bench first takes τ = the r-quantile of |θ| over the
//!   whole set and uses, per tensor, `r_p = frac(|θ_p| ≤ τ)` in the same rule; the positions
//!   are still random. The normals come from our counter-based generator ([`crate::noise`])
//!   under a mask key, not from torch's.
//!
//! ## Blocks
//!
//! A block schedule is a list of blocks of parameter names; block-wise ZO perturbs and updates
//! one block at a time, each with its own directions ([`group_blocks`] builds the usual
//! embeddings / layer N / head grouping from HF names).
//!
//! ## Hybrid
//!
//! A hybrid split names, by glob patterns over parameter paths (`*` matches any run of
//! characters), the trainable parameters trained first-order; the rest are trained zeroth-order.

use crate::noise::{CHUNK, NoiseKey, fill_chunk, path_hash, splitmix64};
use crate::params::ParamStore;
use rand_xoshiro::Xoshiro256PlusPlus;
use rand_xoshiro::rand_core::{RngCore, SeedableRng};
use std::collections::BTreeMap;

/// A mask read from a state file: (total coordinates, bitsets by parameter name).
pub(crate) type NamedMask = (u64, Vec<(String, Vec<u64>)>);

/// How sparse-mask coordinates are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SparseMode {
    /// Uniformly random positions.
    Random,
    /// Drop the largest-|θ| coordinates (keep the small-magnitude ones).
    Magnitude,
}

/// Over which set the sparsity fraction is exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SparseGroup {
    /// Per parameter tensor ("layer").
    Layer,
    /// Over the whole ZO-trained set.
    Global,
}

/// A sparse-mask specification.
#[derive(Debug, Clone, PartialEq)]
pub struct MaskSpec {
    /// Dropped fraction in [0, 1) (in parity mode: ZO-Bench's threshold r).
    pub sparsity: f64,
    /// Random or magnitude positions.
    pub mode: SparseMode,
    /// Exact per layer or globally.
    pub group: SparseGroup,
    /// Resample every this many steps (≥ 1).
    pub resample_every: u64,
    /// ZO-Bench's `N(0,1) < r` rule instead of an exact fraction.
    pub zo_bench_parity: bool,
}

/// A sampled mask: one bitset per parameter id (bit `j` set = coordinate `j` kept). A
/// parameter with no kept coordinate has no entry.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mask {
    bits: BTreeMap<usize, Vec<u64>>,
    names: BTreeMap<usize, String>,
    kept: u64,
    total: u64,
}

impl Mask {
    /// The bitset of parameter `id` (`ceil(numel/64)` words), `None` if nothing is kept there.
    pub fn bits(&self, id: usize) -> Option<&[u64]> {
        self.bits.get(&id).map(|v| v.as_slice())
    }

    /// Whether coordinate `j` of parameter `id` is kept.
    pub fn keeps(&self, id: usize, j: usize) -> bool {
        self.bits(id)
            .is_some_and(|m| (m[j >> 6] >> (j & 63)) & 1 == 1)
    }

    /// Number of kept coordinates.
    pub fn kept(&self) -> u64 {
        self.kept
    }

    /// Number of coordinates the mask ranges over.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Fraction of coordinates dropped.
    pub fn dropped_fraction(&self) -> f64 {
        1.0 - self.kept as f64 / self.total.max(1) as f64
    }

    /// Bytes held by the bitsets.
    pub fn bytes(&self) -> u64 {
        self.bits.values().map(|v| v.len() as u64 * 8).sum()
    }

    fn from_keep(
        store: &ParamStore,
        ids: &[usize],
        mut keep: impl FnMut(usize, usize) -> bool,
    ) -> Mask {
        let mut m = Mask::default();
        for &id in ids {
            let n = store.param(id).numel();
            let mut words = vec![0u64; n.div_ceil(64)];
            let mut k = 0u64;
            for j in 0..n {
                if keep(id, j) {
                    words[j >> 6] |= 1 << (j & 63);
                    k += 1;
                }
            }
            m.total += n as u64;
            m.kept += k;
            if k > 0 {
                m.bits.insert(id, words);
                m.names.insert(id, store.param(id).name.clone());
            }
        }
        m
    }

    /// Serialises the mask (ids as parameter names, so a store with another order still works).
    pub(crate) fn write(&self, w: &mut dyn std::io::Write) -> std::io::Result<()> {
        crate::io::write_u64(w, self.total)?;
        crate::io::write_u64(w, self.bits.len() as u64)?;
        for (id, words) in &self.bits {
            crate::io::write_str(w, &self.names[id])?;
            crate::io::write_u64(w, words.len() as u64)?;
            for x in words {
                crate::io::write_u64(w, *x)?;
            }
        }
        Ok(())
    }

    /// Reads a mask written by [`Mask::write`]; names are resolved later against a store.
    pub(crate) fn read_named(r: &mut dyn std::io::Read) -> std::io::Result<NamedMask> {
        let total = crate::io::read_u64(r)?;
        let n = crate::io::read_u64(r)? as usize;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let name = crate::io::read_str(r)?;
            let len = crate::io::read_u64(r)? as usize;
            let mut words = Vec::with_capacity(len);
            for _ in 0..len {
                words.push(crate::io::read_u64(r)?);
            }
            out.push((name, words));
        }
        Ok((total, out))
    }

    /// Rebuilds a mask from named bitsets against `store`.
    pub(crate) fn from_named(
        store: &ParamStore,
        total: u64,
        named: Vec<(String, Vec<u64>)>,
    ) -> std::io::Result<Mask> {
        let mut m = Mask {
            total,
            ..Default::default()
        };
        for (name, words) in named {
            let id = store
                .id(&name)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
            m.kept += words.iter().map(|w| u64::from(w.count_ones())).sum::<u64>();
            m.bits.insert(id, words);
            m.names.insert(id, name);
        }
        Ok(m)
    }
}

/// `|θ|` as an order-preserving u32 key (sign bit cleared; NaN sorts above +∞).
#[inline]
fn mag_key(x: f32) -> u32 {
    x.to_bits() & 0x7FFF_FFFF
}

/// Radix select over the magnitudes of `ids`: returns `(τ, less)` where τ is the key of the
/// `k`-th smallest magnitude (1-based, `1 ≤ k ≤ n`) and `less` the number of keys `< τ`.
fn kth_smallest_key(vals: &[&[f32]], k: u64) -> (u32, u64) {
    let mut hist = vec![0u64; 1 << 16];
    for v in vals {
        for x in v.iter() {
            hist[(mag_key(*x) >> 16) as usize] += 1;
        }
    }
    let mut acc = 0u64;
    let mut hi = 0usize;
    for (b, c) in hist.iter().enumerate() {
        if acc + c >= k {
            hi = b;
            break;
        }
        acc += c;
    }
    let below_hi = acc;
    hist.iter_mut().for_each(|c| *c = 0);
    for v in vals {
        for x in v.iter() {
            let key = mag_key(*x);
            if (key >> 16) as usize == hi {
                hist[(key & 0xFFFF) as usize] += 1;
            }
        }
    }
    let mut acc2 = below_hi;
    for (b, c) in hist.iter().enumerate() {
        if acc2 + c >= k {
            return (((hi as u32) << 16) | b as u32, acc2);
        }
        acc2 += c;
    }
    unreachable!("k within range")
}

fn mask_seed(run_seed: u64, epoch: u64) -> u64 {
    let mut s =
        run_seed ^ 0x005E_ED0F_A5C5_u64.rotate_left(29) ^ epoch.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    splitmix64(&mut s)
}

/// The number of dropped coordinates for a fraction `s` of `n`: `round(s · n)`.
pub fn exact_drop_count(sparsity: f64, n: u64) -> u64 {
    ((sparsity * n as f64).round() as u64).min(n)
}

/// Samples the mask of `spec` over the parameters `ids` of `store`, for resample epoch
/// `epoch = step / resample_every` of run `run_seed`. Magnitude masks read the current values.
pub fn sample_mask(
    store: &ParamStore,
    ids: &[usize],
    spec: &MaskSpec,
    run_seed: u64,
    epoch: u64,
) -> Mask {
    let seed = mask_seed(run_seed, epoch);
    let values: BTreeMap<usize, Vec<f32>> = if spec.mode == SparseMode::Magnitude
        || (spec.zo_bench_parity && spec.group == SparseGroup::Global)
    {
        ids.iter().map(|&id| (id, store.values(id))).collect()
    } else {
        BTreeMap::new()
    };
    if spec.zo_bench_parity {
        // Per-parameter threshold r_p (layer: r; global: frac(|θ_p| ≤ τ) with τ the r-quantile).
        let mut r_p: BTreeMap<usize, f32> =
            ids.iter().map(|&id| (id, spec.sparsity as f32)).collect();
        if spec.group == SparseGroup::Global {
            let all: Vec<&[f32]> = ids.iter().map(|id| values[id].as_slice()).collect();
            let n: u64 = all.iter().map(|v| v.len() as u64).sum();
            let k = ((spec.sparsity * n as f64).round() as u64).clamp(1, n.max(1));
            let (tau, _) = kth_smallest_key(&all, k);
            for &id in ids {
                let v = &values[&id];
                let le = v.iter().filter(|x| mag_key(**x) <= tau).count();
                r_p.insert(id, le as f32 / v.len().max(1) as f32);
            }
        }
        let key = NoiseKey(seed);
        let mut cur: Option<(usize, usize, Vec<f32>)> = None; // (id, chunk, normals)
        return Mask::from_keep(store, ids, |id, j| {
            let c = j / CHUNK;
            if cur.as_ref().is_none_or(|(i, cc, _)| *i != id || *cc != c) {
                let n = store.param(id).numel();
                let len = CHUNK.min(n - c * CHUNK);
                let mut z = vec![0.0f32; len];
                fill_chunk(key, path_hash(&store.param(id).name), c as u64, 1.0, &mut z);
                cur = Some((id, c, z));
            }
            let z = &cur.as_ref().expect("chunk").2;
            // ZO-Bench: mask = N(0,1) < r; masked entries are zeroed (dropped).
            z[j % CHUNK] >= r_p[&id]
        });
    }
    match (spec.mode, spec.group) {
        (SparseMode::Random, group) => {
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
            // Selection sampling over one sequence (global) or per parameter (layer).
            let total: u64 = ids.iter().map(|&id| store.param(id).numel() as u64).sum();
            let mut left_n = total;
            let mut left_k = exact_drop_count(spec.sparsity, total);
            let mut cur_id = usize::MAX;
            Mask::from_keep(store, ids, |id, _j| {
                if group == SparseGroup::Layer && id != cur_id {
                    cur_id = id;
                    left_n = store.param(id).numel() as u64;
                    left_k = exact_drop_count(spec.sparsity, left_n);
                }
                // Drop with probability left_k / left_n (53-bit uniform).
                let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
                let drop = (u * left_n as f64) < left_k as f64;
                left_n -= 1;
                if drop {
                    left_k -= 1;
                }
                !drop
            })
        }
        (SparseMode::Magnitude, group) => {
            // Keep the K = n − k smallest magnitudes; ties at τ kept in position order.
            let groups: Vec<Vec<usize>> = match group {
                SparseGroup::Layer => ids.iter().map(|&id| vec![id]).collect(),
                SparseGroup::Global => vec![ids.to_vec()],
            };
            let mut rule: BTreeMap<usize, (u32, u64)> = BTreeMap::new(); // id -> (τ, group slot)
            let mut budget: Vec<u64> = Vec::new(); // ties at τ still to keep, per group
            for (gi, g) in groups.iter().enumerate() {
                let vals: Vec<&[f32]> = g.iter().map(|id| values[id].as_slice()).collect();
                let n: u64 = vals.iter().map(|v| v.len() as u64).sum();
                let keep = n - exact_drop_count(spec.sparsity, n);
                if keep == 0 {
                    for &id in g {
                        rule.insert(id, (0, gi as u64));
                    }
                    budget.push(0);
                    // τ = 0 with zero budget and "< τ" keeps nothing.
                    continue;
                }
                let (tau, less) = kth_smallest_key(&vals, keep);
                for &id in g {
                    rule.insert(id, (tau, gi as u64));
                }
                budget.push(keep - less);
            }
            Mask::from_keep(store, ids, |id, j| {
                let (tau, gi) = rule[&id];
                let key = mag_key(values[&id][j]);
                if key < tau {
                    true
                } else if key == tau && budget[gi as usize] > 0 {
                    budget[gi as usize] -= 1;
                    true
                } else {
                    false
                }
            })
        }
    }
}

/// Whether `name` matches the glob `pat` (`*` = any run of characters, including dots).
pub fn glob_match(pat: &str, name: &str) -> bool {
    let (p, n) = (pat.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0usize, 0usize);
    let (mut star, mut mark) = (None::<usize>, 0usize);
    while ni < n.len() {
        if pi < p.len() && p[pi] != b'*' && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

/// The layer index of an HF parameter path: the number after a `layers.`, `layer.` or `h.`
/// component (`model.layers.3.mlp.up_proj.weight` → 3, `encoder.layer.11.output.dense.bias` →
/// 11, `transformer.h.0.attn.c_attn.weight` → 0), or `None`.
pub fn layer_index(name: &str) -> Option<usize> {
    let parts: Vec<&str> = name.split('.').collect();
    parts.windows(2).find_map(|w| {
        if matches!(w[0], "layers" | "layer" | "h") {
            w[1].parse().ok()
        } else {
            None
        }
    })
}

/// Groups parameter names into blocks by transformer layer, keeping the given order:
/// `embeddings` (every non-layer parameter listed before the first layer parameter),
/// `layer.N` for each layer index N (ascending), and `head` (every non-layer parameter after
/// the first layer parameter: final norm, pooler, classifier / LM head). Empty blocks are left
/// out. Returns `(block name, parameter names)` pairs.
pub fn group_blocks<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<(String, Vec<String>)> {
    let mut pre = Vec::new();
    let mut post = Vec::new();
    let mut layers: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    let mut seen_layer = false;
    for n in names {
        match layer_index(n) {
            Some(i) => {
                seen_layer = true;
                layers.entry(i).or_default().push(n.to_string());
            }
            None if !seen_layer => pre.push(n.to_string()),
            None => post.push(n.to_string()),
        }
    }
    let mut out = Vec::new();
    if !pre.is_empty() {
        out.push(("embeddings".to_string(), pre));
    }
    for (i, v) in layers {
        out.push((format!("layer.{i}"), v));
    }
    if !post.is_empty() {
        out.push(("head".to_string(), post));
    }
    out
}
