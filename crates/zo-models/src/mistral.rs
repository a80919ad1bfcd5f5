//! Mistral (`model_type` = `mistral`): HF `MistralForCausalLM`.
//!
//! LLaMA's architecture ([`crate::llama`]) plus sliding-window attention on every layer:
//! with `sliding_window` = w, query i attends key j iff `i − w < j ≤ i` (the window counts
//! the query itself) and j is not padding; `sliding_window: null` means full causal attention.
//! A query whose whole window is padding gets an attention output of 0 (torch SDPA), which
//! keeps every value finite. Defaults of MistralConfig apply to missing keys (RMS eps 1e-6,
//! RoPE θ 10000, untied head unless `tie_word_embeddings`).

use crate::error::ModelError;
use crate::llama::{LlamaModel, Variant};
use crate::loader::Checkpoint;
use serde_json::Value;
use std::path::Path;
use zo_optim::ParamStore;

/// Builds a Mistral model from a parsed `config.json`, moving the tensors of `ckpt` into
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
    LlamaModel::load_variant(v, path, ckpt, store, Variant::Mistral)
}
