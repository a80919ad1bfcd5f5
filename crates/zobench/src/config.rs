//! Sweep configuration: the TOML grid file, strict parsing and expansion into cells.
//!
//! ```toml
//! name = "default"                 # results/<name>/, reports/<name>/
//! [grid]                           # the axes; every combination is one cell
//! model = ["minilm-l6"]            # registry name or a path to an HF folder
//! task = ["sst2"]
//! scheme = ["ft", "head"]
//! optimizer = ["zo-sgd", "fo-sgd"]
//! seed = [0]
//! [settings]                       # shared by all cells
//! steps = 300
//! batch_size = 16
//! eval_every = 100
//! num_train = 1000
//! num_dev = 200
//! num_eval = 872
//! [optimizer.zo-sgd]               # hyper-parameter axes of one optimizer
//! lr = [1e-5]
//! mu = [1e-3]
//! [optimizer.zo-sgd.scheme.head]   # per-scheme override of any axis
//! lr = [1e-2]
//! steps = [600]                    # `steps` may be overridden per optimizer / scheme
//! ```
//!
//! Unknown keys are errors (with "did you mean" suggestions); so are unknown axis values.

use crate::error::{UserError, did_you_mean};
use crate::record::HParams;
use crate::registry;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Fine-tuning schemes of this version: `ft` (all parameters) and `head` (the classification
/// head only).
pub const SCHEMES: &[&str] = &["ft", "head"];
/// Optimizers of this version.
pub const OPTIMIZERS: &[&str] = &["zo-sgd", "fo-sgd"];
/// Backends of this build.
pub const BACKENDS: &[&str] = &["flex"];
/// Pooling modes of the encoder classifier.
pub const POOLINGS: &[&str] = &["mean", "cls", "pooler"];

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
}

/// Grid axes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grid {
    /// Models: registry names (`zobench ls models`) or paths to HF folders.
    pub model: Vec<String>,
    /// Tasks (`sst2`).
    pub task: Vec<String>,
    /// Fine-tuning schemes (`ft`, `head`).
    pub scheme: Vec<String>,
    /// Optimizers (`zo-sgd`, `fo-sgd`).
    pub optimizer: Vec<String>,
    /// Training seeds.
    pub seed: Vec<u64>,
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
    /// Truncation length in tokens.
    #[serde(default = "d_max_length")]
    pub max_length: usize,
    /// Pooling of the encoder classifier (`mean`, `cls`, `pooler`).
    #[serde(default = "d_pooling")]
    pub pooling: String,
    /// Compute backend (`flex`).
    #[serde(default = "d_backend")]
    pub backend: String,
    /// Worker threads per cell.
    #[serde(default = "d_threads")]
    pub threads: usize,
    /// Wall-time limit per cell in seconds (none if absent).
    #[serde(default)]
    pub timeout_s: Option<f64>,
    /// Folder holding the task data (`sst2/`, …); relative paths are relative to the config
    /// file. Default: the project's `data/`.
    #[serde(default = "d_data_dir")]
    pub data_dir: PathBuf,
}

/// Hyper-parameter axes of one optimizer; every list is an axis of the grid.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct OptimizerAxes {
    /// Learning rates η.
    pub lr: Option<Vec<f64>>,
    /// Perturbation scales μ (ZO only).
    pub mu: Option<Vec<f64>>,
    /// Query directions q (ZO only).
    pub q: Option<Vec<usize>>,
    /// Weight decays λ.
    pub weight_decay: Option<Vec<f64>>,
    /// Training steps (overrides `settings.steps`; ZO methods usually need more steps than
    /// first-order ones for the same progress).
    pub steps: Option<Vec<usize>>,
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
    /// Optimizer name.
    pub optimizer: String,
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
    /// Threads.
    pub threads: usize,
    /// Wall-time limit (seconds; not part of the run id).
    pub timeout_s: Option<f64>,
    /// Task data folder (not part of the run id: moving the project keeps its results).
    pub data_dir: PathBuf,
    /// [`data_fingerprint`] of the task's files (part of the run id).
    pub data_sha256: String,
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
        format!(
            "{}/{}/{}/{} lr={:e} seed={}",
            self.model, self.task, self.scheme, self.optimizer, self.hparams.lr, self.seed
        )
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

/// Default hyper-parameter axes of an optimizer under a scheme (used for any axis the config
/// leaves out). PEFT-like schemes (`head`) take larger learning rates.
fn default_axes(optimizer: &str, scheme: &str) -> (Vec<f64>, Vec<f64>, Vec<usize>) {
    match (optimizer, scheme) {
        ("zo-sgd", "head") => (vec![1e-2], vec![1e-3], vec![1]),
        ("zo-sgd", _) => (vec![1e-6], vec![1e-3], vec![1]),
        (_, "head") => (vec![1e-1], vec![], vec![]),
        _ => (vec![1e-4], vec![], vec![]),
    }
}

/// Checks one optimizer table (or one per-scheme override of it).
fn check_axes(
    file: &Path,
    table: &str,
    optimizer: &str,
    a: &OptimizerAxes,
) -> Result<(), UserError> {
    let err = |msg: String| {
        Err(UserError::new(format!(
            "{}: `[{table}]`: {msg}",
            file.display()
        )))
    };
    if optimizer.starts_with("fo-") && (a.mu.is_some() || a.q.is_some()) {
        return err("`mu` and `q` belong to zeroth-order optimizers; remove them".into());
    }
    for (k, v, strictly_positive) in [
        ("lr", &a.lr, false),
        ("mu", &a.mu, true),
        ("weight_decay", &a.weight_decay, false),
    ] {
        if let Some(v) = v {
            if v.is_empty()
                || v.iter()
                    .any(|x| !x.is_finite() || *x < 0.0 || (strictly_positive && *x == 0.0))
            {
                let what = if strictly_positive {
                    "positive"
                } else {
                    "non-negative"
                };
                return err(format!(
                    "`{k}` must be a non-empty list of finite {what} numbers, got {v:?}"
                ));
            }
        }
    }
    for (k, v) in [("q", &a.q), ("steps", &a.steps)] {
        if v.as_ref().is_some_and(|v| v.is_empty() || v.contains(&0)) {
            return err(format!(
                "`{k}` must be a non-empty list of positive integers"
            ));
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
        if self.name.is_empty() || self.name.contains(['/', '\\']) || self.name.starts_with('.') {
            return Err(UserError::new(format!(
                "{}: `name` must be a plain folder name, got `{}`",
                file.display(),
                self.name
            )));
        }
        for m in &g.model {
            registry::resolve_name(m)
                .map_err(|e| UserError::new(format!("{}: `grid.model`: {e}", file.display())))?;
        }
        if g.model.is_empty() {
            return Err(UserError::new(format!(
                "{}: `grid.model` is empty",
                file.display()
            )));
        }
        check_values(file, "grid.task", &g.task, zo_tasks::TASKS)?;
        check_values(file, "grid.scheme", &g.scheme, SCHEMES)?;
        check_values(file, "grid.optimizer", &g.optimizer, OPTIMIZERS)?;
        if g.seed.is_empty() {
            return Err(UserError::new(format!(
                "{}: `grid.seed` is empty",
                file.display()
            )));
        }
        check_values(
            file,
            "settings.backend",
            std::slice::from_ref(&self.settings.backend),
            BACKENDS,
        )?;
        check_values(
            file,
            "settings.pooling",
            std::slice::from_ref(&self.settings.pooling),
            POOLINGS,
        )?;
        let s = &self.settings;
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
                return Err(UserError::new(format!(
                    "{}: `settings.{k}` must be at least 1",
                    file.display()
                )));
            }
        }
        if let Some(t) = s.timeout_s {
            if !(t.is_finite() && t > 0.0) {
                return Err(UserError::new(format!(
                    "{}: `settings.timeout_s` must be a positive number of seconds, got {t}",
                    file.display()
                )));
            }
        }
        for (name, axes) in &self.optimizer {
            if !OPTIMIZERS.contains(&name.as_str()) {
                return Err(UserError::new(format!(
                    "{}: `[optimizer.{name}]`: unknown optimizer{}; valid: {}",
                    file.display(),
                    did_you_mean(name, OPTIMIZERS),
                    OPTIMIZERS.join(", ")
                )));
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
        Ok(())
    }

    /// Expands the grid into cells, in a stable order (model, task, scheme, optimizer,
    /// hyper-parameters, seed).
    pub fn expand(&self) -> Vec<CellSpec> {
        let g = &self.grid;
        let s = &self.settings;
        let mut cells = Vec::new();
        let fingerprints: BTreeMap<&String, String> = g
            .task
            .iter()
            .map(|t| (t, data_fingerprint(t, &s.data_dir)))
            .collect();
        for model in &g.model {
            for task in &g.task {
                for scheme in &g.scheme {
                    for opt in &g.optimizer {
                        let base = self.optimizer.get(opt).cloned().unwrap_or_default();
                        let over = base.scheme.get(scheme).cloned().unwrap_or_default();
                        let (dlr, dmu, dq) = default_axes(opt, scheme);
                        let zo = opt.starts_with("zo-");
                        let lrs = over.lr.or(base.lr).unwrap_or(dlr);
                        let mus: Vec<Option<f64>> = if zo {
                            over.mu
                                .or(base.mu)
                                .unwrap_or(dmu)
                                .into_iter()
                                .map(Some)
                                .collect()
                        } else {
                            vec![None]
                        };
                        let qs: Vec<Option<usize>> = if zo {
                            over.q
                                .or(base.q)
                                .unwrap_or(dq)
                                .into_iter()
                                .map(Some)
                                .collect()
                        } else {
                            vec![None]
                        };
                        let wds = over.weight_decay.or(base.weight_decay).unwrap_or(vec![0.0]);
                        let steps_axis = over.steps.or(base.steps).unwrap_or(vec![s.steps]);
                        for &steps in &steps_axis {
                            for &lr in &lrs {
                                for &mu in &mus {
                                    for &q in &qs {
                                        for &wd in &wds {
                                            for &seed in &g.seed {
                                                cells.push(CellSpec {
                                                    sweep: self.name.clone(),
                                                    model: model.clone(),
                                                    task: task.clone(),
                                                    scheme: scheme.clone(),
                                                    optimizer: opt.clone(),
                                                    hparams: HParams {
                                                        lr,
                                                        mu,
                                                        q,
                                                        weight_decay: wd,
                                                    },
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
                                                    threads: s.threads,
                                                    timeout_s: s.timeout_s,
                                                    data_dir: s.data_dir.clone(),
                                                    data_sha256: fingerprints[task].clone(),
                                                });
                                            }
                                        }
                                    }
                                }
                            }
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
        assert!(
            zo_head
                .iter()
                .all(|c| c.hparams.lr == 1e-2 && c.steps == 30 && c.hparams.mu == Some(1e-3))
        );
        let zo_ft: Vec<_> = cells
            .iter()
            .filter(|c| c.scheme == "ft" && c.optimizer == "zo-sgd")
            .collect();
        assert!(zo_ft.iter().all(|c| c.steps == 10));
        let fo: Vec<_> = cells.iter().filter(|c| c.optimizer == "fo-sgd").collect();
        assert!(
            fo.iter()
                .all(|c| c.hparams.mu.is_none() && c.hparams.q.is_none())
        );
        // Run ids are unique and stable.
        let ids: std::collections::HashSet<_> = cells.iter().map(CellSpec::run_id).collect();
        assert_eq!(ids.len(), cells.len());
        assert_eq!(parse(BASE).unwrap().expand()[3].run_id(), cells[3].run_id());
    }

    #[test]
    fn run_id_ignores_sweep_name_and_timeout_only() {
        let c = parse(BASE).unwrap().expand().remove(0);
        let mut d = c.clone();
        d.sweep = "other".into();
        d.timeout_s = Some(5.0);
        assert_eq!(c.run_id(), d.run_id());
        d.hparams.lr *= 2.0;
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
            e.contains("optimizer.zo-adamw") && e.contains("valid: zo-sgd, fo-sgd"),
            "{e}"
        );
        let e = parse(&BASE.replace("scheme = [\"ft\", \"head\"]", "scheme = [\"lora\"]"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("grid.scheme") && e.contains("`lora`"), "{e}");
        let e = parse(&BASE.replace("steps = [30]", "steps = [0]"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("steps"), "{e}");
    }
}
