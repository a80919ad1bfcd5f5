//! ZO-SGD / FO-SGD: plain stochastic gradient descent.
//!
//! Update (MeZO, Malladi et al. 2023, Algorithm 1, lines "θ ← θ − η(g z + λθ)"; Robbins &
//! Monro 1951): for every kept coordinate,
//!
//! ```text
//! θ ← θ − η (ĝ + λ θ),      ĝ = Σᵢ cᵢ dᵢ  (ZO estimate)   or   ĝ = ∇ℓ(θ; B)  (first order)
//! ```
//!
//! with λ only on decayed parameters. ZO form: one pass over memory that first undoes the
//! pending perturbation (θ ← θ + s d_k) and then applies the update, regenerating the q
//! directions chunk by chunk (no gradient buffer). State: none (0 bytes).

use super::{ZoUpdate, ghat};
use crate::params::ParamStore;
use crate::pass::{axpy, pass};

/// Applies `θ ← θ − η (ĝ + λθ)` fused with the restore of `u.pending`.
pub fn apply(store: &mut ParamStore, u: &ZoUpdate, lr: f32, wd: f32) {
    let (pk, ps) = u.pend();
    let coef = u.coef;
    if coef.len() == 1 && wd == 0.0 {
        // One direction, no decay: restore and update are one axpy, θ ← θ + (s − η c) d.
        let s = if pk == 0 { ps } else { 0.0 };
        axpy(store, u.ids, u.mask, u.dirs[0], s - lr * coef[0]);
        return;
    }
    pass(store, u.ids, u.mask, u.dirs, None, |x, z, _, decay| {
        if pk < z.len() {
            *x += ps * z[pk];
        }
        let mut g = ghat(coef, z);
        if decay && wd != 0.0 {
            g += wd * *x;
        }
        *x -= lr * g;
    });
}

/// First-order element update: `x ← x − η (g + λx)`.
#[inline(always)]
pub fn fo_elem(x: &mut f32, g: f32, lr: f32, wd: f32, decay: bool) {
    let g = if decay && wd != 0.0 { g + wd * *x } else { g };
    *x -= lr * g;
}
