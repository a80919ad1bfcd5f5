//! `zobench validate`: parse and expand a grid, and estimate its cost without training.
//!
//! For every group of cells that share a model, task, template and scheme, the model (when its
//! files are present: a fetched registry model or an existing path) is loaded once, the scheme
//! applied, and one training-batch loss timed after a warm-up (the calibration). A cell's wall
//! time is then estimated as
//!
//! `steps × (forward passes per step + 2 × backward passes per step) × t_batch`
//! `+ (evaluations × dev rows + 2 × test rows) / batch_size × t_batch`
//!
//! (a backward pass costs about two forwards). Cells whose model is not present show `–`.

use crate::cell;
use crate::config::{CellSpec, SweepConfig};
use crate::registry::{self, ModelSource};
use burn::tensor::Device;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;
use zo_optim::Objective;

/// Calibration of one (model, task, template, scheme) group.
struct Calib {
    /// Seconds of one training-batch loss evaluation.
    t_batch: f64,
    /// Rows of the dev and test splits.
    dev: usize,
    test: usize,
    /// The loaded store (for the optimizers' forward-pass counts).
    store: zo_optim::ParamStore,
}

fn present(model: &str) -> bool {
    match registry::resolve_name(model) {
        Ok(ModelSource::Wheel(name)) => registry::WHEEL_MODELS
            .iter()
            .find(|w| w.name == name)
            .is_some_and(|w| crate::fetch::is_present(w)),
        Ok(ModelSource::Local { .. }) => true,
        Err(_) => false,
    }
}

fn calibrate(c: &CellSpec) -> anyhow::Result<Calib> {
    let device = Device::flex();
    let (f, store, _, splits) = cell::load_for_calibration(c, &device)?;
    let n = f.train_len();
    let batch: Vec<usize> = (0..c.batch_size).map(|i| i % n.max(1)).collect();
    let mut obj = f.objective(&batch);
    obj.loss(&store); // warm-up
    let t0 = Instant::now();
    let reps = 2;
    for _ in 0..reps {
        obj.loss(&store);
    }
    let (_, dev, test) = splits.counts();
    Ok(Calib {
        t_batch: t0.elapsed().as_secs_f64() / reps as f64,
        dev,
        test,
        store,
    })
}

/// Prints every cell with its forward passes per step and estimated wall time, and totals.
///
/// # Errors
/// Only I/O errors of stdout; a calibration failure is printed, not returned.
pub fn print(config: &Path, cfg: &SweepConfig) -> anyhow::Result<()> {
    let cells = cfg.expand();
    let mut calib: BTreeMap<String, Option<Calib>> = BTreeMap::new();
    let mut total_fwd = 0u64;
    let mut total_s = 0.0;
    let mut unknown = 0usize;
    for c in &cells {
        let key = format!(
            "{}|{}|{}|{}|{}",
            c.model, c.task, c.template, c.scheme, c.batch_size
        );
        let cal = calib.entry(key).or_insert_with(|| {
            if !present(&c.model) {
                return None;
            }
            match calibrate(c) {
                Ok(k) => Some(k),
                Err(e) => {
                    eprintln!("calibration of {} failed: {e:#}", c.label());
                    None
                }
            }
        });
        // An ICL row (pseudo-optimizer `icl`) trains nothing: dev and test are evaluated once.
        let icl = c.optimizer == crate::config::ICL;
        let opt = if icl {
            None
        } else {
            Some(crate::optim::build(&c.optimizer, &c.hparams)?)
        };
        let (fpps, est) = match (cal, opt) {
            (Some(k), None) => (
                Some(0),
                Some((k.dev + k.test) as f64 / c.batch_size as f64 * k.t_batch),
            ),
            (None, _) => (None, None),
            (Some(k), Some(opt)) => {
                let info = zo_optim::info(&c.optimizer).expect("validated optimizer");
                let fpps = opt.forward_passes_per_step(&k.store);
                let bwd = if info.zeroth_order { 0.0 } else { 1.0 };
                let evals = (c.steps / c.eval_every + 1) as f64;
                let train = c.steps as f64 * (fpps as f64 + 2.0 * bwd) * k.t_batch;
                let eval =
                    (evals * k.dev as f64 + 2.0 * k.test as f64) / c.batch_size as f64 * k.t_batch;
                (Some(fpps), Some(train + eval))
            }
        };
        if let Some(f) = fpps {
            total_fwd += f * c.steps as u64;
        }
        match est {
            Some(s) => total_s += s,
            None => unknown += 1,
        }
        println!(
            "{}  {}  fwd/step {}  est {}",
            c.run_id(),
            c.label(),
            fpps.map_or("–".into(), |f| f.to_string()),
            est.map_or("– (model not fetched)".into(), |s| format!("{s:.0} s"))
        );
    }
    println!(
        "{}: {} cells, {} training forward passes in the calibrated cells, estimated {:.1} min{}",
        config.display(),
        cells.len(),
        total_fwd,
        total_s / 60.0,
        if unknown > 0 {
            format!(" ({unknown} cells without an estimate: their models are not present)")
        } else {
            String::new()
        }
    );
    Ok(())
}
