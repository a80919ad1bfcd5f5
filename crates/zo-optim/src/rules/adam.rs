//! Adam and AdamW, on a ZO estimate (ZO-Adam) or on a backprop gradient (FO-Adam, FO-AdamW).
//!
//! Adam (Kingma & Ba 2015, Algorithm 1), with L2 weight decay added to the gradient as
//! torch.optim.Adam's `weight_decay` does (ZO-Adam, FO-Adam):
//!
//! ```text
//! t ← t + 1
//! u ← ĝ + λ θ                              (λ only on decayed parameters)
//! m ← β₁ m + (1 − β₁) u
//! v ← β₂ v + (1 − β₂) u²
//! m̂ = m / (1 − β₁ᵗ),   v̂ = v / (1 − β₂ᵗ)
//! θ ← θ − η m̂ / (√v̂ + ε)
//! ```
//!
//! AdamW (Loshchilov & Hutter 2019, Algorithm 2, with the decay scaled by η as in
//! torch.optim.AdamW): the decay is decoupled from the moments, `θ ← θ − η λ θ` first, then the
//! Adam step above with u = ∇ℓ (no λ in u).
//!
//! State: m and v, two buffers of the size of the trained set (8 bytes per trainable scalar),
//! plus the step count t (one per optimizer: a coordinate masked out by a sparse mask keeps its
//! m, v unchanged but shares t, i.e. bias correction counts optimizer steps). ZO form: the q
//! directions are regenerated per chunk, ĝ is formed per element, and restore + moments +
//! update are one pass.

use super::{ZoUpdate, ghat};
use crate::params::ParamStore;
use crate::pass::{StateMap, pass};

/// Adam hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamHp {
    /// Learning rate η.
    pub lr: f32,
    /// β₁ (first-moment decay), default 0.9.
    pub beta1: f32,
    /// β₂ (second-moment decay), default 0.999.
    pub beta2: f32,
    /// ε, default 1e-8.
    pub eps: f32,
    /// λ.
    pub wd: f32,
    /// true: AdamW (decoupled decay); false: Adam with L2 in the gradient.
    pub decoupled: bool,
}

impl AdamHp {
    /// Bias corrections `(1 − β₁ᵗ, 1 − β₂ᵗ)` for step `t ≥ 1` (computed in f64).
    pub fn corrections(&self, t: u64) -> (f32, f32) {
        let t = t.min(i32::MAX as u64) as i32;
        (
            (1.0 - f64::from(self.beta1).powi(t)) as f32,
            (1.0 - f64::from(self.beta2).powi(t)) as f32,
        )
    }

    /// One element: `x` the parameter, `g` its gradient (estimate), `s = [m, v]`.
    #[inline(always)]
    pub fn elem(&self, x: &mut f32, g: f32, s: &mut [f32], decay: bool, bc: (f32, f32)) {
        let mut g = g;
        if decay && self.wd != 0.0 {
            if self.decoupled {
                *x -= self.lr * self.wd * *x;
            } else {
                g += self.wd * *x;
            }
        }
        s[0] = self.beta1 * s[0] + (1.0 - self.beta1) * g;
        s[1] = self.beta2 * s[1] + (1.0 - self.beta2) * g * g;
        let mhat = s[0] / bc.0;
        let vhat = s[1] / bc.1;
        *x -= self.lr * mhat / (vhat.sqrt() + self.eps);
    }
}

/// One ZO-Adam step at Adam step `t ≥ 1`; `state` holds `[m, v]` per parameter.
pub fn apply(store: &mut ParamStore, u: &ZoUpdate, state: &mut StateMap, hp: &AdamHp, t: u64) {
    let (pk, ps) = u.pend();
    let coef = u.coef;
    let bc = hp.corrections(t);
    pass(
        store,
        u.ids,
        u.mask,
        u.dirs,
        Some((state, 2)),
        |x, z, s, decay| {
            if pk < z.len() {
                *x += ps * z[pk];
            }
            hp.elem(x, ghat(coef, z), s, decay, bc);
        },
    );
}
