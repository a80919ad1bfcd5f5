//! ZO-SGD-Cons: conservative ZO-SGD (ZO-Bench, Zhang et al. 2024, App. A; `zo_conserv_step`).
//!
//! After the estimate ĝ, evaluate the three exact candidates and keep the best:
//!
//! ```text
//! ℓ₀ = ℓ(θ),  ℓ₁ = ℓ(θ − η ĝ),  ℓ₂ = ℓ(θ + η ĝ)
//! θ ← argmin over {θ, θ − ηĝ, θ + ηĝ} of ℓ   (ties: θ, then θ − ηĝ; a NaN loss never wins)
//! ```
//!
//! ZO-Bench's released runs step HF AdamW three times to form the candidates, so there they
//! are not θ ± ηĝ and the Adam state advances; here they are the plain SGD candidates
//! (the moves are in-place passes θ → θ − ηĝ → θ + ηĝ → choice, exact up to f32 rounding,
//! like MeZO's restore). No weight decay (it would make the candidates asymmetric).
//!
//! Forward passes: two-sided RGE 2q + 3 (ℓ₀ needs its own pass: 5 at q = 1); one-sided RGE
//! reuses its ℓ(θ), so q + 1 + 2. State: none.

use super::{ZoUpdate, ghat};
use crate::params::ParamStore;
use crate::pass::pass;

/// Result of the conservative choice.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConsChoice {
    /// `[ℓ(θ), ℓ(θ − ηĝ), ℓ(θ + ηĝ)]`.
    pub losses: [f32; 3],
    /// 0 = θ, 1 = θ − ηĝ, 2 = θ + ηĝ.
    pub chosen: usize,
    /// Forward passes spent here (3, or 2 when ℓ(θ) was given).
    pub forward_passes: u64,
}

fn mv(store: &mut ParamStore, u: &ZoUpdate, a: f32, restore: bool) {
    let (pk, ps) = if restore { u.pend() } else { (usize::MAX, 0.0) };
    let coef = u.coef;
    pass(store, u.ids, u.mask, u.dirs, None, |x, z, _, _| {
        if pk < z.len() {
            *x += ps * z[pk];
        }
        *x += a * ghat(coef, z);
    });
}

/// Runs the conservative step. `loss0` is ℓ(θ) when the estimator already has it (one-sided).
pub fn apply(
    store: &mut ParamStore,
    u: &ZoUpdate,
    lr: f32,
    loss0: Option<f32>,
    loss: &mut dyn FnMut(&ParamStore) -> f32,
) -> ConsChoice {
    let mut fp = 0;
    let l0 = match loss0 {
        Some(l) => {
            mv(store, u, -lr, true); // restore fused with θ → θ − ηĝ
            l
        }
        None => {
            if u.pending.is_some() {
                mv(store, u, 0.0, true);
            }
            fp += 1;
            let l = loss(store);
            mv(store, u, -lr, false);
            l
        }
    };
    let l1 = loss(store);
    mv(store, u, 2.0 * lr, false);
    let l2 = loss(store);
    fp += 2;
    let key = |l: f32| if l.is_nan() { f32::INFINITY } else { l };
    let losses = [l0, l1, l2];
    let mut chosen = 0;
    for i in 1..3 {
        if key(losses[i]) < key(losses[chosen]) {
            chosen = i;
        }
    }
    match chosen {
        0 => mv(store, u, -lr, false),
        1 => mv(store, u, -2.0 * lr, false),
        _ => {}
    }
    ConsChoice {
        losses,
        chosen,
        forward_passes: fp,
    }
}
