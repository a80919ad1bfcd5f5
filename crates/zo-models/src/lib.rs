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
//! Families in this version: BERT encoders ([`bert`]), with mean / CLS pooling and a
//! sequence-classification head ([`classifier`]).
#![warn(missing_docs)]

pub mod bert;
pub mod classifier;
pub mod error;
pub mod loader;
pub mod tokenizer;

pub use bert::{BertConfig, BertModel, BertOutput};
pub use classifier::{Pooling, SequenceClassifier};
pub use error::ModelError;
pub use loader::{Checkpoint, load_safetensors};
pub use tokenizer::{EncodedBatch, TextTokenizer};
