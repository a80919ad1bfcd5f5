//! The family-independent model interface ([`LanguageModel`]) and the loader that picks the
//! family from `config.json` ([`load_model`], [`build_model`]).
//!
//! Every family computes `hidden_states` (`[B, T, H]`, one vector per input position) and,
//! where it has one, an LM head that the caller applies only to the positions it needs
//! (`lm_head` takes any `[B, N, H]` slice of the hidden states), so a task can project just
//! the candidate positions onto the vocabulary.

use crate::error::ModelError;
use crate::loader::{Checkpoint, load_safetensors};
use crate::nn::cfg_str;
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use zo_optim::ParamStore;

/// `model_type` values [`load_model`] supports.
pub const SUPPORTED_MODEL_TYPES: &str = "bert, roberta, opt, llama, mistral, qwen2, gpt2";

/// What the model computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    /// Bidirectional encoder without an LM head (`BertModel`, `RobertaModel`).
    Encoder,
    /// Bidirectional encoder with a masked-LM head (`RobertaForMaskedLM`).
    MaskedLm,
    /// Causal decoder with an LM head (`*ForCausalLM`, `GPT2LMHeadModel`).
    CausalLm,
}

/// Sizes and special tokens of a loaded model, read from its `config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    /// HF `model_type` (`bert`, `roberta`, `opt`, `llama`, `mistral`, `qwen2`, `gpt2`).
    pub model_type: String,
    /// Encoder, masked LM or causal LM.
    pub kind: ModelKind,
    /// Width H of the hidden states returned by [`LanguageModel::hidden_states`].
    pub hidden_size: usize,
    /// Width E of the word embeddings (= H except OPT with `word_embed_proj_dim`); prompt
    /// tuning embeddings have this width.
    pub embed_dim: usize,
    /// Vocabulary size V (LM head output width).
    pub vocab_size: usize,
    /// Number of transformer layers L.
    pub num_layers: usize,
    /// Query heads per layer.
    pub num_heads: usize,
    /// Key/value heads per layer (< `num_heads` under GQA).
    pub num_kv_heads: usize,
    /// Head dim d; keys and values of one layer are `num_kv_heads · d` wide.
    pub head_dim: usize,
    /// Longest input in tokens for models with a learned position table; `None` for RoPE.
    pub max_positions: Option<usize>,
    /// Padding token id, if the config has one.
    pub pad_token_id: Option<i64>,
    /// Beginning-of-sequence token id, if any.
    pub bos_token_id: Option<i64>,
    /// End-of-sequence token id, if any.
    pub eos_token_id: Option<i64>,
    /// The config file (or folder) the model was built from; named in errors.
    pub source: PathBuf,
}

impl ModelInfo {
    /// Width of one layer's keys (and values): `num_kv_heads · head_dim`.
    pub fn kv_dim(&self) -> usize {
        self.num_kv_heads * self.head_dim
    }
}

/// A group of parameters that belong together (the embeddings, one transformer layer, the
/// final norm and head). Used by block-wise ZO and by the offload runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// `embeddings`, `layer.N` or `head`.
    pub name: String,
    /// HF names of the block's parameters in the [`ParamStore`].
    pub param_names: Vec<String>,
}

/// A linear layer of the model, as a LoRA target candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinearInfo {
    /// HF module path without `.weight` (e.g. `model.layers.0.self_attn.q_proj`).
    pub name: String,
    /// Input features.
    pub d_in: usize,
    /// Output features.
    pub d_out: usize,
}

/// Parameter-efficient adapters that the forward passes consult (set by [`crate::peft`]).
/// All ids point into the [`ParamStore`] the model was loaded into.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Adapters {
    /// LoRA factors per linear layer name: (A `[r, in]`, B `[out, r]`) ids.
    pub lora: HashMap<String, (usize, usize)>,
    /// LoRA scaling α/r (multiplies `x Aᵀ Bᵀ`).
    pub lora_scale: f32,
    /// Prefix keys and values per layer: (key id, value id), each `[n_prefix, kv_dim]`.
    pub prefix: Vec<(usize, usize)>,
    /// Number of virtual prefix tokens n.
    pub n_prefix: usize,
    /// Prompt embeddings: (id of `[n, E]`, n), prepended to the word embeddings.
    pub prompt: Option<(usize, usize)>,
}

/// Adds the adapters' parameter names to the blocks they belong to: LoRA factors to the block
/// holding `<linear>.weight`, `prefix.layer.N.*` to `layer.N`, `prompt.embeddings` to
/// `embeddings`. Families call it at the end of [`LanguageModel::blocks`].
pub(crate) fn add_adapter_names(mut blocks: Vec<Block>, ad: &Adapters) -> Vec<Block> {
    let mut lora: Vec<&String> = ad.lora.keys().collect();
    lora.sort();
    for lin in lora {
        let w = format!("{lin}.weight");
        if let Some(b) = blocks.iter_mut().find(|b| b.param_names.contains(&w)) {
            b.param_names.push(format!("{lin}.lora_A.weight"));
            b.param_names.push(format!("{lin}.lora_B.weight"));
        }
    }
    if ad.n_prefix > 0 {
        for l in 0..ad.prefix.len() {
            if let Some(b) = blocks.iter_mut().find(|b| b.name == format!("layer.{l}")) {
                b.param_names.push(format!("prefix.layer.{l}.key"));
                b.param_names.push(format!("prefix.layer.{l}.value"));
            }
        }
    }
    if ad.prompt.is_some_and(|(_, n)| n > 0) {
        if let Some(b) = blocks.iter_mut().find(|b| b.name == "embeddings") {
            b.param_names.push("prompt.embeddings".into());
        }
    }
    blocks
}

/// Keys and values of each layer, `[B, T, kv_dim]` each (after RoPE where the family has it),
/// as captured by [`LanguageModel::layer_kv`].
pub type KvCapture = Vec<(Tensor<3>, Tensor<3>)>;

/// Inputs of a forward pass.
#[derive(Debug, Clone)]
pub struct ModelInput {
    /// Token ids `[B, T]`, each < `vocab_size`.
    pub input_ids: Tensor<2, Int>,
    /// `[B, T]`: 1 for a real token, 0 for padding (left or right).
    pub attention_mask: Tensor<2, Int>,
    /// Segment ids `[B, T]` (BERT-style encoders); `None` = all 0.
    pub token_type_ids: Option<Tensor<2, Int>>,
}

impl ModelInput {
    /// Builds the input from row-major host ids and mask (`rows · cols` values each).
    ///
    /// # Panics
    /// If a slice does not hold `rows · cols` values.
    pub fn from_host(ids: &[i64], mask: &[i64], rows: usize, cols: usize, device: &Device) -> Self {
        let t = |v: &[i64]| {
            Tensor::<2, Int>::from_data(TensorData::new(v.to_vec(), [rows, cols]), device)
        };
        Self {
            input_ids: t(ids),
            attention_mask: t(mask),
            token_type_ids: None,
        }
    }

    /// Checks the input against the model: ids in `0..vocab_size`, mask values 0/1, matching
    /// shapes, and (for learned position tables) `T` ≤ `max_positions`. Forward passes assume
    /// a checked input.
    ///
    /// # Errors
    /// [`ModelError::Input`] naming the model's source and the problem.
    pub fn check(&self, info: &ModelInfo) -> Result<(), ModelError> {
        let bad = |msg: String| ModelError::Input {
            path: info.source.clone(),
            msg,
        };
        let [b, t] = self.input_ids.dims();
        if self.attention_mask.dims() != [b, t] {
            return Err(bad(format!(
                "attention_mask {:?} does not match input_ids {:?}",
                self.attention_mask.dims(),
                [b, t]
            )));
        }
        if let Some(tt) = &self.token_type_ids {
            if tt.dims() != [b, t] {
                return Err(bad("token_type_ids shape differs from input_ids".into()));
            }
        }
        let ids = crate::nn::host_ints(&self.input_ids);
        if let Some(x) = ids
            .iter()
            .find(|&&x| x < 0 || x as usize >= info.vocab_size)
        {
            return Err(bad(format!("token id {x} outside 0..{}", info.vocab_size)));
        }
        let mask = crate::nn::host_ints(&self.attention_mask);
        if mask.iter().any(|&m| m != 0 && m != 1) {
            return Err(bad("attention_mask values must be 0 or 1".into()));
        }
        if let Some(mp) = info.max_positions {
            if t > mp {
                return Err(bad(format!(
                    "sequence length {t} exceeds max_position_embeddings {mp}"
                )));
            }
        }
        Ok(())
    }
}

/// What the stages of one forward pass share: the attention masks, position tables and
/// prompt length that a family derives from the input once ([`LanguageModel::stage_begin`]).
/// Its tensors live on the device of the store `stage_begin` was given.
pub struct StageCtx(Box<dyn std::any::Any>);

impl StageCtx {
    /// Wraps a family's own context.
    pub(crate) fn new<T: 'static>(inner: T) -> Self {
        Self(Box::new(inner))
    }

    /// The family's own context.
    ///
    /// # Panics
    /// If the context was built by another family (a caller mixing models).
    pub(crate) fn get<T: 'static>(&self) -> &T {
        self.0
            .downcast_ref::<T>()
            .expect("StageCtx built by another model family")
    }
}

impl Debug for StageCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StageCtx")
    }
}

/// A language model whose parameters live in a [`ParamStore`].
///
/// Forward passes read parameters from the store passed in, so an optimizer can change them
/// between calls. Inputs are assumed valid (see [`ModelInput::check`]).
pub trait LanguageModel: Debug + Send + Sync {
    /// Sizes, kind and special tokens.
    fn info(&self) -> &ModelInfo;

    /// The adapters the forward passes consult.
    fn adapters(&self) -> &Adapters;

    /// Replaces the adapters (done by [`crate::peft::apply_scheme`]).
    fn set_adapters(&mut self, adapters: Adapters);

    /// Runs the transformer and returns the final hidden states `[B, T, H]` (after the final
    /// norm / OPT's `project_out`; what enters the LM head), every position including pads.
    /// If `capture` is given, each layer's keys and values are pushed to it.
    ///
    /// It is [`stage_begin`](Self::stage_begin), [`stage_layer`](Self::stage_layer) for
    /// every layer in order, then [`stage_end`](Self::stage_end): the same code the offload
    /// runtime runs one layer at a time, so both give the same values on the same device.
    fn forward_hidden(
        &self,
        ps: &ParamStore,
        input: &ModelInput,
        mut capture: Option<&mut KvCapture>,
    ) -> Tensor<3> {
        let (mut x, ctx) = self.stage_begin(ps, input);
        for layer in 0..self.info().num_layers {
            x = self.stage_layer(ps, &ctx, layer, x, &mut capture);
        }
        self.stage_end(ps, &ctx, x)
    }

    /// First stage of a forward pass: the input embeddings `[B, T', H]` (T' = T plus any
    /// prompt-tuning positions) and the context the layers share. Reads only the parameters
    /// of the `embeddings` block (see [`blocks`](Self::blocks)).
    fn stage_begin(&self, ps: &ParamStore, input: &ModelInput) -> (Tensor<3>, StageCtx);

    /// Transformer layer `layer` (0-based) on `x` `[B, T', H]` → `[B, T', H]`. Reads only the
    /// parameters of block `layer.{layer}`. Pushes the layer's keys and values to `capture`
    /// when it is `Some`.
    ///
    /// # Panics
    /// If `layer ≥ num_layers` or `ctx` comes from another model.
    fn stage_layer(
        &self,
        ps: &ParamStore,
        ctx: &StageCtx,
        layer: usize,
        x: Tensor<3>,
        capture: &mut Option<&mut KvCapture>,
    ) -> Tensor<3>;

    /// Last stage: final norm / projection and removal of prompt positions, `[B, T', H]` →
    /// `[B, T, H]`. Reads only parameters of the `head` and `embeddings` blocks.
    fn stage_end(&self, ps: &ParamStore, ctx: &StageCtx, x: Tensor<3>) -> Tensor<3>;

    /// Final hidden states `[B, T, H]`.
    fn hidden_states(&self, ps: &ParamStore, input: &ModelInput) -> Tensor<3> {
        self.forward_hidden(ps, input, None)
    }

    /// Keys and values of every layer for `input`, `[B, T, kv_dim]` each (after RoPE).
    fn layer_kv(&self, ps: &ParamStore, input: &ModelInput) -> KvCapture {
        let mut c = Vec::new();
        let _ = self.forward_hidden(ps, input, Some(&mut c));
        c
    }

    /// Projects hidden states `[B, N, H]` (any selection of positions) to vocabulary logits
    /// `[B, N, V]`; `None` for encoders without an LM head.
    fn lm_head(&self, ps: &ParamStore, hidden: Tensor<3>) -> Option<Tensor<3>>;

    /// Sentence vector `[B, H]` from hidden states `[B, T, H]` (BERT's pooler); `None` if the
    /// model has none.
    fn pooler(&self, _ps: &ParamStore, _hidden: Tensor<3>) -> Option<Tensor<2>> {
        None
    }

    /// Logits `[B, T, V]` at every position; `None` without an LM head.
    fn logits(&self, ps: &ParamStore, input: &ModelInput) -> Option<Tensor<3>> {
        let h = self.hidden_states(ps, input);
        self.lm_head(ps, h)
    }

    /// Parameter blocks in forward order: `embeddings`, `layer.0` … `layer.{L-1}`, `head`.
    /// Together they list every parameter of the model exactly once, adapters included
    /// (LoRA factors with their layer, prefix keys/values with their layer, prompt embeddings
    /// with the embeddings). The first name of `embeddings` is the word-embedding table.
    fn blocks(&self) -> Vec<Block>;

    /// Every linear layer of the transformer (LoRA target candidates), in forward order.
    fn linears(&self) -> Vec<LinearInfo>;
}

fn read_json(path: &Path) -> Result<Value, ModelError> {
    let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
        path: path.into(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| ModelError::Config {
        path: path.into(),
        msg: e.to_string(),
    })
}

/// Reads the weights of an HF model folder: `model.safetensors`, or the shards listed in
/// `model.safetensors.index.json` (`weight_map`: tensor name → shard file), merged into one
/// [`Checkpoint`] whose `path` is the single file or the index.
///
/// # Errors
/// [`ModelError::Io`] if neither file exists or a shard cannot be read,
/// [`ModelError::Corrupt`] for a malformed file or index, naming it.
pub fn load_weights(dir: &Path) -> Result<Checkpoint, ModelError> {
    let single = dir.join("model.safetensors");
    let index = dir.join("model.safetensors.index.json");
    if single.exists() || !index.exists() {
        return load_safetensors(&single);
    }
    let idx = read_json(&index)?;
    let map = idx
        .get("weight_map")
        .and_then(Value::as_object)
        .ok_or_else(|| ModelError::Corrupt {
            path: index.clone(),
            msg: "no `weight_map` object".into(),
        })?;
    let mut files: Vec<&str> = Vec::new();
    for (name, f) in map {
        let f = f.as_str().ok_or_else(|| ModelError::Corrupt {
            path: index.clone(),
            msg: format!("weight_map entry `{name}` is not a file name"),
        })?;
        if f.contains("..") || f.starts_with('/') {
            return Err(ModelError::Corrupt {
                path: index.clone(),
                msg: format!("shard name `{f}` leaves the model folder"),
            });
        }
        if !files.contains(&f) {
            files.push(f);
        }
    }
    let mut tensors = BTreeMap::new();
    let mut skipped = Vec::new();
    for f in files {
        let shard = load_safetensors(&dir.join(f))?;
        tensors.extend(shard.tensors);
        skipped.extend(shard.skipped);
    }
    Ok(Checkpoint {
        path: index,
        tensors,
        skipped,
    })
}

/// Loads an HF model folder (`config.json` + `model.safetensors` or a sharded
/// `model.safetensors.index.json`) into `store` and returns the model of its `model_type`.
/// `path` may also be the `config.json` file itself, or a `.gguf` file (read by
/// [`crate::gguf::load_gguf`], which yields an HF-layout config and checkpoint).
///
/// # Errors
/// [`ModelError::Io`] / [`ModelError::Config`] for the config, [`ModelError::Unsupported`]
/// for another `model_type`, [`ModelError::UnsupportedOption`] for an option not
/// implemented, [`ModelError::Corrupt`] for a bad weights file, [`ModelError::MissingTensor`]
/// / [`ModelError::Shape`] naming the file, the tensor and the expected shape.
pub fn load_model(
    path: &Path,
    store: &mut ParamStore,
) -> Result<Box<dyn LanguageModel>, ModelError> {
    if path.is_file()
        && path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
    {
        let (config, ckpt) = crate::gguf::load_gguf(path)?;
        return build_model(&config, path, ckpt, store);
    }
    let (dir, config_path) = if path.is_dir() {
        (path.to_path_buf(), path.join("config.json"))
    } else {
        (
            path.parent().map(Path::to_path_buf).unwrap_or_default(),
            path.to_path_buf(),
        )
    };
    let config = read_json(&config_path)?;
    // Reject an unsupported type before reading the weights.
    check_model_type(&config, &config_path)?;
    let ckpt = load_weights(&dir)?;
    build_model(&config, &config_path, ckpt, store)
}

fn check_model_type(config: &Value, config_path: &Path) -> Result<String, ModelError> {
    let model_type = cfg_str(config, &["model_type"], "");
    if model_type.is_empty() {
        return Err(ModelError::Config {
            path: config_path.into(),
            msg: "missing key `model_type`".into(),
        });
    }
    if !SUPPORTED_MODEL_TYPES.split(", ").any(|m| m == model_type) {
        return Err(ModelError::Unsupported {
            path: config_path.into(),
            model_type,
            supported: SUPPORTED_MODEL_TYPES.into(),
        });
    }
    Ok(model_type)
}

/// Builds a model from an already parsed HF config (`config.json` layout) and a checkpoint
/// with HF tensor names (e.g. from the GGUF loader), moving its tensors into `store`.
/// `config_path` is only used in error messages.
///
/// # Errors
/// As [`load_model`], without the file-reading errors.
pub fn build_model(
    config: &Value,
    config_path: &Path,
    mut ckpt: Checkpoint,
    store: &mut ParamStore,
) -> Result<Box<dyn LanguageModel>, ModelError> {
    let model_type = check_model_type(config, config_path)?;
    let c = &mut ckpt;
    Ok(match model_type.as_str() {
        "bert" => Box::new(crate::bert::BertModel::from_value(
            config,
            config_path,
            c,
            store,
        )?),
        "roberta" => Box::new(crate::roberta::RobertaModel::load(
            config,
            config_path,
            c,
            store,
        )?),
        "opt" => Box::new(crate::opt::OptModel::load(config, config_path, c, store)?),
        "llama" => Box::new(crate::llama::LlamaModel::load(
            config,
            config_path,
            c,
            store,
        )?),
        "mistral" => Box::new(crate::mistral::load(config, config_path, c, store)?),
        "qwen2" => Box::new(crate::qwen2::load(config, config_path, c, store)?),
        "gpt2" => Box::new(crate::gpt2::Gpt2Model::load(config, config_path, c, store)?),
        _ => unreachable!("checked by check_model_type"),
    })
}
