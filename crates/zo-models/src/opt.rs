//! OPT (`model_type` = `opt`): HF `OPTForCausalLM`.
//!
//! For ids `[B, T]` and attention mask m:
//!
//! ```text
//! pos  = cumsum(m)·m − 1 + 2        (learned table with OPT's offset 2; pads use row 1)
//! h₀   = project_in(E[ids]) + P[pos]                                   [B, T, H]
//! per layer (do_layer_norm_before = true: pre-LN; false: post-LN):
//!   h += out_proj(Attn(LN_attn(h)))          q = W_q x / √d (+ biases if enable_bias)
//!   h += fc2(act(fc1(LN_final(h))))          act = activation_function (ReLU)
//! hidden = project_out(LN_f(h))      (LN_f only if pre-LN and not _remove_final_layer_norm)
//! logits = hidden Eᵀ                 (lm_head tied to embed_tokens)      [B, T, V]
//! ```
//! `project_in` / `project_out` exist when `word_embed_proj_dim` ≠ `hidden_size`.

use crate::bert::lin_info;
use crate::error::ModelError;
use crate::loader::Checkpoint;
use crate::model::{
    Adapters, Block, KvCapture, LanguageModel, LinearInfo, ModelInfo, ModelInput, ModelKind,
    StageCtx,
};
use crate::nn::{
    AttnMask, AttnShape, Lin, act, add_prefix_if_missing, attention, attn_mask, cfg_bool, cfg_str,
    cfg_token, cfg_usize, cfg_usize_opt, check_act, embed_host, layer_norm, linear, prepare, put,
    strip_prompt,
};
use burn::tensor::Tensor;
use serde_json::Value;
use std::path::Path;
use zo_optim::ParamStore;

type Ln = (Option<usize>, Option<usize>);

#[derive(Debug, Clone)]
struct Layer {
    ln_attn: Ln,
    q: Lin,
    k: Lin,
    v: Lin,
    o: Lin,
    ln_ffn: Ln,
    fc1: Lin,
    fc2: Lin,
}

/// An OPT decoder whose weights live in a [`ParamStore`] under HF names
/// (`model.decoder.*`; the LM head is tied to `model.decoder.embed_tokens.weight`).
#[derive(Debug, Clone)]
pub struct OptModel {
    info: ModelInfo,
    adapters: Adapters,
    embed: usize,
    pos: usize,
    n_pos_rows: usize,
    project_in: Option<Lin>,
    project_out: Option<Lin>,
    layers: Vec<Layer>,
    final_ln: Option<Ln>,
    head: usize,
    tied: bool,
    pre_ln: bool,
    act: String,
    ln_names: Vec<String>,
}

const OFFSET: i64 = 2;

/// What the layers of one OPT forward pass share.
struct OptCtx {
    mask: AttnMask,
    shape: AttnShape,
    n_prompt: usize,
}

impl OptModel {
    /// Builds the model from a parsed `config.json`, moving the tensors of `ckpt` into
    /// `store`. Checkpoints saved from `OPTModel` (names `decoder.*`) are accepted.
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
        let fam = "opt";
        let h = cfg_usize(v, &["hidden_size"], path)?;
        let vocab = cfg_usize(v, &["vocab_size"], path)?;
        let n_layers = cfg_usize(v, &["num_hidden_layers"], path)?;
        let nh = cfg_usize(v, &["num_attention_heads"], path)?;
        let ff = cfg_usize(v, &["ffn_dim"], path)?;
        let max_pos = cfg_usize(v, &["max_position_embeddings"], path)?;
        let e = cfg_usize_opt(v, &["word_embed_proj_dim"], path)?.unwrap_or(h);
        if nh == 0 || h % nh != 0 {
            return Err(ModelError::Config {
                path: path.into(),
                msg: format!("hidden_size {h} is not divisible by num_attention_heads {nh}"),
            });
        }
        let pre_ln = cfg_bool(v, "do_layer_norm_before", true, path)?;
        let remove_final = cfg_bool(v, "_remove_final_layer_norm", false, path)?;
        let bias = cfg_bool(v, "enable_bias", true, path)?;
        let affine = cfg_bool(v, "layer_norm_elementwise_affine", true, path)?;
        let tied = cfg_bool(v, "tie_word_embeddings", true, path)?;
        let act = cfg_str(v, &["activation_function"], "relu");
        check_act(&act, "activation_function", path)?;

        add_prefix_if_missing(ckpt, "model.", "decoder.embed_tokens.weight");
        let mut ln_names = Vec::new();
        let mut ln =
            |ckpt: &mut Checkpoint, store: &mut ParamStore, name: &str| -> Result<Ln, ModelError> {
                if !affine {
                    return Ok((None, None));
                }
                ln_names.push(format!("{name}.weight"));
                ln_names.push(format!("{name}.bias"));
                Ok((
                    Some(put(ckpt, store, &format!("{name}.weight"), &[h], fam)?),
                    Some(put(ckpt, store, &format!("{name}.bias"), &[h], fam)?),
                ))
            };
        let d = "model.decoder.";
        let embed = put(
            ckpt,
            store,
            &format!("{d}embed_tokens.weight"),
            &[vocab, e],
            fam,
        )?;
        let n_pos_rows = max_pos + OFFSET as usize;
        let pos = put(
            ckpt,
            store,
            &format!("{d}embed_positions.weight"),
            &[n_pos_rows, h],
            fam,
        )?;
        let (project_in, project_out) = if e != h {
            (
                Some(Lin::load(
                    ckpt,
                    store,
                    &format!("{d}project_in"),
                    h,
                    e,
                    false,
                    false,
                    fam,
                )?),
                Some(Lin::load(
                    ckpt,
                    store,
                    &format!("{d}project_out"),
                    e,
                    h,
                    false,
                    false,
                    fam,
                )?),
            )
        } else {
            (None, None)
        };
        let mut layers = Vec::with_capacity(n_layers);
        for l in 0..n_layers {
            let p = format!("{d}layers.{l}.");
            let lin =
                |ckpt: &mut Checkpoint, store: &mut ParamStore, s: &str, o: usize, i: usize| {
                    Lin::load(ckpt, store, &format!("{p}{s}"), o, i, bias, false, fam)
                };
            let q = lin(ckpt, store, "self_attn.q_proj", h, h)?;
            let k = lin(ckpt, store, "self_attn.k_proj", h, h)?;
            let vv = lin(ckpt, store, "self_attn.v_proj", h, h)?;
            let o = lin(ckpt, store, "self_attn.out_proj", h, h)?;
            let ln_attn = ln(ckpt, store, &format!("{p}self_attn_layer_norm"))?;
            let fc1 = lin(ckpt, store, "fc1", ff, h)?;
            let fc2 = lin(ckpt, store, "fc2", h, ff)?;
            let ln_ffn = ln(ckpt, store, &format!("{p}final_layer_norm"))?;
            layers.push(Layer {
                ln_attn,
                q,
                k,
                v: vv,
                o,
                ln_ffn,
                fc1,
                fc2,
            });
        }
        let final_ln = if pre_ln && !remove_final {
            Some(ln(ckpt, store, &format!("{d}final_layer_norm"))?)
        } else {
            None
        };
        let head = if tied {
            embed
        } else {
            put(ckpt, store, "lm_head.weight", &[vocab, e], fam)?
        };
        let info = ModelInfo {
            model_type: "opt".into(),
            kind: ModelKind::CausalLm,
            hidden_size: e,
            embed_dim: e,
            vocab_size: vocab,
            num_layers: n_layers,
            num_heads: nh,
            num_kv_heads: nh,
            head_dim: h / nh,
            max_positions: Some(max_pos),
            pad_token_id: cfg_token(v, "pad_token_id"),
            bos_token_id: cfg_token(v, "bos_token_id"),
            eos_token_id: cfg_token(v, "eos_token_id"),
            source: path.into(),
        };
        Ok(Self {
            info,
            adapters: Adapters::default(),
            embed,
            pos,
            n_pos_rows,
            project_in,
            project_out,
            layers,
            final_ln,
            head,
            tied,
            pre_ln,
            act,
            ln_names,
        })
    }
}

const EPS: f64 = 1e-5;

impl LanguageModel for OptModel {
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
        let dev = ps.device().clone();
        let p = prepare(ps, ad, self.embed, &input.input_ids, &input.attention_mask);
        let (b, t) = (p.b, p.t);
        let mut rows = Vec::with_capacity(b * t);
        for r in 0..b {
            let mut c = 0i64;
            for &m in &p.mask[r * t..(r + 1) * t] {
                c += m;
                rows.push((c * m - 1 + OFFSET).clamp(0, self.n_pos_rows as i64 - 1));
            }
        }
        let mut x = p.x;
        if let Some(l) = &self.project_in {
            x = linear(ps, ad, l, x);
        }
        x = x + embed_host(ps.t2(self.pos), &rows, b, t);
        let mask = attn_mask(&p.mask, b, t, ad.n_prefix, true, None, &dev);
        let i = &self.info;
        let shape = AttnShape {
            heads: i.num_heads,
            kv_heads: i.num_heads,
            head_dim: i.head_dim,
            scale: 1.0 / (i.head_dim as f64).sqrt(),
        };
        let ctx = OptCtx {
            mask,
            shape,
            n_prompt: p.n_prompt,
        };
        (x, StageCtx::new(ctx))
    }
    fn stage_layer(
        &self,
        ps: &ParamStore,
        ctx: &StageCtx,
        li: usize,
        mut x: Tensor<3>,
        capture: &mut Option<&mut KvCapture>,
    ) -> Tensor<3> {
        let c: &OptCtx = ctx.get();
        let (ad, l) = (&self.adapters, &self.layers[li]);
        let ln = |x: Tensor<3>, n: &Ln| layer_norm(ps, x, n.0, n.1, EPS);
        let y = if self.pre_ln {
            ln(x.clone(), &l.ln_attn)
        } else {
            x.clone()
        };
        let q = linear(ps, ad, &l.q, y.clone());
        let k = linear(ps, ad, &l.k, y.clone());
        let v = linear(ps, ad, &l.v, y);
        let a = attention(ps, ad, li, q, k, v, &c.mask, c.shape, capture);
        x = x + linear(ps, ad, &l.o, a);
        if !self.pre_ln {
            x = ln(x, &l.ln_attn);
        }
        let y = if self.pre_ln {
            ln(x.clone(), &l.ln_ffn)
        } else {
            x.clone()
        };
        let m = linear(ps, ad, &l.fc2, act(&self.act, linear(ps, ad, &l.fc1, y)));
        x = x + m;
        if !self.pre_ln {
            x = ln(x, &l.ln_ffn);
        }
        x
    }
    fn stage_end(&self, ps: &ParamStore, ctx: &StageCtx, mut x: Tensor<3>) -> Tensor<3> {
        let c: &OptCtx = ctx.get();
        if let Some(f) = &self.final_ln {
            x = layer_norm(ps, x, f.0, f.1, EPS);
        }
        if let Some(l) = &self.project_out {
            x = linear(ps, &self.adapters, l, x);
        }
        strip_prompt(x, c.n_prompt)
    }
    fn lm_head(&self, ps: &ParamStore, hidden: Tensor<3>) -> Option<Tensor<3>> {
        let [b, n, e] = hidden.dims();
        let y = hidden
            .reshape([b * n, e])
            .matmul(ps.t2(self.head).transpose());
        Some(y.reshape([b, n, self.info.vocab_size]))
    }
    fn blocks(&self) -> Vec<Block> {
        let d = "model.decoder.";
        let mut emb = vec![
            format!("{d}embed_tokens.weight"),
            format!("{d}embed_positions.weight"),
        ];
        if let Some(l) = &self.project_in {
            l.param_names(&mut emb);
        }
        let mut out = vec![Block {
            name: "embeddings".into(),
            param_names: emb,
        }];
        for (i, l) in self.layers.iter().enumerate() {
            let p = format!("{d}layers.{i}.");
            let mut names: Vec<String> = Vec::new();
            for lin in [&l.q, &l.k, &l.v, &l.o, &l.fc1, &l.fc2] {
                lin.param_names(&mut names);
            }
            names.extend(self.ln_names.iter().filter(|n| n.starts_with(&p)).cloned());
            out.push(Block {
                name: format!("layer.{i}"),
                param_names: names,
            });
        }
        let mut head: Vec<String> = self
            .ln_names
            .iter()
            .filter(|n| n.starts_with(&format!("{d}final_layer_norm")))
            .cloned()
            .collect();
        if let Some(l) = &self.project_out {
            l.param_names(&mut head);
        }
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
        let mut v: Vec<LinearInfo> = self.project_in.iter().map(lin_info).collect();
        v.extend(
            self.layers
                .iter()
                .flat_map(|l| [&l.q, &l.k, &l.v, &l.o, &l.fc1, &l.fc2])
                .map(lin_info),
        );
        v.extend(self.project_out.iter().map(lin_info));
        v
    }
}
