//! ZO-SGD-Sign, in the two variants that the sources disagree on.
//!
//! * `zo-sgd-sign` (ZO-Bench's released code, `trainer.py` `zo_sign_opt`: the "gradient" is
//!   `np.sign(g) · z`): the sign of each **scalar** projected gradient times the full direction,
//!   ```text
//!   θ ← θ − η ( (1/q) Σᵢ sign(gᵢ) dᵢ + λ θ )
//!   ```
//!   (with q = 1: θ ← θ − η (sign(g) z + λθ); the magnitude of z is kept).
//! * `zo-sgd-sign-elementwise` (signSGD, Bernstein et al. 2018, applied to the ZO estimate; the
//!   variant ZO-Bench left commented out): the elementwise sign of the estimate,
//!   ```text
//!   θ ← θ − η ( sign(ĝ) + λ θ ),     ĝ = (1/q) Σᵢ gᵢ dᵢ ,   sign applied per coordinate
//!   ```
//!   so every kept coordinate moves by exactly ±η (or 0 where ĝ = 0).
//!
//! sign(0) = 0 in both. Weight decay is added outside the sign. ZO-Bench's released sweeps feed
//! these "gradients" to HF AdamW (no `--optimizer` flag); here the rule is plain SGD as the
//! paper describes. State: none.

use super::{ZoUpdate, ghat, sgn};
use crate::params::ParamStore;
use crate::pass::pass;

/// `zo-sgd-sign`: θ ← θ − η((1/q) Σᵢ sign(gᵢ) dᵢ + λθ). `u.coef[i]` = gᵢ/q.
pub fn apply_scalar(store: &mut ParamStore, u: &ZoUpdate, lr: f32, wd: f32) {
    let q = u.coef.len() as f32;
    let signs: Vec<f32> = u.coef.iter().map(|c| sgn(*c) / q).collect();
    let upd = ZoUpdate { coef: &signs, ..*u };
    super::sgd::apply(store, &upd, lr, wd);
}

/// `zo-sgd-sign-elementwise`: θ ← θ − η(sign(ĝ) + λθ), sign per coordinate.
pub fn apply_elementwise(store: &mut ParamStore, u: &ZoUpdate, lr: f32, wd: f32) {
    let (pk, ps) = u.pend();
    let coef = u.coef;
    pass(store, u.ids, u.mask, u.dirs, None, |x, z, _, decay| {
        if pk < z.len() {
            *x += ps * z[pk];
        }
        let mut g = sgn(ghat(coef, z));
        if decay && wd != 0.0 {
            g += wd * *x;
        }
        *x -= lr * g;
    });
}
