//! Errors of model loading and tokenization. Every variant names the file involved.

use std::path::PathBuf;

/// An error while loading a model, its weights or its tokenizer.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file could not be read.
    #[error("cannot read `{path}`: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// `config.json` is not valid JSON or lacks a required key.
    #[error("invalid model config `{path}`: {msg}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong, naming the key.
        msg: String,
    },
    /// `model.safetensors` is truncated or malformed.
    #[error(
        "corrupt checkpoint `{path}`: {msg} (delete it and fetch it again, e.g. `zobench fetch <model>`)"
    )]
    Corrupt {
        /// The weights file.
        path: PathBuf,
        /// Parser message.
        msg: String,
    },
    /// A tensor the architecture needs is not in the checkpoint.
    #[error("checkpoint `{path}` has no tensor `{name}` (needed by the {family} architecture)")]
    MissingTensor {
        /// The weights file.
        path: PathBuf,
        /// HF parameter name.
        name: String,
        /// Model family.
        family: String,
    },
    /// A tensor has the wrong shape for the config.
    #[error(
        "checkpoint `{path}`: tensor `{name}` has shape {got:?}, config.json implies {expected:?}"
    )]
    Shape {
        /// The weights file.
        path: PathBuf,
        /// HF parameter name.
        name: String,
        /// Shape the config implies.
        expected: Vec<usize>,
        /// Shape in the file.
        got: Vec<usize>,
    },
    /// The tokenizer file could not be loaded or applied.
    #[error("tokenizer `{path}`: {msg}")]
    Tokenizer {
        /// The tokenizer file.
        path: PathBuf,
        /// Library message.
        msg: String,
    },
    /// The model type is not supported.
    #[error("`{path}`: unsupported model_type `{model_type}` (supported: {supported})")]
    Unsupported {
        /// The config file.
        path: PathBuf,
        /// `model_type` in config.json.
        model_type: String,
        /// Supported values.
        supported: String,
    },
    /// A config option has a value this implementation does not support (e.g. an unknown
    /// activation or RoPE scaling type).
    #[error("`{path}`: unsupported value {value} for config key `{key}`")]
    UnsupportedOption {
        /// The config file.
        path: PathBuf,
        /// The config key.
        key: String,
        /// The value found, as JSON.
        value: String,
    },
    /// A fine-tuning scheme cannot be applied to this model (unknown scheme, no matching
    /// target, bad size).
    #[error("`{path}`: cannot apply scheme `{scheme}`: {msg}")]
    Scheme {
        /// The model folder or config the model was loaded from.
        path: PathBuf,
        /// Scheme name.
        scheme: String,
        /// What is wrong.
        msg: String,
    },
    /// A tensor of a GGUF file cannot be loaded: its quantisation type cannot be dequantised
    /// here, or it has no Hugging Face counterpart.
    #[error("GGUF file `{path}`: tensor `{tensor}`: {msg}")]
    GgufTensor {
        /// The `.gguf` file.
        path: PathBuf,
        /// The tensor's GGUF name (e.g. `blk.0.attn_q.weight`).
        tensor: String,
        /// What is wrong, naming the GGML type where that is the reason (e.g. `Q5_K`).
        msg: String,
    },
    /// A forward-pass input does not fit the model (token id out of range, too long, shapes).
    #[error("input for model `{path}`: {msg}")]
    Input {
        /// The model's config file or folder.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
}
