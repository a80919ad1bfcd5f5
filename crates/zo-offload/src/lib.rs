//! # zo-offload — a ZO2-style offload runtime for zeroth-order fine-tuning
//!
//! After Wang et al., "ZO2: Scalable Zeroth-Order Fine-Tuning for Extremely Large Language
//! Models with Limited GPU Memory" (2025): the f32 master copy of every parameter lives on the
//! **host**; the **device** holds the resident set (embeddings, final norm, head and any
//! parameter outside the transformer layers) and a ring of at most two transformer layers,
//! sized by a byte budget. One ZO-SGD step (MeZO Algorithm 1, two-sided RGE, q = 1) runs the
//! model layer by layer: each layer is uploaded **once per step** and computes **both**
//! perturbed streams (activations of θ + μz and of θ − μz) before it is released; the next
//! layer's upload is prepared on the host while the device computes.
//!
//! The update of a layer needs the projected gradient g = (ℓ₊ − ℓ₋)/(2μ), known only at the
//! end of the step, so — as in ZO2 — it is deferred and applied on the host when the layer is
//! next visited ([`Offload::step`]) or on [`Offload::flush`], which evaluation and saving
//! must call first (ZO2's evaluation skips the pending update; this runtime's callers never
//! read parameters without flushing).
//!
//! **Exactness.** With [`Transfer::F32`] the host runs the very passes of the in-memory
//! `zo-sgd` (through [`zo_optim::stream`]) and uploads the perturbed copies θ ± μz, so on the
//! same backend the parameters after n steps are bit-identical to the in-memory optimizer's
//! (tested). This costs 2 × 4 bytes per trainable element per step — what ZO2 would move with
//! a host-generated z (θ and z) until a device kernel reproduces the host's direction
//! generator. With [`Transfer::Bf16`] / [`Transfer::F16`] θ and z travel at 2 bytes each
//! (half the bytes) and the device forms θ ± μz in f32; results then differ from the f32 run
//! by the rounding of θ and z (bounded in the tests).
//!
//! **Memory.** [`Plan`] counts the device bytes of the parameters (f32 on the device, two
//! copies of every trainable tensor while it is resident); [`OffloadStats`] reports the
//! runtime's own tally and, on backends that keep one (wgpu, CUDA), the backend's own
//! `bytes_in_use` sampled after every upload and every layer — activations included.
#![warn(missing_docs)]

mod device;
mod inject;
mod runtime;

pub use device::{DeviceMemory, device_memory, parse_device};
pub use inject::WithHidden;
pub use runtime::{
    Offload, OffloadConfig, OffloadError, OffloadStats, OffloadStepReport, Plan, Transfer,
};

/// Version of the runtime's placement plan (bumped when what lives where changes).
pub const PLAN_VERSION: u32 = 1;
