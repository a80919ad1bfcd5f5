//! Per-model benches: forward, ZO-SGD step, perturbation pass, noise generation, FO-SGD step.
//! See `benchmarks/src/lib.rs` for what each measures and the environment variables.
use burn::tensor::Device;
use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use std::time::Duration;
use zo_optim::noise::{NoiseKey, fill_gaussian};
use zo_optim::{HParams, Optimizer, ParamStore, StepCtx, TensorObjective, build, perturb};
use zobench_benchmarks::{Workload, describe, largest_param, specs, test_mode};

fn noise(c: &mut Criterion) {
    let mut g = c.benchmark_group("noise");
    let n = 1 << 20;
    g.throughput(Throughput::Elements(n as u64));
    let mut buf = vec![0.0f32; n];
    g.bench_function("fill_gaussian_1M", |b| {
        b.iter(|| fill_gaussian(NoiseKey(1), "p", 0, 1.0, &mut buf))
    });
    g.finish();
}

/// A runner optimizer from the registry, as `zobench run-cell` builds it.
fn optimizer(name: &str, lr: f64, mu: Option<f64>) -> Box<dyn Optimizer> {
    let hp = HParams {
        lr: Some(lr),
        mu,
        ..HParams::default()
    };
    build(name, &hp).unwrap_or_else(|e| panic!("building {name}: {e}"))
}

fn models(c: &mut Criterion) {
    let dev = Device::flex();
    for spec in specs() {
        let (w, mut store) = match Workload::load(&spec, &dev) {
            Ok(x) => x,
            Err(e) => {
                eprintln!("note: skipping {} benches: {e}", spec.name);
                continue;
            }
        };
        eprintln!("{}", describe(&w, &store, &spec.path));
        let n = store.num_trainable() as u64;
        let mut g = c.benchmark_group(spec.name);
        if spec.real && !test_mode() {
            // Steps of a real checkpoint take 0.1–3 s: ten timed runs each.
            g.sampling_mode(SamplingMode::Flat);
            g.sample_size(10);
            g.warm_up_time(Duration::from_secs(1));
            g.measurement_time(Duration::from_secs(10));
        }

        g.bench_function("forward", |b| b.iter(|| w.loss_value(&store)));

        // The runner's optimizers (zo_optim::build), each on its own copy of the parameters
        // (a copy shares the buffers until the first update writes new ones).
        let mut obj = TensorObjective(|ps: &ParamStore| w.loss(ps));
        for (bench, name, mu) in [
            ("zo_sgd_step", "zo-sgd", Some(1e-3)),
            ("fo_sgd_step", "fo-sgd", None),
            ("fo_adam_step", "fo-adam", None),
        ] {
            let mut opt = optimizer(name, 1e-6, mu);
            let mut ps = store.clone();
            let mut step = 0u64;
            g.bench_function(bench, |b| {
                b.iter(|| {
                    step += 1;
                    let ctx = StepCtx { run_seed: 0, step };
                    opt.step(&mut ps, ctx, &mut obj).expect("finite step")
                })
            });
        }

        g.throughput(Throughput::Elements(n));
        let mut sign = 1.0f32;
        g.bench_function("perturb", |b| {
            b.iter(|| {
                // Alternate +μz and −μz so the parameters stay where they are.
                sign = -sign;
                perturb(&mut store, NoiseKey(7), sign * 1e-3)
            })
        });

        let mut buf = vec![0.0f32; largest_param(&store)];
        let params: Vec<(String, usize)> = store
            .params()
            .iter()
            .filter(|p| p.trainable)
            .map(|p| (p.name.clone(), p.numel()))
            .collect();
        g.bench_function("noise", |b| {
            b.iter(|| {
                for (name, len) in &params {
                    fill_gaussian(NoiseKey(11), name, 0, 1.0, &mut buf[..*len]);
                }
            })
        });
        g.finish();
    }
}

criterion_group!(benches, noise, models);
criterion_main!(benches);
