//! Fused passes over the selected parameters with regenerated directions.
//!
//! A *pass* walks the selected parameters chunk by chunk ([`CHUNK`] elements), regenerates the
//! `q` directions of the chunk into `q` small chunk buffers (`q × CHUNK` floats per worker, never
//! a parameter-sized buffer), and calls one element function per masked-in element with the
//! element, its `q` direction values and its optimizer-state values (momentum, Adam moments).
//! So a rule that needs ĝ = Σᵢ cᵢ zᵢ elementwise (sign of the estimate, Adam) gets it in one
//! pass over memory, and a rule can fuse the restore of the last perturbation with its update.
//!
//! Tensors are taken out of the store and put back without a copy on host backends (the same
//! mechanism as [`crate::zo::perturb`]); chunks run in parallel on the rayon pool and the
//! result does not depend on the thread count.

use crate::noise::{CHUNK, NoiseKey, apply_chunk, fill_chunk, path_hash};
use crate::params::ParamStore;
use crate::select::Mask;
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;
use std::collections::BTreeMap;

/// One direction: `scale · z(key)` restricted to the masked-in coordinates. `scale` is 1 for
/// Gaussian directions and `1/‖z‖` (norm over the masked-in selected set) for unit-sphere ones.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dir {
    /// Seed of the Gaussian vector.
    pub key: NoiseKey,
    /// Multiplier applied to every element.
    pub scale: f32,
}

/// Optimizer state of one rule: per parameter name, `k` buffers of `numel` floats.
pub type StateMap = BTreeMap<String, Vec<Vec<f32>>>;

/// Takes the values of parameter `id` out of the store (no copy on host backends when the
/// buffer is not shared), as a plain f32 TensorData.
pub(crate) fn take(store: &mut ParamStore, id: usize) -> TensorData {
    let p = &mut store.params_mut()[id];
    p.tensor.extract().inner().into_data().convert::<f32>()
}

/// Puts values back into parameter `id` (plain tensor, no autodiff).
pub(crate) fn put(store: &mut ParamStore, id: usize, data: TensorData) {
    let device = store.device().clone();
    store.params_mut()[id].tensor = Tensor::<1>::from_data(data, &device);
}

#[cfg(test)]
thread_local! {
    /// Number of [`pass`] calls (sweeps over the selected parameters) on this thread.
    pub(crate) static PASSES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

#[inline]
fn bit(m: &[u64], i: usize) -> bool {
    (m[i >> 6] >> (i & 63)) & 1 == 1
}

/// Runs `op(x, z, s, decay)` on every masked-in element of the parameters `ids`, where `z`
/// holds the `dirs.len()` direction values of that element (already multiplied by each
/// direction's scale), `s` the element's values of the `state` buffers of that parameter (`k`
/// of them; empty when `state` is `None`), and `decay` the parameter's weight-decay flag.
///
/// State buffers are created (zeros, `k` per parameter) on first use.
pub(crate) fn pass<F>(
    store: &mut ParamStore,
    ids: &[usize],
    mask: Option<&Mask>,
    dirs: &[Dir],
    mut state: Option<(&mut StateMap, usize)>,
    op: F,
) where
    F: Fn(&mut f32, &[f32], &mut [f32], bool) + Sync,
{
    #[cfg(test)]
    PASSES.with(|c| c.set(c.get() + 1));
    for &id in ids {
        let (name, decay, n) = {
            let p = store.param(id);
            (p.name.clone(), p.decay, p.numel())
        };
        let pmask: Option<&[u64]> = mask.and_then(|m| m.bits(id));
        if mask.is_some() && pmask.is_none() {
            continue; // no coordinate of this parameter is selected
        }
        let mut data = take(store, id);
        let xs = data.as_mut_slice::<f32>().expect("f32 parameter");
        let h = path_hash(&name);
        let mut bufs: Vec<&mut [f32]> = Vec::new();
        if let Some((map, k)) = state.as_mut() {
            let entry = map
                .entry(name.clone())
                .or_insert_with(|| vec![vec![0.0f32; n]; *k]);
            bufs = entry.iter_mut().map(|b| b.as_mut_slice()).collect();
        }
        let nchunks = n.div_ceil(CHUNK);
        let mut per_chunk: Vec<Vec<&mut [f32]>> = (0..nchunks).map(|_| Vec::new()).collect();
        for b in bufs {
            for (c, sl) in b.chunks_mut(CHUNK).enumerate() {
                per_chunk[c].push(sl);
            }
        }
        let nd = dirs.len();
        xs.par_chunks_mut(CHUNK)
            .zip(per_chunk.into_par_iter())
            .enumerate()
            .for_each(|(c, (xc, mut sc))| {
                let len = xc.len();
                // Fast paths (one direction, no mask): the generator feeds the element function
                // directly, as `perturb` does, with no direction buffer and no gather.
                if nd == 1 && pmask.is_none() {
                    let d = dirs[0];
                    match sc.as_mut_slice() {
                        [] => {
                            apply_chunk(d.key, h, c as u64, d.scale, xc, |x, z| {
                                op(x, std::slice::from_ref(&z), &mut [], decay)
                            });
                            return;
                        }
                        [s0] => {
                            let mut zs = vec![0.0f32; len];
                            fill_chunk(d.key, h, c as u64, d.scale, &mut zs);
                            for ((x, z), a) in xc.iter_mut().zip(&zs).zip(s0.iter_mut()) {
                                let mut s = [*a];
                                op(x, std::slice::from_ref(z), &mut s, decay);
                                *a = s[0];
                            }
                            return;
                        }
                        [s0, s1] => {
                            let mut zs = vec![0.0f32; len];
                            fill_chunk(d.key, h, c as u64, d.scale, &mut zs);
                            for (((x, z), a), b) in
                                xc.iter_mut().zip(&zs).zip(s0.iter_mut()).zip(s1.iter_mut())
                            {
                                let mut s = [*a, *b];
                                op(x, std::slice::from_ref(z), &mut s, decay);
                                *a = s[0];
                                *b = s[1];
                            }
                            return;
                        }
                        _ => {}
                    }
                }
                if nd == 1
                    && sc.is_empty()
                    && let Some(m) = pmask
                {
                    let d = dirs[0];
                    let mut zs = vec![0.0f32; len];
                    fill_chunk(d.key, h, c as u64, d.scale, &mut zs);
                    let w0 = c * CHUNK / 64;
                    for (wi, (xw, zw)) in xc.chunks_mut(64).zip(zs.chunks(64)).enumerate() {
                        let mut word = m[w0 + wi];
                        while word != 0 {
                            let b = word.trailing_zeros() as usize;
                            word &= word - 1;
                            op(&mut xw[b], std::slice::from_ref(&zw[b]), &mut [], decay);
                        }
                    }
                    return;
                }
                let mut zs = vec![0.0f32; nd * len];
                for (i, d) in dirs.iter().enumerate() {
                    fill_chunk(d.key, h, c as u64, d.scale, &mut zs[i * len..(i + 1) * len]);
                }
                let k = sc.len();
                let mut zj = vec![0.0f32; nd];
                let mut sj = vec![0.0f32; k];
                let off = c * CHUNK;
                for j in 0..len {
                    if let Some(m) = pmask
                        && !bit(m, off + j)
                    {
                        continue;
                    }
                    for i in 0..nd {
                        zj[i] = zs[i * len + j];
                    }
                    for b in 0..k {
                        sj[b] = sc[b][j];
                    }
                    op(&mut xc[j], &zj, &mut sj, decay);
                    for b in 0..k {
                        sc[b][j] = sj[b];
                    }
                }
            });
        put(store, id, data);
    }
}

/// Adds `coef · d` to the masked-in selected coordinates (a perturbation or its undo).
pub(crate) fn axpy(store: &mut ParamStore, ids: &[usize], mask: Option<&Mask>, d: Dir, coef: f32) {
    pass(store, ids, mask, &[d], None, |x, z, _, _| *x += coef * z[0]);
}

/// Σ z² of direction `key` over the masked-in selected coordinates (f64), computed by
/// regenerating z chunk by chunk: the first pass of unit-sphere normalisation, no buffer.
pub(crate) fn norm_sq(
    store: &ParamStore,
    ids: &[usize],
    mask: Option<&Mask>,
    key: NoiseKey,
) -> f64 {
    let mut total = 0.0f64;
    for &id in ids {
        let p = store.param(id);
        let pmask = mask.and_then(|m| m.bits(id));
        if mask.is_some() && pmask.is_none() {
            continue;
        }
        let n = p.numel();
        let h = path_hash(&p.name);
        total += (0..n.div_ceil(CHUNK))
            .into_par_iter()
            .map(|c| {
                let len = CHUNK.min(n - c * CHUNK);
                let mut z = vec![0.0f32; len];
                fill_chunk(key, h, c as u64, 1.0, &mut z);
                let mut s = 0.0f64;
                for (j, v) in z.iter().enumerate() {
                    if pmask.is_none_or(|m| bit(m, c * CHUNK + j)) {
                        s += f64::from(*v) * f64::from(*v);
                    }
                }
                s
            })
            .sum::<f64>();
    }
    total
}

/// Σ_j g_j · d_j over the masked-in selected coordinates, for an external per-parameter vector
/// `g` (e.g. a reverse-mode gradient), keyed by parameter id.
pub(crate) fn dot(
    store: &ParamStore,
    ids: &[usize],
    mask: Option<&Mask>,
    d: Dir,
    g: &BTreeMap<usize, Vec<f32>>,
) -> f64 {
    let mut total = 0.0f64;
    for &id in ids {
        let p = store.param(id);
        let pmask = mask.and_then(|m| m.bits(id));
        if mask.is_some() && pmask.is_none() {
            continue;
        }
        let Some(gv) = g.get(&id) else { continue };
        let n = p.numel();
        let h = path_hash(&p.name);
        total += (0..n.div_ceil(CHUNK))
            .into_par_iter()
            .map(|c| {
                let len = CHUNK.min(n - c * CHUNK);
                let mut z = vec![0.0f32; len];
                fill_chunk(d.key, h, c as u64, d.scale, &mut z);
                let mut s = 0.0f64;
                for (j, v) in z.iter().enumerate() {
                    let i = c * CHUNK + j;
                    if pmask.is_none_or(|m| bit(m, i)) {
                        s += f64::from(*v) * f64::from(gv[i]);
                    }
                }
                s
            })
            .sum::<f64>();
    }
    total
}

#[cfg(test)]
mod tests {
    use super::PASSES;
    use crate::{HParams, ParamStore, StepCtx, ZoObjective, build};
    use burn::tensor::Device;

    #[test]
    fn q1_zo_sgd_step_is_three_passes() {
        let mut s = ParamStore::new(Device::flex());
        s.insert("a.weight", &[5000], vec![0.5; 5000]).unwrap();
        s.insert("a.bias", &[7], vec![0.0; 7]).unwrap();
        for wd in [0.0, 0.1] {
            let hp = HParams {
                lr: Some(1e-3),
                mu: Some(1e-3),
                weight_decay: Some(wd),
                ..Default::default()
            };
            let mut opt = build("zo-sgd", &hp).unwrap();
            let mut obj = ZoObjective(|s: &ParamStore| s.values(0)[0]);
            let before = PASSES.with(|c| c.get());
            opt.step(
                &mut s,
                StepCtx {
                    run_seed: 1,
                    step: 1,
                },
                &mut obj,
            )
            .unwrap();
            // θ+μz, θ−2μz, fused restore + update (+ decay): no norm, mask or copy pass.
            assert_eq!(PASSES.with(|c| c.get()) - before, 3, "weight decay {wd}");
        }
    }
}
