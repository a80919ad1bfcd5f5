//! Shared transformer math used by every family: linear layers (with the LoRA term),
//! LayerNorm, RMSNorm, activations, RoPE, masked multi-head attention with GQA, prefix keys
//! and a safe softmax, plus the host-side derivation of positions and attention masks from
//! the attention mask (`1` = real token).
//!
//! Conventions: activations are `[B, T, features]`; attention heads are split as
//! `[B, T, heads, head_dim]`; additive attention biases are `[B, 1, T_q, T_k]` with 0 where a
//! key is visible and `-1e9` where it is not.

use crate::error::ModelError;
use crate::loader::Checkpoint;
use crate::model::{Adapters, KvCapture};
use burn::tensor::activation::{gelu, gelu_approximate, relu, sigmoid, silu, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde_json::Value;
use std::path::Path;
use zo_optim::ParamStore;

/// Additive bias of a hidden key (`exp(-1e9 - max)` is exactly 0 in f32).
const NEG: f32 = -1e9;

// ---------------------------------------------------------------------------------------
// Config helpers
// ---------------------------------------------------------------------------------------

fn cfg_err(path: &Path, msg: String) -> ModelError {
    ModelError::Config {
        path: path.into(),
        msg,
    }
}

/// The first of `keys` present (and not null) in `v`.
pub(crate) fn cfg_get<'a>(v: &'a Value, keys: &[&str]) -> Option<&'a Value> {
    keys.iter().filter_map(|k| v.get(*k)).find(|x| !x.is_null())
}

/// A required non-negative integer under one of `keys`.
pub(crate) fn cfg_usize(v: &Value, keys: &[&str], path: &Path) -> Result<usize, ModelError> {
    match cfg_get(v, keys) {
        Some(x) => x.as_u64().map(|x| x as usize).ok_or_else(|| {
            cfg_err(
                path,
                format!("`{}` must be a non-negative integer, got {x}", keys[0]),
            )
        }),
        None => Err(cfg_err(
            path,
            format!("missing key `{}`", keys.join("` / `")),
        )),
    }
}

/// An optional non-negative integer under one of `keys`.
pub(crate) fn cfg_usize_opt(
    v: &Value,
    keys: &[&str],
    path: &Path,
) -> Result<Option<usize>, ModelError> {
    if cfg_get(v, keys).is_none() {
        return Ok(None);
    }
    cfg_usize(v, keys, path).map(Some)
}

/// A float under one of `keys`, or `default`.
pub(crate) fn cfg_f64(
    v: &Value,
    keys: &[&str],
    default: f64,
    path: &Path,
) -> Result<f64, ModelError> {
    match cfg_get(v, keys) {
        Some(x) => x
            .as_f64()
            .ok_or_else(|| cfg_err(path, format!("`{}` must be a number, got {x}", keys[0]))),
        None => Ok(default),
    }
}

/// A bool under `key`, or `default`.
pub(crate) fn cfg_bool(
    v: &Value,
    key: &str,
    default: bool,
    path: &Path,
) -> Result<bool, ModelError> {
    match cfg_get(v, &[key]) {
        Some(x) => x
            .as_bool()
            .ok_or_else(|| cfg_err(path, format!("`{key}` must be a bool, got {x}"))),
        None => Ok(default),
    }
}

/// A string under one of `keys`, or `default`.
pub(crate) fn cfg_str(v: &Value, keys: &[&str], default: &str) -> String {
    cfg_get(v, keys)
        .and_then(Value::as_str)
        .unwrap_or(default)
        .to_string()
}

/// A token id (`pad_token_id`, …): an integer, or the first of a list; `None` if absent.
pub(crate) fn cfg_token(v: &Value, key: &str) -> Option<i64> {
    match v.get(key)? {
        Value::Array(a) => a.first()?.as_i64(),
        x => x.as_i64(),
    }
}

/// Checks that `hidden_act` names an activation [`act`] implements.
pub(crate) fn check_act(name: &str, key: &str, path: &Path) -> Result<(), ModelError> {
    if matches!(
        name,
        "gelu"
            | "gelu_new"
            | "gelu_pytorch_tanh"
            | "gelu_fast"
            | "relu"
            | "silu"
            | "swish"
            | "quick_gelu"
            | "tanh"
    ) {
        Ok(())
    } else {
        Err(ModelError::UnsupportedOption {
            path: path.into(),
            key: key.into(),
            value: format!("\"{name}\""),
        })
    }
}

/// Activation by HF name: `gelu` (exact, erf), `gelu_new` / `gelu_pytorch_tanh` /
/// `gelu_fast` (tanh approximation), `relu`, `silu` / `swish`, `quick_gelu`
/// (`x·σ(1.702x)`), `tanh`. Names are validated at load by [`check_act`].
///
/// On the plain (non-autodiff) `flex` device, `gelu` and `silu` run as one fused host pass
/// split over the rayon pool (flex's unary ops are single-threaded): see [`host_act`].
pub(crate) fn act<const D: usize>(name: &str, x: Tensor<D>) -> Tensor<D> {
    match host_act(name) {
        Some(f) if host_fast(&x) => host_map(x, f),
        _ => act_tensor(name, x),
    }
}

/// [`act`] through burn's tensor ops (every device).
fn act_tensor<const D: usize>(name: &str, x: Tensor<D>) -> Tensor<D> {
    match name {
        "gelu" => gelu(x),
        "relu" => relu(x),
        "silu" | "swish" => silu(x),
        "quick_gelu" => x.clone() * sigmoid(x.mul_scalar(1.702)),
        "tanh" => x.tanh(),
        _ => gelu_approximate(x),
    }
}

// ---------------------------------------------------------------------------------------
// Fused host elementwise passes (flex only)
// ---------------------------------------------------------------------------------------
//
// flex runs unary and binary elementwise ops on one thread, and each op is a full pass over
// memory (silu alone is a sigmoid pass plus a multiply pass). On the plain `flex` device the
// tensor data already lives in host memory, so the wide elementwise steps of the MLP (the
// activation, the SwiGLU product, the bias add before it) are done here in one pass split
// over the rayon pool. The scalar formulas are the ones flex uses (same operation order), so
// the results agree with the tensor path to f32 rounding (bitwise for silu; gelu's erf uses
// libm's algorithm with std's `exp`, which may differ from libm's `expf` by an ulp).
// On any other device (autodiff included, whose graph a host pass would cut) the tensor path
// is taken.

/// Elements per rayon task of a host pass.
const HOST_CHUNK: usize = 1 << 14;

/// Whether `x` can take a fused host pass: an f32 tensor on the plain flex device.
fn host_fast<const D: usize>(x: &Tensor<D>) -> bool {
    let dev = x.device();
    x.dtype() == burn::tensor::DType::F32 && !dev.is_autodiff() && dev == Device::flex()
}

/// The tensor's values, row-major (a contiguous copy).
fn host_vec<const D: usize>(x: Tensor<D>) -> Vec<f32> {
    x.into_data()
        .try_into_vec::<f32>()
        .expect("f32 tensor data")
}

/// `f` applied to every element, in parallel chunks.
fn host_map<const D: usize>(x: Tensor<D>, f: fn(f32) -> f32) -> Tensor<D> {
    use rayon::prelude::*;
    let dev = x.device();
    let shape = x.dims();
    let mut v = host_vec(x);
    v.par_chunks_mut(HOST_CHUNK)
        .for_each(|c| c.iter_mut().for_each(|a| *a = f(*a)));
    Tensor::from_data(TensorData::new(v, shape), &dev)
}

/// The host form of an activation, where one is implemented.
fn host_act(name: &str) -> Option<fn(f32) -> f32> {
    match name {
        "gelu" => Some(gelu_f32),
        "silu" | "swish" => Some(silu_f32),
        _ => None,
    }
}

/// flex's `sigmoid` (stable in both tails).
#[inline]
fn sigmoid_f32(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// burn's `silu`: `x · σ(x)`.
#[inline]
fn silu_f32(x: f32) -> f32 {
    x * sigmoid_f32(x)
}

/// flex's exact GELU: `0.5 x (1 + erf(x / √2))`.
#[inline]
fn gelu_f32(x: f32) -> f32 {
    0.5 * x * (1.0 + erf_f32(x / std::f32::consts::SQRT_2))
}

/// `erf` for f32: the FreeBSD/musl `erff` algorithm (as in the `libm` crate flex calls),
/// with std's `exp`. Max error about 1 ulp.
#[allow(clippy::excessive_precision, clippy::unreadable_literal)]
fn erf_f32(x: f32) -> f32 {
    const ERX: f32 = 8.4506291151e-01;
    const EFX8: f32 = 1.0270333290e+00;
    const PP0: f32 = 1.2837916613e-01;
    const PP1: f32 = -3.2504209876e-01;
    const PP2: f32 = -2.8481749818e-02;
    const PP3: f32 = -5.7702702470e-03;
    const PP4: f32 = -2.3763017452e-05;
    const QQ1: f32 = 3.9791721106e-01;
    const QQ2: f32 = 6.5022252500e-02;
    const QQ3: f32 = 5.0813062117e-03;
    const QQ4: f32 = 1.3249473704e-04;
    const QQ5: f32 = -3.9602282413e-06;
    const PA0: f32 = -2.3621185683e-03;
    const PA1: f32 = 4.1485610604e-01;
    const PA2: f32 = -3.7220788002e-01;
    const PA3: f32 = 3.1834661961e-01;
    const PA4: f32 = -1.1089469492e-01;
    const PA5: f32 = 3.5478305072e-02;
    const PA6: f32 = -2.1663755178e-03;
    const QA1: f32 = 1.0642088205e-01;
    const QA2: f32 = 5.4039794207e-01;
    const QA3: f32 = 7.1828655899e-02;
    const QA4: f32 = 1.2617121637e-01;
    const QA5: f32 = 1.3637083583e-02;
    const QA6: f32 = 1.1984500103e-02;
    const RA0: f32 = -9.8649440333e-03;
    const RA1: f32 = -6.9385856390e-01;
    const RA2: f32 = -1.0558626175e+01;
    const RA3: f32 = -6.2375331879e+01;
    const RA4: f32 = -1.6239666748e+02;
    const RA5: f32 = -1.8460508728e+02;
    const RA6: f32 = -8.1287437439e+01;
    const RA7: f32 = -9.8143291473e+00;
    const SA1: f32 = 1.9651271820e+01;
    const SA2: f32 = 1.3765776062e+02;
    const SA3: f32 = 4.3456588745e+02;
    const SA4: f32 = 6.4538726807e+02;
    const SA5: f32 = 4.2900814819e+02;
    const SA6: f32 = 1.0863500214e+02;
    const SA7: f32 = 6.5702495575e+00;
    const SA8: f32 = -6.0424413532e-02;
    const RB0: f32 = -9.8649431020e-03;
    const RB1: f32 = -7.9928326607e-01;
    const RB2: f32 = -1.7757955551e+01;
    const RB3: f32 = -1.6063638306e+02;
    const RB4: f32 = -6.3756646729e+02;
    const RB5: f32 = -1.0250950928e+03;
    const RB6: f32 = -4.8351919556e+02;
    const SB1: f32 = 3.0338060379e+01;
    const SB2: f32 = 3.2579251099e+02;
    const SB3: f32 = 1.5367296143e+03;
    const SB4: f32 = 3.1998581543e+03;
    const SB5: f32 = 2.5530502930e+03;
    const SB6: f32 = 4.7452853394e+02;
    const SB7: f32 = -2.2440952301e+01;

    let bits = x.to_bits();
    let sign = bits >> 31 != 0;
    let ix = bits & 0x7fff_ffff;
    if ix >= 0x7f80_0000 {
        // erf(nan) = nan, erf(±inf) = ±1
        return 1.0 - 2.0 * f32::from(u8::from(sign)) + 1.0 / x;
    }
    if ix < 0x3f58_0000 {
        // |x| < 0.84375
        if ix < 0x3180_0000 {
            return 0.125 * (8.0 * x + EFX8 * x);
        }
        let z = x * x;
        let r = PP0 + z * (PP1 + z * (PP2 + z * (PP3 + z * PP4)));
        let s = 1.0 + z * (QQ1 + z * (QQ2 + z * (QQ3 + z * (QQ4 + z * QQ5))));
        return x + x * (r / s);
    }
    let y = if ix < 0x40c0_0000 {
        // |x| < 6: 1 - erfc(|x|)
        let erfc = if ix < 0x3fa0_0000 {
            // |x| < 1.25
            let s = x.abs() - 1.0;
            let p = PA0 + s * (PA1 + s * (PA2 + s * (PA3 + s * (PA4 + s * (PA5 + s * PA6)))));
            let q = 1.0 + s * (QA1 + s * (QA2 + s * (QA3 + s * (QA4 + s * (QA5 + s * QA6)))));
            1.0 - ERX - p / q
        } else {
            let xa = x.abs();
            let s = 1.0 / (xa * xa);
            let (r, big_s) = if ix < 0x4036_db6d {
                (
                    RA0 + s
                        * (RA1
                            + s * (RA2 + s * (RA3 + s * (RA4 + s * (RA5 + s * (RA6 + s * RA7)))))),
                    1.0 + s
                        * (SA1
                            + s * (SA2
                                + s * (SA3
                                    + s * (SA4 + s * (SA5 + s * (SA6 + s * (SA7 + s * SA8))))))),
                )
            } else {
                (
                    RB0 + s * (RB1 + s * (RB2 + s * (RB3 + s * (RB4 + s * (RB5 + s * RB6))))),
                    1.0 + s
                        * (SB1
                            + s * (SB2 + s * (SB3 + s * (SB4 + s * (SB5 + s * (SB6 + s * SB7)))))),
                )
            };
            let z = f32::from_bits(xa.to_bits() & 0xffff_e000);
            (-z * z - 0.5625).exp() * ((z - xa) * (z + xa) + r / big_s).exp() / xa
        };
        1.0 - erfc
    } else {
        1.0 - f32::from_bits(0x0380_0000)
    };
    if sign { -y } else { y }
}

/// `act(g) ⊙ u` (the gated MLP of LLaMA-style models), fused into one host pass on flex.
pub(crate) fn gated_act(name: &str, g: Tensor<3>, u: Tensor<3>) -> Tensor<3> {
    match host_act(name) {
        Some(f) if host_fast(&g) && host_fast(&u) => {
            use rayon::prelude::*;
            let dev = g.device();
            let shape = g.dims();
            let mut gv = host_vec(g);
            let uv = host_vec(u);
            gv.par_chunks_mut(HOST_CHUNK)
                .zip(uv.par_chunks(HOST_CHUNK))
                .for_each(|(gc, uc)| {
                    gc.iter_mut().zip(uc).for_each(|(a, &b)| *a = f(*a) * b);
                });
            Tensor::from_data(TensorData::new(gv, shape), &dev)
        }
        _ => act_tensor(name, g) * u,
    }
}

// ---------------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------------

/// Moves tensor `name` of shape `shape` from the checkpoint into the store.
pub(crate) fn put(
    ckpt: &mut Checkpoint,
    store: &mut ParamStore,
    name: &str,
    shape: &[usize],
    family: &str,
) -> Result<usize, ModelError> {
    let data = ckpt.take(name, shape, family)?;
    store
        .insert(name, shape, data)
        .map_err(|e| ModelError::Config {
            path: ckpt.path.clone(),
            msg: format!("parameter store: {e}"),
        })
}

/// If the checkpoint lacks `probe` but has `probe` without `prefix`, prepends `prefix` to
/// every name that lacks it (e.g. GPT-2 hub files store `wte.weight`, not
/// `transformer.wte.weight`).
pub(crate) fn add_prefix_if_missing(ckpt: &mut Checkpoint, prefix: &str, probe: &str) {
    let full = format!("{prefix}{probe}");
    if ckpt.tensors.contains_key(&full) || !ckpt.tensors.contains_key(probe) {
        return;
    }
    let names: Vec<String> = ckpt
        .tensors
        .keys()
        .filter(|k| !k.starts_with(prefix))
        .cloned()
        .collect();
    for k in names {
        let v = ckpt.tensors.remove(&k).expect("listed");
        ckpt.tensors.insert(format!("{prefix}{k}"), v);
    }
}

/// A linear layer by HF name (`<name>.weight`, `<name>.bias`).
#[derive(Debug, Clone)]
pub(crate) struct Lin {
    /// HF module path without `.weight` (the key of LoRA adapters).
    pub name: String,
    /// Weight id: `[out, in]` (nn.Linear) or `[in, out]` (GPT-2 Conv1D).
    pub w: usize,
    /// Bias id `[out]`.
    pub b: Option<usize>,
    /// Weight stored `[in, out]` (GPT-2 `Conv1D`).
    pub conv1d: bool,
    /// Input features.
    pub d_in: usize,
    /// Output features.
    pub d_out: usize,
}

impl Lin {
    /// Loads `<name>.weight` (`[out, in]`, or `[in, out]` if `conv1d`) and, if `bias`,
    /// `<name>.bias` `[out]`.
    #[allow(clippy::too_many_arguments)]
    pub fn load(
        ckpt: &mut Checkpoint,
        store: &mut ParamStore,
        name: &str,
        d_out: usize,
        d_in: usize,
        bias: bool,
        conv1d: bool,
        family: &str,
    ) -> Result<Self, ModelError> {
        let shape = if conv1d { [d_in, d_out] } else { [d_out, d_in] };
        let w = put(ckpt, store, &format!("{name}.weight"), &shape, family)?;
        let b = if bias {
            Some(put(ckpt, store, &format!("{name}.bias"), &[d_out], family)?)
        } else {
            None
        };
        Ok(Self {
            name: name.into(),
            w,
            b,
            conv1d,
            d_in,
            d_out,
        })
    }

    /// All parameter names of this layer.
    pub fn param_names(&self, ps_names: &mut Vec<String>) {
        ps_names.push(format!("{}.weight", self.name));
        if self.b.is_some() {
            ps_names.push(format!("{}.bias", self.name));
        }
    }
}

/// `y = x Wᵀ + b (+ s · x Aᵀ Bᵀ if the adapters hold LoRA factors for this layer)`,
/// `x` `[B, T, in]` → `[B, T, out]`.
pub(crate) fn linear(ps: &ParamStore, ad: &Adapters, l: &Lin, x: Tensor<3>) -> Tensor<3> {
    let [b, t, i] = x.dims();
    let x2 = x.reshape([b * t, i]);
    let w = ps.t2(l.w);
    let mut y = if l.conv1d {
        x2.clone().matmul(w)
    } else {
        x2.clone().matmul(w.transpose())
    };
    if let Some(bias) = l.b {
        y = y + ps.t1(bias).unsqueeze::<2>();
    }
    if let Some(&(a, bb)) = ad.lora.get(&l.name) {
        let delta = x2
            .matmul(ps.t2(a).transpose())
            .matmul(ps.t2(bb).transpose());
        y = y + delta.mul_scalar(ad.lora_scale);
    }
    y.reshape([b, t, l.d_out])
}

/// LayerNorm over the last dim (biased variance); `w`/`b` optional (elementwise-affine off).
pub(crate) fn layer_norm(
    ps: &ParamStore,
    x: Tensor<3>,
    w: Option<usize>,
    b: Option<usize>,
    eps: f64,
) -> Tensor<3> {
    let (var, mean) = x.clone().var_mean_bias(2);
    let mut y = (x - mean) / (var + eps).sqrt();
    if let Some(w) = w {
        y = y * ps.t1(w).unsqueeze::<3>();
    }
    if let Some(b) = b {
        y = y + ps.t1(b).unsqueeze::<3>();
    }
    y
}

/// RMSNorm over the last dim: `x / √(mean(x²) + eps) · w`.
pub(crate) fn rms_norm(ps: &ParamStore, x: Tensor<3>, w: usize, eps: f64) -> Tensor<3> {
    let ms = x.clone().powf_scalar(2.0).mean_dim(2);
    x / (ms + eps).sqrt() * ps.t1(w).unsqueeze::<3>()
}

/// Row lookup in an embedding table `[V, E]`: ids `[B, T]` → `[B, T, E]`.
pub(crate) fn embed(table: Tensor<2>, ids: Tensor<2, Int>) -> Tensor<3> {
    let [b, t] = ids.dims();
    let e = table.dims()[1];
    table.select(0, ids.reshape([b * t])).reshape([b, t, e])
}

/// Row lookup by host indices: `[B·T]` row numbers → `[B, T, E]`.
pub(crate) fn embed_host(table: Tensor<2>, rows: &[i64], b: usize, t: usize) -> Tensor<3> {
    let dev = table.device();
    let e = table.dims()[1];
    let idx = Tensor::<1, Int>::from_data(TensorData::new(rows.to_vec(), [b * t]), &dev);
    table.select(0, idx).reshape([b, t, e])
}

// ---------------------------------------------------------------------------------------
// Inputs, prompt tuning, positions
// ---------------------------------------------------------------------------------------

/// Copies an int tensor to the host as i64.
pub(crate) fn host_ints<const D: usize>(t: &Tensor<D, Int>) -> Vec<i64> {
    t.to_data()
        .convert::<i64>()
        .try_into_vec::<i64>()
        .expect("int tensor data")
}

/// Word embeddings of a batch with the prompt-tuning embeddings (if any) prepended, and the
/// attention mask / ids extended to match.
pub(crate) struct Prepared {
    /// `[B, n + T, E]`.
    pub x: Tensor<3>,
    /// Extended attention mask `[B·(n + T)]` on the host (prompt positions are 1).
    pub mask: Vec<i64>,
    /// Extended ids `[B·(n + T)]` on the host (prompt positions hold `-1`).
    pub ids: Vec<i64>,
    /// Batch size.
    pub b: usize,
    /// `n + T`.
    pub t: usize,
    /// Number of prompt positions n (stripped from the outputs by [`strip_prompt`]).
    pub n_prompt: usize,
}

/// Looks up `ids` in `table` and prepends the adapters' prompt embeddings.
pub(crate) fn prepare(
    ps: &ParamStore,
    ad: &Adapters,
    table: usize,
    input_ids: &Tensor<2, Int>,
    attention_mask: &Tensor<2, Int>,
) -> Prepared {
    let [b, t] = input_ids.dims();
    let x = embed(ps.t2(table), input_ids.clone());
    let mask0 = host_ints(attention_mask);
    let ids0 = host_ints(input_ids);
    match ad.prompt {
        Some((id, n)) if n > 0 => {
            let e = ps.param(id).shape[1];
            let p = ps.t2(id).reshape([1, n, e]).repeat_dim(0, b);
            let x = Tensor::cat(vec![p, x], 1);
            let tt = n + t;
            let mut mask = Vec::with_capacity(b * tt);
            let mut ids = Vec::with_capacity(b * tt);
            for r in 0..b {
                mask.extend(std::iter::repeat_n(1, n));
                mask.extend_from_slice(&mask0[r * t..(r + 1) * t]);
                ids.extend(std::iter::repeat_n(-1, n));
                ids.extend_from_slice(&ids0[r * t..(r + 1) * t]);
            }
            Prepared {
                x,
                mask,
                ids,
                b,
                t: tt,
                n_prompt: n,
            }
        }
        _ => Prepared {
            x,
            mask: mask0,
            ids: ids0,
            b,
            t,
            n_prompt: 0,
        },
    }
}

/// Drops the first `n` (prompt) positions: `[B, n + T, H]` → `[B, T, H]`.
pub(crate) fn strip_prompt(x: Tensor<3>, n: usize) -> Tensor<3> {
    if n == 0 {
        return x;
    }
    let t = x.dims()[1];
    x.narrow(1, n, t - n)
}

/// Positions for RoPE and absolute tables indexed from 0 (LLaMA family, GPT-2):
/// a real token gets `cumsum(mask) − 1` (its index among the real tokens of its row), a pad
/// gets `max(t − leading pads, 0)`. For right padding this is HF's `arange(T)` exactly; for
/// left padding the real tokens get the positions they would have without the padding.
pub(crate) fn positions_from_mask(mask: &[i64], b: usize, t: usize) -> Vec<i64> {
    let mut out = Vec::with_capacity(b * t);
    for r in 0..b {
        let row = &mask[r * t..(r + 1) * t];
        let lead = row.iter().take_while(|&&m| m == 0).count() as i64;
        let mut c = 0i64;
        for (j, &m) in row.iter().enumerate() {
            if m != 0 {
                out.push(c);
                c += 1;
            } else {
                out.push((j as i64 - lead).max(0));
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// RoPE
// ---------------------------------------------------------------------------------------

/// Rotary position embedding in the rotate-half (GPT-NeoX) form.
#[derive(Debug, Clone)]
pub(crate) struct Rope {
    /// Inverse frequencies `θ^(−2i/d)` for i < d/2 (already divided by a linear scaling
    /// factor), in f64.
    pub inv_freq: Vec<f64>,
    /// Head dim d (rotated dims).
    pub dim: usize,
    /// `attention_factor` multiplying cos and sin (1 for default RoPE).
    pub mscale: f64,
}

impl Rope {
    /// Reads `rope_parameters` (transformers 5) or `rope_scaling` + top-level `rope_theta`
    /// (older) from an HF config. Supports rope types `default`, `linear` and `llama3`.
    pub fn from_config(v: &Value, dim: usize, path: &Path) -> Result<Self, ModelError> {
        let params = cfg_get(v, &["rope_parameters"]);
        let scaling = cfg_get(v, &["rope_scaling"]);
        let theta = params
            .and_then(|p| p.get("rope_theta"))
            .and_then(Value::as_f64)
            .map_or_else(|| cfg_f64(v, &["rope_theta"], 10000.0, path), Ok)?;
        let spec = params.or(scaling);
        let rope_type = spec
            .and_then(|p| p.get("rope_type").or_else(|| p.get("type")))
            .and_then(Value::as_str)
            .unwrap_or("default")
            .to_string();
        if dim % 2 != 0 {
            return Err(cfg_err(
                path,
                format!("head_dim {dim} must be even for RoPE"),
            ));
        }
        let mut inv_freq: Vec<f64> = (0..dim / 2)
            .map(|i| 1.0 / theta.powf(2.0 * i as f64 / dim as f64))
            .collect();
        let num = |k: &str, d: f64| {
            spec.and_then(|p| p.get(k))
                .and_then(Value::as_f64)
                .unwrap_or(d)
        };
        match rope_type.as_str() {
            "default" => {}
            "linear" => {
                let f = num("factor", 1.0);
                inv_freq.iter_mut().for_each(|x| *x /= f);
            }
            "llama3" => {
                let factor = num("factor", 8.0);
                let low = num("low_freq_factor", 1.0);
                let high = num("high_freq_factor", 4.0);
                let old = num("original_max_position_embeddings", 8192.0);
                let low_wl = old / low;
                let high_wl = old / high;
                for f in &mut inv_freq {
                    let wl = 2.0 * std::f64::consts::PI / *f;
                    if wl > low_wl {
                        *f /= factor;
                    } else if wl >= high_wl {
                        let smooth = (old / wl - low) / (high - low);
                        *f = (1.0 - smooth) * *f / factor + smooth * *f;
                    }
                }
            }
            other => {
                return Err(ModelError::UnsupportedOption {
                    path: path.into(),
                    key: "rope_parameters.rope_type".into(),
                    value: format!("\"{other}\""),
                });
            }
        }
        Ok(Self {
            inv_freq,
            dim,
            mscale: 1.0,
        })
    }

    /// cos and sin tables `[B, T, 1, d]` for host positions `[B·T]` (computed in f64).
    pub fn tables(&self, pos: &[i64], b: usize, t: usize, dev: &Device) -> (Tensor<4>, Tensor<4>) {
        let d = self.dim;
        let h = d / 2;
        let mut c = Vec::with_capacity(b * t * d);
        let mut s = Vec::with_capacity(b * t * d);
        for &p in pos {
            for j in 0..d {
                let a = p as f64 * self.inv_freq[j % h];
                c.push((a.cos() * self.mscale) as f32);
                s.push((a.sin() * self.mscale) as f32);
            }
        }
        (
            Tensor::<4>::from_data(TensorData::new(c, [b, t, 1, d]), dev),
            Tensor::<4>::from_data(TensorData::new(s, [b, t, 1, d]), dev),
        )
    }
}

/// Applies RoPE to `x` `[B, T, heads·d]` with tables `[B, T, 1, d]`:
/// `x cos + rotate_half(x) sin`, `rotate_half([x₁, x₂]) = [−x₂, x₁]`.
pub(crate) fn apply_rope(
    x: Tensor<3>,
    heads: usize,
    cos: &Tensor<4>,
    sin: &Tensor<4>,
) -> Tensor<3> {
    let [b, t, f] = x.dims();
    let d = f / heads;
    let x = x.reshape([b, t, heads, d]);
    let x1 = x.clone().narrow(3, 0, d / 2);
    let x2 = x.clone().narrow(3, d / 2, d / 2);
    let rot = Tensor::cat(vec![x2.neg(), x1], 3);
    (x * cos.clone() + rot * sin.clone()).reshape([b, t, f])
}

// ---------------------------------------------------------------------------------------
// Attention
// ---------------------------------------------------------------------------------------

/// Additive attention bias `[B, 1, T, P + T]` (P prefix keys, always visible) and, if some
/// query sees no key at all, a `[B, 1, T, 1]` multiplier that zeroes those rows (torch SDPA
/// returns 0 there).
#[derive(Debug, Clone)]
pub(crate) struct AttnMask {
    pub bias: Tensor<4>,
    pub row_valid: Option<Tensor<4>>,
}

/// Builds the attention mask from a host key mask `[B·T]`: key j is visible to query i iff it
/// is real and, if `causal`, `j ≤ i`, and, with a `window` w, `i − w < j`.
pub(crate) fn attn_mask(
    mask: &[i64],
    b: usize,
    t: usize,
    n_prefix: usize,
    causal: bool,
    window: Option<usize>,
    dev: &Device,
) -> AttnMask {
    let tk = n_prefix + t;
    let mut bias = vec![0f32; b * t * tk];
    let mut valid = vec![1f32; b * t];
    let mut any_empty = false;
    for r in 0..b {
        for i in 0..t {
            let row = &mut bias[(r * t + i) * tk..(r * t + i + 1) * tk];
            let mut seen = n_prefix > 0;
            for j in 0..t {
                let ok =
                    mask[r * t + j] != 0 && (!causal || j <= i) && window.is_none_or(|w| i < j + w);
                if ok {
                    seen = true;
                } else {
                    row[n_prefix + j] = NEG;
                }
            }
            if !seen {
                valid[r * t + i] = 0.0;
                any_empty = true;
            }
        }
    }
    AttnMask {
        bias: Tensor::<4>::from_data(TensorData::new(bias, [b, 1, t, tk]), dev),
        row_valid: any_empty
            .then(|| Tensor::<4>::from_data(TensorData::new(valid, [b, 1, t, 1]), dev)),
    }
}

/// Shape of one attention layer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AttnShape {
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (divides `heads`; query head h uses kv head `h / (heads / kv_heads)`).
    pub kv_heads: usize,
    /// Head dim.
    pub head_dim: usize,
    /// Score scale (usually `1/√head_dim`).
    pub scale: f64,
}

/// Scaled dot-product attention with GQA, the adapters' prefix keys/values of layer `layer`
/// and a safe softmax.
///
/// `q` `[B, T, heads·d]`, `k`/`v` `[B, T, kv_heads·d]` (after RoPE) → `[B, T, heads·d]`.
/// If `capture` is given, `(k, v)` of this layer are pushed to it (before the prefix).
#[allow(clippy::too_many_arguments)]
pub(crate) fn attention(
    ps: &ParamStore,
    ad: &Adapters,
    layer: usize,
    q: Tensor<3>,
    k: Tensor<3>,
    v: Tensor<3>,
    mask: &AttnMask,
    s: AttnShape,
    capture: &mut Option<&mut KvCapture>,
) -> Tensor<3> {
    let [b, t, _] = q.dims();
    let (nh, kvh, d) = (s.heads, s.kv_heads, s.head_dim);
    let rep = nh / kvh;
    if let Some(c) = capture.as_deref_mut() {
        c.push((k.clone(), v.clone()));
    }
    let (k, v) = match ad.prefix.get(layer) {
        Some(&(pk, pv)) if ad.n_prefix > 0 => {
            let n = ad.n_prefix;
            let f = kvh * d;
            let pk = ps.t2(pk).reshape([1, n, f]).repeat_dim(0, b);
            let pv = ps.t2(pv).reshape([1, n, f]).repeat_dim(0, b);
            (Tensor::cat(vec![pk, k], 1), Tensor::cat(vec![pv, v], 1))
        }
        _ => (k, v),
    };
    let tk = k.dims()[1];
    let q = q
        .reshape([b, t, nh, d])
        .swap_dims(1, 2)
        .reshape([b, kvh, rep * t, d]);
    let k = k.reshape([b, tk, kvh, d]).swap_dims(1, 2);
    let v = v.reshape([b, tk, kvh, d]).swap_dims(1, 2);
    let scores = q
        .matmul(k.swap_dims(2, 3))
        .mul_scalar(s.scale)
        .reshape([b, nh, t, tk]);
    let mut p = softmax(scores + mask.bias.clone(), 3);
    if let Some(rv) = &mask.row_valid {
        p = p * rv.clone();
    }
    p.reshape([b, kvh, rep * t, tk])
        .matmul(v)
        .reshape([b, nh, t, d])
        .swap_dims(1, 2)
        .reshape([b, t, nh * d])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(n: usize) -> Tensor<2> {
        // -12 … 12 plus a few special values.
        let mut v: Vec<f32> = (0..n).map(|i| -12.0 + 24.0 * i as f32 / n as f32).collect();
        v.extend([
            0.0, -0.0, 1e-30, -1e-30, 0.84375, -0.84375, 1.25, -1.25, 2.857, 6.0, -6.0,
        ]);
        let len = v.len();
        Tensor::from_data(TensorData::new(v, [1, len]), &Device::flex())
    }

    fn max_ulp(a: Tensor<2>, b: Tensor<2>) -> (u32, f32) {
        let a = a.into_data().try_to_vec::<f32>().unwrap();
        let b = b.into_data().try_to_vec::<f32>().unwrap();
        let mut worst = (0u32, 0f32);
        for (x, y) in a.iter().zip(&b) {
            let d = (x.to_bits() as i64 - y.to_bits() as i64).unsigned_abs() as u32;
            let d = if x.signum() != y.signum() && (*x != 0.0 || *y != 0.0) {
                u32::MAX
            } else {
                d
            };
            worst = (worst.0.max(d), worst.1.max((x - y).abs()));
        }
        worst
    }

    /// The fused host passes agree with flex's tensor ops: silu bitwise, gelu within 2 ulp.
    #[test]
    fn host_passes_match_tensor_ops() {
        let x = grid(200_001);
        let (u_silu, _) = max_ulp(host_map(x.clone(), silu_f32), act_tensor("silu", x.clone()));
        assert_eq!(u_silu, 0, "silu differs from burn's");
        // gelu: erf may differ by an ulp (std `exp` vs libm `expf`); `1 + erf` cancels in the
        // negative tail, so compare |Δ| against the f32 resolution of erf scaled by |x|.
        let xs = x.clone().into_data().try_to_vec::<f32>().unwrap();
        let a = host_map(x.clone(), gelu_f32)
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let b = act_tensor("gelu", x.clone())
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        for ((&xi, &ai), &bi) in xs.iter().zip(&a).zip(&b) {
            let tol = 2.0 * f32::EPSILON * xi.abs().max(1e-30);
            assert!((ai - bi).abs() <= tol, "gelu({xi}) = {ai} vs {bi}");
        }
        let u = x.clone().flip([1]);
        let n = x.dims()[1];
        let fused = gated_act(
            "silu",
            x.clone().unsqueeze::<3>(),
            u.clone().unsqueeze::<3>(),
        );
        let (u_g, _) = max_ulp(fused.reshape([1, n]), act_tensor("silu", x) * u);
        assert_eq!(u_g, 0, "gated silu differs");
    }

    /// Timing of the fused host passes against the tensor ops (run with `--ignored
    /// --nocapture`, `RAYON_NUM_THREADS=2`).
    #[test]
    #[ignore = "timing"]
    fn host_pass_timing() {
        let dev = Device::flex();
        let n = 1024 * 1536;
        let v: Vec<f32> = (0..n)
            .map(|i| ((i * 37) % 1000) as f32 * 0.01 - 5.0)
            .collect();
        let x = Tensor::<3>::from_data(TensorData::new(v, [16, 64, 1536]), &dev);
        let med = |f: &dyn Fn()| {
            let mut t: Vec<f64> = (0..21)
                .map(|_| {
                    let s = std::time::Instant::now();
                    f();
                    s.elapsed().as_secs_f64() * 1e3
                })
                .collect();
            t.sort_by(f64::total_cmp);
            t[10]
        };
        let a = med(&|| drop(act_tensor("gelu", x.clone() + 0.0)));
        let b = med(&|| drop(act("gelu", x.clone() + 0.0)));
        let c = med(&|| drop(act_tensor("silu", x.clone() + 0.0) * x.clone()));
        let d = med(&|| drop(gated_act("silu", x.clone() + 0.0, x.clone())));
        let e = med(&|| drop(x.clone() + 0.0));
        let rt = med(&|| {
            let y = x.clone() + 0.0;
            let shape = y.dims();
            let v = host_vec(y);
            drop(Tensor::<3>::from_data(TensorData::new(v, shape), &dev));
        });
        println!("round trip (x + 0, to host, back) {rt:.2} ms");
        println!(
            "[16,64,1536]: gelu tensor {a:.2} ms, host {b:.2} ms; silu(g)*u tensor {c:.2} ms, \
             host {d:.2} ms; (x + 0 alone {e:.2} ms)"
        );
    }
}
