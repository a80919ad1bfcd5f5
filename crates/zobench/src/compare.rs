//! `zobench compare BASELINE CURRENT`: the CI regression gate.
//!
//! Cells of the two results folders are matched by their spec without the seed (model, task,
//! scheme, optimizer, hyper-parameters, steps, batch size, template); for each matched group the
//! latest record of every seed counts. A group regresses when
//!
//! * its mean test accuracy drops by more than `max(2 × baseline seed std, tolerance)`
//!   (tolerance in accuracy points, default 1.0);
//! * its mean peak memory grows by more than `mem_tolerance` (fraction, default 0.10) and by
//!   more than `mem_floor` (bytes, default 8 MiB: allocator and thread-stack noise of cells
//!   whose whole peak is a few tens of MiB);
//! * its forward passes per step change (any change: they are exact counts);
//! * a seed that was `ok` in the baseline is not `ok` now;
//! * it is in the baseline but missing from the current folder.
//!
//! Groups only in the current folder are listed as `new` and do not fail the gate.

use crate::record::{CellStatus, RunRecord};
use crate::report::read_runs;
use std::collections::BTreeMap;
use std::path::Path;

/// Thresholds of the gate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    /// Accuracy drop allowed at least, in points (0–100 scale).
    pub acc_points: f64,
    /// Multiple of the baseline's std over seeds that a drop may reach.
    pub std_factor: f64,
    /// Relative peak-memory growth allowed (0.10 = 10 %).
    pub mem_fraction: f64,
    /// Absolute peak-memory growth always allowed (bytes).
    pub mem_floor: f64,
}

impl Default for Tolerance {
    fn default() -> Self {
        Self {
            acc_points: 1.0,
            std_factor: 2.0,
            mem_fraction: 0.10,
            mem_floor: 8.0 * 1048576.0,
        }
    }
}

/// One matched (or unmatched) group of cells.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupDiff {
    /// Human label: `model/task/scheme/optimizer hparams`.
    pub label: String,
    /// Mean test accuracy (0–1) over seeds in the baseline / current folder.
    pub acc: (Option<f64>, Option<f64>),
    /// Accuracy drop allowed for this group (0–1 scale).
    pub allowed_drop: f64,
    /// Mean peak memory (bytes) in baseline / current.
    pub mem: (Option<f64>, Option<f64>),
    /// Forward passes per step in baseline / current.
    pub fpps: (Option<f64>, Option<f64>),
    /// Seeds `ok` in baseline / current.
    pub ok: (usize, usize),
    /// Why the group fails the gate (empty = passes).
    pub problems: Vec<String>,
}

/// The result of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// Every group, baseline order first, then groups only in the current folder.
    pub groups: Vec<GroupDiff>,
}

impl Comparison {
    /// Whether any group regresses.
    pub fn regressed(&self) -> bool {
        self.groups.iter().any(|g| !g.problems.is_empty())
    }

    /// A Markdown table of every group, regressions first.
    pub fn markdown(&self) -> String {
        let pct = |x: Option<f64>| x.map_or("–".to_string(), |v| format!("{:.1}", 100.0 * v));
        let mib = |x: Option<f64>| x.map_or("–".to_string(), |v| format!("{:.1}", v / 1048576.0));
        let num = |x: Option<f64>| x.map_or("–".to_string(), |v| format!("{v}"));
        let mut out = String::from(
            "| cell | test acc base → now (%) | allowed drop | peak MiB base → now | fwd/step base → now | ok seeds | verdict |\n|---|---|---|---|---|---|---|\n",
        );
        let mut gs: Vec<&GroupDiff> = self.groups.iter().collect();
        gs.sort_by_key(|g| g.problems.is_empty());
        for g in gs {
            let verdict = if g.problems.is_empty() {
                "ok".to_string()
            } else {
                format!("**REGRESSION**: {}", g.problems.join("; "))
            };
            out.push_str(&format!(
                "| {} | {} → {} | {:.1} | {} → {} | {} → {} | {} → {} | {} |\n",
                g.label,
                pct(g.acc.0),
                pct(g.acc.1),
                100.0 * g.allowed_drop,
                mib(g.mem.0),
                mib(g.mem.1),
                num(g.fpps.0),
                num(g.fpps.1),
                g.ok.0,
                g.ok.1,
                verdict
            ));
        }
        out
    }
}

/// The matching key of a record: its spec without the seed.
fn group_key(r: &RunRecord) -> String {
    format!(
        "{}/{}/{}/{} {} steps={} batch={}",
        r.model,
        r.task,
        r.scheme,
        crate::report::stats::optimizer_label(r),
        serde_json::to_string(&r.hparams).unwrap_or_default(),
        r.steps,
        r.batch_size
    )
}

/// Latest record per run id, grouped by [`group_key`] (in first-seen order).
fn groups(records: Vec<RunRecord>) -> Vec<(String, Vec<RunRecord>)> {
    let mut latest: BTreeMap<String, (usize, RunRecord)> = BTreeMap::new();
    for (i, r) in records.into_iter().enumerate() {
        let first = latest.get(&r.run_id).map_or(i, |(f, _)| *f);
        latest.insert(r.run_id.clone(), (first, r));
    }
    let mut recs: Vec<(usize, RunRecord)> = latest.into_values().collect();
    recs.sort_by_key(|(i, _)| *i);
    let mut out: Vec<(String, Vec<RunRecord>)> = Vec::new();
    for (_, r) in recs {
        let k = group_key(&r);
        match out.iter_mut().find(|(g, _)| *g == k) {
            Some((_, v)) => v.push(r),
            None => out.push((k, vec![r])),
        }
    }
    out
}

fn mean(xs: &[f64]) -> Option<f64> {
    (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
}

/// Sample standard deviation (n − 1); 0 for fewer than two values.
fn std(xs: &[f64]) -> f64 {
    let Some(m) = mean(xs) else { return 0.0 };
    if xs.len() < 2 {
        return 0.0;
    }
    (xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (xs.len() - 1) as f64).sqrt()
}

fn stats(rs: &[RunRecord]) -> (Vec<f64>, Option<f64>, Option<f64>, usize) {
    let ok: Vec<&RunRecord> = rs.iter().filter(|r| r.status == CellStatus::Ok).collect();
    let acc: Vec<f64> = ok.iter().filter_map(|r| r.test_acc).collect();
    let mem: Vec<f64> = ok
        .iter()
        .filter_map(|r| r.peak_mem_bytes.map(|b| b as f64))
        .collect();
    let fpps = rs.iter().find_map(|r| r.forward_passes_per_step);
    (acc, mean(&mem), fpps, ok.len())
}

/// Compares two lists of records (see the module docs).
pub fn compare_records(
    baseline: Vec<RunRecord>,
    current: Vec<RunRecord>,
    tol: Tolerance,
) -> Comparison {
    let base = groups(baseline);
    let cur = groups(current);
    let mut out = Vec::new();
    for (key, b) in &base {
        let (b_acc, b_mem, b_fpps, b_ok) = stats(b);
        let allowed = (tol.std_factor * std(&b_acc)).max(tol.acc_points / 100.0);
        let mut g = GroupDiff {
            label: key.clone(),
            acc: (mean(&b_acc), None),
            allowed_drop: allowed,
            mem: (b_mem, None),
            fpps: (b_fpps, None),
            ok: (b_ok, 0),
            problems: vec![],
        };
        let Some((_, c)) = cur.iter().find(|(k, _)| k == key) else {
            g.problems.push("missing from the current results".into());
            out.push(g);
            continue;
        };
        let (c_acc, c_mem, c_fpps, c_ok) = stats(c);
        g.acc.1 = mean(&c_acc);
        g.mem.1 = c_mem;
        g.fpps.1 = c_fpps;
        g.ok.1 = c_ok;
        for br in b.iter().filter(|r| r.status == CellStatus::Ok) {
            let now = c.iter().find(|r| r.seed == br.seed);
            match now {
                Some(r) if r.status == CellStatus::Ok => {}
                Some(r) => g.problems.push(format!(
                    "seed {} was ok, now {:?}{}",
                    br.seed,
                    r.status,
                    r.error
                        .as_deref()
                        .and_then(|e| e.lines().next())
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default()
                )),
                None => g.problems.push(format!("seed {} is missing", br.seed)),
            }
        }
        if let (Some(a), Some(n)) = g.acc {
            if a - n > allowed + 1e-12 {
                g.problems.push(format!(
                    "test accuracy fell {:.2} points (allowed {:.2})",
                    100.0 * (a - n),
                    100.0 * allowed
                ));
            }
        }
        if let (Some(a), Some(n)) = g.mem {
            if n > a * (1.0 + tol.mem_fraction) && n - a > tol.mem_floor {
                g.problems.push(format!(
                    "peak memory grew {:.1} % (allowed {:.0} %)",
                    100.0 * (n / a - 1.0),
                    100.0 * tol.mem_fraction
                ));
            }
        }
        if g.fpps.0.is_some() && g.fpps.1.is_some() && g.fpps.0 != g.fpps.1 {
            g.problems
                .push("forward passes per step changed".to_string());
        }
        out.push(g);
    }
    for (key, c) in &cur {
        if base.iter().any(|(k, _)| k == key) {
            continue;
        }
        let (c_acc, c_mem, c_fpps, c_ok) = stats(c);
        out.push(GroupDiff {
            label: format!("{key} (new)"),
            acc: (None, mean(&c_acc)),
            allowed_drop: 0.0,
            mem: (None, c_mem),
            fpps: (None, c_fpps),
            ok: (0, c_ok),
            problems: vec![],
        });
    }
    Comparison { groups: out }
}

/// Compares the `runs.jsonl` of two results folders.
///
/// # Errors
/// A folder without `runs.jsonl`, or a corrupt record line.
pub fn compare_dirs(baseline: &Path, current: &Path, tol: Tolerance) -> anyhow::Result<Comparison> {
    let mut lists = Vec::new();
    for d in [baseline, current] {
        let p = d.join("runs.jsonl");
        if !p.is_file() {
            return Err(crate::error::UserError::new(format!(
                "`{}` has no runs.jsonl (give a results folder written by `zobench sweep`)",
                d.display()
            ))
            .into());
        }
        lists.push(read_runs(&p)?);
    }
    let current = lists.pop().expect("two lists");
    let baseline = lists.pop().expect("two lists");
    Ok(compare_records(baseline, current, tol))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seed: u64, acc: f64, mem: u64, fpps: f64, status: CellStatus) -> RunRecord {
        let mut r: RunRecord = serde_json::from_str(&format!(
            r#"{{"run_id": "id{seed}", "sweep": "s", "model": "m", "family": null,
            "task": "sst2", "scheme": "ft", "optimizer": "zo-sgd", "estimator": "rge-two-sided",
            "hparams": {{"lr": 1e-3, "mu": 1e-3, "q": 1, "weight_decay": 0.0}},
            "seed": {seed}, "data_seed": 0, "steps": 10, "batch_size": 4, "status": "ok",
            "error": null, "majority_acc": null, "zero_shot_acc": null, "best_dev_acc": null,
            "best_step": null, "test_acc": null, "final_train_loss": null,
            "trainable_params": null, "total_params": null, "peak_mem_bytes": null,
            "mem_method": "VmHWM", "mem_breakdown": {{}}, "time_per_step_s": null,
            "time_per_step_p10_s": null, "time_per_step_p90_s": null,
            "forward_passes_per_step": null, "total_forward_passes": null, "num_train": null,
            "num_dev": null, "num_eval": null, "wall_s": 1.0, "backend": "flex",
            "precision": "f32", "threads": 1, "cpu": "x", "git_commit": "x",
            "versions": {{}}, "started_at": "now"}}"#
        ))
        .unwrap();
        r.test_acc = Some(acc);
        r.peak_mem_bytes = Some(mem);
        r.forward_passes_per_step = Some(fpps);
        r.status = status;
        r
    }

    fn base() -> Vec<RunRecord> {
        vec![
            rec(0, 0.80, 100 << 20, 2.0, CellStatus::Ok),
            rec(1, 0.82, 100 << 20, 2.0, CellStatus::Ok),
        ]
    }

    #[test]
    fn identical_results_pass() {
        let c = compare_records(base(), base(), Tolerance::default());
        assert!(!c.regressed(), "{}", c.markdown());
    }

    #[test]
    fn accuracy_drop_within_two_std_passes_beyond_fails() {
        // Baseline std over seeds = 0.01414; allowed = max(2 std, 1 point) = 2.83 points.
        let mut cur = base();
        cur[0].test_acc = Some(0.78);
        cur[1].test_acc = Some(0.80); // mean drop 2 points
        assert!(!compare_records(base(), cur.clone(), Tolerance::default()).regressed());
        cur[0].test_acc = Some(0.76);
        cur[1].test_acc = Some(0.79); // mean drop 3.5 points
        let c = compare_records(base(), cur, Tolerance::default());
        assert!(c.regressed());
        assert!(
            c.markdown().contains("test accuracy fell 3.50 points"),
            "{}",
            c.markdown()
        );
    }

    #[test]
    fn memory_growth_fpps_change_failure_and_missing_cells_fail() {
        let mut cur = base();
        cur.iter_mut()
            .for_each(|r| r.peak_mem_bytes = Some(111 << 20));
        assert!(compare_records(base(), cur, Tolerance::default()).regressed());
        let mut cur = base();
        cur.iter_mut()
            .for_each(|r| r.peak_mem_bytes = Some(109 << 20));
        assert!(!compare_records(base(), cur, Tolerance::default()).regressed());
        let mut cur = base();
        cur.iter_mut()
            .for_each(|r| r.forward_passes_per_step = Some(4.0));
        assert!(compare_records(base(), cur, Tolerance::default()).regressed());
        let mut cur = base();
        cur[1].status = CellStatus::Failed;
        let c = compare_records(base(), cur, Tolerance::default());
        assert!(
            c.markdown().contains("seed 1 was ok, now Failed"),
            "{}",
            c.markdown()
        );
        let c = compare_records(base(), vec![], Tolerance::default());
        assert!(c.regressed());
        // A new cell alone does not fail the gate.
        let mut extra = base();
        let mut r = rec(7, 0.5, 1, 2.0, CellStatus::Ok);
        r.optimizer = "zo-adam".into();
        extra.push(r);
        assert!(!compare_records(base(), extra, Tolerance::default()).regressed());
    }
}
