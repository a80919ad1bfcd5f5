//! # zo-optim — zeroth-order gradient estimators, update rules and parameter selection
//!
//! The crate knows nothing about models or tasks beyond two things:
//!
//! * a [`ParamStore`]: named float parameters (HF parameter paths) with shapes and a
//!   trainable flag, held as flat burn tensors on a runtime [`burn::tensor::Device`];
//! * a *loss closure* `FnMut(&ParamStore) -> f32` (zeroth order) or
//!   `FnMut(&ParamStore) -> Tensor<1>` (first order, on an autodiff device).
//!
//! Directions are never stored, only seeds ([`noise`]): a ZO step's state is O(q) scalars.
//!
//! Optimizers in this version:
//!
//! | name | estimator | update | forward passes / step |
//! |---|---|---|---|
//! | `zo-sgd` | two-sided RGE (MeZO) | SGD, fused with the restore pass | 2 q |
//! | `fo-sgd` | backprop (burn autodiff) | SGD | 1 (+ backward) |
#![warn(missing_docs)]

pub mod fo;
pub mod noise;
pub mod params;
pub mod zo;

pub use fo::FoSgd;
pub use noise::{NoiseKey, add_gaussian, fill_gaussian};
pub use params::{Param, ParamStore, ParamStoreError};
pub use zo::{ZoSgd, ZoStepReport};
