//! Update rules: how an estimate ĝ = Σᵢ cᵢ dᵢ (directions dᵢ regenerated from seeds, see
//! [`crate::pass`]) or an exact gradient changes the parameters. One file per rule, with its
//! exact update and source next to the code.
//!
//! Conventions shared by every rule: η = `lr`, λ = `weight_decay` (applied only to parameters
//! whose [`crate::Param::decay`] flag is set: not biases, not norms), masked-out coordinates
//! of a sparse mask are left unchanged together with their state. A rule receives the
//! estimator's *pending* perturbation `(k, s)` (θ currently equals θ₀ + s·d_k) and undoes it in
//! the same pass as its update (the fused restore + update of MeZO).

pub mod adam;
pub mod cons;
pub mod mmt;
pub mod sgd;
pub mod sign;

use crate::pass::Dir;
use crate::select::Mask;

/// What a ZO update rule is handed for one (block of the) selected set.
#[derive(Debug, Clone, Copy)]
pub struct ZoUpdate<'a> {
    /// Parameter ids being updated.
    pub ids: &'a [usize],
    /// Sparse mask (only kept coordinates change), if any.
    pub mask: Option<&'a Mask>,
    /// The estimate's directions.
    pub dirs: &'a [Dir],
    /// Coefficients: ĝ = Σᵢ `coef[i]` · `dirs[i]` (the 1/q average is already in them).
    pub coef: &'a [f32],
    /// θ currently equals θ₀ + s·d_k; the rule undoes it (fused) before its update.
    pub pending: Option<(usize, f32)>,
}

impl ZoUpdate<'_> {
    /// `(k, s)` of the pending perturbation, `(usize::MAX, 0)` when none.
    pub(crate) fn pend(&self) -> (usize, f32) {
        self.pending.unwrap_or((usize::MAX, 0.0))
    }
}

/// ĝ at one element: Σᵢ cᵢ zᵢ.
#[inline(always)]
pub(crate) fn ghat(coef: &[f32], z: &[f32]) -> f32 {
    let mut g = 0.0f32;
    for (c, v) in coef.iter().zip(z) {
        g += c * v;
    }
    g
}

/// The sign with sign(0) = 0 (unlike `f32::signum`).
#[inline(always)]
pub fn sgn(x: f32) -> f32 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}
