//! The result record: one JSON line of `runs.jsonl` per sweep cell, and the loss curve lines
//! of `curves/<run_id>.jsonl`.
//!
//! Field names follow `DESIGN.md` ("Result record"). Every field that a failed cell cannot
//! know is an `Option`, serialised as `null`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Final status of one sweep cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CellStatus {
    /// Trained and evaluated to the end.
    Ok,
    /// The training loss became NaN or infinite; the cell stopped at that step.
    Diverged,
    /// The cell process panicked, returned an error or was killed by a signal.
    Failed,
    /// The cell process was killed by the out-of-memory killer (SIGKILL with a full memory).
    Oom,
    /// The cell ran past its wall-time limit.
    Timeout,
}

/// Hyper-parameters of one cell (the optimizer's axis values after grid expansion), by name:
/// `lr` (η), `mu` (μ), `q`, `weight_decay` (λ), `momentum`, `beta1`, … (see
/// `zobench ls optimizers`). Numbers, booleans or strings.
pub type HParams = BTreeMap<String, serde_json::Value>;

/// One line of `runs.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    /// Hex digest of the resolved cell spec; the resume key.
    pub run_id: String,
    /// Sweep name (the config's `name`).
    pub sweep: String,
    /// Model name as written in the grid (registry name or path).
    pub model: String,
    /// Model family (`bert`, …) read from `config.json`'s `model_type`.
    pub family: Option<String>,
    /// Task name (`sst2`, …).
    pub task: String,
    /// Fine-tuning scheme (`ft`, `head`, …).
    pub scheme: String,
    /// Optimizer name (`zo-sgd`, `fo-sgd`, …).
    pub optimizer: String,
    /// Gradient estimator (`rge-two-sided`, `rge-one-sided`, `cge`, `forward-grad`, `rank`,
    /// `backprop`, …).
    pub estimator: String,
    /// Prompt template (`mezo`, `none`, `partial`, `mlm`); recorded for every cell (an
    /// encoder with a classification head ignores it).
    #[serde(default)]
    pub template: Option<String>,
    /// How the cell scored the task: `causal-lm` (candidate log-likelihoods), `classifier`
    /// (a classification head on the pooled encoder output) or `mlm-prompt` (the MLM head's
    /// verbaliser logits at the mask of template `mlm`); `null` when the cell failed before
    /// loading.
    #[serde(default)]
    pub formulation: Option<String>,
    /// `offload` when the cell trained with zo-offload's runtime (layers streamed to a
    /// device); absent for the in-memory runtime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// What the offload runtime measured (absent for in-memory cells): `device`, `transfer`,
    /// `budget_bytes`, `ring` (layers on the device at once), `resident_bytes`,
    /// `bytes_per_step` (host → device), `bytes_uploaded`, `peak_param_bytes` (the runtime's
    /// own tally), `peak_device_bytes` / `peak_device_reserved` (the backend's accounting,
    /// `null` on flex), `weights_bytes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offload: Option<serde_json::Value>,
    /// In-context demonstrations per prompt of an ICL row (optimizer `icl`); `null` for
    /// trained cells.
    #[serde(default)]
    pub icl_shots: Option<usize>,
    /// Forward passes (model calls) spent on evaluation: zero-shot, dev and test (counted).
    #[serde(default)]
    pub eval_forward_passes: Option<u64>,
    /// Name of the task's primary metric (`acc`, or `f1a` for MultiRC): `zero_shot_acc`,
    /// `best_dev_acc` and `test_acc` hold this metric.
    #[serde(default)]
    pub metric: Option<String>,
    /// Every test metric of the task (`acc`, `f1_macro`, `f1a`, `em`, …), each in [0, 1].
    #[serde(default)]
    pub test_metrics: BTreeMap<String, f64>,
    /// Every zero-shot test metric.
    #[serde(default)]
    pub zero_shot_metrics: BTreeMap<String, f64>,
    /// Token rows whose context was cut from the left to fit `max_length` (all splits).
    #[serde(default)]
    pub truncated_rows: Option<usize>,
    /// How Forward-Grad's directional derivative was computed (`reverse`: from a reverse-mode
    /// gradient, so its memory is that of backprop).
    #[serde(default)]
    pub jvp_method: Option<String>,
    /// Where a `diverged` cell stopped: the step and the raw perturbed losses.
    #[serde(default)]
    pub diverged_at: Option<DivergedAt>,
    /// Hyper-parameters of the cell.
    pub hparams: HParams,
    /// Training seed (model head init, batch order, ZO directions).
    pub seed: u64,
    /// Data sampling seed.
    pub data_seed: u64,
    /// Training steps requested.
    pub steps: usize,
    /// Examples per training step.
    pub batch_size: usize,
    /// Final status.
    pub status: CellStatus,
    /// Error text when `status` is not `ok`.
    pub error: Option<String>,
    /// Test accuracy of always predicting the most frequent label of the training split, in
    /// [0, 1]: the floor any trained cell should clear.
    pub majority_acc: Option<f64>,
    /// Test accuracy of the untrained model (before step 0), in [0, 1].
    pub zero_shot_acc: Option<f64>,
    /// Best dev accuracy seen during training (including step 0), in [0, 1].
    pub best_dev_acc: Option<f64>,
    /// Step at which `best_dev_acc` was reached.
    pub best_step: Option<usize>,
    /// Test accuracy of the parameters that were best on dev, in [0, 1].
    pub test_acc: Option<f64>,
    /// Training loss (mean cross-entropy, nats) at the last step.
    pub final_train_loss: Option<f64>,
    /// Number of trainable scalars under the scheme.
    pub trainable_params: Option<u64>,
    /// Number of scalars in the model (backbone + head).
    pub total_params: Option<u64>,
    /// Peak resident memory of the cell process (bytes).
    pub peak_mem_bytes: Option<u64>,
    /// How `peak_mem_bytes` was measured (`VmHWM` on Linux CPU).
    pub mem_method: String,
    /// Analytic memory breakdown in bytes: `weights`, `optimizer_state`, …
    pub mem_breakdown: BTreeMap<String, u64>,
    /// Median wall time of one training step (seconds).
    pub time_per_step_s: Option<f64>,
    /// 10th percentile of the step time (seconds).
    pub time_per_step_p10_s: Option<f64>,
    /// 90th percentile of the step time (seconds).
    pub time_per_step_p90_s: Option<f64>,
    /// Forward passes per training step (2 for two-sided RGE with q = 1; 1 for backprop).
    pub forward_passes_per_step: Option<f64>,
    /// Backward passes per training step (0 for zeroth-order optimizers).
    #[serde(default)]
    pub backward_passes_per_step: Option<f64>,
    /// Forward passes spent on training (excluding evaluation).
    pub total_forward_passes: Option<u64>,
    /// Real number of train / dev / test examples used.
    pub num_train: Option<usize>,
    /// Real number of dev examples used.
    pub num_dev: Option<usize>,
    /// Real number of test examples used.
    pub num_eval: Option<usize>,
    /// Wall time of the whole cell (seconds), including loading and evaluation.
    pub wall_s: f64,
    /// Compute backend (`flex`, `ndarray`, …).
    pub backend: String,
    /// Floating-point precision of the parameters (`f32`).
    pub precision: String,
    /// Worker threads of the cell.
    pub threads: usize,
    /// CPU model name.
    pub cpu: String,
    /// `git rev-parse HEAD` of the zobench checkout (or `unknown`).
    pub git_commit: String,
    /// Crate versions: `zobench`, `burn`.
    pub versions: BTreeMap<String, String>,
    /// RFC 3339 UTC start time.
    pub started_at: String,
}

/// The step at which a cell diverged and the losses it saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DivergedAt {
    /// Training step (1-based).
    pub step: usize,
    /// ℓ(θ + μz) of each query (nats; may be NaN / inf).
    pub loss_plus: Vec<f32>,
    /// ℓ(θ − μz) (or ℓ(θ) for one-sided estimators) of each query.
    pub loss_minus: Vec<f32>,
}

/// One point of a training curve (`curves/<run_id>.jsonl`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CurvePoint {
    /// Step index (1-based: the state after `step` updates).
    pub step: usize,
    /// Training loss of the step's mini-batch (nats). For ZO this is the mean of the two
    /// perturbed losses, the only loss a ZO step computes.
    pub train_loss: f64,
    /// Forward passes spent on training so far.
    pub forward_passes: u64,
    /// Dev accuracy when evaluated at this step.
    pub dev_acc: Option<f64>,
}
