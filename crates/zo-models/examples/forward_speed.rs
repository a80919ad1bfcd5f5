//! Times `hidden_states` of SmolLM2-135M (16 × 32) and all-MiniLM-L6-v2 (16 × 64) on the
//! flex backend: median of 5 after one warm-up. Run with `RAYON_NUM_THREADS=2 cargo run
//! --release -p zo-models --example forward_speed [smollm2|minilm|matmul]`.

use burn::tensor::{Device, Tensor, TensorData};
use std::path::PathBuf;
use std::time::Instant;
use zo_models::{ModelInput, load_model};
use zo_optim::ParamStore;

fn cache() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default()
        .join(".cache/zobench/models")
}

/// CPU seconds (user + system) used so far by this process, all threads.
fn cpu_s() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = s.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    // fields 14 and 15 of /proc/PID/stat (utime, stime) are 11 and 12 after the `)`.
    (tick(11) + tick(12)) / 100.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn time_n(n: usize, mut f: impl FnMut()) -> (f64, Vec<f64>) {
    f();
    let v: Vec<f64> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    (median(v.clone()), v)
}

fn bench_model(name: &str, path: PathBuf, b: usize, t: usize, reps: usize) {
    let dev = Device::flex();
    let mut ps = ParamStore::new(dev.clone());
    let m = match load_model(&path, &mut ps) {
        Ok(m) => m,
        Err(e) => {
            println!("{name}: cannot load {}: {e}", path.display());
            return;
        }
    };
    let vocab = m.info().vocab_size as i64;
    // Deterministic ids, right padding on a few rows.
    let mut ids = Vec::with_capacity(b * t);
    let mut mask = Vec::with_capacity(b * t);
    for r in 0..b {
        let len = if r % 4 == 3 { t - 5 } else { t };
        for j in 0..t {
            ids.push(((r * 7919 + j * 104_729) as i64 % (vocab - 10)) + 5);
            mask.push(i64::from(j < len));
        }
    }
    let input = ModelInput::from_host(&ids, &mask, b, t, &dev);
    let c0 = cpu_s();
    let (med, all) = time_n(reps, || {
        let h = m.hidden_states(&ps, &input);
        let _ = h.into_data();
    });
    let cpu = (cpu_s() - c0) / (reps + 1) as f64;
    let h = m.hidden_states(&ps, &input);
    let sum: f32 = h.clone().abs().sum().into_scalar();
    println!(
        "{name} hidden_states {b}x{t}: median {med:.4} s  cpu/forward {cpu:.3} s  runs {:?}  (checksum |h| sum {sum:.6e})",
        all.iter().map(|x| format!("{x:.3}")).collect::<Vec<_>>()
    );
}

fn bench_matmul() {
    let dev = Device::flex();
    let (m, k, n) = (512, 576, 1536);
    let x = Tensor::<2>::from_data(
        TensorData::new(
            (0..m * k)
                .map(|i| (i % 13) as f32 * 0.01)
                .collect::<Vec<_>>(),
            [m, k],
        ),
        &dev,
    );
    let w = Tensor::<2>::from_data(
        TensorData::new(
            (0..n * k)
                .map(|i| (i % 17) as f32 * 0.01)
                .collect::<Vec<_>>(),
            [n, k],
        ),
        &dev,
    );
    let wt = Tensor::<2>::from_data(w.clone().transpose().into_data(), &dev);
    let (a, _) = time_n(9, || {
        let _ = x.clone().matmul(w.clone().transpose()).into_data();
    });
    let (bb, _) = time_n(9, || {
        let _ = x.clone().matmul(wt.clone()).into_data();
    });
    let (c, _) = time_n(9, || {
        let _ = w
            .clone()
            .matmul(x.clone().transpose())
            .transpose()
            .into_data();
    });
    println!(
        "matmul [{m},{k}]x[{k},{n}]: x·wᵀ(view) {a:.4} s, x·w_pre {bb:.4} s, (w·xᵀ)ᵀ {c:.4} s"
    );
}

/// Times `x · wᵀ` for the linear shapes of one SmolLM2 layer (512 tokens) and reports
/// GFLOP/s, plus the estimated matmul share of a 30-layer forward.
fn bench_linears() {
    let dev = Device::flex();
    let rows = 512;
    let mk = |r: usize, c: usize| {
        Tensor::<2>::from_data(
            TensorData::new(
                (0..r * c)
                    .map(|i| ((i * 31) % 17) as f32 * 0.01 - 0.08)
                    .collect::<Vec<_>>(),
                [r, c],
            ),
            &dev,
        )
    };
    let mut total = 0.0;
    for (name, o, i, n) in [
        ("q/o 576x576", 576, 576, 2),
        ("k/v 192x576", 192, 576, 2),
        ("gate/up 1536x576", 1536, 576, 2),
        ("down 576x1536", 576, 1536, 1),
    ] {
        let x = mk(rows, i);
        let w = mk(o, i);
        let wt = Tensor::<2>::from_data(w.clone().transpose().into_data(), &dev);
        let (t, _) = time_n(9, || {
            let _ = x.clone().matmul(w.clone().transpose()).into_data();
        });
        let (t2, _) = time_n(9, || {
            let _ = x.clone().matmul(wt.clone()).into_data();
        });
        let (t3, _) = time_n(9, || {
            let _ = w.clone().matmul(x.clone().transpose()).into_data();
        });
        let gf = |t: f64| 2.0 * (rows * o * i) as f64 / t / 1e9;
        println!(
            "  linear {name}: x·wᵀ {:.2} ms {:.1} GF/s | x·(wᵀ contiguous) {:.2} ms {:.1} GF/s | w·xᵀ {:.2} ms {:.1} GF/s",
            t * 1e3,
            gf(t),
            t2 * 1e3,
            gf(t2),
            t3 * 1e3,
            gf(t3)
        );
        total += t * n as f64;
    }
    println!("  => 30 layers of linears ≈ {:.3} s", total * 30.0);
}

fn main() {
    let which = std::env::args().nth(1).unwrap_or_else(|| "all".into());
    let reps = 5;
    if which == "all" || which == "matmul" {
        bench_matmul();
    }
    if which == "all" || which == "linears" {
        bench_linears();
    }
    if which == "all" || which == "smollm2" {
        bench_model(
            "smollm2-135m",
            cache().join("smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf"),
            16,
            32,
            reps,
        );
    }
    if which == "all" || which == "minilm" {
        bench_model("minilm-l6", cache().join("minilm-l6"), 16, 64, reps);
    }
}
