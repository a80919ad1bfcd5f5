//! Model-zoo parity against HF transformers' float64 references (`fixtures/models/*`), left
//! padding, Mistral's fully-masked rows, loader error paths and sharded checkpoints.
//!
//! Every fixture folder is loaded through `load_model`, so a new fixture in the same format
//! is checked without code changes.

use burn::tensor::{Device, Tensor};
use serde_json::Value;
use std::path::{Path, PathBuf};
use zo_models::{LanguageModel, ModelError, ModelInput, ModelKind, load_model};
use zo_optim::ParamStore;

const TOL: f64 = 1e-4;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models")
}

fn fixture_dirs() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .expect("fixtures/models")
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("reference.json").exists())
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no fixtures found");
    v
}

fn reference(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap()).unwrap()
}

fn ints2(v: &Value) -> Vec<Vec<i64>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_i64().unwrap())
                .collect()
        })
        .collect()
}

fn floats(v: &Value, out: &mut Vec<f64>) {
    match v {
        Value::Array(a) => a.iter().for_each(|x| floats(x, out)),
        x => out.push(x.as_f64().unwrap()),
    }
}

fn flat(v: &Value) -> Vec<f64> {
    let mut out = vec![];
    floats(v, &mut out);
    out
}

fn host3(t: Tensor<3>) -> (Vec<f32>, [usize; 3]) {
    let d = t.dims();
    (
        t.into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap(),
        d,
    )
}

fn input(r: &Value, dev: &Device, rows_ids: &[Vec<i64>], rows_mask: &[Vec<i64>]) -> ModelInput {
    let (b, t) = (rows_ids.len(), rows_ids[0].len());
    let ids: Vec<i64> = rows_ids.concat();
    let mask: Vec<i64> = rows_mask.concat();
    let mut inp = ModelInput::from_host(&ids, &mask, b, t, dev);
    if r["model_type"] == "bert" {
        let tt = ints2(&r["token_type_ids"]).concat();
        inp.token_type_ids = Some(zo_models::bert::ids_tensor(&tt, b, t, dev));
    }
    inp
}

/// Max abs error over positions with mask 1; `got`/`want` are `[B, T, F]` row-major.
fn masked_err(got: &[f32], want: &[f64], mask: &[i64], f: usize) -> f64 {
    assert_eq!(got.len(), want.len());
    let mut e = 0.0f64;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        if mask[i / f] == 1 {
            e = e.max((*g as f64 - w).abs());
        }
    }
    e
}

fn log_softmax_row(row: &[f32]) -> Vec<f64> {
    let m = row.iter().fold(f64::NEG_INFINITY, |a, &x| a.max(x as f64));
    let lse = row.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln() + m;
    row.iter().map(|&x| x as f64 - lse).collect()
}

fn load(dir: &Path) -> (Box<dyn LanguageModel>, ParamStore) {
    let mut store = ParamStore::new(Device::flex());
    let m = load_model(dir, &mut store).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    (m, store)
}

#[test]
fn every_fixture_matches_hf_float64_reference() {
    let dev = Device::flex();
    for dir in fixture_dirs() {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let r = reference(&dir);
        let (model, store) = load(&dir);
        assert_eq!(
            store.num_params() as u64,
            r["param_count"].as_u64().unwrap(),
            "{name}: parameter count"
        );
        // Blocks cover every parameter exactly once.
        let mut names: Vec<String> = model
            .blocks()
            .into_iter()
            .flat_map(|b| b.param_names)
            .collect();
        names.sort();
        let mut all: Vec<String> = store.params().iter().map(|p| p.name.clone()).collect();
        all.sort();
        assert_eq!(names, all, "{name}: blocks must partition the parameters");

        let ids = ints2(&r["input_ids"]);
        let mask = ints2(&r["attention_mask"]);
        let inp = input(&r, &dev, &ids, &mask);
        inp.check(model.info()).unwrap();
        let flat_mask = mask.concat();
        let hidden = model.hidden_states(&store, &inp);
        match model.info().kind {
            ModelKind::Encoder => {
                let (g, d) = host3(hidden.clone());
                let e = masked_err(&g, &flat(&r["last_hidden_state"]), &flat_mask, d[2]);
                assert!(e < TOL, "{name}: last_hidden_state max abs error {e}");
                if !r["pooler_output"].is_null() {
                    let p = model.pooler(&store, hidden).expect("pooler");
                    let g = p.into_data().try_into_vec::<f32>().unwrap();
                    let w = flat(&r["pooler_output"]);
                    let e = g
                        .iter()
                        .zip(&w)
                        .map(|(a, b)| (*a as f64 - b).abs())
                        .fold(0.0, f64::max);
                    assert!(e < TOL, "{name}: pooler_output max abs error {e}");
                }
                eprintln!("{name}: encoder ok");
            }
            kind => {
                let head_in = flat(&r["debug"]["head_input"]);
                let (g, d) = host3(hidden.clone());
                let e = masked_err(&g, &head_in, &flat_mask, d[2]);
                assert!(e < TOL, "{name}: debug.head_input max abs error {e}");
                let logits = model.lm_head(&store, hidden).expect("lm head");
                let (g, d) = host3(logits);
                let v = d[2];
                let e = masked_err(&g, &flat(&r["logits"]), &flat_mask, v);
                assert!(e < TOL, "{name}: logits max abs error {e}");
                if kind == ModelKind::CausalLm {
                    let want = ints2(&r["per_token_nll_targets"]);
                    let mut want_nll = vec![];
                    for row in r["per_token_nll"].as_array().unwrap() {
                        want_nll.push(flat(row));
                    }
                    let (mut sum, mut cnt) = (0.0, 0usize);
                    for (b, row_ids) in ids.iter().enumerate() {
                        let mut k = 0;
                        for t in 0..row_ids.len() - 1 {
                            if mask[b][t] == 1 && mask[b][t + 1] == 1 {
                                let off = (b * d[1] + t) * v;
                                let ls = log_softmax_row(&g[off..off + v]);
                                let tgt = row_ids[t + 1];
                                assert_eq!(tgt, want[b][k]);
                                let nll = -ls[tgt as usize];
                                let e = (nll - want_nll[b][k]).abs();
                                assert!(e < TOL, "{name}: per_token_nll[{b}][{k}] error {e}");
                                sum += nll;
                                cnt += 1;
                                k += 1;
                            }
                        }
                        assert_eq!(k, want_nll[b].len());
                    }
                    let e = (sum / cnt as f64 - r["mean_loss"].as_f64().unwrap()).abs();
                    assert!(e < TOL, "{name}: mean_loss error {e}");
                } else {
                    let labels = ints2(&r["labels"]);
                    let (mut sum, mut cnt) = (0.0, 0usize);
                    for (b, row) in labels.iter().enumerate() {
                        for (t, &l) in row.iter().enumerate() {
                            if l != -100 {
                                let off = (b * d[1] + t) * v;
                                sum -= log_softmax_row(&g[off..off + v])[l as usize];
                                cnt += 1;
                            }
                        }
                    }
                    let e = (sum / cnt as f64 - r["mean_loss"].as_f64().unwrap()).abs();
                    assert!(e < TOL, "{name}: masked-LM mean_loss error {e}");
                }
                eprintln!("{name}: logits ok (max err {e:.2e})");
            }
        }
    }
}

/// Moves the padding of every row to the front.
fn left_pad(ids: &[Vec<i64>], mask: &[Vec<i64>], pad: i64) -> (Vec<Vec<i64>>, Vec<Vec<i64>>) {
    let mut li = vec![];
    let mut lm = vec![];
    for (row, m) in ids.iter().zip(mask) {
        let n = m.iter().filter(|&&x| x == 1).count();
        let t = row.len();
        let mut r = vec![pad; t - n];
        r.extend(row.iter().zip(m).filter(|&(_, &x)| x == 1).map(|(&i, _)| i));
        let mut mm = vec![0; t - n];
        mm.extend(vec![1; n]);
        li.push(r);
        lm.push(mm);
    }
    (li, lm)
}

#[test]
fn left_padding_gives_the_same_real_position_outputs_as_right_padding() {
    let dev = Device::flex();
    for dir in fixture_dirs() {
        let r = reference(&dir);
        if r["model_type"] == "bert" {
            // HF BERT uses arange positions: left padding changes its outputs by design.
            continue;
        }
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let (model, store) = load(&dir);
        let ids = ints2(&r["input_ids"]);
        let mask = ints2(&r["attention_mask"]);
        let pad = r["pad_token_id"].as_i64().unwrap_or(0);
        let (lids, lmask) = left_pad(&ids, &mask, pad);
        assert_ne!(lmask, mask, "{name}: the fixture has no padded row");
        let out = |i: &[Vec<i64>], m: &[Vec<i64>]| {
            let inp = input(&r, &dev, i, m);
            let h = model.hidden_states(&store, &inp);
            host3(model.lm_head(&store, h.clone()).unwrap_or(h))
        };
        let (right, d) = out(&ids, &mask);
        let (left, _) = out(&lids, &lmask);
        let f = d[2];
        let mut e = 0.0f64;
        for b in 0..d[0] {
            let real: Vec<usize> = (0..d[1]).filter(|&t| mask[b][t] == 1).collect();
            let lreal: Vec<usize> = (0..d[1]).filter(|&t| lmask[b][t] == 1).collect();
            for (&t, &lt) in real.iter().zip(&lreal) {
                for j in 0..f {
                    let a = right[(b * d[1] + t) * f + j] as f64;
                    let c = left[(b * d[1] + lt) * f + j] as f64;
                    e = e.max((a - c).abs());
                }
            }
        }
        assert!(
            left.iter().all(|x| x.is_finite()),
            "{name}: left-padded output not finite"
        );
        assert!(e < TOL, "{name}: left vs right padding max abs diff {e}");
        eprintln!("{name}: left padding ok ({e:.2e})");
    }
}

#[test]
fn mistral_fully_masked_queries_stay_finite_and_match_pads() {
    let dir = fixtures().join("mistral-tiny");
    let r = reference(&dir);
    let dev = Device::flex();
    let (model, store) = load(&dir);
    let ids = ints2(&r["input_ids"]);
    let mask = ints2(&r["attention_mask"]);
    let logits = model.logits(&store, &input(&r, &dev, &ids, &mask)).unwrap();
    let (g, _) = host3(logits);
    assert!(g.iter().all(|x| x.is_finite()), "NaN/inf in mistral logits");
    // With 0 for all-masked attention rows, even the pad positions reproduce HF.
    let want = flat(&r["logits"]);
    let e = g
        .iter()
        .zip(&want)
        .map(|(a, b)| (*a as f64 - b).abs())
        .fold(0.0, f64::max);
    assert!(
        e < TOL,
        "mistral logits at all positions (pads included): error {e}"
    );
}

// ------------------------------------------------------------------------------------------
// Loader errors
// ------------------------------------------------------------------------------------------

fn copy_fixture(name: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixtures().join(name).join(f), tmp.path().join(f)).unwrap();
    }
    tmp
}

fn load_err(dir: &Path) -> ModelError {
    let mut store = ParamStore::new(Device::flex());
    load_model(dir, &mut store).expect_err("load must fail")
}

#[test]
fn unsupported_model_type_is_an_error_naming_the_config() {
    let tmp = copy_fixture("llama-tiny");
    let cfg = tmp.path().join("config.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
    v["model_type"] = "mamba".into();
    std::fs::write(&cfg, v.to_string()).unwrap();
    match load_err(tmp.path()) {
        ModelError::Unsupported {
            path, model_type, ..
        } => {
            assert_eq!(model_type, "mamba");
            assert_eq!(path, cfg);
        }
        e => panic!("wrong error {e}"),
    }
}

#[test]
fn unsupported_config_option_is_an_error() {
    let tmp = copy_fixture("llama-tiny");
    let cfg = tmp.path().join("config.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
    v["rope_parameters"]["rope_type"] = "yarn".into();
    std::fs::write(&cfg, v.to_string()).unwrap();
    let e = load_err(tmp.path());
    assert!(matches!(e, ModelError::UnsupportedOption { .. }), "{e}");
    assert!(e.to_string().contains("yarn"), "{e}");
}

/// Rewrites `model.safetensors` in `dir` through `edit` (name → (shape, values)).
fn rewrite(
    dir: &Path,
    edit: impl FnOnce(&mut std::collections::BTreeMap<String, (Vec<usize>, Vec<f32>)>),
) {
    let path = dir.join("model.safetensors");
    let mut ck = zo_models::load_safetensors(&path).unwrap();
    edit(&mut ck.tensors);
    write_st(
        &path,
        ck.tensors
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    );
}

fn write_st(path: &Path, tensors: Vec<(String, (Vec<usize>, Vec<f32>))>) {
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
        .into_iter()
        .map(|(k, (s, v))| (k, v.iter().flat_map(|x| x.to_le_bytes()).collect(), s))
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = bytes
        .iter()
        .map(|(k, b, s)| {
            (
                k.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                    .unwrap(),
            )
        })
        .collect();
    let out = safetensors::serialize(views, None).unwrap();
    std::fs::write(path, out).unwrap();
}

#[test]
fn missing_tensor_is_an_error_naming_file_and_tensor() {
    let tmp = copy_fixture("llama-tiny");
    let victim = "model.layers.1.self_attn.k_proj.weight";
    rewrite(tmp.path(), |t| {
        t.remove(victim);
    });
    match load_err(tmp.path()) {
        ModelError::MissingTensor { path, name, .. } => {
            assert_eq!(name, victim);
            assert_eq!(path, tmp.path().join("model.safetensors"));
        }
        e => panic!("wrong error {e}"),
    }
}

#[test]
fn untied_head_without_lm_head_weight_is_an_error_not_random() {
    let tmp = copy_fixture("mistral-tiny");
    rewrite(tmp.path(), |t| {
        t.remove("lm_head.weight");
    });
    let e = load_err(tmp.path());
    assert!(
        matches!(&e, ModelError::MissingTensor { name, .. } if name == "lm_head.weight"),
        "{e}"
    );
}

#[test]
fn wrong_shape_is_an_error_with_expected_shape() {
    let tmp = copy_fixture("gpt2-tiny");
    let victim = "transformer.h.0.attn.c_attn.weight";
    rewrite(tmp.path(), |t| {
        let (s, v) = t.remove(victim).unwrap();
        // Store it transposed ([out, in] instead of Conv1D's [in, out]).
        t.insert(victim.into(), (vec![s[1], s[0]], v));
    });
    match load_err(tmp.path()) {
        ModelError::Shape {
            name,
            expected,
            got,
            path,
        } => {
            assert_eq!(name, victim);
            assert_eq!(expected, vec![32, 96]);
            assert_eq!(got, vec![96, 32]);
            assert_eq!(path, tmp.path().join("model.safetensors"));
        }
        e => panic!("wrong error {e}"),
    }
}

#[test]
fn truncated_file_is_a_corrupt_error() {
    let tmp = copy_fixture("opt-tiny");
    let p = tmp.path().join("model.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    match load_err(tmp.path()) {
        ModelError::Corrupt { path, .. } => assert_eq!(path, p),
        e => panic!("wrong error {e}"),
    }
    // A missing weights file is an I/O error naming it.
    std::fs::remove_file(&p).unwrap();
    assert!(matches!(load_err(tmp.path()), ModelError::Io { .. }));
}

#[test]
fn out_of_range_input_is_rejected_by_check() {
    let (model, _store) = load(&fixtures().join("opt-tiny"));
    let dev = Device::flex();
    let v = model.info().vocab_size as i64;
    let inp = ModelInput::from_host(&[1, v], &[1, 1], 1, 2, &dev);
    assert!(matches!(
        inp.check(model.info()),
        Err(ModelError::Input { .. })
    ));
    let t = model.info().max_positions.unwrap() + 1;
    let inp = ModelInput::from_host(&vec![1; t], &vec![1; t], 1, t, &dev);
    assert!(inp.check(model.info()).is_err());
}

#[test]
fn sharded_checkpoint_loads_like_the_single_file() {
    let dev = Device::flex();
    for name in ["llama-tiny", "roberta-tiny"] {
        let src = fixtures().join(name);
        let tmp = tempfile::tempdir().unwrap();
        std::fs::copy(src.join("config.json"), tmp.path().join("config.json")).unwrap();
        let ck = zo_models::load_safetensors(&src.join("model.safetensors")).unwrap();
        let all: Vec<(String, (Vec<usize>, Vec<f32>))> = ck.tensors.into_iter().collect();
        let half = all.len() / 2;
        let mut map = serde_json::Map::new();
        for (i, chunk) in [&all[..half], &all[half..]].iter().enumerate() {
            let f = format!("model-0000{}-of-00002.safetensors", i + 1);
            for (k, _) in chunk.iter() {
                map.insert(k.clone(), Value::String(f.clone()));
            }
            write_st(&tmp.path().join(&f), chunk.to_vec());
        }
        let index = serde_json::json!({"metadata": {"total_size": 0}, "weight_map": map});
        std::fs::write(
            tmp.path().join("model.safetensors.index.json"),
            index.to_string(),
        )
        .unwrap();

        let r = reference(&src);
        let ids = ints2(&r["input_ids"]);
        let mask = ints2(&r["attention_mask"]);
        let inp = input(&r, &dev, &ids, &mask);
        let (m1, s1) = load(&src);
        let (m2, s2) = load(tmp.path());
        assert_eq!(s1.num_params(), s2.num_params());
        let (a, _) = host3(m1.logits(&s1, &inp).unwrap());
        let (b, _) = host3(m2.logits(&s2, &inp).unwrap());
        assert_eq!(a, b, "{name}: sharded load differs");

        // A shard listed in the index but missing is an I/O error naming it.
        std::fs::remove_file(tmp.path().join("model-00002-of-00002.safetensors")).unwrap();
        match load_err(tmp.path()) {
            ModelError::Io { path, .. } => {
                assert!(path.ends_with("model-00002-of-00002.safetensors"))
            }
            e => panic!("wrong error {e}"),
        }
    }
}

#[test]
fn build_model_accepts_a_parsed_config_and_checkpoint() {
    let dir = fixtures().join("llama-tiny");
    let cfg_path = dir.join("config.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    let ck = zo_models::load_weights(&dir).unwrap();
    let mut store = ParamStore::new(Device::flex());
    let m = zo_models::build_model(&v, &cfg_path, ck, &mut store).unwrap();
    assert_eq!(m.info().model_type, "llama");
    assert_eq!(m.info().num_kv_heads, 2);
    assert_eq!(m.blocks().len(), m.info().num_layers + 2);
}

// ------------------------------------------------------------------------------------------
// Config variants without references: synthetic weights, consistency checks only
// ------------------------------------------------------------------------------------------

/// Builds a model for `config` with random weights, discovering the tensor names and shapes
/// the loader asks for from its own errors (missing → shape → filled).
fn synthetic(config: &Value) -> (Box<dyn LanguageModel>, ParamStore) {
    use std::collections::BTreeMap;
    let mut tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)> = BTreeMap::new();
    let mut state = 0x1234_5678u64;
    let mut rnd = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.6
    };
    for _ in 0..10_000 {
        let ck = zo_models::Checkpoint {
            path: "synthetic.safetensors".into(),
            tensors: tensors.clone(),
            skipped: vec![],
        };
        let mut store = ParamStore::new(Device::flex());
        match zo_models::build_model(config, Path::new("config.json"), ck, &mut store) {
            Ok(m) => return (m, store),
            Err(ModelError::MissingTensor { name, .. }) => {
                tensors.insert(name, (vec![1], vec![0.0]));
            }
            Err(ModelError::Shape { name, expected, .. }) => {
                let n: usize = expected.iter().product();
                let norm = name.contains("norm") || name.contains("ln_");
                let v = (0..n)
                    .map(|_| {
                        if norm && name.ends_with("weight") {
                            1.0 + rnd()
                        } else {
                            rnd()
                        }
                    })
                    .collect();
                tensors.insert(name, (expected, v));
            }
            Err(e) => panic!("{config}: {e}"),
        }
    }
    panic!("loader did not converge");
}

#[test]
fn config_variants_load_run_and_agree_across_padding_sides() {
    use zo_models::peft::{Scheme, apply_scheme};
    let variants = [
        // LLaMA: biases, untied head, head_dim ≠ hidden/heads, MQA, old-style rope keys.
        serde_json::json!({"model_type": "llama", "hidden_size": 48, "intermediate_size": 40,
            "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 8,
            "num_hidden_layers": 2, "vocab_size": 50, "rms_norm_eps": 1e-5,
            "attention_bias": true, "mlp_bias": true, "tie_word_embeddings": false,
            "rope_theta": 500000.0, "rope_scaling": {"rope_type": "llama3", "factor": 8.0,
            "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 16}, "pad_token_id": 0}),
        // Mistral without a window; GELU MLP.
        serde_json::json!({"model_type": "mistral", "hidden_size": 32, "intermediate_size": 48,
            "num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": 2,
            "vocab_size": 40, "sliding_window": null, "hidden_act": "gelu",
            "tie_word_embeddings": true}),
        // Qwen2 with a sliding window on layer 1 only.
        serde_json::json!({"model_type": "qwen2", "hidden_size": 32, "intermediate_size": 48,
            "num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": 2,
            "vocab_size": 40, "use_sliding_window": true, "sliding_window": 3,
            "max_window_layers": 1, "rope_parameters": {"rope_theta": 1000000.0,
            "rope_type": "default"}, "tie_word_embeddings": false}),
        // OPT-350m style: post-LN, project_in/out, GELU.
        serde_json::json!({"model_type": "opt", "hidden_size": 32, "ffn_dim": 64,
            "num_attention_heads": 4, "num_hidden_layers": 2, "vocab_size": 40,
            "max_position_embeddings": 32, "word_embed_proj_dim": 16,
            "do_layer_norm_before": false, "activation_function": "gelu", "pad_token_id": 1}),
        // GPT-2 with default n_inner, ReLU, inverse-layer scaling.
        serde_json::json!({"model_type": "gpt2", "n_embd": 32, "n_head": 2, "n_layer": 3,
            "n_positions": 32, "vocab_size": 40, "n_inner": null,
            "activation_function": "relu", "scale_attn_by_inverse_layer_idx": true}),
        // RoBERTa encoder without MLM head, one token type.
        serde_json::json!({"model_type": "roberta", "hidden_size": 32, "intermediate_size": 40,
            "num_attention_heads": 2, "num_hidden_layers": 2, "vocab_size": 40,
            "max_position_embeddings": 34, "type_vocab_size": 1, "pad_token_id": 1,
            "layer_norm_eps": 1e-5}),
    ];
    let dev = Device::flex();
    for cfg in &variants {
        let (mut m, mut s) = synthetic(cfg);
        let mt = cfg["model_type"].as_str().unwrap();
        let pad = m.info().pad_token_id.unwrap_or(0);
        let ids: Vec<Vec<i64>> = vec![
            (0..9).map(|i| 3 + (i * 7) % 30).collect(),
            (0..9)
                .map(|i| if i < 5 { 3 + (i * 5) % 30 } else { pad })
                .collect(),
        ];
        let mask = vec![
            vec![1; 9],
            (0..9).map(|i| i64::from(i < 5)).collect::<Vec<i64>>(),
        ];
        let (lids, lmask) = left_pad(&ids, &mask, pad);
        let run = |m: &dyn LanguageModel, s: &ParamStore, i: &[Vec<i64>], k: &[Vec<i64>]| {
            let inp = ModelInput::from_host(&i.concat(), &k.concat(), 2, 9, &dev);
            inp.check(m.info()).unwrap();
            let h = m.hidden_states(s, &inp);
            host3(m.lm_head(s, h.clone()).unwrap_or(h))
        };
        let (right, d) = run(m.as_ref(), &s, &ids, &mask);
        assert!(
            right.iter().all(|x| x.is_finite()),
            "{mt}: non-finite output"
        );
        let (left, _) = run(m.as_ref(), &s, &lids, &lmask);
        let f = d[2];
        let mut e = 0.0f64;
        for t in 0..5 {
            for j in 0..f {
                let a = right[(9 + t) * f + j] as f64;
                let b = left[(9 + 4 + t) * f + j] as f64;
                e = e.max((a - b).abs());
            }
        }
        assert!(e < TOL, "{mt}: left vs right padding differ by {e}");
        let mut names: Vec<String> = m.blocks().into_iter().flat_map(|b| b.param_names).collect();
        names.sort();
        let mut all: Vec<String> = s.params().iter().map(|p| p.name.clone()).collect();
        all.sort();
        assert_eq!(names, all, "{mt}: blocks must partition the parameters");
        for scheme in ["lora", "prefix", "prompt"] {
            let (mut m2, mut s2) = (synthetic(cfg).0, s.clone());
            apply_scheme(m2.as_mut(), &mut s2, &Scheme::parse(scheme).unwrap(), 1).unwrap();
            let (o, _) = run(m2.as_ref(), &s2, &ids, &mask);
            assert!(o.iter().all(|x| x.is_finite()), "{mt} {scheme}: non-finite");
        }
        let _ = apply_scheme(m.as_mut(), &mut s, &Scheme::Ft, 0).unwrap();
        eprintln!("{mt}: variant ok (padding diff {e:.1e})");
    }
}
