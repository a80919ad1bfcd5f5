//! # zobench — the runner
//!
//! Expands sweep grids (`configs/*.toml`), runs each cell (model × task × scheme × optimizer ×
//! hyper-parameters × seed) in its own child process, appends one [`record::RunRecord`] per
//! cell to `results/<sweep>/runs.jsonl`, and writes tables (polars) and plots (plotters).
//! The binary `zobench` wraps these modules in a CLI.
#![warn(missing_docs)]

pub mod bench;
pub mod cell;
pub mod compare;
pub mod config;
pub mod error;
pub mod fetch;
pub mod inspect;
pub mod lm;
pub mod optim;
pub mod provenance;
pub mod record;
pub mod registry;
pub mod report;
pub mod sweep;
pub mod validate;
