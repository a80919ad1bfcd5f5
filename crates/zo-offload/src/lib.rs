//! # zo-offload — ZO2-style CPU ↔ device offload runtime (placeholder)
//!
//! This crate will hold the offload runtime of `DESIGN.md`: parameters kept on the host,
//! transformer blocks streamed to the device one at a time, and both perturbed forward passes
//! (θ + μz and θ − μz) computed per block while it is resident (after Wang et al., "ZO2:
//! Scalable Zeroth-Order Fine-Tuning for Extremely Large Language Models with Limited GPU
//! Memory"). It has no code yet; the runner does not depend on any item of it.
#![warn(missing_docs)]

/// Version of the offload runtime's on-wire block format (none exists yet).
pub const BLOCK_FORMAT_VERSION: u32 = 0;
