//! GGUF loading on hand-made GGUF files: the layout rules (names, reversed shapes, Q/K
//! un-permutation, config) and the errors. The real SmolLM2-135M file is tested in
//! `crates/zobench/tests/real_checkpoints.rs`, which fetches it.

use std::io::Write;
use std::path::{Path, PathBuf};
use zo_models::ModelError;
use zo_models::gguf::{load_gguf, read_gguf_config};

// ---------------------------------------------------------------------------------------------
// Hand-made GGUF files

enum Kv {
    U32(u32),
    F32(f32),
    Str(&'static str),
}

struct T {
    name: &'static str,
    /// GGUF dims, innermost first.
    dims: Vec<u64>,
    ggml_type: u32,
    data: Vec<u8>,
}

/// The first `n` bytes of `src`, as a new file in `dir`.
fn truncated_copy(src: &Path, n: u64, dir: &Path) -> PathBuf {
    let dst = dir.join(format!("first_{n}_bytes.gguf"));
    let mut f = std::fs::File::open(src).unwrap();
    let mut out = std::fs::File::create(&dst).unwrap();
    std::io::copy(&mut std::io::Read::take(&mut f, n), &mut out).unwrap();
    dst
}

fn put_str(b: &mut Vec<u8>, s: &str) {
    b.extend((s.len() as u64).to_le_bytes());
    b.extend(s.as_bytes());
}

/// Writes a GGUF v3 file (alignment 32) with these metadata and tensors.
fn write_gguf(path: &Path, kvs: &[(&str, Kv)], tensors: &[T]) {
    let mut b = Vec::new();
    b.extend(b"GGUF");
    b.extend(3u32.to_le_bytes());
    b.extend((tensors.len() as u64).to_le_bytes());
    b.extend((kvs.len() as u64).to_le_bytes());
    for (k, v) in kvs {
        put_str(&mut b, k);
        match v {
            Kv::U32(x) => {
                b.extend(4u32.to_le_bytes());
                b.extend(x.to_le_bytes());
            }
            Kv::F32(x) => {
                b.extend(6u32.to_le_bytes());
                b.extend(x.to_le_bytes());
            }
            Kv::Str(s) => {
                b.extend(8u32.to_le_bytes());
                put_str(&mut b, s);
            }
        }
    }
    let align = |n: usize| n.div_ceil(32) * 32;
    let mut offset = 0usize;
    for t in tensors {
        put_str(&mut b, t.name);
        b.extend((t.dims.len() as u32).to_le_bytes());
        for d in &t.dims {
            b.extend(d.to_le_bytes());
        }
        b.extend(t.ggml_type.to_le_bytes());
        b.extend((offset as u64).to_le_bytes());
        offset = align(offset + t.data.len());
    }
    b.resize(align(b.len()), 0);
    for t in tensors {
        b.extend(&t.data);
        b.resize(align(b.len()), 0);
    }
    std::fs::File::create(path).unwrap().write_all(&b).unwrap();
}

fn f32_tensor(name: &'static str, dims: Vec<u64>, f: impl Fn(usize) -> f32) -> T {
    let n: u64 = dims.iter().product();
    T {
        name,
        dims,
        ggml_type: 0,
        data: (0..n as usize).flat_map(|i| f(i).to_le_bytes()).collect(),
    }
}

/// A 1-layer LLaMA: hidden 32, 4 query heads / 2 kv heads (head_dim 8), ffn 64, vocab 40.
fn tiny_llama(extra: Vec<T>, arch: &'static str) -> (Vec<(&'static str, Kv)>, Vec<T>) {
    let kvs = vec![
        ("general.architecture", Kv::Str(arch)),
        ("general.name", Kv::Str("tiny")),
        ("llama.block_count", Kv::U32(1)),
        ("llama.embedding_length", Kv::U32(32)),
        ("llama.feed_forward_length", Kv::U32(64)),
        ("llama.attention.head_count", Kv::U32(4)),
        ("llama.attention.head_count_kv", Kv::U32(2)),
        ("llama.attention.layer_norm_rms_epsilon", Kv::F32(1e-6)),
        ("llama.rope.freq_base", Kv::F32(500000.0)),
        ("llama.context_length", Kv::U32(128)),
        ("tokenizer.ggml.bos_token_id", Kv::U32(1)),
        ("tokenizer.ggml.eos_token_id", Kv::U32(2)),
    ];
    // Q8_0 embeddings [vocab 40, hidden 32]: one block per row, d = row / 8, q[k] = k - 16.
    let mut embd = Vec::new();
    for row in 0..40 {
        embd.extend(half::f16::from_f32(row as f32 / 8.0).to_le_bytes());
        embd.extend((0..32).map(|k| (k as i8 - 16) as u8));
    }
    let row_id = |cols: usize| move |i: usize| (i / cols) as f32 + (i % cols) as f32 / 1000.0;
    let mut t = vec![
        T {
            name: "token_embd.weight",
            dims: vec![32, 40],
            ggml_type: 8,
            data: embd,
        },
        f32_tensor("output_norm.weight", vec![32], |i| i as f32),
        f32_tensor("blk.0.attn_norm.weight", vec![32], |i| 1.0 + i as f32),
        f32_tensor("blk.0.ffn_norm.weight", vec![32], |i| 2.0 + i as f32),
        f32_tensor("blk.0.attn_q.weight", vec![32, 32], row_id(32)),
        f32_tensor("blk.0.attn_k.weight", vec![32, 16], row_id(32)),
        f32_tensor("blk.0.attn_v.weight", vec![32, 16], row_id(32)),
        f32_tensor("blk.0.attn_output.weight", vec![32, 32], row_id(32)),
        f32_tensor("blk.0.ffn_gate.weight", vec![32, 64], row_id(32)),
        f32_tensor("blk.0.ffn_up.weight", vec![32, 64], row_id(32)),
        f32_tensor("blk.0.ffn_down.weight", vec![64, 32], row_id(64)),
    ];
    t.extend(extra);
    (kvs, t)
}

/// GGUF row of HF row `hf` in a Q/K weight with heads of `head_dim` rows.
fn gguf_row(hf: usize, head_dim: usize) -> usize {
    let (h, r) = (hf / head_dim, hf % head_dim);
    let half = head_dim / 2;
    h * head_dim + (r % half) * 2 + r / half
}

#[test]
fn tiny_llama_layout_names_permutation_and_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    let (kvs, t) = tiny_llama(vec![], "llama");
    write_gguf(&path, &kvs, &t);
    let (cfg, ck) = load_gguf(&path).unwrap();

    assert_eq!(cfg["model_type"], "llama");
    assert_eq!(cfg["hidden_size"], 32);
    assert_eq!(cfg["intermediate_size"], 64);
    assert_eq!(cfg["num_hidden_layers"], 1);
    assert_eq!(cfg["num_attention_heads"], 4);
    assert_eq!(cfg["num_key_value_heads"], 2);
    assert_eq!(cfg["head_dim"], 8);
    assert_eq!(cfg["rms_norm_eps"], f64::from(1e-6f32));
    assert_eq!(cfg["rope_theta"], 500000.0);
    assert_eq!(cfg["rope_parameters"]["rope_theta"], 500000.0);
    assert_eq!(cfg["max_position_embeddings"], 128);
    assert_eq!(cfg["vocab_size"], 40, "from token_embd when no vocab keys");
    assert_eq!(cfg["tie_word_embeddings"], true);
    assert_eq!(cfg["bos_token_id"], 1);
    assert_eq!(cfg["eos_token_id"], 2);
    assert!(cfg.get("pad_token_id").is_none());

    assert_eq!(ck.tensors.len(), 11);
    let (shape, e) = &ck.tensors["model.embed_tokens.weight"];
    assert_eq!(shape, &vec![40, 32]);
    assert_eq!(e[5 * 32 + 20], 5.0 / 8.0 * 4.0, "row 5, element 20");
    assert_eq!(ck.tensors["model.norm.weight"].1[3], 3.0);
    assert_eq!(
        ck.tensors["model.layers.0.input_layernorm.weight"].1[0],
        1.0
    );
    assert_eq!(
        ck.tensors["model.layers.0.post_attention_layernorm.weight"].1[0],
        2.0
    );

    // Not permuted: V, O, MLP keep the file's row order; shapes are reversed.
    for (name, shape, cols) in [
        ("model.layers.0.self_attn.v_proj.weight", vec![16, 32], 32),
        ("model.layers.0.self_attn.o_proj.weight", vec![32, 32], 32),
        ("model.layers.0.mlp.gate_proj.weight", vec![64, 32], 32),
        ("model.layers.0.mlp.down_proj.weight", vec![32, 64], 64),
    ] {
        let (s, v) = &ck.tensors[name];
        assert_eq!(s, &shape, "{name}");
        for (i, x) in v.iter().enumerate() {
            assert_eq!(
                *x,
                (i / cols) as f32 + (i % cols) as f32 / 1000.0,
                "{name}[{i}]"
            );
        }
    }
    // Q (4 heads of 8 rows) and K (2 heads of 8 rows) are un-permuted per head.
    for (name, rows) in [
        ("model.layers.0.self_attn.q_proj.weight", 32),
        ("model.layers.0.self_attn.k_proj.weight", 16),
    ] {
        let (s, v) = &ck.tensors[name];
        assert_eq!(s, &vec![rows, 32]);
        for hf in 0..rows {
            let g = gguf_row(hf, 8);
            for c in 0..32 {
                assert_eq!(
                    v[hf * 32 + c],
                    g as f32 + c as f32 / 1000.0,
                    "{name} row {hf}"
                );
            }
        }
        assert_ne!(v[32], 1.0, "row 1 comes from GGUF row 2");
    }
    assert_eq!(read_gguf_config(&path).unwrap(), cfg);
}

#[test]
fn untied_head_gives_lm_head() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("untied.gguf");
    let (kvs, t) = tiny_llama(
        vec![f32_tensor("output.weight", vec![32, 40], |i| -(i as f32))],
        "llama",
    );
    write_gguf(&path, &kvs, &t);
    let (cfg, ck) = load_gguf(&path).unwrap();
    assert_eq!(cfg["tie_word_embeddings"], false);
    let (s, v) = &ck.tensors["lm_head.weight"];
    assert_eq!(s, &vec![40, 32]);
    assert_eq!(v[33], -33.0);
}

#[test]
fn unsupported_quant_type_names_tensor_and_type() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q5k.gguf");
    // One Q5_K (type 13) block: 256 elements in 176 bytes.
    let q5k = T {
        name: "blk.0.ffn_up.weight",
        dims: vec![256, 1],
        ggml_type: 13,
        data: vec![0; 176],
    };
    let (kvs, mut t) = tiny_llama(vec![], "llama");
    t.retain(|x| x.name != "blk.0.ffn_up.weight");
    t.push(q5k);
    write_gguf(&path, &kvs, &t);
    for err in [
        load_gguf(&path).expect_err("Q5_K loaded"),
        read_gguf_config(&path).expect_err("Q5_K accepted"),
    ] {
        let msg = err.to_string();
        assert!(
            matches!(&err, ModelError::GgufTensor { tensor, .. } if tensor == "blk.0.ffn_up.weight"),
            "{err:?}"
        );
        assert!(
            msg.contains("Q5_K") && msg.contains("blk.0.ffn_up.weight"),
            "{msg}"
        );
        assert!(msg.contains(&path.display().to_string()), "{msg}");
    }
}

#[test]
fn unknown_tensor_and_architecture_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rope_freqs.gguf");
    let (kvs, t) = tiny_llama(
        vec![f32_tensor("rope_freqs.weight", vec![4], |_| 1.0)],
        "llama",
    );
    write_gguf(&path, &kvs, &t);
    let err = load_gguf(&path).expect_err("unknown tensor loaded");
    assert!(err.to_string().contains("rope_freqs.weight"), "{err}");

    let path = dir.path().join("gpt2.gguf");
    let (kvs, t) = tiny_llama(vec![], "gpt2");
    write_gguf(&path, &kvs, &t);
    let err = load_gguf(&path).expect_err("gpt2 loaded");
    assert!(
        matches!(&err, ModelError::Unsupported { model_type, .. } if model_type == "gpt2"),
        "{err:?}"
    );
}

#[test]
fn tiny_truncated_and_garbage_files_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    let (kvs, t) = tiny_llama(vec![], "llama");
    write_gguf(&path, &kvs, &t);
    let len = std::fs::metadata(&path).unwrap().len();
    for n in [0, 3, 30, 200, len / 2, len - 1] {
        let cut = truncated_copy(&path, n, dir.path());
        let err = load_gguf(&cut).expect_err("truncated file loaded");
        assert!(
            matches!(err, ModelError::Corrupt { .. }),
            "{n} bytes: {err:?}"
        );
        assert!(err.to_string().contains(&cut.display().to_string()));
    }
    let junk = dir.path().join("junk.gguf");
    std::fs::write(&junk, b"PK\x03\x04 this is a zip, not a gguf file at all").unwrap();
    assert!(matches!(load_gguf(&junk), Err(ModelError::Corrupt { .. })));
    assert!(matches!(
        load_gguf(&dir.path().join("missing.gguf")),
        Err(ModelError::Io { .. })
    ));
}
