//! One sweep cell, run inside its own child process (`zobench run-cell`): load the model and
//! the task, apply the fine-tuning scheme, measure zero-shot performance, train, select on
//! dev, evaluate on test, measure.
//!
//! Three formulations, chosen by the model and the template:
//!
//! * **causal LM** (`causal-lm`; OPT, LLaMA, Mistral, Qwen2, GPT-2, SmolLM2): the task's
//!   prompt template and candidate continuations ([`crate::lm`]); evaluation = argmax of the
//!   length-normalised log-likelihood; the training loss is the task's default (or
//!   `settings.loss`);
//! * **encoder** (`classifier`; BERT, RoBERTa, MiniLM, any template but `mlm`): a linear head
//!   on the pooled text (pair) ([`zo_models::TextClassifier`]), cross-entropy;
//! * **masked-LM prompt** (`mlm-prompt`; template `mlm`, encoders with an MLM head such as
//!   RoBERTa): MeZO's RoBERTa / LM-BFF prompt with one mask; the MLM head's logits of the
//!   verbaliser tokens at the mask are the class scores ([`crate::lm::mlm_logits`]),
//!   cross-entropy over them, argmax to predict.
//!
//! An **in-context-learning row** (optimizer `icl`, [`crate::config::ICL`]) trains nothing: a
//! causal LM is evaluated on dev and test with `shots` demonstrations drawn from the train
//! split with the cell's seed prepended to every prompt ([`zo_tasks::Splits::prompted_few_shot`]).
//!
//! Model and hyper-parameter selection never look at the test split: the test split is
//! evaluated once before training (zero-shot) and once at the end, with the parameters that
//! were best on dev (`test_at = "best-dev"`) or the final ones (`test_at = "final"`).

use crate::config::CellSpec;
use crate::error::UserError;
use crate::lm::{self, TokExample, Tokenized};
use crate::optim;
use crate::provenance;
use crate::record::{CellStatus, CurvePoint, DivergedAt, RunRecord};
use crate::registry;
use anyhow::Context;
use burn::tensor::{Device, Tensor};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_xoshiro::Xoshiro256PlusPlus;
use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use zo_models::classifier::HEAD_PARAMS;
use zo_models::{EncodedBatch, ModelKind, Pooling, Scheme, TextClassifier, TextTokenizer};
use zo_optim::{Objective, ParamStore, StepCtx, StepError};
use zo_tasks::{Split, Splits};

/// Tokenized encoder examples of one split: unpadded ids, segment ids and gold labels.
#[derive(Debug, Default)]
struct EncSplit {
    rows: Vec<Vec<i64>>,
    types: Vec<Vec<i64>>,
    labels: Vec<usize>,
    truncated: usize,
}

impl EncSplit {
    fn batch(&self, idx: &[usize], pad: i64) -> EncodedBatch {
        let cols = idx.iter().map(|&i| self.rows[i].len()).max().unwrap_or(0);
        let mut b = EncodedBatch {
            input_ids: vec![],
            attention_mask: vec![],
            token_type_ids: vec![],
            rows: idx.len(),
            cols,
        };
        for &i in idx {
            let (r, t) = (&self.rows[i], &self.types[i]);
            for j in 0..cols {
                b.input_ids.push(r.get(j).copied().unwrap_or(pad));
                b.attention_mask.push(i64::from(j < r.len()));
                b.token_type_ids.push(t.get(j).copied().unwrap_or(0));
            }
        }
        b
    }
}

fn tokenize_encoder(
    tok: &TextTokenizer,
    splits: &Splits,
    which: Split,
    max_length: usize,
) -> anyhow::Result<EncSplit> {
    let ex: Vec<zo_tasks::Example> = splits.split(which).iter().map(|i| i.example()).collect();
    let mut out = EncSplit::default();
    for chunk in ex.chunks(256) {
        let texts: Vec<&str> = chunk.iter().map(|e| e.text.as_str()).collect();
        let pairs: Option<Vec<&str>> = chunk
            .iter()
            .map(|e| e.text_pair.as_deref())
            .collect::<Option<Vec<&str>>>();
        let b = tok.encode(&texts, pairs.as_deref(), max_length)?;
        for r in 0..b.rows {
            let sl = r * b.cols..(r + 1) * b.cols;
            let n = b.attention_mask[sl.clone()]
                .iter()
                .filter(|&&x| x == 1)
                .count();
            if n >= max_length {
                out.truncated += 1;
            }
            out.rows.push(b.input_ids[sl.clone()][..n].to_vec());
            out.types.push(b.token_type_ids[sl][..n].to_vec());
        }
    }
    out.labels = ex.iter().map(|e| e.label).collect();
    Ok(out)
}

/// What a cell trains and evaluates: a causal LM with prompts and candidates, an encoder
/// with a classification head, or an encoder's MLM head on a prompt with one mask.
pub struct Formulation {
    inner: Inner,
    /// Forward passes spent on evaluation so far (counted: one per model call).
    eval_passes: AtomicU64,
}

enum Inner {
    Encoder {
        clf: TextClassifier,
        splits: [EncSplit; 3],
        pad: i64,
    },
    Causal {
        model: Box<dyn zo_models::LanguageModel>,
        splits: [Tokenized; 3],
        loss: lm::LossKind,
        pad: i64,
    },
    Mlm {
        model: Box<dyn zo_models::LanguageModel>,
        splits: [lm::MlmTokenized; 3],
        verbalizer: Vec<i64>,
        pad: i64,
    },
}

fn idx(which: Split) -> usize {
    match which {
        Split::Train => 0,
        Split::Dev => 1,
        Split::Test => 2,
    }
}

impl Formulation {
    fn new(inner: Inner) -> Self {
        Self {
            inner,
            eval_passes: AtomicU64::new(0),
        }
    }

    /// The formulation's name as recorded (`causal-lm`, `classifier`, `mlm-prompt`).
    pub fn name(&self) -> &'static str {
        match &self.inner {
            Inner::Encoder { .. } => "classifier",
            Inner::Causal { .. } => "causal-lm",
            Inner::Mlm { .. } => "mlm-prompt",
        }
    }

    /// Forward passes spent on evaluation (zero-shot, dev and test) so far.
    pub fn eval_forward_passes(&self) -> u64 {
        self.eval_passes.load(Ordering::Relaxed)
    }

    /// Number of training examples.
    pub fn train_len(&self) -> usize {
        self.len(Split::Train)
    }

    /// The objective of a mini-batch of training examples (indices into the train split).
    pub fn objective<'a>(&'a self, batch: &'a [usize]) -> impl Objective + 'a {
        BatchObjective { f: self, batch }
    }

    fn len(&self, which: Split) -> usize {
        match &self.inner {
            Inner::Encoder { splits, .. } => splits[idx(which)].rows.len(),
            Inner::Causal { splits, .. } => splits[idx(which)].examples.len(),
            Inner::Mlm { splits, .. } => splits[idx(which)].examples.len(),
        }
    }

    fn gold(&self, which: Split) -> Vec<usize> {
        match &self.inner {
            Inner::Encoder { splits, .. } => splits[idx(which)].labels.clone(),
            Inner::Causal { splits, .. } => {
                splits[idx(which)].examples.iter().map(|e| e.gold).collect()
            }
            Inner::Mlm { splits, .. } => {
                splits[idx(which)].examples.iter().map(|e| e.gold).collect()
            }
        }
    }

    fn truncated(&self) -> usize {
        match &self.inner {
            Inner::Encoder { splits, .. } => splits.iter().map(|s| s.truncated).sum(),
            Inner::Causal { splits, .. } => splits.iter().map(|s| s.truncated).sum(),
            Inner::Mlm { splits, .. } => splits.iter().map(|s| s.truncated).sum(),
        }
    }

    /// Training loss (nats) of the training examples `batch`.
    fn loss(&self, ps: &ParamStore, batch: &[usize]) -> Tensor<1> {
        match &self.inner {
            Inner::Encoder { clf, splits, pad } => {
                let tr = &splits[0];
                let labels: Vec<usize> = batch.iter().map(|&i| tr.labels[i]).collect();
                clf.loss(ps, &tr.batch(batch, *pad), &labels)
            }
            Inner::Causal {
                model,
                splits,
                loss,
                pad,
            } => {
                let ex: Vec<&TokExample> = batch.iter().map(|&i| &splits[0].examples[i]).collect();
                lm::loss(model.as_ref(), ps, &ex, *loss, *pad)
            }
            Inner::Mlm {
                model,
                splits,
                verbalizer,
                pad,
            } => {
                let ex: Vec<&lm::MlmExample> =
                    batch.iter().map(|&i| &splits[0].examples[i]).collect();
                lm::mlm_loss(model.as_ref(), ps, &ex, verbalizer, *pad)
            }
        }
    }

    /// The causal LM of a causal-LM formulation (the offload runtime streams it).
    fn causal_model(&self) -> Option<&dyn zo_models::LanguageModel> {
        match &self.inner {
            Inner::Causal { model, .. } => Some(model.as_ref()),
            _ => None,
        }
    }

    /// The model input of the training loss of `batch` (causal LM only).
    fn train_input(&self, batch: &[usize], device: &Device) -> Option<zo_models::ModelInput> {
        match &self.inner {
            Inner::Causal {
                splits, loss, pad, ..
            } => {
                let ex: Vec<&TokExample> = batch.iter().map(|&i| &splits[0].examples[i]).collect();
                Some(lm::loss_input(&ex, *loss, *pad, device))
            }
            _ => None,
        }
    }

    /// The training loss of `batch` computed by `model` (a causal LM; the offload runtime
    /// passes one that returns its streamed hidden states).
    fn loss_with(
        &self,
        model: &dyn zo_models::LanguageModel,
        ps: &ParamStore,
        batch: &[usize],
    ) -> Tensor<1> {
        match &self.inner {
            Inner::Causal {
                splits, loss, pad, ..
            } => {
                let ex: Vec<&TokExample> = batch.iter().map(|&i| &splits[0].examples[i]).collect();
                lm::loss(model, ps, &ex, *loss, *pad)
            }
            _ => unreachable!("offload cells are causal-LM cells (checked when they start)"),
        }
    }

    /// Predictions on a split, `bs` examples (encoder, MLM) or candidate rows (causal) at a
    /// time; counts the forward passes.
    fn predict(&self, ps: &ParamStore, which: Split, bs: usize) -> Vec<usize> {
        let (pred, passes) = self.predict_counted(ps, which, bs);
        self.eval_passes.fetch_add(passes, Ordering::Relaxed);
        pred
    }

    fn predict_counted(&self, ps: &ParamStore, which: Split, bs: usize) -> (Vec<usize>, u64) {
        match &self.inner {
            Inner::Encoder { clf, splits, pad } => {
                let s = &splits[idx(which)];
                let mut order: Vec<usize> = (0..s.rows.len()).collect();
                order.sort_by_key(|&i| s.rows[i].len());
                let mut pred = vec![0; s.rows.len()];
                let mut passes = 0;
                for chunk in order.chunks(bs) {
                    passes += 1;
                    for (i, p) in chunk.iter().zip(clf.predict(ps, &s.batch(chunk, *pad))) {
                        pred[*i] = p;
                    }
                }
                (pred, passes)
            }
            Inner::Causal {
                model, splits, pad, ..
            } => lm::predict_counted(model.as_ref(), ps, &splits[idx(which)].examples, bs, *pad),
            Inner::Mlm {
                model,
                splits,
                verbalizer,
                pad,
            } => lm::mlm_predict(
                model.as_ref(),
                ps,
                &splits[idx(which)].examples,
                bs,
                verbalizer,
                *pad,
            ),
        }
    }
}

/// Task metrics of the parameters `ps` on a split.
fn evaluate(
    f: &Formulation,
    ps: &ParamStore,
    splits: &Splits,
    task: &str,
    which: Split,
    bs: usize,
) -> anyhow::Result<zo_tasks::Metrics> {
    let pred = f.predict(ps, which, bs);
    let qids = splits.question_ids(which);
    Ok(zo_tasks::evaluate(
        task,
        &pred,
        &f.gold(which),
        qids.as_deref(),
    )?)
}

/// Test metrics of predicting the most frequent training label (ties: the smaller label).
fn majority(f: &Formulation, splits: &Splits, task: &str) -> anyhow::Result<zo_tasks::Metrics> {
    let train = f.gold(Split::Train);
    let n = train.iter().copied().max().map_or(0, |m| m + 1);
    let mut counts = vec![0usize; n.max(1)];
    train.iter().for_each(|&l| counts[l] += 1);
    let maj = (0..counts.len())
        .max_by_key(|&l| (counts[l], std::cmp::Reverse(l)))
        .unwrap_or(0);
    let gold = f.gold(Split::Test);
    let qids = splits.question_ids(Split::Test);
    Ok(zo_tasks::evaluate(
        task,
        &vec![maj; gold.len()],
        &gold,
        qids.as_deref(),
    )?)
}

fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let idx = ((sorted.len() - 1) as f64 * p).round() as usize;
    Some(sorted[idx])
}

/// The scheme of a cell with its `[scheme.<name>]` options.
///
/// # Errors
/// A [`UserError`] for an unknown scheme or a bad option value.
pub fn scheme_of(spec: &CellSpec) -> Result<Scheme, UserError> {
    let mut s = Scheme::parse(&spec.scheme)
        .ok_or_else(|| UserError::new(format!("unknown scheme `{}`", spec.scheme)))?;
    let o = &spec.scheme_options;
    let bad = |k: &str| UserError::new(format!("`[scheme.{}]`: bad `{k}`", spec.scheme));
    match &mut s {
        Scheme::Lora {
            rank,
            alpha,
            targets,
        } => {
            if let Some(v) = o.get("r") {
                *rank = v.as_u64().ok_or_else(|| bad("r"))? as usize;
            }
            if let Some(v) = o.get("alpha") {
                *alpha = v.as_f64().ok_or_else(|| bad("alpha"))? as f32;
            }
            if let Some(v) = o.get("targets") {
                *targets = v
                    .as_array()
                    .and_then(|a| a.iter().map(|x| x.as_str().map(String::from)).collect())
                    .or_else(|| v.as_str().map(|x| vec![x.to_string()]))
                    .ok_or_else(|| bad("targets"))?;
            }
        }
        Scheme::Prefix { n } | Scheme::Prompt { n } => {
            if let Some(v) = o.get("tokens") {
                *n = v.as_u64().ok_or_else(|| bad("tokens"))? as usize;
            }
        }
        _ => {}
    }
    Ok(s)
}

/// A record for a cell that produced no result of its own (crash, timeout, OOM, bad input).
pub fn failed_record(
    spec: &CellSpec,
    run_id: &str,
    status: CellStatus,
    error: String,
    wall_s: f64,
    started_at: String,
) -> RunRecord {
    RunRecord {
        run_id: run_id.into(),
        sweep: spec.sweep.clone(),
        model: spec.model.clone(),
        family: None,
        task: spec.task.clone(),
        scheme: spec.scheme.clone(),
        optimizer: spec.optimizer.clone(),
        estimator: if spec.optimizer == crate::config::ICL {
            "none".into()
        } else {
            zo_optim::info(&spec.optimizer)
                .map_or("unknown", |i| i.estimator)
                .into()
        },
        template: Some(spec.template.clone()),
        formulation: None,
        icl_shots: icl_shots(spec).ok().flatten(),
        runtime: (spec.runtime != "memory").then(|| spec.runtime.clone()),
        offload: None,
        eval_forward_passes: None,
        metric: None,
        test_metrics: BTreeMap::new(),
        zero_shot_metrics: BTreeMap::new(),
        truncated_rows: None,
        jvp_method: None,
        diverged_at: None,
        hparams: spec.hparams.clone(),
        seed: spec.seed,
        data_seed: spec.data_seed,
        steps: spec.steps,
        batch_size: spec.batch_size,
        status,
        error: Some(error),
        majority_acc: None,
        zero_shot_acc: None,
        best_dev_acc: None,
        best_step: None,
        test_acc: None,
        final_train_loss: None,
        trainable_params: None,
        total_params: None,
        peak_mem_bytes: None,
        mem_method: "VmHWM".into(),
        mem_breakdown: BTreeMap::new(),
        time_per_step_s: None,
        time_per_step_p10_s: None,
        time_per_step_p90_s: None,
        forward_passes_per_step: None,
        backward_passes_per_step: None,
        total_forward_passes: None,
        num_train: None,
        num_dev: None,
        num_eval: None,
        wall_s,
        backend: spec.backend.clone(),
        precision: spec.precision.clone(),
        threads: spec.threads,
        cpu: provenance::cpu_model(),
        git_commit: provenance::git_commit(),
        versions: provenance::versions(),
        started_at,
    }
}

/// The mini-batch objective handed to the optimizer.
struct BatchObjective<'a> {
    f: &'a Formulation,
    batch: &'a [usize],
}

impl Objective for BatchObjective<'_> {
    fn loss(&mut self, store: &ParamStore) -> f32 {
        self.f.loss(store, self.batch).into_scalar::<f32>()
    }
    fn loss_tensor(&mut self, store: &ParamStore) -> Tensor<1> {
        self.f.loss(store, self.batch)
    }
}

/// Loads the model and task of `spec` and builds its formulation with the scheme applied.
/// Returns the formulation, the store, the family and the task splits.
fn load(
    spec: &CellSpec,
    device: &Device,
) -> anyhow::Result<(Formulation, ParamStore, String, Splits)> {
    let src = registry::resolve_name(&spec.model).map_err(UserError::new)?;
    let (path, tok_path) = registry::model_files(&src);
    let tok = TextTokenizer::from_file(&tok_path)?;
    let split_spec = zo_tasks::SplitSpec {
        num_train: spec.num_train,
        num_dev: spec.num_dev,
        num_eval: spec.num_eval,
        data_seed: spec.data_seed,
    };
    let splits = zo_tasks::load_splits(&spec.task, &spec.data_dir, &split_spec)?;
    if let Some(s) = splits.shortfall() {
        tracing::warn!("{s}");
    }
    let mut store = ParamStore::new(device.clone());
    let mut model = zo_models::load_model(&path, &mut store)?;
    let info = model.info().clone();
    let icl = icl_shots(spec)?;
    let mlm = spec.template == zo_tasks::MLM_TEMPLATE;
    // An ICL row applies no scheme: it evaluates the base model.
    let scheme = match icl {
        Some(_) => Scheme::Ft,
        None => scheme_of(spec)?,
    };
    if icl.is_some() && (info.kind != ModelKind::CausalLm || mlm) {
        return Err(UserError::new(format!(
            "an `icl` row scores prompts with in-context demonstrations by a causal LM; `{}` is a {} ({:?}){}: give `optimizer = \"icl\"` only to causal-LM models (an [[exclude]] rule can drop the others)",
            spec.model,
            info.model_type,
            info.kind,
            if mlm { " with template `mlm`" } else { "" }
        ))
        .into());
    }
    let pad = tok
        .pad_id()
        .try_into()
        .ok()
        .filter(|&p: &i64| (p as usize) < info.vocab_size)
        .or(info.pad_token_id)
        .unwrap_or(0);
    let f = match info.kind {
        ModelKind::CausalLm => {
            if scheme == Scheme::Head {
                return Err(UserError::new(format!(
                    "scheme `head` trains an encoder's classification head; `{}` is a causal LM ({}): use ft, lora, prefix or prompt",
                    spec.model, info.model_type
                ))
                .into());
            }
            if mlm {
                return Err(UserError::new(format!(
                    "template `mlm` is the masked-LM prompt of encoders with an MLM head; `{}` is a causal LM ({}): use template mezo or none",
                    spec.model, info.model_type
                ))
                .into());
            }
            if icl.is_some() {
                store.set_trainable(|_| false);
            } else {
                zo_models::apply_scheme(model.as_mut(), &mut store, &scheme, spec.seed)?;
            }
            let loss = match spec.loss.as_str() {
                "candidate-ce" => lm::LossKind::CandidateCe,
                "gold-lm" => lm::LossKind::GoldLm,
                _ => zo_tasks::loss_kind(&spec.task)?,
            };
            let max_len = info.max_positions.map_or(spec.max_length, |m| {
                spec.max_length
                    .min(m.saturating_sub(scheme_extra_tokens(&scheme)))
            });
            let mut tsplits: [Tokenized; 3] = Default::default();
            for which in [Split::Train, Split::Dev, Split::Test] {
                // ICL: dev and test prompts carry the demonstrations; train stays plain (it is
                // the pool they are drawn from).
                let prompts = match icl {
                    Some(k) if which != Split::Train => {
                        splits.prompted_few_shot(which, &spec.template, k, spec.seed)?
                    }
                    _ => splits.prompted(which, &spec.template)?,
                };
                let qids = splits.question_ids(which);
                tsplits[idx(which)] = lm::tokenize(&tok, &prompts, qids.as_deref(), max_len)?;
            }
            Formulation::new(Inner::Causal {
                model,
                splits: tsplits,
                loss,
                pad,
            })
        }
        ModelKind::Encoder | ModelKind::MaskedLm if mlm => {
            if info.kind != ModelKind::MaskedLm {
                return Err(UserError::new(format!(
                    "template `mlm` scores verbaliser tokens with an MLM head; `{}` is a {} encoder without one (a masked LM such as RobertaForMaskedLM has it): use template mezo for a classification head",
                    spec.model, info.model_type
                ))
                .into());
            }
            if scheme == Scheme::Head {
                return Err(UserError::new(format!(
                    "scheme `head` trains a classification head, which the mlm formulation (template `mlm`) does not have; use ft, lora, prefix or prompt with `{}`",
                    spec.model
                ))
                .into());
            }
            zo_models::apply_scheme(model.as_mut(), &mut store, &scheme, spec.seed)?;
            let vocab = lm::MlmVocab::new(&tok, &tok_path, &spec.task)?;
            let max_len = info.max_positions.map_or(spec.max_length, |m| {
                spec.max_length
                    .min(m.saturating_sub(scheme_extra_tokens(&scheme)))
            });
            let mut msplits: [lm::MlmTokenized; 3] = Default::default();
            for which in [Split::Train, Split::Dev, Split::Test] {
                msplits[idx(which)] =
                    lm::mlm_tokenize(&tok, &vocab, &splits.mlm_prompted(which)?, max_len)?;
            }
            Formulation::new(Inner::Mlm {
                model,
                splits: msplits,
                verbalizer: vocab.verbalizer,
                pad,
            })
        }
        ModelKind::Encoder | ModelKind::MaskedLm => {
            let pooling = Pooling::parse(&spec.pooling).context("pooling")?;
            let labels = zo_tasks::label_names(&spec.task)?.len();
            let mut clf = TextClassifier::attach(model, &mut store, labels, pooling, spec.seed)?;
            zo_models::apply_scheme(clf.model.as_mut(), &mut store, &scheme, spec.seed)?;
            let chosen: HashSet<String> = store
                .params()
                .iter()
                .filter(|p| p.trainable)
                .map(|p| p.name.clone())
                .collect();
            let uses_pooler = pooling == Pooling::Pooler;
            // The head is new: every scheme trains it (as PEFT's `modules_to_save`); the
            // pooler only when the classifier reads it.
            store.set_trainable(|n| {
                HEAD_PARAMS.contains(&n)
                    || (chosen.contains(n) && (uses_pooler || !n.starts_with("pooler.")))
            });
            let max_len = info.max_positions.map_or(spec.max_length, |m| {
                spec.max_length
                    .min(m.saturating_sub(scheme_extra_tokens(&scheme)))
            });
            let mut esplits: [EncSplit; 3] = Default::default();
            for which in [Split::Train, Split::Dev, Split::Test] {
                esplits[idx(which)] = tokenize_encoder(&tok, &splits, which, max_len)?;
            }
            Formulation::new(Inner::Encoder {
                clf,
                splits: esplits,
                pad,
            })
        }
    };
    // Every id must be inside the model's vocabulary: a tokenizer of another model is bad
    // input, not a crash in the embedding lookup.
    let vocab = info.vocab_size as i64;
    let check = |rows: &mut dyn Iterator<Item = &Vec<i64>>| {
        rows.flatten().find(|&&id| id < 0 || id >= vocab).copied()
    };
    let bad = match &f.inner {
        Inner::Encoder { splits, .. } => check(&mut splits.iter().flat_map(|s| s.rows.iter())),
        Inner::Mlm { splits, .. } => check(
            &mut splits
                .iter()
                .flat_map(|s| s.examples.iter().map(|e| &e.ids)),
        ),
        Inner::Causal { splits, .. } => check(
            &mut splits
                .iter()
                .flat_map(|s| s.examples.iter().flat_map(|e| e.rows.iter())),
        ),
    };
    if let Some(bad) = bad {
        return Err(UserError::new(format!(
            "tokenizer `{}` produced id {bad}, outside the model's vocab_size {vocab} ({}): the tokenizer does not belong to this model",
            tok_path.display(),
            path.display()
        ))
        .into());
    }
    Ok((f, store, info.model_type, splits))
}

/// Loads a cell's model, task and scheme as a cell does (for `zobench validate`'s calibration):
/// the formulation, the parameter store, the model family and the task splits.
///
/// # Errors
/// As [`run_cell`]'s loading.
pub fn load_for_calibration(
    spec: &CellSpec,
    device: &Device,
) -> anyhow::Result<(Formulation, ParamStore, String, Splits)> {
    load(spec, device)
}

/// The `shots` of an ICL cell (`None` for a training cell).
///
/// # Errors
/// A [`UserError`] for an ICL cell without a non-negative integer `shots`.
pub fn icl_shots(spec: &CellSpec) -> Result<Option<usize>, UserError> {
    if spec.optimizer != crate::config::ICL {
        return Ok(None);
    }
    spec.hparams
        .get("shots")
        .and_then(|v| v.as_u64())
        .map(|k| Some(k as usize))
        .ok_or_else(|| UserError::new("an `icl` cell needs `shots` (a non-negative integer)"))
}

/// Positions a scheme adds in front of the input (prompt tuning's virtual tokens).
fn scheme_extra_tokens(s: &Scheme) -> usize {
    match s {
        Scheme::Prompt { n } => *n,
        _ => 0,
    }
}

/// The record of an in-context-learning row: `k` demonstrations in every dev and test prompt,
/// no training (0 steps, 0 trainable parameters, no step time), dev and test evaluated once;
/// `zero_shot_*` stay empty (the `shots = 0` row is the zero-shot baseline).
fn icl_record(
    spec: &CellSpec,
    run_id: &str,
    f: &Formulation,
    store: &ParamStore,
    splits: &Splits,
    k: usize,
    started_at: String,
) -> anyhow::Result<RunRecord> {
    let ebs = spec.eval_batch_size;
    let task = spec.task.as_str();
    let dev = evaluate(f, store, splits, task, Split::Dev, ebs)?;
    let test = evaluate(f, store, splits, task, Split::Test, ebs)?;
    tracing::info!(
        shots = k,
        dev = dev.primary_value(),
        test = test.primary_value(),
        "icl done"
    );
    let (n_tr, n_dev, n_test) = splits.counts();
    let mut rec = failed_record(spec, run_id, CellStatus::Ok, String::new(), 0.0, started_at);
    rec.error = None;
    rec.estimator = "none".into();
    rec.formulation = Some(f.name().to_string());
    rec.icl_shots = Some(k);
    rec.metric = Some(test.primary.to_string());
    rec.test_metrics = test
        .values
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
    rec.majority_acc = Some(majority(f, splits, task)?.primary_value());
    rec.best_dev_acc = Some(dev.primary_value());
    rec.best_step = Some(0);
    rec.test_acc = Some(test.primary_value());
    rec.trainable_params = Some(store.num_trainable() as u64);
    rec.total_params = Some(store.num_params() as u64);
    rec.truncated_rows = Some(f.truncated());
    rec.peak_mem_bytes = provenance::peak_rss_bytes();
    rec.mem_breakdown
        .insert("weights".to_string(), store.bytes());
    rec.forward_passes_per_step = Some(0.0);
    rec.backward_passes_per_step = Some(0.0);
    rec.total_forward_passes = Some(0);
    rec.eval_forward_passes = Some(f.eval_forward_passes());
    rec.num_train = Some(n_tr);
    rec.num_dev = Some(n_dev);
    rec.num_eval = Some(n_test);
    Ok(rec)
}

/// The ZO2-style runtime of an offloaded cell (`runtime = "offload"`): a causal LM, its
/// layers streamed to `[offload].device` under the budget.
fn offload_runtime(
    spec: &CellSpec,
    f: &Formulation,
    store: &ParamStore,
) -> anyhow::Result<zo_offload::Offload> {
    let o = spec.offload.clone().unwrap_or_default();
    let model = f.causal_model().ok_or_else(|| {
        UserError::new(format!(
            "runtime = \"offload\" streams the layers of a causal LM; `{}` is scored as `{}` (an [[exclude]] rule with runtime = \"offload\" cannot be written yet: give this model its own config)",
            spec.model,
            f.name()
        ))
    })?;
    let device = zo_offload::parse_device(&o.device).map_err(|e| UserError::new(e.to_string()))?;
    let mut cfg =
        zo_offload::OffloadConfig::new(device, crate::config::offload_budget(&o, store.bytes()));
    cfg.transfer =
        zo_offload::Transfer::parse(&o.transfer).map_err(|e| UserError::new(e.to_string()))?;
    let off = zo_offload::Offload::new(model, store, cfg)
        .map_err(|e| UserError::new(format!("{}: {e}", spec.model)))?;
    tracing::info!(
        device = o.device,
        budget = off.plan().budget_bytes,
        ring = off.plan().ring,
        bytes_per_step = off.plan().bytes_per_step,
        "offload runtime"
    );
    Ok(off)
}

/// One offloaded ZO-SGD step on `batch`, reported like the in-memory optimizer's.
fn offload_step(
    off: &mut zo_offload::Offload,
    spec: &CellSpec,
    f: &Formulation,
    store: &mut ParamStore,
    batch: &[usize],
    ctx: StepCtx,
) -> anyhow::Result<Result<zo_optim::StepReport, StepError>> {
    let model = f.causal_model().expect("checked by offload_runtime");
    let hp = zo_optim::ZoSgd {
        lr: spec.hp_f64("lr").unwrap_or(1e-3),
        mu: spec.hp_f64("mu").unwrap_or(1e-3),
        q: 1,
        weight_decay: spec.hp_f64("weight_decay").unwrap_or(0.0),
    };
    let input = f
        .train_input(batch, store.device())
        .expect("causal formulation");
    let r = off.step(store, model, ctx, &hp, &input, &mut |ps, hidden| {
        f.loss_with(&zo_offload::WithHidden::new(model, hidden), ps, batch)
    });
    Ok(match r {
        Ok(r) => Ok(zo_optim::StepReport {
            loss: r.loss(),
            loss_plus: vec![r.loss_plus],
            loss_minus: vec![r.loss_minus],
            projected_grad: vec![r.projected_grad],
            forward_passes: r.forward_passes,
            ..Default::default()
        }),
        Err(zo_offload::OffloadError::Diverged {
            step,
            loss_plus,
            loss_minus,
        }) => Err(StepError::Diverged {
            step,
            loss_plus,
            loss_minus,
        }),
        Err(e) => return Err(UserError::new(format!("{}: {e}", spec.model)).into()),
    })
}

/// Runs one cell and returns its record; the loss curve is written to `curve_path`
/// (one [`CurvePoint`] a line, flushed as it goes).
///
/// # Errors
/// Bad input (model files, task data, a scheme that does not fit the model) or an internal
/// failure. A NaN loss is not an error: it gives status `diverged`.
pub fn run_cell(spec: &CellSpec, run_id: &str, curve_path: &Path) -> anyhow::Result<RunRecord> {
    let t_start = Instant::now();
    let started_at = provenance::now_rfc3339();
    let device = match spec.backend.as_str() {
        "flex" => Device::flex(),
        other => anyhow::bail!("backend `{other}` is not built into this binary"),
    };
    let (f, mut store, family, splits) = load(spec, &device)?;
    let load_peak = provenance::peak_rss_bytes();
    // Loading holds the file bytes and their f32 copies at once (about 2 x the weights); reset
    // the high-water mark so `peak_mem_bytes` measures evaluation and training.
    let hwm_reset = provenance::reset_peak_rss();
    anyhow::ensure!(
        f.len(Split::Train) > 0,
        "task `{}` has no training examples",
        spec.task
    );
    if let Some(k) = icl_shots(spec)? {
        let mut rec = icl_record(spec, run_id, &f, &store, &splits, k, started_at)?;
        rec.family = Some(family);
        rec.mem_method = if hwm_reset {
            "VmHWM after load".into()
        } else {
            "VmHWM (includes load)".into()
        };
        if let Some(b) = load_peak {
            rec.mem_breakdown.insert("load_peak_rss".to_string(), b);
        }
        rec.wall_s = t_start.elapsed().as_secs_f64();
        return Ok(rec);
    }
    let mut opt = optim::build(&spec.optimizer, &spec.hparams)?;
    opt.validate(&store)
        .map_err(|e| UserError::new(format!("{}: {e}", spec.optimizer)))?;
    let declared_fpps = opt.forward_passes_per_step(&store);
    let mut offload = match spec.runtime.as_str() {
        "offload" => Some(offload_runtime(spec, &f, &store)?),
        _ => None,
    };
    tracing::info!(
        run_id,
        train = f.len(Split::Train),
        dev = f.len(Split::Dev),
        test = f.len(Split::Test),
        trainable = store.num_trainable(),
        forward_passes_per_step = declared_fpps,
        "cell loaded"
    );

    let ebs = spec.eval_batch_size;
    let task = spec.task.as_str();
    let zero_shot = evaluate(&f, &store, &splits, task, Split::Test, ebs)?;
    let mut best_dev = evaluate(&f, &store, &splits, task, Split::Dev, ebs)?.primary_value();
    let mut best_step = 0usize;
    // Best-on-dev parameters are kept on disk, not in memory, so that keeping them does not
    // inflate the measured peak memory (a ZO cell would otherwise hold its weights twice).
    let snapshot_path = curve_path.with_extension("best.bin");
    let save_snapshot = |s: &mut ParamStore| -> anyhow::Result<()> {
        let tmp = snapshot_path.with_extension("bin.tmp");
        let mut w = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        s.write_trainable(&mut w)?;
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, &snapshot_path)?;
        Ok(())
    };
    let best_dev_mode = spec.test_at != "final";
    if best_dev_mode {
        save_snapshot(&mut store)?;
    }
    tracing::info!(
        zero_shot = zero_shot.primary_value(),
        dev = best_dev,
        "step 0"
    );

    let mut curve_file = std::io::BufWriter::new(
        std::fs::File::create(curve_path)
            .with_context(|| format!("creating {}", curve_path.display()))?,
    );
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(spec.seed ^ 0xBA7C_4E5);
    let n_train = f.len(Split::Train);
    let mut perm: Vec<usize> = (0..n_train).collect();
    perm.shuffle(&mut rng);
    let mut cursor = 0usize;
    let mut step_times = Vec::with_capacity(spec.steps);
    let mut status = CellStatus::Ok;
    let mut error = None;
    let mut diverged_at = None;
    let mut last_loss = None;
    let mut jvp_method = None;
    let (mut forward_passes, mut backward_passes, mut steps_done) = (0u64, 0u64, 0u64);
    for step in 1..=spec.steps {
        let mut batch = Vec::with_capacity(spec.batch_size);
        while batch.len() < spec.batch_size {
            if cursor == perm.len() {
                perm.shuffle(&mut rng);
                cursor = 0;
            }
            batch.push(perm[cursor]);
            cursor += 1;
        }
        let t0 = Instant::now();
        let mut obj = BatchObjective {
            f: &f,
            batch: &batch,
        };
        let ctx = StepCtx {
            run_seed: spec.seed,
            step: step as u64,
        };
        let stepped = match offload.as_mut() {
            None => opt.step(&mut store, ctx, &mut obj),
            Some(off) => offload_step(off, spec, &f, &mut store, &batch, ctx)?,
        };
        let rep = match stepped {
            Ok(r) => r,
            Err(StepError::Diverged {
                loss_plus,
                loss_minus,
                ..
            }) => {
                status = CellStatus::Diverged;
                error = Some(format!(
                    "diverged at step {step}: loss_plus = {loss_plus}, loss_minus = {loss_minus}"
                ));
                diverged_at = Some(DivergedAt {
                    step,
                    loss_plus: vec![loss_plus],
                    loss_minus: vec![loss_minus],
                });
                let point = CurvePoint {
                    step,
                    train_loss: f64::NAN,
                    forward_passes,
                    dev_acc: None,
                };
                writeln!(curve_file, "{}", serde_json::to_string(&point)?)?;
                break;
            }
            Err(StepError::Config(e)) => {
                return Err(UserError::new(format!("{}: {e}", spec.optimizer)).into());
            }
        };
        step_times.push(t0.elapsed().as_secs_f64());
        steps_done += 1;
        forward_passes += rep.forward_passes;
        backward_passes += rep.backward_passes;
        if let Some(m) = rep.jvp_method {
            jvp_method = Some(m.to_string());
        }
        let loss = rep.loss;
        last_loss = Some(loss as f64);
        let mut point = CurvePoint {
            step,
            train_loss: loss as f64,
            forward_passes,
            dev_acc: None,
        };
        if !loss.is_finite() {
            status = CellStatus::Diverged;
            error = Some(format!("training loss became {loss} at step {step}"));
            diverged_at = Some(DivergedAt {
                step,
                loss_plus: rep.loss_plus.clone(),
                loss_minus: rep.loss_minus.clone(),
            });
            writeln!(curve_file, "{}", serde_json::to_string(&point)?)?;
            break;
        }
        if step % spec.eval_every == 0 || step == spec.steps {
            // The offload runtime defers each step's update: apply it before reading θ.
            if let Some(off) = offload.as_mut() {
                off.flush(&mut store);
            }
            let acc =
                evaluate(&f, &store.detached(), &splits, task, Split::Dev, ebs)?.primary_value();
            point.dev_acc = Some(acc);
            tracing::info!(step, loss, dev = acc, "eval");
            if acc > best_dev || !best_dev_mode {
                if acc > best_dev {
                    best_dev = acc;
                    best_step = step;
                }
                if best_dev_mode {
                    save_snapshot(&mut store)?;
                }
            }
        }
        writeln!(curve_file, "{}", serde_json::to_string(&point)?)?;
        if step % 10 == 0 {
            curve_file.flush()?;
        }
    }
    curve_file.flush()?;
    if let Some(off) = offload.as_mut() {
        off.flush(&mut store);
    }
    let trainable = store.num_trainable() as u64;
    if best_dev_mode {
        // Test metrics of the parameters that were best on dev.
        let mut r = std::io::BufReader::new(std::fs::File::open(&snapshot_path)?);
        store.read_trainable(&mut r)?;
        drop(r);
        std::fs::remove_file(&snapshot_path).ok();
    }
    let test = evaluate(&f, &store.detached(), &splits, task, Split::Test, ebs)?;
    tracing::info!(test = test.primary_value(), best_dev, best_step, "done");

    let mut sorted = step_times.clone();
    sorted.sort_by(f64::total_cmp);
    let mut mem_breakdown = BTreeMap::new();
    mem_breakdown.insert("weights".to_string(), store.bytes());
    mem_breakdown.insert("optimizer_state".to_string(), opt.state_bytes());
    if let Some(b) = load_peak {
        mem_breakdown.insert("load_peak_rss".to_string(), b);
    }
    if backward_passes > 0 {
        mem_breakdown.insert("gradients".to_string(), trainable * 4);
    }
    let (n_tr, n_dev, n_test) = splits.counts();
    let to_map = |m: &zo_tasks::Metrics| -> BTreeMap<String, f64> {
        m.values.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    };
    let mut rec = failed_record(spec, run_id, status, String::new(), 0.0, started_at);
    rec.error = error;
    rec.diverged_at = diverged_at;
    rec.estimator = opt.estimator().to_string();
    rec.family = Some(family);
    rec.formulation = Some(f.name().to_string());
    rec.eval_forward_passes = Some(f.eval_forward_passes());
    if let Some(off) = &offload {
        let (plan, st) = (off.plan(), off.stats());
        rec.offload = Some(serde_json::json!({
            "device": spec.offload.clone().unwrap_or_default().device,
            "transfer": off.config().transfer.name(),
            "budget_bytes": plan.budget_bytes,
            "ring": plan.ring,
            "resident_bytes": plan.resident_bytes,
            "bytes_per_step": plan.bytes_per_step,
            "bytes_uploaded": st.bytes_uploaded,
            "peak_param_bytes": st.peak_param_bytes,
            "peak_device_bytes": st.peak_device_bytes,
            "peak_device_reserved": st.peak_device_reserved,
            "weights_bytes": store.bytes(),
        }));
    }
    rec.metric = Some(test.primary.to_string());
    rec.test_metrics = to_map(&test);
    rec.zero_shot_metrics = to_map(&zero_shot);
    rec.zero_shot_acc = Some(zero_shot.primary_value());
    rec.majority_acc = Some(majority(&f, &splits, task)?.primary_value());
    rec.best_dev_acc = Some(best_dev);
    rec.best_step = Some(if best_dev_mode {
        best_step
    } else {
        steps_done as usize
    });
    rec.test_acc = Some(test.primary_value());
    rec.final_train_loss = last_loss;
    rec.trainable_params = Some(trainable);
    rec.total_params = Some(store.num_params() as u64);
    rec.truncated_rows = Some(f.truncated());
    rec.jvp_method = jvp_method;
    rec.peak_mem_bytes = provenance::peak_rss_bytes();
    rec.mem_method = if hwm_reset {
        "VmHWM after load".into()
    } else {
        "VmHWM (includes load)".into()
    };
    rec.mem_breakdown = mem_breakdown;
    rec.time_per_step_s = percentile(&sorted, 0.5);
    rec.time_per_step_p10_s = percentile(&sorted, 0.1);
    rec.time_per_step_p90_s = percentile(&sorted, 0.9);
    // Counted, not declared: the optimizer reports the objective calls of every step.
    let per = |n: u64| {
        if steps_done > 0 {
            n as f64 / steps_done as f64
        } else {
            declared_fpps as f64
        }
    };
    rec.forward_passes_per_step = Some(per(forward_passes));
    rec.backward_passes_per_step = Some(if steps_done > 0 {
        backward_passes as f64 / steps_done as f64
    } else {
        0.0
    });
    rec.total_forward_passes = Some(forward_passes);
    rec.num_train = Some(n_tr);
    rec.num_dev = Some(n_dev);
    rec.num_eval = Some(n_test);
    rec.wall_s = t_start.elapsed().as_secs_f64();
    Ok(rec)
}
