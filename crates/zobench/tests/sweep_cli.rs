//! End-to-end: `zobench sweep` on configs/smoke.toml (bert-tiny fixture, real SST-2 text),
//! resume, and bad-input exit codes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn zobench(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_zobench"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run zobench")
}

/// `zobench sweep --config cfg --out out --reports <out>.reports`, run in the config's folder.
fn sweep(cfg: &Path, out: &Path) -> Output {
    let reports = out.with_extension("reports");
    let args = [
        "sweep",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--reports",
        reports.to_str().unwrap(),
    ];
    zobench(&args, cfg.parent().unwrap())
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn smoke_sweep_writes_results_tables_plots_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("results");
    let rep = tmp.path().join("reports");
    let cfg = root().join("configs/smoke.toml");
    let args = [
        "sweep",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--reports",
        rep.to_str().unwrap(),
    ];
    let o = zobench(&args, tmp.path());
    assert!(o.status.success(), "{}", text(&o));

    let runs = std::fs::read_to_string(out.join("runs.jsonl")).unwrap();
    let recs: Vec<serde_json::Value> = runs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // 2 schemes x 11 optimizers + CGE on the head + 3 PEFT schemes x 2 + 3 tasks + 2 causal.
    assert_eq!(recs.len(), 22 + 1 + 6 + 3 + 2);
    let seen: std::collections::HashSet<&str> = recs
        .iter()
        .map(|r| r["optimizer"].as_str().unwrap())
        .collect();
    assert_eq!(seen.len(), 12, "every optimizer ran: {seen:?}");
    for r in &recs {
        assert_eq!(r["status"], "ok", "{r}");
        for k in ["majority_acc", "zero_shot_acc", "best_dev_acc", "test_acc"] {
            let a = r[k].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&a), "{k} = {a}");
        }
        assert!(r["peak_mem_bytes"].as_u64().unwrap() > 1 << 20);
        assert!(r["time_per_step_s"].as_f64().unwrap() > 0.0);
        let (opt, scheme) = (
            r["optimizer"].as_str().unwrap(),
            r["scheme"].as_str().unwrap(),
        );
        let fpps = r["forward_passes_per_step"].as_f64().unwrap();
        // Counted objective calls per step (see zo-optim's table).
        let want = match (opt, scheme) {
            ("zo-sgd-cons", _) => 5.0,
            // Block-wise: 2 per block (embeddings, 2 layers, head) under ft; one block (the
            // head) under head.
            ("zo-adam", "ft") => 8.0,
            // Hybrid: the FO part costs one more forward pass.
            ("zo-sgd-sign-elementwise", "ft") => 3.0,
            ("zo-ranksgd", _) => 4.0,
            ("zo-cge", _) => 2.0 * 32.0 + 2.0 + 1.0,
            (o, _) if o.starts_with("fo-") || o == "forward-grad" => 1.0,
            _ => 2.0,
        };
        assert_eq!(fpps, want, "{opt}/{scheme}");
        assert_eq!(
            r["total_forward_passes"].as_u64().unwrap(),
            20 * want as u64
        );
        let bwd = r["backward_passes_per_step"].as_f64().unwrap();
        let zo = !opt.starts_with("fo-") && opt != "forward-grad";
        if zo && !(opt == "zo-sgd-sign-elementwise" && scheme == "ft") {
            assert_eq!(bwd, 0.0, "{opt}: a ZO step has no backward pass");
        } else {
            assert_eq!(bwd, 1.0, "{opt}/{scheme}");
        }
        if opt == "forward-grad" {
            assert_eq!(r["jvp_method"], "reverse");
        }
        assert_eq!(r["template"], "mezo");
        let trainable = r["trainable_params"].as_u64().unwrap();
        let total = r["total_params"].as_u64().unwrap();
        if r["model"] == "smollm2-135m" {
            assert_eq!(r["family"], "llama");
            assert_eq!(r["metric"], "acc");
            // LoRA r = 8 on q_proj [576 -> 576] and v_proj [576 -> 192] in 30 layers; prompt
            // tuning: 10 x 576.
            let want = if scheme == "lora" {
                30 * 8 * ((576 + 576) + (576 + 192))
            } else {
                10 * 576
            };
            assert_eq!(trainable, want, "{scheme}");
            continue;
        }
        assert_eq!(r["family"], "bert");
        assert_eq!(
            r["num_train"],
            if r["task"] == "sst2" {
                64
            } else {
                r["num_train"].as_u64().unwrap()
            }
        );
        let head = 2 * 32 + 2;
        match scheme {
            "head" => assert_eq!(trainable, head, "classifier.weight [2, 32] + bias [2]"),
            // ft = everything the loss depends on: all but the pooler (mean pooling).
            "ft" => assert_eq!(trainable, total - (32 * 32 + 32)),
            // LoRA r = 8 on query and value [32 -> 32] of 2 layers, plus the head.
            "lora" => assert_eq!(trainable, head + 2 * 2 * 8 * (32 + 32)),
            // 5 virtual keys and values per layer, plus the head.
            "prefix" => assert_eq!(trainable, head + 2 * 5 * 2 * 32),
            // 10 virtual input embeddings, plus the head.
            "prompt" => assert_eq!(trainable, head + 10 * 32),
            other => panic!("scheme {other}"),
        }
        // The curve has one line per step.
        let curve = std::fs::read_to_string(
            out.join("curves")
                .join(format!("{}.jsonl", r["run_id"].as_str().unwrap())),
        )
        .unwrap();
        assert_eq!(curve.lines().count(), 20);
        assert!(r["git_commit"].as_str().unwrap().len() >= 7);
    }
    for f in ["summary.parquet", "summary.csv", "summary.md"] {
        assert!(std::fs::metadata(out.join(f)).unwrap().len() > 0, "{f}");
    }
    let csv = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    assert_eq!(
        csv.lines().count(),
        recs.len() + 1,
        "header + one row a cell:\n{csv}"
    );
    let mut figures = 0;
    for e in std::fs::read_dir(&rep).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "svg") {
            let svg = std::fs::read_to_string(&p).unwrap();
            assert!(svg.contains("<svg"), "{}", p.display());
            let png = std::fs::read(p.with_extension("png")).unwrap();
            assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{}", p.display());
            figures += 1;
        }
    }
    assert!(figures >= 3, "figures: {figures}");

    // Second run: every cell is skipped, nothing recorded twice.
    let o = zobench(&args, tmp.path());
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("{} already recorded", recs.len())),
        "{}",
        text(&o)
    );
    assert_eq!(
        std::fs::read_to_string(out.join("runs.jsonl")).unwrap(),
        runs
    );
}

fn write_cfg(dir: &Path, body: &str) -> PathBuf {
    let p = dir.join("bad.toml");
    std::fs::write(&p, body).unwrap();
    p
}

const GOOD: &str = r#"name = "t"
[grid]
model = ["bert-tiny"]
task = ["sst2"]
scheme = ["head"]
optimizer = ["zo-sgd"]
seed = [0]
[settings]
steps = 2
batch_size = 2
eval_every = 1
num_train = 4
num_dev = 4
num_eval = 4
"#;

#[test]
fn bad_configs_exit_2_naming_file_key_and_choices() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "unknown optimizer",
            &GOOD.replace(r#"optimizer = ["zo-sgd"]"#, r#"optimizer = ["zo-sdg"]"#),
            &[
                "grid.optimizer",
                "zo-sdg",
                "did you mean `zo-sgd`",
                "fo-sgd",
            ],
        ),
        (
            "unknown model",
            &GOOD.replace("bert-tiny", "minilm"),
            &["grid.model", "did you mean `minilm-l6`"],
        ),
        (
            "unknown task",
            &GOOD.replace(r#"task = ["sst2"]"#, r#"task = ["sst"]"#),
            &["grid.task", "sst2"],
        ),
        (
            "missing field",
            &GOOD.replace("steps = 2\n", ""),
            &["missing field", "steps"],
        ),
        (
            "wrong type",
            &GOOD.replace("steps = 2", r#"steps = "two""#),
            &["bad.toml:9:", "`settings.steps`", "expected usize"],
        ),
        (
            "unknown key",
            &GOOD.replace("steps = 2", "steps = 2\nstepz = 3"),
            &["unknown field `stepz`"],
        ),
    ];
    for (what, body, needles) in cases {
        let cfg = write_cfg(tmp.path(), body);
        let o = sweep(&cfg, &tmp.path().join("r"));
        assert_eq!(o.status.code(), Some(2), "{what}: {}", text(&o));
        let t = text(&o);
        assert!(
            t.contains("bad.toml"),
            "{what}: message must name the file: {t}"
        );
        for n in *needles {
            assert!(t.contains(n), "{what}: expected `{n}` in: {t}");
        }
    }
}

/// A local HF folder `dir/name` made from the bert-tiny fixture: `config.json` passed through
/// `edit_config`, `model.safetensors` passed through `edit_weights` (`None`: no weights file),
/// and the fixture tokenizer.
fn model_folder(
    dir: &Path,
    name: &str,
    edit_config: impl Fn(String) -> String,
    edit_weights: impl Fn(Vec<u8>) -> Option<Vec<u8>>,
) -> PathBuf {
    let model = dir.join(name);
    std::fs::create_dir_all(&model).unwrap();
    let fx = root().join("fixtures/models/bert-tiny");
    let cfg = std::fs::read_to_string(fx.join("config.json")).unwrap();
    std::fs::write(model.join("config.json"), edit_config(cfg)).unwrap();
    if let Some(w) = edit_weights(std::fs::read(fx.join("model.safetensors")).unwrap()) {
        std::fs::write(model.join("model.safetensors"), w).unwrap();
    }
    std::fs::copy(
        root().join("fixtures/tokenizers/bert-tiny/tokenizer.json"),
        model.join("tokenizer.json"),
    )
    .unwrap();
    model
}

#[test]
fn corrupt_checkpoint_exits_2_and_keeps_existing_results() {
    let tmp = tempfile::tempdir().unwrap();
    // A local HF folder whose weights are truncated.
    let model = model_folder(
        tmp.path(),
        "broken-bert",
        |c| c,
        |w| Some(w[..w.len() - 100].to_vec()),
    );
    let out = tmp.path().join("r");
    // First a good sweep into the same folder: its record must survive the failed one.
    let good = write_cfg(tmp.path(), GOOD);
    let o = sweep(&good, &out);
    assert!(o.status.success(), "{}", text(&o));
    let before = std::fs::read_to_string(out.join("runs.jsonl")).unwrap();
    assert_eq!(before.lines().count(), 1);

    let body = GOOD.replace("\"bert-tiny\"", &format!("{:?}", model.to_str().unwrap()));
    let cfg = write_cfg(tmp.path(), &body);
    let o = sweep(&cfg, &out);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("broken-bert/model.safetensors") && t.contains("corrupt"),
        "{t}"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("runs.jsonl")).unwrap(),
        before
    );
}

#[test]
fn missing_checkpoint_exits_2_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let model = model_folder(tmp.path(), "no-weights", |c| c, |_| None);
    let cfg = write_cfg(
        tmp.path(),
        &GOOD.replace("\"bert-tiny\"", &format!("{:?}", model.to_str().unwrap())),
    );
    let o = sweep(&cfg, &tmp.path().join("r"));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("no-weights") && text(&o).contains("model.safetensors"),
        "{}",
        text(&o)
    );
}

#[test]
fn a_checkpoint_that_does_not_match_its_config_stops_the_sweep_before_any_cell() {
    let tmp = tempfile::tempdir().unwrap();
    let model = model_folder(
        tmp.path(),
        "shape-mismatch",
        |c| c.replace("\"intermediate_size\": 64", "\"intermediate_size\": 96"),
        Some,
    );
    let body = GOOD.replace(
        r#"model = ["bert-tiny"]"#,
        &format!("model = [\"bert-tiny\", {:?}]", model.to_str().unwrap()),
    );
    let cfg = write_cfg(tmp.path(), &body);
    let out = tmp.path().join("r");
    let o = sweep(&cfg, &out);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let t = text(&o);
    assert!(
        t.contains("intermediate.dense.weight") && t.contains("[96, 32]"),
        "{t}"
    );
    assert!(!out.join("runs.jsonl").exists(), "no cell ran");
}

#[test]
fn cells_that_time_out_are_recorded_the_sweep_goes_on_and_they_are_retried() {
    let tmp = tempfile::tempdir().unwrap();
    let body = GOOD
        .replace("seed = [0]", "seed = [0, 1]")
        .replace("num_eval = 4\n", "num_eval = 4\ntimeout_s = 0.001\n");
    let cfg = write_cfg(tmp.path(), &body);
    let out = tmp.path().join("r");
    let plots = tmp.path().join("p");
    let args = [
        "sweep",
        "--config",
        cfg.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--reports",
        plots.to_str().unwrap(),
    ];
    let o = zobench(&args, tmp.path());
    assert_eq!(
        o.status.code(),
        Some(1),
        "a cell that did not finish makes the sweep exit 1: {}",
        text(&o)
    );
    let read = || -> Vec<serde_json::Value> {
        std::fs::read_to_string(out.join("runs.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let lines = read();
    assert_eq!(
        lines.len(),
        2,
        "both cells recorded: the sweep went on after the first"
    );
    for l in &lines {
        assert_eq!(l["status"], "timeout", "{l}");
        assert!(
            l["error"].as_str().unwrap().contains("wall-time limit"),
            "{l}"
        );
    }
    assert!(
        out.join("summary.csv").exists(),
        "the report is written even when cells failed"
    );
    // Run again: unfinished cells are retried (appended), nothing is rewritten.
    let before = std::fs::read_to_string(out.join("runs.jsonl")).unwrap();
    let o = zobench(&args, tmp.path());
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let after = std::fs::read_to_string(out.join("runs.jsonl")).unwrap();
    assert!(after.starts_with(&before));
    assert_eq!(read().len(), 4);
}

#[test]
fn every_shipped_config_validates() {
    let tmp = tempfile::tempdir().unwrap();
    // An empty model cache: nothing is fetched or calibrated, only parsed and expanded.
    let home = tmp.path().join("home");
    for e in std::fs::read_dir(root().join("configs")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "toml") {
            continue;
        }
        let o = Command::new(env!("CARGO_BIN_EXE_zobench"))
            .args(["validate", "--config", p.to_str().unwrap()])
            .env("ZOBENCH_HOME", &home)
            .current_dir(tmp.path())
            .output()
            .unwrap();
        let t = text(&o);
        assert!(o.status.success(), "{}: {t}", p.display());
        assert!(t.contains(" cells, "), "{}: {t}", p.display());
    }
}

#[test]
fn compare_exits_1_on_a_regression_and_0_without() {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    let cur = tmp.path().join("cur");
    std::fs::create_dir_all(&base).unwrap();
    std::fs::create_dir_all(&cur).unwrap();
    // One real record from a tiny sweep, then a copy with a lower accuracy.
    let cfg = write_cfg(tmp.path(), GOOD);
    let o = sweep(&cfg, &base);
    assert!(o.status.success(), "{}", text(&o));
    let line = std::fs::read_to_string(base.join("runs.jsonl")).unwrap();
    std::fs::write(cur.join("runs.jsonl"), &line).unwrap();
    let run = |a: &Path, b: &Path| {
        Command::new(env!("CARGO_BIN_EXE_zobench"))
            .args(["compare", a.to_str().unwrap(), b.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let o = run(&base, &cur);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let mut rec: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    let acc = rec["test_acc"].as_f64().unwrap();
    rec["test_acc"] = serde_json::json!(acc - 0.25);
    std::fs::write(cur.join("runs.jsonl"), format!("{rec}\n")).unwrap();
    let o = run(&base, &cur);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("REGRESSION"), "{}", text(&o));
    let o = run(&base, &tmp.path().join("nothing"));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}
