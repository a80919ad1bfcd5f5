//! Peak memory while loading SmolLM2-135M's Q4_1 GGUF stays under twice its f32 weight bytes.
//!
//! This is the only test of this binary, so the process's peak RSS (`VmHWM`) is the loader's
//! own and not inflated by other tests loading models beside it.

use std::time::Instant;
use zo_models::gguf::load_gguf;

fn vm_hwm_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = s
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM line");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn smollm2_load_peak_rss_is_under_twice_the_f32_weights() {
    let path = zobench::fetch::ensure("smollm2-135m")
        .expect("fetch smollm2-135m")
        .join(zobench::registry::SMOLLM2_GGUF);
    let t0 = Instant::now();
    let (_, ck) = load_gguf(&path).unwrap();
    let load_s = t0.elapsed().as_secs_f64();
    let kib = vm_hwm_kib();
    let f32_bytes: u64 = ck.tensors.values().map(|(_, v)| v.len() as u64 * 4).sum();
    eprintln!(
        "load_gguf(SmolLM2-135M Q4_1): {load_s:.2} s, f32 {:.1} MiB, VmHWM {:.1} MiB",
        f32_bytes as f64 / 1048576.0,
        kib as f64 / 1024.0
    );
    assert!(
        kib * 1024 < 2 * f32_bytes,
        "peak RSS {kib} KiB ≥ 2 × f32 weights ({f32_bytes} bytes)"
    );
}
