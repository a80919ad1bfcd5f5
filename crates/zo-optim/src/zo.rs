//! ZO-SGD with two-sided randomized gradient estimation (RGE) and seed replay (MeZO).
//!
//! Source: Malladi et al., "Fine-Tuning Language Models with Just Forward Passes" (MeZO),
//! NeurIPS 2023, Algorithm 1. For each of the `q` directions `z_i ~ N(0, I_d)` over the
//! trainable set:
//!
//! ```text
//! θ ← θ + μ z_i ;  ℓ₊ = ℓ(θ; B)
//! θ ← θ − 2μ z_i ; ℓ₋ = ℓ(θ; B)
//! g_i = (ℓ₊ − ℓ₋) / (2μ)                       (projected gradient, a scalar)
//! θ ← θ + μ z_i                                (restore)
//! ```
//! then the update `θ ← θ − η ( (1/q) Σ_i g_i z_i + λ θ )` (λ only on weights, not on biases
//! or norms). With `q = 1` the restore and the update are one pass:
//! `θ ← θ + (μ − η g) z` (and `θ ← θ + μ z` then `θ ← (1 − ηλ) θ − η g z` when λ > 0).
//!
//! Every `z_i` is regenerated from its [`NoiseKey`] ([`crate::noise`]): no direction and no
//! gradient buffer is ever held, only `q` (key, g) pairs. Forward passes per step: `2 q`.

use crate::noise::{NoiseKey, add_gaussian};
use crate::params::ParamStore;
use burn::tensor::Tensor;

/// ZO-SGD hyper-parameters (MeZO Algorithm 1).
#[derive(Debug, Clone, PartialEq)]
pub struct ZoSgd {
    /// Learning rate η.
    pub lr: f64,
    /// Perturbation scale μ.
    pub mu: f64,
    /// Query directions per step, q ≥ 1 (the estimate averages them).
    pub q: usize,
    /// Weight decay λ (not on biases and norm weights).
    pub weight_decay: f64,
}

/// What one ZO step measured.
#[derive(Debug, Clone, PartialEq)]
pub struct ZoStepReport {
    /// ℓ₊ of each query (nats).
    pub loss_plus: Vec<f32>,
    /// ℓ₋ of each query (nats).
    pub loss_minus: Vec<f32>,
    /// Projected gradient g_i = (ℓ₊ − ℓ₋)/(2μ) of each query.
    pub projected_grad: Vec<f32>,
    /// Forward passes spent (2 q).
    pub forward_passes: u64,
}

impl ZoStepReport {
    /// Mean of all perturbed losses: the training loss a ZO step observes.
    pub fn loss(&self) -> f32 {
        let n = (self.loss_plus.len() + self.loss_minus.len()) as f32;
        (self.loss_plus.iter().sum::<f32>() + self.loss_minus.iter().sum::<f32>()) / n
    }
}

/// Adds `scale · z` (direction of `key`) to every trainable parameter, in place.
///
/// On a host backend (flex) a uniquely held parameter is taken out of its tensor without a
/// copy, the noise is generated straight into it, and it is put back without a copy: one pass
/// over memory and no direction buffer. A parameter whose buffer is shared (e.g. with a
/// best-on-dev snapshot) is copied first, so the snapshot is never changed.
pub fn perturb(store: &mut ParamStore, key: NoiseKey, scale: f32) {
    let device = store.device().clone();
    for p in store.params_mut().iter_mut().filter(|p| p.trainable) {
        let mut data = p.tensor.extract().into_data().convert::<f32>();
        add_gaussian(
            key,
            &p.name,
            0,
            scale,
            data.as_mut_slice::<f32>().expect("f32 parameter"),
        );
        p.tensor = Tensor::<1>::from_data(data, &device);
    }
}

/// Multiplies every trainable, decayed parameter by `factor`, in place.
fn scale_decayed(store: &mut ParamStore, factor: f32) {
    for p in store
        .params_mut()
        .iter_mut()
        .filter(|p| p.trainable && p.decay)
    {
        p.tensor.inplace(|t| t * factor);
    }
}

impl ZoSgd {
    /// Runs one ZO-SGD step at training step `step` of run `run_seed`.
    ///
    /// `loss` evaluates the mini-batch loss (nats) at the store's current parameters; it is
    /// called `2 q` times. On return the parameters hold the updated values.
    pub fn step(
        &self,
        store: &mut ParamStore,
        run_seed: u64,
        step: u64,
        loss: &mut dyn FnMut(&ParamStore) -> f32,
    ) -> ZoStepReport {
        let q = self.q.max(1);
        let mu = self.mu as f32;
        let mut rep = ZoStepReport {
            loss_plus: vec![],
            loss_minus: vec![],
            projected_grad: vec![],
            forward_passes: 0,
        };
        let keys: Vec<NoiseKey> = (0..q as u64)
            .map(|i| NoiseKey::for_step(run_seed, step, i))
            .collect();
        for (i, &key) in keys.iter().enumerate() {
            perturb(store, key, mu);
            let lp = loss(store);
            perturb(store, key, -2.0 * mu);
            let lm = loss(store);
            rep.forward_passes += 2;
            let g = (lp - lm) / (2.0 * mu);
            rep.loss_plus.push(lp);
            rep.loss_minus.push(lm);
            rep.projected_grad.push(g);
            let last = i + 1 == q;
            if !(last && q == 1 && self.weight_decay == 0.0) {
                perturb(store, key, mu); // restore θ
            }
        }
        let eta = self.lr as f32;
        if q == 1 && self.weight_decay == 0.0 {
            // Fused restore + update: θ − μz + (μ − η g) z = θ − η g z.
            let g = rep.projected_grad[0];
            perturb(store, keys[0], mu - eta * g);
        } else {
            if self.weight_decay != 0.0 {
                scale_decayed(store, 1.0 - (self.lr * self.weight_decay) as f32);
            }
            for (key, g) in keys.iter().zip(rep.projected_grad.clone()) {
                perturb(store, *key, -eta * g / q as f32);
            }
        }
        rep
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::noise::gaussian_vec;
    use burn::tensor::Device;

    fn quad_store(device: &Device) -> ParamStore {
        let mut s = ParamStore::new(device.clone());
        s.insert(
            "a.weight",
            &[4, 8],
            (0..32).map(|i| (i as f32 * 0.37).sin()).collect(),
        )
        .unwrap();
        s.insert(
            "b.bias",
            &[16],
            (0..16).map(|i| (i as f32 * 0.11).cos()).collect(),
        )
        .unwrap();
        s
    }

    /// ℓ(θ) = ½ Σ_p Σ_j c_j (θ_pj − 1)², c_j ∈ [0.5, 1.5], summed in name order (so the
    /// value does not depend on the store's order).
    fn quad_loss(s: &ParamStore) -> f32 {
        let mut total = 0.0f32;
        let mut params: Vec<_> = s.params().iter().collect();
        params.sort_by(|a, b| a.name.cmp(&b.name));
        for p in params {
            let v = p.tensor.to_data().try_into_vec::<f32>().unwrap();
            for (j, x) in v.iter().enumerate() {
                let c = 0.5 + (j % 5) as f32 * 0.25;
                total += 0.5 * c * (x - 1.0) * (x - 1.0);
            }
        }
        total
    }

    #[test]
    fn zo_sgd_lowers_quadratic_loss() {
        let dev = Device::flex();
        let mut s = quad_store(&dev);
        let l0 = quad_loss(&s);
        let opt = ZoSgd {
            lr: 0.01,
            mu: 1e-3,
            q: 1,
            weight_decay: 0.0,
        };
        for step in 0..400 {
            let r = opt.step(&mut s, 42, step, &mut quad_loss);
            assert_eq!(r.forward_passes, 2);
        }
        let l1 = quad_loss(&s);
        assert!(l1 < 0.2 * l0, "loss {l0} -> {l1}");
    }

    #[test]
    fn same_seed_is_bit_identical_and_other_seed_differs() {
        let dev = Device::flex();
        let run = |seed: u64| {
            let mut s = quad_store(&dev);
            let opt = ZoSgd {
                lr: 0.01,
                mu: 1e-3,
                q: 2,
                weight_decay: 0.1,
            };
            for step in 0..20 {
                opt.step(&mut s, seed, step, &mut quad_loss);
            }
            s.params()
                .iter()
                .map(|p| p.tensor.to_data().try_into_vec::<f32>().unwrap())
                .collect::<Vec<_>>()
        };
        let a = run(5);
        let b = run(5);
        let c = run(6);
        let bits = |v: &Vec<Vec<f32>>| v.iter().flatten().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&a), bits(&b));
        assert_ne!(bits(&a), bits(&c));
    }

    #[test]
    fn update_matches_mezo_formula() {
        // One step, q = 1, no decay: θ' = θ − η g z with g = (ℓ(θ+μz) − ℓ(θ−μz)) / 2μ.
        let dev = Device::flex();
        let mut s = quad_store(&dev);
        let before: Vec<Vec<f32>> = (0..2).map(|i| s.values(i)).collect();
        let opt = ZoSgd {
            lr: 0.05,
            mu: 1e-2,
            q: 1,
            weight_decay: 0.0,
        };
        let r = opt.step(&mut s, 9, 3, &mut quad_loss);
        let key = NoiseKey::for_step(9, 3, 0);
        for (i, p) in s.params().iter().enumerate() {
            let z = gaussian_vec(key, &p.name, p.numel(), 1.0);
            let after = s.values(i);
            for j in 0..z.len() {
                let want = before[i][j] - 0.05 * r.projected_grad[0] * z[j];
                assert!(
                    (after[j] - want).abs() < 1e-5,
                    "{} [{j}]: {} vs {}",
                    p.name,
                    after[j],
                    want
                );
            }
        }
        // The projected gradient of a quadratic is the directional derivative ∇ℓ·z (exact for
        // a two-sided difference of a quadratic, up to f32 rounding).
        let mut dd = 0.0f32;
        for (i, p) in s.params().iter().enumerate() {
            let z = gaussian_vec(key, &p.name, p.numel(), 1.0);
            for j in 0..z.len() {
                let c = 0.5 + (j % 5) as f32 * 0.25;
                dd += c * (before[i][j] - 1.0) * z[j];
            }
        }
        assert!(
            (r.projected_grad[0] - dd).abs() < 2e-2 * dd.abs().max(1.0),
            "g {} vs ∇ℓ·z {}",
            r.projected_grad[0],
            dd
        );
    }

    #[test]
    fn directions_do_not_depend_on_parameter_order() {
        // The same parameters inserted in the opposite order get the same update.
        let dev = Device::flex();
        let mut s1 = quad_store(&dev);
        let mut s2 = ParamStore::new(dev.clone());
        for p in s1.params().iter().rev() {
            s2.insert(
                &p.name,
                &p.shape,
                p.tensor.to_data().try_into_vec::<f32>().unwrap(),
            )
            .unwrap();
        }
        let opt = ZoSgd {
            lr: 0.01,
            mu: 1e-3,
            q: 1,
            weight_decay: 0.0,
        };
        for step in 0..5 {
            opt.step(&mut s1, 1, step, &mut quad_loss);
            opt.step(&mut s2, 1, step, &mut quad_loss);
        }
        for p in s1.params() {
            let a = p.tensor.to_data().try_into_vec::<f32>().unwrap();
            let b = s2.values(s2.id(&p.name).unwrap());
            assert_eq!(a, b, "{}", p.name);
        }
    }

    #[test]
    fn frozen_parameters_are_untouched() {
        let dev = Device::flex();
        let mut s = quad_store(&dev);
        s.set_trainable(|n| n == "a.weight");
        let frozen = s.values(1);
        let opt = ZoSgd {
            lr: 0.01,
            mu: 1e-3,
            q: 1,
            weight_decay: 0.0,
        };
        for step in 0..5 {
            opt.step(&mut s, 3, step, &mut quad_loss);
        }
        assert_eq!(s.values(1), frozen);
        assert_ne!(s.values(0), quad_store(&dev).values(0));
    }
}
