//! One model, one batch: the in-memory ZO-SGD step (flex, all parameters in memory) against
//! the offloaded step (layers streamed to `--device` under `--budget-frac` × the f32 weight
//! bytes), both on the same next-token loss. Prints one JSON object: median step seconds of
//! each, the ratio, bytes moved per step, the runtime's parameter peak and the backend's
//! device peak.
//!
//! ```sh
//! cargo run --release -p zo-offload --example offload_bench -- \
//!     MODEL_PATH [--device flex|wgpu] [--budget-frac 0.25] [--batch 4] [--seq 32] \
//!     [--steps 3] [--transfer f32|bf16|f16]
//! ```
//! MODEL_PATH is an HF folder or a `.gguf` file (e.g. the cached
//! `~/.cache/zobench/models/smollm2-135m/*.gguf`).

use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use std::path::PathBuf;
use std::time::Instant;
use zo_models::{LanguageModel, ModelInput, load_model};
use zo_offload::{Offload, OffloadConfig, Transfer, parse_device};
use zo_optim::optim::StepCtx;
use zo_optim::{ParamStore, ZoSgd};

fn arg<T: std::str::FromStr>(args: &[String], key: &str, default: T) -> T {
    args.iter()
        .position(|a| a == key)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn loss(m: &dyn LanguageModel, ps: &ParamStore, h: Tensor<3>, targets: &[i64]) -> Tensor<1> {
    // Next-token loss at the last position of every row (the LM head at B positions, as a
    // classification-style task scores its candidates).
    let [b, t, d] = h.dims();
    let last = h.slice([0..b, t - 1..t]).reshape([b, 1, d]);
    let logits = m.lm_head(ps, last).expect("causal LM");
    let v = logits.dims()[2];
    let lp = log_softmax(logits.reshape([b, v]), 1);
    let idx = Tensor::<2, Int>::from_data(TensorData::new(targets.to_vec(), [b, 1]), &lp.device());
    lp.gather(1, idx).mean().neg().reshape([1])
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first().map(PathBuf::from) else {
        eprintln!("usage: offload_bench MODEL_PATH [--device flex|wgpu] [--budget-frac F] …");
        std::process::exit(2);
    };
    let device_name: String = arg(&args, "--device", "flex".to_string());
    let frac: f64 = arg(&args, "--budget-frac", 0.25);
    let b: usize = arg(&args, "--batch", 4);
    let t: usize = arg(&args, "--seq", 32);
    let steps: u64 = arg(&args, "--steps", 3);
    let transfer = Transfer::parse(&arg(&args, "--transfer", "f32".to_string())).unwrap();
    let device = parse_device(&device_name).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    });
    let mut store = ParamStore::new(Device::flex());
    let m = load_model(&path, &mut store).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(2)
    });
    let v = m.info().vocab_size as i64;
    let ids: Vec<i64> = (0..b * t).map(|i| (i as i64 * 7919 + 13) % v).collect();
    let mask = vec![1i64; b * t];
    let targets: Vec<i64> = (0..b).map(|i| (i as i64 * 31 + 5) % v).collect();
    let hp = ZoSgd {
        lr: 1e-6,
        mu: 1e-3,
        q: 1,
        weight_decay: 0.0,
    };
    let weights = store.bytes();

    // In memory, on flex.
    let inp = ModelInput::from_host(&ids, &mask, b, t, &Device::flex());
    let mut mem_store = store.detached();
    let mut mem_times = Vec::new();
    for step in 0..=steps {
        let t0 = Instant::now();
        hp.step(&mut mem_store, 5, step, &mut |s: &ParamStore| {
            let h = m.hidden_states(s, &inp);
            loss(m.as_ref(), s, h, &targets)
                .into_data()
                .convert::<f32>()
                .as_slice::<f32>()
                .unwrap()[0]
        });
        if step > 0 {
            mem_times.push(t0.elapsed().as_secs_f64());
        }
    }
    drop(mem_store);

    // Offloaded.
    let mut cfg = OffloadConfig::new(device.clone(), (weights as f64 * frac) as u64);
    cfg.transfer = transfer;
    let mut off = match Offload::new(m.as_ref(), &store, cfg) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2)
        }
    };
    let mut off_times = Vec::new();
    for step in 0..=steps {
        let t0 = Instant::now();
        off.step(
            &mut store,
            m.as_ref(),
            StepCtx { run_seed: 5, step },
            &hp,
            &inp,
            &mut |ps: &ParamStore, h: Tensor<3>| loss(m.as_ref(), ps, h, &targets),
        )
        .unwrap();
        if step > 0 {
            off_times.push(t0.elapsed().as_secs_f64());
        }
    }
    let st = off.stats().clone();
    let plan = off.plan().clone();
    let (mem_s, off_s) = (median(mem_times), median(off_times));
    println!(
        "{}",
        serde_json::json!({
            "model": path.display().to_string(),
            "device": device_name,
            "transfer": transfer.name(),
            "batch": b, "seq": t,
            "weights_bytes": weights,
            "budget_bytes": plan.budget_bytes,
            "budget_fraction_of_weights": frac,
            "ring": plan.ring,
            "resident_bytes": plan.resident_bytes,
            "bytes_per_step": plan.bytes_per_step,
            "peak_param_bytes": st.peak_param_bytes,
            "peak_device_bytes": st.peak_device_bytes,
            "peak_device_reserved": st.peak_device_reserved,
            "in_memory_step_s": mem_s,
            "offload_step_s": off_s,
            "offload_over_in_memory": off_s / mem_s,
        })
    );
}
