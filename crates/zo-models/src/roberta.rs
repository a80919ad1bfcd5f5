//! RoBERTa (`model_type` = `roberta`): HF `RobertaForMaskedLM` (or `RobertaModel` when the
//! checkpoint has no `lm_head.*`).
//!
//! The encoder is BERT's ([`crate::bert`]) under the `roberta.` prefix, except positions:
//! non-pad tokens get table rows `pad + 1, pad + 2, …` counted from the input ids, pads get
//! row `pad` (`pad_token_id`, default 1). The masked-LM head, for hidden states `h` `[B, N, H]`:
//!
//! ```text
//! logits = LayerNorm(gelu(W_d h + b_d)) Eᵀ + b     [B, N, V]
//! ```
//! `W_d` = `lm_head.dense`, LayerNorm = `lm_head.layer_norm` (eps `layer_norm_eps`), gelu the
//! exact (erf) form, `E` the decoder weight — tied to `roberta.embeddings.word_embeddings.weight`
//! unless `tie_word_embeddings` is false (then `lm_head.decoder.weight`), `b` = `lm_head.bias`
//! (`lm_head.decoder.bias` is tied to it).

use crate::bert::{BertConfig, Encoder, PositionMode, lin_info};
use crate::error::ModelError;
use crate::loader::Checkpoint;
use crate::model::{
    Adapters, Block, KvCapture, LanguageModel, LinearInfo, ModelInfo, ModelInput, ModelKind,
    StageCtx,
};
use crate::nn::{Lin, cfg_bool, cfg_token, layer_norm, linear, put, strip_prompt};
use burn::tensor::Tensor;
use burn::tensor::activation::gelu;
use serde_json::Value;
use std::path::Path;
use zo_optim::ParamStore;

#[derive(Debug, Clone)]
struct MlmHead {
    dense: Lin,
    ln: (usize, usize),
    decoder: usize,
    bias: usize,
    bias_name: String,
    tied: bool,
}

/// A RoBERTa encoder, with its masked-LM head if the checkpoint has one.
#[derive(Debug, Clone)]
pub struct RobertaModel {
    enc: Encoder,
    head: Option<MlmHead>,
    info: ModelInfo,
    adapters: Adapters,
}

impl RobertaModel {
    /// Builds the model from a parsed `config.json`, moving the tensors of `ckpt` into `store`.
    /// A checkpoint without the `roberta.` prefix (saved from `RobertaModel`) is accepted.
    ///
    /// # Errors
    /// [`ModelError::Config`] / [`ModelError::UnsupportedOption`] for the config,
    /// [`ModelError::MissingTensor`] / [`ModelError::Shape`] naming the file and tensor.
    pub fn load(
        v: &Value,
        path: &Path,
        ckpt: &mut Checkpoint,
        store: &mut ParamStore,
    ) -> Result<Self, ModelError> {
        let cfg = BertConfig::from_value(v, path, &["roberta"])?;
        let fam = "roberta";
        let probe = "embeddings.word_embeddings.weight";
        if !ckpt.tensors.contains_key(&format!("roberta.{probe}"))
            && ckpt.tensors.contains_key(probe)
        {
            let names: Vec<String> = ckpt
                .tensors
                .keys()
                .filter(|k| !k.starts_with("lm_head.") && !k.starts_with("roberta."))
                .cloned()
                .collect();
            for k in names {
                let t = ckpt.tensors.remove(&k).expect("listed");
                ckpt.tensors.insert(format!("roberta.{k}"), t);
            }
        }
        let pad = cfg.pad_token_id.unwrap_or(1);
        let enc = Encoder::load(
            &cfg,
            "roberta.",
            PositionMode::FromIds(pad),
            ckpt,
            store,
            fam,
        )?;
        let (h, vs) = (cfg.hidden_size, cfg.vocab_size);
        let head = if ckpt.tensors.contains_key("lm_head.dense.weight") {
            let dense = Lin::load(ckpt, store, "lm_head.dense", h, h, true, false, fam)?;
            let ln = (
                put(ckpt, store, "lm_head.layer_norm.weight", &[h], fam)?,
                put(ckpt, store, "lm_head.layer_norm.bias", &[h], fam)?,
            );
            let tied = cfg_bool(v, "tie_word_embeddings", true, path)?;
            let decoder = if tied {
                enc.word
            } else {
                put(ckpt, store, "lm_head.decoder.weight", &[vs, h], fam)?
            };
            let bias_name = if ckpt.tensors.contains_key("lm_head.bias") {
                "lm_head.bias"
            } else if ckpt.tensors.contains_key("lm_head.decoder.bias") {
                "lm_head.decoder.bias"
            } else {
                "lm_head.bias"
            };
            let bias = put(ckpt, store, bias_name, &[vs], fam)?;
            Some(MlmHead {
                dense,
                ln,
                decoder,
                bias,
                bias_name: bias_name.into(),
                tied,
            })
        } else {
            None
        };
        let info = ModelInfo {
            model_type: "roberta".into(),
            kind: if head.is_some() {
                ModelKind::MaskedLm
            } else {
                ModelKind::Encoder
            },
            hidden_size: h,
            embed_dim: h,
            vocab_size: vs,
            num_layers: cfg.num_hidden_layers,
            num_heads: cfg.num_attention_heads,
            num_kv_heads: cfg.num_attention_heads,
            head_dim: h / cfg.num_attention_heads,
            // Rows pad+1 … are usable: the longest input is the table size minus pad + 1.
            max_positions: Some(
                cfg.max_position_embeddings
                    .saturating_sub(pad.max(0) as usize + 1),
            ),
            pad_token_id: Some(pad),
            bos_token_id: cfg_token(v, "bos_token_id"),
            eos_token_id: cfg_token(v, "eos_token_id"),
            source: path.into(),
        };
        Ok(Self {
            enc,
            head,
            info,
            adapters: Adapters::default(),
        })
    }
}

impl LanguageModel for RobertaModel {
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
        strip_prompt(x, ctx.get::<crate::bert::EncCtx>().n_prompt)
    }
    fn lm_head(&self, ps: &ParamStore, hidden: Tensor<3>) -> Option<Tensor<3>> {
        let hd = self.head.as_ref()?;
        let x = gelu(linear(ps, &self.adapters, &hd.dense, hidden));
        let x = layer_norm(ps, x, Some(hd.ln.0), Some(hd.ln.1), self.enc.eps);
        let [b, n, h] = x.dims();
        let y = x.reshape([b * n, h]).matmul(ps.t2(hd.decoder).transpose())
            + ps.t1(hd.bias).unsqueeze::<2>();
        Some(y.reshape([b, n, self.info.vocab_size]))
    }
    fn blocks(&self) -> Vec<Block> {
        let mut out = self.enc.blocks();
        let mut head = Vec::new();
        if let Some(hd) = &self.head {
            hd.dense.param_names(&mut head);
            head.push("lm_head.layer_norm.weight".into());
            head.push("lm_head.layer_norm.bias".into());
            if !hd.tied {
                head.push("lm_head.decoder.weight".into());
            }
            head.push(hd.bias_name.clone());
        }
        out.push(Block {
            name: "head".into(),
            param_names: head,
        });
        crate::model::add_adapter_names(out, &self.adapters)
    }
    fn linears(&self) -> Vec<LinearInfo> {
        let mut v = self.enc.linears();
        v.extend(self.head.iter().map(|h| lin_info(&h.dense)));
        v
    }
}
