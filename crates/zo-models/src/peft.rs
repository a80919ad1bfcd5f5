//! Fine-tuning schemes: which parameters are trainable, and the adapter parameters some
//! schemes add. Applying a scheme adds the adapters to the [`ParamStore`], registers them in
//! the model's [`Adapters`] (every family's forward pass consults them generically) and marks
//! exactly the scheme's parameters trainable.
//!
//! | scheme | new parameters | trainable scalars |
//! |---|---|---|
//! | `ft` | none | all |
//! | `lora` | `<linear>.lora_A.weight` `[r, in]`, `<linear>.lora_B.weight` `[out, r]` per target | Σ r·(in + out) |
//! | `prefix` | `prefix.layer.N.key` / `.value` `[n, kv_dim]` per layer | 2·n·L·kv_dim |
//! | `prompt` | `prompt.embeddings` `[n, E]` | n·E |
//! | `head` | none (the `classifier.*` / `score.*` head must exist) | head only |
//!
//! LoRA (Hu et al. 2022): `y = W x + (α/r) B A x`, B = 0 at the start (so the model is
//! unchanged), A ~ N(0, 1/in) from [`zo_optim::noise`] under the seed. Prefix tuning (Li &
//! Liang 2021) as ZO-Bench sets it up: n virtual key/value tokens per layer, initialised with
//! the keys/values (after RoPE) the model computes for n random vocabulary ids, always visible
//! to every query. Prompt tuning (Lester et al. 2021): n virtual input embeddings,
//! initialised with the embeddings of n random vocabulary ids, prepended at the embedding stage
//! (the attention mask is extended and the outputs stripped again).

use crate::error::ModelError;
use crate::model::{Adapters, LanguageModel, ModelInput};
use std::collections::BTreeSet;
use zo_optim::ParamStore;
use zo_optim::noise::{NoiseKey, gaussian_vec, splitmix64};

/// Default LoRA targets: the query and value projections of every family
/// (`q_proj`/`v_proj`: OPT, LLaMA, Mistral, Qwen2; `query`/`value`: BERT, RoBERTa; GPT-2's
/// fused `c_attn`).
pub const DEFAULT_LORA_TARGETS: [&str; 5] = ["q_proj", "v_proj", "query", "value", "c_attn"];

/// A fine-tuning scheme and its settings.
#[derive(Debug, Clone, PartialEq)]
pub enum Scheme {
    /// Full fine-tuning: every parameter.
    Ft,
    /// LoRA on the linear layers whose last path component is one of `targets`.
    Lora {
        /// Rank r (≥ 1).
        rank: usize,
        /// α; the update is scaled by α/r.
        alpha: f32,
        /// Last path components of the target linears (e.g. `q_proj`).
        targets: Vec<String>,
    },
    /// Prefix tuning with `n` virtual key/value tokens per layer.
    Prefix {
        /// Number of virtual tokens (0 = none: the base model).
        n: usize,
    },
    /// Prompt tuning with `n` virtual input embeddings.
    Prompt {
        /// Number of virtual tokens (0 = none: the base model).
        n: usize,
    },
    /// The classification head only (`classifier.*` or `score.*`).
    Head,
}

impl Scheme {
    /// Parses a scheme name with its default settings: `ft`, `lora` (r 8, α 16, q/v
    /// projections), `prefix` (5 tokens), `prompt` (10 tokens), `head`.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "ft" => Self::Ft,
            "lora" => Self::Lora {
                rank: 8,
                alpha: 16.0,
                targets: DEFAULT_LORA_TARGETS.iter().map(|s| s.to_string()).collect(),
            },
            "prefix" => Self::Prefix { n: 5 },
            "prompt" => Self::Prompt { n: 10 },
            "head" => Self::Head,
            _ => return None,
        })
    }

    /// The CLI name (`ft`, `lora`, `prefix`, `prompt`, `head`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Ft => "ft",
            Self::Lora { .. } => "lora",
            Self::Prefix { .. } => "prefix",
            Self::Prompt { .. } => "prompt",
            Self::Head => "head",
        }
    }
}

/// What [`apply_scheme`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemeReport {
    /// Scheme name.
    pub scheme: String,
    /// Names of the parameters the scheme added to the store.
    pub added: Vec<String>,
    /// Trainable scalars after applying it.
    pub trainable: usize,
    /// All scalars in the store (base model + adapters).
    pub total: usize,
}

/// The `n` token ids (each < `vocab`) that prefix and prompt tuning initialise from under
/// `seed` (SplitMix64 draws, uniform up to a negligible modulo bias).
pub fn random_token_ids(seed: u64, n: usize, vocab: usize) -> Vec<i64> {
    let mut s = seed ^ 0x5EED_1D5_u64;
    (0..n)
        .map(|_| (splitmix64(&mut s) % vocab.max(1) as u64) as i64)
        .collect()
}

fn host(t: burn::tensor::Tensor<2>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 data")
}

/// Applies `scheme` to a loaded model: adds its adapter parameters to `store` (random parts
/// drawn under `seed`), registers them with the model, and marks exactly the scheme's
/// parameters trainable. Returns what was added and the trainable count.
///
/// # Errors
/// [`crate::ModelError::Scheme`] if LoRA matches no linear layer or has rank 0, if `head`
/// finds no head parameters, or if an adapter name is already in the store (a scheme applied
/// twice).
pub fn apply_scheme(
    model: &mut dyn LanguageModel,
    store: &mut ParamStore,
    scheme: &Scheme,
    seed: u64,
) -> Result<SchemeReport, ModelError> {
    let info = model.info().clone();
    let err = |msg: String| ModelError::Scheme {
        path: info.source.clone(),
        scheme: scheme.name().into(),
        msg,
    };
    let mut ad: Adapters = model.adapters().clone();
    let mut added: Vec<String> = Vec::new();
    let mut insert = |store: &mut ParamStore, name: &str, shape: &[usize], v: Vec<f32>| {
        let id = store
            .insert(name, shape, v)
            .map_err(|e| err(e.to_string()))?;
        added.push(name.to_string());
        Ok::<usize, ModelError>(id)
    };
    let trainable: Option<BTreeSet<String>> = match scheme {
        Scheme::Ft => None,
        Scheme::Lora {
            rank,
            alpha,
            targets,
        } => {
            if *rank == 0 {
                return Err(err("rank must be ≥ 1".into()));
            }
            let lins: Vec<_> = model
                .linears()
                .into_iter()
                .filter(|l| {
                    let last = l.name.rsplit('.').next().unwrap_or(&l.name);
                    targets.iter().any(|t| t == last)
                })
                .collect();
            if lins.is_empty() {
                return Err(err(format!("no linear layer matches targets {targets:?}")));
            }
            for l in &lins {
                let a_name = format!("{}.lora_A.weight", l.name);
                let b_name = format!("{}.lora_B.weight", l.name);
                let std = 1.0 / (l.d_in as f32).sqrt();
                let a = gaussian_vec(NoiseKey(seed), &a_name, rank * l.d_in, std);
                let a = insert(store, &a_name, &[*rank, l.d_in], a)?;
                let b = insert(store, &b_name, &[l.d_out, *rank], vec![0.0; l.d_out * rank])?;
                ad.lora.insert(l.name.clone(), (a, b));
            }
            ad.lora_scale = alpha / *rank as f32;
            Some(added.iter().cloned().collect())
        }
        Scheme::Prefix { n } => {
            let n = *n;
            if n > 0 {
                let ids = random_token_ids(seed, n, info.vocab_size);
                let input = ModelInput::from_host(&ids, &vec![1; n], 1, n, store.device());
                let kv = model.layer_kv(store, &input);
                let f = info.kv_dim();
                let mut prefix = Vec::with_capacity(kv.len());
                for (l, (k, v)) in kv.into_iter().enumerate() {
                    let k = host(k.reshape([n, f]));
                    let v = host(v.reshape([n, f]));
                    let kid = insert(store, &format!("prefix.layer.{l}.key"), &[n, f], k)?;
                    let vid = insert(store, &format!("prefix.layer.{l}.value"), &[n, f], v)?;
                    prefix.push((kid, vid));
                }
                ad.prefix = prefix;
            }
            ad.n_prefix = n;
            Some(added.iter().cloned().collect())
        }
        Scheme::Prompt { n } => {
            let n = *n;
            if n > 0 {
                let blocks = model.blocks();
                let table = blocks
                    .first()
                    .and_then(|b| b.param_names.first())
                    .ok_or_else(|| err("model has no embedding block".into()))?;
                let tid = store.id(table).map_err(|e| err(e.to_string()))?;
                let ids = random_token_ids(seed, n, info.vocab_size);
                let idx = burn::tensor::Tensor::<1, burn::tensor::Int>::from_data(
                    burn::tensor::TensorData::new(ids, [n]),
                    store.device(),
                );
                let rows = host(store.t2(tid).select(0, idx));
                let e = info.embed_dim;
                let id = insert(store, "prompt.embeddings", &[n, e], rows)?;
                ad.prompt = Some((id, n));
            } else {
                ad.prompt = None;
            }
            Some(added.iter().cloned().collect())
        }
        Scheme::Head => {
            let names: BTreeSet<String> = store
                .params()
                .iter()
                .map(|p| p.name.clone())
                .filter(|n| n.starts_with("classifier.") || n.starts_with("score."))
                .collect();
            if names.is_empty() {
                return Err(err(
                    "the model has no classification head (`classifier.*` / `score.*`)".into(),
                ));
            }
            Some(names)
        }
    };
    match &trainable {
        None => store.set_trainable(|_| true),
        Some(set) => store.set_trainable(|n| set.contains(n)),
    }
    model.set_adapters(ad);
    Ok(SchemeReport {
        scheme: scheme.name().into(),
        added,
        trainable: store.num_trainable(),
        total: store.num_params(),
    })
}
