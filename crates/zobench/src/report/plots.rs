//! The report's figures, drawn with plotters as SVG and PNG.
//!
//! Every figure is one paper column wide: [`FIG_WIDTH_IN`] = 3.3 in at [`PX_PER_IN`] = 300
//! pixels per inch (990 px), one panel per (model, task) stacked vertically, each panel
//! [`PANEL_HEIGHT_IN`] = 2.2 in high (taller when it has many rows). All text is DejaVu Sans
//! (embedded, so PNGs need no system fonts) at 9 pt for panel titles, 8 pt for axis
//! descriptions and 7 pt for ticks, legends and annotations; lines are 1 pt wide. Scaled to
//! `\columnwidth`, the SVG or PNG keeps these sizes.
//!
//! Colours follow the optimizer (the same optimizer has the same colour in every figure);
//! in line plots the scheme sets the dash pattern. `None`, NaN and infinite values are skipped;
//! a figure without data is still written, with its title and a one-line explanation.

use super::stats::{Group, Selection, pareto_front};
use super::{fmt_axis, fmt_general, read_curve, write_bytes_atomic};
use anyhow::{Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Once;

/// The font every figure uses, registered as family `"sans-serif"`.
static FONT_BYTES: &[u8] = include_bytes!("../../../../assets/fonts/DejaVuSans.ttf");
static FONT_INIT: Once = Once::new();

/// Font family of every text in the figures.
const FONT: &str = "sans-serif";
/// Resolution of the figures (pixels per inch); SVG user units are these pixels too.
pub const PX_PER_IN: f64 = 300.0;
/// Width of every figure: one column of a two-column paper (inches).
pub const FIG_WIDTH_IN: f64 = 3.3;
/// Height of one panel (inches).
pub const PANEL_HEIGHT_IN: f64 = 2.2;
/// Figure width in pixels.
const WIDTH: u32 = (FIG_WIDTH_IN * PX_PER_IN) as u32;
/// Panel height in pixels.
const PANEL_HEIGHT: u32 = (PANEL_HEIGHT_IN * PX_PER_IN) as u32;
/// Pixels of `pt` typographic points at [`PX_PER_IN`].
const fn pt(points: u32) -> u32 {
    (points * PX_PER_IN as u32 + 36) / 72
}
/// Panel titles: 9 pt.
const TITLE: u32 = pt(9);
/// Axis descriptions: 8 pt.
const DESC: u32 = pt(8);
/// Tick labels, legends, annotations: 7 pt.
const TICK: u32 = pt(7);
/// Line width: 1 pt.
const LINE: u32 = pt(1);
/// Marker radius: 2 pt.
const MARKER: i32 = pt(2) as i32;
/// Outer margin of a panel.
const MARGIN: u32 = pt(4);
/// Colour of secondary text.
const TEXT_GREY: RGBColor = RGBColor(60, 60, 60);

/// Figure file stems written by [`render_all`], each as `.svg` and `.png`, with a caption.
pub const FIGURES: [(&str, &str); 5] = [
    (
        "acc_vs_memory",
        "Test score (primary metric, dev-selected hyper-parameters, mean ± std over seeds) \
         against peak memory, one panel per model and task; the dashed staircase joins the \
         Pareto-optimal settings (ringed): none uses less memory for a higher score.",
    ),
    (
        "train_loss",
        "Training loss against forward passes spent on training, for the dev-selected setting \
         of each scheme and optimizer: mean over seeds (line) ± one std (band).",
    ),
    (
        "time_per_step",
        "Wall time per training step of the dev-selected settings: median step time (dot, mean \
         over seeds) with the 10th–90th percentile range (whiskers).",
    ),
    (
        "acc_heatmap",
        "Test score (primary metric, %) of the dev-selected setting for each scheme × \
         optimizer, mean over seeds; colour scaled per panel.",
    ),
    (
        "test_acc_by_optimizer",
        "Test score (primary metric, %) of the dev-selected setting by scheme and optimizer, \
         mean ± std over seeds; dashed: zero-shot score.",
    ),
];

/// Message of a figure with no finished cell.
const NO_CELLS: &str = "no finished cells (status = ok)";

/// Registers the embedded DejaVu Sans as `"sans-serif"` (once per process). The bitmap
/// backend panics with `NoSuchFont` without it.
fn ensure_font() {
    FONT_INIT.call_once(|| {
        if plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES).is_err() {
            tracing::error!("could not register the embedded DejaVuSans.ttf font");
        }
    });
}

/// Renders every figure of [`FIGURES`] into `dir` (SVG then PNG each); returns the paths.
pub fn render_all(dir: &Path, results_dir: &Path, selected: &[Selection]) -> Result<Vec<PathBuf>> {
    let palette = Palette::new(selected);
    let mut out = Vec::new();
    for (stem, _) in FIGURES {
        let fig: Box<dyn FigureDyn> = match stem {
            "acc_vs_memory" => Box::new(AccVsMemory::new(selected, &palette)),
            "train_loss" => Box::new(TrainLoss::new(selected, results_dir, &palette)),
            "time_per_step" => Box::new(TimePerStep::new(selected, &palette)),
            "acc_heatmap" => Box::new(Heatmap::new(selected)),
            _ => Box::new(AccBars::new(selected, &palette)),
        };
        out.extend(render(dir, stem, fig.as_ref())?);
    }
    Ok(out)
}

/// Optimizer colours and scheme dash patterns shared by all figures.
struct Palette {
    optimizers: Vec<String>,
    schemes: Vec<String>,
}

impl Palette {
    fn new(selected: &[Selection]) -> Self {
        let set = |f: fn(&Group) -> &String| -> Vec<String> {
            selected
                .iter()
                .map(|s| f(&s.group).clone())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect()
        };
        Self {
            optimizers: set(|g| &g.optimizer),
            schemes: set(|g| &g.scheme),
        }
    }
    fn opt(&self, name: &str) -> usize {
        self.optimizers.iter().position(|o| o == name).unwrap_or(0)
    }
    fn color(&self, optimizer: &str) -> RGBColor {
        series_color(self.opt(optimizer))
    }
    fn scheme(&self, name: &str) -> usize {
        self.schemes.iter().position(|s| s == name).unwrap_or(0)
    }
}

/// Colour of the i-th optimizer.
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

/// The selections grouped into panels, one per (model, task), in sorted order.
fn panels(selected: &[Selection]) -> Vec<(String, Vec<&Group>)> {
    let mut map: BTreeMap<(&str, &str), Vec<&Group>> = BTreeMap::new();
    for s in selected {
        map.entry((s.group.model.as_str(), s.group.task.as_str()))
            .or_default()
            .push(&s.group);
    }
    map.into_iter()
        .map(|((m, t), v)| (format!("{} — {t}", short_model(m)), v))
        .collect()
}

/// A model name for a panel title: the last path component when the model is a path.
fn short_model(model: &str) -> &str {
    let trimmed = model.trim_end_matches(['/', '\\']);
    trimmed
        .rsplit(['/', '\\'])
        .next()
        .filter(|s| !s.is_empty())
        .unwrap_or(model)
}

/// Most points drawn per loss curve (longer curves are thinned evenly, keeping the last).
const MAX_CURVE_POINTS: usize = 1000;

/// A figure: a list of panels of given heights, each drawn on its own area.
trait Figure {
    /// Title shown when the figure has no panel.
    fn empty_title(&self) -> &str;
    /// Message shown when the figure has no panel.
    fn empty_message(&self) -> &str {
        NO_CELLS
    }
    /// Height (px) of each panel.
    fn heights(&self) -> Vec<u32>;
    /// Draws panel `i` on `area`.
    fn draw_panel<DB: DrawingBackend>(&self, i: usize, area: &DrawingArea<DB, Shift>) -> Result<()>
    where
        DB::ErrorType: 'static;
}

/// Object-safe face of [`Figure`] for the two backends used.
trait FigureDyn {
    fn height(&self) -> u32;
    fn draw_svg(&self, root: &DrawingArea<SVGBackend<'_>, Shift>) -> Result<()>;
    fn draw_png(&self, root: &DrawingArea<BitMapBackend<'_>, Shift>) -> Result<()>;
}

impl<F: Figure> FigureDyn for F {
    fn height(&self) -> u32 {
        let h: u32 = self.heights().iter().sum();
        h.max(PANEL_HEIGHT)
    }
    fn draw_svg(&self, root: &DrawingArea<SVGBackend<'_>, Shift>) -> Result<()> {
        draw_figure(self, root)
    }
    fn draw_png(&self, root: &DrawingArea<BitMapBackend<'_>, Shift>) -> Result<()> {
        draw_figure(self, root)
    }
}

/// Splits `root` into the figure's panels and draws each (or the empty message).
fn draw_figure<F: Figure, DB: DrawingBackend>(fig: &F, root: &DrawingArea<DB, Shift>) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let heights = fig.heights();
    if heights.is_empty() {
        return draw_message(root, fig.empty_title(), fig.empty_message());
    }
    let mut rest = root.clone();
    for (i, &h) in heights.iter().enumerate() {
        let area = if i + 1 == heights.len() {
            rest.clone()
        } else {
            let (a, b) = rest.split_vertically(h);
            rest = b;
            a
        };
        fig.draw_panel(i, &area)
            .with_context(|| format!("drawing panel {}", i + 1))?;
    }
    Ok(())
}

/// Renders `fig` to `dir/stem.svg` and `dir/stem.png` atomically; returns both paths.
fn render(dir: &Path, stem: &str, fig: &dyn FigureDyn) -> Result<Vec<PathBuf>> {
    ensure_font();
    let size = (WIDTH, fig.height());
    let svg_path = dir.join(format!("{stem}.svg"));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        fig.draw_svg(&root)
            .with_context(|| format!("drawing {}", svg_path.display()))?;
        root.present()?;
    }
    write_bytes_atomic(&svg_path, svg.as_bytes())?;

    // The PNG encoder picks the format from the extension, so the temporary name keeps it.
    let png_path = dir.join(format!("{stem}.png"));
    let png_tmp = dir.join(format!("{stem}.tmp.png"));
    let res = (|| -> Result<()> {
        {
            let root = BitMapBackend::new(&png_tmp, size).into_drawing_area();
            fig.draw_png(&root)?;
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

/// Draws a title and a centred message on `area`.
fn draw_message<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    message: &str,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let inner = area
        .margin(MARGIN, MARGIN, MARGIN, MARGIN)
        .titled(title, (FONT, TITLE))?;
    let (w, h) = inner.dim_in_pixel();
    let style = TextStyle::from((FONT, DESC).into_font())
        .pos(Pos::new(HPos::Center, VPos::Center))
        .color(&TEXT_GREY);
    inner.draw_text(message, &style, (w as i32 / 2, h as i32 / 2))?;
    Ok(())
}

/// Draws `text` at the absolute backend pixel `at` on `area`, anchored by `pos`.
fn draw_at<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    text: &str,
    at: (i32, i32),
    pos: Pos,
    size: u32,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let base = area.get_base_pixel();
    let style = TextStyle::from((FONT, size).into_font()).pos(pos);
    area.draw_text(text, &style, (at.0 - base.0, at.1 - base.1))?;
    Ok(())
}

/// Width (px) of the widest of `labels` at tick size, plus padding; at most 45 % of the width.
fn label_width<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, labels: &[String]) -> u32 {
    let style = TextStyle::from((FONT, TICK).into_font());
    let w = labels
        .iter()
        .map(|l| {
            area.estimate_text_size(l, &style)
                .map(|(w, _)| w)
                .unwrap_or(l.chars().count() as u32 * TICK / 2)
        })
        .max()
        .unwrap_or(0);
    (w + 2 * MARGIN).min(WIDTH * 45 / 100)
}

/// Axis range covering `values` with 5 % padding; never empty (`min < max`).
pub(super) fn padded_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
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

/// What a legend entry shows in front of its label.
#[derive(Clone, Copy)]
enum Mark {
    /// A line in a colour, solid (dash 0) or dashed (pattern `dash`).
    Line(RGBColor, usize),
    /// A filled marker: circle, triangle or square (`shape % 3`).
    Marker(RGBColor, usize),
    /// A filled box (bars).
    Swatch(RGBColor),
    /// A black ring (Pareto-optimal points).
    Ring,
}

/// Dash and gap lengths (px) of dash pattern `dash` (0 = solid).
fn dash_len(dash: usize) -> (u32, u32) {
    (pt(2 + 2 * dash as u32), pt(2))
}

/// Draws `mark` in a box starting at `x`, centred on `yc` (area pixels).
fn draw_mark<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    mark: Mark,
    x: i32,
    yc: i32,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let w = pt(10) as i32;
    let c = (x + w / 2, yc);
    match mark {
        Mark::Line(color, 0) => {
            area.draw(&PathElement::new(
                vec![(x, yc), (x + w, yc)],
                ShapeStyle::from(&color).stroke_width(LINE),
            ))?;
        }
        Mark::Line(color, dash) => {
            let (on, off) = dash_len(dash);
            let mut x0 = x;
            while x0 < x + w {
                let x1 = (x0 + on as i32).min(x + w);
                area.draw(&PathElement::new(
                    vec![(x0, yc), (x1, yc)],
                    ShapeStyle::from(&color).stroke_width(LINE),
                ))?;
                x0 = x1 + off as i32;
            }
        }
        Mark::Marker(color, shape) => match shape % 3 {
            0 => area.draw(&Circle::new(c, MARKER, color.filled()))?,
            1 => area.draw(&TriangleMarker::new(c, MARKER + 2, color.filled()))?,
            _ => area.draw(&Rectangle::new(
                [(c.0 - MARKER, c.1 - MARKER), (c.0 + MARKER, c.1 + MARKER)],
                color.filled(),
            ))?,
        },
        Mark::Swatch(color) => {
            area.draw(&Rectangle::new(
                [(x, yc - MARKER), (x + w, yc + MARKER)],
                color.filled(),
            ))?;
        }
        Mark::Ring => {
            area.draw(&Circle::new(
                c,
                MARKER + pt(1) as i32,
                ShapeStyle::from(&BLACK).stroke_width(LINE),
            ))?;
        }
    }
    Ok(())
}

/// Draws the panel title and, under it, a legend strip with `entries` (wrapped over as many
/// rows as needed, so the legend never hides data); returns the area left for the chart.
fn panel_frame<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    entries: &[(String, Mark)],
) -> Result<DrawingArea<DB, Shift>>
where
    DB::ErrorType: 'static,
{
    let inner = area.margin(MARGIN, 0, 0, 0).titled(title, (FONT, TITLE))?;
    if entries.is_empty() {
        return Ok(inner);
    }
    let style = TextStyle::from((FONT, TICK).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    let (width, _) = inner.dim_in_pixel();
    let mark_w = pt(10) as i32;
    let gap = pt(5) as i32;
    let row_h = (TICK + pt(3)) as i32;
    // Lay the entries out in rows.
    let mut placed = Vec::new();
    let (mut x, mut row) = (MARGIN as i32, 0);
    for (label, mark) in entries {
        let tw = inner
            .estimate_text_size(label, &style)
            .map(|(w, _)| w as i32)
            .unwrap_or(label.chars().count() as i32 * TICK as i32 / 2);
        let w = mark_w + pt(2) as i32 + tw;
        if x > MARGIN as i32 && x + w > width as i32 - MARGIN as i32 {
            row += 1;
            x = MARGIN as i32;
        }
        placed.push((x, row, label, *mark));
        x += w + gap;
    }
    let strip_h = (row + 1) * row_h + pt(2) as i32;
    let (strip, rest) = inner.split_vertically(strip_h);
    for (x, row, label, mark) in placed {
        let yc = row * row_h + row_h / 2;
        draw_mark(&strip, mark, x, yc)?;
        strip.draw_text(label, &style, (x + mark_w + pt(2) as i32, yc))?;
    }
    Ok(rest)
}

/// Finite `Option`.
fn fin(x: Option<f64>) -> Option<f64> {
    x.filter(|v| v.is_finite())
}

// ---------------------------------------------------------------------------------------------
// Accuracy vs peak memory with the Pareto front
// ---------------------------------------------------------------------------------------------

/// One point of the accuracy–memory plot.
struct MemPoint {
    color: RGBColor,
    shape: usize,
    scheme: String,
    mem: f64,
    acc: f64,
    std: Option<f64>,
}

struct AccVsMemory {
    legend: Vec<(String, RGBColor, usize)>,
    panels: Vec<(String, Vec<MemPoint>, Vec<usize>)>,
}

impl AccVsMemory {
    fn new(selected: &[Selection], pal: &Palette) -> Self {
        let mut panels_out = Vec::new();
        for (title, groups) in panels(selected) {
            let pts: Vec<MemPoint> = groups
                .iter()
                .filter_map(|g| {
                    Some(MemPoint {
                        color: pal.color(&g.optimizer),
                        shape: pal.opt(&g.optimizer),
                        scheme: g.scheme.clone(),
                        mem: fin(g.peak_mem_mib.mean)?,
                        acc: 100.0 * fin(g.test.mean)?,
                        std: fin(g.test.std).map(|s| 100.0 * s),
                    })
                })
                .collect();
            if pts.is_empty() {
                continue;
            }
            let xy: Vec<(f64, f64)> = pts.iter().map(|p| (p.mem, p.acc)).collect();
            let front = pareto_front(&xy);
            panels_out.push((title, pts, front));
        }
        let legend = pal
            .optimizers
            .iter()
            .enumerate()
            .map(|(i, o)| (o.clone(), series_color(i), i))
            .collect();
        Self {
            legend,
            panels: panels_out,
        }
    }
}

impl Figure for AccVsMemory {
    fn empty_title(&self) -> &str {
        "Test score vs peak memory"
    }
    fn heights(&self) -> Vec<u32> {
        vec![PANEL_HEIGHT; self.panels.len()]
    }
    fn draw_panel<DB: DrawingBackend>(&self, i: usize, area: &DrawingArea<DB, Shift>) -> Result<()>
    where
        DB::ErrorType: 'static,
    {
        let (title, pts, front) = &self.panels[i];
        let (xlo, xhi) = padded_range(pts.iter().map(|p| p.mem));
        let xhi = xhi + 0.12 * (xhi - xlo); // room for the scheme labels
        let (ylo, yhi) = padded_range(pts.iter().flat_map(|p| {
            let s = p.std.unwrap_or(0.0);
            [p.acc - s, p.acc + s]
        }));
        let (ylo, yhi) = (ylo.max(0.0), yhi.min(100.0).max(ylo.max(0.0) + 1.0));
        let mut entries: Vec<(String, Mark)> = Vec::new();
        let present: BTreeSet<usize> = pts.iter().map(|p| p.shape).collect();
        for (name, color, shape) in &self.legend {
            if present.contains(shape) {
                entries.push((name.clone(), Mark::Marker(*color, *shape)));
            }
        }
        entries.push(("Pareto front".to_string(), Mark::Ring));
        let plot = panel_frame(area, title, &entries)?;
        let mut chart = ChartBuilder::on(&plot)
            .margin(MARGIN)
            .x_label_area_size(pt(22))
            .y_label_area_size(pt(26))
            .build_cartesian_2d(xlo..xhi, ylo..yhi)?;
        chart
            .configure_mesh()
            .x_desc("peak memory (MiB)")
            .y_desc("test score (%)")
            .x_labels(5)
            .y_labels(5)
            .x_label_formatter(&|v| fmt_axis(*v))
            .y_label_formatter(&|v| fmt_axis(*v))
            .label_style((FONT, TICK))
            .axis_desc_style((FONT, DESC))
            .light_line_style(BLACK.mix(0.05))
            .bold_line_style(BLACK.mix(0.12))
            .draw()?;
        // Pareto staircase under the points.
        if front.len() > 1 {
            let mut stair = Vec::new();
            for w in front.windows(2) {
                let (a, b) = (&pts[w[0]], &pts[w[1]]);
                stair.push((a.mem, a.acc));
                stair.push((b.mem, a.acc));
            }
            let last = &pts[*front.last().unwrap()];
            stair.push((last.mem, last.acc));
            let (on, off) = dash_len(1);
            chart.draw_series(DashedLineSeries::new(
                stair,
                on,
                off,
                ShapeStyle::from(&BLACK.mix(0.7)).stroke_width(LINE),
            ))?;
        }
        let ring = ShapeStyle::from(&BLACK).stroke_width(LINE);
        for &f in front {
            let p = &pts[f];
            chart.draw_series(std::iter::once(Circle::new(
                (p.mem, p.acc),
                MARKER + pt(2) as i32,
                ring,
            )))?;
        }
        // Error bars, markers and scheme labels.
        let text = TextStyle::from((FONT, TICK).into_font()).color(&TEXT_GREY);
        for p in pts {
            if let Some(s) = p.std {
                chart.draw_series(std::iter::once(PathElement::new(
                    vec![(p.mem, (p.acc - s).max(ylo)), (p.mem, (p.acc + s).min(yhi))],
                    ShapeStyle::from(&p.color).stroke_width(LINE),
                )))?;
            }
            let style = p.color.filled();
            let label = Text::new(
                p.scheme.clone(),
                (MARKER + pt(4) as i32, 0),
                text.pos(Pos::new(HPos::Left, VPos::Center)),
            );
            match p.shape % 3 {
                0 => chart.draw_series(std::iter::once(
                    EmptyElement::at((p.mem, p.acc)) + Circle::new((0, 0), MARKER, style) + label,
                ))?,
                1 => chart.draw_series(std::iter::once(
                    EmptyElement::at((p.mem, p.acc))
                        + TriangleMarker::new((0, 0), MARKER + 2, style)
                        + label,
                ))?,
                _ => chart.draw_series(std::iter::once(
                    EmptyElement::at((p.mem, p.acc))
                        + Rectangle::new([(-MARKER, -MARKER), (MARKER, MARKER)], style)
                        + label,
                ))?,
            };
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Training loss vs forward passes
// ---------------------------------------------------------------------------------------------

/// One mean curve: (forward passes, mean loss, mean − std, mean + std) per step.
struct LossSeries {
    label: String,
    color: RGBColor,
    dash: usize,
    pts: Vec<(f64, f64, f64, f64)>,
}

struct TrainLoss {
    panels: Vec<(String, Vec<LossSeries>)>,
    message: &'static str,
}

impl TrainLoss {
    fn new(selected: &[Selection], results_dir: &Path, pal: &Palette) -> Self {
        let mut out = Vec::new();
        for (title, groups) in panels(selected) {
            let many_schemes = groups
                .iter()
                .map(|g| &g.scheme)
                .collect::<BTreeSet<_>>()
                .len()
                > 1;
            let mut series = Vec::new();
            for g in groups {
                let pts = mean_curve(results_dir, &g.ok_run_ids);
                if pts.is_empty() {
                    continue;
                }
                let label = if many_schemes {
                    format!("{} ({})", g.optimizer, g.scheme)
                } else {
                    g.optimizer.clone()
                };
                series.push(LossSeries {
                    label,
                    color: pal.color(&g.optimizer),
                    dash: pal.scheme(&g.scheme),
                    pts,
                });
            }
            if !series.is_empty() {
                out.push((title, series));
            }
        }
        Self {
            message: if selected.is_empty() {
                NO_CELLS
            } else {
                "no loss curves for the finished cells"
            },
            panels: out,
        }
    }
}

/// Mean ± std over the runs' curves, step by step; x is the mean forward-pass count at the
/// step. Missing or unreadable curves and non-finite losses are skipped.
fn mean_curve(results_dir: &Path, run_ids: &[String]) -> Vec<(f64, f64, f64, f64)> {
    let mut by_step: BTreeMap<usize, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
    for id in run_ids {
        let path = results_dir.join("curves").join(format!("{id}.jsonl"));
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
        for p in points.iter().filter(|p| p.train_loss.is_finite()) {
            let e = by_step.entry(p.step).or_default();
            e.0.push(p.forward_passes as f64);
            e.1.push(p.train_loss);
        }
    }
    let all: Vec<(f64, f64, f64, f64)> = by_step
        .into_values()
        .map(|(fp, loss)| {
            let s = super::stats::Stat::of(loss.iter().map(|&l| Some(l)));
            let m = s.mean.unwrap_or(f64::NAN);
            let sd = s.std.unwrap_or(0.0);
            let x = fp.iter().sum::<f64>() / fp.len() as f64;
            (x, m, m - sd, m + sd)
        })
        .filter(|p| p.0.is_finite() && p.1.is_finite())
        .collect();
    thin(all, MAX_CURVE_POINTS)
}

/// Keeps at most about `max` evenly spaced items of `v`, always including the last.
fn thin<T: Copy>(v: Vec<T>, max: usize) -> Vec<T> {
    if v.len() <= max || max < 2 {
        return v;
    }
    let stride = v.len().div_ceil(max - 1);
    let last = *v.last().unwrap();
    let mut out: Vec<T> = v.iter().copied().step_by(stride).collect();
    if (v.len() - 1) % stride != 0 {
        out.push(last);
    }
    out
}

impl Figure for TrainLoss {
    fn empty_title(&self) -> &str {
        "Training loss vs forward passes"
    }
    fn empty_message(&self) -> &str {
        self.message
    }
    fn heights(&self) -> Vec<u32> {
        vec![PANEL_HEIGHT; self.panels.len()]
    }
    fn draw_panel<DB: DrawingBackend>(&self, i: usize, area: &DrawingArea<DB, Shift>) -> Result<()>
    where
        DB::ErrorType: 'static,
    {
        let (title, series) = &self.panels[i];
        let all = || series.iter().flat_map(|s| s.pts.iter());
        let xmax = all().map(|p| p.0).fold(1.0f64, f64::max);
        let (ylo, yhi) = padded_range(all().flat_map(|p| [p.2, p.3]));
        let entries: Vec<(String, Mark)> = series
            .iter()
            .map(|s| (s.label.clone(), Mark::Line(s.color, s.dash)))
            .collect();
        let plot = panel_frame(area, title, &entries)?;
        let mut chart = ChartBuilder::on(&plot)
            .margin(MARGIN)
            .x_label_area_size(pt(22))
            .y_label_area_size(pt(26))
            .build_cartesian_2d(0f64..xmax, ylo..yhi)?;
        chart
            .configure_mesh()
            .x_desc("forward passes (training)")
            .y_desc("train loss (nats)")
            .x_labels(5)
            .y_labels(5)
            .x_label_formatter(&|v| fmt_axis(*v))
            .y_label_formatter(&|v| fmt_axis(*v))
            .label_style((FONT, TICK))
            .axis_desc_style((FONT, DESC))
            .light_line_style(BLACK.mix(0.05))
            .bold_line_style(BLACK.mix(0.12))
            .draw()?;
        for s in series {
            if s.pts.len() > 1 {
                let mut band: Vec<(f64, f64)> = s.pts.iter().map(|p| (p.0, p.3)).collect();
                band.extend(s.pts.iter().rev().map(|p| (p.0, p.2)));
                chart.draw_series(std::iter::once(Polygon::new(
                    band,
                    s.color.mix(0.2).filled(),
                )))?;
            }
            let style = ShapeStyle::from(&s.color).stroke_width(LINE);
            let line: Vec<(f64, f64)> = s.pts.iter().map(|p| (p.0, p.1)).collect();
            let dash = s.dash;
            if line.len() == 1 {
                chart.draw_series(
                    line.iter()
                        .map(|&p| Circle::new(p, MARKER, s.color.filled())),
                )?;
            } else if dash == 0 {
                chart.draw_series(LineSeries::new(line, style))?;
            } else {
                let (on, off) = dash_len(dash);
                chart.draw_series(DashedLineSeries::new(line, on, off, style))?;
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Time per step (dot plot with p10–p90 whiskers)
// ---------------------------------------------------------------------------------------------

struct TimeRow {
    label: String,
    color: RGBColor,
    median: f64,
    p10: Option<f64>,
    p90: Option<f64>,
}

struct TimePerStep {
    panels: Vec<(String, Vec<TimeRow>)>,
}

impl TimePerStep {
    fn new(selected: &[Selection], pal: &Palette) -> Self {
        let mut out = Vec::new();
        for (title, mut groups) in panels(selected) {
            groups.sort_by(|a, b| (&a.optimizer, &a.scheme).cmp(&(&b.optimizer, &b.scheme)));
            let rows: Vec<TimeRow> = groups
                .iter()
                .filter_map(|g| {
                    Some(TimeRow {
                        label: format!("{} ({})", g.optimizer, g.scheme),
                        color: pal.color(&g.optimizer),
                        median: fin(g.time_per_step_s.mean)?,
                        p10: fin(g.time_per_step_p10_s.mean),
                        p90: fin(g.time_per_step_p90_s.mean),
                    })
                })
                .collect();
            if !rows.is_empty() {
                out.push((title, rows));
            }
        }
        Self { panels: out }
    }
}

/// Height of a panel with `rows` category rows.
fn rows_height(rows: usize) -> u32 {
    PANEL_HEIGHT.max(pt(40) + rows as u32 * pt(14))
}

impl Figure for TimePerStep {
    fn empty_title(&self) -> &str {
        "Time per step"
    }
    fn heights(&self) -> Vec<u32> {
        self.panels
            .iter()
            .map(|(_, r)| rows_height(r.len()))
            .collect()
    }
    fn draw_panel<DB: DrawingBackend>(&self, i: usize, area: &DrawingArea<DB, Shift>) -> Result<()>
    where
        DB::ErrorType: 'static,
    {
        let (title, rows) = &self.panels[i];
        let n = rows.len();
        let xmax = rows
            .iter()
            .flat_map(|r| [Some(r.median), r.p10, r.p90])
            .flatten()
            .fold(0.0f64, f64::max);
        let xmax = if xmax > 0.0 { xmax * 1.3 } else { 1.0 };
        let labels: Vec<String> = rows.iter().map(|r| r.label.clone()).collect();
        let plot = panel_frame(area, title, &[])?;
        let mut chart = ChartBuilder::on(&plot)
            .margin(MARGIN)
            .x_label_area_size(pt(22))
            .y_label_area_size(label_width(area, &labels))
            .build_cartesian_2d(0f64..xmax, -0.5f64..n as f64 - 0.5)?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(0)
            .x_labels(5)
            .x_desc("time per step (s): median, p10–p90")
            .x_label_formatter(&|v| fmt_axis(*v))
            .label_style((FONT, TICK))
            .axis_desc_style((FONT, DESC))
            .light_line_style(BLACK.mix(0.05))
            .bold_line_style(BLACK.mix(0.12))
            .draw()?;
        for (k, r) in rows.iter().enumerate() {
            // First row at the top.
            let y = (n - 1 - k) as f64;
            let (px, py) = chart.backend_coord(&(0.0, y));
            draw_at(
                area,
                &r.label,
                (px - pt(3) as i32, py),
                Pos::new(HPos::Right, VPos::Center),
                TICK,
            )?;
            let style = ShapeStyle::from(&r.color).stroke_width(LINE);
            if let (Some(lo), Some(hi)) = (r.p10, r.p90) {
                let cap = 0.18;
                chart.draw_series([
                    PathElement::new(vec![(lo, y), (hi, y)], style),
                    PathElement::new(vec![(lo, y - cap), (lo, y + cap)], style),
                    PathElement::new(vec![(hi, y - cap), (hi, y + cap)], style),
                ])?;
            }
            chart.draw_series(std::iter::once(Circle::new(
                (r.median, y),
                MARKER,
                r.color.filled(),
            )))?;
            let text = TextStyle::from((FONT, TICK).into_font())
                .color(&TEXT_GREY)
                .pos(Pos::new(HPos::Left, VPos::Center));
            let right = r.p90.unwrap_or(r.median).max(r.median);
            chart.draw_series(std::iter::once(
                EmptyElement::at((right, y))
                    + Text::new(
                        fmt_general((r.median * 1e4).round() / 1e4),
                        (MARKER + pt(2) as i32, 0),
                        text,
                    ),
            ))?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Heat map scheme × optimizer
// ---------------------------------------------------------------------------------------------

struct Heatmap {
    /// (title, schemes (columns), optimizers (rows), cells (row, col) -> score %).
    panels: Vec<(
        String,
        Vec<String>,
        Vec<String>,
        BTreeMap<(usize, usize), f64>,
    )>,
}

impl Heatmap {
    fn new(selected: &[Selection]) -> Self {
        let mut out = Vec::new();
        for (title, groups) in panels(selected) {
            let with: Vec<&&Group> = groups
                .iter()
                .filter(|g| fin(g.test.mean).is_some())
                .collect();
            if with.is_empty() {
                continue;
            }
            let schemes: Vec<String> = with
                .iter()
                .map(|g| g.scheme.clone())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let opts: Vec<String> = with
                .iter()
                .map(|g| g.optimizer.clone())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let cells = with
                .iter()
                .filter_map(|g| {
                    let r = opts.iter().position(|o| *o == g.optimizer)?;
                    let c = schemes.iter().position(|s| *s == g.scheme)?;
                    Some(((r, c), 100.0 * fin(g.test.mean)?))
                })
                .collect();
            out.push((title, schemes, opts, cells));
        }
        Self { panels: out }
    }
}

/// Sequential colour map from light to dark blue, `t` in [0, 1].
fn heat_color(t: f64) -> RGBColor {
    const STOPS: [(f64, (f64, f64, f64)); 3] = [
        (0.0, (240.0, 246.0, 252.0)),
        (0.5, (115.0, 170.0, 214.0)),
        (1.0, (12.0, 52.0, 110.0)),
    ];
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.5
    };
    let (a, b) = if t <= 0.5 {
        (STOPS[0], STOPS[1])
    } else {
        (STOPS[1], STOPS[2])
    };
    let u = (t - a.0) / (b.0 - a.0);
    let mix = |x: f64, y: f64| (x + (y - x) * u).round() as u8;
    RGBColor(mix(a.1.0, b.1.0), mix(a.1.1, b.1.1), mix(a.1.2, b.1.2))
}

impl Figure for Heatmap {
    fn empty_title(&self) -> &str {
        "Test score by scheme and optimizer"
    }
    fn heights(&self) -> Vec<u32> {
        self.panels
            .iter()
            .map(|p| rows_height(p.2.len() + 1))
            .collect()
    }
    fn draw_panel<DB: DrawingBackend>(&self, i: usize, area: &DrawingArea<DB, Shift>) -> Result<()>
    where
        DB::ErrorType: 'static,
    {
        let (title, schemes, opts, cells) = &self.panels[i];
        let (nr, nc) = (opts.len(), schemes.len());
        let plot = panel_frame(area, &format!("{title} (test %, dev-selected)"), &[])?;
        let mut chart = ChartBuilder::on(&plot)
            .margin(MARGIN)
            .x_label_area_size(pt(22))
            .y_label_area_size(label_width(area, opts))
            .build_cartesian_2d(0f64..nc as f64, 0f64..nr as f64)?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(0)
            .y_labels(0)
            .x_desc("scheme")
            .axis_desc_style((FONT, DESC))
            .draw()?;
        let (lo, hi) = cells
            .values()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| {
                (l.min(v), h.max(v))
            });
        for (r, opt) in opts.iter().enumerate() {
            let y = (nr - 1 - r) as f64;
            let (px, py) = chart.backend_coord(&(0.0, y + 0.5));
            draw_at(
                area,
                opt,
                (px - pt(3) as i32, py),
                Pos::new(HPos::Right, VPos::Center),
                TICK,
            )?;
            for c in 0..nc {
                let v = cells.get(&(r, c)).copied();
                let t = match v {
                    Some(v) if hi > lo => (v - lo) / (hi - lo),
                    Some(_) => 0.5,
                    None => f64::NAN,
                };
                let fill = if v.is_some() {
                    heat_color(t)
                } else {
                    RGBColor(225, 225, 225)
                };
                chart.draw_series(std::iter::once(Rectangle::new(
                    [(c as f64, y), (c as f64 + 1.0, y + 1.0)],
                    fill.filled(),
                )))?;
                chart.draw_series(std::iter::once(Rectangle::new(
                    [(c as f64, y), (c as f64 + 1.0, y + 1.0)],
                    ShapeStyle::from(&WHITE).stroke_width(LINE),
                )))?;
                let text_color = if v.is_some() && t > 0.55 {
                    WHITE
                } else {
                    BLACK
                };
                let style = TextStyle::from((FONT, TICK).into_font())
                    .color(&text_color)
                    .pos(Pos::new(HPos::Center, VPos::Center));
                let s = v.map_or_else(|| "–".to_string(), |v| format!("{v:.1}"));
                chart.draw_series(std::iter::once(Text::new(
                    s,
                    (c as f64 + 0.5, y + 0.5),
                    style,
                )))?;
            }
        }
        for (c, scheme) in schemes.iter().enumerate() {
            let (px, py) = chart.backend_coord(&(c as f64 + 0.5, 0.0));
            draw_at(
                area,
                scheme,
                (px, py + pt(2) as i32),
                Pos::new(HPos::Center, VPos::Top),
                TICK,
            )?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Bars: test score by scheme and optimizer
// ---------------------------------------------------------------------------------------------

struct AccBars {
    /// (title, schemes, bars (scheme idx, optimizer palette idx, mean %, std %), zero-shot per scheme).
    panels: Vec<(
        String,
        Vec<String>,
        Vec<(usize, usize, f64, Option<f64>)>,
        BTreeMap<usize, f64>,
    )>,
    optimizers: Vec<String>,
}

impl AccBars {
    fn new(selected: &[Selection], pal: &Palette) -> Self {
        let mut out = Vec::new();
        for (title, groups) in panels(selected) {
            let with: Vec<&&Group> = groups
                .iter()
                .filter(|g| fin(g.test.mean).is_some())
                .collect();
            if with.is_empty() {
                continue;
            }
            let schemes: Vec<String> = with
                .iter()
                .map(|g| g.scheme.clone())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let mut bars = Vec::new();
            let mut zs: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
            for g in &with {
                let s = schemes.iter().position(|x| *x == g.scheme).unwrap_or(0);
                if let Some(m) = fin(g.test.mean) {
                    bars.push((
                        s,
                        pal.opt(&g.optimizer),
                        100.0 * m,
                        fin(g.test.std).map(|x| 100.0 * x),
                    ));
                }
                if let Some(z) = fin(g.zero_shot.mean) {
                    zs.entry(s).or_default().push(100.0 * z);
                }
            }
            let zero = zs
                .into_iter()
                .map(|(k, v)| (k, v.iter().sum::<f64>() / v.len() as f64))
                .collect();
            out.push((title, schemes, bars, zero));
        }
        Self {
            panels: out,
            optimizers: pal.optimizers.clone(),
        }
    }
}

impl Figure for AccBars {
    fn empty_title(&self) -> &str {
        "Test score by optimizer and scheme"
    }
    fn heights(&self) -> Vec<u32> {
        vec![PANEL_HEIGHT; self.panels.len()]
    }
    fn draw_panel<DB: DrawingBackend>(&self, i: usize, area: &DrawingArea<DB, Shift>) -> Result<()>
    where
        DB::ErrorType: 'static,
    {
        let (title, schemes, bars, zero) = &self.panels[i];
        let n = schemes.len();
        let present: Vec<usize> = bars
            .iter()
            .map(|b| b.1)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut entries: Vec<(String, Mark)> = present
            .iter()
            .map(|&o| {
                let name = self.optimizers.get(o).cloned().unwrap_or_default();
                (name, Mark::Swatch(series_color(o)))
            })
            .collect();
        if !zero.is_empty() {
            entries.push(("zero-shot".to_string(), Mark::Line(BLACK, 1)));
        }
        let plot = panel_frame(area, title, &entries)?;
        let mut chart = ChartBuilder::on(&plot)
            .margin(MARGIN)
            .x_label_area_size(pt(22))
            .y_label_area_size(pt(26))
            .build_cartesian_2d(-0.5f64..n as f64 - 0.5, 0f64..100f64)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_labels(5)
            .x_desc("scheme")
            .y_desc("test score (%)")
            .y_label_formatter(&|v| format!("{v:.0}"))
            .label_style((FONT, TICK))
            .axis_desc_style((FONT, DESC))
            .light_line_style(BLACK.mix(0.05))
            .bold_line_style(BLACK.mix(0.12))
            .draw()?;
        for (s, scheme) in schemes.iter().enumerate() {
            let (px, py) = chart.backend_coord(&(s as f64, 0.0));
            draw_at(
                area,
                scheme,
                (px, py + pt(2) as i32),
                Pos::new(HPos::Center, VPos::Top),
                TICK,
            )?;
        }
        let k = present.len().max(1) as f64;
        let group = 0.8;
        let width = group / k;
        for (slot, &o) in present.iter().enumerate() {
            let color = series_color(o);
            let mine: Vec<&(usize, usize, f64, Option<f64>)> =
                bars.iter().filter(|b| b.1 == o).collect();
            let x0 = |s: usize| s as f64 - group / 2.0 + slot as f64 * width;
            chart.draw_series(mine.iter().map(|b| {
                Rectangle::new(
                    [
                        (x0(b.0) + 0.05 * width, 0.0),
                        (x0(b.0) + 0.95 * width, b.2.clamp(0.0, 100.0)),
                    ],
                    color.filled(),
                )
            }))?;
            let err = ShapeStyle::from(&BLACK).stroke_width(LINE);
            chart.draw_series(mine.iter().filter_map(|b| {
                let sd = b.3?;
                let xc = x0(b.0) + 0.5 * width;
                Some(PathElement::new(
                    vec![
                        (xc, (b.2 - sd).clamp(0.0, 100.0)),
                        (xc, (b.2 + sd).clamp(0.0, 100.0)),
                    ],
                    err,
                ))
            }))?;
        }
        let style = ShapeStyle::from(&BLACK).stroke_width(LINE);
        let (on, off) = dash_len(1);
        for (&s, &z) in zero {
            let z = z.clamp(0.0, 100.0);
            chart.draw_series(DashedLineSeries::new(
                vec![(s as f64 - group / 2.0, z), (s as f64 + group / 2.0, z)],
                on,
                off,
                style,
            ))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_curves_are_thinned_keeping_the_last_point() {
        let v: Vec<usize> = (0..10_000).collect();
        let t = thin(v, MAX_CURVE_POINTS);
        assert!(t.len() <= MAX_CURVE_POINTS + 1, "{}", t.len());
        assert_eq!(t[0], 0);
        assert_eq!(*t.last().unwrap(), 9_999);
        assert_eq!(thin(vec![1, 2, 3], 10), [1, 2, 3]);
    }

    #[test]
    fn model_paths_are_shortened_in_titles() {
        assert_eq!(short_model("/data/models/minilm/"), "minilm");
        assert_eq!(short_model("minilm-l6"), "minilm-l6");
        assert_eq!(short_model("/"), "/");
    }

    #[test]
    fn font_sizes_follow_the_points_at_300_ppi() {
        assert_eq!(WIDTH, 990);
        assert_eq!(PANEL_HEIGHT, 660);
        assert_eq!((TITLE, DESC, TICK), (38, 33, 29));
    }
}
