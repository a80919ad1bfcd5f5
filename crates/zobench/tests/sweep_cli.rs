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
    assert_eq!(recs.len(), 4, "2 schemes x 2 optimizers");
    for r in &recs {
        assert_eq!(r["status"], "ok", "{r}");
        for k in ["majority_acc", "zero_shot_acc", "best_dev_acc", "test_acc"] {
            let a = r[k].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&a), "{k} = {a}");
        }
        assert!(r["peak_mem_bytes"].as_u64().unwrap() > 1 << 20);
        assert!(r["time_per_step_s"].as_f64().unwrap() > 0.0);
        let fpps = r["forward_passes_per_step"].as_f64().unwrap();
        let want = if r["optimizer"] == "zo-sgd" { 2.0 } else { 1.0 };
        assert_eq!(fpps, want);
        assert_eq!(
            r["total_forward_passes"].as_u64().unwrap(),
            20 * want as u64
        );
        assert_eq!(r["num_train"], 64);
        assert_eq!(r["num_eval"], 64);
        let trainable = r["trainable_params"].as_u64().unwrap();
        if r["scheme"] == "head" {
            assert_eq!(
                trainable,
                2 * 32 + 2,
                "head = classifier.weight [2, 32] + bias [2]"
            );
        } else {
            // ft = everything the loss depends on: all but the pooler (mean pooling).
            assert_eq!(
                trainable,
                r["total_params"].as_u64().unwrap() - (32 * 32 + 32)
            );
        }
        assert!(r["git_commit"].as_str().unwrap().len() >= 7);
        // The curve has one line per step.
        let curve = std::fs::read_to_string(
            out.join("curves")
                .join(format!("{}.jsonl", r["run_id"].as_str().unwrap())),
        )
        .unwrap();
        assert_eq!(curve.lines().count(), 20);
    }
    for f in ["summary.parquet", "summary.csv", "summary.md"] {
        assert!(std::fs::metadata(out.join(f)).unwrap().len() > 0, "{f}");
    }
    let csv = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5, "header + 4 rows:\n{csv}");
    for plot in ["test_acc_by_optimizer", "train_loss", "acc_vs_memory"] {
        let svg = std::fs::read_to_string(rep.join(format!("{plot}.svg"))).unwrap();
        assert!(svg.contains("<svg"), "{plot}.svg");
        let png = std::fs::read(rep.join(format!("{plot}.png"))).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{plot}.png");
    }

    // Second run: every cell is skipped, nothing recorded twice.
    let o = zobench(&args, tmp.path());
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("4 already recorded"), "{}", text(&o));
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
