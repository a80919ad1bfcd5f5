//! LLaMA checkpoints in llama.cpp's GGUF format, loaded as Hugging Face f32 tensors.
//!
//! [`load_gguf`] reads a `.gguf` file and returns what [`crate::loader::load_safetensors`]
//! plus `config.json` would give for the same model in HF's `LlamaForCausalLM` layout:
//!
//! - **a config** (`serde_json::Value`) with HF's keys (`hidden_size`, `num_key_value_heads`,
//!   `rope_parameters.rope_theta`, …) built from the GGUF metadata (`llama.*` keys);
//! - **a [`Checkpoint`]** of f32 tensors under HF names (`model.layers.3.self_attn.q_proj.weight`),
//!   in HF shapes (`[out_features, in_features]`), dequantised from the file's GGML types.
//!
//! What the conversion undoes, as transformers' own GGUF loader does:
//!
//! - GGUF lists dimensions innermost first: `[576, 49152]` in the file is `[49152, 576]` here.
//!   The data order is unchanged (row-major in the HF shape).
//! - llama.cpp stores the rows of `attn_q` / `attn_k` permuted (interleaved RoPE halves). The HF
//!   rows are `w.reshape(n_head, rows / n_head / 2, 2, cols).swapaxes(1, 2).reshape(rows, cols)`
//!   with `n_head` = `llama.attention.head_count` for Q and `llama.attention.head_count_kv` for K.
//! - There is no `output.weight` when the LM head is tied to the embeddings; the config then says
//!   `tie_word_embeddings: true` and the checkpoint has no `lm_head.weight`.
//!
//! Dequantisation (ours, in f32, parallel over blocks with rayon): `F32`, `F16`, `BF16`, `F64`,
//! and the 32-element block types `Q4_0` (`x = d·(q − 8)`), `Q4_1` (`x = d·q + m`), `Q5_0`
//! (`x = d·(q − 16)`), `Q5_1` (`x = d·q + m`), `Q8_0` (`x = d·q`), with `d`, `m` stored as f16.
//! In the 4- and 5-bit types the low nibbles of the 16 packed bytes are elements 0–15 and the
//! high nibbles elements 16–31; the fifth bits of `Q5_*` are bits 0–31 of a little-endian u32.
//! Other types (K-quants, IQ-quants, integers) are rejected with an error naming the tensor
//! and the type.
//!
//! The container (header, metadata, tensor table, alignment, data offset, range checks) is
//! parsed by the `gguf-rs-lib` crate; the tensor bytes are then read one tensor at a time, so the
//! peak memory of a load is the f32 weights plus one tensor's raw bytes.
//!
//! Only `general.architecture = "llama"` is supported (LLaMA, SmolLM, Mistral-as-llama, …);
//! other architectures give [`ModelError::Unsupported`].

use crate::error::ModelError;
use crate::loader::Checkpoint;
use gguf_rs_lib::prelude::{GGUFError, GGUFFileReader, GGUFTensorType, Metadata, MetadataValue};
use rayon::prelude::*;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

/// `general.architecture` values [`load_gguf`] supports.
pub const SUPPORTED_ARCHITECTURES: &[&str] = &["llama"];

/// GGML tensor types [`load_gguf`] dequantises (names as llama.cpp spells them).
pub const SUPPORTED_TYPES: &[&str] = &[
    "F32", "F16", "BF16", "F64", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0",
];

/// Loads a LLaMA-architecture `.gguf` file as an HF-layout config and f32 checkpoint.
///
/// Returns `(config, checkpoint)`: `config` has the keys of a transformers `LlamaConfig`
/// (`model_type: "llama"`, `hidden_size`, `intermediate_size`, `num_hidden_layers`,
/// `num_attention_heads`, `num_key_value_heads`, `head_dim`, `rms_norm_eps`, `rope_theta` and
/// `rope_parameters.rope_theta`, `vocab_size`, `max_position_embeddings`,
/// `tie_word_embeddings`, and `bos_token_id` / `eos_token_id` / `pad_token_id` /
/// `unk_token_id` where the file has them); `checkpoint.tensors` maps every HF parameter
/// name to `(shape, row-major f32 values)` with HF shapes (`[out, in]` for linear weights,
/// `[vocab, hidden]` for the embeddings, `[hidden]` for norms). `checkpoint.skipped` is empty.
///
/// Memory: the file is not held in memory; tensors are read and dequantised one at a time,
/// so the peak is about the f32 weights plus the largest tensor's raw bytes (for
/// SmolLM2-135M Q4_1: 513 MiB of f32 plus the 30 MB Q8_0 embedding; measured VmHWM 532 MiB).
///
/// # Errors
/// - [`ModelError::Io`] if the file cannot be opened or read;
/// - [`ModelError::Corrupt`] (naming the file) if it is not a GGUF file, is truncated (header,
///   metadata, tensor table or tensor data cut short) or has inconsistent tensor ranges;
/// - [`ModelError::Unsupported`] if `general.architecture` is not `llama`;
/// - [`ModelError::Config`] if `general.architecture` or a required `llama.*` key is missing or
///   has the wrong type, or the RoPE scaling type is neither `none` nor `linear`;
/// - [`ModelError::GgufTensor`] if a tensor has a type outside [`SUPPORTED_TYPES`] (the message
///   names the tensor and the type, e.g. `Q5_K`), has no HF LLaMA name (e.g. `rope_freqs.weight`),
///   or has a Q/K row count not divisible by `2 × heads`.
pub fn load_gguf(path: &Path) -> Result<(Value, Checkpoint), ModelError> {
    let Parsed {
        config,
        entries,
        mut file,
    } = parse(path)?;
    let mut tensors = BTreeMap::new();
    for e in entries {
        let mut raw = Vec::new();
        raw.try_reserve_exact(e.nbytes).map_err(|_| {
            corrupt(
                path,
                format!(
                    "cannot allocate {} bytes for tensor `{}`",
                    e.nbytes, e.gguf_name
                ),
            )
        })?;
        raw.resize(e.nbytes, 0);
        file.seek(SeekFrom::Start(e.offset))
            .and_then(|_| file.read_exact(&mut raw))
            .map_err(|source| {
                if source.kind() == std::io::ErrorKind::UnexpectedEof {
                    corrupt(
                        path,
                        format!(
                            "file is truncated: data of tensor `{}` is cut short",
                            e.gguf_name
                        ),
                    )
                } else {
                    ModelError::Io {
                        path: path.into(),
                        source,
                    }
                }
            })?;
        let mut values = vec![0f32; e.numel];
        dequantize(e.layout, &raw, &mut values);
        drop(raw);
        if let Some(n_head) = e.heads {
            let rows = e.hf_shape[0];
            let cols = e.numel / rows;
            values = unpermute_rows(&values, rows, cols, n_head);
        }
        tensors.insert(e.hf_name, (e.hf_shape, values));
    }
    Ok((
        config,
        Checkpoint {
            path: path.into(),
            tensors,
            skipped: Vec::new(),
        },
    ))
}

/// Reads only the header, metadata and tensor table of a `.gguf` file and returns the HF
/// config that [`load_gguf`] would return, after checking that every tensor lies inside the
/// file and can be loaded (supported type, known name). Reads no tensor data: use it to reject
/// a bad checkpoint before a long run starts.
///
/// # Errors
/// As [`load_gguf`], except that truncation inside the tensor data is found from the file
/// size alone.
pub fn read_gguf_config(path: &Path) -> Result<Value, ModelError> {
    Ok(parse(path)?.config)
}

/// Maps a GGUF (llama.cpp) tensor name of the LLaMA architecture to its Hugging Face
/// `LlamaForCausalLM` parameter name, or `None` if it has none.
///
/// `token_embd.weight` → `model.embed_tokens.weight`, `output_norm.weight` →
/// `model.norm.weight`, `output.weight` → `lm_head.weight`, and for layer `N`:
/// `blk.N.attn_{q,k,v,output}` → `model.layers.N.self_attn.{q,k,v,o}_proj`,
/// `blk.N.ffn_{gate,up,down}` → `model.layers.N.mlp.{gate,up,down}_proj` (`.weight` or
/// `.bias`), `blk.N.attn_norm.weight` → `model.layers.N.input_layernorm.weight`,
/// `blk.N.ffn_norm.weight` → `model.layers.N.post_attention_layernorm.weight`.
pub fn hf_tensor_name(gguf_name: &str) -> Option<String> {
    match gguf_name {
        "token_embd.weight" => return Some("model.embed_tokens.weight".into()),
        "output_norm.weight" => return Some("model.norm.weight".into()),
        "output.weight" => return Some("lm_head.weight".into()),
        _ => {}
    }
    let rest = gguf_name.strip_prefix("blk.")?;
    let (layer, rest) = rest.split_once('.')?;
    if layer.is_empty() || !layer.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let layer: usize = layer.parse().ok()?;
    let (part, kind) = rest.split_once('.')?;
    let module = match (part, kind) {
        ("attn_q", "weight" | "bias") => "self_attn.q_proj",
        ("attn_k", "weight" | "bias") => "self_attn.k_proj",
        ("attn_v", "weight" | "bias") => "self_attn.v_proj",
        ("attn_output", "weight" | "bias") => "self_attn.o_proj",
        ("ffn_gate", "weight" | "bias") => "mlp.gate_proj",
        ("ffn_up", "weight" | "bias") => "mlp.up_proj",
        ("ffn_down", "weight" | "bias") => "mlp.down_proj",
        ("attn_norm", "weight") => "input_layernorm",
        ("ffn_norm", "weight") => "post_attention_layernorm",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{module}.{kind}"))
}

// ---------------------------------------------------------------------------------------------
// Parsing

/// One tensor to load.
struct Entry {
    gguf_name: String,
    hf_name: String,
    /// HF shape (GGUF dims reversed).
    hf_shape: Vec<usize>,
    layout: Layout,
    /// Absolute byte offset of the data in the file.
    offset: u64,
    nbytes: usize,
    numel: usize,
    /// `Some(n_head)` for Q / K projections, whose rows are un-permuted.
    heads: Option<usize>,
}

struct Parsed {
    config: Value,
    entries: Vec<Entry>,
    file: File,
}

fn corrupt(path: &Path, msg: impl Into<String>) -> ModelError {
    ModelError::Corrupt {
        path: path.into(),
        msg: msg.into(),
    }
}

fn config_err(path: &Path, msg: impl Into<String>) -> ModelError {
    ModelError::Config {
        path: path.into(),
        msg: msg.into(),
    }
}

fn format_error(path: &Path, file_len: u64, e: GGUFError) -> ModelError {
    match e {
        GGUFError::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => corrupt(
            path,
            format!(
                "file is truncated: it ends ({file_len} bytes) inside its GGUF header, metadata \
                 or tensor table"
            ),
        ),
        GGUFError::Io(source) => ModelError::Io {
            path: path.into(),
            source,
        },
        GGUFError::UnexpectedEof => corrupt(
            path,
            format!("file is truncated: tensor data runs past its end ({file_len} bytes)"),
        ),
        other => corrupt(path, format!("not a valid GGUF file: {other}")),
    }
}

fn parse(path: &Path) -> Result<Parsed, ModelError> {
    let io = |source| ModelError::Io {
        path: path.into(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let file_len = file.metadata().map_err(io)?.len();
    let reader =
        GGUFFileReader::new(BufReader::new(file)).map_err(|e| format_error(path, file_len, e))?;
    let md = reader.metadata();

    let arch = md.get_string("general.architecture").ok_or_else(|| {
        config_err(
            path,
            "GGUF metadata lacks the string `general.architecture`",
        )
    })?;
    if !SUPPORTED_ARCHITECTURES.contains(&arch) {
        return Err(ModelError::Unsupported {
            path: path.into(),
            model_type: arch.to_string(),
            supported: SUPPORTED_ARCHITECTURES.join(", "),
        });
    }

    let has = |name: &str| reader.get_tensor_info(name).is_some();
    let embd_rows = reader
        .get_tensor_info("token_embd.weight")
        .and_then(|t| t.shape().dims().get(1).copied());
    let config = llama_config(
        path,
        md,
        LlamaTensors {
            tied: !has("output.weight"),
            attention_bias: has("blk.0.attn_q.bias"),
            mlp_bias: has("blk.0.ffn_up.bias"),
            embd_rows,
        },
    )?;
    let n_head = config["num_attention_heads"].as_u64().unwrap_or(0) as usize;
    let n_head_kv = config["num_key_value_heads"].as_u64().unwrap_or(0) as usize;

    let data_start = reader.tensor_data_offset();
    let mut entries = Vec::with_capacity(reader.tensor_count());
    for t in reader.tensor_infos() {
        let name = t.name();
        let ty = t.tensor_type();
        let tensor_err = |msg: String| ModelError::GgufTensor {
            path: path.into(),
            tensor: name.into(),
            msg,
        };
        let layout = Layout::of(ty).ok_or_else(|| {
            tensor_err(format!(
                "GGML type {} is not supported (supported: {})",
                ty.name(),
                SUPPORTED_TYPES.join(", ")
            ))
        })?;
        let hf_name = hf_tensor_name(name).ok_or_else(|| {
            tensor_err("no Hugging Face LLaMA parameter corresponds to this tensor".into())
        })?;
        let hf_shape: Vec<usize> = t.shape().dims().iter().rev().map(|&d| d as usize).collect();
        let numel: usize = hf_shape.iter().product();
        let (be, bb) = layout.block();
        if !numel.is_multiple_of(be) {
            return Err(corrupt(
                path,
                format!("tensor `{name}` has {numel} elements, not whole {be}-element blocks"),
            ));
        }
        let heads = if name.starts_with("blk.") && name.contains(".attn_q.") {
            Some(n_head)
        } else if name.starts_with("blk.") && name.contains(".attn_k.") {
            Some(n_head_kv)
        } else {
            None
        };
        if let Some(h) = heads {
            let rows = hf_shape[0];
            if h == 0 || !rows.is_multiple_of(2 * h) {
                return Err(tensor_err(format!(
                    "{rows} rows cannot be split into {h} heads of rotary pairs"
                )));
            }
        }
        entries.push(Entry {
            gguf_name: name.into(),
            hf_name,
            hf_shape,
            layout,
            offset: data_start + t.data_offset(),
            nbytes: numel / be * bb,
            numel,
            heads,
        });
    }
    entries.sort_by_key(|e| e.offset);
    let file = reader.into_inner().into_inner();
    Ok(Parsed {
        config,
        entries,
        file,
    })
}

/// Facts about the tensors that the config needs.
struct LlamaTensors {
    tied: bool,
    attention_bias: bool,
    mlp_bias: bool,
    embd_rows: Option<u64>,
}

fn meta_uint(v: &MetadataValue) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_i64().and_then(|x| u64::try_from(x).ok()))
}

fn meta_float(v: &MetadataValue) -> Option<f64> {
    v.as_f64().or_else(|| meta_uint(v).map(|x| x as f64))
}

fn llama_config(path: &Path, md: &Metadata, t: LlamaTensors) -> Result<Value, ModelError> {
    let opt_uint = |key: &str| -> Result<Option<u64>, ModelError> {
        match md.get(key) {
            None => Ok(None),
            Some(v) => meta_uint(v).map(Some).ok_or_else(|| {
                config_err(path, format!("GGUF key `{key}` is not an unsigned integer"))
            }),
        }
    };
    let uint = |key: &str| -> Result<u64, ModelError> {
        opt_uint(key)?.ok_or_else(|| config_err(path, format!("GGUF metadata lacks `{key}`")))
    };
    let opt_float = |key: &str| -> Result<Option<f64>, ModelError> {
        match md.get(key) {
            None => Ok(None),
            Some(v) => meta_float(v)
                .map(Some)
                .ok_or_else(|| config_err(path, format!("GGUF key `{key}` is not a number"))),
        }
    };

    let hidden = uint("llama.embedding_length")?;
    let heads = uint("llama.attention.head_count")?;
    if heads == 0
        || (!hidden.is_multiple_of(heads) && opt_uint("llama.attention.key_length")?.is_none())
    {
        return Err(config_err(
            path,
            format!("llama.embedding_length {hidden} is not a multiple of head_count {heads}"),
        ));
    }
    let kv_heads = opt_uint("llama.attention.head_count_kv")?.unwrap_or(heads);
    let head_dim = opt_uint("llama.attention.key_length")?.unwrap_or(hidden / heads);
    let vocab = match opt_uint("llama.vocab_size")? {
        Some(v) => v,
        None => match md.get("tokenizer.ggml.tokens") {
            Some(MetadataValue::Array(a)) => a.length,
            _ => t.embd_rows.ok_or_else(|| {
                config_err(
                    path,
                    "no llama.vocab_size, tokenizer.ggml.tokens or token_embd.weight",
                )
            })?,
        },
    };
    let rope_theta = opt_float("llama.rope.freq_base")?.unwrap_or(10000.0);
    let mut rope = Map::new();
    rope.insert("rope_theta".into(), json!(rope_theta));
    match md.get_string("llama.rope.scaling.type") {
        None | Some("none") => {
            rope.insert("rope_type".into(), json!("default"));
        }
        Some("linear") => {
            let factor = opt_float("llama.rope.scaling.factor")?.ok_or_else(|| {
                config_err(path, "llama.rope.scaling.type is linear but has no factor")
            })?;
            rope.insert("rope_type".into(), json!("linear"));
            rope.insert("factor".into(), json!(factor));
        }
        Some(other) => {
            return Err(config_err(
                path,
                format!("llama.rope.scaling.type `{other}` is not supported (none, linear)"),
            ));
        }
    }

    let mut c = Map::new();
    c.insert("architectures".into(), json!(["LlamaForCausalLM"]));
    c.insert("model_type".into(), json!("llama"));
    c.insert("vocab_size".into(), json!(vocab));
    c.insert("hidden_size".into(), json!(hidden));
    c.insert(
        "intermediate_size".into(),
        json!(uint("llama.feed_forward_length")?),
    );
    c.insert(
        "num_hidden_layers".into(),
        json!(uint("llama.block_count")?),
    );
    c.insert("num_attention_heads".into(), json!(heads));
    c.insert("num_key_value_heads".into(), json!(kv_heads));
    c.insert("head_dim".into(), json!(head_dim));
    c.insert("hidden_act".into(), json!("silu"));
    c.insert(
        "max_position_embeddings".into(),
        json!(opt_uint("llama.context_length")?.unwrap_or(2048)),
    );
    c.insert(
        "rms_norm_eps".into(),
        json!(
            opt_float("llama.attention.layer_norm_rms_epsilon")?.ok_or_else(|| config_err(
                path,
                "GGUF metadata lacks `llama.attention.layer_norm_rms_epsilon`"
            ))?
        ),
    );
    c.insert("rope_theta".into(), json!(rope_theta));
    c.insert("rope_parameters".into(), Value::Object(rope));
    c.insert("tie_word_embeddings".into(), json!(t.tied));
    c.insert("attention_bias".into(), json!(t.attention_bias));
    c.insert("attention_dropout".into(), json!(0.0));
    c.insert("mlp_bias".into(), json!(t.mlp_bias));
    c.insert("initializer_range".into(), json!(0.02));
    c.insert("pretraining_tp".into(), json!(1));
    c.insert("use_cache".into(), json!(true));
    c.insert("dtype".into(), json!("float32"));
    for (gguf_key, hf_key) in [
        ("tokenizer.ggml.bos_token_id", "bos_token_id"),
        ("tokenizer.ggml.eos_token_id", "eos_token_id"),
        ("tokenizer.ggml.padding_token_id", "pad_token_id"),
        ("tokenizer.ggml.unknown_token_id", "unk_token_id"),
    ] {
        if let Some(id) = opt_uint(gguf_key)? {
            c.insert(hf_key.into(), json!(id));
        }
    }
    if let Some(name) = md.get_string("general.name") {
        c.insert("_name_or_path".into(), json!(name));
    }
    Ok(Value::Object(c))
}

// ---------------------------------------------------------------------------------------------
// Dequantisation

/// Storage layouts this module dequantises.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    F32,
    F16,
    BF16,
    F64,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
}

impl Layout {
    fn of(ty: GGUFTensorType) -> Option<Self> {
        Some(match ty {
            GGUFTensorType::F32 => Self::F32,
            GGUFTensorType::F16 => Self::F16,
            GGUFTensorType::BF16 => Self::BF16,
            GGUFTensorType::F64 => Self::F64,
            GGUFTensorType::Q4_0 => Self::Q4_0,
            GGUFTensorType::Q4_1 => Self::Q4_1,
            GGUFTensorType::Q5_0 => Self::Q5_0,
            GGUFTensorType::Q5_1 => Self::Q5_1,
            GGUFTensorType::Q8_0 => Self::Q8_0,
            _ => return None,
        })
    }

    /// (elements per block, bytes per block).
    const fn block(self) -> (usize, usize) {
        match self {
            Self::F32 => (1, 4),
            Self::F16 | Self::BF16 => (1, 2),
            Self::F64 => (1, 8),
            Self::Q4_0 => (32, 18),
            Self::Q4_1 => (32, 20),
            Self::Q5_0 => (32, 22),
            Self::Q5_1 => (32, 24),
            Self::Q8_0 => (32, 34),
        }
    }
}

/// Elements dequantised by one rayon task.
const TASK_ELEMS: usize = 1 << 16;

/// Dequantises `bytes` (whole blocks of `layout`) into `out` (`bytes.len() / block_bytes ·
/// block_elems` values), in parallel over chunks of blocks.
fn dequantize(layout: Layout, bytes: &[u8], out: &mut [f32]) {
    let (be, bb) = layout.block();
    assert_eq!(bytes.len() % bb, 0, "partial block");
    assert_eq!(bytes.len() / bb * be, out.len(), "output length");
    let blocks = (TASK_ELEMS / be).max(1);
    out.par_chunks_mut(blocks * be)
        .zip(bytes.par_chunks(blocks * bb))
        .for_each(|(o, b)| dequantize_serial(layout, b, o));
}

#[inline]
fn f16_at(b: &[u8], i: usize) -> f32 {
    half::f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

fn dequantize_serial(layout: Layout, bytes: &[u8], out: &mut [f32]) {
    let (be, bb) = layout.block();
    let blocks = bytes.chunks_exact(bb).zip(out.chunks_exact_mut(be));
    match layout {
        Layout::F32 => {
            blocks.for_each(|(b, o)| o[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        }
        Layout::F16 => blocks.for_each(|(b, o)| o[0] = f16_at(b, 0)),
        Layout::BF16 => {
            blocks.for_each(|(b, o)| o[0] = half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
        }
        Layout::F64 => blocks.for_each(|(b, o)| {
            o[0] = f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
        }),
        Layout::Q4_0 => blocks.for_each(|(b, o)| {
            let d = f16_at(b, 0);
            let (lo, hi) = o.split_at_mut(16);
            for (j, &q) in b[2..18].iter().enumerate() {
                lo[j] = d * ((q & 0x0F) as i32 - 8) as f32;
                hi[j] = d * ((q >> 4) as i32 - 8) as f32;
            }
        }),
        Layout::Q4_1 => blocks.for_each(|(b, o)| {
            let (d, m) = (f16_at(b, 0), f16_at(b, 2));
            let (lo, hi) = o.split_at_mut(16);
            for (j, &q) in b[4..20].iter().enumerate() {
                lo[j] = d * (q & 0x0F) as f32 + m;
                hi[j] = d * (q >> 4) as f32 + m;
            }
        }),
        Layout::Q5_0 => blocks.for_each(|(b, o)| {
            let d = f16_at(b, 0);
            let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
            let (lo, hi) = o.split_at_mut(16);
            for (j, &q) in b[6..22].iter().enumerate() {
                let x0 = (q & 0x0F) as u32 | ((qh >> j) & 1) << 4;
                let x1 = (q >> 4) as u32 | ((qh >> (j + 16)) & 1) << 4;
                lo[j] = d * (x0 as i32 - 16) as f32;
                hi[j] = d * (x1 as i32 - 16) as f32;
            }
        }),
        Layout::Q5_1 => blocks.for_each(|(b, o)| {
            let (d, m) = (f16_at(b, 0), f16_at(b, 2));
            let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
            let (lo, hi) = o.split_at_mut(16);
            for (j, &q) in b[8..24].iter().enumerate() {
                let x0 = (q & 0x0F) as u32 | ((qh >> j) & 1) << 4;
                let x1 = (q >> 4) as u32 | ((qh >> (j + 16)) & 1) << 4;
                lo[j] = d * x0 as f32 + m;
                hi[j] = d * x1 as f32 + m;
            }
        }),
        Layout::Q8_0 => blocks.for_each(|(b, o)| {
            let d = f16_at(b, 0);
            for (x, &q) in o.iter_mut().zip(&b[2..34]) {
                *x = d * (q as i8) as f32;
            }
        }),
    }
}

/// Undoes llama.cpp's Q/K row permutation: `w` is `[rows, cols]` row-major in GGUF row order;
/// the result is `w.reshape(n_head, rows/n_head/2, 2, cols).swapaxes(1, 2).reshape(rows, cols)`.
/// `rows` must be a multiple of `2 · n_head`.
fn unpermute_rows(w: &[f32], rows: usize, cols: usize, n_head: usize) -> Vec<f32> {
    let head = rows / n_head;
    let half = head / 2;
    let mut out = vec![0f32; w.len()];
    for h in 0..n_head {
        for a in 0..2 {
            for i in 0..half {
                let dst = h * head + a * half + i;
                let src = h * head + 2 * i + a;
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&w[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f16b(x: f32) -> [u8; 2] {
        half::f16::from_f32(x).to_le_bytes()
    }

    fn run(layout: Layout, bytes: &[u8]) -> Vec<f32> {
        let (be, bb) = layout.block();
        let mut out = vec![f32::NAN; bytes.len() / bb * be];
        dequantize(layout, bytes, &mut out);
        out
    }

    /// 16 packed bytes whose low nibbles are 0..16 and high nibbles 15..=0.
    fn nibbles() -> Vec<u8> {
        (0..16u8).map(|j| j | ((15 - j) << 4)).collect()
    }

    #[test]
    fn q4_0_block() {
        let mut b = f16b(0.5).to_vec();
        b.extend(nibbles());
        let out = run(Layout::Q4_0, &b);
        for j in 0..16 {
            assert_eq!(out[j], 0.5 * (j as f32 - 8.0), "low nibble {j}");
            assert_eq!(
                out[16 + j],
                0.5 * ((15 - j) as f32 - 8.0),
                "high nibble {j}"
            );
        }
    }

    #[test]
    fn q4_1_block() {
        let mut b = f16b(0.25).to_vec();
        b.extend(f16b(-1.5));
        b.extend(nibbles());
        let out = run(Layout::Q4_1, &b);
        for j in 0..16 {
            assert_eq!(out[j], 0.25 * j as f32 - 1.5);
            assert_eq!(out[16 + j], 0.25 * (15 - j) as f32 - 1.5);
        }
        // Known values: d = 0.25, m = -1.5, q = 3 → -0.75 exactly.
        assert_eq!(out[3], -0.75);
    }

    #[test]
    fn q5_0_and_q5_1_blocks() {
        // Fifth bits: set for elements 1 (low half) and 16 + 2 (high half).
        let qh: u32 = (1 << 1) | (1 << (16 + 2));
        let mut b0 = f16b(2.0).to_vec();
        b0.extend(qh.to_le_bytes());
        b0.extend(nibbles());
        let out = run(Layout::Q5_0, &b0);
        assert_eq!(out[0], 2.0 * (0.0 - 16.0));
        assert_eq!(out[1], 2.0 * (1.0 + 16.0 - 16.0));
        assert_eq!(out[16 + 2], 2.0 * (13.0 + 16.0 - 16.0));
        assert_eq!(out[16 + 3], 2.0 * (12.0 - 16.0));
        let mut b1 = f16b(0.5).to_vec();
        b1.extend(f16b(1.0));
        b1.extend(qh.to_le_bytes());
        b1.extend(nibbles());
        let out = run(Layout::Q5_1, &b1);
        assert_eq!(out[0], 1.0);
        assert_eq!(out[1], 0.5 * 17.0 + 1.0);
        assert_eq!(out[16 + 2], 0.5 * 29.0 + 1.0);
        assert_eq!(out[31], 0.5 * 0.0 + 1.0);
    }

    #[test]
    fn q8_0_blocks_signed() {
        let mut b = Vec::new();
        for (d, base) in [(0.125f32, -16i8), (-2.0, 100)] {
            b.extend(f16b(d));
            b.extend((0..32).map(|k| (base.wrapping_add(k as i8)) as u8));
        }
        let out = run(Layout::Q8_0, &b);
        assert_eq!(out.len(), 64);
        assert_eq!(out[0], -2.0);
        assert_eq!(out[31], 0.125 * 15.0);
        assert_eq!(out[32], -200.0);
        // 100 + 31 wraps to -125 as int8.
        assert_eq!(out[63], 250.0);
    }

    #[test]
    fn float_layouts() {
        let xs = [1.0f32, -0.333_251_95, 65504.0, 6.1e-5];
        let f16: Vec<u8> = xs.iter().flat_map(|&x| f16b(x)).collect();
        let want: Vec<f32> = xs
            .iter()
            .map(|&x| half::f16::from_f32(x).to_f32())
            .collect();
        assert_eq!(run(Layout::F16, &f16), want);
        let bf: Vec<u8> = xs
            .iter()
            .flat_map(|&x| half::bf16::from_f32(x).to_le_bytes())
            .collect();
        let want: Vec<f32> = xs
            .iter()
            .map(|&x| half::bf16::from_f32(x).to_f32())
            .collect();
        assert_eq!(run(Layout::BF16, &bf), want);
        let f32b: Vec<u8> = xs.iter().flat_map(|&x| x.to_le_bytes()).collect();
        assert_eq!(run(Layout::F32, &f32b), xs);
        let f64b: Vec<u8> = xs.iter().flat_map(|&x| (x as f64).to_le_bytes()).collect();
        assert_eq!(run(Layout::F64, &f64b), xs);
    }

    #[test]
    fn parallel_chunks_match_serial() {
        // More blocks than one rayon task holds, with a ragged last chunk.
        let n_blocks = TASK_ELEMS / 32 * 3 + 7;
        let bytes: Vec<u8> = (0..n_blocks * 20)
            .map(|i| {
                if i % 20 < 4 {
                    0x3c
                } else {
                    (i * 37 % 251) as u8
                }
            })
            .collect();
        let par = run(Layout::Q4_1, &bytes);
        let mut ser = vec![0f32; n_blocks * 32];
        dequantize_serial(Layout::Q4_1, &bytes, &mut ser);
        assert_eq!(par, ser);
    }

    #[test]
    fn unpermute_matches_reshape_swapaxes() {
        // rows = n_head · head_dim = 2 · 4; GGUF row r of head h holds HF row
        // h·4 + (r % 2)·2 + r / 2 (within the head).
        let (rows, cols, n_head) = (8, 3, 2);
        let w: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
        let out = unpermute_rows(&w, rows, cols, n_head);
        let gguf_row_of_hf = [0, 2, 1, 3, 4, 6, 5, 7];
        for (hf, &g) in gguf_row_of_hf.iter().enumerate() {
            assert_eq!(
                &out[hf * cols..(hf + 1) * cols],
                &w[g * cols..(g + 1) * cols]
            );
        }
    }

    #[test]
    fn names() {
        assert_eq!(
            hf_tensor_name("blk.12.attn_output.weight").unwrap(),
            "model.layers.12.self_attn.o_proj.weight"
        );
        assert_eq!(
            hf_tensor_name("blk.0.ffn_norm.weight").unwrap(),
            "model.layers.0.post_attention_layernorm.weight"
        );
        assert_eq!(
            hf_tensor_name("blk.3.attn_q.bias").unwrap(),
            "model.layers.3.self_attn.q_proj.bias"
        );
        assert_eq!(hf_tensor_name("output.weight").unwrap(), "lm_head.weight");
        assert_eq!(hf_tensor_name("rope_freqs.weight"), None);
        assert_eq!(hf_tensor_name("blk.x.attn_q.weight"), None);
        assert_eq!(hf_tensor_name("blk.0.attn_norm.bias"), None);
    }
}
