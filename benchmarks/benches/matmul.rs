//! `matmul/f32_1024`: a 1024 × 1024 × 1024 f32 matrix product on burn's flex backend.
//!
//! Throughput is counted in floating-point operations (2·1024³ multiply-adds per product), so
//! criterion's "elem/s" is FLOP/s (divide by 10⁹ for GFLOP/s).
use burn::tensor::{Device, Tensor, TensorData};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn matmul(c: &mut Criterion) {
    let dev = Device::flex();
    let n = 1024usize;
    let fill = |k: usize| -> Vec<f32> {
        (0..n * n)
            .map(|i| (((i * 31 + k * 17) % 1000) as f32) * 1e-3 - 0.5)
            .collect()
    };
    let a = Tensor::<2>::from_data(TensorData::new(fill(1), [n, n]), &dev);
    let b = Tensor::<2>::from_data(TensorData::new(fill(2), [n, n]), &dev);
    let mut g = c.benchmark_group("matmul");
    g.throughput(Throughput::Elements(2 * (n as u64).pow(3)));
    g.bench_function("f32_1024", |bch| {
        // into_data forces the product (and copies 4 MiB, < 1 % of the work).
        bch.iter(|| a.clone().matmul(b.clone()).into_data())
    });
    g.finish();
}

criterion_group!(benches, matmul);
criterion_main!(benches);
