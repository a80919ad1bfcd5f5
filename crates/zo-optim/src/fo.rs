//! First-order SGD baseline on burn autodiff.
//!
//! Update (plain SGD with decoupled weight decay on weights only):
//! `θ ← θ − η (∇ℓ(θ; B) + λ θ)`. The loss closure must build its graph from the store's
//! tensors after [`ParamStore::enable_grad`]; frozen parameters carry no graph.

use crate::params::ParamStore;
use burn::tensor::Tensor;

/// FO-SGD hyper-parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct FoSgd {
    /// Learning rate η.
    pub lr: f64,
    /// Weight decay λ (not on biases and norm weights).
    pub weight_decay: f64,
}

impl FoSgd {
    /// One step: forward (`loss`), backward, update of every trainable parameter. Returns the
    /// loss before the update (nats). The store must have had [`ParamStore::enable_grad`]
    /// called; after the step the trainable tensors are fresh autodiff leaves again.
    ///
    /// # Panics
    /// If the loss does not depend on any trainable parameter (no autodiff graph).
    pub fn step(
        &self,
        store: &mut ParamStore,
        loss: &mut dyn FnMut(&ParamStore) -> Tensor<1>,
    ) -> f32 {
        let l = loss(store);
        let value = l.clone().inner().into_scalar::<f32>();
        let grads = l.backward();
        let eta = self.lr as f32;
        let wd = self.weight_decay as f32;
        for p in store.params_mut().iter_mut().filter(|p| p.trainable) {
            let theta = p.tensor.clone().inner();
            let Some(g) = p.tensor.grad(&grads) else {
                continue;
            };
            let g = if p.decay && wd != 0.0 {
                g + theta.clone() * wd
            } else {
                g
            };
            p.tensor = (theta - g * eta).autodiff().require_grad();
        }
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    #[test]
    fn fo_sgd_matches_analytic_gradient() {
        // ℓ(w) = ½ ||w − t||², ∇ℓ = w − t; one step of lr 0.1 moves w to w − 0.1 (w − t).
        let dev = Device::flex();
        let mut s = ParamStore::new(dev.clone());
        let w0 = vec![1.0f32, -2.0, 3.0, 0.5];
        s.insert("w.weight", &[4], w0.clone()).unwrap();
        s.enable_grad();
        let target = [0.0f32, 1.0, 1.0, 1.0];
        let t = Tensor::<1>::from_data(TensorData::new(target.to_vec(), [4]), &dev);
        let opt = FoSgd {
            lr: 0.1,
            weight_decay: 0.0,
        };
        let l = opt.step(&mut s, &mut |s: &ParamStore| {
            let d = s.t1(0) - t.clone();
            (d.clone() * d).sum() * 0.5
        });
        let want_loss: f32 = w0
            .iter()
            .zip(target)
            .map(|(w, t)| 0.5 * (w - t) * (w - t))
            .sum();
        assert!((l - want_loss).abs() < 1e-6);
        let w1 = s.values(0);
        for i in 0..4 {
            let want = w0[i] - 0.1 * (w0[i] - target[i]);
            assert!((w1[i] - want).abs() < 1e-6, "{i}: {} vs {want}", w1[i]);
        }
    }
}
