//! Aggregation over seeds, selection on dev, and the Pareto front.
//!
//! A *setting* is one (model, task, scheme, optimizer, template, hyper-parameters, steps,
//! batch size); its cells differ only by seed. [`aggregate`] groups the records by setting
//! and summarises each quantity as mean ± sample standard deviation over the `ok` cells
//! ([`Stat`]); failed, out-of-memory, timed-out and diverged cells are counted in
//! [`Group::n_cells`] and [`Group::statuses`] but never enter a mean. [`select_on_dev`] picks,
//! for each (model, task, scheme, optimizer), the setting with the best mean dev score: the
//! test score is read only after the choice.

use super::{finite, fmt_general, status_str};
use crate::record::{CellStatus, HParams, RunRecord};
use anyhow::{Context, Result};
use polars::prelude::{Column, DataFrame};
use std::collections::BTreeMap;

/// Mean, sample standard deviation (n − 1 in the denominator) and count of the finite values
/// of one quantity over the `ok` cells of a setting.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Stat {
    /// Mean; `None` when no finite value exists.
    pub mean: Option<f64>,
    /// Sample standard deviation; `None` with fewer than two values.
    pub std: Option<f64>,
    /// Number of finite values that entered the mean.
    pub n: usize,
}

impl Stat {
    /// Summarises the finite values among `values` (`None`, NaN and ±∞ are left out).
    pub fn of(values: impl IntoIterator<Item = Option<f64>>) -> Stat {
        let v: Vec<f64> = values
            .into_iter()
            .flatten()
            .filter(|x| x.is_finite())
            .collect();
        let n = v.len();
        if n == 0 {
            return Stat::default();
        }
        let mean = v.iter().sum::<f64>() / n as f64;
        let std = (n >= 2)
            .then(|| (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt());
        Stat {
            mean: Some(mean),
            std,
            n,
        }
    }

    /// The same statistic scaled by `k` (e.g. 100 for percentages).
    pub fn scaled(self, k: f64) -> Stat {
        Stat {
            mean: self.mean.map(|m| m * k),
            std: self.std.map(|s| s * k.abs()),
            n: self.n,
        }
    }

    /// `mean ± std` with `decimals` decimals, the mean alone when n = 1, `–` when empty.
    pub fn display(&self, decimals: usize) -> String {
        match (self.mean, self.std) {
            (None, _) => "–".to_string(),
            (Some(m), None) => format!("{m:.decimals$}"),
            (Some(m), Some(s)) => format!("{m:.decimals$} ± {s:.decimals$}"),
        }
    }
}

/// Hyper-parameters as a compact, stable label: `lr=0.001, mu=0.001` (keys sorted), or
/// `default` when there are none.
pub fn setting_label(h: &HParams) -> String {
    if h.is_empty() {
        return "default".to_string();
    }
    h.iter()
        .map(|(k, v)| {
            let v = match v {
                serde_json::Value::Number(n) => {
                    n.as_f64().map(fmt_general).unwrap_or_else(|| n.to_string())
                }
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            format!("{k}={v}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// One setting: the cells that differ only by seed, summarised over the `ok` ones.
#[derive(Debug, Clone)]
pub struct Group {
    /// Model name.
    pub model: String,
    /// Task name.
    pub task: String,
    /// Fine-tuning scheme.
    pub scheme: String,
    /// Optimizer name.
    pub optimizer: String,
    /// Prompt template (`None` when the records carry none).
    pub template: Option<String>,
    /// Hyper-parameters of the setting.
    pub hparams: HParams,
    /// [`setting_label`] of `hparams`.
    pub setting: String,
    /// Training steps.
    pub steps: usize,
    /// Examples per step.
    pub batch_size: usize,
    /// Name of the primary metric (`acc` when the records do not say).
    pub metric: String,
    /// Cells of the setting, whatever their status.
    pub n_cells: usize,
    /// Cells with `status == ok`: the n of every statistic below.
    pub n_ok: usize,
    /// Status counts, e.g. `ok 2, failed 1`.
    pub statuses: String,
    /// First line of the first error among the cells that are not `ok`.
    pub first_error: Option<String>,
    /// Best dev score (primary metric, in [0, 1]).
    pub dev: Stat,
    /// Test score of the parameters best on dev (primary metric, in [0, 1]).
    pub test: Stat,
    /// Zero-shot test score (primary metric, in [0, 1]).
    pub zero_shot: Stat,
    /// Peak memory (MiB).
    pub peak_mem_mib: Stat,
    /// Median step time (s).
    pub time_per_step_s: Stat,
    /// 10th percentile of the step time (s).
    pub time_per_step_p10_s: Stat,
    /// 90th percentile of the step time (s).
    pub time_per_step_p90_s: Stat,
    /// Forward passes per training step.
    pub forward_passes_per_step: Stat,
    /// Run ids of the `ok` cells, in record order.
    pub ok_run_ids: Vec<String>,
    /// Index of the setting's first record in the input (ties in selection go to the first).
    pub first_index: usize,
}

/// The optimizer as tables and figures show it: its name, with ` (offload)` for cells of
/// the offload runtime (so they form their own rows beside the in-memory ones).
pub fn optimizer_label(r: &RunRecord) -> String {
    match r.runtime.as_deref() {
        Some(rt) if rt != "memory" => format!("{} ({rt})", r.optimizer),
        _ => r.optimizer.clone(),
    }
}

/// Groups `runs` by setting (see the module doc) and summarises each group over its `ok`
/// cells. Groups are sorted by model, task, scheme, optimizer, template, `lr`, then the
/// setting label, steps and batch size. A setting without any `ok` cell is still listed, with
/// n = 0 and its statuses.
pub fn aggregate(runs: &[RunRecord]) -> Vec<Group> {
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    let mut members: Vec<Vec<(usize, &RunRecord)>> = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        let key = serde_json::to_string(&(
            &r.model,
            &r.task,
            &r.scheme,
            &r.optimizer,
            &r.runtime,
            &r.template,
            &r.hparams,
            r.steps,
            r.batch_size,
        ))
        .unwrap_or_default();
        let g = *index.entry(key).or_insert_with(|| {
            members.push(Vec::new());
            members.len() - 1
        });
        members[g].push((i, r));
    }
    let mut groups: Vec<Group> = members.iter().map(|m| summarise(m)).collect();
    groups.sort_by(|a, b| {
        (&a.model, &a.task, &a.scheme, &a.optimizer, &a.template)
            .cmp(&(&b.model, &b.task, &b.scheme, &b.optimizer, &b.template))
            .then(
                hp_of(&a.hparams, "lr")
                    .unwrap_or(f64::NEG_INFINITY)
                    .total_cmp(&hp_of(&b.hparams, "lr").unwrap_or(f64::NEG_INFINITY)),
            )
            .then(a.setting.cmp(&b.setting))
            .then(a.steps.cmp(&b.steps))
            .then(a.batch_size.cmp(&b.batch_size))
    });
    groups
}

/// Numeric hyper-parameter `key` of a map.
fn hp_of(h: &HParams, key: &str) -> Option<f64> {
    h.get(key).and_then(|v| v.as_f64())
}

/// Summarises the records of one setting (non-empty, in record order).
fn summarise(members: &[(usize, &RunRecord)]) -> Group {
    let (first_index, r0) = members[0];
    let ok: Vec<&RunRecord> = members
        .iter()
        .map(|(_, r)| *r)
        .filter(|r| r.status == CellStatus::Ok)
        .collect();
    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    for (_, r) in members {
        *counts.entry(status_str(r.status)).or_default() += 1;
    }
    let statuses = counts
        .iter()
        .map(|(s, c)| format!("{s} {c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let stat = |f: &dyn Fn(&RunRecord) -> Option<f64>| Stat::of(ok.iter().map(|r| f(r)));
    Group {
        model: r0.model.clone(),
        task: r0.task.clone(),
        scheme: r0.scheme.clone(),
        optimizer: optimizer_label(r0),
        template: r0.template.clone(),
        hparams: r0.hparams.clone(),
        setting: setting_label(&r0.hparams),
        steps: r0.steps,
        batch_size: r0.batch_size,
        metric: ok
            .iter()
            .chain(members.iter().map(|(_, r)| r))
            .find_map(|r| r.metric.clone())
            .unwrap_or_else(|| "acc".to_string()),
        n_cells: members.len(),
        n_ok: ok.len(),
        statuses,
        first_error: members
            .iter()
            .filter(|(_, r)| r.status != CellStatus::Ok)
            .find_map(|(_, r)| first_line(r.error.as_deref())),
        dev: stat(&|r| r.best_dev_acc),
        test: stat(&|r| r.test_acc),
        zero_shot: stat(&|r| r.zero_shot_acc),
        peak_mem_mib: stat(&|r| r.peak_mem_bytes.map(|b| b as f64 / (1u64 << 20) as f64)),
        time_per_step_s: stat(&|r| r.time_per_step_s),
        time_per_step_p10_s: stat(&|r| r.time_per_step_p10_s),
        time_per_step_p90_s: stat(&|r| r.time_per_step_p90_s),
        forward_passes_per_step: stat(&|r| r.forward_passes_per_step),
        ok_run_ids: ok.iter().map(|r| r.run_id.clone()).collect(),
        first_index,
    }
}

/// The first non-blank line of an error text, trimmed.
pub fn first_line(error: Option<&str>) -> Option<String> {
    error.and_then(|e| {
        e.lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .map(str::to_string)
    })
}

/// The setting chosen on dev for one (model, task, scheme, optimizer).
#[derive(Debug, Clone)]
pub struct Selection {
    /// The chosen setting (its `test` statistic is the reported score).
    pub group: Group,
    /// Settings that competed (those with a finite mean dev score).
    pub candidates: usize,
}

/// For each (model, task, scheme, optimizer), the setting with the highest mean dev score
/// over its `ok` seeds; ties go to the setting recorded first. Settings without a finite dev
/// mean do not compete; a (model, task, scheme, optimizer) with no competing setting is left
/// out. The test score plays no part in the choice.
pub fn select_on_dev(groups: &[Group]) -> Vec<Selection> {
    type Key<'a> = (&'a str, &'a str, &'a str, &'a str);
    let mut best: BTreeMap<Key, (&Group, usize)> = BTreeMap::new();
    for g in groups {
        let Some(dev) = g.dev.mean.filter(|d| d.is_finite()) else {
            continue;
        };
        let key = (
            g.model.as_str(),
            g.task.as_str(),
            g.scheme.as_str(),
            g.optimizer.as_str(),
        );
        match best.get_mut(&key) {
            None => {
                best.insert(key, (g, 1));
            }
            Some((b, count)) => {
                *count += 1;
                let bd = b.dev.mean.unwrap_or(f64::NEG_INFINITY);
                if dev > bd || (dev == bd && g.first_index < b.first_index) {
                    *b = g;
                }
            }
        }
    }
    best.into_values()
        .map(|(g, candidates)| Selection {
            group: g.clone(),
            candidates,
        })
        .collect()
}

/// Indices of the Pareto-optimal points among `(memory, score)` pairs, where less memory and
/// a higher score are better: no other point has less or equal memory and a higher or equal
/// score with one of the two strict. Points with a non-finite coordinate are ignored; of
/// identical points only the first is kept. Returned in increasing memory.
pub fn pareto_front(points: &[(f64, f64)]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..points.len())
        .filter(|&i| points[i].0.is_finite() && points[i].1.is_finite())
        .collect();
    idx.sort_by(|&a, &b| {
        points[a]
            .0
            .total_cmp(&points[b].0)
            .then(points[b].1.total_cmp(&points[a].1))
            .then(a.cmp(&b))
    });
    let mut front = Vec::new();
    let mut best = f64::NEG_INFINITY;
    for i in idx {
        if points[i].1 > best {
            best = points[i].1;
            front.push(i);
        }
    }
    front
}

/// The columns shared by the aggregated and dev-selected frames for the statistics.
fn stat_columns(name: &str, stats: &[Stat], with_std: bool) -> Vec<Column> {
    let mut cols = vec![Column::new(
        format!("{name}_mean").into(),
        stats.iter().map(|s| finite(s.mean)).collect::<Vec<_>>(),
    )];
    if with_std {
        cols.push(Column::new(
            format!("{name}_std").into(),
            stats.iter().map(|s| finite(s.std)).collect::<Vec<_>>(),
        ));
    }
    cols
}

/// Key columns (model … batch size, metric) of a list of groups.
fn key_columns(groups: &[&Group]) -> Vec<Column> {
    let s = |f: &dyn Fn(&Group) -> String| -> Vec<String> { groups.iter().map(|g| f(g)).collect() };
    vec![
        Column::new("model".into(), s(&|g| g.model.clone())),
        Column::new("task".into(), s(&|g| g.task.clone())),
        Column::new("scheme".into(), s(&|g| g.scheme.clone())),
        Column::new("optimizer".into(), s(&|g| g.optimizer.clone())),
        Column::new(
            "template".into(),
            groups
                .iter()
                .map(|g| g.template.clone())
                .collect::<Vec<Option<String>>>(),
        ),
        Column::new("hparams".into(), s(&|g| g.setting.clone())),
        Column::new(
            "lr".into(),
            groups
                .iter()
                .map(|g| finite(hp_of(&g.hparams, "lr")))
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "mu".into(),
            groups
                .iter()
                .map(|g| finite(hp_of(&g.hparams, "mu")))
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "steps".into(),
            groups.iter().map(|g| g.steps as u64).collect::<Vec<u64>>(),
        ),
        Column::new(
            "batch_size".into(),
            groups
                .iter()
                .map(|g| g.batch_size as u64)
                .collect::<Vec<u64>>(),
        ),
        Column::new("metric".into(), s(&|g| g.metric.clone())),
    ]
}

/// The aggregated table: one row per setting (see [`aggregate`]). Columns: `model, task,
/// scheme, optimizer, template, hparams` (label), `lr, mu, steps, batch_size, metric,
/// n_cells, n` (ok cells), `statuses, first_error`, then `<q>_mean, <q>_std` for `dev`,
/// `test` (primary metric in [0, 1]), `peak_mem_mib`, `time_per_step_s`,
/// `forward_passes_per_step`, and `zero_shot_mean, time_per_step_p10_s_mean,
/// time_per_step_p90_s_mean`. Stds are null for n < 2; every statistic is null for n = 0.
pub fn aggregate_frame(groups: &[Group]) -> Result<DataFrame> {
    let refs: Vec<&Group> = groups.iter().collect();
    let mut cols = key_columns(&refs);
    cols.push(Column::new(
        "n_cells".into(),
        groups
            .iter()
            .map(|g| g.n_cells as u64)
            .collect::<Vec<u64>>(),
    ));
    cols.push(Column::new(
        "n".into(),
        groups.iter().map(|g| g.n_ok as u64).collect::<Vec<u64>>(),
    ));
    cols.push(Column::new(
        "statuses".into(),
        groups
            .iter()
            .map(|g| g.statuses.clone())
            .collect::<Vec<_>>(),
    ));
    cols.push(Column::new(
        "first_error".into(),
        groups
            .iter()
            .map(|g| g.first_error.clone())
            .collect::<Vec<Option<String>>>(),
    ));
    let st = |f: fn(&Group) -> Stat| groups.iter().map(f).collect::<Vec<_>>();
    cols.extend(stat_columns("dev", &st(|g| g.dev), true));
    cols.extend(stat_columns("test", &st(|g| g.test), true));
    cols.extend(stat_columns("peak_mem_mib", &st(|g| g.peak_mem_mib), true));
    cols.extend(stat_columns(
        "time_per_step_s",
        &st(|g| g.time_per_step_s),
        true,
    ));
    cols.extend(stat_columns(
        "forward_passes_per_step",
        &st(|g| g.forward_passes_per_step),
        true,
    ));
    cols.extend(stat_columns("zero_shot", &st(|g| g.zero_shot), false));
    cols.extend(stat_columns(
        "time_per_step_p10_s",
        &st(|g| g.time_per_step_p10_s),
        false,
    ));
    cols.extend(stat_columns(
        "time_per_step_p90_s",
        &st(|g| g.time_per_step_p90_s),
        false,
    ));
    DataFrame::new(groups.len(), cols).context("building the aggregated frame")
}

/// The dev-selected table: one row per (model, task, scheme, optimizer) with the chosen
/// setting. Columns: the key columns of [`aggregate_frame`], `settings_tried, n`, then
/// `dev_mean, dev_std, test_mean, test_std` (primary metric in [0, 1]), `zero_shot_mean,
/// peak_mem_mib_mean, peak_mem_mib_std, time_per_step_s_mean, time_per_step_s_std,
/// forward_passes_per_step_mean`.
pub fn selected_frame(selected: &[Selection]) -> Result<DataFrame> {
    let refs: Vec<&Group> = selected.iter().map(|s| &s.group).collect();
    let mut cols = key_columns(&refs);
    cols.push(Column::new(
        "settings_tried".into(),
        selected
            .iter()
            .map(|s| s.candidates as u64)
            .collect::<Vec<u64>>(),
    ));
    cols.push(Column::new(
        "n".into(),
        refs.iter().map(|g| g.n_ok as u64).collect::<Vec<u64>>(),
    ));
    let st = |f: fn(&Group) -> Stat| refs.iter().map(|g| f(g)).collect::<Vec<_>>();
    cols.extend(stat_columns("dev", &st(|g| g.dev), true));
    cols.extend(stat_columns("test", &st(|g| g.test), true));
    cols.extend(stat_columns("zero_shot", &st(|g| g.zero_shot), false));
    cols.extend(stat_columns("peak_mem_mib", &st(|g| g.peak_mem_mib), true));
    cols.extend(stat_columns(
        "time_per_step_s",
        &st(|g| g.time_per_step_s),
        true,
    ));
    cols.extend(stat_columns(
        "forward_passes_per_step",
        &st(|g| g.forward_passes_per_step),
        false,
    ));
    DataFrame::new(selected.len(), cols).context("building the dev-selected frame")
}

/// Markdown rows of the aggregated table (scores in %, `mean ± std`).
pub fn aggregate_markdown(groups: &[Group]) -> String {
    let header = [
        "model",
        "task",
        "scheme",
        "optimizer",
        "template",
        "hparams",
        "steps",
        "metric",
        "n",
        "dev (%)",
        "test (%)",
        "peak mem (MiB)",
        "time/step (s)",
        "fwd/step",
        "cells",
        "first error",
    ];
    let rows: Vec<Vec<String>> = groups
        .iter()
        .map(|g| {
            vec![
                g.model.clone(),
                g.task.clone(),
                g.scheme.clone(),
                g.optimizer.clone(),
                g.template.clone().unwrap_or_else(|| "–".into()),
                g.setting.clone(),
                g.steps.to_string(),
                g.metric.clone(),
                g.n_ok.to_string(),
                g.dev.scaled(100.0).display(1),
                g.test.scaled(100.0).display(1),
                g.peak_mem_mib.display(1),
                g.time_per_step_s.display(4),
                g.forward_passes_per_step.display(1),
                g.statuses.clone(),
                g.first_error.clone().unwrap_or_else(|| "–".into()),
            ]
        })
        .collect();
    super::md_table(&header, &[6, 8, 9, 10, 11, 12, 13], &rows)
}

/// Markdown rows of the dev-selected table (scores in %, `mean ± std`).
pub fn selected_markdown(selected: &[Selection]) -> String {
    let header = [
        "model",
        "task",
        "scheme",
        "optimizer",
        "template",
        "hparams (chosen on dev)",
        "steps",
        "metric",
        "tried",
        "n",
        "dev (%)",
        "test (%)",
        "zero-shot (%)",
        "peak mem (MiB)",
        "time/step (s)",
        "fwd/step",
    ];
    let rows: Vec<Vec<String>> = selected
        .iter()
        .map(|s| {
            let g = &s.group;
            vec![
                g.model.clone(),
                g.task.clone(),
                g.scheme.clone(),
                g.optimizer.clone(),
                g.template.clone().unwrap_or_else(|| "–".into()),
                g.setting.clone(),
                g.steps.to_string(),
                g.metric.clone(),
                s.candidates.to_string(),
                g.n_ok.to_string(),
                g.dev.scaled(100.0).display(1),
                g.test.scaled(100.0).display(1),
                g.zero_shot.scaled(100.0).display(1),
                g.peak_mem_mib.display(1),
                g.time_per_step_s.display(4),
                g.forward_passes_per_step
                    .mean
                    .map_or("–".into(), fmt_general),
            ]
        })
        .collect();
    super::md_table(&header, &[6, 8, 9, 10, 11, 12, 13, 14, 15], &rows)
}
