//! `zobench report`: reads a sweep's `runs.jsonl` and loss curves, builds the tables with
//! polars (parquet, csv, markdown), draws the figures with plotters (SVG + PNG) and ties them
//! together in `report.md`.
//!
//! Layout (see `DESIGN.md`):
//!
//! ```text
//! results_dir/runs.jsonl                      input, one RunRecord per line
//! results_dir/curves/<run_id>.jsonl           input, one CurvePoint per line (optional per cell)
//! results_dir/summary.{parquet,csv,md}        per-cell table
//! reports_dir/dev_selected.{parquet,csv,md}   best-on-dev setting per model/task/scheme/optimizer
//! reports_dir/aggregate.{parquet,csv,md}      every setting, mean ± std over seeds, n
//! reports_dir/cells.{parquet,csv,md}          per-cell table (as summary.*)
//! reports_dir/{acc_vs_memory,train_loss,time_per_step,acc_heatmap,test_acc_by_optimizer}.{svg,png}
//! reports_dir/report.md                       provenance, tables, figures, captions
//! ```
//!
//! Every file is written atomically: first to a temporary name in the same directory
//! (`name.tmp`, or `stem.tmp.png` for PNGs since the encoder picks the format from the
//! extension), then renamed over the final name.
//!
//! Only cells with `status == ok` enter means and figures; the others are listed in the
//! per-cell table with their status and the first line of their error. Degenerate inputs never
//! panic: a figure without data is still written (title and a one-line explanation), single
//! points get padded axis ranges, and `None` / NaN / infinite values are skipped.

mod document;
pub mod plots;
pub(crate) mod stats;

pub use stats::{
    Group, Selection, Stat, aggregate, aggregate_frame, aggregate_markdown, first_line,
    pareto_front, select_on_dev, selected_frame, selected_markdown, setting_label,
};

use crate::record::{CellStatus, CurvePoint, RunRecord};
use anyhow::{Context, Result};
use polars::prelude::{
    Column, CsvWriter, DataFrame, DataType, ParquetWriter, SerWriter, SortMultipleOptions,
};
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------------

/// Parses a JSON-lines file. Blank lines are ignored. A last line without its newline that
/// does not parse is skipped with a warning (a writer killed mid-append leaves such a partial
/// line); any other line that does not parse is an error (exit code 2) naming the file and
/// the 1-based line number.
fn read_jsonl<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .collect();
    let mut out = Vec::with_capacity(lines.len());
    for (k, &(idx, line)) in lines.iter().enumerate() {
        match serde_json::from_str::<T>(line) {
            Ok(v) => out.push(v),
            Err(e) if k + 1 == lines.len() && !text.ends_with('\n') => {
                tracing::warn!(
                    file = %path.display(),
                    line = idx + 1,
                    error = %e,
                    "skipping partial or corrupt last line"
                );
            }
            Err(e) => {
                return Err(crate::error::UserError::new(format!(
                    "{}: line {}: invalid JSON record ({e}); fix or delete that line (a complete \
                     line is never a partial write, so it is not skipped)",
                    path.display(),
                    idx + 1
                ))
                .into());
            }
        }
    }
    Ok(out)
}

/// Reads `runs.jsonl`, tolerating (skipping, with a `tracing::warn`) a partial/corrupt LAST
/// line; a corrupt line elsewhere is an error naming the file and line number. Blank lines
/// are ignored.
pub fn read_runs(path: &Path) -> Result<Vec<RunRecord>> {
    read_jsonl(path)
}

/// Reads `curves/<run_id>.jsonl` with the same tolerance as [`read_runs`].
pub fn read_curve(path: &Path) -> Result<Vec<CurvePoint>> {
    read_jsonl(path)
}

// ---------------------------------------------------------------------------------------------
// Summary table
// ---------------------------------------------------------------------------------------------

/// Lower-case status name as written in `runs.jsonl`.
fn status_str(s: CellStatus) -> &'static str {
    match s {
        CellStatus::Ok => "ok",
        CellStatus::Diverged => "diverged",
        CellStatus::Failed => "failed",
        CellStatus::Oom => "oom",
        CellStatus::Timeout => "timeout",
    }
}

/// Hyper-parameter `key` of a record as a number.
pub fn hp(r: &RunRecord, key: &str) -> Option<f64> {
    r.hparams.get(key).and_then(|v| v.as_f64())
}

/// `Some(x)` only for finite values.
fn finite(x: Option<f64>) -> Option<f64> {
    x.filter(|v| v.is_finite())
}

/// Builds the per-cell summary DataFrame with polars from the records.
///
/// One row per record (every status), sorted by `model, task, scheme, optimizer, lr, seed`.
/// Columns: `run_id, model, task, scheme, optimizer` (str), `lr` (f64), `mu` (f64, null for
/// first-order optimizers), `hparams` (JSON), `seed` (u64), `status` (str), `steps` (u64),
/// `majority_acc, zero_shot_acc, best_dev_acc, test_acc` (the task's primary metric, f64 in
/// [0, 1]), `final_train_loss` (f64, nats), `trainable_params` (u64), `peak_mem_mib` (f64,
/// `peak_mem_bytes / 2^20`), `time_per_step_s` (f64), `forward_passes_per_step` (f64),
/// `total_forward_passes` (u64), `wall_s` (f64), `template, metric` (str, nullable),
/// `batch_size` (u64), `time_per_step_p10_s, time_per_step_p90_s` (f64), `error` (first line
/// of the error, null for `ok`), `formulation` (str, nullable), `icl_shots` (u64, null for
/// trained cells), `eval_forward_passes` (u64), then `metric_<name>` (f64 in [0, 1]) for every
/// test metric any record has. Non-finite floats are stored as null.
pub fn summary_frame(runs: &[RunRecord]) -> Result<DataFrame> {
    let s = |f: &dyn Fn(&RunRecord) -> String| -> Vec<String> { runs.iter().map(f).collect() };
    let of = |f: &dyn Fn(&RunRecord) -> Option<f64>| -> Vec<Option<f64>> {
        runs.iter().map(|r| finite(f(r))).collect()
    };
    let ou = |f: &dyn Fn(&RunRecord) -> Option<u64>| -> Vec<Option<u64>> {
        runs.iter().map(f).collect()
    };
    let mut columns = vec![
        Column::new("run_id".into(), s(&|r| r.run_id.clone())),
        Column::new("model".into(), s(&|r| r.model.clone())),
        Column::new("task".into(), s(&|r| r.task.clone())),
        Column::new("scheme".into(), s(&|r| r.scheme.clone())),
        Column::new("optimizer".into(), s(&|r| stats::optimizer_label(r))),
        Column::new("lr".into(), of(&|r| hp(r, "lr"))),
        Column::new("mu".into(), of(&|r| hp(r, "mu"))),
        Column::new(
            "hparams".into(),
            s(&|r| serde_json::to_string(&r.hparams).unwrap_or_default()),
        ),
        Column::new(
            "seed".into(),
            runs.iter().map(|r| r.seed).collect::<Vec<u64>>(),
        ),
        Column::new("status".into(), s(&|r| status_str(r.status).to_string())),
        Column::new(
            "steps".into(),
            runs.iter().map(|r| r.steps as u64).collect::<Vec<u64>>(),
        ),
        Column::new("majority_acc".into(), of(&|r| r.majority_acc)),
        Column::new("zero_shot_acc".into(), of(&|r| r.zero_shot_acc)),
        Column::new("best_dev_acc".into(), of(&|r| r.best_dev_acc)),
        Column::new("test_acc".into(), of(&|r| r.test_acc)),
        Column::new("final_train_loss".into(), of(&|r| r.final_train_loss)),
        Column::new("trainable_params".into(), ou(&|r| r.trainable_params)),
        Column::new(
            "peak_mem_mib".into(),
            of(&|r| r.peak_mem_bytes.map(|b| b as f64 / (1u64 << 20) as f64)),
        ),
        Column::new("time_per_step_s".into(), of(&|r| r.time_per_step_s)),
        Column::new(
            "forward_passes_per_step".into(),
            of(&|r| r.forward_passes_per_step),
        ),
        Column::new(
            "total_forward_passes".into(),
            ou(&|r| r.total_forward_passes),
        ),
        Column::new("wall_s".into(), of(&|r| Some(r.wall_s))),
        Column::new(
            "template".into(),
            runs.iter()
                .map(|r| r.template.clone())
                .collect::<Vec<Option<String>>>(),
        ),
        Column::new(
            "metric".into(),
            runs.iter()
                .map(|r| r.metric.clone())
                .collect::<Vec<Option<String>>>(),
        ),
        Column::new(
            "batch_size".into(),
            runs.iter()
                .map(|r| r.batch_size as u64)
                .collect::<Vec<u64>>(),
        ),
        Column::new("time_per_step_p10_s".into(), of(&|r| r.time_per_step_p10_s)),
        Column::new("time_per_step_p90_s".into(), of(&|r| r.time_per_step_p90_s)),
        Column::new(
            "error".into(),
            runs.iter()
                .map(|r| first_line(r.error.as_deref()))
                .collect::<Vec<Option<String>>>(),
        ),
        Column::new(
            "formulation".into(),
            runs.iter()
                .map(|r| r.formulation.clone())
                .collect::<Vec<Option<String>>>(),
        ),
        Column::new("icl_shots".into(), ou(&|r| r.icl_shots.map(|k| k as u64))),
        Column::new("eval_forward_passes".into(), ou(&|r| r.eval_forward_passes)),
    ];
    // Every test metric of the task as `metric_<name>` (null where a cell lacks it).
    let names: BTreeSet<&String> = runs.iter().flat_map(|r| r.test_metrics.keys()).collect();
    for name in names {
        columns.push(Column::new(
            format!("metric_{name}").into(),
            of(&|r| r.test_metrics.get(name).copied()),
        ));
    }
    let df = DataFrame::new(runs.len(), columns).context("building the summary frame")?;
    let df = df
        .sort(
            ["model", "task", "scheme", "optimizer", "lr", "seed"],
            SortMultipleOptions::default().with_maintain_order(true),
        )
        .context("sorting the summary frame")?;
    Ok(df)
}

/// Formats a float compactly: scientific for very small / large magnitudes.
fn fmt_general(x: f64) -> String {
    if x == 0.0 {
        "0".to_string()
    } else if x.abs() < 1e-3 || x.abs() >= 1e7 {
        format!("{x:e}")
    } else {
        let s = format!("{x:.6}");
        let s = s.trim_end_matches('0').trim_end_matches('.');
        s.to_string()
    }
}

/// Formats an axis tick: no decimals for large values, up to 3 significant decimals otherwise.
fn fmt_axis(v: f64) -> String {
    if v.abs() >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else {
        fmt_general((v * 1000.0).round() / 1000.0)
    }
}

/// Escapes a string for a markdown table cell.
fn md_escape(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// Renders the summary frame as a GitHub markdown table.
///
/// Accuracy columns (`*_acc`) are shown as percentages with one decimal and a ` (%)` header
/// suffix; `run_id` is shortened to its first 12 characters (the csv/parquet keep it whole);
/// nulls are shown as `–`.
fn markdown_table(df: &DataFrame) -> Result<String> {
    const NULL: &str = "–";
    let cols = df.columns();
    let mut header = Vec::with_capacity(cols.len());
    let mut cells: Vec<Vec<String>> = Vec::with_capacity(cols.len());
    for col in cols {
        let name = col.name().as_str();
        let is_acc = name.ends_with("_acc") || name.starts_with("metric_");
        header.push(if is_acc {
            format!("{name} (%)")
        } else {
            name.to_string()
        });
        let values: Vec<String> = match col.dtype() {
            DataType::String => col
                .str()?
                .iter()
                .map(|v| match v {
                    None => NULL.to_string(),
                    Some(s) if name == "run_id" => {
                        md_escape(&s.chars().take(12).collect::<String>())
                    }
                    Some(s) => md_escape(s),
                })
                .collect(),
            DataType::Float64 => col
                .f64()?
                .iter()
                .map(|v| match v {
                    None => NULL.to_string(),
                    Some(x) if !x.is_finite() => NULL.to_string(),
                    Some(x) if is_acc => format!("{:.1}", 100.0 * x),
                    Some(x) => match name {
                        "peak_mem_mib" | "wall_s" => format!("{x:.1}"),
                        "final_train_loss" => format!("{x:.4}"),
                        "time_per_step_s" => format!("{x:.4}"),
                        _ => fmt_general(x),
                    },
                })
                .collect(),
            DataType::UInt64 => col
                .u64()?
                .iter()
                .map(|v| v.map_or_else(|| NULL.to_string(), |x| x.to_string()))
                .collect(),
            other => {
                let col = col.cast(&DataType::String).with_context(|| {
                    format!("formatting column {name} of type {other} for markdown")
                })?;
                col.str()?
                    .iter()
                    .map(|v| v.map_or_else(|| NULL.to_string(), md_escape))
                    .collect()
            }
        };
        cells.push(values);
    }
    let mut out = String::new();
    out.push_str(&format!("| {} |\n", header.join(" | ")));
    let aligns: Vec<&str> = cols
        .iter()
        .map(|c| {
            if c.dtype() == &DataType::String {
                "---"
            } else {
                "---:"
            }
        })
        .collect();
    out.push_str(&format!("| {} |\n", aligns.join(" | ")));
    for row in 0..df.height() {
        let row_cells: Vec<&str> = cells.iter().map(|c| c[row].as_str()).collect();
        out.push_str(&format!("| {} |\n", row_cells.join(" | ")));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Atomic writes
// ---------------------------------------------------------------------------------------------

/// `dir/name.tmp` for `dir/name`.
fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Writes the output of `write` to `path` atomically (temporary file + fsync + rename).
fn write_atomic(path: &Path, write: impl FnOnce(&mut fs::File) -> Result<()>) -> Result<()> {
    let tmp = tmp_path(path);
    let res = (|| -> Result<()> {
        let mut f =
            fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        write(&mut f)?;
        f.sync_all()
            .with_context(|| format!("syncing {}", tmp.display()))?;
        fs::rename(&tmp, path)
            .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
        Ok(())
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res.with_context(|| format!("writing {}", path.display()))
}

/// Writes bytes to `path` atomically.
fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    write_atomic(path, |f| Ok(f.write_all(bytes)?))
}

// ---------------------------------------------------------------------------------------------
// Selection, tables, entry point
// ---------------------------------------------------------------------------------------------

/// Model selection on dev only (the test split is never used to choose): the `ok` records of
/// the setting chosen by [`select_on_dev`] for each (model, task, scheme, optimizer), i.e.
/// the setting (template, hyper-parameters, steps, batch size) with the highest mean
/// `best_dev_acc` over seeds (ties: the setting recorded first).
pub fn dev_selected(runs: &[RunRecord]) -> Vec<RunRecord> {
    let chosen: BTreeSet<String> = select_on_dev(&aggregate(runs))
        .into_iter()
        .flat_map(|s| s.group.ok_run_ids)
        .collect();
    runs.iter()
        .filter(|r| r.status == CellStatus::Ok && chosen.contains(&r.run_id))
        .cloned()
        .collect()
}

/// A GitHub markdown table from string cells; the columns in `right` are right-aligned.
fn md_table(header: &[&str], right: &[usize], rows: &[Vec<String>]) -> String {
    let mut out = format!("| {} |\n", header.join(" | "));
    let aligns: Vec<&str> = (0..header.len())
        .map(|i| if right.contains(&i) { "---:" } else { "---" })
        .collect();
    out.push_str(&format!("| {} |\n", aligns.join(" | ")));
    for row in rows {
        let cells: Vec<String> = row.iter().map(|c| md_escape(c)).collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out
}

/// Writes `dir/stem.{parquet,csv,md}` (the markdown given); returns the three paths.
fn write_table(dir: &Path, stem: &str, df: &mut DataFrame, md: &str) -> Result<Vec<PathBuf>> {
    let parquet = dir.join(format!("{stem}.parquet"));
    write_atomic(&parquet, |f| {
        ParquetWriter::new(f).finish(df)?;
        Ok(())
    })?;
    let csv = dir.join(format!("{stem}.csv"));
    write_atomic(&csv, |f| {
        CsvWriter::new(f).include_header(true).finish(df)?;
        Ok(())
    })?;
    let mdp = dir.join(format!("{stem}.md"));
    write_bytes_atomic(&mdp, md.as_bytes())?;
    Ok(vec![parquet, csv, mdp])
}

/// Table file stems written into the reports folder by [`write_report`], each as
/// `.parquet`, `.csv` and `.md`, with their captions.
pub const TABLES: [(&str, &str); 3] = [
    (
        "dev_selected",
        "Dev-selected results: for each model, task, scheme and optimizer, the setting \
         (template, hyper-parameters, steps) with the best mean dev score over seeds, and its \
         test score. Scores are the task's primary metric in %, mean ± sample std over the \
         n seeds that finished (`ok`); `tried` counts the competing settings. The test split \
         plays no part in the choice.",
    ),
    (
        "aggregate",
        "All settings, aggregated over seeds: mean ± sample std over the n `ok` cells of dev \
         and test score (primary metric, %), peak memory, median time per step and forward \
         passes per step; `cells` counts every cell of the setting by status.",
    ),
    (
        "cells",
        "Every cell (one per seed and setting) with its status and the first line of its \
         error; failed, out-of-memory, timed-out and diverged cells are listed here and left \
         out of every mean.",
    ),
];

/// Writes the report of one sweep and returns the paths written, in this order:
///
/// 1. `results_dir/summary.{parquet,csv,md}`: the per-cell table ([`summary_frame`]);
/// 2. `reports_dir/{dev_selected,aggregate,cells}.{parquet,csv,md}` ([`TABLES`]): the
///    dev-selected table ([`select_on_dev`], [`selected_frame`]), the table aggregated over
///    seeds ([`aggregate`], [`aggregate_frame`]) and the per-cell table again;
/// 3. `reports_dir/<figure>.{svg,png}` for each figure of [`plots::FIGURES`]
///    (`acc_vs_memory`, `train_loss`, `time_per_step`, `acc_heatmap`,
///    `test_acc_by_optimizer`);
/// 4. `reports_dir/report.md`: provenance, the tables and the figures with captions.
///
/// Reads `results_dir/runs.jsonl` (see [`read_runs`]) and `results_dir/curves/<run_id>.jsonl`
/// (missing or unreadable curves are skipped). Both directories are created. Aggregates and
/// figures use only `status == ok` cells; with no such cell every file is still written (the
/// figures then show their title and "no finished cells (status = ok)").
///
/// `only`: when given, only the records with these run ids (the current grid) are reported.
/// A run id recorded more than once (a failed cell that was run again) is reported by its
/// latest record.
pub fn write_report(
    results_dir: &Path,
    reports_dir: &Path,
    only: Option<&std::collections::HashSet<String>>,
) -> Result<Vec<PathBuf>> {
    let all = read_runs(&results_dir.join("runs.jsonl"))?;
    let mut latest: BTreeMap<String, usize> = BTreeMap::new();
    for (i, r) in all.iter().enumerate() {
        if only.is_none_or(|ids| ids.contains(&r.run_id)) {
            latest.insert(r.run_id.clone(), i);
        }
    }
    let mut keep: Vec<usize> = latest.into_values().collect();
    keep.sort_unstable();
    let runs: Vec<RunRecord> = keep.into_iter().map(|i| all[i].clone()).collect();
    let groups = aggregate(&runs);
    let selected = select_on_dev(&groups);
    fs::create_dir_all(results_dir)
        .with_context(|| format!("creating {}", results_dir.display()))?;
    fs::create_dir_all(reports_dir)
        .with_context(|| format!("creating {}", reports_dir.display()))?;
    let mut written = Vec::new();

    let mut cells = summary_frame(&runs)?;
    let cells_md = markdown_table(&cells)?;
    written.extend(write_table(results_dir, "summary", &mut cells, &cells_md)?);

    let selected_md = selected_markdown(&selected);
    let aggregate_md = aggregate_markdown(&groups);
    written.extend(write_table(
        reports_dir,
        TABLES[0].0,
        &mut selected_frame(&selected)?,
        &selected_md,
    )?);
    written.extend(write_table(
        reports_dir,
        TABLES[1].0,
        &mut aggregate_frame(&groups)?,
        &aggregate_md,
    )?);
    written.extend(write_table(
        reports_dir,
        TABLES[2].0,
        &mut cells,
        &cells_md,
    )?);

    written.extend(plots::render_all(reports_dir, results_dir, &selected)?);

    let doc = document::report_md(&document::Inputs {
        sweep: runs.first().map(|r| r.sweep.clone()).unwrap_or_else(|| {
            reports_dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "sweep".to_string())
        }),
        runs: &runs,
        results_dir,
        selected_md: &selected_md,
        aggregate_md: &aggregate_md,
        cells_md: &cells_md,
    });
    let doc_path = reports_dir.join("report.md");
    write_bytes_atomic(&doc_path, doc.as_bytes())?;
    written.push(doc_path);
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::HParams;
    use polars::prelude::{ParquetReader, SerReader};
    use std::io::Write;

    fn record(
        run_id: &str,
        scheme: &str,
        optimizer: &str,
        lr: f64,
        seed: u64,
        status: CellStatus,
    ) -> RunRecord {
        let ok = status == CellStatus::Ok;
        let zo = optimizer.starts_with("zo");
        RunRecord {
            run_id: run_id.to_string(),
            sweep: "unit".to_string(),
            model: "bert-tiny".to_string(),
            family: Some("bert".to_string()),
            task: "sst2".to_string(),
            scheme: scheme.to_string(),
            optimizer: optimizer.to_string(),
            estimator: if zo { "rge" } else { "backprop" }.to_string(),
            template: Some("mezo".into()),
            formulation: Some("classifier".into()),
            icl_shots: None,
            runtime: None,
            offload: None,
            eval_forward_passes: Some(4),
            metric: Some("acc".into()),
            test_metrics: BTreeMap::new(),
            zero_shot_metrics: BTreeMap::new(),
            truncated_rows: Some(0),
            jvp_method: None,
            diverged_at: None,
            backward_passes_per_step: Some(if zo { 0.0 } else { 1.0 }),
            hparams: {
                let mut h = HParams::new();
                h.insert("lr".into(), lr.into());
                if zo {
                    h.insert("mu".into(), 1e-3.into());
                }
                h
            },
            seed,
            data_seed: 0,
            steps: 20,
            batch_size: 8,
            status,
            error: (!ok).then(|| "boom | with pipe".to_string()),
            majority_acc: Some(0.5),
            zero_shot_acc: Some(0.5),
            best_dev_acc: ok.then_some(0.8),
            best_step: ok.then_some(10),
            test_acc: ok.then_some(0.75 + 0.01 * seed as f64),
            final_train_loss: ok.then_some(0.42),
            trainable_params: Some(1000),
            total_params: Some(4_000_000),
            peak_mem_bytes: ok.then_some(300 << 20),
            mem_method: "VmHWM".to_string(),
            mem_breakdown: BTreeMap::from([("weights".to_string(), 16_000_000u64)]),
            time_per_step_s: ok.then_some(0.05),
            time_per_step_p10_s: ok.then_some(0.04),
            time_per_step_p90_s: ok.then_some(0.06),
            forward_passes_per_step: Some(if zo { 2.0 } else { 1.0 }),
            total_forward_passes: ok.then_some(40),
            num_train: Some(64),
            num_dev: Some(32),
            num_eval: Some(32),
            wall_s: 12.5,
            backend: "ndarray".to_string(),
            precision: "f32".to_string(),
            threads: 2,
            cpu: "test cpu".to_string(),
            git_commit: "unknown".to_string(),
            versions: BTreeMap::from([("zobench".to_string(), "0.1.0".to_string())]),
            started_at: "2025-01-01T00:00:00Z".to_string(),
        }
    }

    fn write_lines<T: serde::Serialize>(path: &Path, items: &[T]) {
        let mut f = fs::File::create(path).unwrap();
        for it in items {
            writeln!(f, "{}", serde_json::to_string(it).unwrap()).unwrap();
        }
    }

    fn curve(n: usize) -> Vec<CurvePoint> {
        (1..=n)
            .map(|s| CurvePoint {
                step: s,
                train_loss: 0.7 - 0.01 * s as f64,
                forward_passes: 2 * s as u64,
                dev_acc: (s % 5 == 0).then_some(0.6),
            })
            .collect()
    }

    /// Every figure is a complete SVG and a PNG of the column width with a non-trivial size.
    fn assert_plots(reports: &Path) {
        for (stem, _) in plots::FIGURES {
            let svg = fs::read_to_string(reports.join(format!("{stem}.svg"))).unwrap();
            assert!(svg.contains("<svg"), "{stem}.svg is not an SVG");
            assert!(
                svg.trim_end().ends_with("</svg>"),
                "{stem}.svg is truncated"
            );
            assert!(
                svg.len() > 300 && svg.contains("<text"),
                "{stem}.svg is nearly empty"
            );
            assert!(
                svg.contains("width=\"990\""),
                "{stem}.svg is not 990 px wide"
            );
            let png = fs::read(reports.join(format!("{stem}.png"))).unwrap();
            assert!(
                png.starts_with(&[0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a]),
                "{stem}.png lacks the PNG magic"
            );
            assert!(
                png.len() > 2000,
                "{stem}.png is nearly empty ({} bytes)",
                png.len()
            );
            // IHDR: width and height, big-endian, at bytes 16..24.
            let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
            let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
            assert_eq!(width, 990, "{stem}.png width");
            assert!(height >= 660, "{stem}.png height {height}");
        }
    }

    /// Number of files `write_report` writes: summary (3) + three tables (9) + figures + report.md.
    const N_FILES: usize = 3 + 9 + 2 * plots::FIGURES.len() + 1;

    #[test]
    fn full_report() {
        let dir = tempfile::tempdir().unwrap();
        let results = dir.path().join("results");
        let reports = dir.path().join("reports");
        fs::create_dir_all(results.join("curves")).unwrap();
        let runs = vec![
            record("r4", "head", "zo-sgd", 1e-3, 1, CellStatus::Ok),
            record("r1", "ft", "zo-sgd", 1e-3, 0, CellStatus::Ok),
            record("r2", "ft", "fo-sgd", 1e-2, 0, CellStatus::Ok),
            record("r3", "ft", "zo-sgd", 1e-3, 1, CellStatus::Ok),
            record("r5", "head", "fo-sgd", 1e-2, 0, CellStatus::Failed),
        ];
        write_lines(&results.join("runs.jsonl"), &runs);
        for id in ["r1", "r2", "r4"] {
            write_lines(
                &results.join("curves").join(format!("{id}.jsonl")),
                &curve(20),
            );
        }
        // r3 has no curve file (skipped); r5 failed.

        let written = write_report(&results, &reports, None).unwrap();
        assert_eq!(written.len(), N_FILES);
        for p in &written {
            assert!(
                fs::metadata(p).unwrap().len() > 0,
                "{} is empty",
                p.display()
            );
        }
        for name in ["summary.parquet", "summary.csv", "summary.md"] {
            assert!(written.contains(&results.join(name)), "{name} not returned");
        }
        // No temporary files left behind.
        for d in [&results, &reports] {
            for e in fs::read_dir(d).unwrap() {
                let n = e.unwrap().file_name().to_string_lossy().into_owned();
                assert!(!n.contains(".tmp"), "leftover {n}");
            }
        }

        let csv = fs::read_to_string(results.join("summary.csv")).unwrap();
        let mut lines = csv.lines();
        let header = lines.next().unwrap();
        assert!(header.split(',').any(|c| c == "test_acc"), "{header}");
        assert!(header.starts_with(
            "run_id,model,task,scheme,optimizer,lr,mu,hparams,seed,status,steps,majority_acc,zero_shot_acc"
        ));
        assert_eq!(lines.count(), runs.len());

        let f = fs::File::open(results.join("summary.parquet")).unwrap();
        let df = ParquetReader::new(f).finish().unwrap();
        assert_eq!(df.height(), runs.len());
        // 28 columns + formulation, icl_shots, eval_forward_passes (no test metrics here).
        assert_eq!(df.width(), 31);
        assert_eq!(
            df.column("formulation").unwrap().str().unwrap().get(0),
            Some("classifier")
        );
        // Sorted by model, task, scheme, optimizer, lr, seed.
        let ids: Vec<&str> = df
            .column("run_id")
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .map(|v| v.unwrap())
            .collect();
        assert_eq!(ids, ["r2", "r1", "r3", "r5", "r4"]);
        let mu = df.column("mu").unwrap().f64().unwrap();
        assert_eq!(mu.get(0), None); // fo-sgd
        assert_eq!(mu.get(1), Some(1e-3));
        let mem = df.column("peak_mem_mib").unwrap().f64().unwrap();
        assert_eq!(mem.get(0), Some(300.0));

        let md = fs::read_to_string(results.join("summary.md")).unwrap();
        let md_lines: Vec<&str> = md.lines().collect();
        assert_eq!(md_lines.len(), 2 + runs.len());
        assert!(md_lines[0].contains("test_acc (%)"));
        let ncols = md_lines[0].matches(" | ").count();
        for l in &md_lines {
            assert!(l.starts_with("| ") && l.ends_with(" |"), "{l}");
            assert_eq!(l.replace("\\|", "").matches(" | ").count(), ncols, "{l}");
        }
        assert!(md_lines[1].contains("---"));
        assert!(md.contains("75.0")); // r1 test accuracy as a percentage
        assert!(md.contains('–')); // nulls of the failed cell

        assert_plots(&reports);
    }

    #[test]
    fn degenerate_reports() {
        // No finished cell at all.
        let dir = tempfile::tempdir().unwrap();
        let results = dir.path().join("results");
        let reports = dir.path().join("reports");
        fs::create_dir_all(&results).unwrap();
        write_lines(
            &results.join("runs.jsonl"),
            &[record("f1", "ft", "zo-sgd", 1e-3, 0, CellStatus::Failed)],
        );
        let written = write_report(&results, &reports, None).unwrap();
        assert_eq!(written.len(), N_FILES);
        assert_plots(&reports);
        keep(&reports, "no-ok-cell");
        let md = fs::read_to_string(reports.join("report.md")).unwrap();
        assert!(md.contains("1 failed"), "{md}");

        // A single finished cell with a one-point curve and NaN loss points.
        let dir = tempfile::tempdir().unwrap();
        let results = dir.path().join("results");
        let reports = dir.path().join("reports");
        fs::create_dir_all(results.join("curves")).unwrap();
        write_lines(
            &results.join("runs.jsonl"),
            &[record("s1", "ft", "zo-sgd", 1e-3, 0, CellStatus::Ok)],
        );
        let mut c = curve(2);
        c[1].train_loss = f64::NAN;
        // serde_json writes NaN as null, which does not parse as f64: that line is the last
        // one, so it is skipped with a warning.
        write_lines(&results.join("curves/s1.jsonl"), &c);
        write_report(&results, &reports, None).unwrap();
        assert_plots(&reports);

        // Empty runs.jsonl.
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("runs.jsonl"), "").unwrap();
        let written = write_report(dir.path(), &dir.path().join("rep"), None).unwrap();
        assert_eq!(written.len(), N_FILES);
        let md = fs::read_to_string(dir.path().join("summary.md")).unwrap();
        assert_eq!(md.lines().count(), 2);
    }

    #[test]
    fn read_runs_tolerates_only_a_partial_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs.jsonl");
        let a =
            serde_json::to_string(&record("a", "ft", "zo-sgd", 1e-3, 0, CellStatus::Ok)).unwrap();
        let b =
            serde_json::to_string(&record("b", "ft", "fo-sgd", 1e-2, 0, CellStatus::Ok)).unwrap();
        let partial = &b[..b.len() / 2];

        fs::write(&path, format!("{a}\n{b}\n{partial}")).unwrap();
        let runs = read_runs(&path).unwrap();
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[1].run_id, "b");

        fs::write(&path, format!("{a}\n{partial}\n{b}\n")).unwrap();
        let err = format!("{:#}", read_runs(&path).unwrap_err());
        assert!(err.contains("line 2"), "{err}");
        assert!(err.contains("runs.jsonl"), "{err}");

        // Blank lines are ignored.
        fs::write(&path, format!("{a}\n\n{b}\n\n")).unwrap();
        assert_eq!(read_runs(&path).unwrap().len(), 2);
        // A complete (newline-terminated) bad last line is not a partial write: an error.
        fs::write(&path, format!("{a}\n{partial}\n")).unwrap();
        let err = read_runs(&path).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");

        let cpath = dir.path().join("c.jsonl");
        fs::write(&cpath, "{\"step\":1,\"train_loss\":0.5,\"forward_passes\":2,\"dev_acc\":null}\n{\"step\":2,\"tr").unwrap();
        assert_eq!(read_curve(&cpath).unwrap().len(), 1);
    }

    /// A finished cell with the given dev and test scores.
    fn scored(run_id: &str, lr: f64, seed: u64, dev: f64, test: f64) -> RunRecord {
        let mut r = record(run_id, "ft", "zo-sgd", lr, seed, CellStatus::Ok);
        r.best_dev_acc = Some(dev);
        r.test_acc = Some(test);
        r
    }

    #[test]
    fn aggregation_counts_only_ok_cells_with_sample_std() {
        let mut runs = vec![
            scored("a0", 1e-3, 0, 0.6, 0.70),
            scored("a1", 1e-3, 1, 0.7, 0.80),
            scored("a2", 1e-3, 2, 0.8, 0.90),
            record("a3", "ft", "zo-sgd", 1e-3, 3, CellStatus::Failed),
            record("a4", "ft", "zo-sgd", 1e-3, 4, CellStatus::Diverged),
        ];
        runs[0].peak_mem_bytes = Some(100 << 20);
        runs[1].peak_mem_bytes = Some(200 << 20);
        runs[2].peak_mem_bytes = Some(300 << 20);
        runs[2].time_per_step_s = Some(f64::NAN); // left out of the time mean
        // A diverged cell's values never enter a mean, even when present.
        runs[4].test_acc = Some(0.0);
        runs[4].best_dev_acc = Some(1.0);
        let groups = aggregate(&runs);
        assert_eq!(groups.len(), 1);
        let g = &groups[0];
        assert_eq!((g.n_cells, g.n_ok), (5, 3));
        assert_eq!(g.statuses, "diverged 1, failed 1, ok 3");
        assert_eq!(g.first_error.as_deref(), Some("boom | with pipe"));
        assert_eq!(g.test.n, 3);
        assert!((g.test.mean.unwrap() - 0.8).abs() < 1e-12);
        assert!((g.test.std.unwrap() - 0.1).abs() < 1e-12); // sample std (n − 1)
        assert!((g.dev.mean.unwrap() - 0.7).abs() < 1e-12);
        assert!((g.peak_mem_mib.mean.unwrap() - 200.0).abs() < 1e-9);
        assert!((g.peak_mem_mib.std.unwrap() - 100.0).abs() < 1e-9);
        assert_eq!(g.time_per_step_s.n, 2);
        assert_eq!(g.time_per_step_s.std, Some(0.0));
        assert_eq!(g.ok_run_ids, ["a0", "a1", "a2"]);
        assert_eq!(g.setting, "lr=0.001, mu=0.001");

        // One value: a mean, no std; none: neither.
        let one = Stat::of([Some(0.5), None, Some(f64::NAN)]);
        assert_eq!((one.mean, one.std, one.n), (Some(0.5), None, 1));
        assert_eq!(one.scaled(100.0).display(1), "50.0");
        assert_eq!(Stat::of([None]).display(1), "–");
        assert_eq!(
            Stat::of([Some(0.7), Some(0.9)]).scaled(100.0).display(1),
            "80.0 ± 14.1"
        );

        // The frame carries the same numbers; the markdown shows mean ± std in %.
        let df = aggregate_frame(&groups).unwrap();
        assert_eq!(df.height(), 1);
        let n = df.column("n").unwrap().u64().unwrap().get(0);
        assert_eq!(n, Some(3));
        let sd = df
            .column("test_std")
            .unwrap()
            .f64()
            .unwrap()
            .get(0)
            .unwrap();
        assert!((sd - 0.1).abs() < 1e-12);
        let md = aggregate_markdown(&groups);
        assert!(md.contains("| 80.0 ± 10.0 |"), "{md}");
        assert!(md.contains("diverged 1, failed 1, ok 3"), "{md}");

        // Different hyper-parameters, steps or templates are different settings.
        let mut other = scored("b0", 1e-2, 0, 0.5, 0.5);
        other.steps = 40;
        let mut tmpl = scored("c0", 1e-3, 0, 0.5, 0.5);
        tmpl.template = Some("none".into());
        runs.extend([other, tmpl]);
        assert_eq!(aggregate(&runs).len(), 3);
    }

    #[test]
    fn dev_selection_picks_by_dev_never_by_test() {
        // lr = 1e-3 is best on dev (mean 0.80) but worse on test (0.60);
        // lr = 1e-2 is worse on dev (0.70) and best on test (0.90).
        let mut runs = vec![
            scored("hi-dev-0", 1e-3, 0, 0.78, 0.58),
            scored("hi-dev-1", 1e-3, 1, 0.82, 0.62),
            scored("hi-test-0", 1e-2, 0, 0.69, 0.91),
            scored("hi-test-1", 1e-2, 1, 0.71, 0.89),
            // A failed cell of a third setting does not compete.
            record("failed", "ft", "zo-sgd", 1e-1, 0, CellStatus::Failed),
        ];
        // Another optimizer is selected separately.
        let mut fo = scored("fo", 1e-2, 0, 0.5, 0.5);
        fo.optimizer = "fo-sgd".into();
        runs.push(fo);
        let groups = aggregate(&runs);
        let sel = select_on_dev(&groups);
        assert_eq!(sel.len(), 2);
        let zo = sel.iter().find(|s| s.group.optimizer == "zo-sgd").unwrap();
        assert_eq!(hp_value(&zo.group, "lr"), Some(1e-3));
        assert_eq!(zo.candidates, 2);
        assert!((zo.group.test.mean.unwrap() - 0.60).abs() < 1e-12);
        assert_eq!(zo.group.n_ok, 2);

        let picked: Vec<String> = dev_selected(&runs).into_iter().map(|r| r.run_id).collect();
        assert_eq!(picked, ["hi-dev-0", "hi-dev-1", "fo"]);

        let df = selected_frame(&sel).unwrap();
        let lr = df.column("lr").unwrap().f64().unwrap();
        let test = df.column("test_mean").unwrap().f64().unwrap();
        let opt = df.column("optimizer").unwrap().str().unwrap();
        for i in 0..df.height() {
            if opt.get(i) == Some("zo-sgd") {
                assert_eq!(lr.get(i), Some(1e-3));
                assert!((test.get(i).unwrap() - 0.60).abs() < 1e-12);
            }
        }
        let md = selected_markdown(&sel);
        assert!(md.contains("| 80.0 ± 2.8 | 60.0 ± 2.8 |"), "{md}");

        // Ties go to the setting recorded first.
        let tie = vec![
            scored("t1", 1e-2, 0, 0.7, 0.1),
            scored("t2", 1e-3, 0, 0.7, 0.9),
        ];
        let sel = select_on_dev(&aggregate(&tie));
        assert_eq!(sel[0].group.ok_run_ids, ["t1"]);
    }

    fn hp_value(g: &Group, key: &str) -> Option<f64> {
        g.hparams.get(key).and_then(|v| v.as_f64())
    }

    #[test]
    fn pareto_front_keeps_only_undominated_points() {
        // (memory, score): less memory and a higher score are better.
        let pts = [
            (100.0, 0.60),   // 0: front (least memory)
            (150.0, 0.55),   // 1: dominated by 0
            (200.0, 0.80),   // 2: front
            (200.0, 0.70),   // 3: dominated by 2 (same memory, lower score)
            (300.0, 0.80),   // 4: dominated by 2 (more memory, same score)
            (400.0, 0.90),   // 5: front
            (f64::NAN, 1.0), // 6: ignored
            (100.0, 0.60),   // 7: duplicate of 0, not listed twice
        ];
        assert_eq!(pareto_front(&pts), vec![0, 2, 5]);
        assert_eq!(pareto_front(&[]), Vec::<usize>::new());
        assert_eq!(pareto_front(&[(1.0, 1.0)]), vec![0]);
        // A point with both less memory and a higher score dominates everything else.
        assert_eq!(pareto_front(&[(5.0, 0.1), (1.0, 0.9), (3.0, 0.5)]), vec![1]);
    }

    #[test]
    fn report_md_lists_every_table_figure_and_the_provenance() {
        let dir = tempfile::tempdir().unwrap();
        let results = dir.path().join("results");
        let reports = dir.path().join("reports");
        fs::create_dir_all(results.join("curves")).unwrap();
        let mut runs = vec![
            scored("m0", 1e-3, 0, 0.7, 0.65),
            scored("m1", 1e-3, 1, 0.8, 0.75),
            record("m2", "head", "fo-sgd", 1e-2, 0, CellStatus::Ok),
            record("m3", "head", "zo-sgd", 1e-2, 0, CellStatus::Oom),
        ];
        for r in &mut runs {
            r.git_commit = "0123abcd".into();
            r.cpu = "Test CPU 9000".into();
            r.backend = "flex".into();
            r.versions.insert("burn".into(), "0.22.1".into());
        }
        runs[3].error = Some("killed by the OOM killer\nsecond line".into());
        write_lines(&results.join("runs.jsonl"), &runs);
        for id in ["m0", "m1", "m2"] {
            write_lines(
                &results.join("curves").join(format!("{id}.jsonl")),
                &curve(30),
            );
        }
        let written = write_report(&results, &reports, None).unwrap();
        assert_eq!(written.len(), N_FILES);
        let md = fs::read_to_string(reports.join("report.md")).unwrap();
        assert_eq!(written.last().unwrap(), &reports.join("report.md"));
        for (stem, _) in TABLES {
            for ext in ["parquet", "csv", "md"] {
                let f = format!("{stem}.{ext}");
                assert!(
                    md.contains(&format!("]({f})")),
                    "report.md lacks a link to {f}"
                );
                assert!(written.contains(&reports.join(&f)), "{f} not written");
            }
        }
        for (stem, _) in plots::FIGURES {
            for ext in ["svg", "png"] {
                let f = format!("{stem}.{ext}");
                assert!(
                    md.contains(&format!("]({f})")),
                    "report.md lacks a link to {f}"
                );
                assert!(written.contains(&reports.join(&f)), "{f} not written");
            }
        }
        for needle in [
            "0123abcd",
            "Test CPU 9000",
            "flex",
            "f32",
            "burn 0.22.1",
            "zobench 0.1.0",
            "| threads | 2 |",
            "VmHWM",
            "2025-01-01T00:00:00Z",
            "# unit:",
            "3 ok",
            "1 oom",
        ] {
            assert!(md.contains(needle), "report.md lacks {needle:?}:\n{md}");
        }
        // The dev-selected table is embedded, with the mean ± std over the two seeds.
        assert!(md.contains("70.0 ± 7.1"), "{md}");
        // The failed cell shows its status and the first line of its error only.
        assert!(md.contains("killed by the OOM killer"));
        assert!(!md.contains("second line"));
        let cells = fs::read_to_string(reports.join("cells.csv")).unwrap();
        assert!(cells.contains("killed by the OOM killer"));
        assert!(!cells.contains("second line"));
        assert_plots(&reports);

        // The tables read back with polars.
        for stem in ["dev_selected", "aggregate", "cells"] {
            let f = fs::File::open(reports.join(format!("{stem}.parquet"))).unwrap();
            let df = ParquetReader::new(f).finish().unwrap();
            let rows = match stem {
                "dev_selected" => 2, // ft/zo-sgd, head/fo-sgd; nothing for the OOM-only head/zo-sgd
                "aggregate" => 3,
                _ => 4,
            };
            assert_eq!(df.height(), rows, "{stem}");
        }
    }

    /// Copies `reports` to `$ZOBENCH_KEEP_TEST_REPORT/<name>` when that variable is set (to
    /// look at the figures of a test by eye).
    fn keep(reports: &Path, name: &str) {
        if let Some(to) = std::env::var_os("ZOBENCH_KEEP_TEST_REPORT") {
            let to = Path::new(&to).join(name);
            fs::create_dir_all(&to).unwrap();
            for e in fs::read_dir(reports).unwrap() {
                let e = e.unwrap();
                fs::copy(e.path(), to.join(e.file_name())).unwrap();
            }
        }
    }

    #[test]
    fn a_grid_of_tasks_schemes_optimizers_and_seeds_renders_one_panel_per_model_and_task() {
        let dir = tempfile::tempdir().unwrap();
        let results = dir.path().join("results");
        let reports = dir.path().join("reports");
        fs::create_dir_all(results.join("curves")).unwrap();
        let mut runs = Vec::new();
        let mut k = 0u64;
        for task in ["sst2", "rte"] {
            for (si, scheme) in ["ft", "head"].iter().enumerate() {
                for (oi, opt) in ["fo-sgd", "zo-adam", "zo-sgd"].iter().enumerate() {
                    for lr in [1e-3, 1e-2] {
                        for seed in 0..3u64 {
                            k += 1;
                            let id = format!("g{k}");
                            let mut r = record(&id, scheme, opt, lr, seed, CellStatus::Ok);
                            r.task = task.into();
                            let base = 0.55 + 0.1 * oi as f64 + 0.05 * si as f64;
                            let jitter = 0.01 * seed as f64 + if lr > 5e-3 { 0.02 } else { 0.0 };
                            r.best_dev_acc = Some(base + jitter);
                            r.test_acc = Some(base - 0.02 + jitter);
                            r.peak_mem_bytes = Some(
                                ((150 + 200 * (oi == 0) as u64 + 50 * oi as u64) << 20) + seed,
                            );
                            r.time_per_step_s = Some(0.1 + 0.05 * oi as f64);
                            r.time_per_step_p10_s = Some(0.08 + 0.05 * oi as f64);
                            r.time_per_step_p90_s = Some(0.14 + 0.05 * oi as f64);
                            if seed == 2 && opt == &"zo-sgd" && lr > 5e-3 {
                                r.status = CellStatus::Diverged;
                                r.error = Some("loss became NaN at step 7".into());
                            }
                            let fp = if opt.starts_with("zo") { 2 } else { 1 };
                            let c: Vec<CurvePoint> = (1..=40)
                                .map(|s| CurvePoint {
                                    step: s,
                                    train_loss: 0.7
                                        * (-(s as f64) / (20.0 + 10.0 * oi as f64)).exp()
                                        + 0.02 * ((s as u64 * 7 + seed * 13) % 5) as f64,
                                    forward_passes: fp * s as u64,
                                    dev_acc: None,
                                })
                                .collect();
                            write_lines(&results.join("curves").join(format!("{id}.jsonl")), &c);
                            runs.push(r);
                        }
                    }
                }
            }
        }
        write_lines(&results.join("runs.jsonl"), &runs);
        write_report(&results, &reports, None).unwrap();
        assert_plots(&reports);
        // Two panels (one per task) in the fixed-height figures.
        let png = fs::read(reports.join("acc_vs_memory.png")).unwrap();
        assert_eq!(u32::from_be_bytes(png[20..24].try_into().unwrap()), 2 * 660);
        let sel = fs::read_to_string(reports.join("dev_selected.csv")).unwrap();
        assert_eq!(sel.lines().count(), 1 + 2 * 2 * 3);
        keep(&reports, "grid");
    }
}
