//! Criterion benchmarks for zobench (`cargo bench -p zobench-benchmarks`), and the workloads
//! they share.
//!
//! Bench targets (`benchmarks/benches/`):
//!
//! * `zo_step` — per model (`bert-tiny` always; `minilm-l6` and `smollm2-135m` when their
//!   checkpoints are in the model cache):
//!   - `<model>/forward` — the training loss at θ, no autodiff (one forward pass);
//!   - `<model>/zo_sgd_step` — one ZO-SGD step (two forwards plus the perturbation passes),
//!     through the runner's interface (`zo_optim::build("zo-sgd", …)`, `Optimizer::step`);
//!   - `<model>/perturb` — one in-place pass `θ ← θ ± μ z` over every trainable parameter
//!     (throughput: parameters / s);
//!   - `<model>/noise` — generating z for every trainable parameter into a scratch buffer,
//!     nothing added (throughput: elements / s);
//!   - `<model>/fo_sgd_step`, `<model>/fo_adam_step` — one first-order step (forward, backward,
//!     SGD or Adam update; `fo-sgd` / `fo-adam` from the same registry);
//!   - plus `noise/fill_gaussian_1M` (elements / s).
//! * `matmul` — `matmul/f32_1024` on burn's flex backend; its throughput is counted in
//!   floating-point operations (`2·1024³` per product), so criterion's "elem/s" reads as FLOP/s.
//!
//! The targets of the issue these benches serve: a ZO-SGD step ≤ 1.05 × two forwards on the same
//! backend, model and batch (compare `zo_sgd_step` with `2 × forward`), and a ZO-SGD step ≤
//! 0.8 × PyTorch's MeZO step (see `benchmarks/reference/`).
//!
//! The loss is the one zobench trains with, and the one `benchmarks/reference/mezo_reference.py`
//! computes in PyTorch: next-token cross-entropy for causal LMs; for encoders an
//! attention-masked mean pool, a new linear 2-way head (`bench_head.*`, trainable) and
//! cross-entropy against labels `row % 2`.
//!
//! Environment:
//! * `ZOBENCH_HOME` — model cache (default `~/.cache/zobench`): `models/minilm-l6/` (HF folder)
//!   and `models/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf`. A missing checkpoint is skipped
//!   with a note on stderr.
//! * `ZOBENCH_BENCH_MODELS` — comma list of the models to run (default: all that are present).
//! * `ZOBENCH_BENCH_REAL=1` — also run the real checkpoints in test mode (`cargo test
//!   --benches`), at batch 1 × 8 tokens; by default test mode runs `bert-tiny` only, so that CI
//!   stays fast.
#![warn(missing_docs)]

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use std::path::{Path, PathBuf};
use zo_models::ModelError;
use zo_models::bert::mean_pool;
use zo_models::classifier::cross_entropy;
use zo_models::model::{LanguageModel, ModelInput, ModelKind, build_model, load_model};
use zo_optim::ParamStore;
use zo_optim::noise::{NoiseKey, gaussian_vec, splitmix64};

/// Seed of the synthetic batch and of the encoder head.
pub const SEED: u64 = 0;

/// One model to benchmark: where its checkpoint is and the shape of its synthetic batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// Bench group name (`bert-tiny`, `minilm-l6`, `smollm2-135m`).
    pub name: &'static str,
    /// HF folder or `.gguf` file.
    pub path: PathBuf,
    /// Rows B of the synthetic batch.
    pub batch: usize,
    /// Tokens T per row.
    pub seq: usize,
    /// Whether this is one of the real (large) checkpoints.
    pub real: bool,
}

/// `$ZOBENCH_HOME`, or `~/.cache/zobench`.
pub fn zobench_home() -> PathBuf {
    if let Some(h) = std::env::var_os("ZOBENCH_HOME") {
        return PathBuf::from(h);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    home.join(".cache/zobench")
}

/// The `bert-tiny` test fixture (`fixtures/models/bert-tiny`).
pub fn bert_tiny_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/models/bert-tiny")
}

/// True when criterion runs in test mode: the binary was started without `--bench` (as
/// `cargo test --benches` does), so every bench runs once.
pub fn test_mode() -> bool {
    !std::env::args().any(|a| a == "--bench")
}

/// The models to benchmark, in order, each present on disk; absent or deselected ones are
/// reported on stderr. Bench mode: bert-tiny 16 × 48, minilm-l6 16 × 64, smollm2-135m 16 × 32
/// (the shapes). Test mode: bert-tiny as in bench mode, real checkpoints only with
/// `ZOBENCH_BENCH_REAL=1`, at 1 × 8.
pub fn specs() -> Vec<Spec> {
    let test = test_mode();
    let models = zobench_home().join("models");
    let all = [
        Spec {
            name: "bert-tiny",
            path: bert_tiny_dir(),
            batch: 16,
            seq: 48,
            real: false,
        },
        Spec {
            name: "minilm-l6",
            path: models.join("minilm-l6"),
            batch: 16,
            seq: 64,
            real: true,
        },
        Spec {
            name: "smollm2-135m",
            path: models.join("smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf"),
            batch: 16,
            seq: 32,
            real: true,
        },
    ];
    let chosen: Option<Vec<String>> = std::env::var("ZOBENCH_BENCH_MODELS")
        .ok()
        .map(|s| s.split(',').map(|m| m.trim().to_string()).collect());
    let real_in_test = std::env::var("ZOBENCH_BENCH_REAL").is_ok_and(|v| v == "1");
    let mut out = Vec::new();
    for mut s in all {
        if let Some(c) = &chosen
            && !c.iter().any(|m| m == s.name)
        {
            continue;
        }
        let present = if s.path.extension().is_some_and(|e| e == "gguf") {
            s.path.is_file()
        } else {
            s.path.join("config.json").is_file() && s.path.join("model.safetensors").is_file()
        };
        if !present {
            eprintln!(
                "note: skipping {} benches: checkpoint not found at {} \
                 (fetch it with `zobench fetch {}`)",
                s.name,
                s.path.display(),
                s.name
            );
            continue;
        }
        if test && s.real {
            if !real_in_test {
                eprintln!(
                    "note: test mode: skipping {} (set ZOBENCH_BENCH_REAL=1 to run it at 1 × 8)",
                    s.name
                );
                continue;
            }
            s.batch = 1;
            s.seq = 8;
        }
        out.push(s);
    }
    out
}

/// Row-major synthetic token ids `[batch, seq]`, each in `lo..vocab`, a pure function of `seed`.
pub fn synthetic_ids(batch: usize, seq: usize, vocab: usize, lo: usize, seed: u64) -> Vec<i64> {
    let span = vocab.saturating_sub(lo).max(1) as u64;
    let mut state = seed ^ 0x005E_ED0F_BA7C;
    (0..batch * seq)
        .map(|_| (lo as u64 + splitmix64(&mut state) % span) as i64)
        .collect()
}

/// What the loss is computed from.
#[derive(Debug)]
enum Head {
    /// Causal LM: next-token targets `[B·(T−1), 1]`.
    Causal { targets: Box<Tensor<2, Int>> },
    /// Encoder: a linear head (store ids of weight `[2, H]` and bias `[2]`) and labels.
    Encoder {
        w: usize,
        b: usize,
        labels: Vec<usize>,
    },
}

/// One model, one synthetic batch and the training loss. The parameters live in a separate
/// [`ParamStore`] (returned by [`Workload::load`]), so an optimizer can change them while the
/// loss closure borrows the workload.
#[derive(Debug)]
pub struct Workload {
    /// Bench group name.
    pub name: String,
    /// The model.
    pub model: Box<dyn LanguageModel>,
    /// The batch.
    pub input: ModelInput,
    head: Head,
}

impl Workload {
    /// Loads `spec` (an HF folder, or a `.gguf` file through [`zo_models::load_gguf`]) onto
    /// `device`, with a synthetic `[spec.batch, spec.seq]` batch without padding. Returns the
    /// workload and the store holding every parameter, all trainable (full fine-tuning).
    ///
    /// # Errors
    /// Any [`ModelError`] of loading the checkpoint.
    pub fn load(spec: &Spec, device: &Device) -> Result<(Self, ParamStore), ModelError> {
        let mut store = ParamStore::new(device.clone());
        let model = if spec.path.extension().is_some_and(|e| e == "gguf") {
            let (config, ckpt) = zo_models::load_gguf(&spec.path)?;
            build_model(&config, &spec.path, ckpt, &mut store)?
        } else {
            load_model(&spec.path, &mut store)?
        };
        let w = Self::new(spec.name, model, &mut store, spec.batch, spec.seq);
        Ok((w, store))
    }

    /// Wraps a loaded model: draws the batch and, for a model that is not a causal LM, adds the
    /// 2-way head `bench_head.{weight,bias}` (N(0, 0.02²) weights, zero bias) to `store`.
    pub fn new(
        name: &str,
        model: Box<dyn LanguageModel>,
        store: &mut ParamStore,
        batch: usize,
        seq: usize,
    ) -> Self {
        let device = store.device().clone();
        let info = model.info().clone();
        let mut seq = seq.max(2);
        if let Some(mp) = info.max_positions {
            seq = seq.min(mp);
        }
        let ids = synthetic_ids(
            batch,
            seq,
            info.vocab_size,
            5.min(info.vocab_size - 1),
            SEED,
        );
        let mask = vec![1i64; batch * seq];
        let input = ModelInput::from_host(&ids, &mask, batch, seq, &device);
        let head = if info.kind == ModelKind::CausalLm {
            let mut t: Vec<i64> = Vec::with_capacity(batch * (seq - 1));
            for r in 0..batch {
                t.extend_from_slice(&ids[r * seq + 1..(r + 1) * seq]);
            }
            let n = t.len();
            Head::Causal {
                targets: Box::new(Tensor::<2, Int>::from_data(
                    TensorData::new(t, [n, 1]),
                    &device,
                )),
            }
        } else {
            let h = info.hidden_size;
            let w = store
                .insert(
                    "bench_head.weight",
                    &[2, h],
                    gaussian_vec(NoiseKey(SEED), "bench_head.weight", 2 * h, 0.02),
                )
                .expect("fresh parameter name");
            let b = store
                .insert("bench_head.bias", &[2], vec![0.0; 2])
                .expect("fresh parameter name");
            Head::Encoder {
                w,
                b,
                labels: (0..batch).map(|i| i % 2).collect(),
            }
        };
        Self {
            name: name.to_string(),
            model,
            input,
            head,
        }
    }

    /// The training loss (nats, `[1]`) at the parameters of `ps` — differentiable when `ps`
    /// holds autodiff tensors ([`ParamStore::enable_grad`]).
    pub fn loss(&self, ps: &ParamStore) -> Tensor<1> {
        match &self.head {
            Head::Causal { targets } => {
                let logits = self
                    .model
                    .logits(ps, &self.input)
                    .expect("causal LM has an LM head");
                let [b, t, v] = logits.dims();
                let lp = log_softmax(logits.slice([0..b, 0..t - 1]).reshape([b * (t - 1), v]), 1);
                lp.gather(1, targets.as_ref().clone()).mean().neg()
            }
            Head::Encoder { w, b, labels } => {
                let h = self.model.hidden_states(ps, &self.input);
                let pooled = mean_pool(h, self.input.attention_mask.clone());
                let logits = pooled.matmul(ps.t2(*w).transpose()) + ps.t1(*b).unsqueeze::<2>();
                cross_entropy(logits, labels)
            }
        }
    }

    /// The loss at the store's parameters, as a host float (one forward pass).
    pub fn loss_value(&self, ps: &ParamStore) -> f32 {
        self.loss(ps).into_scalar::<f32>()
    }
}

/// Size of the largest trainable parameter of `store` (elements).
pub fn largest_param(store: &ParamStore) -> usize {
    store
        .params()
        .iter()
        .filter(|p| p.trainable)
        .map(|p| p.numel())
        .max()
        .unwrap_or(0)
}

/// Human-readable summary line of a workload (printed before its benches).
pub fn describe(w: &Workload, store: &ParamStore, path: &Path) -> String {
    let [b, t] = w.input.input_ids.dims();
    format!(
        "{}: {} ({}), {} trainable parameters, batch {b} × {t}",
        w.name,
        path.display(),
        w.model.info().model_type,
        store.num_trainable()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The causal loss equals transformers' `labels=` loss: PyTorch gives 5.590085 nats for
    /// llama-tiny on this batch (`reference/mezo_reference.py --input` with these ids).
    #[test]
    fn causal_loss_matches_pytorch_reference() {
        let spec = Spec {
            name: "llama-tiny",
            path: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/models/llama-tiny"),
            batch: 2,
            seq: 8,
            real: false,
        };
        assert_eq!(
            synthetic_ids(2, 8, 128, 5, SEED),
            vec![
                33, 12, 40, 33, 65, 46, 110, 72, 124, 125, 62, 63, 114, 5, 13, 15
            ]
        );
        let (w, store) = Workload::load(&spec, &Device::flex()).unwrap();
        let l = w.loss_value(&store);
        assert!((l - 5.590085).abs() < 1e-4, "loss {l}");
    }

    #[test]
    fn encoder_gets_a_trainable_head() {
        let spec = Spec {
            name: "bert-tiny",
            path: bert_tiny_dir(),
            batch: 4,
            seq: 8,
            real: false,
        };
        let (w, store) = Workload::load(&spec, &Device::flex()).unwrap();
        assert!(store.contains("bench_head.weight") && store.contains("bench_head.bias"));
        let l = w.loss_value(&store);
        // Two balanced classes and a near-zero head: the loss is close to ln 2.
        assert!((l - std::f32::consts::LN_2).abs() < 0.05, "loss {l}");
    }
}
