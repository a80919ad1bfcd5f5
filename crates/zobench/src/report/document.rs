//! `report.md`: the sweep's provenance, tables and figures, with captions, in markdown that
//! can be pasted into a paper (or converted with pandoc).

use super::plots::{FIG_WIDTH_IN, FIGURES, PX_PER_IN};
use super::{TABLES, status_str};
use crate::record::{CellStatus, RunRecord};
use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::path::Path;

/// Largest per-cell table embedded in `report.md` (longer ones are linked only).
const MAX_EMBEDDED_CELLS: usize = 100;

/// What `report.md` is made of.
pub struct Inputs<'a> {
    /// Sweep name.
    pub sweep: String,
    /// The reported records.
    pub runs: &'a [RunRecord],
    /// Folder of `runs.jsonl`.
    pub results_dir: &'a Path,
    /// Markdown of the dev-selected table.
    pub selected_md: &'a str,
    /// Markdown of the aggregated table.
    pub aggregate_md: &'a str,
    /// Markdown of the per-cell table.
    pub cells_md: &'a str,
}

/// The distinct values of `f` over the runs, joined with `, ` (`unknown` when none).
fn distinct(runs: &[RunRecord], f: impl Fn(&RunRecord) -> String) -> String {
    let set: BTreeSet<String> = runs.iter().map(f).filter(|s| !s.is_empty()).collect();
    if set.is_empty() {
        "unknown".to_string()
    } else {
        set.into_iter().collect::<Vec<_>>().join(", ")
    }
}

/// Links to `stem.parquet`, `stem.csv`, `stem.md`.
fn table_links(stem: &str) -> String {
    ["md", "csv", "parquet"]
        .iter()
        .map(|e| format!("[`{stem}.{e}`]({stem}.{e})"))
        .collect::<Vec<_>>()
        .join(" · ")
}

/// The provenance rows (name, value) of the runs.
pub fn provenance(runs: &[RunRecord]) -> Vec<(&'static str, String)> {
    let versions = distinct(runs, |r| {
        r.versions
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    });
    let started: BTreeSet<&str> = runs.iter().map(|r| r.started_at.as_str()).collect();
    let started = match (started.first(), started.last()) {
        (Some(a), Some(b)) if a == b => a.to_string(),
        (Some(a), Some(b)) => format!("{a} – {b}"),
        _ => "unknown".to_string(),
    };
    vec![
        ("git commit", distinct(runs, |r| r.git_commit.clone())),
        ("crate versions", versions),
        ("machine / CPU", distinct(runs, |r| r.cpu.clone())),
        ("backend", distinct(runs, |r| r.backend.clone())),
        ("precision", distinct(runs, |r| r.precision.clone())),
        ("threads", distinct(runs, |r| r.threads.to_string())),
        (
            "memory measurement",
            distinct(runs, |r| r.mem_method.clone()),
        ),
        ("started (UTC)", started),
    ]
}

/// Renders `report.md`.
pub fn report_md(inp: &Inputs) -> String {
    let runs = inp.runs;
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in runs {
        *counts.entry(status_str(r.status)).or_default() += 1;
    }
    let n_ok = runs.iter().filter(|r| r.status == CellStatus::Ok).count();
    let status_line = if counts.is_empty() {
        "no cells".to_string()
    } else {
        counts
            .iter()
            .map(|(s, c)| format!("{c} {s}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let prov = provenance(runs);
    let get = |k: &str| {
        prov.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let mut s = String::new();
    s.push_str(&format!(
        "# {}: zeroth-order fine-tuning benchmark\n\n",
        inp.sweep
    ));
    s.push_str(&format!(
        "{} cell(s) ({status_line}) from `{}`. Means, standard deviations and n count only \
         the cells with status `ok` ({n_ok}); hyper-parameters are chosen on the dev split \
         only, and the test score is read after the choice.\n\n",
        runs.len(),
        inp.results_dir.join("runs.jsonl").display(),
    ));
    s.push_str("## Setup and provenance\n\n");
    s.push_str(&format!(
        "Experiments ran on {} with {} thread(s), the `{}` backend and {} parameters; peak \
         memory is measured as `{}` of each cell's own process. Code: {} (git commit {}).\n\n",
        get("machine / CPU"),
        get("threads"),
        get("backend"),
        get("precision"),
        get("memory measurement"),
        get("crate versions"),
        get("git commit"),
    ));
    s.push_str("| | |\n| --- | --- |\n");
    for (k, v) in &prov {
        s.push_str(&format!("| {k} | {} |\n", v.replace('|', "\\|")));
    }
    s.push('\n');

    let bodies = [inp.selected_md, inp.aggregate_md, inp.cells_md];
    for (i, ((stem, caption), body)) in TABLES.iter().zip(bodies).enumerate() {
        s.push_str(&format!("## Table {}: `{stem}`\n\n", i + 1));
        s.push_str(&format!("**Table {}.** {caption}\n\n", i + 1));
        if *stem == "cells" && runs.len() > MAX_EMBEDDED_CELLS {
            s.push_str(&format!("({} cells: see the files below.)\n\n", runs.len()));
        } else {
            s.push_str(body);
            if body.lines().count() <= 2 {
                s.push_str("\n(empty: no setting has a cell with status `ok` and a dev score)\n");
            }
            s.push('\n');
        }
        s.push_str(&format!("Files: {}\n\n", table_links(stem)));
    }

    s.push_str("## Figures\n\n");
    s.push_str(&format!(
        "Each figure is one column wide ({FIG_WIDTH_IN} in at {PX_PER_IN} px/in), DejaVu Sans \
         9/8/7 pt, one panel per model and task.\n\n"
    ));
    for (i, (stem, caption)) in FIGURES.iter().enumerate() {
        s.push_str(&format!("### Figure {}: `{stem}`\n\n", i + 1));
        s.push_str(&format!("![Figure {}]({stem}.svg)\n\n", i + 1));
        s.push_str(&format!("**Figure {}.** {caption}\n\n", i + 1));
        s.push_str(&format!(
            "Files: [`{stem}.svg`]({stem}.svg) · [`{stem}.png`]({stem}.png)\n\n"
        ));
    }
    s
}
