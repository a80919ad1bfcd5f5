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
pub(crate) fn act<const D: usize>(name: &str, x: Tensor<D>) -> Tensor<D> {
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
