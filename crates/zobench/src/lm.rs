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

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use zo_models::model::{LanguageModel, ModelInput};
use zo_models::{EncodedBatch, ModelError, TextTokenizer};
use zo_optim::ParamStore;
use zo_tasks::Prompted;

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
    pred
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
