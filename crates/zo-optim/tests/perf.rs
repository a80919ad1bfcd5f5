//! Timing of a ZO-SGD step's parameter passes against the legacy `ZoSgd` (run with
//! `cargo test --release -p zo-optim --test perf -- --ignored --nocapture`).

use burn::tensor::Device;
use std::time::Instant;
use zo_optim::{HParams, ParamStore, StepCtx, ZoObjective, ZoSgd, build};

#[test]
#[ignore = "timing, not a check"]
fn zo_sgd_step_passes_cost_like_the_legacy_step() {
    let dev = Device::flex();
    let mut s = ParamStore::new(dev.clone());
    for i in 0..8 {
        s.insert(
            &format!("layers.{i}.weight"),
            &[2_000_000],
            vec![0.1; 2_000_000],
        )
        .unwrap();
    }
    let mut loss = |_: &ParamStore| 1.0f32;
    let legacy = ZoSgd {
        lr: 1e-6,
        mu: 1e-3,
        q: 1,
        weight_decay: 0.0,
    };
    for (name, h) in [
        (
            "zo-sgd",
            HParams {
                lr: Some(1e-6),
                ..Default::default()
            },
        ),
        (
            "zo-sgd",
            HParams {
                lr: Some(1e-6),
                ..Default::default()
            },
        ),
        (
            "zo-sgd sparse 0.5",
            HParams {
                lr: Some(1e-6),
                sparsity: Some(0.5),
                ..Default::default()
            },
        ),
        (
            "zo-adam",
            HParams {
                lr: Some(1e-6),
                ..Default::default()
            },
        ),
    ] {
        let t = Instant::now();
        for step in 0..5 {
            legacy.step(&mut s, 1, step, &mut loss);
        }
        let a = t.elapsed().as_secs_f64() / 5.0;
        let mut opt = build(name.split(' ').next().unwrap(), &h).unwrap();
        let mut obj = ZoObjective(|_: &ParamStore| 1.0f32);
        opt.step(
            &mut s,
            StepCtx {
                run_seed: 1,
                step: 0,
            },
            &mut obj,
        )
        .unwrap();
        let t = Instant::now();
        for step in 1..6 {
            opt.step(&mut s, StepCtx { run_seed: 1, step }, &mut obj)
                .unwrap();
        }
        let b = t.elapsed().as_secs_f64() / 5.0;
        eprintln!("16M params: legacy ZoSgd {a:.3} s/step, {name} {b:.3} s/step");
    }
}
