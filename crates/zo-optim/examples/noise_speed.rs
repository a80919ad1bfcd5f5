//! Throughput of the ZO perturbation machinery on a SmolLM2-135M-sized store.
//!
//! `cargo run --release -p zo-optim --example noise_speed [-- MELEMS REPS]`
//! prints Melem/s (median of REPS) for `fill_gaussian`, `add_gaussian`, one `perturb` pass over
//! a [`ParamStore`], and one full `zo-sgd` step (q = 1: 3 passes) with a trivial objective.

use burn::tensor::Device;
use std::time::Instant;
use zo_optim::noise::{NoiseKey, add_gaussian, fill_gaussian};
use zo_optim::{HParams, ParamStore, StepCtx, ZoObjective, build, perturb};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// CPU seconds (user + system, all threads) this process has used, from `/proc/self/stat`
/// (0 where unavailable): the work done, less sensitive to other load on the machine.
fn cpu_secs() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let rest = &stat[stat.rfind(')').unwrap_or(0) + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Median wall seconds and mean CPU seconds of one call.
fn time(reps: usize, mut f: impl FnMut()) -> (f64, f64) {
    f(); // warm-up
    let c0 = cpu_secs();
    let wall = median(
        (0..reps)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .collect(),
    );
    (wall, (cpu_secs() - c0) / reps as f64)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let melems: usize = args.get(1).map_or(135, |s| s.parse().unwrap());
    let reps: usize = args.get(2).map_or(5, |s| s.parse().unwrap());
    let n = melems * 1_000_000;
    println!(
        "threads {}, {n} elements, median of {reps}",
        rayon::current_num_threads()
    );
    let report = |what: &str, (secs, cpu): (f64, f64), elems: usize| {
        println!(
            "{what:<24} wall {:7.3} s {:7.1} Melem/s | cpu {:7.3} s {:7.1} Melem/cpu-s",
            secs,
            elems as f64 / secs / 1e6,
            cpu,
            elems as f64 / cpu / 1e6
        );
    };

    // Compute only: one thread, a cache-resident buffer (256 Ki elements) filled repeatedly.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let mut hot = vec![0.0f32; 1 << 18];
    let rounds = 100;
    let t = pool.install(|| {
        time(reps, || {
            for r in 0..rounds {
                add_gaussian(NoiseKey(r), "hot.w", 0, 1e-3, &mut hot)
            }
        })
    });
    report("add_gaussian hot 1 thr", t, rounds as usize * hot.len());

    let mut buf = vec![0.0f32; n];
    let t = time(reps, || {
        fill_gaussian(NoiseKey(1), "model.w", 0, 1.0, &mut buf)
    });
    report("fill_gaussian", t, n);
    let t = time(reps, || {
        add_gaussian(NoiseKey(2), "model.w", 0, 1e-3, &mut buf)
    });
    report("add_gaussian", t, n);
    drop(buf);

    // A store shaped like SmolLM2-135M: 30 layers of 576-wide blocks + a 49152 × 576 embedding.
    let dev = Device::flex();
    let mut store = ParamStore::new(dev);
    let emb = 49_152 * 576;
    let mut left = n;
    let mut i = 0;
    let first = emb.min(left);
    store
        .insert("model.embed_tokens.weight", &[first], vec![0.0; first])
        .unwrap();
    left -= first;
    while left > 0 {
        let m = (576 * 1536).min(left);
        store
            .insert(&format!("model.layers.{i}.w"), &[m], vec![0.0; m])
            .unwrap();
        left -= m;
        i += 1;
    }
    let mut k = 0u64;
    let t = time(reps, || {
        k += 1;
        perturb(&mut store, NoiseKey(k), 1e-3)
    });
    report("perturb (ParamStore)", t, n);

    let hp = HParams {
        lr: Some(1e-6),
        mu: Some(1e-3),
        ..Default::default()
    };
    let mut opt = build("zo-sgd", &hp).unwrap();
    let mut calls = 0u64;
    let mut obj = ZoObjective(|_: &ParamStore| {
        calls += 1;
        (calls % 7) as f32 * 1e-3
    });
    let mut step = 0u64;
    let t = time(reps, || {
        step += 1;
        opt.step(&mut store, StepCtx { run_seed: 3, step }, &mut obj)
            .unwrap();
    });
    report("zo-sgd step (3 passes)", t, 3 * n);
    println!("  = {:.3} s wall per pass", t.0 / 3.0);
}
