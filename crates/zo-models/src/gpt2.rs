//! GPT-2 (`model_type` = `gpt2`): HF `GPT2LMHeadModel`.
//!
//! For ids `[B, T]` (pre-LN decoder, config keys `n_embd`, `n_head`, `n_layer`,
//! `n_positions`, `n_inner` (default 4·n_embd), `layer_norm_epsilon`, `activation_function`):
//!
//! ```text
//! h₀ = wte[ids] + wpe[pos]                                              [B, T, H]
//! per layer:  q|k|v = c_attn(ln_1(h)) (one fused Conv1D, split along the output)
//!             h += c_proj(softmax(q kᵀ · s + mask) v)      s = 1/√d (scale_attn_weights),
//!                                                           further /(l+1) if
//!                                                           scale_attn_by_inverse_layer_idx
//!             h += mlp.c_proj(act(mlp.c_fc(ln_2(h))))       act = gelu_new (tanh GELU)
//! hidden = ln_f(h);  logits = hidden wteᵀ  (lm_head tied)                [B, T, V]
//! ```
//! Conv1D weights are stored `[in, out]` (transposed with respect to `nn.Linear`). Positions
//! are `arange(T)` for right padding and count only real tokens for left padding.

use crate::bert::lin_info;
use crate::error::ModelError;
use crate::loader::Checkpoint;
use crate::model::{
    Adapters, Block, KvCapture, LanguageModel, LinearInfo, ModelInfo, ModelInput, ModelKind,
    StageCtx,
};
use crate::nn::{
    AttnMask, AttnShape, Lin, act, add_prefix_if_missing, attention, attn_mask, cfg_bool, cfg_f64,
    cfg_str, cfg_token, cfg_usize, cfg_usize_opt, check_act, embed_host, layer_norm, linear,
    positions_from_mask, prepare, put, strip_prompt,
};
use burn::tensor::Tensor;
use serde_json::Value;
use std::path::Path;
use zo_optim::ParamStore;

#[derive(Debug, Clone)]
struct Layer {
    ln1: (usize, usize),
    c_attn: Lin,
    c_proj: Lin,
    ln2: (usize, usize),
    c_fc: Lin,
    mlp_proj: Lin,
}

/// What the layers of one GPT-2 forward pass share.
struct Gpt2Ctx {
    mask: AttnMask,
    n_prompt: usize,
}

/// A GPT-2 decoder whose weights live in a [`ParamStore`] under HF names (`transformer.*`;
/// `lm_head.weight` tied to `transformer.wte.weight`).
#[derive(Debug, Clone)]
pub struct Gpt2Model {
    info: ModelInfo,
    adapters: Adapters,
    wte: usize,
    wpe: usize,
    layers: Vec<Layer>,
    ln_f: (usize, usize),
    head: usize,
    tied: bool,
    eps: f64,
    act: String,
    scale_weights: bool,
    scale_inv_layer: bool,
}

impl Gpt2Model {
    /// Builds the model from a parsed `config.json`, moving the tensors of `ckpt` into
    /// `store`. Hub checkpoints without the `transformer.` prefix (`wte.weight`, `h.N.*`) are
    /// accepted; extra buffers (`attn.bias`, `attn.masked_bias`) are ignored.
    ///
    /// # Errors
    /// [`ModelError::Config`] for missing/inconsistent sizes, [`ModelError::UnsupportedOption`]
    /// for an activation not implemented, [`ModelError::MissingTensor`] /
    /// [`ModelError::Shape`] naming the file and tensor.
    pub fn load(
        v: &Value,
        path: &Path,
        ckpt: &mut Checkpoint,
        store: &mut ParamStore,
    ) -> Result<Self, ModelError> {
        let fam = "gpt2";
        let h = cfg_usize(v, &["n_embd", "hidden_size"], path)?;
        let vocab = cfg_usize(v, &["vocab_size"], path)?;
        let n_layers = cfg_usize(v, &["n_layer", "num_hidden_layers"], path)?;
        let nh = cfg_usize(v, &["n_head", "num_attention_heads"], path)?;
        let n_pos = cfg_usize(v, &["n_positions", "max_position_embeddings"], path)?;
        let ff = cfg_usize_opt(v, &["n_inner"], path)?.unwrap_or(4 * h);
        if nh == 0 || h % nh != 0 {
            return Err(ModelError::Config {
                path: path.into(),
                msg: format!("n_embd {h} is not divisible by n_head {nh}"),
            });
        }
        let eps = cfg_f64(v, &["layer_norm_epsilon"], 1e-5, path)?;
        let act = cfg_str(v, &["activation_function"], "gelu_new");
        check_act(&act, "activation_function", path)?;
        let scale_weights = cfg_bool(v, "scale_attn_weights", true, path)?;
        let scale_inv_layer = cfg_bool(v, "scale_attn_by_inverse_layer_idx", false, path)?;
        let tied = cfg_bool(v, "tie_word_embeddings", true, path)?;
        add_prefix_if_missing(ckpt, "transformer.", "wte.weight");
        let t = "transformer.";
        let wte = put(ckpt, store, &format!("{t}wte.weight"), &[vocab, h], fam)?;
        let wpe = put(ckpt, store, &format!("{t}wpe.weight"), &[n_pos, h], fam)?;
        let mut layers = Vec::with_capacity(n_layers);
        for l in 0..n_layers {
            let p = format!("{t}h.{l}.");
            let mut ln = |s: &str| -> Result<(usize, usize), ModelError> {
                Ok((
                    put(ckpt, store, &format!("{p}{s}.weight"), &[h], fam)?,
                    put(ckpt, store, &format!("{p}{s}.bias"), &[h], fam)?,
                ))
            };
            let ln1 = ln("ln_1")?;
            let ln2 = ln("ln_2")?;
            let mut conv = |s: &str, o: usize, i: usize| {
                Lin::load(ckpt, store, &format!("{p}{s}"), o, i, true, true, fam)
            };
            layers.push(Layer {
                ln1,
                c_attn: conv("attn.c_attn", 3 * h, h)?,
                c_proj: conv("attn.c_proj", h, h)?,
                ln2,
                c_fc: conv("mlp.c_fc", ff, h)?,
                mlp_proj: conv("mlp.c_proj", h, ff)?,
            });
        }
        let ln_f = (
            put(ckpt, store, &format!("{t}ln_f.weight"), &[h], fam)?,
            put(ckpt, store, &format!("{t}ln_f.bias"), &[h], fam)?,
        );
        let head = if tied {
            wte
        } else {
            put(ckpt, store, "lm_head.weight", &[vocab, h], fam)?
        };
        let info = ModelInfo {
            model_type: "gpt2".into(),
            kind: ModelKind::CausalLm,
            hidden_size: h,
            embed_dim: h,
            vocab_size: vocab,
            num_layers: n_layers,
            num_heads: nh,
            num_kv_heads: nh,
            head_dim: h / nh,
            max_positions: Some(n_pos),
            pad_token_id: cfg_token(v, "pad_token_id"),
            bos_token_id: cfg_token(v, "bos_token_id"),
            eos_token_id: cfg_token(v, "eos_token_id"),
            source: path.into(),
        };
        Ok(Self {
            info,
            adapters: Adapters::default(),
            wte,
            wpe,
            layers,
            ln_f,
            head,
            tied,
            eps,
            act,
            scale_weights,
            scale_inv_layer,
        })
    }
}

impl LanguageModel for Gpt2Model {
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
        let p = prepare(ps, ad, self.wte, &input.input_ids, &input.attention_mask);
        let (b, t) = (p.b, p.t);
        let n_pos = i.max_positions.unwrap_or(1) as i64;
        let rows: Vec<i64> = positions_from_mask(&p.mask, b, t)
            .into_iter()
            .map(|r| r.min(n_pos - 1))
            .collect();
        let x = p.x + embed_host(ps.t2(self.wpe), &rows, b, t);
        let mask = attn_mask(&p.mask, b, t, ad.n_prefix, true, None, &dev);
        let ctx = Gpt2Ctx {
            mask,
            n_prompt: p.n_prompt,
        };
        (x, StageCtx::new(ctx))
    }
    fn stage_layer(
        &self,
        ps: &ParamStore,
        ctx: &StageCtx,
        li: usize,
        x: Tensor<3>,
        capture: &mut Option<&mut KvCapture>,
    ) -> Tensor<3> {
        let c: &Gpt2Ctx = ctx.get();
        let (ad, i, l) = (&self.adapters, &self.info, &self.layers[li]);
        let h = i.hidden_size;
        let mut scale = if self.scale_weights {
            1.0 / (i.head_dim as f64).sqrt()
        } else {
            1.0
        };
        if self.scale_inv_layer {
            scale /= (li + 1) as f64;
        }
        let shape = AttnShape {
            heads: i.num_heads,
            kv_heads: i.num_heads,
            head_dim: i.head_dim,
            scale,
        };
        let y = layer_norm(ps, x.clone(), Some(l.ln1.0), Some(l.ln1.1), self.eps);
        let qkv = linear(ps, ad, &l.c_attn, y);
        let q = qkv.clone().narrow(2, 0, h);
        let k = qkv.clone().narrow(2, h, h);
        let v = qkv.narrow(2, 2 * h, h);
        let a = attention(ps, ad, li, q, k, v, &c.mask, shape, capture);
        let x = x + linear(ps, ad, &l.c_proj, a);
        let y = layer_norm(ps, x.clone(), Some(l.ln2.0), Some(l.ln2.1), self.eps);
        let m = act(&self.act, linear(ps, ad, &l.c_fc, y));
        x + linear(ps, ad, &l.mlp_proj, m)
    }
    fn stage_end(&self, ps: &ParamStore, ctx: &StageCtx, x: Tensor<3>) -> Tensor<3> {
        let c: &Gpt2Ctx = ctx.get();
        let x = layer_norm(ps, x, Some(self.ln_f.0), Some(self.ln_f.1), self.eps);
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
        let t = "transformer.";
        let mut out = vec![Block {
            name: "embeddings".into(),
            param_names: vec![format!("{t}wte.weight"), format!("{t}wpe.weight")],
        }];
        for (i, l) in self.layers.iter().enumerate() {
            let p = format!("{t}h.{i}.");
            let mut names = vec![format!("{p}ln_1.weight"), format!("{p}ln_1.bias")];
            l.c_attn.param_names(&mut names);
            l.c_proj.param_names(&mut names);
            names.push(format!("{p}ln_2.weight"));
            names.push(format!("{p}ln_2.bias"));
            l.c_fc.param_names(&mut names);
            l.mlp_proj.param_names(&mut names);
            out.push(Block {
                name: format!("layer.{i}"),
                param_names: names,
            });
        }
        let mut head = vec![format!("{t}ln_f.weight"), format!("{t}ln_f.bias")];
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
            .flat_map(|l| [&l.c_attn, &l.c_proj, &l.c_fc, &l.mlp_proj])
            .map(lin_info)
            .collect()
    }
}
