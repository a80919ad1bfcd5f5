//! See `benchmarks/src/lib.rs`.
use burn::tensor::Device;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::path::PathBuf;
use zo_models::{EncodedBatch, Pooling, SequenceClassifier};
use zo_optim::noise::{NoiseKey, fill_gaussian};
use zo_optim::{ParamStore, ZoSgd};

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

fn bert_tiny(c: &mut Criterion) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/models/bert-tiny");
    let dev = Device::flex();
    let (model, mut store) = SequenceClassifier::load(&dir, 2, Pooling::Mean, 0, &dev).unwrap();
    let rows: Vec<Vec<i64>> = (0..16)
        .map(|r| {
            (0..48)
                .map(|j| 5 + ((r * 7 + j * 3) % 100) as i64)
                .collect()
        })
        .collect();
    let batch = EncodedBatch::from_rows(&rows, 0);
    let labels: Vec<usize> = (0..16).map(|i| i % 2).collect();
    let mut g = c.benchmark_group("bert-tiny");
    g.bench_function("forward", |b| {
        b.iter(|| model.loss(&store, &batch, &labels).into_scalar::<f32>())
    });
    let opt = ZoSgd {
        lr: 1e-4,
        mu: 1e-3,
        q: 1,
        weight_decay: 0.0,
    };
    let mut step = 0u64;
    g.bench_function("zo_sgd_step", |b| {
        b.iter(|| {
            step += 1;
            opt.step(&mut store, 0, step, &mut |ps: &ParamStore| {
                model.loss(ps, &batch, &labels).into_scalar::<f32>()
            })
        })
    });
    g.finish();
}

criterion_group!(benches, noise, bert_tiny);
criterion_main!(benches);
