//! The offload runtime against the in-memory ZO-SGD of zo-optim, on every tiny fixture family:
//! bit-identical parameters and losses in f32 on the same backend (flex as the "device"),
//! deferred updates applied before any read, clear errors for budgets that cannot work, and
//! (feature `wgpu`) the same steps on a real second device — Mesa's lavapipe on a machine
//! without a GPU — within f32 rounding, with the backend's own peak memory under the budget.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use std::path::PathBuf;
use zo_models::peft::{Scheme, apply_scheme};
use zo_models::{LanguageModel, ModelInput, load_model};
use zo_offload::{Offload, OffloadConfig, OffloadError, Plan, Transfer};
use zo_optim::optim::{StepCtx, ZoObjective, build};
use zo_optim::{HParams, ParamStore, ZoSgd};

fn fixtures() -> Vec<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models");
    let mut v: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("config.json").exists())
        .collect();
    v.sort();
    assert!(v.len() >= 6, "tiny fixtures missing: {v:?}");
    v
}

/// The tiny fixture folder whose name ends with `name` (e.g. `llama-tiny`).
fn fixture(name: &str) -> PathBuf {
    fixtures()
        .into_iter()
        .find(|d| d.ends_with(name))
        .unwrap_or_else(|| panic!("fixture `{name}` missing"))
}

fn load(dir: &PathBuf, scheme: &Scheme) -> (Box<dyn LanguageModel>, ParamStore) {
    let mut store = ParamStore::new(Device::flex());
    let mut m = load_model(dir, &mut store).unwrap();
    apply_scheme(m.as_mut(), &mut store, scheme, 7).unwrap();
    (m, store)
}

/// Two rows of 9 tokens, the second left-padded by 3.
fn input(m: &dyn LanguageModel, dev: &Device) -> (ModelInput, Vec<i64>) {
    let v = m.info().vocab_size as i64;
    let ids: Vec<i64> = (0..18).map(|i| (i * 7 + 3) % v.min(90) + 1).collect();
    let mut mask = vec![1i64; 18];
    mask[9..12].iter_mut().for_each(|x| *x = 0);
    let targets: Vec<i64> = ids.iter().map(|x| (x * 3 + 1) % v).collect();
    (ModelInput::from_host(&ids, &mask, 2, 9, dev), targets)
}

/// Next-token cross-entropy for LMs (exercises the head and, when tied, the embeddings);
/// mean square of the hidden states for encoders without a head.
fn loss(m: &dyn LanguageModel, ps: &ParamStore, h: Tensor<3>, targets: &[i64]) -> Tensor<1> {
    match m.lm_head(ps, h.clone()) {
        Some(logits) => {
            let [b, t, v] = logits.dims();
            let lp = log_softmax(logits.reshape([b * t, v]), 1);
            let idx = Tensor::<2, Int>::from_data(
                TensorData::new(targets.to_vec(), [b * t, 1]),
                &lp.device(),
            );
            lp.gather(1, idx).mean().neg().reshape([1])
        }
        None => (h.clone() * h).mean().reshape([1]),
    }
}

fn hp(lr: f64, wd: f64) -> ZoSgd {
    ZoSgd {
        lr,
        mu: 1e-3,
        q: 1,
        weight_decay: wd,
    }
}

/// In-memory zo-sgd (the registry's optimizer, as the runner builds it) for `steps` steps;
/// returns the losses (ℓ₊, ℓ₋) per step and the final parameters.
fn in_memory(
    m: &dyn LanguageModel,
    mut store: ParamStore,
    h: &ZoSgd,
    steps: u64,
) -> (Vec<(f32, f32)>, ParamStore) {
    let mut map = std::collections::BTreeMap::new();
    map.insert("lr".to_string(), serde_json::json!(h.lr));
    map.insert("mu".to_string(), serde_json::json!(h.mu));
    map.insert(
        "weight_decay".to_string(),
        serde_json::json!(h.weight_decay),
    );
    let hps = HParams::from_map::<_, serde_json::Error>(&map).unwrap();
    let mut opt = build("zo-sgd", &hps).unwrap();
    let (inp, targets) = input(m, store.device());
    let mut out = Vec::new();
    for step in 1..=steps {
        let mut obj = ZoObjective(|s: &ParamStore| {
            let h = m.hidden_states(s, &inp);
            loss(m, s, h, &targets)
                .into_data()
                .convert::<f32>()
                .as_slice::<f32>()
                .unwrap()[0]
        });
        let r = opt
            .step(&mut store, StepCtx { run_seed: 11, step }, &mut obj)
            .unwrap();
        out.push((r.loss_plus[0], r.loss_minus[0]));
    }
    (out, store)
}

fn offloaded(
    m: &dyn LanguageModel,
    mut store: ParamStore,
    cfg: OffloadConfig,
    h: &ZoSgd,
    steps: u64,
) -> (Vec<(f32, f32)>, Offload, ParamStore) {
    let mut off = Offload::new(m, &store, cfg).unwrap();
    let (inp, targets) = input(m, &Device::flex());
    let mut out = Vec::new();
    for step in 1..=steps {
        let r = off
            .step(
                &mut store,
                m,
                StepCtx { run_seed: 11, step },
                h,
                &inp,
                &mut |ps: &ParamStore, hid: Tensor<3>| loss(m, ps, hid, &targets),
            )
            .unwrap();
        out.push((r.loss_plus, r.loss_minus));
    }
    (out, off, store)
}

fn bits(s: &ParamStore) -> Vec<Vec<u32>> {
    (0..s.params().len())
        .map(|i| s.values(i).iter().map(|x| x.to_bits()).collect())
        .collect()
}

fn max_abs_diff(a: &ParamStore, b: &ParamStore) -> f32 {
    (0..a.params().len())
        .flat_map(|i| {
            a.values(i)
                .into_iter()
                .zip(b.values(i))
                .map(|(x, y)| (x - y).abs())
                .collect::<Vec<_>>()
        })
        .fold(0.0, f32::max)
}

/// Budget that fits the resident set and `ring` layers.
fn budget_for(m: &dyn LanguageModel, s: &ParamStore, ring: u64) -> u64 {
    let p = Plan::new(m, s, &OffloadConfig::new(Device::flex(), u64::MAX)).unwrap();
    p.resident_bytes + ring * p.layer_bytes.iter().max().unwrap()
}

#[test]
fn f32_offload_equals_in_memory_zo_sgd_bitwise_on_every_family() {
    for dir in fixtures() {
        for (scheme, wd) in [(Scheme::Ft, 0.0), (Scheme::parse("lora").unwrap(), 0.1)] {
            let (m, store) = load(&dir, &scheme);
            let h = hp(1e-2, wd);
            let (ref_losses, ref_store) = in_memory(m.as_ref(), store.detached(), &h, 3);
            for ring in [1, 2] {
                let budget = budget_for(m.as_ref(), &store, ring);
                let mut cfg = OffloadConfig::new(Device::flex(), budget);
                cfg.max_ring = 2;
                let (losses, mut off, mut host) =
                    offloaded(m.as_ref(), store.detached(), cfg, &h, 3);
                assert_eq!(
                    off.plan().ring as u64,
                    ring,
                    "{dir:?}: ring from the budget"
                );
                let what = format!("{} {} ring {ring}", dir.display(), scheme.name());
                assert_eq!(losses, ref_losses, "{what}: losses differ");
                assert!(
                    off.has_pending_update(),
                    "{what}: the last update is deferred"
                );
                let stats = off.stats().clone();
                assert!(
                    stats.peak_param_bytes <= budget,
                    "{what}: {stats:?} over {budget}"
                );
                assert!(stats.peak_param_bytes > 0);
                off.flush(&mut host);
                assert!(!off.has_pending_update());
                assert_eq!(bits(&host), bits(&ref_store), "{what}: parameters differ");
                // Flushing twice applies nothing more.
                off.flush(&mut host);
                assert_eq!(bits(&host), bits(&ref_store));
            }
        }
    }
}

#[test]
fn bytes_moved_per_step_match_the_plan() {
    let dir = &fixtures()[0];
    let (m, store) = load(dir, &Scheme::parse("lora").unwrap());
    let meta = store.detached();
    let budget = budget_for(m.as_ref(), &store, 2);
    let cfg = OffloadConfig::new(Device::flex(), budget);
    let (_, off, _) = offloaded(m.as_ref(), store, cfg, &hp(1e-2, 0.0), 2);
    let plan = off.plan().clone();
    let frozen_resident: u64 = plan
        .resident
        .iter()
        .filter(|&&i| !meta.param(i).trainable)
        .map(|&i| 4 * meta.param(i).numel() as u64)
        .sum();
    assert!(frozen_resident > 0, "LoRA freezes the embeddings");
    assert_eq!(
        off.stats().bytes_uploaded,
        frozen_resident + 2 * plan.bytes_per_step,
        "frozen resident tensors go up once, everything else once per step"
    );
}

#[test]
fn budgets_that_cannot_work_are_clear_errors() {
    let dir = fixture("llama-tiny");
    let (m, store) = load(&dir, &Scheme::Ft);
    let full = Plan::new(
        m.as_ref(),
        &store,
        &OffloadConfig::new(Device::flex(), u64::MAX),
    )
    .unwrap();
    let layer = *full.layer_bytes.iter().max().unwrap();
    // Room for the resident set but not for one layer next to it.
    let cfg = OffloadConfig::new(Device::flex(), full.resident_bytes + layer - 1);
    let e = Plan::new(m.as_ref(), &store, &cfg).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, OffloadError::BlockTooLarge { .. }), "{msg}");
    assert!(
        msg.contains("layer.") && msg.contains(&layer.to_string()),
        "{msg}"
    );
    assert!(
        msg.contains(&(full.resident_bytes + layer).to_string()),
        "{msg}"
    );
    // Less than the resident set.
    let cfg = OffloadConfig::new(Device::flex(), full.resident_bytes / 2);
    let e = Plan::new(m.as_ref(), &store, &cfg).unwrap_err();
    assert!(matches!(e, OffloadError::ResidentTooLarge { .. }), "{e}");
    assert!(e.to_string().contains("resident set"), "{e}");
    // One layer fits, two do not: ring 1.
    let cfg = OffloadConfig::new(Device::flex(), full.resident_bytes + layer + layer / 2);
    assert_eq!(Plan::new(m.as_ref(), &store, &cfg).unwrap().ring, 1);
    // q > 1 is refused by name.
    let mut store = store;
    let mut off = Offload::new(
        m.as_ref(),
        &store,
        OffloadConfig::new(Device::flex(), u64::MAX),
    )
    .unwrap();
    let (inp, t) = input(m.as_ref(), &Device::flex());
    let mut h = hp(1e-2, 0.0);
    h.q = 2;
    let e = off
        .step(
            &mut store,
            m.as_ref(),
            StepCtx {
                run_seed: 1,
                step: 1,
            },
            &h,
            &inp,
            &mut |ps: &ParamStore, hid: Tensor<3>| loss(m.as_ref(), ps, hid, &t),
        )
        .unwrap_err();
    assert!(e.to_string().contains("q = 2"), "{e}");
    assert!(
        zo_offload::parse_device("tpu")
            .unwrap_err()
            .to_string()
            .contains("flex, wgpu")
    );
}

#[test]
fn a_diverged_step_restores_theta_and_leaves_no_pending_update() {
    let dir = fixture("gpt2-tiny");
    let (m, mut store) = load(&dir, &Scheme::Ft);
    let before = bits(&store);
    let mut off = Offload::new(
        m.as_ref(),
        &store,
        OffloadConfig::new(Device::flex(), u64::MAX),
    )
    .unwrap();
    let (inp, _) = input(m.as_ref(), &Device::flex());
    let e = off
        .step(
            &mut store,
            m.as_ref(),
            StepCtx {
                run_seed: 3,
                step: 1,
            },
            &hp(1e-2, 0.0),
            &inp,
            &mut |_: &ParamStore, hid: Tensor<3>| hid.sum().reshape([1]).div_scalar(0.0),
        )
        .unwrap_err();
    assert!(matches!(e, OffloadError::Diverged { step: 1, .. }), "{e}");
    assert!(!off.has_pending_update());
    off.flush(&mut store);
    let after = store;
    // θ + μz − 2μz + μz is θ up to f32 rounding of each pass.
    let b: Vec<f32> = before
        .iter()
        .flatten()
        .map(|&x| f32::from_bits(x))
        .collect();
    let a: Vec<f32> = bits(&after)
        .iter()
        .flatten()
        .map(|&x| f32::from_bits(x))
        .collect();
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max);
    assert!(worst < 1e-6, "restore error {worst}");
}

/// Half-precision transfer on the host "device": θ and z travel as bf16 / f16, so the losses
/// move by the rounding of θ (8 or 11 significant bits) and the bytes per step halve.
#[test]
fn half_precision_transfer_on_flex_halves_the_bytes_and_stays_close() {
    let dir = fixture("opt-tiny");
    let (m, store) = load(&dir, &Scheme::Ft);
    let h = hp(1e-2, 0.0);
    let (ref_losses, _) = in_memory(m.as_ref(), store.detached(), &h, 2);
    let f32_plan = Plan::new(
        m.as_ref(),
        &store,
        &OffloadConfig::new(Device::flex(), u64::MAX),
    )
    .unwrap();
    for (t, rel) in [(Transfer::Bf16, 2e-2), (Transfer::F16, 2e-3)] {
        let mut cfg = OffloadConfig::new(Device::flex(), u64::MAX);
        cfg.transfer = t;
        let (losses, off, _) = offloaded(m.as_ref(), store.detached(), cfg, &h, 2);
        assert_eq!(2 * off.plan().bytes_per_step, f32_plan.bytes_per_step);
        eprintln!("{t:?}: {losses:?} vs {ref_losses:?}");
        for ((lp, lm), (rp, rm)) in losses.iter().zip(&ref_losses) {
            assert!((lp - rp).abs() <= rel * rp.abs(), "{t:?}: {lp} vs {rp}");
            assert!((lm - rm).abs() <= rel * rm.abs(), "{t:?}: {lm} vs {rm}");
        }
    }
}

/// The wgpu backend on this machine's adapter (lavapipe without a GPU): a separate device
/// with its own memory and real transfers.
#[cfg(feature = "wgpu")]
mod wgpu {
    use super::*;

    fn device() -> Device {
        zo_offload::parse_device("wgpu").unwrap()
    }

    #[test]
    fn wgpu_offload_matches_in_memory_and_stays_under_budget() {
        let dev = device();
        for name in ["llama-tiny", "opt-tiny", "bert-tiny"] {
            let dir = fixture(name);
            let (m, store) = load(&dir, &Scheme::Ft);
            let h = hp(1e-2, 0.0);
            let (ref_losses, ref_store) = in_memory(m.as_ref(), store.detached(), &h, 3);
            let plan = Plan::new(
                m.as_ref(),
                &store,
                &OffloadConfig::new(dev.clone(), u64::MAX),
            )
            .unwrap();
            let layer = *plan.layer_bytes.iter().max().unwrap();
            let all: u64 = plan.resident_bytes + plan.layer_bytes.iter().sum::<u64>();
            // Parameters: the resident set and two layers; activations of the two streams:
            // a generous 1 MiB for these 2 × 9-token batches. Less than holding every layer.
            let budget = plan.resident_bytes + 2 * layer + (1 << 20);
            let cfg = OffloadConfig::new(dev.clone(), budget);
            let (losses, mut off, mut host) = offloaded(m.as_ref(), store.detached(), cfg, &h, 3);
            for ((lp, lm), (rp, rm)) in losses.iter().zip(&ref_losses) {
                assert!(
                    (lp - rp).abs() <= 1e-4 * rp.abs().max(1.0),
                    "{name}: {lp} vs {rp}"
                );
                assert!(
                    (lm - rm).abs() <= 1e-4 * rm.abs().max(1.0),
                    "{name}: {lm} vs {rm}"
                );
            }
            let st = off.stats().clone();
            let peak = st.peak_device_bytes.expect("wgpu keeps accounting");
            assert!(st.samples > 0);
            assert!(
                peak <= budget,
                "{name}: backend peak {peak} > budget {budget}: {st:?}"
            );
            assert!(
                st.peak_param_bytes < all || plan.layers.len() <= 2,
                "{name}: the ring holds fewer than all layers"
            );
            // Another backend's forward rounds differently, so g differs by Δg_t and the
            // parameters by at most η Σ_t |Δg_t| · max|z| (max|z| < 6.5 for these sizes).
            let dg: f32 = losses
                .iter()
                .zip(&ref_losses)
                .map(|((lp, lm), (rp, rm))| ((lp - lm) - (rp - rm)).abs() / (2.0 * h.mu as f32))
                .sum();
            let bound = h.lr as f32 * dg * 6.5 + 1e-6;
            off.flush(&mut host);
            let d = max_abs_diff(&host, &ref_store);
            eprintln!("{name}: Σ|Δg| = {dg:e}, max |Δθ| = {d:e} (bound {bound:e}); {st:?}");
            assert!(d <= bound, "{name}: parameters differ by {d} > {bound}");
        }
    }

    #[test]
    fn half_precision_transfer_is_close_to_f32_or_refused_clearly() {
        let dev = device();
        let dir = fixture("llama-tiny");
        let (m, store) = load(&dir, &Scheme::Ft);
        let h = hp(1e-2, 0.0);
        let (ref_losses, _) = in_memory(m.as_ref(), store.detached(), &h, 2);
        for t in [Transfer::Bf16, Transfer::F16] {
            let mut cfg = OffloadConfig::new(dev.clone(), u64::MAX);
            cfg.transfer = t;
            match Offload::new(m.as_ref(), &store, cfg.clone()) {
                Err(e) => {
                    eprintln!("{t:?} refused on this device: {e}");
                    assert!(matches!(e, OffloadError::TransferDtype { .. }), "{e}");
                    assert!(e.to_string().contains("transfer = \"f32\""), "{e}");
                }
                Ok(_) => {
                    let (losses, off, _) = offloaded(m.as_ref(), store.detached(), cfg, &h, 2);
                    // Half the bytes of the f32 transfer for the same step.
                    let f32_plan = Plan::new(
                        m.as_ref(),
                        &store,
                        &OffloadConfig::new(dev.clone(), u64::MAX),
                    )
                    .unwrap();
                    assert_eq!(2 * off.plan().bytes_per_step, f32_plan.bytes_per_step);
                    // θ and z rounded to 8 (bf16) or 11 (f16) significant bits: the losses
                    // move by far less than 1 %.
                    eprintln!("{t:?}: losses {losses:?} vs f32 in memory {ref_losses:?}");
                    for ((lp, _), (rp, _)) in losses.iter().zip(&ref_losses) {
                        assert!((lp - rp).abs() <= 1e-2 * rp.abs(), "{t:?}: {lp} vs {rp}");
                    }
                }
            }
        }
    }
}
