//! LLaMA (`model_type` = `llama`): HF `LlamaForCausalLM`; also the implementation behind
//! Mistral ([`crate::mistral`]) and Qwen2 ([`crate::qwen2`]), which differ only in config
//! defaults (biases, sliding windows).
//!
//! For ids `[B, T]` (pre-norm decoder):
//!
//! ```text
//! h₀ = E[ids]                                                        [B, T, H]
//! per layer:  a = Attn(RMSNorm₁(h)); h += a
//!             h += W_down (act(W_gate x) ⊙ W_up x),  x = RMSNorm₂(h)
//! hidden = RMSNorm(h);  logits = hidden Wᵀ (W = E if tie_word_embeddings)   [B, T, V]
//! Attn: q = W_q x, k = W_k x, v = W_v x, RoPE(q, k) (rotate-half form, base θ),
//!       GQA: query head h reads kv head h / (heads / kv_heads),
//!       softmax(q kᵀ / √d + causal/padding/window mask) v, then W_o
//! ```
//! RMSNorm(x) = x / √(mean(x²) + eps) · w. RoPE positions are derived from the attention mask
//! (real tokens: index among the row's real tokens), so left- and right-padded rows agree.
//! A sliding window w lets query i see key j iff `i − w < j ≤ i`; a query that sees no key
//! gets an attention output of 0 (as torch SDPA).

use crate::bert::lin_info;
use crate::error::ModelError;
use crate::loader::Checkpoint;
use crate::model::{
    Adapters, Block, KvCapture, LanguageModel, LinearInfo, ModelInfo, ModelInput, ModelKind,
    StageCtx,
};
use crate::nn::{
    AttnMask, AttnShape, Lin, Rope, add_prefix_if_missing, apply_rope, attention, attn_mask,
    cfg_bool, cfg_f64, cfg_get, cfg_str, cfg_token, cfg_usize, cfg_usize_opt, check_act, gated_act,
    linear, positions_from_mask, prepare, put, rms_norm, strip_prompt,
};
use burn::tensor::Tensor;
use serde_json::Value;
use std::path::Path;
use zo_optim::ParamStore;

/// Which HF class the config belongs to (sets the defaults of optional keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// `LlamaForCausalLM`: biases from `attention_bias` / `mlp_bias` (default off), no window.
    Llama,
    /// `MistralForCausalLM`: `sliding_window` (null = none) on every layer.
    Mistral,
    /// `Qwen2ForCausalLM`: q/k/v biases; a window only with `use_sliding_window`, on layers
    /// ≥ `max_window_layers` (or as `layer_types` says).
    Qwen2,
}

#[derive(Debug, Clone)]
struct Layer {
    ln1: usize,
    q: Lin,
    k: Lin,
    v: Lin,
    o: Lin,
    ln2: usize,
    gate: Lin,
    up: Lin,
    down: Lin,
    window: Option<usize>,
}

/// What the layers of one LLaMA forward pass share.
struct LlamaCtx {
    cos: Tensor<4>,
    sin: Tensor<4>,
    masks: Vec<(Option<usize>, AttnMask)>,
    shape: AttnShape,
    n_prompt: usize,
}

/// A LLaMA-style decoder (also Mistral and Qwen2) whose weights live in a [`ParamStore`]
/// under HF names (`model.embed_tokens.weight`, `model.layers.N.*`, `model.norm.weight`,
/// `lm_head.weight`).
#[derive(Debug, Clone)]
pub struct LlamaModel {
    /// The HF class the config describes.
    pub variant: Variant,
    info: ModelInfo,
    adapters: Adapters,
    embed: usize,
    layers: Vec<Layer>,
    norm: usize,
    head: usize,
    tied: bool,
    rope: Rope,
    eps: f64,
    act: String,
}

impl LlamaModel {
    /// Builds a LLaMA model (`model_type` = `llama`).
    ///
    /// # Errors
    /// See [`LlamaModel::load_variant`].
    pub fn load(
        v: &Value,
        path: &Path,
        ckpt: &mut Checkpoint,
        store: &mut ParamStore,
    ) -> Result<Self, ModelError> {
        Self::load_variant(v, path, ckpt, store, Variant::Llama)
    }

    /// Builds the model from a parsed `config.json`, moving the tensors of `ckpt` into
    /// `store`. Tied embeddings (`tie_word_embeddings`) use `model.embed_tokens.weight` for the
    /// head; otherwise `lm_head.weight` must be in the checkpoint.
    ///
    /// # Errors
    /// [`ModelError::Config`] for missing/inconsistent sizes, [`ModelError::UnsupportedOption`]
    /// for an activation or RoPE type not implemented, [`ModelError::MissingTensor`] /
    /// [`ModelError::Shape`] naming the file and tensor.
    pub fn load_variant(
        v: &Value,
        path: &Path,
        ckpt: &mut Checkpoint,
        store: &mut ParamStore,
        variant: Variant,
    ) -> Result<Self, ModelError> {
        let fam = cfg_str(v, &["model_type"], "llama");
        let fam = fam.as_str();
        let h = cfg_usize(v, &["hidden_size"], path)?;
        let vocab = cfg_usize(v, &["vocab_size"], path)?;
        let n_layers = cfg_usize(v, &["num_hidden_layers"], path)?;
        let nh = cfg_usize(v, &["num_attention_heads"], path)?;
        let kvh = cfg_usize_opt(v, &["num_key_value_heads"], path)?.unwrap_or(nh);
        let ff = cfg_usize(v, &["intermediate_size"], path)?;
        let cfg_bad = |msg: String| ModelError::Config {
            path: path.into(),
            msg,
        };
        if nh == 0 || kvh == 0 || nh % kvh != 0 {
            return Err(cfg_bad(format!(
                "num_attention_heads {nh} is not a multiple of num_key_value_heads {kvh}"
            )));
        }
        let hd = match cfg_usize_opt(v, &["head_dim"], path)? {
            Some(d) => d,
            None if h % nh == 0 => h / nh,
            None => {
                return Err(cfg_bad(format!(
                    "hidden_size {h} is not divisible by num_attention_heads {nh} and no head_dim"
                )));
            }
        };
        let eps = cfg_f64(v, &["rms_norm_eps"], 1e-6, path)?;
        let act = cfg_str(v, &["hidden_act", "hidden_activation"], "silu");
        check_act(&act, "hidden_act", path)?;
        let rope = Rope::from_config(v, hd, path)?;
        if let Some(p) = cfg_get(v, &["partial_rotary_factor"]).and_then(Value::as_f64) {
            if p != 1.0 {
                return Err(ModelError::UnsupportedOption {
                    path: path.into(),
                    key: "partial_rotary_factor".into(),
                    value: p.to_string(),
                });
            }
        }
        let (qkv_bias, o_bias, mlp_bias) = match variant {
            Variant::Qwen2 => (true, false, false),
            _ => {
                let ab = cfg_bool(v, "attention_bias", false, path)?;
                (ab, ab, cfg_bool(v, "mlp_bias", false, path)?)
            }
        };
        let tied = cfg_bool(v, "tie_word_embeddings", false, path)?;
        // Sliding windows per layer.
        let sw = cfg_usize_opt(v, &["sliding_window"], path)?;
        let sw = match variant {
            Variant::Llama => None,
            Variant::Mistral => sw,
            Variant::Qwen2 => {
                sw.filter(|_| cfg_bool(v, "use_sliding_window", false, path).unwrap_or(false))
            }
        };
        let windows: Vec<Option<usize>> =
            match cfg_get(v, &["layer_types"]).and_then(Value::as_array) {
                Some(types) if variant != Variant::Llama => {
                    if types.len() != n_layers {
                        return Err(cfg_bad(format!(
                            "layer_types has {} entries for {n_layers} layers",
                            types.len()
                        )));
                    }
                    types
                        .iter()
                        .map(|t| match t.as_str() {
                            Some("sliding_attention") => Ok(sw),
                            Some("full_attention") => Ok(None),
                            _ => Err(ModelError::UnsupportedOption {
                                path: path.into(),
                                key: "layer_types".into(),
                                value: t.to_string(),
                            }),
                        })
                        .collect::<Result<_, _>>()?
                }
                _ => {
                    let first = if variant == Variant::Qwen2 {
                        cfg_usize_opt(v, &["max_window_layers"], path)?.unwrap_or(28)
                    } else {
                        0
                    };
                    (0..n_layers)
                        .map(|i| if i >= first { sw } else { None })
                        .collect()
                }
            };
        if windows.contains(&Some(0)) {
            return Err(cfg_bad("sliding_window must be positive".into()));
        }

        add_prefix_if_missing(ckpt, "model.", "embed_tokens.weight");
        let embed = put(ckpt, store, "model.embed_tokens.weight", &[vocab, h], fam)?;
        let mut layers = Vec::with_capacity(n_layers);
        for (l, window) in windows.into_iter().enumerate() {
            let p = format!("model.layers.{l}.");
            let mut lin = |s: &str, o: usize, i: usize, bias: bool| {
                Lin::load(ckpt, store, &format!("{p}{s}"), o, i, bias, false, fam)
            };
            let q = lin("self_attn.q_proj", nh * hd, h, qkv_bias)?;
            let k = lin("self_attn.k_proj", kvh * hd, h, qkv_bias)?;
            let vv = lin("self_attn.v_proj", kvh * hd, h, qkv_bias)?;
            let o = lin("self_attn.o_proj", h, nh * hd, o_bias)?;
            let gate = lin("mlp.gate_proj", ff, h, mlp_bias)?;
            let up = lin("mlp.up_proj", ff, h, mlp_bias)?;
            let down = lin("mlp.down_proj", h, ff, mlp_bias)?;
            let ln1 = put(
                ckpt,
                store,
                &format!("{p}input_layernorm.weight"),
                &[h],
                fam,
            )?;
            let ln2 = put(
                ckpt,
                store,
                &format!("{p}post_attention_layernorm.weight"),
                &[h],
                fam,
            )?;
            layers.push(Layer {
                ln1,
                q,
                k,
                v: vv,
                o,
                ln2,
                gate,
                up,
                down,
                window,
            });
        }
        let norm = put(ckpt, store, "model.norm.weight", &[h], fam)?;
        let head = if tied {
            embed
        } else {
            put(ckpt, store, "lm_head.weight", &[vocab, h], fam)?
        };
        let info = ModelInfo {
            model_type: fam.into(),
            kind: ModelKind::CausalLm,
            hidden_size: h,
            embed_dim: h,
            vocab_size: vocab,
            num_layers: n_layers,
            num_heads: nh,
            num_kv_heads: kvh,
            head_dim: hd,
            max_positions: None,
            pad_token_id: cfg_token(v, "pad_token_id"),
            bos_token_id: cfg_token(v, "bos_token_id"),
            eos_token_id: cfg_token(v, "eos_token_id"),
            source: path.into(),
        };
        Ok(Self {
            variant,
            info,
            adapters: Adapters::default(),
            embed,
            layers,
            norm,
            head,
            tied,
            rope,
            eps,
            act,
        })
    }
}

impl LanguageModel for LlamaModel {
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
        let ad = &self.adapters;
        let i = &self.info;
        let dev = ps.device().clone();
        let p = prepare(ps, ad, self.embed, &input.input_ids, &input.attention_mask);
        let (b, t) = (p.b, p.t);
        let pos = positions_from_mask(&p.mask, b, t);
        let (cos, sin) = self.rope.tables(&pos, b, t, &dev);
        let mut masks: Vec<(Option<usize>, AttnMask)> = Vec::new();
        for l in &self.layers {
            if !masks.iter().any(|(w, _)| *w == l.window) {
                masks.push((
                    l.window,
                    attn_mask(&p.mask, b, t, ad.n_prefix, true, l.window, &dev),
                ));
            }
        }
        let shape = AttnShape {
            heads: i.num_heads,
            kv_heads: i.num_kv_heads,
            head_dim: i.head_dim,
            scale: 1.0 / (i.head_dim as f64).sqrt(),
        };
        let ctx = LlamaCtx {
            cos,
            sin,
            masks,
            shape,
            n_prompt: p.n_prompt,
        };
        (p.x, StageCtx::new(ctx))
    }
    fn stage_layer(
        &self,
        ps: &ParamStore,
        ctx: &StageCtx,
        li: usize,
        x: Tensor<3>,
        capture: &mut Option<&mut KvCapture>,
    ) -> Tensor<3> {
        let c: &LlamaCtx = ctx.get();
        let (ad, i, l) = (&self.adapters, &self.info, &self.layers[li]);
        let y = rms_norm(ps, x.clone(), l.ln1, self.eps);
        let q = apply_rope(linear(ps, ad, &l.q, y.clone()), i.num_heads, &c.cos, &c.sin);
        let k = apply_rope(
            linear(ps, ad, &l.k, y.clone()),
            i.num_kv_heads,
            &c.cos,
            &c.sin,
        );
        let v = linear(ps, ad, &l.v, y);
        let mask = &c
            .masks
            .iter()
            .find(|(w, _)| *w == l.window)
            .expect("built")
            .1;
        let a = attention(ps, ad, li, q, k, v, mask, c.shape, capture);
        let x = x + linear(ps, ad, &l.o, a);
        let y = rms_norm(ps, x.clone(), l.ln2, self.eps);
        let g = linear(ps, ad, &l.gate, y.clone());
        let u = linear(ps, ad, &l.up, y);
        x + linear(ps, ad, &l.down, gated_act(&self.act, g, u))
    }
    fn stage_end(&self, ps: &ParamStore, ctx: &StageCtx, x: Tensor<3>) -> Tensor<3> {
        let c: &LlamaCtx = ctx.get();
        let x = rms_norm(ps, x, self.norm, self.eps);
        strip_prompt(x, c.n_prompt)
    }
    fn lm_head(&self, ps: &ParamStore, hidden: Tensor<3>) -> Option<Tensor<3>> {
        let [b, n, h] = hidden.dims();
        let y = hidden
            .reshape([b * n, h])
            .matmul(ps.t2(self.head).transpose());
        Some(y.reshape([b, n, self.info.vocab_size]))
    }
    fn blocks(&self) -> Vec<Block> {
        let mut out = vec![Block {
            name: "embeddings".into(),
            param_names: vec!["model.embed_tokens.weight".into()],
        }];
        for (i, l) in self.layers.iter().enumerate() {
            let mut names = vec![format!("model.layers.{i}.input_layernorm.weight")];
            for lin in [&l.q, &l.k, &l.v, &l.o] {
                lin.param_names(&mut names);
            }
            names.push(format!("model.layers.{i}.post_attention_layernorm.weight"));
            for lin in [&l.gate, &l.up, &l.down] {
                lin.param_names(&mut names);
            }
            out.push(Block {
                name: format!("layer.{i}"),
                param_names: names,
            });
        }
        let mut head = vec!["model.norm.weight".to_string()];
        if !self.tied {
            head.push("lm_head.weight".into());
        }
        out.push(Block {
            name: "head".into(),
            param_names: head,
        });
        crate::model::add_adapter_names(out, &self.adapters)
    }
    fn linears(&self) -> Vec<LinearInfo> {
        self.layers
            .iter()
            .flat_map(|l| [&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down])
            .map(lin_info)
            .collect()
    }
}
