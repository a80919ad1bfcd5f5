//! Criterion benchmarks for zobench (`cargo bench -p zobench-benchmarks`).
//!
//! * `noise/fill_gaussian_1M` — direction generation throughput (elements / s);
//! * `bert-tiny/forward` vs `bert-tiny/zo_sgd_step` — a ZO-SGD step against one forward pass on
//!   the same batch (the step should cost about two forwards plus three passes of noise).
#![warn(missing_docs)]
