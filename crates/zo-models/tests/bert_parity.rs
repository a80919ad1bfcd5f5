//! BERT parity against HF transformers' float64 reference (fixtures/models/bert-tiny).

use burn::tensor::Device;
use serde_json::Value;
use std::path::PathBuf;
use zo_models::bert::{BertConfig, BertModel, ids_tensor};
use zo_models::loader::load_safetensors;
use zo_optim::ParamStore;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/models")
        .join(name)
}

fn ints(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()))
        .collect()
}

fn floats(v: &Value, out: &mut Vec<f64>) {
    match v {
        Value::Array(a) => a.iter().for_each(|x| floats(x, out)),
        x => out.push(x.as_f64().unwrap()),
    }
}

#[test]
fn bert_tiny_matches_hf_float64_reference() {
    let dir = fixture("bert-tiny");
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
            .unwrap();
    let cfg = BertConfig::from_file(&dir.join("config.json")).unwrap();
    let h = cfg.hidden_size;
    let dev = Device::flex();
    let mut store = ParamStore::new(dev.clone());
    let mut ckpt = load_safetensors(&dir.join("model.safetensors")).unwrap();
    let model = BertModel::from_checkpoint(cfg, &mut ckpt, &mut store).unwrap();
    assert_eq!(
        store.num_params() as u64,
        r["param_count"].as_u64().unwrap()
    );

    let ids = ints(&r["input_ids"]);
    let mask = ints(&r["attention_mask"]);
    let types = ints(&r["token_type_ids"]);
    let (b, t) = (2, ids.len() / 2);
    let out = model.forward(
        &store,
        ids_tensor(&ids, b, t, &dev),
        ids_tensor(&mask, b, t, &dev),
        Some(ids_tensor(&types, b, t, &dev)),
    );
    let got = out
        .last_hidden_state
        .into_data()
        .try_into_vec::<f32>()
        .unwrap();
    let mut want = vec![];
    floats(&r["last_hidden_state"], &mut want);
    assert_eq!(got.len(), want.len());
    let mut max_err = 0.0f64;
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        if mask[i / h] == 1 {
            max_err = max_err.max((*g as f64 - w).abs());
        }
    }
    assert!(max_err < 1e-4, "last_hidden_state max abs error {max_err}");

    let got = out
        .pooler_output
        .expect("bert-tiny has a pooler")
        .into_data()
        .try_into_vec::<f32>()
        .unwrap();
    let mut want = vec![];
    floats(&r["pooler_output"], &mut want);
    assert_eq!(got.len(), want.len());
    let err = got
        .iter()
        .zip(&want)
        .map(|(g, w)| (*g as f64 - w).abs())
        .fold(0.0, f64::max);
    assert!(err < 1e-4, "pooler_output max abs error {err}");
}

#[test]
fn missing_tensor_and_corrupt_file_are_named_errors() {
    let dir = fixture("bert-tiny");
    let tmp = std::env::temp_dir().join(format!("zo-models-corrupt-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let bad = tmp.join("model.safetensors");
    std::fs::write(&bad, &bytes[..bytes.len() / 2]).unwrap();
    let err = load_safetensors(&bad).unwrap_err().to_string();
    assert!(
        err.contains("corrupt checkpoint") && err.contains("model.safetensors"),
        "{err}"
    );

    let cfg = BertConfig::from_file(&dir.join("config.json")).unwrap();
    let mut ckpt = load_safetensors(&dir.join("model.safetensors")).unwrap();
    ckpt.tensors.remove("encoder.layer.1.output.dense.weight");
    let mut store = ParamStore::new(Device::flex());
    let err = BertModel::from_checkpoint(cfg, &mut ckpt, &mut store)
        .unwrap_err()
        .to_string();
    assert!(err.contains("encoder.layer.1.output.dense.weight"), "{err}");
    std::fs::remove_dir_all(&tmp).ok();
}
