//! Qwen2 (`model_type` = `qwen2`): HF `Qwen2ForCausalLM`.
//!
//! LLaMA's architecture ([`crate::llama`]) with biases on the q, k and v projections (not on
//! o_proj or the MLP). Sliding-window attention applies only if `use_sliding_window` is true,
//! and then on the layers `layer_types` marks `sliding_attention` or, without `layer_types`,
//! on layers ≥ `max_window_layers` (default 28), as HF's Qwen2Config derives them.

use crate::error::ModelError;
use crate::llama::{LlamaModel, Variant};
use crate::loader::Checkpoint;
use serde_json::Value;
use std::path::Path;
use zo_optim::ParamStore;

/// Builds a Qwen2 model from a parsed `config.json`, moving the tensors of `ckpt` into
/// `store` (HF names `model.*`, `lm_head.weight`).
///
/// # Errors
/// As [`LlamaModel::load_variant`].
pub fn load(
    v: &Value,
    path: &Path,
    ckpt: &mut Checkpoint,
    store: &mut ParamStore,
) -> Result<LlamaModel, ModelError> {
    LlamaModel::load_variant(v, path, ckpt, store, Variant::Qwen2)
}
