//! Fine-tuning schemes on every fixture family: LoRA with B = 0 and prefix/prompt with n = 0
//! leave the model unchanged, trainable counts follow the formulas, and the adapters are
//! really consulted by each family's forward pass.

use burn::tensor::{Device, Tensor};
use serde_json::Value;
use std::path::PathBuf;
use zo_models::peft::{Scheme, apply_scheme, random_token_ids};
use zo_models::{LanguageModel, ModelError, ModelInput, ModelKind, load_model};
use zo_optim::ParamStore;

fn fixture_dirs() -> Vec<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models");
    let mut v: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("reference.json").exists())
        .collect();
    v.sort();
    v
}

fn load(dir: &PathBuf) -> (Box<dyn LanguageModel>, ParamStore, ModelInput, Value) {
    let r: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).unwrap())
            .unwrap();
    let mut store = ParamStore::new(Device::flex());
    let m = load_model(dir, &mut store).unwrap();
    let ids: Vec<i64> = ints(&r["input_ids"]);
    let mask: Vec<i64> = ints(&r["attention_mask"]);
    let t = ids.len() / 2;
    let inp = ModelInput::from_host(&ids, &mask, 2, t, store.device());
    (m, store, inp, r)
}

fn ints(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r.as_array().unwrap().iter().map(|x| x.as_i64().unwrap()))
        .collect()
}

/// Logits (LMs) or hidden states (encoders), on the host.
fn out(m: &dyn LanguageModel, s: &ParamStore, inp: &ModelInput) -> (Vec<f32>, [usize; 3]) {
    let h = m.hidden_states(s, inp);
    let y: Tensor<3> = m.lm_head(s, h.clone()).unwrap_or(h);
    let d = y.dims();
    (y.into_data().try_into_vec::<f32>().unwrap(), d)
}

fn assert_blocks_partition(m: &dyn LanguageModel, s: &ParamStore, what: &str) {
    let mut names: Vec<String> = m.blocks().into_iter().flat_map(|b| b.param_names).collect();
    names.sort();
    let mut all: Vec<String> = s.params().iter().map(|p| p.name.clone()).collect();
    all.sort();
    assert_eq!(names, all, "{what}: blocks must list every parameter once");
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn lora_with_zero_b_is_the_base_model_and_counts_match() {
    for dir in fixture_dirs() {
        let (mut m, mut s, inp, _) = load(&dir);
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let base = out(m.as_ref(), &s, &inp).0;
        let total = s.num_params();
        let scheme = Scheme::parse("lora").unwrap();
        let rep = apply_scheme(m.as_mut(), &mut s, &scheme, 7).unwrap();
        let Scheme::Lora { rank, targets, .. } = &scheme else {
            unreachable!()
        };
        let expect: usize = m
            .linears()
            .iter()
            .filter(|l| targets.iter().any(|t| l.name.ends_with(&format!(".{t}"))))
            .map(|l| rank * (l.d_in + l.d_out))
            .sum();
        assert!(expect > 0, "{name}: no LoRA targets");
        assert_eq!(rep.trainable, expect, "{name}: LoRA trainable count");
        assert_eq!(rep.total, total + expect);
        assert!(
            s.params()
                .iter()
                .filter(|p| p.trainable)
                .all(|p| p.name.contains(".lora_"))
        );
        let with = out(m.as_ref(), &s, &inp).0;
        assert_eq!(
            base, with,
            "{name}: LoRA with B = 0 must reproduce the base exactly"
        );
        assert_blocks_partition(m.as_ref(), &s, &name);
        // Make B non-zero: the output must move (the adapters are consulted).
        for p in s
            .params_mut()
            .iter_mut()
            .filter(|p| p.name.ends_with("lora_B.weight"))
        {
            p.tensor = p.tensor.clone().ones_like().mul_scalar(0.05);
        }
        let moved = out(m.as_ref(), &s, &inp).0;
        assert!(
            max_diff(&base, &moved) > 1e-3,
            "{name}: LoRA B had no effect"
        );
        eprintln!("{name}: lora ok ({} trainable)", rep.trainable);
    }
}

#[test]
fn prefix_and_prompt_with_zero_tokens_are_the_base_model() {
    for dir in fixture_dirs() {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        for scheme in [Scheme::Prefix { n: 0 }, Scheme::Prompt { n: 0 }] {
            let (mut m, mut s, inp, _) = load(&dir);
            let base = out(m.as_ref(), &s, &inp).0;
            let rep = apply_scheme(m.as_mut(), &mut s, &scheme, 1).unwrap();
            assert_eq!(rep.trainable, 0, "{name}");
            assert_eq!(base, out(m.as_ref(), &s, &inp).0, "{name}: {scheme:?}");
        }
    }
}

#[test]
fn prefix_counts_and_changes_outputs() {
    for dir in fixture_dirs() {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let (mut m, mut s, inp, _) = load(&dir);
        let base = out(m.as_ref(), &s, &inp).0;
        let n = 5;
        let rep = apply_scheme(m.as_mut(), &mut s, &Scheme::Prefix { n }, 3).unwrap();
        let i = m.info();
        assert_eq!(rep.trainable, 2 * n * i.num_layers * i.kv_dim(), "{name}");
        let (with, _) = out(m.as_ref(), &s, &inp);
        assert!(
            with.iter().all(|x| x.is_finite()),
            "{name}: prefix output not finite"
        );
        assert!(
            max_diff(&base, &with) > 1e-4,
            "{name}: prefix had no effect"
        );
        assert_blocks_partition(m.as_ref(), &s, &name);
    }
}

/// The prefix is initialised from the model's own keys/values of random tokens X: for a
/// causal model, layer 0's prefix then equals the keys/values X has inside `cat(X, Y)`.
#[test]
fn prefix_is_initialised_from_real_keys_and_values() {
    for dir in fixture_dirs() {
        let (mut m, mut s, _, _) = load(&dir);
        if m.info().kind != ModelKind::CausalLm {
            continue;
        }
        let n = 4;
        let seed = 11;
        apply_scheme(m.as_mut(), &mut s, &Scheme::Prefix { n }, seed).unwrap();
        let x = random_token_ids(seed, n, m.info().vocab_size);
        let mut no_prefix = m.adapters().clone();
        no_prefix.n_prefix = 0;
        no_prefix.prefix.clear();
        let mut m0 = load(&dir).0;
        m0.set_adapters(no_prefix);
        let inp = ModelInput::from_host(&x, &vec![1; n], 1, n, s.device());
        let kv = m0.layer_kv(&s, &inp);
        for (l, (k, _)) in kv.iter().enumerate() {
            let want = k.clone().into_data().try_into_vec::<f32>().unwrap();
            let got = s.values(s.id(&format!("prefix.layer.{l}.key")).unwrap());
            assert_eq!(want, got);
        }
    }
}

#[test]
fn prompt_counts_and_equals_prepending_the_tokens() {
    for dir in fixture_dirs() {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let (mut m, mut s, inp, r) = load(&dir);
        let n = 3;
        let seed = 5;
        let rep = apply_scheme(m.as_mut(), &mut s, &Scheme::Prompt { n }, seed).unwrap();
        assert_eq!(rep.trainable, n * m.info().embed_dim, "{name}");
        assert_blocks_partition(m.as_ref(), &s, &name);
        let (with, d) = out(m.as_ref(), &s, &inp);
        // Reference: the base model on [prompt tokens, input] with the prompt positions cut.
        let p = random_token_ids(seed, n, m.info().vocab_size);
        if m.info().pad_token_id.is_some_and(|pad| p.contains(&pad)) {
            continue; // a pad id would be treated as padding by RoBERTa's positions
        }
        let ids = ints(&r["input_ids"]);
        let mask = ints(&r["attention_mask"]);
        let t = ids.len() / 2;
        let (mut ids2, mut mask2) = (vec![], vec![]);
        for b in 0..2 {
            ids2.extend_from_slice(&p);
            ids2.extend_from_slice(&ids[b * t..(b + 1) * t]);
            mask2.extend(vec![1; n]);
            mask2.extend_from_slice(&mask[b * t..(b + 1) * t]);
        }
        let base = load(&dir);
        let inp2 = ModelInput::from_host(&ids2, &mask2, 2, n + t, s.device());
        let (full, d2) = out(base.0.as_ref(), &base.1, &inp2);
        let f = d[2];
        let mut e = 0.0f32;
        for b in 0..2 {
            for tt in 0..t {
                if mask[b * t + tt] == 0 {
                    continue;
                }
                for j in 0..f {
                    let a = with[(b * t + tt) * f + j];
                    let c = full[(b * d2[1] + n + tt) * f + j];
                    e = e.max((a - c).abs());
                }
            }
        }
        assert!(
            e < 1e-4,
            "{name}: prompt tuning differs from prepending the tokens: {e}"
        );
        eprintln!("{name}: prompt ok ({e:.1e})");
    }
}

#[test]
fn ft_trains_everything_and_head_needs_a_head() {
    let dir = fixture_dirs()
        .into_iter()
        .find(|d| d.ends_with("llama-tiny"))
        .unwrap();
    let (mut m, mut s, _, _) = load(&dir);
    let rep = apply_scheme(m.as_mut(), &mut s, &Scheme::Ft, 0).unwrap();
    assert_eq!(rep.trainable, rep.total);
    let e = apply_scheme(m.as_mut(), &mut s, &Scheme::Head, 0).unwrap_err();
    assert!(matches!(e, ModelError::Scheme { .. }), "{e}");
    let e = apply_scheme(
        m.as_mut(),
        &mut s,
        &Scheme::Lora {
            rank: 2,
            alpha: 4.0,
            targets: vec!["nonexistent".into()],
        },
        0,
    )
    .unwrap_err();
    assert!(matches!(e, ModelError::Scheme { .. }), "{e}");
}
