//! # zo-models — burn model zoo with Hugging Face loaders
//!
//! Models follow Hugging Face: configs are read from `config.json`, weights are found by HF
//! parameter names in `model.safetensors`, and parameters live in a
//! [`zo_optim::ParamStore`] under those names, so that the directions of a ZO optimizer are
//! keyed by the HF path of each tensor.
//!
//! A model struct holds its config and indices into the store; forward passes take the store
//! by reference (`fn forward(&self, params: &ParamStore, …)`), so an optimizer can change the
//! parameters between two forward passes without any borrow of the model.
//!
//! Every family implements [`LanguageModel`] (hidden states `[B, T, H]`, an LM head applied
//! to any selection of positions, parameter blocks, linear layers); [`load_model`] reads an
//! HF folder and picks the family from `config.json`'s `model_type`, and [`build_model`] does
//! the same from a parsed config plus a [`Checkpoint`] (the GGUF loader's output).
//!
//! Families: BERT encoders ([`bert`], also with mean / CLS pooling and a
//! sequence-classification head in [`classifier`]), RoBERTa masked LM ([`roberta`]), OPT
//! ([`opt`]), LLaMA ([`llama`]), Mistral with sliding-window attention ([`mistral`]), Qwen2
//! ([`qwen2`]) and GPT-2 ([`gpt2`]); their shared math (norms, RoPE, masked GQA attention with
//! a safe softmax, positions from the attention mask, the LoRA-aware linear layer) is in one
//! private module. Each is checked against HF transformers' float64 outputs
//! (`tests/zoo_parity.rs`). Fine-tuning schemes (FT, LoRA, prefix, prompt, head) are in
//! [`peft`]: they add adapter parameters to the store and mark the trainable set, and every
//! family's forward pass consults the adapters.
#![warn(missing_docs)]

pub mod bert;
pub mod classifier;
pub mod error;
pub mod gguf;
pub mod gpt2;
pub mod llama;
pub mod loader;
pub mod mistral;
pub mod model;
mod nn;
pub mod opt;
pub mod peft;
pub mod qwen2;
pub mod roberta;
pub mod tokenizer;

pub use bert::{BertConfig, BertModel, BertOutput};
pub use classifier::{Pooling, TextClassifier};
pub use error::ModelError;
pub use gguf::{load_gguf, read_gguf_config};
pub use loader::{Checkpoint, load_safetensors};
pub use model::{
    Adapters, Block, LanguageModel, LinearInfo, ModelInfo, ModelInput, ModelKind, StageCtx,
    build_model, load_model, load_weights,
};
pub use peft::{Scheme, SchemeReport, apply_scheme};
pub use tokenizer::{EncodedBatch, TextTokenizer};
