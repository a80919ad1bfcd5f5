//! The ZO-SGD step of [`crate::optim`] cut into per-block pieces, for runtimes that visit the
//! model one block at a time (the ZO2-style offload runtime in `zo-offload`).
//!
//! The in-memory `zo-sgd` step (Gaussian directions, two-sided RGE, q = 1, MeZO Algorithm 1)
//! does three element-wise passes over the trainable set S with the direction z of key
//! `NoiseKey::for_step(run_seed, step, 0)`:
//!
//! ```text
//! θ ← θ + μ z            (perturb)            ℓ₊ = ℓ(θ)
//! θ ← θ − 2μ z           (perturb)            ℓ₋ = ℓ(θ),  g = (ℓ₊ − ℓ₋) / (2μ)
//! θ ← θ + (μ − η g) z    (restore + update, fused; with λ > 0: restore, then θ ← θ − η(g z + λθ))
//! ```
//!
//! Every pass is element-wise, so running it on any partition of S (block by block, in any
//! order, at any later time) gives bit-identical parameters. The functions here are those
//! passes restricted to a list of parameter ids; they call the same code as the in-memory
//! optimizer, so a runtime that applies them to every block gets exactly its result.

use crate::noise::NoiseKey;
use crate::optim::StepCtx;
use crate::params::ParamStore;
use crate::pass::{Dir, axpy};
use crate::rules::{ZoUpdate, sgd};

/// The direction key of step `ctx` (query 0 of the only block), as the in-memory optimizer
/// derives it.
pub fn step_key(ctx: StepCtx) -> NoiseKey {
    NoiseKey::for_step(ctx.run_seed, ctx.step, 0)
}

/// `θ ← θ + coef · z(key)` on the parameters `ids` (all their elements), in place.
pub fn perturb_ids(store: &mut ParamStore, ids: &[usize], key: NoiseKey, coef: f32) {
    axpy(store, ids, None, Dir { key, scale: 1.0 }, coef);
}

/// The fused restore + update of a two-sided ZO-SGD step on the parameters `ids`, which hold
/// `θ − μ z(key)`: `θ ← θ + μ z − η (g z + λ θ)` (λ only on decayed parameters), as
/// [`crate::rules::sgd::apply`] computes it.
pub fn sgd_restore_update(
    store: &mut ParamStore,
    ids: &[usize],
    key: NoiseKey,
    mu: f32,
    g: f32,
    lr: f32,
    weight_decay: f32,
) {
    let dirs = [Dir { key, scale: 1.0 }];
    let coef = [g];
    let u = ZoUpdate {
        ids,
        mask: None,
        dirs: &dirs,
        coef: &coef,
        pending: Some((0, mu)),
    };
    sgd::apply(store, &u, lr, weight_decay);
}
