//! The offload plan and the block-streaming ZO-SGD step.

use crate::device::device_memory;
use burn::tensor::{DType, Device, Tensor, TensorData};
use half::{bf16, f16};
use zo_models::{LanguageModel, ModelInput};
use zo_optim::noise::gaussian_vec;
use zo_optim::optim::StepCtx;
use zo_optim::{NoiseKey, ParamStore, ZoSgd, stream};

/// Errors of the offload runtime. All are about the plan or the input; none leaves the
/// host parameters in a partial state.
#[derive(Debug, thiserror::Error)]
pub enum OffloadError {
    /// A device name that is unknown or not compiled in.
    #[error("device `{name}`: {msg}")]
    Device {
        /// The name as given.
        name: String,
        /// What is wrong and what to do.
        msg: String,
    },
    /// The resident set alone (embeddings, final norm, head) exceeds the budget.
    #[error(
        "the resident set (embeddings, final norm, head: {resident_bytes} bytes on the device, \
         two copies of each trainable tensor) does not fit the device budget of {budget} bytes; \
         raise --device-budget to at least {need} bytes or freeze those parameters (LoRA / \
         prefix / prompt schemes)"
    )]
    ResidentTooLarge {
        /// Device bytes of the resident set.
        resident_bytes: u64,
        /// The budget.
        budget: u64,
        /// Smallest budget that fits the resident set and one layer.
        need: u64,
    },
    /// One transformer layer does not fit next to the resident set.
    #[error(
        "block `{block}` needs {block_bytes} bytes on the device (two copies of each trainable \
         tensor) next to the resident set's {resident_bytes} bytes, over the device budget of \
         {budget} bytes; raise --device-budget to at least {need} bytes"
    )]
    BlockTooLarge {
        /// The block, e.g. `layer.3`.
        block: String,
        /// Its device bytes.
        block_bytes: u64,
        /// Device bytes of the resident set.
        resident_bytes: u64,
        /// The budget.
        budget: u64,
        /// Smallest budget that fits.
        need: u64,
    },
    /// A hyper-parameter the offload step does not support.
    #[error("offload runtime: {0}")]
    Unsupported(String),
    /// A block names a parameter the store does not hold.
    #[error("block `{block}` names parameter `{name}`, which the parameter store does not hold")]
    Coverage {
        /// The block.
        block: String,
        /// The parameter name.
        name: String,
    },
    /// The device cannot hold tensors of the transfer precision.
    #[error(
        "device {device} cannot hold {dtype} tensors, so `transfer = \"{transfer}\"` cannot be \
         used there; use transfer = \"f32\"{alt}"
    )]
    TransferDtype {
        /// The device, in words.
        device: String,
        /// The dtype.
        dtype: String,
        /// The transfer name.
        transfer: &'static str,
        /// Another precision that the device supports, if any.
        alt: String,
    },
    /// ℓ₊ or ℓ₋ is not finite; the host parameters were restored to θ.
    #[error("diverged at step {step}: ℓ₊ = {loss_plus}, ℓ₋ = {loss_minus}")]
    Diverged {
        /// The step.
        step: u64,
        /// ℓ(θ + μz).
        loss_plus: f32,
        /// ℓ(θ − μz).
        loss_minus: f32,
    },
}

/// Precision of parameters on the way host → device (device compute is always f32).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    /// Exact: the host sends θ + μz and θ − μz in f32 (8 bytes per trainable element).
    F32,
    /// The host sends θ and z as bfloat16 (4 bytes per trainable element); the device forms
    /// θ ± μz in f32.
    Bf16,
    /// As [`Transfer::Bf16`] with IEEE half precision (ZO2's default offloading precision).
    F16,
}

impl Transfer {
    /// Parses `f32`, `bf16` or `f16`.
    ///
    /// # Errors
    /// [`OffloadError::Unsupported`] naming the accepted values.
    pub fn parse(s: &str) -> Result<Self, OffloadError> {
        match s {
            "f32" => Ok(Self::F32),
            "bf16" => Ok(Self::Bf16),
            "f16" => Ok(Self::F16),
            other => Err(OffloadError::Unsupported(format!(
                "transfer `{other}` is not one of f32, bf16, f16"
            ))),
        }
    }

    /// The config name.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
            Self::F16 => "f16",
        }
    }

    fn dtype(self) -> DType {
        match self {
            Self::F32 => DType::F32,
            Self::Bf16 => DType::BF16,
            Self::F16 => DType::F16,
        }
    }
}

/// Settings of the runtime.
#[derive(Debug, Clone)]
pub struct OffloadConfig {
    /// Where the layers compute (any burn device; see [`crate::parse_device`]).
    pub device: Device,
    /// Device bytes the parameters may occupy (resident set + ring of layers).
    pub budget_bytes: u64,
    /// Transfer precision.
    pub transfer: Transfer,
    /// At most this many layers on the device at once (1 = no prefetch; 2 = the next layer
    /// is prepared and uploaded while the current one computes). Default 2.
    pub max_ring: usize,
    /// Sample the backend's memory accounting after every upload and layer (costs a queue
    /// round trip each on wgpu / CUDA). Default true.
    pub measure_memory: bool,
}

impl OffloadConfig {
    /// A config with `max_ring = 2`, f32 transfer and memory sampling on.
    pub fn new(device: Device, budget_bytes: u64) -> Self {
        Self {
            device,
            budget_bytes,
            transfer: Transfer::F32,
            max_ring: 2,
            measure_memory: true,
        }
    }
}

/// Where each parameter lives and what the device needs, in bytes (f32 on the device; each
/// trainable tensor twice — θ + μz and θ − μz — while it is there).
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Ids held on the device for the whole step: every parameter outside the `layer.N`
    /// blocks (embeddings, final norm, head, a classifier head, prompt embeddings).
    pub resident: Vec<usize>,
    /// Ids of block `layer.l`, for every layer l in forward order.
    pub layers: Vec<Vec<usize>>,
    /// Device bytes of the resident set.
    pub resident_bytes: u64,
    /// Device bytes of each layer while it is on the device.
    pub layer_bytes: Vec<u64>,
    /// Layers on the device at once (1 or 2).
    pub ring: usize,
    /// The budget the plan was made for.
    pub budget_bytes: u64,
    /// Host → device bytes of one step (each layer once, the trainable resident tensors once).
    pub bytes_per_step: u64,
}

fn device_bytes(host: &ParamStore, ids: &[usize]) -> u64 {
    ids.iter()
        .map(|&i| {
            let p = host.param(i);
            4 * p.numel() as u64 * if p.trainable { 2 } else { 1 }
        })
        .sum()
}

fn transfer_bytes(host: &ParamStore, ids: &[usize], t: Transfer) -> u64 {
    ids.iter()
        .map(|&i| {
            let p = host.param(i);
            let n = p.numel() as u64;
            match (t, p.trainable) {
                (Transfer::F32, true) => 8 * n,
                (Transfer::F32, false) => 4 * n,
                (_, true) => 4 * n,
                (_, false) => 2 * n,
            }
        })
        .sum()
}

impl Plan {
    /// Splits the model's parameters into the resident set and the layers, and sizes the
    /// ring: two layers if they fit next to the resident set, else one.
    ///
    /// # Errors
    /// [`OffloadError::Coverage`] if a block names a parameter the store lacks;
    /// [`OffloadError::ResidentTooLarge`] / [`OffloadError::BlockTooLarge`] naming the bytes
    /// and the budget when even one layer does not fit.
    pub fn new(
        model: &dyn LanguageModel,
        host: &ParamStore,
        cfg: &OffloadConfig,
    ) -> Result<Self, OffloadError> {
        let n_layers = model.info().num_layers;
        let mut layers: Vec<Vec<usize>> = vec![Vec::new(); n_layers];
        let mut in_layer = vec![false; host.params().len()];
        for b in model.blocks() {
            let Some(l) = b
                .name
                .strip_prefix("layer.")
                .and_then(|s| s.parse::<usize>().ok())
                .filter(|&l| l < n_layers)
            else {
                continue;
            };
            for name in &b.param_names {
                let id = host.id(name).map_err(|_| OffloadError::Coverage {
                    block: b.name.clone(),
                    name: name.clone(),
                })?;
                layers[l].push(id);
                in_layer[id] = true;
            }
        }
        let resident: Vec<usize> = (0..host.params().len()).filter(|&i| !in_layer[i]).collect();
        let resident_bytes = device_bytes(host, &resident);
        let layer_bytes: Vec<u64> = layers.iter().map(|ids| device_bytes(host, ids)).collect();
        let (max_l, max_bytes) = layer_bytes
            .iter()
            .copied()
            .enumerate()
            .max_by_key(|&(_, b)| b)
            .unwrap_or((0, 0));
        let budget = cfg.budget_bytes;
        let need = resident_bytes + max_bytes;
        if resident_bytes > budget {
            return Err(OffloadError::ResidentTooLarge {
                resident_bytes,
                budget,
                need,
            });
        }
        let mut ring = cfg.max_ring.clamp(1, 2).min(n_layers.max(1));
        while ring > 0 && resident_bytes + ring as u64 * max_bytes > budget {
            ring -= 1;
        }
        if ring == 0 {
            return Err(OffloadError::BlockTooLarge {
                block: format!("layer.{max_l}"),
                block_bytes: max_bytes,
                resident_bytes,
                budget,
                need,
            });
        }
        let trainable_resident: Vec<usize> = resident
            .iter()
            .copied()
            .filter(|&i| host.param(i).trainable)
            .collect();
        let bytes_per_step = transfer_bytes(host, &trainable_resident, cfg.transfer)
            + layers
                .iter()
                .map(|ids| transfer_bytes(host, ids, cfg.transfer))
                .sum::<u64>();
        Ok(Self {
            resident,
            layers,
            resident_bytes,
            layer_bytes,
            ring,
            budget_bytes: budget,
            bytes_per_step,
        })
    }
}

/// Counters of the runtime since it was built.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OffloadStats {
    /// Steps run.
    pub steps: u64,
    /// Host → device bytes (parameters and directions), all steps.
    pub bytes_uploaded: u64,
    /// Device → host bytes (the two losses of each step).
    pub bytes_downloaded: u64,
    /// Most parameter bytes on the device at once (the runtime's own exact tally).
    pub peak_param_bytes: u64,
    /// Most `bytes_in_use` the backend reported at a sample point (activations included);
    /// `None` on a backend without accounting (flex) or with sampling off.
    pub peak_device_bytes: Option<u64>,
    /// Most `bytes_reserved` the backend reported (its allocator's pages).
    pub peak_device_reserved: Option<u64>,
    /// Memory samples taken.
    pub samples: u64,
}

/// What one offloaded ZO-SGD step measured.
#[derive(Debug, Clone, PartialEq)]
pub struct OffloadStepReport {
    /// ℓ(θ + μz) (nats).
    pub loss_plus: f32,
    /// ℓ(θ − μz) (nats).
    pub loss_minus: f32,
    /// g = (ℓ₊ − ℓ₋) / (2μ).
    pub projected_grad: f32,
    /// Forward passes (2: both streams through every layer).
    pub forward_passes: u64,
    /// Host → device bytes of this step.
    pub bytes_uploaded: u64,
}

impl OffloadStepReport {
    /// Mean of the two perturbed losses (what the in-memory step reports as its loss).
    pub fn loss(&self) -> f32 {
        (self.loss_plus + self.loss_minus) / 2.0
    }
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    key: NoiseKey,
    mu: f32,
    g: f32,
    lr: f32,
    wd: f32,
}

/// The offload runtime: host master parameters, two device stores (the θ + μz and θ − μz
/// streams) that hold the resident set and the layers currently streamed in.
#[derive(Debug)]
pub struct Offload {
    cfg: OffloadConfig,
    plan: Plan,
    /// Number of parameters of the host store the plan was made for.
    n_params: usize,
    plus: ParamStore,
    minus: ParamStore,
    pending: Option<Pending>,
    /// Per group (0 = resident, 1 + l = layer l): the pending update is still owed.
    owed: Vec<bool>,
    /// Layers currently on the device.
    loaded: Vec<bool>,
    /// Frozen resident tensors are on the device (uploaded once).
    frozen_resident_up: bool,
    /// Parameter bytes on the device now.
    param_bytes: u64,
    stats: OffloadStats,
}

impl Offload {
    /// Plans the placement of the host parameters `host` (any device; normally flex). The
    /// runtime does not own them: every call that changes them takes the same store.
    ///
    /// # Errors
    /// See [`Plan::new`]; [`OffloadError::TransferDtype`] when the device cannot hold the
    /// transfer precision.
    pub fn new(
        model: &dyn LanguageModel,
        host: &ParamStore,
        cfg: OffloadConfig,
    ) -> Result<Self, OffloadError> {
        let plan = Plan::new(model, host, &cfg)?;
        if cfg.transfer != Transfer::F32 && !cfg.device.supports_dtype(cfg.transfer.dtype()) {
            let alt = [Transfer::Bf16, Transfer::F16]
                .into_iter()
                .find(|t| *t != cfg.transfer && cfg.device.supports_dtype(t.dtype()))
                .map(|t| format!(" or \"{}\"", t.name()))
                .unwrap_or_default();
            return Err(OffloadError::TransferDtype {
                device: format!("{:?}", cfg.device),
                dtype: format!("{:?}", cfg.transfer.dtype()),
                transfer: cfg.transfer.name(),
                alt,
            });
        }
        let plus = host.skeleton(cfg.device.clone());
        let minus = host.skeleton(cfg.device.clone());
        let n_layers = plan.layers.len();
        Ok(Self {
            cfg,
            plan,
            n_params: host.params().len(),
            plus,
            minus,
            pending: None,
            owed: vec![false; n_layers + 1],
            loaded: vec![false; n_layers],
            frozen_resident_up: false,
            param_bytes: 0,
            stats: OffloadStats::default(),
        })
    }

    /// The placement plan.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Counters since construction.
    pub fn stats(&self) -> &OffloadStats {
        &self.stats
    }

    /// The settings.
    pub fn config(&self) -> &OffloadConfig {
        &self.cfg
    }

    /// Whether a deferred update is waiting to be applied to some block.
    pub fn has_pending_update(&self) -> bool {
        self.pending.is_some() && self.owed.iter().any(|&o| o)
    }

    /// Applies every deferred update to `host` (ZO2 leaves the last one unapplied before
    /// evaluation): call it before evaluating, saving or reading the parameters.
    ///
    /// # Panics
    /// If `host` is not the store the runtime was built for (another parameter count).
    pub fn flush(&mut self, host: &mut ParamStore) {
        self.check(host);
        for g in 0..self.owed.len() {
            self.settle(host, g);
        }
        self.pending = None;
    }

    fn check(&self, host: &ParamStore) {
        assert_eq!(
            host.params().len(),
            self.n_params,
            "Offload: called with another parameter store than the one it was planned for"
        );
    }

    fn group_ids(&self, group: usize) -> &[usize] {
        if group == 0 {
            &self.plan.resident
        } else {
            &self.plan.layers[group - 1]
        }
    }

    /// Applies the pending update to group `group` if it still owes it.
    fn settle(&mut self, host: &mut ParamStore, group: usize) {
        if !self.owed[group] {
            return;
        }
        self.owed[group] = false;
        let Some(p) = self.pending else { return };
        let ids: Vec<usize> = self
            .group_ids(group)
            .iter()
            .copied()
            .filter(|&i| host.param(i).trainable)
            .collect();
        if ids.is_empty() {
            return;
        }
        // f32: the host block holds θ − μz (the in-memory state after ℓ₋); half transfer:
        // the host block holds θ (the device formed θ ± μz), so there is nothing to restore.
        let restore = if self.cfg.transfer == Transfer::F32 {
            p.mu
        } else {
            0.0
        };
        stream::sgd_restore_update(host, &ids, p.key, restore, p.g, p.lr, p.wd);
    }

    fn set(&mut self, plus_side: bool, id: usize, t: Tensor<1>) {
        let store = if plus_side {
            &mut self.plus
        } else {
            &mut self.minus
        };
        store.params_mut()[id].tensor = t;
    }

    fn placeholder(&self) -> Tensor<1> {
        Tensor::<1>::from_data(TensorData::new(Vec::<f32>::new(), [0]), &self.cfg.device)
    }

    /// Sends `values` to the device in the transfer precision; the result is f32 there.
    fn send(&mut self, values: Vec<f32>) -> Tensor<1> {
        let n = values.len();
        let dev = &self.cfg.device;
        match self.cfg.transfer {
            Transfer::F32 => {
                self.stats.bytes_uploaded += 4 * n as u64;
                Tensor::<1>::from_data(TensorData::new(values, [n]), dev)
            }
            Transfer::Bf16 => {
                self.stats.bytes_uploaded += 2 * n as u64;
                let h: Vec<bf16> = values.into_iter().map(bf16::from_f32).collect();
                Tensor::<1>::from_data(TensorData::new(h, [n]), (dev, DType::BF16)).cast(DType::F32)
            }
            Transfer::F16 => {
                self.stats.bytes_uploaded += 2 * n as u64;
                let h: Vec<f16> = values.into_iter().map(f16::from_f32).collect();
                Tensor::<1>::from_data(TensorData::new(h, [n]), (dev, DType::F16)).cast(DType::F32)
            }
        }
    }

    /// Uploads group `group` for step key `key`: settles its deferred update, then puts the
    /// two perturbed copies of each trainable tensor into the ± stores and each frozen tensor
    /// (once) into both.
    fn visit(&mut self, host: &mut ParamStore, group: usize, key: NoiseKey, mu: f32) {
        self.settle(host, group);
        let ids: Vec<usize> = self.group_ids(group).to_vec();
        let (train, frozen): (Vec<usize>, Vec<usize>) =
            ids.iter().partition(|&&i| host.param(i).trainable);
        if group != 0 || !self.frozen_resident_up {
            for &id in &frozen {
                let v = host.values(id);
                self.param_bytes += 4 * v.len() as u64;
                let t = self.send(v);
                self.set(true, id, t.clone());
                self.set(false, id, t);
            }
            if group == 0 {
                self.frozen_resident_up = true;
            }
        }
        if train.is_empty() {
            self.sample();
            return;
        }
        // Drop the previous step's copies (resident set) before the new ones arrive.
        for &id in &train {
            if self.plus.params()[id].tensor.dims()[0] > 0 {
                self.param_bytes -= 8 * host.param(id).numel() as u64;
            }
            let e = self.placeholder();
            self.set(true, id, e.clone());
            self.set(false, id, e);
        }
        match self.cfg.transfer {
            Transfer::F32 => {
                // The in-memory passes, on this block: θ + μz, then θ − μz (left on the host
                // until the update).
                stream::perturb_ids(host, &train, key, mu);
                for &id in &train {
                    let v = host.values(id);
                    let t = self.send(v);
                    self.set(true, id, t);
                }
                stream::perturb_ids(host, &train, key, -2.0 * mu);
                for &id in &train {
                    let v = host.values(id);
                    let t = self.send(v);
                    self.set(false, id, t);
                }
            }
            Transfer::Bf16 | Transfer::F16 => {
                for &id in &train {
                    let (name, n) = {
                        let p = host.param(id);
                        (p.name.clone(), p.numel())
                    };
                    let theta = self.send(host.values(id));
                    let z = self.send(gaussian_vec(key, &name, n, 1.0)).mul_scalar(mu);
                    self.set(true, id, theta.clone() + z.clone());
                    self.set(false, id, theta - z);
                }
            }
        }
        for &id in &train {
            self.param_bytes += 8 * host.param(id).numel() as u64;
        }
        self.sample();
    }

    /// Replaces layer `l`'s tensors in both stores by placeholders.
    fn release(&mut self, host: &ParamStore, l: usize) {
        let ids = self.plan.layers[l].clone();
        for id in ids {
            let n = host.param(id).numel() as u64;
            self.param_bytes -= if host.param(id).trainable {
                8 * n
            } else {
                4 * n
            };
            let e = self.placeholder();
            self.set(true, id, e.clone());
            self.set(false, id, e);
        }
        self.loaded[l] = false;
    }

    fn sample(&mut self) {
        self.stats.peak_param_bytes = self.stats.peak_param_bytes.max(self.param_bytes);
        if !self.cfg.measure_memory {
            return;
        }
        if let Some(m) = device_memory(&self.cfg.device) {
            self.stats.samples += 1;
            let p = self.stats.peak_device_bytes.get_or_insert(0);
            *p = (*p).max(m.bytes_in_use);
            let r = self.stats.peak_device_reserved.get_or_insert(0);
            *r = (*r).max(m.bytes_reserved);
        }
    }

    /// One ZO-SGD step (MeZO Algorithm 1, q = 1, two-sided, Gaussian z) with the layers
    /// streamed through the device.
    ///
    /// `host` is the store given to [`Offload::new`]; it holds the master parameters.
    /// `input` may live on any device (it is moved to the runtime's). `loss` maps a device
    /// store (the θ + μz or θ − μz stream) and the final hidden states `[B, T, H]` of that
    /// stream to the scalar mini-batch loss `[1]` (nats), e.g. cross-entropy over candidate
    /// log-likelihoods; it may read only resident parameters (head, embeddings, a classifier
    /// head). The update is deferred (see the crate docs); `hp.q` must be 1.
    ///
    /// # Errors
    /// [`OffloadError::Unsupported`] for q ≠ 1; [`OffloadError::Diverged`] when a loss is not
    /// finite (the host parameters are then restored to θ and no update is pending).
    pub fn step(
        &mut self,
        host: &mut ParamStore,
        model: &dyn LanguageModel,
        ctx: StepCtx,
        hp: &ZoSgd,
        input: &ModelInput,
        loss: &mut dyn FnMut(&ParamStore, Tensor<3>) -> Tensor<1>,
    ) -> Result<OffloadStepReport, OffloadError> {
        if hp.q != 1 {
            return Err(OffloadError::Unsupported(format!(
                "q = {} (the offload step supports q = 1, one direction per step)",
                hp.q
            )));
        }
        self.check(host);
        let up0 = self.stats.bytes_uploaded;
        let dev = self.cfg.device.clone();
        let input = ModelInput {
            input_ids: input.input_ids.clone().to_device(&dev),
            attention_mask: input.attention_mask.clone().to_device(&dev),
            token_type_ids: input.token_type_ids.clone().map(|t| t.to_device(&dev)),
        };
        let key = stream::step_key(ctx);
        let mu = hp.mu as f32;
        let n_layers = self.plan.layers.len();
        let ring = self.plan.ring;

        self.visit(host, 0, key, mu);
        let (mut xp, sctx) = model.stage_begin(&self.plus, &input);
        let (mut xm, _) = model.stage_begin(&self.minus, &input);
        for l in 0..ring.min(n_layers) {
            self.visit(host, l + 1, key, mu);
            self.loaded[l] = true;
        }
        for l in 0..n_layers {
            if !self.loaded[l] {
                self.visit(host, l + 1, key, mu);
                self.loaded[l] = true;
            }
            // Issue both streams through layer l (asynchronous on GPU backends) …
            xp = model.stage_layer(&self.plus, &sctx, l, xp, &mut None);
            xm = model.stage_layer(&self.minus, &sctx, l, xm, &mut None);
            self.sample();
            // … prepare and upload the next layer meanwhile, then let layer l go.
            if ring > 1 && l + 1 < n_layers && !self.loaded[l + 1] {
                self.visit(host, l + 2, key, mu);
                self.loaded[l + 1] = true;
            }
            self.release(host, l);
        }
        let hp_ = model.stage_end(&self.plus, &sctx, xp);
        let lp_t = loss(&self.plus, hp_);
        let hm_ = model.stage_end(&self.minus, &sctx, xm);
        let lm_t = loss(&self.minus, hm_);
        self.sample();
        let read = |t: Tensor<1>| -> f32 {
            t.into_data()
                .convert::<f32>()
                .as_slice::<f32>()
                .map(|s| s[0])
                .unwrap_or(f32::NAN)
        };
        let lp = read(lp_t);
        let lm = read(lm_t);
        self.stats.bytes_downloaded += 8;
        let g = (lp - lm) / (2.0 * mu);
        if !(lp.is_finite() && lm.is_finite() && g.is_finite()) {
            // Undo the perturbation: every trainable host tensor holds θ − μz (f32 transfer).
            if self.cfg.transfer == Transfer::F32 {
                let train: Vec<usize> = (0..host.params().len())
                    .filter(|&i| host.param(i).trainable)
                    .collect();
                stream::perturb_ids(host, &train, key, mu);
            }
            self.pending = None;
            self.owed.iter_mut().for_each(|o| *o = false);
            return Err(OffloadError::Diverged {
                step: ctx.step,
                loss_plus: lp,
                loss_minus: lm,
            });
        }
        self.pending = Some(Pending {
            key,
            mu,
            g,
            lr: hp.lr as f32,
            wd: hp.weight_decay as f32,
        });
        self.owed.iter_mut().for_each(|o| *o = true);
        self.stats.steps += 1;
        Ok(OffloadStepReport {
            loss_plus: lp,
            loss_minus: lm,
            projected_grad: g,
            forward_passes: 2,
            bytes_uploaded: self.stats.bytes_uploaded - up0,
        })
    }
}
