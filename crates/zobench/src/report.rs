//! `zobench report`: reads a sweep's `runs.jsonl` and loss curves, builds the per-cell summary
//! table with polars (parquet, csv, markdown) and draws the plots with plotters (SVG + PNG).
//!
//! Layout (see `DESIGN.md`):
//!
//! ```text
//! results_dir/runs.jsonl            input, one RunRecord per line
//! results_dir/curves/<run_id>.jsonl input, one CurvePoint per line (optional per cell)
//! results_dir/summary.{parquet,csv,md}
//! reports_dir/{test_acc_by_optimizer,train_loss,acc_vs_memory}.{svg,png}
//! ```
//!
//! Every file is written atomically: first to a temporary name in the same directory
//! (`name.tmp`, or `stem.tmp.png` for PNGs since the encoder picks the format from the
//! extension), then renamed over the final name.
//!
//! Degenerate inputs never panic: when no cell finished with `status == ok` (or no curve
//! exists) the plots are still written, as an empty frame with the title and a centred
//! explanatory line ("no finished cells (status = ok)"), so a report always has the same
//! set of files. Single points get padded axis ranges; `None` / NaN / infinite values are
//! skipped.

use crate::record::{CellStatus, CurvePoint, RunRecord};
use anyhow::{Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use polars::prelude::{
    Column, CsvWriter, DataFrame, DataType, ParquetWriter, SerWriter, SortMultipleOptions,
};
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Once;

/// The font every plot uses, registered as family `"sans-serif"`.
static FONT_BYTES: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSans.ttf");
static FONT_INIT: Once = Once::new();

/// Font family of every text in the plots.
const FONT: &str = "sans-serif";
/// Size (px) of plot titles.
const TITLE_SIZE: u32 = 22;
/// Size (px) of axis descriptions.
const DESC_SIZE: u32 = 16;
/// Size (px) of tick labels.
const LABEL_SIZE: u32 = 14;
/// Size (px) of legend entries and point annotations.
const LEGEND_SIZE: u32 = 14;
/// Colour of secondary text (messages, point annotations).
const TEXT_GREY: RGBColor = RGBColor(60, 60, 60);
/// Pixel size of the PNG and SVG plots.
const PLOT_SIZE: (u32, u32) = (800, 500);

/// Plot file stems written by [`write_report`] (each as `.svg` and `.png`).
const PLOT_STEMS: [&str; 3] = ["test_acc_by_optimizer", "train_loss", "acc_vs_memory"];

/// Registers the embedded DejaVu Sans as `"sans-serif"` (once per process). The bitmap
/// backend panics with `NoSuchFont` without it.
fn ensure_font() {
    FONT_INIT.call_once(|| {
        if plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES).is_err() {
            tracing::error!("could not register the embedded DejaVuSans.ttf font");
        }
    });
}

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
/// One row per record, sorted by `model, task, scheme, optimizer, lr, seed`. Columns:
/// `run_id, model, task, scheme, optimizer` (str), `lr` (f64), `mu` (f64, null for
/// first-order optimizers), `seed` (u64), `status` (str), `steps` (u64), `majority_acc,
/// zero_shot_acc, best_dev_acc,
/// test_acc` (f64 in [0, 1]), `final_train_loss` (f64, nats), `trainable_params` (u64),
/// `peak_mem_mib` (f64, `peak_mem_bytes / 2^20`), `time_per_step_s` (f64),
/// `forward_passes_per_step` (f64), `total_forward_passes` (u64), `wall_s` (f64).
/// Non-finite floats are stored as null.
pub fn summary_frame(runs: &[RunRecord]) -> Result<DataFrame> {
    let s = |f: &dyn Fn(&RunRecord) -> String| -> Vec<String> { runs.iter().map(f).collect() };
    let of = |f: &dyn Fn(&RunRecord) -> Option<f64>| -> Vec<Option<f64>> {
        runs.iter().map(|r| finite(f(r))).collect()
    };
    let ou = |f: &dyn Fn(&RunRecord) -> Option<u64>| -> Vec<Option<u64>> {
        runs.iter().map(f).collect()
    };
    let columns = vec![
        Column::new("run_id".into(), s(&|r| r.run_id.clone())),
        Column::new("model".into(), s(&|r| r.model.clone())),
        Column::new("task".into(), s(&|r| r.task.clone())),
        Column::new("scheme".into(), s(&|r| r.scheme.clone())),
        Column::new("optimizer".into(), s(&|r| r.optimizer.clone())),
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
    ];
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
        let is_acc = name.ends_with("_acc");
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
// Plots
// ---------------------------------------------------------------------------------------------

/// One plot, drawable on any plotters backend.
trait Plot {
    /// Draws the whole figure on `root` (already white-filled).
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()>
    where
        DB::ErrorType: 'static;
}

/// Renders `plot` to `dir/stem.svg` and `dir/stem.png` atomically; returns both paths.
fn render(dir: &Path, stem: &str, plot: &impl Plot) -> Result<Vec<PathBuf>> {
    ensure_font();
    let svg_path = dir.join(format!("{stem}.svg"));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, PLOT_SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        plot.draw(&root)
            .with_context(|| format!("drawing {}", svg_path.display()))?;
        root.present()?;
    }
    write_bytes_atomic(&svg_path, svg.as_bytes())?;

    // The PNG encoder picks the format from the extension, so the temporary name keeps it.
    let png_path = dir.join(format!("{stem}.png"));
    let png_tmp = dir.join(format!("{stem}.tmp.png"));
    let res = (|| -> Result<()> {
        {
            let root = BitMapBackend::new(&png_tmp, PLOT_SIZE).into_drawing_area();
            root.fill(&WHITE)?;
            plot.draw(&root)?;
            root.present()?;
        }
        fs::File::open(&png_tmp)?.sync_all()?;
        fs::rename(&png_tmp, &png_path)?;
        Ok(())
    })();
    if res.is_err() {
        let _ = fs::remove_file(&png_tmp);
    }
    res.with_context(|| format!("writing {}", png_path.display()))?;
    Ok(vec![svg_path, png_path])
}

/// Draws an empty figure with a title and a centred message.
fn draw_message<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    message: &str,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let area = root
        .margin(12, 12, 12, 12)
        .titled(title, (FONT, TITLE_SIZE))?;
    let (w, h) = area.dim_in_pixel();
    let style = TextStyle::from((FONT, DESC_SIZE).into_font())
        .pos(plotters::style::text_anchor::Pos::new(
            plotters::style::text_anchor::HPos::Center,
            plotters::style::text_anchor::VPos::Center,
        ))
        .color(&TEXT_GREY);
    area.draw_text(message, &style, (w as i32 / 2, h as i32 / 2))?;
    Ok(())
}

/// Axis range covering `values` with 5 % padding; never empty (`min < max`).
fn padded_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    let span = hi - lo;
    if span <= f64::EPSILON * hi.abs().max(1.0) {
        let pad = (lo.abs() * 0.1).max(0.5);
        return (lo - pad, hi + pad);
    }
    (lo - 0.05 * span, hi + 0.05 * span)
}

/// Colour of the i-th series (stable across plots for the same optimizer index).
fn series_color(i: usize) -> RGBColor {
    const COLORS: [RGBColor; 10] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
    ];
    COLORS[i % COLORS.len()]
}

/// Model selection on dev only (the test split is never used to choose): among the `ok`
/// records of each (model, task, scheme, optimizer), groups the records by hyper-parameters
/// and step count, and returns the records of the group with the highest mean
/// `best_dev_acc` over seeds (ties: the first in record order).
pub fn dev_selected(runs: &[RunRecord]) -> Vec<RunRecord> {
    type Key = (String, String, String, String);
    let mut groups: BTreeMap<Key, Vec<(String, Vec<&RunRecord>)>> = BTreeMap::new();
    for r in runs
        .iter()
        .filter(|r| r.status == CellStatus::Ok && finite(r.best_dev_acc).is_some())
    {
        let key = (
            r.model.clone(),
            r.task.clone(),
            r.scheme.clone(),
            r.optimizer.clone(),
        );
        let setting = format!("{:?}|{}", r.hparams, r.steps);
        let list = groups.entry(key).or_default();
        match list.iter_mut().find(|(s, _)| *s == setting) {
            Some((_, v)) => v.push(r),
            None => list.push((setting, vec![r])),
        }
    }
    let mut out = Vec::new();
    for (_, settings) in groups {
        let score = |v: &Vec<&RunRecord>| {
            v.iter().filter_map(|r| finite(r.best_dev_acc)).sum::<f64>() / v.len() as f64
        };
        let mut best: Option<&Vec<&RunRecord>> = None;
        for (_, v) in &settings {
            if best.is_none_or(|b| score(v) > score(b)) {
                best = Some(v);
            }
        }
        if let Some(v) = best {
            out.extend(v.iter().map(|r| (*r).clone()));
        }
    }
    out
}

/// Cells with `status == ok`.
fn ok_runs(runs: &[RunRecord]) -> Vec<&RunRecord> {
    runs.iter().filter(|r| r.status == CellStatus::Ok).collect()
}

/// " — task / model" when all given runs share one task and one model, else "".
fn context_suffix(runs: &[&RunRecord]) -> String {
    let tasks: BTreeSet<&str> = runs.iter().map(|r| r.task.as_str()).collect();
    let models: BTreeSet<&str> = runs.iter().map(|r| r.model.as_str()).collect();
    if tasks.len() == 1 && models.len() == 1 {
        format!(
            " — {} / {}",
            tasks.iter().next().unwrap(),
            models.iter().next().unwrap()
        )
    } else {
        String::new()
    }
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// Plot 1: test accuracy per optimizer, grouped by scheme, with zero-shot markers.
struct AccByOptimizer {
    title: String,
    schemes: Vec<String>,
    optimizers: Vec<String>,
    /// (scheme index, optimizer index) -> mean test accuracy in %.
    bars: BTreeMap<(usize, usize), f64>,
    /// scheme index -> mean zero-shot accuracy in %.
    zero_shot: BTreeMap<usize, f64>,
}

impl AccByOptimizer {
    fn new(runs: &[RunRecord]) -> Self {
        let ok = ok_runs(runs);
        let with_acc: Vec<&RunRecord> = ok
            .iter()
            .copied()
            .filter(|r| finite(r.test_acc).is_some())
            .collect();
        let schemes: Vec<String> = with_acc
            .iter()
            .map(|r| r.scheme.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let optimizers: Vec<String> = with_acc
            .iter()
            .map(|r| r.optimizer.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let si = |s: &str| schemes.iter().position(|x| x == s);
        let oi = |o: &str| optimizers.iter().position(|x| x == o);
        let mut acc: BTreeMap<(usize, usize), Vec<f64>> = BTreeMap::new();
        let mut zs: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
        for r in &with_acc {
            let (Some(s), Some(o), Some(a)) = (si(&r.scheme), oi(&r.optimizer), finite(r.test_acc))
            else {
                continue;
            };
            acc.entry((s, o)).or_default().push(100.0 * a);
            if let Some(z) = finite(r.zero_shot_acc) {
                zs.entry(s).or_default().push(100.0 * z);
            }
        }
        let bars = acc
            .into_iter()
            .filter_map(|(k, v)| mean(&v).map(|m| (k, m)))
            .collect();
        let zero_shot = zs
            .into_iter()
            .filter_map(|(k, v)| mean(&v).map(|m| (k, m)))
            .collect();
        Self {
            title: format!(
                "Test accuracy by optimizer and scheme{}",
                context_suffix(&ok)
            ),
            schemes,
            optimizers,
            bars,
            zero_shot,
        }
    }
}

impl Plot for AccByOptimizer {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()>
    where
        DB::ErrorType: 'static,
    {
        if self.bars.is_empty() {
            return draw_message(root, &self.title, "no finished cells (status = ok)");
        }
        let n = self.schemes.len();
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, (FONT, TITLE_SIZE))
            .margin(12)
            .x_label_area_size(50)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.5f64..n as f64 - 0.5, 0f64..100f64)?;
        // The x axis is categorical: no numeric tick labels; the scheme names are drawn
        // under the group centres below.
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .x_desc("fine-tuning scheme")
            .y_desc("test accuracy (%)")
            .y_label_formatter(&|v| format!("{v:.0}"))
            .label_style((FONT, LABEL_SIZE))
            .axis_desc_style((FONT, DESC_SIZE))
            .light_line_style(BLACK.mix(0.05))
            .draw()?;
        let tick_style = TextStyle::from((FONT, LABEL_SIZE).into_font()).pos(
            plotters::style::text_anchor::Pos::new(
                plotters::style::text_anchor::HPos::Center,
                plotters::style::text_anchor::VPos::Top,
            ),
        );
        for (i, scheme) in self.schemes.iter().enumerate() {
            let (px, py) = chart.backend_coord(&(i as f64, 0.0));
            root.draw_text(scheme, &tick_style, (px, py + 6))?;
        }

        let k = self.optimizers.len().max(1) as f64;
        let group = 0.8;
        let width = group / k;
        for (o, name) in self.optimizers.iter().enumerate() {
            let color = series_color(o);
            let rects: Vec<_> = self
                .bars
                .iter()
                .filter(|((_, oo), _)| *oo == o)
                .map(|(&(s, _), &v)| {
                    let x0 = s as f64 - group / 2.0 + o as f64 * width;
                    Rectangle::new(
                        [
                            (x0 + 0.05 * width, 0.0),
                            (x0 + 0.95 * width, v.clamp(0.0, 100.0)),
                        ],
                        color.filled(),
                    )
                })
                .collect();
            chart
                .draw_series(rects)?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled())
                });
            // Value labels above the bars.
            let labels: Vec<_> = self
                .bars
                .iter()
                .filter(|((_, oo), _)| *oo == o)
                .map(|(&(s, _), &v)| {
                    let xc = s as f64 - group / 2.0 + (o as f64 + 0.5) * width;
                    let style = TextStyle::from((FONT, LEGEND_SIZE - 1).into_font()).pos(
                        plotters::style::text_anchor::Pos::new(
                            plotters::style::text_anchor::HPos::Center,
                            plotters::style::text_anchor::VPos::Bottom,
                        ),
                    );
                    Text::new(format!("{v:.1}"), (xc, (v + 1.0).min(97.0)), style)
                })
                .collect();
            chart.draw_series(labels)?;
        }
        if !self.zero_shot.is_empty() {
            let style = ShapeStyle::from(&BLACK).stroke_width(2);
            let mut first = true;
            for (&s, &z) in &self.zero_shot {
                let x0 = s as f64 - group / 2.0 - 0.03;
                let x1 = s as f64 + group / 2.0 + 0.03;
                let z = z.clamp(0.0, 100.0);
                let ann = chart.draw_series(DashedLineSeries::new(
                    vec![(x0, z), (x1, z)],
                    6,
                    4,
                    style,
                ))?;
                if first {
                    ann.label("zero-shot (mean)")
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 12, y)], style));
                    first = false;
                }
            }
        }
        draw_legend(&mut chart, SeriesLabelPosition::UpperRight)
    }
}

/// Draws the series legend of `chart` at `position`, in the shared legend style.
fn draw_legend<'a, DB, CT>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> Result<()>
where
    DB: DrawingBackend + 'a,
    DB::ErrorType: 'static,
    CT: CoordTranslate,
{
    chart
        .configure_series_labels()
        .position(position)
        .label_font((FONT, LEGEND_SIZE))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .draw()?;
    Ok(())
}

/// Plot 2: training loss curves of the finished cells.
struct TrainLoss {
    title: String,
    /// (legend label, colour index, points (step, loss)).
    lines: Vec<(String, usize, Vec<(f64, f64)>)>,
    message: &'static str,
}

impl TrainLoss {
    fn new(runs: &[RunRecord], results_dir: &Path) -> Self {
        let ok = ok_runs(runs);
        let many = |f: &dyn Fn(&RunRecord) -> String| {
            ok.iter().map(|r| f(r)).collect::<BTreeSet<_>>().len() > 1
        };
        let (many_models, many_tasks, many_seeds) = (
            many(&|r| r.model.clone()),
            many(&|r| r.task.clone()),
            many(&|r| r.seed.to_string()),
        );
        let mut sorted = ok.clone();
        sorted.sort_by(|a, b| {
            (&a.model, &a.task, &a.scheme, &a.optimizer)
                .cmp(&(&b.model, &b.task, &b.scheme, &b.optimizer))
                .then(
                    hp(a, "lr")
                        .unwrap_or(0.0)
                        .total_cmp(&hp(b, "lr").unwrap_or(0.0)),
                )
                .then(a.seed.cmp(&b.seed))
        });
        let mut lines = Vec::new();
        for r in sorted {
            let path = results_dir
                .join("curves")
                .join(format!("{}.jsonl", r.run_id));
            if !path.exists() {
                continue;
            }
            let points = match read_curve(&path) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %format!("{e:#}"), "skipping unreadable curve");
                    continue;
                }
            };
            let pts: Vec<(f64, f64)> = points
                .iter()
                .filter(|p| p.train_loss.is_finite())
                .map(|p| (p.step as f64, p.train_loss))
                .collect();
            if pts.is_empty() {
                continue;
            }
            let mut label = String::new();
            if many_models {
                label.push_str(&format!("{}/", r.model));
            }
            if many_tasks {
                label.push_str(&format!("{}/", r.task));
            }
            label.push_str(&format!(
                "{}/{} lr={}",
                r.scheme,
                r.optimizer,
                fmt_general(hp(r, "lr").unwrap_or(f64::NAN))
            ));
            if many_seeds {
                label.push_str(&format!(" seed={}", r.seed));
            }
            let idx = lines.len();
            lines.push((label, idx, pts));
        }
        Self {
            title: format!("Training loss{}", context_suffix(&ok)),
            message: if ok.is_empty() {
                "no finished cells (status = ok)"
            } else {
                "no loss curves for the finished cells"
            },
            lines,
        }
    }
}

impl Plot for TrainLoss {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()>
    where
        DB::ErrorType: 'static,
    {
        if self.lines.is_empty() {
            return draw_message(root, &self.title, self.message);
        }
        let all = || self.lines.iter().flat_map(|(_, _, p)| p.iter());
        let max_step = all().map(|p| p.0).fold(1.0f64, f64::max);
        let (ylo, yhi) = padded_range(all().map(|p| p.1));
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, (FONT, TITLE_SIZE))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(65)
            .build_cartesian_2d(0f64..max_step, ylo..yhi)?;
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc("train loss (nats)")
            .x_label_formatter(&|v| format!("{v:.0}"))
            .label_style((FONT, LABEL_SIZE))
            .axis_desc_style((FONT, DESC_SIZE))
            .light_line_style(BLACK.mix(0.05))
            .draw()?;
        for (label, idx, pts) in &self.lines {
            let color = series_color(*idx);
            let style = ShapeStyle::from(&color).stroke_width(2);
            if pts.len() == 1 {
                chart
                    .draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))?
                    .label(label.as_str())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], style));
            } else {
                chart
                    .draw_series(LineSeries::new(pts.iter().copied(), style))?
                    .label(label.as_str())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], style));
            }
        }
        draw_legend(&mut chart, SeriesLabelPosition::UpperRight)
    }
}

/// Plot 3: test accuracy vs peak memory, one point per finished cell.
struct AccVsMemory {
    title: String,
    optimizers: Vec<String>,
    /// (optimizer index, peak MiB, test acc %, scheme label).
    points: Vec<(usize, f64, f64, String)>,
}

impl AccVsMemory {
    fn new(runs: &[RunRecord]) -> Self {
        let ok = ok_runs(runs);
        let pts: Vec<(&RunRecord, f64, f64)> = ok
            .iter()
            .filter_map(|r| {
                let mem = r.peak_mem_bytes.map(|b| b as f64 / (1u64 << 20) as f64);
                Some((*r, finite(mem)?, 100.0 * finite(r.test_acc)?))
            })
            .collect();
        // Same optimizer order (hence colours) as the bar plot: sorted names of ok cells
        // with a test accuracy.
        let optimizers: Vec<String> = ok
            .iter()
            .filter(|r| finite(r.test_acc).is_some())
            .map(|r| r.optimizer.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let points = pts
            .into_iter()
            .filter_map(|(r, m, a)| {
                let o = optimizers.iter().position(|x| *x == r.optimizer)?;
                Some((o, m, a, r.scheme.clone()))
            })
            .collect();
        Self {
            title: format!("Test accuracy vs peak memory{}", context_suffix(&ok)),
            optimizers,
            points,
        }
    }
}

impl Plot for AccVsMemory {
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()>
    where
        DB::ErrorType: 'static,
    {
        if self.points.is_empty() {
            return draw_message(root, &self.title, "no finished cells (status = ok)");
        }
        let (xlo, xhi) = padded_range(self.points.iter().map(|p| p.1));
        // Leave room on the right for the scheme labels.
        let xhi = xhi + 0.08 * (xhi - xlo);
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, (FONT, TITLE_SIZE))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d(xlo..xhi, 0f64..100f64)?;
        chart
            .configure_mesh()
            .x_desc("peak memory (MiB)")
            .y_desc("test accuracy (%)")
            .x_label_formatter(&|v| fmt_axis(*v))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .label_style((FONT, LABEL_SIZE))
            .axis_desc_style((FONT, DESC_SIZE))
            .light_line_style(BLACK.mix(0.05))
            .draw()?;
        let text = TextStyle::from((FONT, LEGEND_SIZE).into_font()).color(&TEXT_GREY);
        for (o, name) in self.optimizers.iter().enumerate() {
            let color = series_color(o);
            let pts: Vec<(f64, f64, String)> = self
                .points
                .iter()
                .filter(|p| p.0 == o)
                .map(|p| (p.1, p.2, p.3.clone()))
                .collect();
            if pts.is_empty() {
                continue;
            }
            let style = color.filled();
            let label = |s: &str| Text::new(s.to_string(), (8, -8), text.clone());
            match o % 3 {
                0 => {
                    chart
                        .draw_series(pts.iter().map(|(x, y, s)| {
                            EmptyElement::at((*x, *y)) + Circle::new((0, 0), 5, style) + label(s)
                        }))?
                        .label(name.as_str())
                        .legend(move |(x, y)| Circle::new((x + 6, y), 5, style));
                }
                1 => {
                    chart
                        .draw_series(pts.iter().map(|(x, y, s)| {
                            EmptyElement::at((*x, *y))
                                + TriangleMarker::new((0, 0), 6, style)
                                + label(s)
                        }))?
                        .label(name.as_str())
                        .legend(move |(x, y)| TriangleMarker::new((x + 6, y), 6, style));
                }
                _ => {
                    chart
                        .draw_series(pts.iter().map(|(x, y, s)| {
                            EmptyElement::at((*x, *y))
                                + Rectangle::new([(-4, -4), (4, 4)], style)
                                + label(s)
                        }))?
                        .label(name.as_str())
                        .legend(move |(x, y)| {
                            Rectangle::new([(x + 2, y - 4), (x + 10, y + 4)], style)
                        });
                }
            }
        }
        draw_legend(&mut chart, SeriesLabelPosition::LowerRight)
    }
}

// ---------------------------------------------------------------------------------------------
// Entry point
// ---------------------------------------------------------------------------------------------

/// Writes `results_dir/summary.{parquet,csv,md}` and the plots in `reports_dir` (creating
/// both directories). Returns the paths written: the three tables, then
/// `test_acc_by_optimizer`, `train_loss`, `acc_vs_memory`, each as `.svg` and `.png`.
///
/// Reads `results_dir/runs.jsonl` (see [`read_runs`]) and `results_dir/curves/<run_id>.jsonl`
/// (missing or unreadable curves are skipped). Only `status == ok` cells are plotted; the
/// bar plot shows the mean over cells sharing `(scheme, optimizer)`. With no finished cell
/// the plots are still written, each showing its title and "no finished cells (status = ok)".
///
/// `only`: when given, only the records with these run ids (the current grid) are reported.
/// A run id recorded more than once (a failed cell that was run again) is reported by its
/// latest record. The summary tables list every cell; the bar and scatter plots show, for each
/// (model, task, scheme, optimizer), the hyper-parameters chosen on dev ([`dev_selected`]).
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
    let selected = dev_selected(&runs);
    fs::create_dir_all(results_dir)
        .with_context(|| format!("creating {}", results_dir.display()))?;
    fs::create_dir_all(reports_dir)
        .with_context(|| format!("creating {}", reports_dir.display()))?;
    let mut written = Vec::new();

    let mut df = summary_frame(&runs)?;

    let parquet = results_dir.join("summary.parquet");
    write_atomic(&parquet, |f| {
        ParquetWriter::new(f).finish(&mut df)?;
        Ok(())
    })?;
    written.push(parquet);

    let csv = results_dir.join("summary.csv");
    write_atomic(&csv, |f| {
        CsvWriter::new(f).include_header(true).finish(&mut df)?;
        Ok(())
    })?;
    written.push(csv);

    let md = results_dir.join("summary.md");
    write_bytes_atomic(&md, markdown_table(&df)?.as_bytes())?;
    written.push(md);

    written.extend(render(
        reports_dir,
        PLOT_STEMS[0],
        &AccByOptimizer::new(&selected),
    )?);
    written.extend(render(
        reports_dir,
        PLOT_STEMS[1],
        &TrainLoss::new(&runs, results_dir),
    )?);
    written.extend(render(
        reports_dir,
        PLOT_STEMS[2],
        &AccVsMemory::new(&selected),
    )?);
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

    fn assert_plots(reports: &Path) {
        for stem in PLOT_STEMS {
            let svg = fs::read_to_string(reports.join(format!("{stem}.svg"))).unwrap();
            assert!(svg.contains("<svg"), "{stem}.svg is not an SVG");
            let png = fs::read(reports.join(format!("{stem}.png"))).unwrap();
            assert!(
                png.starts_with(&[0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a]),
                "{stem}.png lacks the PNG magic"
            );
        }
    }

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
        assert_eq!(written.len(), 3 + 2 * PLOT_STEMS.len());
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
        assert_eq!(df.width(), 22);
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
        assert_eq!(written.len(), 9);
        assert_plots(&reports);

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
        assert_eq!(written.len(), 9);
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
}
