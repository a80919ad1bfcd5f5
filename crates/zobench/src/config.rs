//! Sweep configuration: the TOML grid file, strict parsing and expansion into cells.
//!
//! ```toml
//! name = "default"                 # results/<name>/, reports/<name>/
//! [grid]                           # the axes; every combination is one cell
//! model = ["minilm-l6"]            # registry name, a path to an HF folder or a .gguf file
//! task = ["sst2"]
//! scheme = ["ft", "head"]          # ft | head | lora | prefix | prompt
//! optimizer = ["zo-sgd", "fo-sgd"] # `zobench ls optimizers`
//! template = ["mezo"]              # prompt template of causal-LM cells (`zobench ls templates`)
//! seed = [0]
//! [settings]                       # shared by all cells
//! steps = 300
//! batch_size = 16
//! eval_every = 100
//! num_train = 1000
//! num_dev = 200
//! num_eval = 872
//! [optimizer.zo-sgd]               # hyper-parameter axes of one optimizer (scalar or list)
//! lr = [1e-5]
//! mu = [1e-3]
//! [optimizer.zo-sgd.scheme.head]   # per-scheme override of any axis
//! lr = [1e-2]
//! steps = [600]                    # `steps` may be overridden per optimizer / scheme
//! [scheme.lora]                    # scheme options (LoRA r / alpha / targets, prefix and
//! r = 8                            # prompt token counts)
//! [[exclude]]                      # drop combinations (every given key must match)
//! scheme = "head"
//! optimizer = ["fo-adam"]
//! [[include]]                      # add combinations outside the product (lists expand)
//! model = "bert-tiny"
//! task = "sst2"
//! scheme = "ft"
//! optimizer = "zo-adam"
//! [search]                         # grid (default) or a budgeted random search
//! mode = "random"                  # per (model, task, scheme, optimizer): `budget` settings
//! budget = 4
//! ```
//!
//! Unknown keys are errors (with "did you mean" suggestions); so are unknown axis values and a
//! hyper-parameter that the optimizer does not have.
//!
//! ## The masked-LM prompt formulation
//!
//! `template = ["mlm"]` selects MeZO's RoBERTa prompt (LM-BFF; [`zo_tasks::mlm`]) for an
//! encoder with an MLM head: the MLM head's logits of the verbaliser tokens at the mask are
//! the class scores. The template is an axis, so `template = ["mezo", "mlm"]` runs an encoder
//! both with a classification head and with the prompt. Tasks without an `mlm` template (COPA,
//! WinoGrande) are a config error unless an `[[exclude]]` rule drops them; a causal LM or an
//! encoder without an MLM head fails its cell with an explanation.
//!
//! ## In-context-learning rows
//!
//! The pseudo-optimizer [`ICL`] (`optimizer = ["zo-sgd", "icl"]`, or in an `[[include]]`) adds
//! an in-context-learning baseline row per (model, task, template, seed) and `shots` value:
//!
//! ```toml
//! [optimizer.icl]
//! shots = [0, 16]                  # demonstrations per prompt (default [16])
//! ```
//!
//! An ICL cell trains nothing (`steps = 0`, scheme recorded as `none` whatever the grid's
//! schemes: the cells of every scheme collapse into one); `shots` demonstrations are drawn from
//! the train split with the cell's seed and prepended to every dev and test prompt of a causal
//! LM. `shots` is its only key.

use crate::error::{UserError, did_you_mean};
use crate::optim;
use crate::record::HParams;
use crate::registry;
use rand::SeedableRng;
use rand::seq::IndexedRandom;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Fine-tuning schemes: `ft` (all parameters), `head` (the classification head of an encoder,
/// a linear probe), `lora`, `prefix`, `prompt`.
pub const SCHEMES: &[&str] = &["ft", "head", "lora", "prefix", "prompt"];
/// Backends of this build.
pub const BACKENDS: &[&str] = &["flex"];
/// Pooling modes of the encoder classifier.
pub const POOLINGS: &[&str] = &["mean", "cls", "pooler"];
/// Parameter precisions of this build (the store holds f32).
pub const PRECISIONS: &[&str] = &["f32"];
/// When the test split is evaluated: at the best-dev step or after the last step.
pub const TEST_AT: &[&str] = &["best-dev", "final"];
/// Training losses of causal-LM cells (`auto` = the task's default).
pub const LOSSES: &[&str] = &["auto", "candidate-ce", "gold-lm"];
/// The pseudo-optimizer of in-context-learning rows (no training; see the module docs).
pub const ICL: &str = "icl";
/// The scheme ICL cells are recorded under (no parameters are trained).
pub const ICL_SCHEME: &str = "none";
/// Demonstrations per prompt of an ICL row when `[optimizer.icl]` gives no `shots`.
pub const ICL_DEFAULT_SHOTS: u64 = 16;

/// Keys of a `[scheme.<name>]` table.
pub const SCHEME_KEYS: &[(&str, &[&str])] = &[
    ("lora", &["r", "alpha", "targets"]),
    ("prefix", &["tokens"]),
    ("prompt", &["tokens"]),
];

/// The whole config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepConfig {
    /// Sweep name: the folder under `results/` and `reports/`.
    pub name: String,
    /// The axes.
    pub grid: Grid,
    /// Shared settings.
    pub settings: Settings,
    /// Hyper-parameter axes per optimizer (key: optimizer name).
    #[serde(default)]
    pub optimizer: BTreeMap<String, OptimizerAxes>,
    /// Options per scheme (key: scheme name; see [`SCHEME_KEYS`]).
    #[serde(default)]
    pub scheme: BTreeMap<String, BTreeMap<String, toml::Value>>,
    /// Combinations to drop: each table matches a cell when every key it names matches.
    #[serde(default)]
    pub exclude: Vec<BTreeMap<String, toml::Value>>,
    /// Extra combinations: each table gives every axis but `template`/`seed` (defaults: the
    /// grid's), lists expand.
    #[serde(default)]
    pub include: Vec<BTreeMap<String, toml::Value>>,
    /// Hyper-parameter search.
    #[serde(default)]
    pub search: Search,
    /// Settings of `runtime = "offload"` cells.
    #[serde(default)]
    pub offload: OffloadSettings,
}

/// Runtimes a cell can train with: `memory` (every parameter in memory, the optimizer of
/// zo-optim) or `offload` (zo-offload's ZO2-style runtime: layers streamed to a device).
pub const RUNTIMES: &[&str] = &["memory", "offload"];

/// `[offload]`: where and under which budget `runtime = "offload"` cells train.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OffloadSettings {
    /// Device the layers compute on: `wgpu` (default), `flex` or `cuda[:N]`.
    #[serde(default = "d_offload_device")]
    pub device: String,
    /// Device budget for parameters as a fraction of the model's f32 parameter bytes
    /// (default 0.5); ignored when `budget` is given.
    #[serde(default = "d_budget_fraction")]
    pub budget_fraction: f64,
    /// Device budget: bytes, or a string with a KiB / MiB / GiB suffix (`"256MiB"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<toml::Value>,
    /// Host → device precision: `f32` (exact), `f16`, `bf16`.
    #[serde(default = "d_transfer")]
    pub transfer: String,
}

fn d_offload_device() -> String {
    "wgpu".into()
}
fn d_budget_fraction() -> f64 {
    0.5
}
fn d_transfer() -> String {
    "f32".into()
}

impl Default for OffloadSettings {
    fn default() -> Self {
        Self {
            device: d_offload_device(),
            budget_fraction: d_budget_fraction(),
            budget: None,
            transfer: d_transfer(),
        }
    }
}

/// Parses a byte count: an integer, or a string `N`, `NKiB`, `NMiB`, `NGiB` (also `KB`,
/// `MB`, `GB` as powers of 1000).
pub fn parse_bytes(v: &toml::Value) -> Option<u64> {
    if let Some(i) = v.as_integer() {
        return u64::try_from(i).ok().filter(|&b| b > 0);
    }
    let s = v.as_str()?.trim();
    let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let x: f64 = num.trim().parse().ok()?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        _ => return None,
    };
    let b = x * mult;
    (b.is_finite() && b >= 1.0).then_some(b as u64)
}

/// The device budget of an offloaded cell with model parameter bytes `weights`.
pub fn offload_budget(o: &OffloadSettings, weights: u64) -> u64 {
    o.budget
        .as_ref()
        .and_then(parse_bytes)
        .unwrap_or((weights as f64 * o.budget_fraction) as u64)
}

/// `[search]`: how hyper-parameter settings are chosen per (model, task, scheme, optimizer).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Search {
    /// `grid` (every setting) or `random` (`budget` settings drawn without replacement).
    #[serde(default = "d_mode")]
    pub mode: String,
    /// Settings per group in random mode.
    #[serde(default)]
    pub budget: Option<usize>,
    /// Seed of the random draw.
    #[serde(default)]
    pub seed: u64,
}

fn d_mode() -> String {
    "grid".into()
}

impl Default for Search {
    fn default() -> Self {
        Self {
            mode: d_mode(),
            budget: None,
            seed: 0,
        }
    }
}

/// Grid axes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grid {
    /// Models: registry names (`zobench ls models`), HF folders or `.gguf` files.
    pub model: Vec<String>,
    /// Tasks (`zobench ls tasks`).
    pub task: Vec<String>,
    /// Fine-tuning schemes.
    pub scheme: Vec<String>,
    /// Optimizers (`zobench ls optimizers`).
    pub optimizer: Vec<String>,
    /// Prompt templates of causal-LM cells (`mezo`, `none`); recorded for every cell.
    #[serde(default = "d_templates")]
    pub template: Vec<String>,
    /// Training seeds.
    pub seed: Vec<u64>,
    /// Runtimes (`memory`, `offload`; default `["memory"]`). `offload` applies to `zo-sgd`
    /// cells only (the runtime's one optimizer); other optimizers get no offload cell.
    #[serde(default = "d_runtimes")]
    pub runtime: Vec<String>,
}

fn d_runtimes() -> Vec<String> {
    vec!["memory".into()]
}

fn d_templates() -> Vec<String> {
    vec!["mezo".into()]
}
fn d_eval_batch() -> usize {
    64
}
fn d_max_length() -> usize {
    128
}
fn d_pooling() -> String {
    "mean".into()
}
fn d_backend() -> String {
    "flex".into()
}
fn d_precision() -> String {
    "f32".into()
}
fn d_test_at() -> String {
    "best-dev".into()
}
fn d_loss() -> String {
    "auto".into()
}
fn d_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
fn d_data_dir() -> PathBuf {
    registry::project_root().join("data")
}

/// Settings shared by every cell.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Training steps per cell.
    pub steps: usize,
    /// Training examples per step.
    pub batch_size: usize,
    /// Evaluate on dev every this many steps (and after the last step).
    pub eval_every: usize,
    /// Training examples drawn from the training file.
    pub num_train: usize,
    /// Dev examples drawn from the training file (disjoint from train).
    pub num_dev: usize,
    /// Test examples from the validation file.
    pub num_eval: usize,
    /// Seed of the data sampling.
    #[serde(default)]
    pub data_seed: u64,
    /// Examples per evaluation forward pass.
    #[serde(default = "d_eval_batch")]
    pub eval_batch_size: usize,
    /// Truncation length in tokens (causal LMs: from the left of the context).
    #[serde(default = "d_max_length")]
    pub max_length: usize,
    /// Pooling of the encoder classifier (`mean`, `cls`, `pooler`).
    #[serde(default = "d_pooling")]
    pub pooling: String,
    /// Compute backend (`flex`).
    #[serde(default = "d_backend")]
    pub backend: String,
    /// Parameter precision (`f32`).
    #[serde(default = "d_precision")]
    pub precision: String,
    /// Worker threads per cell.
    #[serde(default = "d_threads")]
    pub threads: usize,
    /// Wall-time limit per cell in seconds (none if absent).
    #[serde(default)]
    pub timeout_s: Option<f64>,
    /// `best-dev` (default): test at the step with the best dev score; `final`: after the
    /// last step.
    #[serde(default = "d_test_at")]
    pub test_at: String,
    /// Training loss of causal-LM cells: `auto` (the task's default), `candidate-ce`, `gold-lm`.
    #[serde(default = "d_loss")]
    pub loss: String,
    /// Folder holding the task data (`sst2/`, …); relative paths are relative to the config
    /// file. Default: the project's `data/`.
    #[serde(default = "d_data_dir")]
    pub data_dir: PathBuf,
}

/// Hyper-parameter axes of one optimizer: every key (`lr`, `mu`, `q`, …; see
/// `zobench ls optimizers`) holds a value or a list of values (an axis); `steps` overrides
/// `settings.steps`; `scheme.<name>` tables override axes for one scheme.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct OptimizerAxes {
    /// Axis values by hyper-parameter name.
    #[serde(flatten)]
    pub axes: BTreeMap<String, toml::Value>,
    /// Per-scheme overrides (key: scheme name).
    #[serde(default)]
    pub scheme: BTreeMap<String, OptimizerAxes>,
}

/// A fully resolved cell: everything a child process needs to run it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CellSpec {
    /// Sweep name (not part of the run id).
    pub sweep: String,
    /// Model name or path.
    pub model: String,
    /// Task name.
    pub task: String,
    /// Scheme name.
    pub scheme: String,
    /// Scheme options (`r`, `alpha`, `targets`, `tokens`), only those of this scheme.
    pub scheme_options: BTreeMap<String, serde_json::Value>,
    /// Optimizer name.
    pub optimizer: String,
    /// Prompt template.
    pub template: String,
    /// Hyper-parameters.
    pub hparams: HParams,
    /// Training seed.
    pub seed: u64,
    /// Data seed.
    pub data_seed: u64,
    /// Steps.
    pub steps: usize,
    /// Batch size.
    pub batch_size: usize,
    /// Dev evaluation interval (steps).
    pub eval_every: usize,
    /// Requested train examples.
    pub num_train: usize,
    /// Requested dev examples.
    pub num_dev: usize,
    /// Requested test examples.
    pub num_eval: usize,
    /// Evaluation batch size.
    pub eval_batch_size: usize,
    /// Truncation length (tokens).
    pub max_length: usize,
    /// Pooling.
    pub pooling: String,
    /// Backend.
    pub backend: String,
    /// Precision.
    pub precision: String,
    /// `best-dev` or `final`.
    pub test_at: String,
    /// Causal-LM training loss (`auto`, `candidate-ce`, `gold-lm`).
    pub loss: String,
    /// Threads.
    pub threads: usize,
    /// Wall-time limit (seconds; not part of the run id).
    pub timeout_s: Option<f64>,
    /// Task data folder (not part of the run id: moving the project keeps its results).
    pub data_dir: PathBuf,
    /// [`data_fingerprint`] of the task's files (part of the run id).
    pub data_sha256: String,
    /// `memory` or `offload` (left out of the JSON, and so of the run id, when `memory`).
    #[serde(default = "d_runtime", skip_serializing_if = "is_memory")]
    pub runtime: String,
    /// The `[offload]` settings of an offloaded cell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offload: Option<OffloadSettings>,
}

fn d_runtime() -> String {
    "memory".into()
}
fn is_memory(s: &String) -> bool {
    s == "memory"
}

impl CellSpec {
    /// The run id: the first 16 hex digits of the SHA-256 of the spec's JSON without the
    /// fields that do not change results (`sweep`, `timeout_s`, `data_dir`; the data's
    /// content is in `data_sha256`).
    pub fn run_id(&self) -> String {
        let mut key = self.clone();
        key.sweep.clear();
        key.timeout_s = None;
        key.data_dir = PathBuf::new();
        let json = serde_json::to_string(&key).expect("serialisable");
        let d = Sha256::digest(json.as_bytes());
        d.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }

    /// A short human label: `model/task/scheme/optimizer lr=… seed=…`.
    pub fn label(&self) -> String {
        let lr = self
            .hparams
            .get("lr")
            .and_then(|v| v.as_f64())
            .map(|x| format!(" lr={x:e}"))
            .unwrap_or_default();
        let shots = match self.hparams.get("shots") {
            Some(k) if self.optimizer == ICL => format!(" shots={k}"),
            _ => String::new(),
        };
        let rt = if self.runtime == "memory" {
            String::new()
        } else {
            format!(" [{}]", self.runtime)
        };
        format!(
            "{}/{}/{}/{}{rt}{lr}{shots} seed={}",
            self.model, self.task, self.scheme, self.optimizer, self.seed
        )
    }

    /// A hyper-parameter as f64 (`None` if absent or not a number).
    pub fn hp_f64(&self, key: &str) -> Option<f64> {
        self.hparams.get(key).and_then(|v| v.as_f64())
    }
}

fn check_values(
    file: &Path,
    key: &str,
    values: &[String],
    valid: &[&str],
) -> Result<(), UserError> {
    if values.is_empty() {
        return Err(UserError::new(format!(
            "{}: `{key}` is empty; give at least one of: {}",
            file.display(),
            valid.join(", ")
        )));
    }
    for v in values {
        if !valid.contains(&v.as_str()) {
            return Err(UserError::new(format!(
                "{}: `{key}`: unknown value `{v}`{}; valid: {}",
                file.display(),
                did_you_mean(v, valid),
                valid.join(", ")
            )));
        }
    }
    Ok(())
}

/// A TOML scalar or list as a list of JSON values.
fn as_list(v: &toml::Value) -> Vec<serde_json::Value> {
    let one = |x: &toml::Value| serde_json::to_value(x).unwrap_or(serde_json::Value::Null);
    match v {
        toml::Value::Array(a) => a.iter().map(one).collect(),
        x => vec![one(x)],
    }
}

/// A TOML scalar or list of strings as strings (`None` if an element is not a string).
fn as_strings(v: &toml::Value) -> Option<Vec<String>> {
    as_list(v)
        .into_iter()
        .map(|x| x.as_str().map(String::from))
        .collect()
}

/// Checks one optimizer table (or one per-scheme override of it).
fn check_axes(
    file: &Path,
    table: &str,
    optimizer: &str,
    a: &OptimizerAxes,
) -> Result<(), UserError> {
    for (k, v) in &a.axes {
        let vals = as_list(v);
        if vals.is_empty() {
            return Err(UserError::new(format!(
                "{}: `[{table}]`: `{k}` is an empty list; give at least one value",
                file.display()
            )));
        }
        if optimizer == ICL {
            if k != "shots" {
                return Err(UserError::new(format!(
                    "{}: `[{table}]`: `{k}` is not a key of icl{}; it takes: shots (icl rows train nothing)",
                    file.display(),
                    did_you_mean(k, &["shots"])
                )));
            }
            if vals.iter().any(|x| x.as_u64().is_none()) {
                return Err(UserError::new(format!(
                    "{}: `[{table}]`: `shots` must be non-negative integers (demonstrations per prompt), got {v}",
                    file.display()
                )));
            }
            continue;
        }
        if k == "steps" {
            if vals.iter().any(|x| x.as_u64().is_none_or(|n| n == 0)) {
                return Err(UserError::new(format!(
                    "{}: `[{table}]`: `steps` must be positive integers, got {v}",
                    file.display()
                )));
            }
            continue;
        }
        for x in &vals {
            optim::check_hparam(optimizer, k, x)
                .map_err(|e| UserError::new(format!("{}: `[{table}]`: {e}", file.display())))?;
        }
    }
    Ok(())
}

/// "`table.key`: " for the key assigned on 1-based `line` of a TOML text (empty if none).
fn key_at(text: &str, line: usize) -> String {
    let mut table = String::new();
    for (i, l) in text.lines().enumerate() {
        let t = l.trim();
        if t.starts_with('[') {
            table = t.trim_matches(|c| c == '[' || c == ']').to_string();
        }
        if i + 1 == line {
            return match t.split_once('=') {
                Some((k, _)) if !t.starts_with('[') => {
                    let k = k.trim();
                    if table.is_empty() {
                        format!("`{k}`: ")
                    } else {
                        format!("`{table}.{k}`: ")
                    }
                }
                _ => String::new(),
            };
        }
    }
    String::new()
}

impl SweepConfig {
    /// Reads and validates a config file.
    ///
    /// # Errors
    /// A [`UserError`] naming the file and, for TOML errors, the line, column and key; for an
    /// unknown name, the valid choices and the closest one.
    pub fn from_file(path: &Path) -> Result<Self, UserError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| UserError::new(format!("cannot read config `{}`: {e}", path.display())))?;
        let mut cfg: SweepConfig = toml::from_str(&text).map_err(|e| {
            let mut msg = format!("{}: {}", path.display(), e.message());
            if let Some(span) = e.span() {
                let line = text[..span.start].matches('\n').count() + 1;
                let col =
                    span.start - text[..span.start].rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
                msg = format!(
                    "{}:{line}:{col}: {}{}",
                    path.display(),
                    key_at(&text, line),
                    e.message()
                );
            }
            if let Some(field) = e
                .message()
                .strip_prefix("unknown field `")
                .and_then(|s| s.split('`').next())
            {
                let valid: Vec<String> = e
                    .message()
                    .split("expected ")
                    .nth(1)
                    .map(|s| {
                        s.split(['`', ',', ' '])
                            .filter(|w| !w.is_empty() && *w != "one" && *w != "of" && *w != "or")
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default();
                let refs: Vec<&str> = valid.iter().map(String::as_str).collect();
                msg.push_str(&did_you_mean(field, &refs));
            }
            UserError::new(msg)
        })?;
        if let Some(dir) = path.parent() {
            if cfg.settings.data_dir.is_relative() {
                cfg.settings.data_dir = dir.join(&cfg.settings.data_dir);
            }
        }
        cfg.validate(path)?;
        Ok(cfg)
    }

    fn validate(&self, file: &Path) -> Result<(), UserError> {
        let g = &self.grid;
        let err = |msg: String| Err(UserError::new(format!("{}: {msg}", file.display())));
        if self.name.is_empty() || self.name.contains(['/', '\\']) || self.name.starts_with('.') {
            return err(format!(
                "`name` must be a plain folder name, got `{}`",
                self.name
            ));
        }
        if g.model.is_empty() {
            return err("`grid.model` is empty".into());
        }
        for m in &g.model {
            // A path is checked when a sweep loads it (paper-scale grids name checkpoints that
            // only exist on GPU machines); a registry name must be known.
            if !registry::is_path(m) {
                registry::resolve_name(m).map_err(|e| {
                    UserError::new(format!("{}: `grid.model`: {e}", file.display()))
                })?;
            }
        }
        check_values(file, "grid.task", &g.task, zo_tasks::TASKS)?;
        check_values(file, "grid.scheme", &g.scheme, SCHEMES)?;
        let mut opt_names = optim::names();
        opt_names.push(ICL);
        check_values(file, "grid.optimizer", &g.optimizer, &opt_names)?;
        // Template names must exist; whether a task has the template is checked per
        // combination below (after `[[exclude]]`).
        let mut all_templates: Vec<&str> = Vec::new();
        for t in zo_tasks::TASKS {
            for tp in zo_tasks::templates(t) {
                if !all_templates.contains(tp) {
                    all_templates.push(tp);
                }
            }
        }
        check_values(file, "grid.template", &g.template, &all_templates)?;
        check_values(file, "grid.runtime", &g.runtime, RUNTIMES)?;
        if g.runtime.iter().any(|r| r == "offload") {
            let o = &self.offload;
            zo_offload::parse_device(&o.device).map_err(|e| {
                UserError::new(format!("{}: `offload.device`: {e}", file.display()))
            })?;
            zo_offload::Transfer::parse(&o.transfer).map_err(|_| {
                UserError::new(format!(
                    "{}: `offload.transfer` = `{}`{}; valid: f32, f16, bf16",
                    file.display(),
                    o.transfer,
                    did_you_mean(&o.transfer, &["f32", "f16", "bf16"])
                ))
            })?;
            if !(o.budget_fraction.is_finite() && o.budget_fraction > 0.0) {
                return err(format!(
                    "`offload.budget_fraction` must be a positive number, got {}",
                    o.budget_fraction
                ));
            }
            if let Some(b) = &o.budget {
                if parse_bytes(b).is_none() {
                    return err(format!(
                        "`offload.budget` = {b} is not a byte count (an integer, or a string such as \"256MiB\" or \"2GiB\")"
                    ));
                }
            }
            if !g.optimizer.iter().any(|o| o == "zo-sgd") {
                return err(
                    "`grid.runtime` has \"offload\" but `grid.optimizer` has no `zo-sgd`, the offload runtime's optimizer".into(),
                );
            }
            // The offload step is MeZO's: q = 1, two-sided, Gaussian, no selection.
            if let Some(axes) = self.optimizer.get("zo-sgd") {
                for (table, sub) in std::iter::once(("optimizer.zo-sgd".to_string(), axes)).chain(
                    axes.scheme
                        .iter()
                        .map(|(k, v)| (format!("optimizer.zo-sgd.scheme.{k}"), v)),
                ) {
                    for (k, v) in &sub.axes {
                        let ok = match k.as_str() {
                            "lr" | "mu" | "weight_decay" | "steps" => true,
                            "q" => as_list(v).iter().all(|x| x.as_u64() == Some(1)),
                            "estimator" => {
                                as_list(v).iter().all(|x| x.as_str() == Some("two-sided"))
                            }
                            "direction" => {
                                as_list(v).iter().all(|x| x.as_str() == Some("gaussian"))
                            }
                            _ => false,
                        };
                        if !ok {
                            return err(format!(
                                "`[{table}]` `{k}` = {v}: runtime = \"offload\" runs MeZO's ZO-SGD step (q = 1, two-sided, Gaussian directions, no sparsity / block-wise / hybrid selection); drop `{k}` or the offload runtime"
                            ));
                        }
                    }
                }
            }
        }
        if g.seed.is_empty() {
            return err("`grid.seed` is empty".into());
        }
        let s = &self.settings;
        for (key, v, valid) in [
            ("settings.backend", &s.backend, BACKENDS),
            ("settings.pooling", &s.pooling, POOLINGS),
            ("settings.precision", &s.precision, PRECISIONS),
            ("settings.test_at", &s.test_at, TEST_AT),
            ("settings.loss", &s.loss, LOSSES),
        ] {
            check_values(file, key, std::slice::from_ref(v), valid)?;
        }
        for (k, v) in [
            ("num_train", s.num_train),
            ("num_dev", s.num_dev),
            ("num_eval", s.num_eval),
            ("steps", s.steps),
            ("batch_size", s.batch_size),
            ("eval_every", s.eval_every),
            ("threads", s.threads),
            ("eval_batch_size", s.eval_batch_size),
            ("max_length", s.max_length),
        ] {
            if v == 0 {
                return err(format!("`settings.{k}` must be at least 1"));
            }
        }
        if let Some(t) = s.timeout_s {
            if !(t.is_finite() && t > 0.0) {
                return err(format!(
                    "`settings.timeout_s` must be a positive number of seconds, got {t}"
                ));
            }
        }
        for (name, axes) in &self.optimizer {
            if !opt_names.contains(&name.as_str()) {
                return err(format!(
                    "`[optimizer.{name}]`: unknown optimizer{}; valid: {}",
                    did_you_mean(name, &opt_names),
                    opt_names.join(", ")
                ));
            }
            if name == ICL && !axes.scheme.is_empty() {
                return err(
                    "`[optimizer.icl.scheme.*]`: icl rows apply no scheme; give `shots` in `[optimizer.icl]` only".into(),
                );
            }
            for sch in axes.scheme.keys() {
                check_values(
                    file,
                    &format!("optimizer.{name}.scheme"),
                    std::slice::from_ref(sch),
                    SCHEMES,
                )?;
            }
            for (table, sub) in std::iter::once((format!("optimizer.{name}"), axes)).chain(
                axes.scheme
                    .iter()
                    .map(|(k, v)| (format!("optimizer.{name}.scheme.{k}"), v)),
            ) {
                check_axes(file, &table, name, sub)?;
            }
        }
        for (sch, opts) in &self.scheme {
            let Some((_, keys)) = SCHEME_KEYS.iter().find(|(n, _)| n == sch) else {
                let names: Vec<&str> = SCHEME_KEYS.iter().map(|(n, _)| *n).collect();
                return err(format!(
                    "`[scheme.{sch}]`: no options for this scheme{}; schemes with options: {}",
                    did_you_mean(sch, &names),
                    names.join(", ")
                ));
            };
            for (k, v) in opts {
                if !keys.contains(&k.as_str()) {
                    return err(format!(
                        "`[scheme.{sch}]`: unknown key `{k}`{}; valid: {}",
                        did_you_mean(k, keys),
                        keys.join(", ")
                    ));
                }
                let ok = match k.as_str() {
                    "targets" => as_strings(v).is_some_and(|t| !t.is_empty()),
                    "alpha" => v
                        .as_float()
                        .or(v.as_integer().map(|i| i as f64))
                        .is_some_and(|x| x > 0.0),
                    "tokens" => v.as_integer().is_some_and(|n| n >= 0),
                    _ => v.as_integer().is_some_and(|n| n > 0),
                };
                if !ok {
                    return err(format!(
                        "`[scheme.{sch}]`: `{k}` = {v} is not valid (r: positive integer, alpha: positive number, tokens: integer ≥ 0, targets: non-empty list of parameter-path patterns)"
                    ));
                }
            }
        }
        let axis_keys = ["model", "task", "scheme", "optimizer", "template", "seed"];
        for (what, rules) in [("exclude", &self.exclude), ("include", &self.include)] {
            for (i, r) in rules.iter().enumerate() {
                if r.is_empty() {
                    return err(format!("`[[{what}]]` #{}: empty table", i + 1));
                }
                for k in r.keys() {
                    if !axis_keys.contains(&k.as_str()) {
                        return err(format!(
                            "`[[{what}]]` #{}: unknown axis `{k}`{}; axes: {}",
                            i + 1,
                            did_you_mean(k, &axis_keys),
                            axis_keys.join(", ")
                        ));
                    }
                }
                if what == "include" {
                    // An include of icl rows only needs no scheme (icl applies none).
                    let only_icl = r
                        .get("optimizer")
                        .and_then(as_strings)
                        .is_some_and(|o| !o.is_empty() && o.iter().all(|x| x == ICL));
                    for k in ["model", "task", "scheme", "optimizer"] {
                        if k == "scheme" && only_icl {
                            continue;
                        }
                        if !r.contains_key(k) {
                            return err(format!(
                                "`[[include]]` #{}: give `{k}` (an include adds whole combinations)",
                                i + 1
                            ));
                        }
                    }
                    let list = |k: &str| as_strings(&r[k]).unwrap_or_default();
                    check_values(file, "include.task", &list("task"), zo_tasks::TASKS)?;
                    if !only_icl {
                        check_values(file, "include.scheme", &list("scheme"), SCHEMES)?;
                    }
                    if r.contains_key("template") {
                        check_values(file, "include.template", &list("template"), &all_templates)?;
                    }
                    check_values(file, "include.optimizer", &list("optimizer"), &opt_names)?;
                    for m in list("model").into_iter().filter(|m| !registry::is_path(m)) {
                        registry::resolve_name(&m).map_err(|e| {
                            UserError::new(format!("{}: `include.model`: {e}", file.display()))
                        })?;
                    }
                }
            }
        }
        match (self.search.mode.as_str(), self.search.budget) {
            ("grid", None) => {}
            ("grid", Some(_)) => {
                return err("`search.budget` applies to `mode = \"random\"` only".into());
            }
            ("random", Some(b)) if b > 0 => {}
            ("random", _) => {
                return err(
                    "`search.mode = \"random\"` needs `budget` ≥ 1 (settings per group)".into(),
                );
            }
            (m, _) => {
                return err(format!(
                    "`search.mode`: unknown value `{m}`{}; valid: grid, random",
                    did_you_mean(m, &["grid", "random"])
                ));
            }
        }
        for (combo, _) in self.combinations() {
            let [_, task, _, _, template] = &combo;
            if !zo_tasks::templates(task).contains(&template.as_str()) {
                let why = if template == zo_tasks::MLM_TEMPLATE {
                    format!("{}", zo_tasks::TaskError::NoMlmTemplate(task.clone()))
                } else {
                    format!(
                        "task `{task}` has no template `{template}` (its templates: {})",
                        zo_tasks::templates(task).join(", ")
                    )
                };
                return err(format!(
                    "`grid.template`: {why}; drop the combination with an `[[exclude]]` rule (task = \"{task}\", template = \"{template}\")"
                ));
            }
        }
        if self.expand().is_empty() {
            return err(
                "the grid is empty after `[[exclude]]` rules; remove a rule or add values".into(),
            );
        }
        Ok(())
    }

    /// The (model, task, scheme, optimizer, template) combinations: the grid's product plus
    /// `[[include]]`s, minus `[[exclude]]`s, each paired with its seeds.
    fn combinations(&self) -> Vec<([String; 5], Vec<u64>)> {
        let g = &self.grid;
        let mut out: Vec<([String; 5], Vec<u64>)> = Vec::new();
        let mut push = |combo: [String; 5], seeds: &Vec<u64>| {
            if let Some(e) = out.iter_mut().find(|(c, _)| *c == combo) {
                for s in seeds {
                    if !e.1.contains(s) {
                        e.1.push(*s);
                    }
                }
            } else {
                out.push((combo, seeds.clone()));
            }
        };
        for m in &g.model {
            for t in &g.task {
                for s in &g.scheme {
                    for o in &g.optimizer {
                        for tp in &g.template {
                            push(
                                [
                                    m.clone(),
                                    t.clone(),
                                    scheme_of_combo(s, o),
                                    o.clone(),
                                    tp.clone(),
                                ],
                                &g.seed,
                            );
                        }
                    }
                }
            }
        }
        for inc in &self.include {
            let list = |k: &str, d: &Vec<String>| {
                inc.get(k).and_then(as_strings).unwrap_or_else(|| d.clone())
            };
            let seeds: Vec<u64> = inc
                .get("seed")
                .map(|v| as_list(v).iter().filter_map(|x| x.as_u64()).collect())
                .unwrap_or_else(|| g.seed.clone());
            for m in list("model", &vec![]) {
                for t in list("task", &vec![]) {
                    for s in list("scheme", &vec![ICL_SCHEME.to_string()]) {
                        for o in list("optimizer", &vec![]) {
                            for tp in list("template", &g.template) {
                                push(
                                    [
                                        m.clone(),
                                        t.clone(),
                                        scheme_of_combo(&s, &o),
                                        o.clone(),
                                        tp.clone(),
                                    ],
                                    &seeds,
                                );
                            }
                        }
                    }
                }
            }
        }
        let names = ["model", "task", "scheme", "optimizer", "template"];
        let mut result = Vec::new();
        for (combo, seeds) in out {
            let mut kept = vec![];
            for seed in seeds {
                let excluded = self.exclude.iter().any(|rule| {
                    rule.iter().all(|(k, v)| {
                        let vals = as_list(v);
                        if k == "seed" {
                            return vals.iter().any(|x| x.as_u64() == Some(seed));
                        }
                        let i = names.iter().position(|n| n == k).expect("validated axis");
                        vals.iter().any(|x| x.as_str() == Some(combo[i].as_str()))
                    })
                });
                if !excluded {
                    kept.push(seed);
                }
            }
            if !kept.is_empty() {
                result.push((combo, kept));
            }
        }
        result
    }

    /// Expands the grid into cells, in a stable order (combination, steps, hyper-parameter
    /// setting, seed). Hyper-parameter axes: the optimizer table's, overridden per scheme,
    /// filled from the optimizer's defaults for the scheme; in random search, `budget` settings
    /// per combination are drawn (the same settings for every seed).
    pub fn expand(&self) -> Vec<CellSpec> {
        let s = &self.settings;
        let g_runtimes = &self.grid.runtime;
        let mut cells = Vec::new();
        let mut fingerprints: BTreeMap<String, String> = BTreeMap::new();
        for (combo, seeds) in self.combinations() {
            let [model, task, scheme, opt, template] = combo;
            let fp = fingerprints
                .entry(task.clone())
                .or_insert_with(|| data_fingerprint(&task, &s.data_dir))
                .clone();
            let base = self.optimizer.get(&opt).cloned().unwrap_or_default();
            let over = base.scheme.get(&scheme).cloned().unwrap_or_default();
            let mut axes: BTreeMap<String, Vec<serde_json::Value>> = if opt == ICL {
                BTreeMap::from([("shots".to_string(), vec![ICL_DEFAULT_SHOTS.into()])])
            } else {
                optim::default_axes(&opt, &scheme)
            };
            for (k, v) in base.axes.iter().chain(over.axes.iter()) {
                axes.insert(k.clone(), as_list(v));
            }
            if opt == ICL {
                // An ICL row trains nothing.
                axes.insert("steps".into(), vec![0.into()]);
            }
            let steps_axis: Vec<usize> = axes
                .remove("steps")
                .map(|v| {
                    v.iter()
                        .filter_map(|x| x.as_u64())
                        .map(|x| x as usize)
                        .collect()
                })
                .unwrap_or_else(|| vec![s.steps]);
            let mut settings: Vec<HParams> = vec![HParams::new()];
            for (k, vals) in &axes {
                settings = settings
                    .into_iter()
                    .flat_map(|hp| {
                        vals.iter().map(move |v| {
                            let mut h = hp.clone();
                            h.insert(k.clone(), v.clone());
                            h
                        })
                    })
                    .collect();
            }
            if let (Some(budget), "random") = (self.search.budget, self.search.mode.as_str()) {
                let group = format!("{model}/{task}/{scheme}/{opt}/{template}");
                let seed = self.search.seed
                    ^ u64::from_le_bytes(
                        Sha256::digest(group.as_bytes())[..8]
                            .try_into()
                            .expect("8 bytes"),
                    );
                let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(seed);
                settings = settings
                    .choose_multiple(&mut rng, budget.min(settings.len()))
                    .cloned()
                    .collect();
            }
            let scheme_options: BTreeMap<String, serde_json::Value> = self
                .scheme
                .get(&scheme)
                .map(|t| {
                    t.iter()
                        .map(|(k, v)| (k.clone(), serde_json::to_value(v).unwrap_or_default()))
                        .collect()
                })
                .unwrap_or_default();
            let runtimes: Vec<&String> = g_runtimes
                .iter()
                .filter(|r| r.as_str() == "memory" || opt == "zo-sgd")
                .collect();
            for &steps in &steps_axis {
                for hp in &settings {
                    for runtime in &runtimes {
                        for &seed in &seeds {
                            cells.push(CellSpec {
                                sweep: self.name.clone(),
                                model: model.clone(),
                                task: task.clone(),
                                scheme: scheme.clone(),
                                scheme_options: scheme_options.clone(),
                                optimizer: opt.clone(),
                                template: template.clone(),
                                hparams: hp.clone(),
                                seed,
                                data_seed: s.data_seed,
                                steps,
                                batch_size: s.batch_size,
                                eval_every: s.eval_every,
                                num_train: s.num_train,
                                num_dev: s.num_dev,
                                num_eval: s.num_eval,
                                eval_batch_size: s.eval_batch_size,
                                max_length: s.max_length,
                                pooling: s.pooling.clone(),
                                backend: s.backend.clone(),
                                precision: s.precision.clone(),
                                test_at: s.test_at.clone(),
                                loss: s.loss.clone(),
                                threads: s.threads,
                                timeout_s: s.timeout_s,
                                data_dir: s.data_dir.clone(),
                                data_sha256: fp.clone(),
                                runtime: (*runtime).clone(),
                                offload: (runtime.as_str() == "offload")
                                    .then(|| self.offload.clone()),
                            });
                        }
                    }
                }
            }
        }
        // Identical cells (e.g. a repeated axis value) run once.
        let mut seen = std::collections::HashSet::new();
        cells.retain(|c| seen.insert(c.run_id()));
        cells
    }
}

/// The scheme a combination is recorded under: [`ICL_SCHEME`] for ICL rows (which apply no
/// scheme, so the grid's schemes collapse into one row), else `scheme`.
fn scheme_of_combo(scheme: &str, optimizer: &str) -> String {
    if optimizer == ICL {
        ICL_SCHEME.to_string()
    } else {
        scheme.to_string()
    }
}

/// SHA-256 (first 16 hex digits) of the contents of a task's data files, or `missing` when
/// one cannot be read: part of the run id, so a changed data set is never mistaken for a
/// finished cell.
pub fn data_fingerprint(task: &str, data_dir: &Path) -> String {
    let mut h = Sha256::new();
    for f in zo_tasks::task_files(task, data_dir) {
        match std::fs::read(&f) {
            Ok(bytes) => h.update(&bytes),
            Err(_) => return "missing".into(),
        }
    }
    h.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<SweepConfig, UserError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, body).unwrap();
        SweepConfig::from_file(&p)
    }

    const BASE: &str = r#"name = "x"
[grid]
model = ["bert-tiny"]
task = ["sst2"]
scheme = ["ft", "head"]
optimizer = ["zo-sgd", "fo-sgd"]
seed = [0, 1]
[settings]
steps = 10
batch_size = 4
eval_every = 5
num_train = 8
num_dev = 8
num_eval = 8
[optimizer.zo-sgd]
lr = [1e-5, 1e-6]
mu = [1e-3]
[optimizer.zo-sgd.scheme.head]
lr = [1e-2]
steps = [30]
"#;

    #[test]
    fn expands_axes_with_per_scheme_overrides() {
        let cells = parse(BASE).unwrap().expand();
        // ft: zo 2 lr × 2 seeds + fo 1 × 2; head: zo 1 × 2 + fo 1 × 2.
        assert_eq!(cells.len(), 4 + 2 + 2 + 2);
        let zo_head: Vec<_> = cells
            .iter()
            .filter(|c| c.scheme == "head" && c.optimizer == "zo-sgd")
            .collect();
        assert!(zo_head.iter().all(|c| c.hp_f64("lr") == Some(1e-2)
            && c.steps == 30
            && c.hp_f64("mu") == Some(1e-3)));
        let zo_ft: Vec<_> = cells
            .iter()
            .filter(|c| c.scheme == "ft" && c.optimizer == "zo-sgd")
            .collect();
        assert!(zo_ft.iter().all(|c| c.steps == 10));
        let fo: Vec<_> = cells.iter().filter(|c| c.optimizer == "fo-sgd").collect();
        assert!(
            fo.iter()
                .all(|c| c.hparams.get("mu").is_none() && c.hparams.get("q").is_none())
        );
        // Run ids are unique and stable.
        let ids: std::collections::HashSet<_> = cells.iter().map(CellSpec::run_id).collect();
        assert_eq!(ids.len(), cells.len());
        assert_eq!(parse(BASE).unwrap().expand()[3].run_id(), cells[3].run_id());
    }

    #[test]
    fn exclude_include_and_random_search() {
        let cfg = format!(
            "{BASE}[[exclude]]\nscheme = \"head\"\noptimizer = \"fo-sgd\"\n[[include]]\nmodel = \"bert-tiny\"\ntask = \"copa\"\nscheme = \"lora\"\noptimizer = [\"zo-adam\"]\nseed = 7\n"
        );
        let cells = parse(&cfg).unwrap().expand();
        assert!(
            !cells
                .iter()
                .any(|c| c.scheme == "head" && c.optimizer == "fo-sgd")
        );
        let inc: Vec<_> = cells.iter().filter(|c| c.task == "copa").collect();
        assert_eq!(inc.len(), 1);
        assert_eq!(
            (
                inc[0].scheme.as_str(),
                inc[0].optimizer.as_str(),
                inc[0].seed
            ),
            ("lora", "zo-adam", 7)
        );
        // Random search: `budget` of the 2 x 3 zo-sgd ft settings, the same for both seeds.
        let cfg = BASE.replace("mu = [1e-3]", "mu = [1e-2, 1e-3, 1e-4]")
            + "[search]\nmode = \"random\"\nbudget = 2\nseed = 3\n";
        let cells = parse(&cfg).unwrap().expand();
        let zo_ft: Vec<_> = cells
            .iter()
            .filter(|c| c.scheme == "ft" && c.optimizer == "zo-sgd")
            .collect();
        assert_eq!(zo_ft.len(), 2 * 2, "2 settings x 2 seeds");
        let settings: std::collections::HashSet<String> = zo_ft
            .iter()
            .map(|c| serde_json::to_string(&c.hparams).unwrap())
            .collect();
        assert_eq!(settings.len(), 2);
        assert_eq!(
            parse(&cfg).unwrap().expand().len(),
            cells.len(),
            "the draw is reproducible"
        );
    }

    #[test]
    fn run_id_ignores_sweep_name_and_timeout_only() {
        let c = parse(BASE).unwrap().expand().remove(0);
        let mut d = c.clone();
        d.sweep = "other".into();
        d.timeout_s = Some(5.0);
        assert_eq!(c.run_id(), d.run_id());
        d.hparams.insert("lr".into(), 2e-5.into());
        assert_ne!(c.run_id(), d.run_id());
    }

    #[test]
    fn run_id_changes_with_the_data_and_duplicate_cells_collapse() {
        let data = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(data.path().join("sst2")).unwrap();
        let src = registry::project_root().join("data/sst2");
        for f in ["train.tsv", "dev.tsv"] {
            std::fs::copy(src.join(f), data.path().join("sst2").join(f)).unwrap();
        }
        let body = BASE.replace(
            "[settings]\n",
            &format!(
                "[settings]\ndata_dir = {:?}\n",
                data.path().to_str().unwrap()
            ),
        );
        let a = parse(&body).unwrap().expand();
        assert_eq!(a[0].run_id(), parse(&body).unwrap().expand()[0].run_id());
        std::fs::write(
            data.path().join("sst2/dev.tsv"),
            "label\tsentence\n1\tfine .\n",
        )
        .unwrap();
        let b = parse(&body).unwrap().expand();
        assert_ne!(
            a[0].run_id(),
            b[0].run_id(),
            "changed data must not reuse finished cells"
        );
        // A repeated seed expands to the same cells once.
        let twice = parse(&BASE.replace("seed = [0, 1]", "seed = [0, 0, 1]"))
            .unwrap()
            .expand();
        assert_eq!(twice.len(), parse(BASE).unwrap().expand().len());
    }

    #[test]
    fn unknown_keys_and_names_are_explained() {
        let e = parse(&BASE.replace("batch_size", "batch_sise"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown field `batch_sise`") && e.contains("did you mean `batch_size`"),
            "{e}"
        );
        let e = parse(&BASE.replace("[optimizer.zo-sgd]", "[optimizer.zo-adamw]"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("optimizer.zo-adamw")
                && e.contains("did you mean `zo-adam`")
                && e.contains("valid: zo-sgd, zo-sgd-mmt"),
            "{e}"
        );
        let e = parse(&BASE.replace("scheme = [\"ft\", \"head\"]", "scheme = [\"lorra\"]"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("grid.scheme") && e.contains("`lorra`") && e.contains("did you mean `lora`"),
            "{e}"
        );
        // A hyper-parameter the optimizer does not have, and a bad value, name the key.
        let e = parse(&BASE.replace("mu = [1e-3]", "mu = [1e-3]\nmomentum = [0.9]"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("optimizer.zo-sgd")
                && e.contains("`momentum` is not a hyper-parameter of zo-sgd"),
            "{e}"
        );
        for (bad, key) in [
            ("mu = [0.0]", "mu"),
            ("mu = [1e-3]\nq = [0]", "q"),
            ("mu = [1e-3]\nsparsity = [1.0]", "sparsity"),
        ] {
            let e = parse(&BASE.replace("mu = [1e-3]", bad))
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{bad}: {e}");
        }
        // Exclusions that empty the grid, an unknown axis in a rule, random search without a
        // budget.
        let e = parse(&format!("{BASE}[[exclude]]\nmodel = \"bert-tiny\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("empty after"), "{e}");
        let e = parse(&format!("{BASE}[[exclude]]\nmodle = \"bert-tiny\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("did you mean `model`"), "{e}");
        let e = parse(&format!("{BASE}[search]\nmode = \"random\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("budget"), "{e}");
        let e = parse(&BASE.replace("steps = [30]", "steps = [0]"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("steps"), "{e}");
    }
}
