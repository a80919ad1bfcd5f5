//! ZO-SGD-MMT: SGD with heavy-ball momentum on the ZO estimate.
//!
//! Update (Polyak 1964; as torch.optim.SGD with `momentum = β`, dampening 0, which is what
//! ZO-Bench's `zo_sgd` trainer with `--momentum 0.9` runs; ZO-Bench, Zhang et al. 2024, App. A):
//!
//! ```text
//! u ← ĝ + λ θ              (λ only on decayed parameters)
//! b ← β b + u              (b = 0 before the first step, so b₁ = u₁ as in torch)
//! θ ← θ − η b
//! ```
//!
//! This rule necessarily holds one buffer `b` of the size of the ZO-trained set
//! (4 bytes × trainable scalars; the directions are still regenerated, never stored). Restore
//! of the pending perturbation, the momentum update and the parameter update are one pass.

use super::{ZoUpdate, ghat};
use crate::params::ParamStore;
use crate::pass::{StateMap, pass};

/// Applies one momentum step; `state` holds `b` per parameter (created as zeros).
pub fn apply(
    store: &mut ParamStore,
    u: &ZoUpdate,
    state: &mut StateMap,
    lr: f32,
    beta: f32,
    wd: f32,
) {
    let (pk, ps) = u.pend();
    let coef = u.coef;
    pass(
        store,
        u.ids,
        u.mask,
        u.dirs,
        Some((state, 1)),
        |x, z, s, decay| {
            if pk < z.len() {
                *x += ps * z[pk];
            }
            let mut g = ghat(coef, z);
            if decay && wd != 0.0 {
                g += wd * *x;
            }
            s[0] = beta * s[0] + g;
            *x -= lr * s[0];
        },
    );
}
