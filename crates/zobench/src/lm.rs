//! The causal-LM formulation of a task (MeZO / ZO-Bench): a context and candidate
//! continuations, scored by the model's log-likelihood of the candidate tokens.
//!
//! * **Tokenization**: `ids = tok(context, with special tokens) ++ tok(candidate, without)`
//!   (the candidate's own context when the template gives one, as WinoGrande's `partial`);
//!   a row longer than `max_length` loses tokens from the *left of the context*, never from
//!   the candidate, and is counted in [`Tokenized::truncated`].
//! * **Score** of a candidate: mean log-probability of its tokens given everything before
//!   (length-normalised log-likelihood). Evaluation predicts the argmax over candidates.
//! * **Losses** (per task, [`LossKind`]): cross-entropy over the candidates' scores
//!   (classification tasks) or the token-weighted LM loss on the gold candidate
//!   (multiple-choice tasks).
//!
//! Only the hidden states at candidate positions go through the LM head: for a 49k-token
//! vocabulary that removes most of the head's cost (and all of its memory at other positions).
//!
//! The second half of this module is the **masked-LM prompt formulation** (template `mlm`,
//! MeZO's RoBERTa / LM-BFF prompts, [`zo_tasks::mlm`]) for encoders with an MLM head:
//! [`MlmVocab`] (special and verbaliser token ids, checked against the tokenizer),
//! [`mlm_tokenize`], and the class logits [`mlm_logits`] = the MLM head's logits of the
//! verbaliser tokens **at the single mask position** (only that position goes through the
//! head), with [`mlm_loss`] (cross-entropy over them) and [`mlm_predict`] (argmax).

use crate::error::UserError;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use zo_models::model::{LanguageModel, ModelInput};
use zo_models::{EncodedBatch, ModelError, TextTokenizer};
use zo_optim::ParamStore;
use zo_tasks::{MlmPart, MlmPrompted, Prompted};

pub use zo_tasks::LossKind;

/// One tokenized prompted example.
#[derive(Debug, Clone, PartialEq)]
pub struct TokExample {
    /// `context ++ candidate` ids, one row per candidate.
    pub rows: Vec<Vec<i64>>,
    /// Index of each row's first candidate token (≥ 1).
    pub starts: Vec<usize>,
    /// Gold candidate.
    pub gold: usize,
    /// Group id (MultiRC question), if any.
    pub group: Option<usize>,
}

/// A tokenized split.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Tokenized {
    /// Examples.
    pub examples: Vec<TokExample>,
    /// Rows whose context was cut from the left to fit `max_length`.
    pub truncated: usize,
}

/// Tokenizes prompted examples (see the module docs).
///
/// # Errors
/// [`ModelError::Tokenizer`] if the tokenizer fails, or an empty candidate (no tokens) or a
/// context with no tokens, which leaves nothing to condition on.
pub fn tokenize(
    tok: &TextTokenizer,
    prompts: &[Prompted],
    groups: Option<&[usize]>,
    max_length: usize,
) -> Result<Tokenized, ModelError> {
    let mut out = Tokenized::default();
    for (i, p) in prompts.iter().enumerate() {
        let shared = tok.encode_ids(&p.context, true)?;
        let mut ex = TokExample {
            rows: vec![],
            starts: vec![],
            gold: p.gold,
            group: groups.map(|g| g[i]),
        };
        for (ci, c) in p.candidates.iter().enumerate() {
            // A per-candidate context (WinoGrande's partial scoring) replaces the shared one.
            let own;
            let ctx = if p.candidate_contexts.is_empty() {
                &shared
            } else {
                own = tok.encode_ids(p.context_of(ci), true)?;
                &own
            };
            let cand = tok.encode_ids(c, false)?;
            if cand.is_empty() || ctx.is_empty() {
                return Err(ModelError::Tokenizer {
                    path: Default::default(),
                    msg: format!(
                        "candidate {c:?} after context {:?} gives no tokens to score",
                        p.context
                    ),
                });
            }
            let keep = max_length.saturating_sub(cand.len()).max(1).min(ctx.len());
            if keep < ctx.len() {
                out.truncated += 1;
            }
            let mut row = ctx[ctx.len() - keep..].to_vec();
            let start = row.len();
            row.extend_from_slice(&cand);
            ex.rows.push(row);
            ex.starts.push(start);
        }
        out.examples.push(ex);
    }
    Ok(out)
}

/// Sum of candidate-token log-probabilities of each row `[R]` (differentiable) and each row's
/// number of candidate tokens.
fn row_logprobs(
    model: &dyn LanguageModel,
    ps: &ParamStore,
    rows: &[(&[i64], usize)],
    pad: i64,
) -> (Tensor<1>, Vec<usize>) {
    let device: Device = ps.device().clone();
    let owned: Vec<Vec<i64>> = rows.iter().map(|(r, _)| r.to_vec()).collect();
    let b = EncodedBatch::from_rows(&owned, pad);
    let (r_n, t) = (b.rows, b.cols);
    let input = ModelInput::from_host(&b.input_ids, &b.attention_mask, r_n, t, &device);
    let hidden = model.hidden_states(ps, &input);
    let h = hidden.dims()[2];
    let mut idx = vec![];
    let mut targets = vec![];
    let mut counts = vec![];
    let mut seg = vec![];
    for (r, (ids, start)) in rows.iter().enumerate() {
        let n = ids.len() - start;
        counts.push(n);
        for p in (start - 1)..(ids.len() - 1) {
            idx.push((r * t + p) as i64);
            targets.push(ids[p + 1]);
            seg.push(r);
        }
    }
    let n_pos = idx.len();
    let sel = hidden.reshape([r_n * t, h]).select(
        0,
        Tensor::<1, Int>::from_data(TensorData::new(idx, [n_pos]), &device),
    );
    let logits = model
        .lm_head(ps, sel.unsqueeze_dim::<3>(0))
        .expect("causal LM has an LM head")
        .reshape([n_pos as i32, -1]);
    let lp = log_softmax(logits, 1).gather(
        1,
        Tensor::<2, Int>::from_data(TensorData::new(targets, [n_pos, 1]), &device),
    );
    let mut w = vec![0f32; r_n * n_pos];
    for (j, r) in seg.iter().enumerate() {
        w[r * n_pos + j] = 1.0;
    }
    let w = Tensor::<2>::from_data(TensorData::new(w, [r_n, n_pos]), &device);
    (w.matmul(lp).reshape([r_n]), counts)
}

/// Length-normalised scores of every candidate of `examples`, `[Σ candidates]` in order.
fn scores(
    model: &dyn LanguageModel,
    ps: &ParamStore,
    examples: &[&TokExample],
    pad: i64,
) -> Tensor<1> {
    let rows: Vec<(&[i64], usize)> = examples
        .iter()
        .flat_map(|e| {
            e.rows
                .iter()
                .zip(&e.starts)
                .map(|(r, s)| (r.as_slice(), *s))
        })
        .collect();
    let (sums, counts) = row_logprobs(model, ps, &rows, pad);
    let inv: Vec<f32> = counts.iter().map(|&c| 1.0 / c as f32).collect();
    let n = inv.len();
    sums * Tensor::<1>::from_data(TensorData::new(inv, [n]), ps.device())
}

/// The model input [`loss`] builds for `batch` (the gold rows for `GoldLm`, every candidate
/// row for `CandidateCe`, padded the same way): the offload runtime runs the model on it and
/// hands the hidden states back to [`loss`] through `zo_offload::WithHidden`.
pub fn loss_input(batch: &[&TokExample], kind: LossKind, pad: i64, device: &Device) -> ModelInput {
    let owned: Vec<Vec<i64>> = match kind {
        LossKind::GoldLm => batch.iter().map(|e| e.rows[e.gold].clone()).collect(),
        LossKind::CandidateCe => batch.iter().flat_map(|e| e.rows.iter().cloned()).collect(),
    };
    let b = EncodedBatch::from_rows(&owned, pad);
    ModelInput::from_host(&b.input_ids, &b.attention_mask, b.rows, b.cols, device)
}

/// Training loss of a batch (nats), differentiable on an autodiff store.
pub fn loss(
    model: &dyn LanguageModel,
    ps: &ParamStore,
    batch: &[&TokExample],
    kind: LossKind,
    pad: i64,
) -> Tensor<1> {
    let device = ps.device().clone();
    match kind {
        LossKind::GoldLm => {
            let rows: Vec<(&[i64], usize)> = batch
                .iter()
                .map(|e| (e.rows[e.gold].as_slice(), e.starts[e.gold]))
                .collect();
            let (sums, counts) = row_logprobs(model, ps, &rows, pad);
            let total: usize = counts.iter().sum();
            sums.sum().neg() / total as f32
        }
        LossKind::CandidateCe => {
            let s = scores(model, ps, batch, pad);
            let cmax = batch.iter().map(|e| e.rows.len()).max().unwrap_or(1);
            let e_n = batch.len();
            let mut idx = vec![0i64; e_n * cmax];
            let mut bias = vec![-1e9f32; e_n * cmax];
            let mut off = 0usize;
            for (i, e) in batch.iter().enumerate() {
                for c in 0..e.rows.len() {
                    idx[i * cmax + c] = (off + c) as i64;
                    bias[i * cmax + c] = 0.0;
                }
                off += e.rows.len();
            }
            let m = s
                .select(
                    0,
                    Tensor::<1, Int>::from_data(TensorData::new(idx, [e_n * cmax]), &device),
                )
                .reshape([e_n, cmax])
                + Tensor::<2>::from_data(TensorData::new(bias, [e_n, cmax]), &device);
            let gold: Vec<i64> = batch.iter().map(|e| e.gold as i64).collect();
            let lp = log_softmax(m, 1).gather(
                1,
                Tensor::<2, Int>::from_data(TensorData::new(gold, [e_n, 1]), &device),
            );
            lp.sum().neg() / e_n as f32
        }
    }
}

/// Predicted candidate (argmax of the length-normalised log-likelihood) of every example,
/// evaluated `batch_rows` candidate rows at a time (examples sorted by length).
pub fn predict(
    model: &dyn LanguageModel,
    ps: &ParamStore,
    examples: &[TokExample],
    batch_rows: usize,
    pad: i64,
) -> Vec<usize> {
    predict_counted(model, ps, examples, batch_rows, pad).0
}

/// [`predict`], and the number of forward passes (model calls) it made.
pub fn predict_counted(
    model: &dyn LanguageModel,
    ps: &ParamStore,
    examples: &[TokExample],
    batch_rows: usize,
    pad: i64,
) -> (Vec<usize>, u64) {
    let mut passes = 0u64;
    let mut order: Vec<usize> = (0..examples.len()).collect();
    order.sort_by_key(|&i| examples[i].rows.iter().map(Vec::len).max().unwrap_or(0));
    let mut pred = vec![0usize; examples.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        let mut rows = 0;
        while j < order.len() && (j == i || rows + examples[order[j]].rows.len() <= batch_rows) {
            rows += examples[order[j]].rows.len();
            j += 1;
        }
        let chunk: Vec<&TokExample> = order[i..j].iter().map(|&k| &examples[k]).collect();
        passes += 1;
        let s = scores(model, ps, &chunk, pad)
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .expect("f32 scores");
        let mut off = 0;
        for (k, e) in order[i..j].iter().zip(&chunk) {
            let c = e.rows.len();
            let best = (0..c)
                .max_by(|&a, &b| s[off + a].total_cmp(&s[off + b]))
                .unwrap_or(0);
            pred[*k] = best;
            off += c;
        }
        i = j;
    }
    (pred, passes)
}

// ---------------------------------------------------------------------------------------------
// The masked-LM prompt formulation (template `mlm`).

/// Token ids of the masked-LM prompt formulation, checked against the tokenizer: the special
/// tokens and one verbaliser token per class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MlmVocab {
    /// The first special token of an encoded text (`<s>`, `[CLS]`).
    pub cls: i64,
    /// The last special token of an encoded text (`</s>`, `[SEP]`).
    pub sep: i64,
    /// The mask token (`<mask>`, `[MASK]`).
    pub mask: i64,
    /// The verbaliser token of each class (index = label).
    pub verbalizer: Vec<i64>,
}

impl MlmVocab {
    /// Finds the special tokens of `tok` and the single token of every verbaliser word of
    /// `task`'s `mlm` template.
    ///
    /// # Errors
    /// A [`UserError`] naming the tokenizer file when it adds no `[CLS] … [SEP]` pair, has no
    /// mask token (`<mask>` or `[MASK]`), or a verbaliser word is not exactly one known token
    /// (or two classes share one); a [`zo_tasks::TaskError`] for a task without an `mlm`
    /// template.
    pub fn new(
        tok: &TextTokenizer,
        tok_path: &std::path::Path,
        task: &str,
    ) -> anyhow::Result<Self> {
        let words = zo_tasks::mlm_verbalizer(task)?;
        let file = tok_path.display();
        let special = tok.encode_ids("", true)?;
        let [cls, sep] = special[..] else {
            return Err(UserError::new(format!(
                "template `mlm` needs a tokenizer that wraps a text in one first and one last special token (`<s> … </s>`, `[CLS] … [SEP]`); `{file}` adds {special:?}"
            ))
            .into());
        };
        let mut mask = None;
        for m in ["<mask>", "[MASK]"] {
            let ids = tok.encode_ids(m, false)?;
            if ids.len() == 1 && tok.decode(&ids)?.trim() == m {
                mask = Some(ids[0]);
                break;
            }
        }
        let Some(mask) = mask else {
            return Err(UserError::new(format!(
                "template `mlm` needs a mask token; tokenizer `{file}` has neither `<mask>` nor `[MASK]`"
            ))
            .into());
        };
        let mut verbalizer = Vec::with_capacity(words.len());
        for w in words {
            let ids = tok.encode_ids(w, false)?;
            let single = ids.len() == 1
                && tok.decode(&ids)?.trim().to_lowercase() == w.trim().to_lowercase()
                && ![cls, sep, mask].contains(&ids[0]);
            if !single {
                let pieces = ids
                    .iter()
                    .map(|&i| tok.decode(&[i]).map(|p| format!("{p:?}")))
                    .collect::<Result<Vec<_>, _>>()?;
                return Err(UserError::new(format!(
                    "verbaliser word {w:?} of task `{task}` (template `mlm`) is not a single token of tokenizer `{file}`: it gives ids {ids:?} = [{}]; the mlm formulation scores one token per class at the mask",
                    pieces.join(", ")
                ))
                .into());
            }
            if verbalizer.contains(&ids[0]) {
                return Err(UserError::new(format!(
                    "verbaliser words of task `{task}` share token id {} in tokenizer `{file}`",
                    ids[0]
                ))
                .into());
            }
            verbalizer.push(ids[0]);
        }
        Ok(Self {
            cls,
            sep,
            mask,
            verbalizer,
        })
    }
}

/// One tokenized masked-LM prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MlmExample {
    /// Token ids (special tokens included), with exactly one mask.
    pub ids: Vec<i64>,
    /// Index of the mask in `ids`.
    pub mask_pos: usize,
    /// Gold class.
    pub gold: usize,
}

/// A tokenized split of masked-LM prompts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MlmTokenized {
    /// Examples.
    pub examples: Vec<MlmExample>,
    /// Prompts whose fields were cut to fit `max_length`.
    pub truncated: usize,
}

/// Tokenizes masked-LM prompts: each part on its own (no special tokens) and concatenated, the
/// special parts as `v`'s ids; a prompt longer than `max_length` loses tokens from the end of
/// its longest field, repeatedly (template text and the mask are never cut).
///
/// # Errors
/// A tokenizer failure; a [`UserError`] when an example's own text tokenizes to the mask
/// token, or when the template without its fields is longer than `max_length`.
pub fn mlm_tokenize(
    tok: &TextTokenizer,
    v: &MlmVocab,
    prompts: &[MlmPrompted],
    max_length: usize,
) -> anyhow::Result<MlmTokenized> {
    let mut out = MlmTokenized::default();
    for (n, p) in prompts.iter().enumerate() {
        // (ids, is a field)
        let mut segs: Vec<(Vec<i64>, bool)> = Vec::with_capacity(p.parts.len());
        for part in &p.parts {
            segs.push(match part {
                MlmPart::Cls => (vec![v.cls], false),
                MlmPart::Sep => (vec![v.sep], false),
                MlmPart::Mask => (vec![v.mask], false),
                MlmPart::Text(t) => (tok.encode_ids(t, false)?, false),
                MlmPart::Field(t) => {
                    let ids = tok.encode_ids(t, false)?;
                    if ids.contains(&v.mask) {
                        return Err(UserError::new(format!(
                            "example {n}: its text {t:?} contains the mask token; the mlm prompt must hold exactly one mask"
                        ))
                        .into());
                    }
                    (ids, true)
                }
            });
        }
        let mut len: usize = segs.iter().map(|s| s.0.len()).sum();
        let mut cut = false;
        while len > max_length {
            let longest = segs
                .iter_mut()
                .filter(|s| s.1 && !s.0.is_empty())
                .rev()
                .max_by_key(|s| s.0.len());
            let Some(seg) = longest else {
                return Err(UserError::new(format!(
                    "example {n}: the mlm template without its text takes {len} tokens, more than max_length = {max_length}"
                ))
                .into());
            };
            seg.0.pop();
            len -= 1;
            cut = true;
        }
        out.truncated += usize::from(cut);
        let ids: Vec<i64> = segs.into_iter().flat_map(|s| s.0).collect();
        let masks: Vec<usize> = (0..ids.len()).filter(|&i| ids[i] == v.mask).collect();
        let [mask_pos] = masks[..] else {
            return Err(UserError::new(format!(
                "example {n}: the mlm prompt holds {} mask tokens, not one",
                masks.len()
            ))
            .into());
        };
        out.examples.push(MlmExample {
            ids,
            mask_pos,
            gold: p.gold,
        });
    }
    Ok(out)
}

/// Class logits `[B, C]` of a batch: the MLM head's logits of the verbaliser tokens at each
/// example's mask position (only those B positions go through the head). Differentiable on
/// an autodiff store.
///
/// # Panics
/// When the model has no LM head (the runner checks the model kind first).
pub fn mlm_logits(
    model: &dyn LanguageModel,
    ps: &ParamStore,
    batch: &[&MlmExample],
    verbalizer: &[i64],
    pad: i64,
) -> Tensor<2> {
    let device: Device = ps.device().clone();
    let rows: Vec<Vec<i64>> = batch.iter().map(|e| e.ids.clone()).collect();
    let b = EncodedBatch::from_rows(&rows, pad);
    let (r_n, t) = (b.rows, b.cols);
    let input = ModelInput::from_host(&b.input_ids, &b.attention_mask, r_n, t, &device);
    let hidden = model.hidden_states(ps, &input);
    let h = hidden.dims()[2];
    let idx: Vec<i64> = batch
        .iter()
        .enumerate()
        .map(|(r, e)| (r * t + e.mask_pos) as i64)
        .collect();
    let at_mask = hidden.reshape([r_n * t, h]).select(
        0,
        Tensor::<1, Int>::from_data(TensorData::new(idx, [r_n]), &device),
    );
    let logits = model
        .lm_head(ps, at_mask.unsqueeze_dim::<3>(0))
        .expect("a masked LM has an LM head")
        .reshape([r_n as i32, -1]);
    let c = verbalizer.len();
    logits.select(
        1,
        Tensor::<1, Int>::from_data(TensorData::new(verbalizer.to_vec(), [c]), &device),
    )
}

/// Training loss of a batch (nats): cross-entropy over the verbaliser logits at the mask.
pub fn mlm_loss(
    model: &dyn LanguageModel,
    ps: &ParamStore,
    batch: &[&MlmExample],
    verbalizer: &[i64],
    pad: i64,
) -> Tensor<1> {
    let device = ps.device().clone();
    let n = batch.len();
    let gold: Vec<i64> = batch.iter().map(|e| e.gold as i64).collect();
    let lp = log_softmax(mlm_logits(model, ps, batch, verbalizer, pad), 1).gather(
        1,
        Tensor::<2, Int>::from_data(TensorData::new(gold, [n, 1]), &device),
    );
    lp.sum().neg() / n as f32
}

/// Predicted class (argmax of the verbaliser logits) of every example, `bs` examples per
/// forward pass (sorted by length), and the number of forward passes.
pub fn mlm_predict(
    model: &dyn LanguageModel,
    ps: &ParamStore,
    examples: &[MlmExample],
    bs: usize,
    verbalizer: &[i64],
    pad: i64,
) -> (Vec<usize>, u64) {
    let mut order: Vec<usize> = (0..examples.len()).collect();
    order.sort_by_key(|&i| examples[i].ids.len());
    let mut pred = vec![0usize; examples.len()];
    let mut passes = 0u64;
    let c = verbalizer.len();
    for chunk in order.chunks(bs.max(1)) {
        let batch: Vec<&MlmExample> = chunk.iter().map(|&i| &examples[i]).collect();
        passes += 1;
        let l = mlm_logits(model, ps, &batch, verbalizer, pad)
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .expect("f32 logits");
        for (r, &i) in chunk.iter().enumerate() {
            pred[i] = (0..c)
                .max_by(|&a, &b| l[r * c + a].total_cmp(&l[r * c + b]))
                .unwrap_or(0);
        }
    }
    (pred, passes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// llama-tiny's reference: the log-likelihood of every token after the first, from HF.
    fn fixture() -> (Box<dyn LanguageModel>, ParamStore, serde_json::Value) {
        let dir = crate::registry::project_root().join("fixtures/models/llama-tiny");
        let mut ps = ParamStore::new(Device::flex());
        let model = zo_models::model::load_model(&dir, &mut ps).unwrap();
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
                .unwrap();
        (model, ps, r)
    }

    fn row(r: &serde_json::Value, i: usize) -> Vec<i64> {
        let len = r["lengths"][i].as_u64().unwrap() as usize;
        r["input_ids"][i].as_array().unwrap()[..len]
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect()
    }

    #[test]
    fn candidate_logprobs_match_hf_per_token_nll() {
        let (model, ps, r) = fixture();
        let rows = [row(&r, 0), row(&r, 1)];
        // Candidates = the last 3 tokens of each row; reference NLL of those positions.
        let spec: Vec<(&[i64], usize)> = rows.iter().map(|x| (x.as_slice(), x.len() - 3)).collect();
        let (sums, counts) = row_logprobs(model.as_ref(), &ps, &spec, 0);
        assert_eq!(counts, vec![3, 3]);
        let got = sums.into_data().try_into_vec::<f32>().unwrap();
        for i in 0..2 {
            let nll: Vec<f64> = r["per_token_nll"][i]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            let want: f64 = -nll[nll.len() - 3..].iter().sum::<f64>();
            assert!(
                (got[i] as f64 - want).abs() < 1e-4,
                "row {i}: {} vs {want}",
                got[i]
            );
        }
    }

    // ---- the masked-LM prompt formulation, on the tiny random RoBERTa (RobertaForMaskedLM) ----

    const G: &str = "\u{120}"; // byte-level BPE's space marker

    /// Words of the test tokenizer, ids 4.. in order (`<s>` 0, `<pad>` 1, `</s>` 2, `<unk>` 3,
    /// `<mask>` 119 = roberta-tiny's vocab_size - 1).
    fn words(with_terrible: bool) -> Vec<String> {
        let mut w: Vec<String> = [
            "a",
            "Ggorgeous",
            "G,",
            "Gwitty",
            "Gseductive",
            "Gmovie",
            "G.",
            ".",
            "GIt",
            "Gwas",
            "Gterrible",
            "Ggreat",
            ",",
            "?",
            "GYes",
            "GNo",
            "GMaybe",
        ]
        .iter()
        .map(|x| x.replace('G', G))
        .collect();
        if !with_terrible {
            w[10] = format!("{G}terr");
        }
        while w.len() < 115 {
            w.push(format!("{G}w{}", w.len()));
        }
        w
    }

    /// A RoBERTa-style tokenizer.json (byte-level pre-tokenizer, whole-word vocabulary,
    /// `<s> … </s>` post-processor) over `words`.
    fn roberta_tokenizer(words: &[String]) -> serde_json::Value {
        let specials = [
            ("<s>", 0),
            ("<pad>", 1),
            ("</s>", 2),
            ("<unk>", 3),
            ("<mask>", 119),
        ];
        let mut vocab = serde_json::Map::new();
        for (t, i) in specials {
            vocab.insert(t.into(), i.into());
        }
        for (i, w) in words.iter().enumerate() {
            vocab.insert(w.clone(), (i + 4).into());
        }
        let added: Vec<serde_json::Value> = specials
            .iter()
            .map(|(t, i)| {
                serde_json::json!({"id": i, "content": t, "single_word": false,
                    "lstrip": *t == "<mask>", "rstrip": false, "normalized": false,
                    "special": true})
            })
            .collect();
        serde_json::json!({
            "version": "1.0", "truncation": null,
            "padding": {"strategy": "BatchLongest", "direction": "Right",
                "pad_to_multiple_of": null, "pad_id": 1, "pad_type_id": 0, "pad_token": "<pad>"},
            "added_tokens": added, "normalizer": null,
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false,
                "trim_offsets": true, "use_regex": true},
            "post_processor": {"type": "RobertaProcessing", "sep": ["</s>", 2],
                "cls": ["<s>", 0], "trim_offsets": true, "add_prefix_space": false},
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true,
                "use_regex": true},
            "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"}
        })
    }

    fn mlm_fixture(
        with_terrible: bool,
    ) -> (
        Box<dyn LanguageModel>,
        ParamStore,
        TextTokenizer,
        tempfile::TempDir,
    ) {
        let dir = crate::registry::project_root().join("fixtures/models/roberta-tiny");
        let mut ps = ParamStore::new(Device::flex());
        let model = zo_models::model::load_model(&dir, &mut ps).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("tokenizer.json");
        std::fs::write(&p, roberta_tokenizer(&words(with_terrible)).to_string()).unwrap();
        let tok = TextTokenizer::from_file(&p).unwrap();
        (model, ps, tok, tmp)
    }

    fn sst2(sentence: &str, label: usize) -> zo_tasks::Item {
        zo_tasks::Item::Sst2 {
            sentence: sentence.into(),
            label,
        }
    }

    #[test]
    fn mlm_sst2_prompt_renders_to_the_exact_tokens_with_one_mask() {
        let (model, _, tok, tmp) = mlm_fixture(true);
        assert_eq!(model.info().kind, zo_models::ModelKind::MaskedLm);
        let v = MlmVocab::new(&tok, &tmp.path().join("tokenizer.json"), "sst2").unwrap();
        assert_eq!((v.cls, v.sep, v.mask), (0, 2, 119));
        // ` terrible` and ` great` are the words at ids 14 and 15.
        assert_eq!(v.verbalizer, vec![14, 15]);
        let p = zo_tasks::render_mlm(&sst2("a gorgeous , witty , seductive movie . ", 1)).unwrap();
        let t = mlm_tokenize(&tok, &v, &[p], 128).unwrap();
        // <s> a ␣gorgeous ␣, ␣witty ␣, ␣seductive ␣movie ␣. | ␣It ␣was | <mask> | . | </s>
        assert_eq!(
            t.examples[0].ids,
            vec![0, 4, 5, 6, 7, 6, 8, 9, 10, 12, 13, 119, 11, 2]
        );
        assert_eq!(t.examples[0].ids.iter().filter(|&&i| i == 119).count(), 1);
        assert_eq!(t.examples[0].mask_pos, 11);
        assert_eq!(t.examples[0].gold, 1);
        assert_eq!(t.truncated, 0);
        // Too long: the sentence loses tokens from its end; the template and mask stay.
        let p = zo_tasks::render_mlm(&sst2("a gorgeous , witty , seductive movie .", 0)).unwrap();
        let t = mlm_tokenize(&tok, &v, &[p.clone()], 9).unwrap();
        assert_eq!(t.examples[0].ids, vec![0, 4, 5, 6, 12, 13, 119, 11, 2]);
        assert_eq!((t.examples[0].mask_pos, t.truncated), (6, 1));
        let e = mlm_tokenize(&tok, &v, &[p], 5).unwrap_err().to_string();
        assert!(e.contains("max_length = 5"), "{e}");
    }

    #[test]
    fn mlm_verbaliser_words_must_be_single_tokens() {
        let (_, _, tok, tmp) = mlm_fixture(false);
        let e = MlmVocab::new(&tok, &tmp.path().join("tokenizer.json"), "sst2")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("\" terrible\"")
                && e.contains("not a single token")
                && e.contains("tokenizer.json"),
            "{e}"
        );
        // RTE's and CB's words are in the vocabulary; COPA has no mlm template.
        let p = tmp.path().join("tokenizer.json");
        assert_eq!(
            MlmVocab::new(&tok, &p, "rte").unwrap().verbalizer,
            vec![18, 19]
        );
        assert_eq!(
            MlmVocab::new(&tok, &p, "cb").unwrap().verbalizer,
            vec![18, 19, 20]
        );
        let e = MlmVocab::new(&tok, &p, "copa").unwrap_err().to_string();
        assert!(e.contains("no `mlm` template"), "{e}");
    }

    #[test]
    fn mlm_scores_are_the_lm_head_logits_at_the_mask() {
        let (model, ps, tok, tmp) = mlm_fixture(true);
        let v = MlmVocab::new(&tok, &tmp.path().join("tokenizer.json"), "sst2").unwrap();
        let prompts: Vec<MlmPrompted> = [
            sst2("a gorgeous , witty , seductive movie .", 1),
            sst2("a movie", 0),
        ]
        .iter()
        .map(|i| zo_tasks::render_mlm(i).unwrap())
        .collect();
        let t = mlm_tokenize(&tok, &v, &prompts, 64).unwrap();
        let batch: Vec<&MlmExample> = t.examples.iter().collect();
        // Rows of different lengths: the second is right-padded in the batch.
        let got = mlm_logits(model.as_ref(), &ps, &batch, &v.verbalizer, 1)
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        let mut want = vec![];
        for e in &t.examples {
            // By hand: the full logits [1, T, V] of the example alone, row `mask_pos`.
            let n = e.ids.len();
            let input = ModelInput::from_host(&e.ids, &vec![1; n], 1, n, ps.device());
            let full = model
                .logits(&ps, &input)
                .unwrap()
                .into_data()
                .try_into_vec::<f32>()
                .unwrap();
            let vocab = full.len() / n;
            for &w in &v.verbalizer {
                want.push(full[e.mask_pos * vocab + w as usize]);
            }
        }
        assert_eq!(got.len(), 4);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-4, "{got:?} vs {want:?}");
        }
        // Loss: cross-entropy over the two verbaliser logits; prediction: their argmax.
        let ce = |l: &[f32], gold: usize| -> f32 {
            let m = l[0].max(l[1]);
            let lse = m + ((l[0] - m).exp() + (l[1] - m).exp()).ln();
            lse - l[gold]
        };
        let want_loss = (ce(&want[0..2], 1) + ce(&want[2..4], 0)) / 2.0;
        let loss = mlm_loss(model.as_ref(), &ps, &batch, &v.verbalizer, 1).into_scalar::<f32>();
        assert!((loss - want_loss).abs() < 1e-4, "{loss} vs {want_loss}");
        let argmax = |l: &[f32]| usize::from(l[1] > l[0]);
        let (pred, passes) = mlm_predict(model.as_ref(), &ps, &t.examples, 1, &v.verbalizer, 1);
        assert_eq!(pred, vec![argmax(&want[0..2]), argmax(&want[2..4])]);
        assert_eq!(passes, 2, "one forward pass per example at batch size 1");
    }

    #[test]
    fn losses_and_prediction_follow_the_scores() {
        let (model, ps, r) = fixture();
        let a = row(&r, 0);
        // Two candidates: the true continuation and a shuffled one.
        let mut b = a.clone();
        let n = b.len();
        b.swap(n - 1, n - 2);
        let ex = TokExample {
            rows: vec![a.clone(), b.clone()],
            starts: vec![n - 2, n - 2],
            gold: 0,
            group: None,
        };
        let spec: Vec<(&[i64], usize)> = vec![(&a, n - 2), (&b, n - 2)];
        let (sums, _) = row_logprobs(model.as_ref(), &ps, &spec, 0);
        let s: Vec<f32> = sums.into_data().try_into_vec::<f32>().unwrap();
        let (s0, s1) = (s[0] / 2.0, s[1] / 2.0);
        // Cross-entropy over the two normalised scores, by hand.
        let ce = -(s0 - (s0.exp() + s1.exp()).ln());
        let got = loss(model.as_ref(), &ps, &[&ex], LossKind::CandidateCe, 0).into_scalar::<f32>();
        assert!((got - ce).abs() < 1e-5, "{got} vs {ce}");
        let lm = loss(model.as_ref(), &ps, &[&ex], LossKind::GoldLm, 0).into_scalar::<f32>();
        assert!((lm + s0).abs() < 1e-5, "{lm} vs {}", -s0);
        let want = if s0 >= s1 { 0 } else { 1 };
        assert_eq!(predict(model.as_ref(), &ps, &[ex], 8, 0), vec![want]);
    }
}
