//! Sequence classification on an encoder of the zoo: a linear head on a pooled vector
//! ([`TextClassifier`]).

use crate::bert::mean_pool;
use crate::error::ModelError;
use crate::tokenizer::EncodedBatch;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};
use zo_optim::ParamStore;
use zo_optim::noise::{NoiseKey, gaussian_vec};

/// How the sequence of hidden states becomes one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// Attention-masked mean over positions (sentence-transformers; the MiniLM default).
    Mean,
    /// The hidden state of the first (`[CLS]`) token.
    Cls,
    /// BERT's pooler: `tanh(W_p h[:, 0] + b_p)` (needs `pooler.*` in the checkpoint).
    Pooler,
}

impl Pooling {
    /// Parses `mean`, `cls` or `pooler`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "mean" => Some(Self::Mean),
            "cls" => Some(Self::Cls),
            "pooler" => Some(Self::Pooler),
            _ => None,
        }
    }
}

/// Names of the head's parameters (the `head` fine-tuning scheme trains exactly these).
pub const HEAD_PARAMS: [&str; 2] = ["classifier.weight", "classifier.bias"];

/// Mean cross-entropy `−(1/B) Σ_b log softmax(logits_b)[y_b]` of logits `[B, C]` → `[1]`.
pub fn cross_entropy(logits: Tensor<2>, labels: &[usize]) -> Tensor<1> {
    let [b, _] = logits.dims();
    let dev = logits.device();
    let y = Tensor::<2, Int>::from_data(
        TensorData::new(labels.iter().map(|&l| l as i64).collect::<Vec<_>>(), [b, 1]),
        &dev,
    );
    log_softmax(logits, 1).gather(1, y).mean().neg()
}

/// A linear classification head on any encoder of the zoo (BERT, RoBERTa, …), behind the
/// [`LanguageModel`](crate::LanguageModel) trait, so that every fine-tuning scheme of
/// [`crate::peft`] applies to the encoder.
///
/// `logits = W_c pool(h) + b_c` with `W_c` `[num_labels, H]` (`classifier.weight`) and `b_c`
/// `[num_labels]` (`classifier.bias`), initialised as HF initialises a new head: `W_c ~ N(0,
/// 0.02²)` (from [`zo_optim::noise`] under the seed), `b_c = 0`.
#[derive(Debug)]
pub struct TextClassifier {
    /// The encoder.
    pub model: Box<dyn crate::LanguageModel>,
    /// Pooling of the hidden states.
    pub pooling: Pooling,
    /// Number of classes C.
    pub num_labels: usize,
    head_w: usize,
    head_b: usize,
}

impl TextClassifier {
    /// Adds a `num_labels`-way head (parameters [`HEAD_PARAMS`]) to `store` on top of `model`.
    ///
    /// # Errors
    /// [`ModelError::Scheme`] if the store already holds a head of another shape, or
    /// `Pooler` pooling on a model without `pooler.dense.weight`.
    pub fn attach(
        model: Box<dyn crate::LanguageModel>,
        store: &mut ParamStore,
        num_labels: usize,
        pooling: Pooling,
        seed: u64,
    ) -> Result<Self, ModelError> {
        let h = model.info().hidden_size;
        let source = model.info().source.clone();
        if pooling == Pooling::Pooler && !store.contains("pooler.dense.weight") {
            return Err(ModelError::MissingTensor {
                path: source,
                name: "pooler.dense.weight".into(),
                family: model.info().model_type.clone(),
            });
        }
        let w = gaussian_vec(NoiseKey(seed), HEAD_PARAMS[0], num_labels * h, 0.02);
        let head_w = store
            .insert(HEAD_PARAMS[0], &[num_labels, h], w)
            .map_err(|e| ModelError::Scheme {
                path: source.clone(),
                scheme: "head".into(),
                msg: format!("cannot add the classification head: {e}"),
            })?;
        let head_b = store
            .insert(HEAD_PARAMS[1], &[num_labels], vec![0.0; num_labels])
            .map_err(|e| ModelError::Scheme {
                path: source.clone(),
                scheme: "head".into(),
                msg: format!("cannot add the classification head: {e}"),
            })?;
        Ok(Self {
            model,
            pooling,
            num_labels,
            head_w,
            head_b,
        })
    }

    /// Pooled sentence vectors `[B, H]` of a batch.
    pub fn pooled(&self, ps: &ParamStore, batch: &EncodedBatch) -> Tensor<2> {
        let dev = ps.device();
        let (ids, mask, types) = batch.tensors(dev);
        let input = crate::ModelInput {
            input_ids: ids,
            attention_mask: mask.clone(),
            token_type_ids: Some(types),
        };
        let hidden = self.model.hidden_states(ps, &input);
        match self.pooling {
            Pooling::Mean => mean_pool(hidden, mask),
            Pooling::Cls => {
                let [b, _, h] = hidden.dims();
                hidden.slice([0..b, 0..1]).reshape([b, h])
            }
            Pooling::Pooler => self.model.pooler(ps, hidden).expect("checked at attach"),
        }
    }

    /// Class logits `[B, C]`.
    pub fn logits(&self, ps: &ParamStore, batch: &EncodedBatch) -> Tensor<2> {
        let pooled = self.pooled(ps, batch);
        pooled.matmul(ps.t2(self.head_w).transpose()) + ps.t1(self.head_b).unsqueeze::<2>()
    }

    /// Mean cross-entropy (nats) of `labels` (each < C): a scalar `[1]`.
    pub fn loss(&self, ps: &ParamStore, batch: &EncodedBatch, labels: &[usize]) -> Tensor<1> {
        cross_entropy(self.logits(ps, batch), labels)
    }

    /// Predicted class of each row.
    pub fn predict(&self, ps: &ParamStore, batch: &EncodedBatch) -> Vec<usize> {
        self.logits(ps, batch)
            .argmax(1)
            .into_data()
            .convert::<i64>()
            .try_into_vec::<i64>()
            .expect("int data")
            .into_iter()
            .map(|x| x as usize)
            .collect()
    }
}
