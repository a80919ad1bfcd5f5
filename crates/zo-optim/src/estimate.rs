//! Gradient estimators: how the projected gradients of one step are obtained. They leave the
//! parameters either restored or with one *pending* perturbation that the update rule undoes in
//! its fused pass, and never hold a direction or gradient buffer (except Forward-Grad, whose
//! reverse-mode gradient is the size of the trained set; see Forward-Grad below).
//!
//! | estimator | projected gradient of direction i | forward passes |
//! |---|---|---|
//! | RGE two-sided (MeZO, Malladi et al. 2023, Alg. 1; SPSA, Spall 1992) | gᵢ = (ℓ(θ+μdᵢ) − ℓ(θ−μdᵢ)) / 2μ | 2q |
//! | RGE one-sided (DeepZero, Chen et al. 2024, Eq. 2; Nesterov & Spokoiny 2017) | gᵢ = (ℓ(θ+μdᵢ) − ℓ(θ)) / μ | q + 1 |
//! | Forward-Grad (Baydin et al. 2022, Eq. 1) | gᵢ = ∇ℓ(θ)·dᵢ (exact) | 1 (+1 backward) |
//! | ZO-RankSGD (Tang et al. 2023, Alg. 1/2) | cᵢ = (#{j: ℓⱼ < ℓᵢ} − #{j: ℓⱼ > ℓᵢ}) / (m(m−1)/2) | m |
//!
//! and the estimate is ĝ = (1/q) Σᵢ gᵢ dᵢ (RankSGD: ĝ = Σᵢ cᵢ dᵢ). Directions dᵢ are Gaussian
//! z ~ N(0, I) over the kept coordinates of the selected set (default), or unit-sphere
//! dᵢ = z/‖z‖ (DeepZero's RGE; ‖z‖ over the whole selected set — per block in block-wise
//! mode — computed in a first pass that regenerates z from its seed). DeepZero normalises per tensor and folds the dimension factor
//! into the learning rate; we normalise over the whole set and do not multiply by d either, so
//! with sphere directions the estimate is E\[ĝ\] ≈ ∇ℓ/d and the learning rate must be d times
//! larger than with Gaussian directions for the same step.
//!
//! CGE lives in [`crate::optim`] with its update (it has no directions).

use crate::noise::NoiseKey;
use crate::optim::{Objective, StepError};
use crate::params::ParamStore;
use crate::pass::{Dir, axpy, dot, norm_sq};
use crate::select::Mask;
use std::collections::BTreeMap;

/// An estimate ĝ = Σᵢ coef[i] dirs[i] and what it measured.
#[derive(Debug, Clone, Default)]
pub(crate) struct Estimate {
    pub dirs: Vec<Dir>,
    pub coef: Vec<f32>,
    pub pending: Option<(usize, f32)>,
    pub loss_plus: Vec<f32>,
    pub loss_minus: Vec<f32>,
    pub projected_grad: Vec<f32>,
    pub loss0: Option<f32>,
    pub forward_passes: u64,
    pub backward_passes: u64,
}

fn dir(store: &ParamStore, ids: &[usize], mask: Option<&Mask>, key: NoiseKey, sphere: bool) -> Dir {
    let scale = if sphere {
        let n = norm_sq(store, ids, mask, key);
        if n > 0.0 {
            (1.0 / n.sqrt()) as f32
        } else {
            0.0
        }
    } else {
        1.0
    };
    Dir { key, scale }
}

fn diverged(step: u64, lp: f32, lm: f32) -> StepError {
    StepError::Diverged {
        step,
        loss_plus: lp,
        loss_minus: lm,
    }
}

/// RGE (two- or one-sided) over `ids` with the directions of `keys`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn rge(
    store: &mut ParamStore,
    ids: &[usize],
    mask: Option<&Mask>,
    keys: &[NoiseKey],
    mu: f32,
    one_sided: bool,
    sphere: bool,
    obj: &mut dyn Objective,
    step: u64,
) -> Result<Estimate, StepError> {
    let q = keys.len();
    let mut e = Estimate::default();
    if one_sided {
        let l0 = obj.loss(store);
        e.forward_passes += 1;
        if !l0.is_finite() {
            return Err(diverged(step, l0, l0));
        }
        e.loss0 = Some(l0);
    }
    for (i, &key) in keys.iter().enumerate() {
        let d = dir(store, ids, mask, key, sphere);
        let last = i + 1 == q;
        axpy(store, ids, mask, d, mu);
        let lp = obj.loss(store);
        let (lm, g, now) = if one_sided {
            let l0 = e.loss0.expect("ℓ(θ)");
            (l0, (lp - l0) / mu, mu)
        } else {
            axpy(store, ids, mask, d, -2.0 * mu);
            let lm = obj.loss(store);
            e.forward_passes += 1;
            (lm, (lp - lm) / (2.0 * mu), -mu)
        };
        e.forward_passes += 1;
        if !(lp.is_finite() && lm.is_finite() && g.is_finite()) {
            axpy(store, ids, mask, d, -now);
            return Err(diverged(step, lp, lm));
        }
        e.loss_plus.push(lp);
        if !one_sided {
            e.loss_minus.push(lm);
        }
        e.projected_grad.push(g);
        e.coef.push(g / q as f32);
        e.dirs.push(d);
        if last {
            e.pending = Some((i, -now));
        } else {
            axpy(store, ids, mask, d, -now);
        }
    }
    Ok(e)
}

/// ZO-RankSGD's rank-based estimate from the ranking of ℓ(θ + μdᵢ), i = 1..m (`m = keys.len()`
/// ≥ 2). Only comparisons of the losses are used. θ itself is not ranked (the paper's estimator
/// compares perturbed points only), so the step costs m forward passes.
#[allow(clippy::too_many_arguments)]
pub(crate) fn rank(
    store: &mut ParamStore,
    ids: &[usize],
    mask: Option<&Mask>,
    keys: &[NoiseKey],
    mu: f32,
    sphere: bool,
    obj: &mut dyn Objective,
    step: u64,
) -> Result<Estimate, StepError> {
    let m = keys.len();
    let mut e = Estimate::default();
    for (i, &key) in keys.iter().enumerate() {
        let d = dir(store, ids, mask, key, sphere);
        axpy(store, ids, mask, d, mu);
        let l = obj.loss(store);
        e.forward_passes += 1;
        if !l.is_finite() {
            axpy(store, ids, mask, d, -mu);
            return Err(diverged(step, l, f32::NAN));
        }
        e.loss_plus.push(l);
        e.dirs.push(d);
        if i + 1 == m {
            e.pending = Some((i, -mu));
        } else {
            axpy(store, ids, mask, d, -mu);
        }
    }
    e.coef = rank_coefficients(&e.loss_plus);
    e.projected_grad = e.coef.clone();
    Ok(e)
}

/// The rank-based coefficients of ZO-RankSGD (Tang et al. 2023, the DAG estimator of its
/// ranking oracle, here with the full ranking, top-k = m): with the ranking of the m
/// points as the comparison graph (every pair (i, j) with ℓᵢ > ℓⱼ is an edge), the estimate
/// ĝ = (1/|E|) Σ_{(i,j): ℓᵢ>ℓⱼ} (dᵢ − dⱼ), |E| = m(m−1)/2, regrouped per direction:
/// cᵢ = (#{j: ℓⱼ < ℓᵢ} − #{j: ℓⱼ > ℓᵢ}) / |E|. Tied pairs contribute nothing.
pub fn rank_coefficients(losses: &[f32]) -> Vec<f32> {
    let m = losses.len();
    let pairs = (m * (m - 1) / 2).max(1) as f32;
    (0..m)
        .map(|i| {
            let less = losses.iter().filter(|&&l| l < losses[i]).count() as f32;
            let greater = losses.iter().filter(|&&l| l > losses[i]).count() as f32;
            (less - greater) / pairs
        })
        .collect()
}

/// Sets the parameters `ids` to autodiff leaves, evaluates `loss_tensor`, back-propagates and
/// returns `(ℓ, ∇ℓ per id)`; the parameters are plain tensors again afterwards.
pub(crate) fn backprop(
    store: &mut ParamStore,
    ids: &[usize],
    obj: &mut dyn Objective,
) -> (f32, BTreeMap<usize, Vec<f32>>) {
    for &id in ids {
        let p = &mut store.params_mut()[id];
        p.tensor = p.tensor.clone().inner().autodiff().require_grad();
    }
    let lt = obj.loss_tensor(store);
    let l = lt.clone().inner().into_scalar::<f32>();
    let grads = lt.backward();
    let mut out = BTreeMap::new();
    for &id in ids {
        let p = &mut store.params_mut()[id];
        let n = p.numel();
        let g = match p.tensor.grad(&grads) {
            Some(g) => g
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .expect("f32 gradient"),
            None => vec![0.0; n],
        };
        p.tensor = p.tensor.clone().inner();
        out.insert(id, g);
    }
    (l, out)
}

/// Forward-Grad: gᵢ = ∇ℓ(θ)·dᵢ, exactly, with ∇ℓ from burn's reverse mode (one forward + one
/// backward; `jvp_method = "reverse"`): burn 0.22 has no forward-mode AD, so the directional
/// derivative is the dot product of the backprop gradient with the regenerated direction. This
/// holds the gradient of the selected set for the step (4 bytes × selected scalars), as the
/// JVP of ZO-Bench holds its stored tangents.
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward_grad(
    store: &mut ParamStore,
    ids: &[usize],
    mask: Option<&Mask>,
    keys: &[NoiseKey],
    sphere: bool,
    obj: &mut dyn Objective,
    step: u64,
) -> Result<Estimate, StepError> {
    let q = keys.len();
    let (l, grads) = backprop(store, ids, obj);
    let mut e = Estimate {
        forward_passes: 1,
        backward_passes: 1,
        loss0: Some(l),
        ..Default::default()
    };
    if !l.is_finite() {
        return Err(diverged(step, l, l));
    }
    for &key in keys {
        let d = dir(store, ids, mask, key, sphere);
        let g = dot(store, ids, mask, d, &grads) as f32;
        if !g.is_finite() {
            return Err(diverged(step, l, l));
        }
        e.projected_grad.push(g);
        e.coef.push(g / q as f32);
        e.dirs.push(d);
    }
    Ok(e)
}
