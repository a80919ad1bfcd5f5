//! BERT encoder family (`model_type` = `bert`): HF `BertModel`.
//!
//! Architecture (Devlin et al. 2019; HF `modeling_bert.py`), for input ids `[B, T]`:
//!
//! ```text
//! h₀ = LayerNorm(word[ids] + position[0..T] + token_type[type_ids])            [B, T, H]
//! per layer l (post-LN):
//!   a  = softmax(Q Kᵀ / √d_head + mask) V, heads = num_attention_heads          [B, T, H]
//!   h' = LayerNorm(h + Wₒ a + bₒ)            (attention.output.LayerNorm)
//!   h  = LayerNorm(h' + W₂ act(W₁ h' + b₁) + b₂)   (output.LayerNorm), act = exact GELU
//! pooler = tanh(W_p h[:, 0] + b_p)                                             [B, H]
//! ```
//! mask adds −1e9 to the scores of padding keys (`attention_mask = 0`); HF adds the f32
//! minimum, which gives the same softmax.

use crate::error::ModelError;
use crate::loader::Checkpoint;
use burn::tensor::activation::{gelu, gelu_approximate, relu, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::Deserialize;
use std::path::Path;
use zo_optim::ParamStore;

fn default_eps() -> f64 {
    1e-12
}
fn default_act() -> String {
    "gelu".into()
}
fn default_init() -> f64 {
    0.02
}
fn default_type_vocab() -> usize {
    2
}

/// The keys of an HF BERT `config.json` that the forward pass reads. Other keys are ignored.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct BertConfig {
    /// `model_type` (`bert`).
    pub model_type: String,
    /// Vocabulary size V (rows of `embeddings.word_embeddings.weight`).
    pub vocab_size: usize,
    /// Hidden size H.
    pub hidden_size: usize,
    /// Number of encoder layers L.
    pub num_hidden_layers: usize,
    /// Attention heads; `hidden_size` must be divisible by it.
    pub num_attention_heads: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// `gelu` (exact, erf), `gelu_new` / `gelu_pytorch_tanh` (tanh approximation) or `relu`.
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Rows of the learned position table: the longest input, in tokens.
    pub max_position_embeddings: usize,
    /// Rows of the token-type table.
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Std of the normal initialisation of new weights (e.g. a classification head).
    #[serde(default = "default_init")]
    pub initializer_range: f64,
    /// Padding token id.
    #[serde(default)]
    pub pad_token_id: Option<i64>,
    /// Position encoding; only HF's default `absolute` (a learned table) is implemented.
    #[serde(default)]
    pub position_embedding_type: Option<String>,
}

impl BertConfig {
    /// Reads and checks `config.json`.
    ///
    /// # Errors
    /// [`ModelError::Io`], [`ModelError::Config`] (bad JSON, missing key, H not divisible by
    /// the head count), [`ModelError::Unsupported`] for another `model_type` or activation.
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
            path: path.into(),
            source,
        })?;
        let cfg: BertConfig = serde_json::from_str(&text).map_err(|e| ModelError::Config {
            path: path.into(),
            msg: e.to_string(),
        })?;
        if cfg.model_type != "bert" {
            return Err(ModelError::Unsupported {
                path: path.into(),
                model_type: cfg.model_type,
                supported: "bert".into(),
            });
        }
        if cfg.num_attention_heads == 0 || cfg.hidden_size % cfg.num_attention_heads != 0 {
            return Err(ModelError::Config {
                path: path.into(),
                msg: format!(
                    "hidden_size {} is not divisible by num_attention_heads {}",
                    cfg.hidden_size, cfg.num_attention_heads
                ),
            });
        }
        if let Some(p) = cfg
            .position_embedding_type
            .as_deref()
            .filter(|p| *p != "absolute")
        {
            return Err(ModelError::Config {
                path: path.into(),
                msg: format!("position_embedding_type `{p}` is not supported (only `absolute`)"),
            });
        }
        if !matches!(
            cfg.hidden_act.as_str(),
            "gelu" | "gelu_new" | "gelu_pytorch_tanh" | "relu"
        ) {
            return Err(ModelError::Config {
                path: path.into(),
                msg: format!(
                    "hidden_act `{}` is not supported (gelu, gelu_new, gelu_pytorch_tanh, relu)",
                    cfg.hidden_act
                ),
            });
        }
        Ok(cfg)
    }
}

#[derive(Debug, Clone)]
struct Layer {
    q_w: usize,
    q_b: usize,
    k_w: usize,
    k_b: usize,
    v_w: usize,
    v_b: usize,
    o_w: usize,
    o_b: usize,
    ln1_w: usize,
    ln1_b: usize,
    i_w: usize,
    i_b: usize,
    out_w: usize,
    out_b: usize,
    ln2_w: usize,
    ln2_b: usize,
}

/// A BERT encoder whose weights live in a [`ParamStore`] under HF `BertModel` names
/// (`embeddings.*`, `encoder.layer.N.*`, `pooler.*`).
#[derive(Debug, Clone)]
pub struct BertModel {
    /// The config it was built from.
    pub config: BertConfig,
    word: usize,
    pos: usize,
    typ: usize,
    emb_ln_w: usize,
    emb_ln_b: usize,
    layers: Vec<Layer>,
    pooler: Option<(usize, usize)>,
}

/// Outputs of [`BertModel::forward`].
#[derive(Debug, Clone)]
pub struct BertOutput {
    /// Final hidden states `[B, T, H]` (every position, pads included).
    pub last_hidden_state: Tensor<3>,
    /// `tanh(W_p h[:, 0] + b_p)`, `[B, H]`; `None` if the checkpoint has no pooler.
    pub pooler_output: Option<Tensor<2>>,
}

/// `x W^T + b` over the last dim: `x` `[B, T, in]`, `w` `[out, in]`, `b` `[out]` → `[B, T, out]`.
pub(crate) fn linear3(x: Tensor<3>, w: Tensor<2>, b: Tensor<1>) -> Tensor<3> {
    let [bs, t, i] = x.dims();
    let out = w.dims()[0];
    let y = x.reshape([bs * t, i]).matmul(w.transpose()) + b.unsqueeze::<2>();
    y.reshape([bs, t, out])
}

/// LayerNorm over the last dim with biased variance: `(x − mean) / √(var + eps) · w + b`.
pub(crate) fn layer_norm3(x: Tensor<3>, w: Tensor<1>, b: Tensor<1>, eps: f64) -> Tensor<3> {
    let (var, mean) = x.clone().var_mean_bias(2);
    let y = (x - mean) / (var + eps).sqrt();
    y * w.unsqueeze::<3>() + b.unsqueeze::<3>()
}

impl BertModel {
    /// Moves the encoder tensors of `ckpt` into `store` under `BertModel` names and returns the
    /// model. A `bert.` prefix (task heads saved by `BertFor*` classes) is stripped. The pooler
    /// is optional.
    ///
    /// # Errors
    /// [`ModelError::MissingTensor`] / [`ModelError::Shape`] naming the tensor and the file.
    pub fn from_checkpoint(
        config: BertConfig,
        ckpt: &mut Checkpoint,
        store: &mut ParamStore,
    ) -> Result<Self, ModelError> {
        let prefixed: Vec<String> = ckpt
            .tensors
            .keys()
            .filter(|k| k.starts_with("bert."))
            .cloned()
            .collect();
        if !ckpt
            .tensors
            .contains_key("embeddings.word_embeddings.weight")
        {
            for k in prefixed {
                let v = ckpt.tensors.remove(&k).unwrap();
                ckpt.tensors.insert(k["bert.".len()..].to_string(), v);
            }
        }
        let c = &config;
        let (h, v, ff) = (c.hidden_size, c.vocab_size, c.intermediate_size);
        let has_pooler = ckpt.tensors.contains_key("pooler.dense.weight");
        let mut put = |name: &str, shape: &[usize]| -> Result<usize, ModelError> {
            let data = ckpt.take(name, shape, "bert")?;
            Ok(store.insert(name, shape, data).expect("fresh name"))
        };
        let word = put("embeddings.word_embeddings.weight", &[v, h])?;
        let pos = put(
            "embeddings.position_embeddings.weight",
            &[c.max_position_embeddings, h],
        )?;
        let typ = put(
            "embeddings.token_type_embeddings.weight",
            &[c.type_vocab_size, h],
        )?;
        let emb_ln_w = put("embeddings.LayerNorm.weight", &[h])?;
        let emb_ln_b = put("embeddings.LayerNorm.bias", &[h])?;
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for l in 0..c.num_hidden_layers {
            let p = format!("encoder.layer.{l}.");
            let mut g = |s: &str, shape: &[usize]| put(&format!("{p}{s}"), shape);
            layers.push(Layer {
                q_w: g("attention.self.query.weight", &[h, h])?,
                q_b: g("attention.self.query.bias", &[h])?,
                k_w: g("attention.self.key.weight", &[h, h])?,
                k_b: g("attention.self.key.bias", &[h])?,
                v_w: g("attention.self.value.weight", &[h, h])?,
                v_b: g("attention.self.value.bias", &[h])?,
                o_w: g("attention.output.dense.weight", &[h, h])?,
                o_b: g("attention.output.dense.bias", &[h])?,
                ln1_w: g("attention.output.LayerNorm.weight", &[h])?,
                ln1_b: g("attention.output.LayerNorm.bias", &[h])?,
                i_w: g("intermediate.dense.weight", &[ff, h])?,
                i_b: g("intermediate.dense.bias", &[ff])?,
                out_w: g("output.dense.weight", &[h, ff])?,
                out_b: g("output.dense.bias", &[h])?,
                ln2_w: g("output.LayerNorm.weight", &[h])?,
                ln2_b: g("output.LayerNorm.bias", &[h])?,
            });
        }
        let pooler = if has_pooler {
            Some((
                put("pooler.dense.weight", &[h, h])?,
                put("pooler.dense.bias", &[h])?,
            ))
        } else {
            None
        };
        Ok(Self {
            config,
            word,
            pos,
            typ,
            emb_ln_w,
            emb_ln_b,
            layers,
            pooler,
        })
    }

    fn act(&self, x: Tensor<3>) -> Tensor<3> {
        match self.config.hidden_act.as_str() {
            "gelu" => gelu(x),
            "relu" => relu(x),
            _ => gelu_approximate(x),
        }
    }

    /// Encoder forward pass.
    ///
    /// * `input_ids` `[B, T]`, token ids < `vocab_size`, T ≤ `max_position_embeddings`;
    /// * `attention_mask` `[B, T]`, 1 for real tokens, 0 for padding;
    /// * `token_type_ids` `[B, T]` or `None` (all 0, as HF).
    pub fn forward(
        &self,
        ps: &ParamStore,
        input_ids: Tensor<2, Int>,
        attention_mask: Tensor<2, Int>,
        token_type_ids: Option<Tensor<2, Int>>,
    ) -> BertOutput {
        let c = &self.config;
        let [b, t] = input_ids.dims();
        let h = c.hidden_size;
        let device = ps.device().clone();
        let words = ps
            .t2(self.word)
            .select(0, input_ids.reshape([b * t]))
            .reshape([b, t, h]);
        let pos = ps.t2(self.pos).slice([0..t]).unsqueeze::<3>();
        let types = match token_type_ids {
            Some(tt) => ps
                .t2(self.typ)
                .select(0, tt.reshape([b * t]))
                .reshape([b, t, h]),
            None => ps.t2(self.typ).slice([0..1]).unsqueeze::<3>(),
        };
        let mut x = layer_norm3(
            words + pos + types,
            ps.t1(self.emb_ln_w),
            ps.t1(self.emb_ln_b),
            c.layer_norm_eps,
        );
        // Additive key mask [B, 1, 1, T].
        let mask_bias = (attention_mask.float().neg() + 1.0)
            .mul_scalar(-1e9f32)
            .reshape([b, 1, 1, t]);
        let nh = c.num_attention_heads;
        let dh = h / nh;
        let scale = 1.0 / (dh as f64).sqrt();
        let heads = |y: Tensor<3>| y.reshape([b, t, nh, dh]).swap_dims(1, 2);
        for l in &self.layers {
            let q = heads(linear3(x.clone(), ps.t2(l.q_w), ps.t1(l.q_b)));
            let k = heads(linear3(x.clone(), ps.t2(l.k_w), ps.t1(l.k_b)));
            let v = heads(linear3(x.clone(), ps.t2(l.v_w), ps.t1(l.v_b)));
            let scores = q.matmul(k.swap_dims(2, 3)).mul_scalar(scale) + mask_bias.clone();
            let ctx = softmax(scores, 3)
                .matmul(v)
                .swap_dims(1, 2)
                .reshape([b, t, h]);
            let a = linear3(ctx, ps.t2(l.o_w), ps.t1(l.o_b));
            let x1 = layer_norm3(a + x, ps.t1(l.ln1_w), ps.t1(l.ln1_b), c.layer_norm_eps);
            let m = self.act(linear3(x1.clone(), ps.t2(l.i_w), ps.t1(l.i_b)));
            let m = linear3(m, ps.t2(l.out_w), ps.t1(l.out_b));
            x = layer_norm3(m + x1, ps.t1(l.ln2_w), ps.t1(l.ln2_b), c.layer_norm_eps);
        }
        let pooler_output = self.pooler.map(|(w, bias)| {
            let cls = x.clone().slice([0..b, 0..1]).reshape([b, 1, h]);
            linear3(cls, ps.t2(w), ps.t1(bias)).reshape([b, h]).tanh()
        });
        let _ = device;
        BertOutput {
            last_hidden_state: x,
            pooler_output,
        }
    }
}

/// Attention-masked mean over positions: `Σ_t m_t h_t / max(Σ_t m_t, 1e-9)`, `[B, T, H]` →
/// `[B, H]` (sentence-transformers' mean pooling).
pub fn mean_pool(hidden: Tensor<3>, attention_mask: Tensor<2, Int>) -> Tensor<2> {
    let [b, t, h] = hidden.dims();
    let m = attention_mask.float().reshape([b, t, 1]);
    let summed = (hidden * m.clone()).sum_dim(1).reshape([b, h]);
    let count = m.sum_dim(1).reshape([b, 1]).clamp_min(1e-9);
    summed / count
}

/// Builds an int tensor `[rows, cols]` from row-major ids.
pub fn ids_tensor(ids: &[i64], rows: usize, cols: usize, device: &Device) -> Tensor<2, Int> {
    Tensor::<2, Int>::from_data(TensorData::new(ids.to_vec(), [rows, cols]), device)
}
