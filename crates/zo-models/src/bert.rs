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
//! minimum, which gives the same softmax. The same encoder stack serves RoBERTa
//! ([`crate::roberta`]) under the `roberta.` prefix with positions counted from the ids.

use crate::error::ModelError;
use crate::loader::Checkpoint;
use crate::model::{
    Adapters, Block, KvCapture, LanguageModel, LinearInfo, ModelInfo, ModelInput, ModelKind,
    StageCtx,
};
use crate::nn::{
    AttnMask, AttnShape, Lin, act, attention, attn_mask, cfg_token, check_act, embed, embed_host,
    layer_norm, linear, prepare, put, strip_prompt,
};
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
    /// the head count), [`ModelError::Unsupported`] for another `model_type`,
    /// [`ModelError::UnsupportedOption`] for an activation or position type not implemented.
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
            path: path.into(),
            source,
        })?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| ModelError::Config {
            path: path.into(),
            msg: e.to_string(),
        })?;
        Self::from_value(&v, path, &["bert"])
    }

    /// Reads and checks an already parsed config whose `model_type` is one of `types`
    /// (`bert`, or `roberta` for the RoBERTa encoder, which shares these keys).
    ///
    /// # Errors
    /// As [`BertConfig::from_file`]; `path` is only named in the errors.
    pub fn from_value(
        v: &serde_json::Value,
        path: &Path,
        types: &[&str],
    ) -> Result<Self, ModelError> {
        let cfg: BertConfig =
            serde_json::from_value(v.clone()).map_err(|e| ModelError::Config {
                path: path.into(),
                msg: e.to_string(),
            })?;
        if !types.contains(&cfg.model_type.as_str()) {
            return Err(ModelError::Unsupported {
                path: path.into(),
                model_type: cfg.model_type,
                supported: types.join(", "),
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
            return Err(ModelError::UnsupportedOption {
                path: path.into(),
                key: "position_embedding_type".into(),
                value: format!("\"{p}\""),
            });
        }
        check_act(&cfg.hidden_act, "hidden_act", path)?;
        Ok(cfg)
    }
}

/// Where the learned position rows come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PositionMode {
    /// BERT: `arange(T)`.
    Arange,
    /// RoBERTa: non-pad tokens get `pad + 1, pad + 2, …` (counted from the input ids), pads
    /// get `pad`.
    FromIds(i64),
}

#[derive(Debug, Clone)]
pub(crate) struct EncLayer {
    q: Lin,
    k: Lin,
    v: Lin,
    o: Lin,
    ln1: (usize, usize),
    inter: Lin,
    out: Lin,
    ln2: (usize, usize),
}

/// What the layers of one encoder forward pass share.
pub(crate) struct EncCtx {
    mask: AttnMask,
    shape: AttnShape,
    /// Prompt-tuning positions at the front (removed at the end).
    pub(crate) n_prompt: usize,
}

/// The BERT / RoBERTa encoder stack (embeddings + post-LN layers) under a name prefix
/// (`""` for `BertModel`, `roberta.` for `RobertaForMaskedLM`).
#[derive(Debug, Clone)]
pub(crate) struct Encoder {
    pub prefix: String,
    pub hidden: usize,
    pub heads: usize,
    pub eps: f64,
    pub act: String,
    pub max_pos: usize,
    pub positions: PositionMode,
    pub word: usize,
    pos: usize,
    typ: usize,
    emb_ln: (usize, usize),
    layers: Vec<EncLayer>,
}

impl Encoder {
    /// Moves `<prefix>embeddings.*` and `<prefix>encoder.layer.N.*` into the store.
    pub(crate) fn load(
        c: &BertConfig,
        prefix: &str,
        positions: PositionMode,
        ckpt: &mut Checkpoint,
        store: &mut ParamStore,
        family: &str,
    ) -> Result<Self, ModelError> {
        let (h, v, ff) = (c.hidden_size, c.vocab_size, c.intermediate_size);
        let mut put = |name: &str, shape: &[usize]| {
            put(ckpt, store, &format!("{prefix}{name}"), shape, family)
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
        let emb_ln = (
            put("embeddings.LayerNorm.weight", &[h])?,
            put("embeddings.LayerNorm.bias", &[h])?,
        );
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for l in 0..c.num_hidden_layers {
            let p = format!("{prefix}encoder.layer.{l}.");
            let mut lin = |s: &str, o: usize, i: usize| {
                Lin::load(ckpt, store, &format!("{p}{s}"), o, i, true, false, family)
            };
            let q = lin("attention.self.query", h, h)?;
            let k = lin("attention.self.key", h, h)?;
            let vv = lin("attention.self.value", h, h)?;
            let o = lin("attention.output.dense", h, h)?;
            let inter = lin("intermediate.dense", ff, h)?;
            let out = lin("output.dense", h, ff)?;
            let mut put = |s: &str| super::nn::put(ckpt, store, &format!("{p}{s}"), &[h], family);
            let ln1 = (
                put("attention.output.LayerNorm.weight")?,
                put("attention.output.LayerNorm.bias")?,
            );
            let ln2 = (
                put("output.LayerNorm.weight")?,
                put("output.LayerNorm.bias")?,
            );
            layers.push(EncLayer {
                q,
                k,
                v: vv,
                o,
                ln1,
                inter,
                out,
                ln2,
            });
        }
        Ok(Self {
            prefix: prefix.into(),
            hidden: h,
            heads: c.num_attention_heads,
            eps: c.layer_norm_eps,
            act: c.hidden_act.clone(),
            max_pos: c.max_position_embeddings,
            positions,
            word,
            pos,
            typ,
            emb_ln,
            layers,
        })
    }

    /// Encoder forward: `[B, T]` ids → `[B, T, H]` (prompt positions stripped).
    pub(crate) fn forward(
        &self,
        ps: &ParamStore,
        ad: &Adapters,
        input_ids: &Tensor<2, Int>,
        attention_mask: &Tensor<2, Int>,
        token_type_ids: Option<&Tensor<2, Int>>,
        mut capture: Option<&mut KvCapture>,
    ) -> Tensor<3> {
        let (mut x, ctx) = self.begin(ps, ad, input_ids, attention_mask, token_type_ids);
        for li in 0..self.layers.len() {
            x = self.layer(ps, ad, &ctx, li, x, &mut capture);
        }
        strip_prompt(x, ctx.n_prompt)
    }

    /// Embeddings (word + position + type, LayerNorm) `[B, T', H]` and the shared context.
    pub(crate) fn begin(
        &self,
        ps: &ParamStore,
        ad: &Adapters,
        input_ids: &Tensor<2, Int>,
        attention_mask: &Tensor<2, Int>,
        token_type_ids: Option<&Tensor<2, Int>>,
    ) -> (Tensor<3>, EncCtx) {
        let h = self.hidden;
        let p = prepare(ps, ad, self.word, input_ids, attention_mask);
        let (b, t) = (p.b, p.t);
        let dev = ps.device().clone();
        let rows: Vec<i64> = match self.positions {
            PositionMode::Arange => (0..b).flat_map(|_| 0..t as i64).collect(),
            PositionMode::FromIds(pad) => {
                let mut out = Vec::with_capacity(b * t);
                for r in 0..b {
                    let mut c = 0;
                    for &id in &p.ids[r * t..(r + 1) * t] {
                        if id != pad {
                            c += 1;
                            out.push(pad + c);
                        } else {
                            out.push(pad);
                        }
                    }
                }
                out
            }
        };
        let rows: Vec<i64> = rows
            .into_iter()
            .map(|r| r.clamp(0, self.max_pos as i64 - 1))
            .collect();
        let pos = embed_host(ps.t2(self.pos), &rows, b, t);
        let types = match token_type_ids {
            Some(tt) => {
                let tt = if p.n_prompt > 0 {
                    let z = Tensor::<2, Int>::zeros([b, p.n_prompt], &dev);
                    Tensor::cat(vec![z, tt.clone()], 1)
                } else {
                    tt.clone()
                };
                embed(ps.t2(self.typ), tt)
            }
            None => ps.t2(self.typ).slice([0..1]).unsqueeze::<3>(),
        };
        let x = layer_norm(
            ps,
            p.x + pos + types,
            Some(self.emb_ln.0),
            Some(self.emb_ln.1),
            self.eps,
        );
        let mask = attn_mask(&p.mask, b, t, ad.n_prefix, false, None, &dev);
        let shape = AttnShape {
            heads: self.heads,
            kv_heads: self.heads,
            head_dim: h / self.heads,
            scale: 1.0 / ((h / self.heads) as f64).sqrt(),
        };
        let ctx = EncCtx {
            mask,
            shape,
            n_prompt: p.n_prompt,
        };
        (x, ctx)
    }

    /// Encoder layer `li` (post-LN) on `[B, T', H]`.
    pub(crate) fn layer(
        &self,
        ps: &ParamStore,
        ad: &Adapters,
        c: &EncCtx,
        li: usize,
        x: Tensor<3>,
        capture: &mut Option<&mut KvCapture>,
    ) -> Tensor<3> {
        let l = &self.layers[li];
        let q = linear(ps, ad, &l.q, x.clone());
        let k = linear(ps, ad, &l.k, x.clone());
        let v = linear(ps, ad, &l.v, x.clone());
        let ctx = attention(ps, ad, li, q, k, v, &c.mask, c.shape, capture);
        let a = linear(ps, ad, &l.o, ctx);
        let x1 = layer_norm(ps, a + x, Some(l.ln1.0), Some(l.ln1.1), self.eps);
        let m = act(&self.act, linear(ps, ad, &l.inter, x1.clone()));
        let m = linear(ps, ad, &l.out, m);
        layer_norm(ps, m + x1, Some(l.ln2.0), Some(l.ln2.1), self.eps)
    }

    /// `embeddings` and `layer.N` blocks.
    pub(crate) fn blocks(&self) -> Vec<Block> {
        let p = &self.prefix;
        let mut out = vec![Block {
            name: "embeddings".into(),
            param_names: [
                "word_embeddings.weight",
                "position_embeddings.weight",
                "token_type_embeddings.weight",
                "LayerNorm.weight",
                "LayerNorm.bias",
            ]
            .iter()
            .map(|s| format!("{p}embeddings.{s}"))
            .collect(),
        }];
        for (i, l) in self.layers.iter().enumerate() {
            let mut names = Vec::new();
            for lin in [&l.q, &l.k, &l.v, &l.o] {
                lin.param_names(&mut names);
            }
            let lp = format!("{p}encoder.layer.{i}.");
            names.push(format!("{lp}attention.output.LayerNorm.weight"));
            names.push(format!("{lp}attention.output.LayerNorm.bias"));
            l.inter.param_names(&mut names);
            l.out.param_names(&mut names);
            names.push(format!("{lp}output.LayerNorm.weight"));
            names.push(format!("{lp}output.LayerNorm.bias"));
            out.push(Block {
                name: format!("layer.{i}"),
                param_names: names,
            });
        }
        out
    }

    /// All linear layers.
    pub(crate) fn linears(&self) -> Vec<LinearInfo> {
        self.layers
            .iter()
            .flat_map(|l| [&l.q, &l.k, &l.v, &l.o, &l.inter, &l.out])
            .map(lin_info)
            .collect()
    }
}

/// A BERT encoder whose weights live in a [`ParamStore`] under HF `BertModel` names
/// (`embeddings.*`, `encoder.layer.N.*`, `pooler.*`).
#[derive(Debug, Clone)]
pub struct BertModel {
    /// The config it was built from.
    pub config: BertConfig,
    enc: Encoder,
    pooler: Option<Lin>,
    info: ModelInfo,
    adapters: Adapters,
}

/// Outputs of [`BertModel::forward`].
#[derive(Debug, Clone)]
pub struct BertOutput {
    /// Final hidden states `[B, T, H]` (every position, pads included).
    pub last_hidden_state: Tensor<3>,
    /// `tanh(W_p h[:, 0] + b_p)`, `[B, H]`; `None` if the checkpoint has no pooler.
    pub pooler_output: Option<Tensor<2>>,
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
                let v = ckpt.tensors.remove(&k).expect("listed");
                ckpt.tensors.insert(k["bert.".len()..].to_string(), v);
            }
        }
        let enc = Encoder::load(&config, "", PositionMode::Arange, ckpt, store, "bert")?;
        let h = config.hidden_size;
        let pooler = if ckpt.tensors.contains_key("pooler.dense.weight") {
            Some(Lin::load(
                ckpt,
                store,
                "pooler.dense",
                h,
                h,
                true,
                false,
                "bert",
            )?)
        } else {
            None
        };
        let info = ModelInfo {
            model_type: config.model_type.clone(),
            kind: ModelKind::Encoder,
            hidden_size: h,
            embed_dim: h,
            vocab_size: config.vocab_size,
            num_layers: config.num_hidden_layers,
            num_heads: config.num_attention_heads,
            num_kv_heads: config.num_attention_heads,
            head_dim: h / config.num_attention_heads,
            max_positions: Some(config.max_position_embeddings),
            pad_token_id: config.pad_token_id,
            bos_token_id: None,
            eos_token_id: None,
            source: ckpt.path.clone(),
        };
        Ok(Self {
            config,
            enc,
            pooler,
            info,
            adapters: Adapters::default(),
        })
    }

    /// Builds the model from a parsed `config.json` (`model_type` = `bert`).
    ///
    /// # Errors
    /// As [`BertConfig::from_value`] and [`BertModel::from_checkpoint`].
    pub fn from_value(
        v: &serde_json::Value,
        path: &Path,
        ckpt: &mut Checkpoint,
        store: &mut ParamStore,
    ) -> Result<Self, ModelError> {
        let config = BertConfig::from_value(v, path, &["bert"])?;
        let mut m = Self::from_checkpoint(config, ckpt, store)?;
        m.info.source = path.into();
        m.info.bos_token_id = cfg_token(v, "bos_token_id");
        m.info.eos_token_id = cfg_token(v, "eos_token_id");
        Ok(m)
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
        let x = self.enc.forward(
            ps,
            &self.adapters,
            &input_ids,
            &attention_mask,
            token_type_ids.as_ref(),
            None,
        );
        let pooler_output = LanguageModel::pooler(self, ps, x.clone());
        BertOutput {
            last_hidden_state: x,
            pooler_output,
        }
    }
}

impl LanguageModel for BertModel {
    fn info(&self) -> &ModelInfo {
        &self.info
    }
    fn adapters(&self) -> &Adapters {
        &self.adapters
    }
    fn set_adapters(&mut self, adapters: Adapters) {
        self.adapters = adapters;
    }
    fn stage_begin(&self, ps: &ParamStore, input: &ModelInput) -> (Tensor<3>, StageCtx) {
        let (x, c) = self.enc.begin(
            ps,
            &self.adapters,
            &input.input_ids,
            &input.attention_mask,
            input.token_type_ids.as_ref(),
        );
        (x, StageCtx::new(c))
    }
    fn stage_layer(
        &self,
        ps: &ParamStore,
        ctx: &StageCtx,
        layer: usize,
        x: Tensor<3>,
        capture: &mut Option<&mut KvCapture>,
    ) -> Tensor<3> {
        self.enc
            .layer(ps, &self.adapters, ctx.get(), layer, x, capture)
    }
    fn stage_end(&self, _ps: &ParamStore, ctx: &StageCtx, x: Tensor<3>) -> Tensor<3> {
        strip_prompt(x, ctx.get::<EncCtx>().n_prompt)
    }
    fn lm_head(&self, _ps: &ParamStore, _hidden: Tensor<3>) -> Option<Tensor<3>> {
        None
    }
    fn pooler(&self, ps: &ParamStore, hidden: Tensor<3>) -> Option<Tensor<2>> {
        let l = self.pooler.as_ref()?;
        let [b, _, h] = hidden.dims();
        let cls = hidden.slice([0..b, 0..1]);
        Some(linear(ps, &self.adapters, l, cls).reshape([b, h]).tanh())
    }
    fn blocks(&self) -> Vec<Block> {
        let mut out = self.enc.blocks();
        let mut head = Vec::new();
        if let Some(l) = &self.pooler {
            l.param_names(&mut head);
        }
        out.push(Block {
            name: "head".into(),
            param_names: head,
        });
        crate::model::add_adapter_names(out, &self.adapters)
    }
    fn linears(&self) -> Vec<LinearInfo> {
        let mut v = self.enc.linears();
        v.extend(self.pooler.iter().map(lin_info));
        v
    }
}

/// The public description of a linear layer.
pub(crate) fn lin_info(l: &Lin) -> LinearInfo {
    LinearInfo {
        name: l.name.clone(),
        d_in: l.d_in,
        d_out: l.d_out,
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
