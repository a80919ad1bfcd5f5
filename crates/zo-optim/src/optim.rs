//! The unified optimizer interface the runner calls: [`Optimizer`], [`Objective`], [`HParams`],
//! [`build`] and the registry [`OPTIMIZERS`].
//!
//! An optimizer = an estimator ([`crate::estimate`], or CGE below, or backprop) + an update
//! rule ([`crate::rules`]) + a parameter selection ([`crate::select`]: sparse mask, block
//! schedule, hybrid ZO/FO split), all chosen by name and hyper-parameters.

use crate::estimate::{Estimate, backprop, forward_grad, rank, rge};
use crate::noise::NoiseKey;
use crate::params::ParamStore;
use crate::pass::{StateMap, put, take};
use crate::rules::adam::AdamHp;
use crate::rules::{ZoUpdate, adam, cons, mmt, sgd, sign};
use crate::select::{
    Mask, MaskSpec, SparseGroup, SparseMode, exact_drop_count, glob_match, group_blocks,
    layer_index, sample_mask,
};
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Write};

/// The loss a step evaluates, on the current mini-batch.
pub trait Objective {
    /// ℓ(θ; B) in nats at the store's current parameters (no autodiff needed). Every call
    /// counts as one forward pass.
    fn loss(&mut self, store: &ParamStore) -> f32;
    /// ℓ(θ; B) as a scalar tensor (shape `[1]`) with an autodiff graph through the store's
    /// tensors (those the optimizer made autodiff leaves); used by FO baselines, Forward-Grad
    /// and the FO part of hybrid ZO/FO. One forward pass.
    ///
    /// # Panics
    /// Implementations without autodiff support may panic; they report it through
    /// [`Objective::has_autodiff`], which optimizers check first.
    fn loss_tensor(&mut self, store: &ParamStore) -> Tensor<1>;
    /// Whether [`Objective::loss_tensor`] is available (default true).
    fn has_autodiff(&self) -> bool {
        true
    }
}

/// An [`Objective`] from a zeroth-order closure only (`loss_tensor` unavailable).
pub struct ZoObjective<F: FnMut(&ParamStore) -> f32>(pub F);

impl<F: FnMut(&ParamStore) -> f32> Objective for ZoObjective<F> {
    fn loss(&mut self, store: &ParamStore) -> f32 {
        (self.0)(store)
    }
    fn loss_tensor(&mut self, _store: &ParamStore) -> Tensor<1> {
        panic!("this objective has no autodiff loss (ZoObjective)")
    }
    fn has_autodiff(&self) -> bool {
        false
    }
}

/// An [`Objective`] from an autodiff closure; `loss` evaluates it and reads the scalar.
pub struct TensorObjective<G: FnMut(&ParamStore) -> Tensor<1>>(pub G);

impl<G: FnMut(&ParamStore) -> Tensor<1>> Objective for TensorObjective<G> {
    fn loss(&mut self, store: &ParamStore) -> f32 {
        (self.0)(store).inner().into_scalar::<f32>()
    }
    fn loss_tensor(&mut self, store: &ParamStore) -> Tensor<1> {
        (self.0)(store)
    }
}

/// Wraps an objective and counts its calls (forward passes), e.g. to check
/// [`Optimizer::forward_passes_per_step`].
pub struct Counted<'a> {
    /// The wrapped objective.
    pub inner: &'a mut dyn Objective,
    /// Calls of [`Objective::loss`].
    pub loss_calls: u64,
    /// Calls of [`Objective::loss_tensor`].
    pub tensor_calls: u64,
}

impl<'a> Counted<'a> {
    /// Wraps `inner` with zero counts.
    pub fn new(inner: &'a mut dyn Objective) -> Self {
        Counted {
            inner,
            loss_calls: 0,
            tensor_calls: 0,
        }
    }
    /// Total forward passes (both kinds of call).
    pub fn calls(&self) -> u64 {
        self.loss_calls + self.tensor_calls
    }
}

impl Objective for Counted<'_> {
    fn loss(&mut self, store: &ParamStore) -> f32 {
        self.loss_calls += 1;
        self.inner.loss(store)
    }
    fn loss_tensor(&mut self, store: &ParamStore) -> Tensor<1> {
        self.tensor_calls += 1;
        self.inner.loss_tensor(store)
    }
    fn has_autodiff(&self) -> bool {
        self.inner.has_autodiff()
    }
}

/// Where a step is in its run: the two inputs of every direction seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepCtx {
    /// The run's seed.
    pub run_seed: u64,
    /// Training step (the runner counts from 1; any u64 works).
    pub step: u64,
}

/// What one step measured.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StepReport {
    /// The training loss this step observed (nats): ℓ(θ) when the step evaluated it (one-sided
    /// RGE, CGE, Cons, Forward-Grad, FO, hybrid's FO pass), otherwise the mean of the perturbed
    /// losses (two-sided RGE, RankSGD).
    pub loss: f32,
    /// ℓ(θ + μdᵢ) per direction (RankSGD: the ranked losses; CGE: per coordinate), all blocks.
    pub loss_plus: Vec<f32>,
    /// ℓ(θ − μdᵢ) per direction (two-sided RGE only).
    pub loss_minus: Vec<f32>,
    /// Projected gradient per direction (RankSGD: the rank coefficients; CGE: per coordinate).
    pub projected_grad: Vec<f32>,
    /// Forward passes spent (calls of the objective), equal to
    /// [`Optimizer::forward_passes_per_step`].
    pub forward_passes: u64,
    /// Backward passes spent (FO, Forward-Grad, hybrid).
    pub backward_passes: u64,
    /// How the directional derivative was obtained (`Some("reverse")` for Forward-Grad).
    pub jvp_method: Option<&'static str>,
    /// ZO-SGD-Cons: the kept candidate per block (0 = θ, 1 = θ − ηĝ, 2 = θ + ηĝ).
    pub cons_choice: Vec<usize>,
    /// ZO-SGD-Cons: the candidate losses `[ℓ(θ), ℓ(θ − ηĝ), ℓ(θ + ηĝ)]` per block.
    pub cons_losses: Vec<[f32; 3]>,
}

/// Why a step did not complete.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StepError {
    /// A loss or projected gradient was NaN/±∞. The parameters of the diverging block are left
    /// restored (unchanged by this step); earlier blocks of a block-wise step keep their
    /// update. The runner records the cell as diverged.
    #[error("diverged at step {step}: loss_plus = {loss_plus}, loss_minus = {loss_minus}")]
    Diverged {
        /// The step.
        step: u64,
        /// ℓ₊ (or the single loss) that was observed.
        loss_plus: f32,
        /// ℓ₋ (or the same loss again when there is no ℓ₋).
        loss_minus: f32,
    },
    /// The optimizer's configuration does not fit the store (e.g. CGE over too many
    /// coordinates, a hybrid pattern matching nothing).
    #[error(transparent)]
    Config(#[from] OptimError),
}

/// Configuration errors (all name the offending key or value).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OptimError {
    /// No optimizer of that name.
    #[error("unknown optimizer `{name}` (known: {known})")]
    UnknownOptimizer {
        /// Requested name.
        name: String,
        /// Comma-separated known names.
        known: String,
    },
    /// A hyper-parameter the optimizer does not have.
    #[error("optimizer `{optimizer}` has no hyper-parameter `{key}` (accepted: {accepted})")]
    UnknownKey {
        /// Optimizer name.
        optimizer: String,
        /// The key.
        key: String,
        /// Comma-separated accepted keys.
        accepted: String,
    },
    /// A required hyper-parameter is missing.
    #[error("optimizer `{optimizer}` needs hyper-parameter `{key}`")]
    Missing {
        /// Optimizer name.
        optimizer: String,
        /// The key.
        key: String,
    },
    /// A hyper-parameter value out of range.
    #[error("hyper-parameter `{key}` = {value}: {why}")]
    Invalid {
        /// The key.
        key: String,
        /// The value, as written.
        value: String,
        /// What is allowed.
        why: String,
    },
    /// CGE over a selected set larger than `cge_max_coords`.
    #[error(
        "zo-cge: the selected set has {count} coordinates, more than cge_max_coords = {cap}; CGE costs one forward pass per coordinate (d + 1 per step) — select fewer parameters (scheme, sparsity) or raise cge_max_coords"
    )]
    TooManyCoordinates {
        /// Selected coordinates.
        count: u64,
        /// The cap.
        cap: u64,
    },
    /// A selection (blocks, hybrid patterns) that does not fit the store.
    #[error("parameter selection: {0}")]
    Selection(String),
}

/// Hyper-parameters of every optimizer; `None` = not given (the optimizer's default applies,
/// or, for a key the optimizer does not have, nothing). [`build`] rejects a given key that the
/// optimizer does not accept ([`OptimizerInfo::hparams`]).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HParams {
    /// Learning rate η > 0 (required).
    pub lr: Option<f64>,
    /// Perturbation scale μ > 0 (ZO; default 1e-3).
    pub mu: Option<f64>,
    /// Directions per step q ≥ 1 (default 1); for `zo-ranksgd` the number m ≥ 2 of ranked
    /// directions (default 4).
    pub q: Option<usize>,
    /// Momentum β ∈ [0, 1) (`zo-sgd-mmt`, default 0.9).
    pub momentum: Option<f64>,
    /// Adam β₁ ∈ [0, 1) (default 0.9).
    pub beta1: Option<f64>,
    /// Adam β₂ ∈ [0, 1) (default 0.999).
    pub beta2: Option<f64>,
    /// Adam ε > 0 (default 1e-8).
    pub eps: Option<f64>,
    /// Weight decay λ ≥ 0 (default 0; never on biases and norms).
    pub weight_decay: Option<f64>,
    /// RGE form: `two-sided` (default, MeZO) or `one-sided`.
    pub estimator: Option<String>,
    /// Direction distribution: `gaussian` (default) or `sphere` (unit sphere, DeepZero).
    pub direction: Option<String>,
    /// Sparse ZO: fraction of coordinates dropped, in [0, 1) (0 or absent: no mask).
    pub sparsity: Option<f64>,
    /// Sparse mask positions: `random` (default) or `magnitude`.
    pub sparse_mode: Option<String>,
    /// Sparse mask exactness: `layer` (default) or `global`.
    pub sparse_group: Option<String>,
    /// Resample the mask every k ≥ 1 steps (default: never, i.e. u64::MAX).
    pub resample_every: Option<u64>,
    /// ZO-Bench's Φ(r) mask rule instead of an exact fraction (default false).
    pub zo_bench_parity: Option<bool>,
    /// Block-wise ZO (default false): blocks from `blocks`, else [`group_blocks`].
    pub blockwise: Option<bool>,
    /// Explicit block schedule: lists of parameter names (the model crate supplies it).
    pub blocks: Option<Vec<Vec<String>>>,
    /// Hybrid ZO/FO: glob patterns of the parameters trained first-order (e.g. `classifier.*`).
    pub hybrid_fo: Option<Vec<String>>,
    /// Hybrid ZO/FO: also train the last k ≥ 1 transformer layers first-order (layers found by
    /// [`crate::layer_index`] among the trainable names).
    pub hybrid_fo_last_layers: Option<usize>,
    /// Learning rate of the FO part of a hybrid step (default `lr`).
    pub fo_lr: Option<f64>,
    /// CGE: refuse a selected set of more coordinates than this (default 4096).
    pub cge_max_coords: Option<u64>,
}

impl HParams {
    /// Builds hyper-parameters from a config map (e.g. `BTreeMap<String, serde_json::Value>`
    /// or `toml::Value`s): each key is deserialised on its own, so an error names its key.
    ///
    /// # Errors
    /// [`OptimError::Invalid`] naming the key for an unknown key or a value of the wrong type.
    pub fn from_map<'de, V, E>(map: &BTreeMap<String, V>) -> Result<HParams, OptimError>
    where
        V: serde::de::IntoDeserializer<'de, E> + Clone + std::fmt::Debug,
        E: serde::de::Error,
    {
        use serde::de::IntoDeserializer;
        use serde::de::value::MapDeserializer;
        let mut out = HParams::default();
        for (k, v) in map {
            let one = MapDeserializer::<_, E>::new(std::iter::once((
                k.clone().into_deserializer(),
                v.clone(),
            )));
            let h = HParams::deserialize(one)
                .map_err(|e| invalid(k, format!("{v:?}"), &e.to_string()))?;
            out.merge(h);
        }
        Ok(out)
    }

    /// Copies every set field of `other` into `self`.
    fn merge(&mut self, other: HParams) {
        macro_rules! m {
            ($($f:ident),*) => { $( if other.$f.is_some() { self.$f = other.$f; } )* };
        }
        m!(
            lr,
            mu,
            q,
            momentum,
            beta1,
            beta2,
            eps,
            weight_decay,
            estimator,
            direction,
            sparsity,
            sparse_mode,
            sparse_group,
            resample_every,
            zo_bench_parity,
            blockwise,
            blocks,
            hybrid_fo,
            hybrid_fo_last_layers,
            fo_lr,
            cge_max_coords
        );
    }

    /// Checks the ranges of the given keys' values, independently of an optimizer (lr, mu,
    /// eps, fo_lr > 0; q, resample_every, cge_max_coords ≥ 1; sparsity, momentum, beta1, beta2
    /// in [0, 1); weight_decay ≥ 0; estimator, direction, sparse_mode, sparse_group among their
    /// names). Unset keys pass. [`build`] runs the same checks.
    ///
    /// # Errors
    /// [`OptimError::Invalid`] naming the first bad key.
    pub fn validate_keys(&self, keys: &[&str]) -> Result<(), OptimError> {
        for &k in keys {
            match k {
                "lr" => pos("lr", self.lr.or(Some(1.0)), 1.0).map(drop)?,
                "mu" => pos("mu", self.mu, 1.0).map(drop)?,
                "eps" => pos("eps", self.eps, 1.0).map(drop)?,
                "fo_lr" => pos("fo_lr", self.fo_lr, 1.0).map(drop)?,
                "sparsity" => unit("sparsity", self.sparsity, 0.0).map(drop)?,
                "momentum" => unit("momentum", self.momentum, 0.0).map(drop)?,
                "beta1" => unit("beta1", self.beta1, 0.0).map(drop)?,
                "beta2" => unit("beta2", self.beta2, 0.0).map(drop)?,
                "q" if self.q == Some(0) => return Err(invalid("q", 0, "must be ≥ 1")),
                "resample_every" if self.resample_every == Some(0) => {
                    return Err(invalid("resample_every", 0, "must be ≥ 1"));
                }
                "hybrid_fo_last_layers" if self.hybrid_fo_last_layers == Some(0) => {
                    return Err(invalid("hybrid_fo_last_layers", 0, "must be ≥ 1"));
                }
                "cge_max_coords" if self.cge_max_coords == Some(0) => {
                    return Err(invalid("cge_max_coords", 0, "must be ≥ 1"));
                }
                "weight_decay" => {
                    if let Some(w) = self.weight_decay
                        && !(w.is_finite() && w >= 0.0)
                    {
                        return Err(invalid("weight_decay", w, "must be a finite number ≥ 0"));
                    }
                }
                "estimator" => choice("estimator", &self.estimator, &["two-sided", "one-sided"])?,
                "direction" => choice("direction", &self.direction, &["gaussian", "sphere"])?,
                "sparse_mode" => {
                    choice("sparse_mode", &self.sparse_mode, &["random", "magnitude"])?
                }
                "sparse_group" => choice("sparse_group", &self.sparse_group, &["layer", "global"])?,
                _ => {}
            }
        }
        Ok(())
    }

    /// The keys that are set (`Some`), by their config names.
    pub fn set_keys(&self) -> Vec<&'static str> {
        let mut k = Vec::new();
        macro_rules! chk {
            ($($f:ident),*) => { $( if self.$f.is_some() { k.push(stringify!($f)); } )* };
        }
        chk!(
            lr,
            mu,
            q,
            momentum,
            beta1,
            beta2,
            eps,
            weight_decay,
            estimator,
            direction,
            sparsity,
            sparse_mode,
            sparse_group,
            resample_every,
            zo_bench_parity,
            blockwise,
            blocks,
            hybrid_fo,
            hybrid_fo_last_layers,
            fo_lr,
            cge_max_coords
        );
        k
    }
}

/// One registry entry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OptimizerInfo {
    /// CLI / config name (kebab-case).
    pub name: &'static str,
    /// Estimator name as recorded in results (`rge`, `cge`, `forward-grad`, `rank`, `backprop`).
    pub estimator: &'static str,
    /// Accepted hyper-parameter keys (a config key outside this list is an error).
    pub hparams: &'static [&'static str],
    /// Whether the optimizer is zeroth order (no backward pass, except the FO part of a
    /// hybrid selection); false for `forward-grad` and the `fo-*` baselines.
    pub zeroth_order: bool,
    /// One-line description.
    pub doc: &'static str,
}

const SEL: [&str; 10] = [
    "sparsity",
    "sparse_mode",
    "sparse_group",
    "resample_every",
    "zo_bench_parity",
    "blockwise",
    "blocks",
    "hybrid_fo",
    "hybrid_fo_last_layers",
    "fo_lr",
];

macro_rules! keys {
    ($($k:literal),* ; sel) => { &[$($k,)* "sparsity", "sparse_mode", "sparse_group", "resample_every", "zo_bench_parity", "blockwise", "blocks", "hybrid_fo", "hybrid_fo_last_layers", "fo_lr"] };
    ($($k:literal),*) => { &[$($k),*] };
}

/// Every optimizer: name, estimator, accepted keys, one-line doc.
pub const OPTIMIZERS: &[OptimizerInfo] = &[
    OptimizerInfo {
        name: "zo-sgd",
        estimator: "rge",
        zeroth_order: true,
        hparams: keys!("lr", "mu", "q", "weight_decay", "estimator", "direction"; sel),
        doc: "ZO-SGD (MeZO): RGE, θ ← θ − η(ĝ + λθ), restore fused with the update",
    },
    OptimizerInfo {
        name: "zo-sgd-mmt",
        estimator: "rge",
        zeroth_order: true,
        hparams: keys!("lr", "mu", "q", "weight_decay", "estimator", "direction", "momentum"; sel),
        doc: "ZO-SGD with heavy-ball momentum: b ← βb + ĝ + λθ, θ ← θ − ηb (one trainable-size buffer)",
    },
    OptimizerInfo {
        name: "zo-sgd-sign",
        estimator: "rge",
        zeroth_order: true,
        hparams: keys!("lr", "mu", "q", "weight_decay", "estimator", "direction"; sel),
        doc: "ZO-SGD-Sign as ZO-Bench's code: θ ← θ − η(sign(g)·z + λθ)",
    },
    OptimizerInfo {
        name: "zo-sgd-sign-elementwise",
        estimator: "rge",
        zeroth_order: true,
        hparams: keys!("lr", "mu", "q", "weight_decay", "estimator", "direction"; sel),
        doc: "ZO-SGD-Sign, elementwise: θ ← θ − η(sign(g·z) + λθ)",
    },
    OptimizerInfo {
        name: "zo-sgd-cons",
        estimator: "rge",
        zeroth_order: true,
        hparams: keys!("lr", "mu", "q", "estimator", "direction"; sel),
        doc: "ZO-SGD-Cons: keep the best of θ, θ − ηĝ, θ + ηĝ (5 forwards at q = 1)",
    },
    OptimizerInfo {
        name: "zo-adam",
        estimator: "rge",
        zeroth_order: true,
        hparams: keys!("lr", "mu", "q", "weight_decay", "estimator", "direction", "beta1", "beta2", "eps"; sel),
        doc: "ZO-Adam: Adam with bias correction on the RGE estimate (m, v: two trainable-size buffers)",
    },
    OptimizerInfo {
        name: "zo-cge",
        estimator: "cge",
        zeroth_order: true,
        hparams: keys!(
            "lr",
            "mu",
            "weight_decay",
            "cge_max_coords",
            "sparsity",
            "sparse_mode",
            "sparse_group",
            "resample_every",
            "zo_bench_parity",
            "hybrid_fo",
            "hybrid_fo_last_layers",
            "fo_lr"
        ),
        doc: "CGE + SGD (DeepZero): (ℓ(θ+μeᵢ) − ℓ(θ))/μ per selected coordinate, d + 1 forwards",
    },
    OptimizerInfo {
        name: "forward-grad",
        estimator: "forward-grad",
        zeroth_order: false,
        hparams: keys!("lr", "q", "weight_decay", "direction"; sel),
        doc: "Forward-Grad: exact ∇ℓ·z (reverse mode), θ ← θ − η((∇ℓ·z)z + λθ)",
    },
    OptimizerInfo {
        name: "zo-ranksgd",
        estimator: "rank",
        zeroth_order: true,
        hparams: keys!("lr", "mu", "q", "weight_decay", "direction"; sel),
        doc: "ZO-RankSGD (Tang et al. 2023): rank-based estimate from the ranking of m perturbed losses",
    },
    OptimizerInfo {
        name: "fo-sgd",
        estimator: "backprop",
        zeroth_order: false,
        hparams: keys!("lr", "weight_decay"),
        doc: "FO-SGD on burn autodiff: θ ← θ − η(∇ℓ + λθ)",
    },
    OptimizerInfo {
        name: "fo-adam",
        estimator: "backprop",
        zeroth_order: false,
        hparams: keys!("lr", "weight_decay", "beta1", "beta2", "eps"),
        doc: "FO-Adam (Kingma & Ba), L2 decay in the gradient",
    },
    OptimizerInfo {
        name: "fo-adamw",
        estimator: "backprop",
        zeroth_order: false,
        hparams: keys!("lr", "weight_decay", "beta1", "beta2", "eps"),
        doc: "FO-AdamW (Loshchilov & Hutter), decoupled decay",
    },
];

/// The registry entry of `name`.
pub fn info(name: &str) -> Option<&'static OptimizerInfo> {
    OPTIMIZERS.iter().find(|i| i.name == name)
}

/// The optimizer interface the runner drives (`Send`, so a boxed optimizer can move to a
/// worker thread).
pub trait Optimizer: Send {
    /// Registry name (e.g. `zo-sgd`).
    fn name(&self) -> &str;
    /// Estimator name (`rge`, `rge-one-sided`, `cge`, `forward-grad`, `rank`, `backprop`).
    fn estimator(&self) -> &str;
    /// Checks the configuration against the store (blocks, hybrid patterns, CGE cap). The
    /// runner should call it before training; [`Optimizer::step`] checks too.
    ///
    /// # Errors
    /// [`OptimError::TooManyCoordinates`], [`OptimError::Selection`].
    fn validate(&self, store: &ParamStore) -> Result<(), OptimError>;
    /// Forward passes (objective calls) one step spends on `store`, exactly as counted.
    fn forward_passes_per_step(&self, store: &ParamStore) -> u64;
    /// Bytes of optimizer state held now (momentum / Adam buffers, sparse mask bitsets). The
    /// buffers are created on the first step; [`Optimizer::planned_state_bytes`] gives the
    /// steady-state size before that.
    fn state_bytes(&self) -> u64;
    /// Bytes of optimizer state a step on `store` will hold (analytic).
    fn planned_state_bytes(&self, store: &ParamStore) -> u64;
    /// One training step.
    ///
    /// # Errors
    /// [`StepError::Diverged`] on a NaN/Inf loss or projected gradient (parameters restored),
    /// [`StepError::Config`] when the configuration does not fit the store.
    fn step(
        &mut self,
        store: &mut ParamStore,
        ctx: StepCtx,
        obj: &mut dyn Objective,
    ) -> Result<StepReport, StepError>;
    /// Writes the optimizer state (bit-exact), so that a run resumed with
    /// [`Optimizer::load_state`] continues bit-identically.
    ///
    /// # Errors
    /// I/O errors of `w`.
    fn save_state(&self, w: &mut dyn Write) -> io::Result<()>;
    /// Reads state written by [`Optimizer::save_state`] of the same optimizer name.
    ///
    /// # Errors
    /// I/O errors, a state of another optimizer or a malformed file (`InvalidData`).
    fn load_state(&mut self, r: &mut dyn Read) -> io::Result<()>;
}

fn invalid(key: &str, value: impl std::fmt::Display, why: &str) -> OptimError {
    OptimError::Invalid {
        key: key.into(),
        value: value.to_string(),
        why: why.into(),
    }
}

fn choice(key: &str, v: &Option<String>, allowed: &[&str]) -> Result<(), OptimError> {
    match v {
        Some(x) if !allowed.contains(&x.as_str()) => Err(invalid(
            key,
            x,
            &format!("must be one of {}", allowed.join(", ")),
        )),
        _ => Ok(()),
    }
}

fn pos(key: &str, v: Option<f64>, default: f64) -> Result<f64, OptimError> {
    let x = v.unwrap_or(default);
    if !(x.is_finite() && x > 0.0) {
        return Err(invalid(key, x, "must be a finite number > 0"));
    }
    Ok(x)
}

fn unit(key: &str, v: Option<f64>, default: f64) -> Result<f64, OptimError> {
    let x = v.unwrap_or(default);
    if !(0.0..1.0).contains(&x) {
        return Err(invalid(key, x, "must be in [0, 1)"));
    }
    Ok(x)
}

/// Builds optimizer `name` from `hp`.
///
/// # Errors
/// [`OptimError::UnknownOptimizer`]; [`OptimError::UnknownKey`] for a set key the optimizer
/// does not accept; [`OptimError::Missing`] without `lr`; [`OptimError::Invalid`] naming the key
/// for a value out of range (lr ≤ 0, mu ≤ 0, q = 0, sparsity ∉ [0, 1), …).
pub fn build(name: &str, hp: &HParams) -> Result<Box<dyn Optimizer>, OptimError> {
    let inf = info(name).ok_or_else(|| OptimError::UnknownOptimizer {
        name: name.into(),
        known: OPTIMIZERS
            .iter()
            .map(|i| i.name)
            .collect::<Vec<_>>()
            .join(", "),
    })?;
    for k in hp.set_keys() {
        if !inf.hparams.contains(&k) {
            return Err(OptimError::UnknownKey {
                optimizer: name.into(),
                key: k.into(),
                accepted: inf.hparams.join(", "),
            });
        }
    }
    let lr = match hp.lr {
        None => {
            return Err(OptimError::Missing {
                optimizer: name.into(),
                key: "lr".into(),
            });
        }
        Some(v) => pos("lr", Some(v), 0.0)?,
    };
    let wd = hp.weight_decay.unwrap_or(0.0);
    if !(wd.is_finite() && wd >= 0.0) {
        return Err(invalid("weight_decay", wd, "must be a finite number ≥ 0"));
    }
    let beta1 = unit("beta1", hp.beta1, 0.9)?;
    let beta2 = unit("beta2", hp.beta2, 0.999)?;
    let eps = pos("eps", hp.eps, 1e-8)?;
    let adam = |decoupled| AdamHp {
        lr: lr as f32,
        beta1: beta1 as f32,
        beta2: beta2 as f32,
        eps: eps as f32,
        wd: wd as f32,
        decoupled,
    };
    if let Some(kind) = match name {
        "fo-sgd" => Some(FoKind::Sgd),
        "fo-adam" => Some(FoKind::Adam(adam(false))),
        "fo-adamw" => Some(FoKind::Adam(adam(true))),
        _ => None,
    } {
        return Ok(Box::new(FoOptimizer {
            name: inf.name,
            lr: lr as f32,
            wd: wd as f32,
            kind,
            state: StateMap::new(),
            t: 0,
        }));
    }
    let mu = pos("mu", hp.mu, 1e-3)?;
    let q = hp.q.unwrap_or(if name == "zo-ranksgd" { 4 } else { 1 });
    if q == 0 {
        return Err(invalid("q", q, "must be ≥ 1"));
    }
    if name == "zo-ranksgd" && q < 2 {
        return Err(invalid("q", q, "zo-ranksgd ranks m = q ≥ 2 directions"));
    }
    let one_sided = match hp.estimator.as_deref() {
        None | Some("two-sided") => false,
        Some("one-sided") => true,
        Some(o) => {
            return Err(invalid(
                "estimator",
                o,
                "must be `two-sided` or `one-sided`",
            ));
        }
    };
    let sphere = match hp.direction.as_deref() {
        None | Some("gaussian") => false,
        Some("sphere") => true,
        Some(o) => return Err(invalid("direction", o, "must be `gaussian` or `sphere`")),
    };
    let sparsity = hp.sparsity.unwrap_or(0.0);
    if !(0.0..1.0).contains(&sparsity) {
        return Err(invalid("sparsity", sparsity, "must be in [0, 1)"));
    }
    let mode = match hp.sparse_mode.as_deref() {
        None | Some("random") => SparseMode::Random,
        Some("magnitude") => SparseMode::Magnitude,
        Some(o) => return Err(invalid("sparse_mode", o, "must be `random` or `magnitude`")),
    };
    let group = match hp.sparse_group.as_deref() {
        None | Some("layer") => SparseGroup::Layer,
        Some("global") => SparseGroup::Global,
        Some(o) => return Err(invalid("sparse_group", o, "must be `layer` or `global`")),
    };
    let resample_every = hp.resample_every.unwrap_or(u64::MAX);
    if resample_every == 0 {
        return Err(invalid("resample_every", 0, "must be ≥ 1"));
    }
    let parity = hp.zo_bench_parity.unwrap_or(false);
    if parity && mode == SparseMode::Magnitude {
        return Err(invalid(
            "zo_bench_parity",
            true,
            "ZO-Bench's rule places masks at random: use sparse_mode = `random`",
        ));
    }
    let mask_spec = (sparsity > 0.0 || (parity && hp.sparsity.is_some())).then_some(MaskSpec {
        sparsity,
        mode,
        group,
        resample_every,
        zo_bench_parity: parity,
    });
    let fo_lr = pos("fo_lr", hp.fo_lr, lr)?;
    let cap = hp.cge_max_coords.unwrap_or(4096);
    if cap == 0 {
        return Err(invalid("cge_max_coords", 0, "must be ≥ 1"));
    }
    let momentum = unit("momentum", hp.momentum, 0.9)?;
    if hp.hybrid_fo_last_layers == Some(0) {
        return Err(invalid("hybrid_fo_last_layers", 0, "must be ≥ 1"));
    }
    let (est, rule) = match name {
        "zo-sgd" => (Est::Rge, Rule::Sgd),
        "zo-sgd-mmt" => (Est::Rge, Rule::Mmt(momentum as f32)),
        "zo-sgd-sign" => (Est::Rge, Rule::Sign),
        "zo-sgd-sign-elementwise" => (Est::Rge, Rule::SignElementwise),
        "zo-sgd-cons" => (Est::Rge, Rule::Cons),
        "zo-adam" => (Est::Rge, Rule::Adam(adam(false))),
        "zo-cge" => (Est::Cge, Rule::Sgd),
        "forward-grad" => (Est::ForwardGrad, Rule::Sgd),
        "zo-ranksgd" => (Est::Rank, Rule::Sgd),
        _ => unreachable!("registry and build agree"),
    };
    let estimator_name = match (est, one_sided) {
        (Est::Rge, false) => "rge",
        (Est::Rge, true) => "rge-one-sided",
        (Est::Cge, _) => "cge",
        (Est::ForwardGrad, _) => "forward-grad",
        (Est::Rank, _) => "rank",
    };
    Ok(Box::new(ZoOptimizer {
        name: inf.name,
        estimator_name,
        est,
        rule,
        lr: lr as f32,
        mu: mu as f32,
        q,
        wd: wd as f32,
        one_sided,
        sphere,
        mask_spec,
        blockwise: hp.blockwise.unwrap_or(false),
        blocks: hp.blocks.clone(),
        hybrid: hp.hybrid_fo.clone().unwrap_or_default(),
        hybrid_last: hp.hybrid_fo_last_layers.unwrap_or(0),
        fo_lr: fo_lr as f32,
        cap,
        state: StateMap::new(),
        t: 0,
        mask: None,
        mask_epoch: None,
        loaded_mask: None,
    }))
}

/// Sanity for unused-constant lint: the selection keys, in one place.
pub const SELECTION_KEYS: &[&str] = &SEL;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Est {
    Rge,
    Cge,
    ForwardGrad,
    Rank,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Rule {
    Sgd,
    Mmt(f32),
    Sign,
    SignElementwise,
    Cons,
    Adam(AdamHp),
}

/// The resolved selection of one step.
#[derive(Debug, Clone, PartialEq)]
struct Sel {
    zo: Vec<usize>,
    fo: Vec<usize>,
    blocks: Vec<Vec<usize>>,
}

/// A zeroth-order optimizer: estimator + rule + selection (every `zo-*`, `forward-grad`).
struct ZoOptimizer {
    name: &'static str,
    estimator_name: &'static str,
    est: Est,
    rule: Rule,
    lr: f32,
    mu: f32,
    q: usize,
    wd: f32,
    one_sided: bool,
    sphere: bool,
    mask_spec: Option<MaskSpec>,
    blockwise: bool,
    blocks: Option<Vec<Vec<String>>>,
    hybrid: Vec<String>,
    hybrid_last: usize,
    fo_lr: f32,
    cap: u64,
    state: StateMap,
    t: u64,
    mask: Option<Mask>,
    mask_epoch: Option<u64>,
    loaded_mask: Option<crate::select::NamedMask>,
}

const MAGIC: &[u8; 8] = b"ZOOPTv1\n";

impl ZoOptimizer {
    fn resolve(&self, store: &ParamStore) -> Result<Sel, OptimError> {
        let trainable: Vec<usize> = (0..store.params().len())
            .filter(|&i| store.param(i).trainable)
            .collect();
        let max_layer = trainable
            .iter()
            .filter_map(|&i| layer_index(&store.param(i).name))
            .max();
        let last_from = match (self.hybrid_last, max_layer) {
            (0, _) | (_, None) => usize::MAX,
            (k, Some(l)) => (l + 1).saturating_sub(k),
        };
        let fo: Vec<usize> = trainable
            .iter()
            .copied()
            .filter(|&i| {
                let name = &store.param(i).name;
                self.hybrid.iter().any(|p| glob_match(p, name))
                    || layer_index(name).is_some_and(|l| l >= last_from)
            })
            .collect();
        if (!self.hybrid.is_empty() || self.hybrid_last > 0) && fo.is_empty() {
            return Err(OptimError::Selection(format!(
                "hybrid_fo patterns {:?} / hybrid_fo_last_layers {} match no trainable parameter",
                self.hybrid, self.hybrid_last
            )));
        }
        let zo: Vec<usize> = trainable
            .iter()
            .copied()
            .filter(|i| !fo.contains(i))
            .collect();
        let blocks = if !self.blockwise {
            vec![zo.clone()]
        } else {
            let named: Vec<Vec<String>> = match &self.blocks {
                Some(b) => b.clone(),
                None => group_blocks(zo.iter().map(|&i| store.param(i).name.as_str()))
                    .into_iter()
                    .map(|(_, v)| v)
                    .collect(),
            };
            let mut seen = BTreeSet::new();
            let mut out = Vec::new();
            for b in named {
                let mut ids = Vec::new();
                for n in b {
                    let id = store
                        .id(&n)
                        .map_err(|e| OptimError::Selection(format!("block schedule: {e}")))?;
                    if zo.contains(&id) && seen.insert(id) {
                        ids.push(id);
                    }
                }
                if !ids.is_empty() {
                    out.push(ids);
                }
            }
            let rest: Vec<usize> = zo.iter().copied().filter(|i| !seen.contains(i)).collect();
            if !rest.is_empty() {
                out.push(rest); // trainable parameters no block names: one last block
            }
            out
        };
        let blocks = blocks.into_iter().filter(|b| !b.is_empty()).collect();
        Ok(Sel { zo, fo, blocks })
    }

    /// Selected (kept) coordinates of the ZO set under the current or planned mask.
    fn kept_count(&self, store: &ParamStore, sel: &Sel) -> u64 {
        if let Some(m) = &self.mask {
            return m.kept();
        }
        let sizes: Vec<u64> = sel
            .zo
            .iter()
            .map(|&i| store.param(i).numel() as u64)
            .collect();
        let total: u64 = sizes.iter().sum();
        match &self.mask_spec {
            None => total,
            Some(s) if s.zo_bench_parity => total, // not known before sampling
            Some(s) => match s.group {
                SparseGroup::Global => total - exact_drop_count(s.sparsity, total),
                SparseGroup::Layer => sizes
                    .iter()
                    .map(|&n| n - exact_drop_count(s.sparsity, n))
                    .sum(),
            },
        }
    }

    fn per_block_passes(&self) -> u64 {
        let q = self.q as u64;
        let base = match self.est {
            Est::Rge if self.one_sided => q + 1,
            Est::Rge => 2 * q,
            Est::Rank => q,
            Est::ForwardGrad => 1,
            Est::Cge => 0,
        };
        let cons = match (self.rule, self.one_sided) {
            (Rule::Cons, true) => 2,
            (Rule::Cons, false) => 3,
            _ => 0,
        };
        base + cons
    }

    fn refresh_mask(&mut self, store: &ParamStore, sel: &Sel, ctx: StepCtx) -> io::Result<()> {
        let Some(spec) = &self.mask_spec else {
            return Ok(());
        };
        let epoch = if spec.resample_every == u64::MAX {
            0
        } else {
            ctx.step / spec.resample_every
        };
        if let Some((total, named)) = self.loaded_mask.take() {
            self.mask = Some(Mask::from_named(store, total, named)?);
        }
        if self.mask_epoch != Some(epoch) || self.mask.is_none() {
            self.mask = Some(sample_mask(store, &sel.zo, spec, ctx.run_seed, epoch));
            self.mask_epoch = Some(epoch);
        }
        Ok(())
    }

    /// CGE + SGD (DeepZero, Chen et al. 2024, Eq. 3 / `gradient_estimate.py` CGE): with ℓ₀ = ℓ(θ),
    /// for every kept coordinate i of the selected set (store order, then index)
    /// ```text
    /// gᵢ = (ℓ(θ + μ eᵢ) − ℓ₀) / μ            (θᵢ written back exactly after each query)
    /// θᵢ ← θᵢ − η (gᵢ + λ θᵢ)               (all coordinates updated after all queries)
    /// ```
    /// d + 1 forward passes for d kept coordinates; refuses d > `cge_max_coords`.
    fn cge(
        &mut self,
        store: &mut ParamStore,
        ids: &[usize],
        obj: &mut dyn Objective,
        step: u64,
        rep: &mut StepReport,
    ) -> Result<(), StepError> {
        let mask = self.mask.as_ref();
        let mut coords: Vec<(usize, usize)> = Vec::new();
        for &id in ids {
            for j in 0..store.param(id).numel() {
                if mask.is_none_or(|m| m.keeps(id, j)) {
                    coords.push((id, j));
                    if coords.len() as u64 > self.cap {
                        let count = mask.map_or_else(
                            || ids.iter().map(|&i| store.param(i).numel() as u64).sum(),
                            |m| m.kept(),
                        );
                        return Err(OptimError::TooManyCoordinates {
                            count,
                            cap: self.cap,
                        }
                        .into());
                    }
                }
            }
        }
        let l0 = obj.loss(store);
        rep.forward_passes += 1;
        rep.loss = l0;
        if !l0.is_finite() {
            return Err(StepError::Diverged {
                step,
                loss_plus: l0,
                loss_minus: l0,
            });
        }
        let mut g = Vec::with_capacity(coords.len());
        for &(id, j) in &coords {
            let mut d = take(store, id);
            let orig = d.as_slice::<f32>().expect("f32")[j];
            d.as_mut_slice::<f32>().expect("f32")[j] = orig + self.mu;
            put(store, id, d);
            let l = obj.loss(store);
            rep.forward_passes += 1;
            let mut d = take(store, id);
            d.as_mut_slice::<f32>().expect("f32")[j] = orig; // exact restore
            put(store, id, d);
            let gi = (l - l0) / self.mu;
            if !(l.is_finite() && gi.is_finite()) {
                return Err(StepError::Diverged {
                    step,
                    loss_plus: l,
                    loss_minus: l0,
                });
            }
            rep.loss_plus.push(l);
            rep.projected_grad.push(gi);
            g.push(gi);
        }
        let mut i = 0;
        while i < coords.len() {
            let id = coords[i].0;
            let decay = store.param(id).decay;
            let mut d = take(store, id);
            let xs = d.as_mut_slice::<f32>().expect("f32");
            while i < coords.len() && coords[i].0 == id {
                sgd::fo_elem(&mut xs[coords[i].1], g[i], self.lr, self.wd, decay);
                i += 1;
            }
            put(store, id, d);
        }
        Ok(())
    }
}

fn fo_update(store: &mut ParamStore, grads: &BTreeMap<usize, Vec<f32>>, lr: f32, wd: f32) {
    for (&id, g) in grads {
        let decay = store.param(id).decay;
        let mut d = take(store, id);
        for (x, gi) in d.as_mut_slice::<f32>().expect("f32").iter_mut().zip(g) {
            sgd::fo_elem(x, *gi, lr, wd, decay);
        }
        put(store, id, d);
    }
}

fn state_map_bytes(m: &StateMap) -> u64 {
    m.values()
        .flat_map(|v| v.iter())
        .map(|b| b.len() as u64 * 4)
        .sum()
}

fn write_header(w: &mut dyn Write, name: &str, t: u64) -> io::Result<()> {
    w.write_all(MAGIC)?;
    crate::io::write_str(w, name)?;
    crate::io::write_u64(w, t)
}

fn read_header(r: &mut dyn Read, name: &str) -> io::Result<u64> {
    let mut m = [0u8; 8];
    r.read_exact(&mut m)?;
    if &m != MAGIC {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a zo-optim state file",
        ));
    }
    let n = crate::io::read_str(r)?;
    if n != name {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("state of optimizer `{n}`, not `{name}`"),
        ));
    }
    crate::io::read_u64(r)
}

impl Optimizer for ZoOptimizer {
    fn name(&self) -> &str {
        self.name
    }

    fn estimator(&self) -> &str {
        self.estimator_name
    }

    fn validate(&self, store: &ParamStore) -> Result<(), OptimError> {
        let sel = self.resolve(store)?;
        if self.est == Est::Cge {
            let count = self.kept_count(store, &sel);
            if count > self.cap {
                return Err(OptimError::TooManyCoordinates {
                    count,
                    cap: self.cap,
                });
            }
        }
        Ok(())
    }

    fn forward_passes_per_step(&self, store: &ParamStore) -> u64 {
        let Ok(sel) = self.resolve(store) else {
            return 0;
        };
        let hybrid = u64::from(!sel.fo.is_empty());
        if self.est == Est::Cge {
            return if sel.zo.is_empty() {
                hybrid
            } else {
                self.kept_count(store, &sel) + 1 + hybrid
            };
        }
        sel.blocks.len() as u64 * self.per_block_passes() + hybrid
    }

    fn state_bytes(&self) -> u64 {
        state_map_bytes(&self.state) + self.mask.as_ref().map_or(0, Mask::bytes)
    }

    fn planned_state_bytes(&self, store: &ParamStore) -> u64 {
        let Ok(sel) = self.resolve(store) else {
            return 0;
        };
        let n: u64 = sel.zo.iter().map(|&i| store.param(i).numel() as u64).sum();
        let bufs = match self.rule {
            Rule::Mmt(_) => 1,
            Rule::Adam(_) => 2,
            _ => 0,
        };
        let mask: u64 = if self.mask_spec.is_some() {
            sel.zo
                .iter()
                .map(|&i| store.param(i).numel().div_ceil(64) as u64 * 8)
                .sum()
        } else {
            0
        };
        4 * bufs * n + mask
    }

    fn step(
        &mut self,
        store: &mut ParamStore,
        ctx: StepCtx,
        obj: &mut dyn Objective,
    ) -> Result<StepReport, StepError> {
        let sel = self.resolve(store)?;
        if (self.est == Est::ForwardGrad || !sel.fo.is_empty()) && !obj.has_autodiff() {
            return Err(OptimError::Selection(format!(
                "`{}` needs an objective with an autodiff loss_tensor",
                self.name
            ))
            .into());
        }
        self.refresh_mask(store, &sel, ctx)
            .map_err(|e| OptimError::Selection(e.to_string()))?;
        let mut rep = StepReport::default();
        let mut observed = Vec::new();
        // Hybrid: the FO gradient at θ (applied after the ZO part, so both parts see θ).
        let fo_grads = if sel.fo.is_empty() {
            None
        } else {
            let (l, g) = backprop(store, &sel.fo, obj);
            rep.forward_passes += 1;
            rep.backward_passes += 1;
            if !l.is_finite() {
                return Err(StepError::Diverged {
                    step: ctx.step,
                    loss_plus: l,
                    loss_minus: l,
                });
            }
            rep.loss = l;
            Some(g)
        };
        if self.est == Est::Cge {
            if !sel.zo.is_empty() {
                let zo = sel.zo.clone();
                self.cge(store, &zo, obj, ctx.step, &mut rep)?;
            }
        } else {
            // Adam's step count advances only when the step completes (a diverged step
            // leaves the state as it was).
            let t = self.t + 1;
            let q = self.q as u64;
            for (b, ids) in sel.blocks.iter().enumerate() {
                let keys: Vec<NoiseKey> = (0..q)
                    .map(|i| NoiseKey::for_step(ctx.run_seed, ctx.step, b as u64 * q + i))
                    .collect();
                let mask = self.mask.as_ref();
                let e: Estimate = match self.est {
                    Est::Rge => rge(
                        store,
                        ids,
                        mask,
                        &keys,
                        self.mu,
                        self.one_sided,
                        self.sphere,
                        obj,
                        ctx.step,
                    )?,
                    Est::Rank => {
                        rank(store, ids, mask, &keys, self.mu, self.sphere, obj, ctx.step)?
                    }
                    Est::ForwardGrad => {
                        rep.jvp_method = Some("reverse");
                        forward_grad(store, ids, mask, &keys, self.sphere, obj, ctx.step)?
                    }
                    Est::Cge => unreachable!(),
                };
                rep.forward_passes += e.forward_passes;
                rep.backward_passes += e.backward_passes;
                let u = ZoUpdate {
                    ids,
                    mask,
                    dirs: &e.dirs,
                    coef: &e.coef,
                    pending: e.pending,
                };
                match self.rule {
                    Rule::Sgd => sgd::apply(store, &u, self.lr, self.wd),
                    Rule::Mmt(beta) => {
                        mmt::apply(store, &u, &mut self.state, self.lr, beta, self.wd)
                    }
                    Rule::Sign => sign::apply_scalar(store, &u, self.lr, self.wd),
                    Rule::SignElementwise => sign::apply_elementwise(store, &u, self.lr, self.wd),
                    Rule::Adam(hp) => adam::apply(store, &u, &mut self.state, &hp, t),
                    Rule::Cons => {
                        let c = cons::apply(store, &u, self.lr, e.loss0, &mut |s: &ParamStore| {
                            obj.loss(s)
                        });
                        rep.forward_passes += c.forward_passes;
                        rep.cons_choice.push(c.chosen);
                        rep.cons_losses.push(c.losses);
                        if e.loss0.is_none() {
                            observed.push(c.losses[0]);
                        }
                    }
                }
                match e.loss0 {
                    Some(l) => observed.push(l),
                    None => {
                        if !matches!(self.rule, Rule::Cons) {
                            let all: Vec<f32> =
                                e.loss_plus.iter().chain(&e.loss_minus).copied().collect();
                            observed.push(all.iter().sum::<f32>() / all.len().max(1) as f32);
                        }
                    }
                }
                rep.loss_plus.extend(e.loss_plus);
                rep.loss_minus.extend(e.loss_minus);
                rep.projected_grad.extend(e.projected_grad);
            }
            if matches!(self.rule, Rule::Adam(_)) {
                self.t = t;
            }
            if let Some(&first) = observed.first()
                && fo_grads.is_none()
            {
                rep.loss = first;
            }
        }
        if let Some(g) = fo_grads {
            fo_update(store, &g, self.fo_lr, self.wd);
        }
        Ok(rep)
    }

    fn save_state(&self, w: &mut dyn Write) -> io::Result<()> {
        write_header(w, self.name, self.t)?;
        crate::io::write_u64(w, self.mask_epoch.unwrap_or(u64::MAX))?;
        match (&self.mask, &self.loaded_mask) {
            (Some(m), _) => {
                w.write_all(&[1])?;
                m.write(w)?;
            }
            (None, Some((total, named))) => {
                w.write_all(&[1])?;
                crate::io::write_u64(w, *total)?;
                crate::io::write_u64(w, named.len() as u64)?;
                for (n, words) in named {
                    crate::io::write_str(w, n)?;
                    crate::io::write_u64(w, words.len() as u64)?;
                    for x in words {
                        crate::io::write_u64(w, *x)?;
                    }
                }
            }
            (None, None) => w.write_all(&[0])?,
        }
        crate::io::write_state(w, &self.state)
    }

    fn load_state(&mut self, r: &mut dyn Read) -> io::Result<()> {
        self.t = read_header(r, self.name)?;
        let e = crate::io::read_u64(r)?;
        self.mask_epoch = (e != u64::MAX).then_some(e);
        let mut flag = [0u8; 1];
        r.read_exact(&mut flag)?;
        self.mask = None;
        self.loaded_mask = if flag[0] == 1 {
            Some(Mask::read_named(r)?)
        } else {
            None
        };
        self.state = crate::io::read_state(r)?;
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum FoKind {
    Sgd,
    Adam(AdamHp),
}

/// First-order baselines on burn autodiff (`fo-sgd`, `fo-adam`, `fo-adamw`). A step makes the
/// trainable tensors autodiff leaves, calls [`Objective::loss_tensor`] once, back-propagates,
/// applies the rule on the host and leaves plain tensors (evaluate with
/// [`ParamStore::detached`] or directly).
struct FoOptimizer {
    name: &'static str,
    lr: f32,
    wd: f32,
    kind: FoKind,
    state: StateMap,
    t: u64,
}

impl Optimizer for FoOptimizer {
    fn name(&self) -> &str {
        self.name
    }
    fn estimator(&self) -> &str {
        "backprop"
    }
    fn validate(&self, _store: &ParamStore) -> Result<(), OptimError> {
        Ok(())
    }
    fn forward_passes_per_step(&self, _store: &ParamStore) -> u64 {
        1
    }
    fn state_bytes(&self) -> u64 {
        state_map_bytes(&self.state)
    }
    fn planned_state_bytes(&self, store: &ParamStore) -> u64 {
        match self.kind {
            FoKind::Sgd => 0,
            FoKind::Adam(_) => 8 * store.num_trainable() as u64,
        }
    }
    fn step(
        &mut self,
        store: &mut ParamStore,
        ctx: StepCtx,
        obj: &mut dyn Objective,
    ) -> Result<StepReport, StepError> {
        if !obj.has_autodiff() {
            return Err(OptimError::Selection(format!(
                "`{}` needs an objective with an autodiff loss_tensor",
                self.name
            ))
            .into());
        }
        let ids: Vec<usize> = (0..store.params().len())
            .filter(|&i| store.param(i).trainable)
            .collect();
        let (l, grads) = backprop(store, &ids, obj);
        if !l.is_finite() {
            return Err(StepError::Diverged {
                step: ctx.step,
                loss_plus: l,
                loss_minus: l,
            });
        }
        match self.kind {
            FoKind::Sgd => fo_update(store, &grads, self.lr, self.wd),
            FoKind::Adam(hp) => {
                self.t += 1;
                let bc = hp.corrections(self.t);
                for (&id, g) in &grads {
                    let (name, decay, n) = {
                        let p = store.param(id);
                        (p.name.clone(), p.decay, p.numel())
                    };
                    let st = self
                        .state
                        .entry(name)
                        .or_insert_with(|| vec![vec![0.0; n]; 2]);
                    let mut d = take(store, id);
                    let xs = d.as_mut_slice::<f32>().expect("f32");
                    let (m, v) = st.split_at_mut(1);
                    for j in 0..n {
                        let mut s = [m[0][j], v[0][j]];
                        hp.elem(&mut xs[j], g[j], &mut s, decay, bc);
                        m[0][j] = s[0];
                        v[0][j] = s[1];
                    }
                    put(store, id, d);
                }
            }
        }
        Ok(StepReport {
            loss: l,
            forward_passes: 1,
            backward_passes: 1,
            ..Default::default()
        })
    }
    fn save_state(&self, w: &mut dyn Write) -> io::Result<()> {
        write_header(w, self.name, self.t)?;
        crate::io::write_state(w, &self.state)
    }
    fn load_state(&mut self, r: &mut dyn Read) -> io::Result<()> {
        self.t = read_header(r, self.name)?;
        self.state = crate::io::read_state(r)?;
        Ok(())
    }
}
