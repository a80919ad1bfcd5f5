//! # zo-optim — zeroth-order gradient estimators, update rules and parameter selection
//!
//! The crate knows nothing about models or tasks beyond two things:
//!
//! * a [`ParamStore`]: named float parameters (HF parameter paths) with shapes and a
//!   trainable flag, held as flat burn tensors on a runtime [`burn::tensor::Device`];
//! * an [`Objective`]: the mini-batch loss `ℓ(θ; B)` as an `f32` (zeroth order) and, for
//!   first-order parts, as a `Tensor<1>` with an autodiff graph.
//!
//! Directions are never stored, only seeds ([`noise`]): a ZO step's state is O(q) scalars.
//! Estimators ([`estimate`]) yield projected gradients; update rules ([`rules`], one file per
//! rule) turn them into parameter changes in fused passes ([`pass`]) that regenerate the
//! directions chunk by chunk; selections ([`select`]) restrict what is perturbed and updated.
//! The runner uses [`build`] + the [`Optimizer`] trait; [`OPTIMIZERS`] lists every name with
//! its accepted hyper-parameter keys.
//!
//! | name | estimator | update | forward passes / step | state |
//! |---|---|---|---|---|
//! | `zo-sgd` | RGE two-sided (MeZO; `estimator = "one-sided"`: (ℓ(θ+μz) − ℓ(θ))/μ) | SGD, restore fused with the update | 2q (one-sided q + 1) | 0 |
//! | `zo-sgd-mmt` | RGE | heavy-ball momentum b ← βb + ĝ + λθ, θ ← θ − ηb | 2q | 4 B × trainable |
//! | `zo-sgd-sign` | RGE | θ ← θ − η(sign(g)·z + λθ) (ZO-Bench's code) | 2q | 0 |
//! | `zo-sgd-sign-elementwise` | RGE | θ ← θ − η(sign(g·z) + λθ) | 2q | 0 |
//! | `zo-sgd-cons` | RGE | best of θ, θ − ηĝ, θ + ηĝ | 2q + 3 (one-sided q + 3) | 0 |
//! | `zo-adam` | RGE | Adam with bias correction, L2 decay | 2q | 8 B × trainable |
//! | `zo-cge` | CGE (DeepZero): (ℓ(θ+μeᵢ) − ℓ(θ))/μ, refuses > `cge_max_coords` (4096) | SGD | d + 1 | 0 |
//! | `forward-grad` | exact ∇ℓ·z (reverse mode, `jvp_method = "reverse"`) | SGD: θ ← θ − η((∇ℓ·z)z + λθ) | 1 (+ 1 backward) | 0 (gradient held during the step) |
//! | `zo-ranksgd` | ranking of ℓ(θ + μzᵢ), i = 1..m (Tang et al. 2023) | SGD | m (θ not ranked) | 0 |
//! | `fo-sgd` | backprop (burn autodiff) | SGD | 1 (+ backward) | 0 |
//! | `fo-adam` | backprop | Adam (Kingma & Ba), L2 decay | 1 (+ backward) | 8 B × trainable |
//! | `fo-adamw` | backprop | AdamW (Loshchilov & Hutter), decoupled decay | 1 (+ backward) | 8 B × trainable |
//!
//! Selections, by hyper-parameter, on every ZO optimizer (CGE: sparse and hybrid only):
//! `sparsity` (+ `sparse_mode` random | magnitude, `sparse_group` layer | global,
//! `resample_every`, `zo_bench_parity`) — only kept coordinates are perturbed and updated,
//! bitset state of 1 bit per trainable scalar; `blockwise` (+ `blocks`) — each block perturbed
//! and updated in turn with its own seeds, forward passes × number of blocks; `hybrid_fo`
//! (+ `fo_lr`) — matching parameters get the exact SGD step from one extra forward + backward
//! at the same θ, the rest are trained zeroth-order (+1 forward pass).
//!
//! `direction = "sphere"` (DeepZero) normalises each direction to unit norm over the selected
//! set (a first pass regenerates z to get ‖z‖; no buffer). Every step reports its forward
//! passes; a NaN/Inf loss or projected gradient returns [`StepError::Diverged`] with the
//! parameters restored. [`Optimizer::save_state`] / [`Optimizer::load_state`] resume runs
//! bit-identically.
//!
//! The earlier [`ZoSgd`] / [`FoSgd`] structs stay for existing callers.
#![warn(missing_docs)]

pub mod estimate;
pub mod fo;
mod io;
pub mod noise;
pub mod optim;
pub mod params;
pub mod pass;
pub mod rules;
pub mod select;
pub mod stream;
pub mod zo;

pub use fo::FoSgd;
pub use noise::{NoiseKey, add_gaussian, fill_gaussian};
pub use optim::{
    Counted, HParams, OPTIMIZERS, Objective, OptimError, Optimizer, OptimizerInfo, StepCtx,
    StepError, StepReport, TensorObjective, ZoObjective, build, info,
};
pub use params::{Param, ParamStore, ParamStoreError};
pub use select::{MaskSpec, SparseGroup, SparseMode, glob_match, group_blocks, layer_index};
pub use zo::{ZoSgd, ZoStepReport, perturb};
