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

// ---- the masked-LM prompt formulation and in-context-learning rows ----

/// A byte-level, whole-word tokenizer.json: `specials` (id, token, is the mask) first, then
/// `words` (with `Ġ` for a leading space) from `first_word` on; `post` is its post-processor.
fn word_tokenizer(
    specials: &[(u32, &str)],
    words: &[&str],
    first_word: u32,
    unk: &str,
    post: serde_json::Value,
) -> String {
    let mut vocab = serde_json::Map::new();
    for (i, t) in specials {
        vocab.insert(t.to_string(), (*i).into());
    }
    for (k, w) in words.iter().enumerate() {
        vocab.insert(w.replace('G', "\u{120}"), (first_word + k as u32).into());
    }
    let added: Vec<serde_json::Value> = specials
        .iter()
        .map(|(i, t)| {
            serde_json::json!({"id": i, "content": t, "single_word": false,
                "lstrip": *t == "<mask>", "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
            "use_regex": true},
        "post_processor": post,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true,
            "use_regex": true},
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": unk}
    })
    .to_string()
}

/// Frequent SST-2 words, so that the real sentences are not all `<unk>`.
const SST2_WORDS: &[&str] = &[
    "Gthe",
    "the",
    "Ga",
    "a",
    "G,",
    "G.",
    ".",
    "Gand",
    "Gof",
    "Gto",
    "Gis",
    "Git",
    "it",
    "Gthat",
    "Gin",
    "Gas",
    "Gbut",
    "Gwith",
    "Gfilm",
    "Gmovie",
    "Gthis",
    "Gfor",
    "Gits",
    "Gan",
    "Gnot",
    "Gyou",
    "Gbe",
    "Gon",
    "Gabout",
    "Gby",
    "Gmore",
    "Gone",
    "Gtoo",
    "Glike",
    "Gso",
    "Gall",
    "Ggood",
    "Gstory",
    "Gbad",
    "Gfunny",
    "Gbest",
    "Gmost",
    "Gcharacters",
    "Glove",
    "Gmuch",
    "GIt",
    "Gwas",
    "Gterrible",
    "Ggreat",
    "GYes",
    "GNo",
    ",",
    "?",
];

/// The tiny random RoBERTa (RobertaForMaskedLM, vocab 120, `<mask>` = 119) and the tiny GPT-2
/// (vocab 144) as HF folders with whole-word tokenizers, under `dir`.
fn tiny_text_models(dir: &Path) -> (PathBuf, PathBuf) {
    let copy = |fixture: &str, name: &str, tok: String| {
        let m = dir.join(name);
        std::fs::create_dir_all(&m).unwrap();
        for f in ["config.json", "model.safetensors"] {
            std::fs::copy(
                root().join("fixtures/models").join(fixture).join(f),
                m.join(f),
            )
            .unwrap();
        }
        std::fs::write(m.join("tokenizer.json"), tok).unwrap();
        m
    };
    let roberta = copy(
        "roberta-tiny",
        "roberta",
        word_tokenizer(
            &[
                (0, "<s>"),
                (1, "<pad>"),
                (2, "</s>"),
                (3, "<unk>"),
                (119, "<mask>"),
            ],
            SST2_WORDS,
            4,
            "<unk>",
            serde_json::json!({"type": "RobertaProcessing", "sep": ["</s>", 2],
                "cls": ["<s>", 0], "trim_offsets": true, "add_prefix_space": false}),
        ),
    );
    let gpt2 = copy(
        "gpt2-tiny",
        "gpt2",
        word_tokenizer(
            &[(0, "<unk>"), (143, "<|endoftext|>")],
            SST2_WORDS,
            1,
            "<unk>",
            serde_json::Value::Null,
        ),
    );
    (roberta, gpt2)
}

#[test]
fn mlm_prompt_and_icl_rows_run_through_the_sweep_and_the_report() {
    let tmp = tempfile::tempdir().unwrap();
    let (roberta, gpt2) = tiny_text_models(tmp.path());
    let (r, g) = (roberta.to_str().unwrap(), gpt2.to_str().unwrap());
    let body = format!(
        r#"name = "mlm-icl"
[grid]
model = ["{r}", "{g}"]
task = ["sst2"]
scheme = ["ft", "lora"]
optimizer = ["zo-sgd", "icl"]
template = ["mlm", "mezo"]
seed = [0]
[settings]
steps = 4
batch_size = 4
eval_every = 2
num_train = 16
num_dev = 8
num_eval = 16
max_length = 48
threads = 1
[optimizer.zo-sgd]
lr = [1e-3]
[optimizer.icl]
shots = [0, 2]
[[exclude]]
model = "{g}"
template = "mlm"
[[exclude]]
model = "{r}"
optimizer = "icl"
[[exclude]]
scheme = "lora"
optimizer = "zo-sgd"
"#
    );
    let cfg = tmp.path().join("mlm-icl.toml");
    std::fs::write(&cfg, body).unwrap();
    let out = tmp.path().join("results");
    let o = sweep(&cfg, &out);
    assert!(o.status.success(), "{}", text(&o));
    let runs = std::fs::read_to_string(out.join("runs.jsonl")).unwrap();
    let recs: Vec<serde_json::Value> = runs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // RoBERTa: mlm prompt + classification head; GPT-2: one trained cell + 2 ICL rows (the ft
    // and lora schemes collapse into one ICL row per shots value).
    assert_eq!(recs.len(), 5, "{runs}");
    let find = |model: &str, opt: &str, template: &str, shots: Option<u64>| {
        recs.iter()
            .find(|x| {
                x["model"] == model
                    && x["optimizer"] == opt
                    && x["template"] == template
                    && x["icl_shots"].as_u64() == shots
            })
            .unwrap_or_else(|| panic!("no {model}/{opt}/{template}/{shots:?} in {runs}"))
    };
    for x in &recs {
        assert_eq!(x["status"], "ok", "{x}");
        for k in ["majority_acc", "best_dev_acc", "test_acc"] {
            let a = x[k].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&a), "{k} = {a}");
        }
    }
    // The masked-LM prompt: all parameters (LM head included) trained by ZO-SGD; evaluation =
    // zero-shot test + dev at steps 0, 2, 4 + test, one batch each.
    let mlm = find(r, "zo-sgd", "mlm", None);
    assert_eq!(mlm["formulation"], "mlm-prompt");
    assert_eq!(mlm["family"], "roberta");
    assert_eq!(mlm["trainable_params"], mlm["total_params"]);
    assert_eq!(mlm["forward_passes_per_step"], 2.0);
    assert_eq!(mlm["total_forward_passes"], 8);
    assert_eq!(mlm["eval_forward_passes"], 5);
    assert!(mlm["zero_shot_acc"].as_f64().is_some());
    assert_eq!(find(r, "zo-sgd", "mezo", None)["formulation"], "classifier");
    let causal = find(g, "zo-sgd", "mezo", None);
    assert_eq!(causal["formulation"], "causal-lm");
    assert_eq!(causal["eval_forward_passes"], 5);
    // ICL rows: nothing trained, dev and test evaluated once each (16 and 32 candidate rows fit
    // one batch of 64), recorded beside the trained cell.
    for k in [0, 2] {
        let icl = find(g, "icl", "mezo", Some(k));
        assert_eq!(icl["scheme"], "none");
        assert_eq!(icl["formulation"], "causal-lm");
        assert_eq!(icl["hparams"]["shots"], k);
        assert_eq!(icl["steps"], 0);
        assert_eq!(icl["estimator"], "none");
        assert_eq!(icl["trainable_params"], 0);
        assert_eq!(icl["total_forward_passes"], 0);
        assert_eq!(icl["forward_passes_per_step"], 0.0);
        assert_eq!(icl["eval_forward_passes"], 2);
        assert_eq!(icl["best_step"], 0);
        assert!(icl["zero_shot_acc"].is_null());
        assert_eq!(icl["num_eval"], 16);
    }
    // Zero demonstrations = the zero-shot evaluation of the trained cell, bit for bit.
    assert_eq!(
        find(g, "icl", "mezo", Some(0))["test_acc"],
        causal["zero_shot_acc"]
    );
    // The report shows the ICL rows with their shots, beside the trained rows.
    let reports = out.with_extension("reports");
    let agg = std::fs::read_to_string(reports.join("aggregate.md")).unwrap();
    assert!(
        agg.contains("shots=0") && agg.contains("shots=2") && agg.contains("icl"),
        "{agg}"
    );
    let sel = std::fs::read_to_string(reports.join("dev_selected.md")).unwrap();
    assert!(sel.contains("icl") && sel.contains("zo-sgd"), "{sel}");
    let csv = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    let header = csv.lines().next().unwrap();
    assert!(
        header.contains("formulation") && header.contains("icl_shots"),
        "{header}"
    );
    assert!(csv.contains("mlm-prompt"), "{csv}");
    // Resume: nothing runs again.
    let o = sweep(&cfg, &out);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("5 already recorded"), "{}", text(&o));

    // A model without an MLM head under template `mlm` fails its cell with the reason.
    let body = GOOD.replace("[grid]\n", "[grid]\ntemplate = [\"mlm\"]\n");
    let cfg = write_cfg(tmp.path(), &body);
    let o = sweep(&cfg, &tmp.path().join("r-bert"));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let rec = std::fs::read_to_string(tmp.path().join("r-bert/runs.jsonl")).unwrap();
    assert!(
        rec.contains("\"failed\"") && rec.contains("without one"),
        "{rec}"
    );
}

#[test]
fn mlm_and_icl_config_errors_exit_2_with_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let mlm = GOOD.replace("[grid]\n", "[grid]\ntemplate = [\"mlm\"]\n");
    let icl = GOOD.replace(
        r#"optimizer = ["zo-sgd"]"#,
        r#"optimizer = ["zo-sgd", "icl"]"#,
    );
    let cases: &[(&str, String, &[&str])] = &[
        (
            "mlm on a multiple-choice task",
            mlm.replace(r#"task = ["sst2"]"#, r#"task = ["sst2", "copa"]"#),
            &[
                "grid.template",
                "`copa` has no `mlm` template",
                "[[exclude]]",
            ],
        ),
        (
            "misspelt template",
            mlm.replace("\"mlm\"", "\"mlmm\""),
            &["grid.template", "did you mean `mlm`"],
        ),
        (
            "misspelt icl",
            GOOD.replace(r#"optimizer = ["zo-sgd"]"#, r#"optimizer = ["icll"]"#),
            &["grid.optimizer", "did you mean `icl`"],
        ),
        (
            "misspelt shots",
            format!("{icl}[optimizer.icl]\nshot = [4]\n"),
            &["optimizer.icl", "`shot`", "did you mean `shots`"],
        ),
        (
            "negative shots",
            format!("{icl}[optimizer.icl]\nshots = [-1]\n"),
            &["optimizer.icl", "non-negative integers"],
        ),
        (
            "icl per scheme",
            format!("{icl}[optimizer.icl.scheme.ft]\nshots = [4]\n"),
            &["optimizer.icl.scheme", "no scheme"],
        ),
    ];
    for (what, body, needles) in cases {
        let cfg = write_cfg(tmp.path(), body);
        let o = sweep(&cfg, &tmp.path().join("r"));
        assert_eq!(o.status.code(), Some(2), "{what}: {}", text(&o));
        let t = text(&o);
        assert!(t.contains("bad.toml"), "{what}: {t}");
        for n in *needles {
            assert!(t.contains(n), "{what}: expected `{n}` in: {t}");
        }
    }
    // Excluding the combination makes the grid valid.
    let ok = format!(
        "{}[[exclude]]\ntask = \"copa\"\ntemplate = \"mlm\"\n",
        mlm.replace(r#"task = ["sst2"]"#, r#"task = ["sst2", "copa"]"#)
    );
    let cfg = write_cfg(tmp.path(), &ok);
    let o = zobench(&["validate", "--config", cfg.to_str().unwrap()], tmp.path());
    assert!(o.status.success(), "{}", text(&o));
}

/// `runtime = ["memory", "offload"]` on a causal LM: the offloaded zo-sgd cell (layers
/// streamed to a second flex store, one layer on the "device" at a time) gives the same
/// losses, dev and test scores as the in-memory cell — the runtime is exact in f32 — and
/// records its device plan and peaks; the report keeps the two runtimes apart.
#[test]
fn offload_runtime_cells_equal_the_in_memory_cells_and_record_the_device() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, gpt2) = tiny_text_models(tmp.path());
    let g = gpt2.to_str().unwrap();
    let body = format!(
        r#"name = "offload"
[grid]
model = ["{g}"]
task = ["sst2"]
scheme = ["ft", "lora"]
optimizer = ["zo-sgd", "fo-sgd"]
runtime = ["memory", "offload"]
seed = [0]
[settings]
steps = 4
batch_size = 4
eval_every = 2
num_train = 16
num_dev = 8
num_eval = 16
max_length = 48
threads = 1
[optimizer.zo-sgd]
lr = [1e-2]
mu = [1e-3]
weight_decay = [0.01]
[optimizer.fo-sgd]
lr = [1e-2]
[offload]
device = "flex"
budget_fraction = 1.5
"#
    );
    let cfg = tmp.path().join("offload.toml");
    std::fs::write(&cfg, body).unwrap();
    let out = tmp.path().join("results");
    let o = sweep(&cfg, &out);
    assert!(o.status.success(), "{}", text(&o));
    let runs = std::fs::read_to_string(out.join("runs.jsonl")).unwrap();
    let recs: Vec<serde_json::Value> = runs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // 2 schemes × (zo-sgd × 2 runtimes + fo-sgd in memory only).
    assert_eq!(recs.len(), 6, "{runs}");
    for scheme in ["ft", "lora"] {
        let find = |rt: Option<&str>| {
            recs.iter()
                .find(|x| {
                    x["scheme"] == scheme
                        && x["optimizer"] == "zo-sgd"
                        && x["runtime"].as_str() == rt
                })
                .unwrap_or_else(|| panic!("no {scheme}/{rt:?} in {runs}"))
        };
        let (mem, off) = (find(None), find(Some("offload")));
        assert_eq!(off["status"], "ok", "{off}");
        for k in [
            "final_train_loss",
            "best_dev_acc",
            "best_step",
            "test_acc",
            "zero_shot_acc",
            "trainable_params",
            "forward_passes_per_step",
        ] {
            assert_eq!(mem[k], off[k], "{scheme}: `{k}` differs between runtimes");
        }
        assert_ne!(mem["run_id"], off["run_id"]);
        assert!(mem.get("offload").is_none());
        let d = &off["offload"];
        assert_eq!(d["device"], "flex");
        assert_eq!(d["transfer"], "f32");
        let (budget, weights) = (
            d["budget_bytes"].as_u64().unwrap(),
            d["weights_bytes"].as_u64().unwrap(),
        );
        assert_eq!(budget, (weights as f64 * 1.5) as u64);
        let peak = d["peak_param_bytes"].as_u64().unwrap();
        assert!(peak > 0 && peak <= budget, "{d}");
        assert!(d["bytes_per_step"].as_u64().unwrap() > 0);
        assert!(d["ring"].as_u64().unwrap() >= 1);
    }
    let table = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(table.contains("zo-sgd (offload)"), "{table}");
}

#[test]
fn offload_config_errors_exit_2_with_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let base = |extra: &str| {
        format!(
            "name = \"o\"\n[grid]\nmodel = [\"bert-tiny\"]\ntask = [\"sst2\"]\nscheme = [\"ft\"]\noptimizer = [\"zo-sgd\"]\nseed = [0]\nruntime = [\"memory\", \"offload\"]\n[settings]\nsteps = 1\nbatch_size = 1\neval_every = 1\nnum_train = 1\nnum_dev = 1\nnum_eval = 1\n{extra}"
        )
    };
    for (extra, want) in [
        ("[offload]\ndevice = \"tpu\"\n", "offload.device"),
        ("[offload]\ntransfer = \"f8\"\n", "offload.transfer"),
        ("[offload]\nbudget = \"12 parsecs\"\n", "offload.budget"),
        ("[optimizer.zo-sgd]\nq = [4]\n", "q = 1"),
        ("[optimizer.zo-sgd]\nsparsity = [0.5]\n", "sparsity"),
    ] {
        let cfg = write_cfg(tmp.path(), &base(extra));
        let o = zobench(&["validate", "--config", cfg.to_str().unwrap()], tmp.path());
        assert_eq!(o.status.code(), Some(2), "{extra}: {}", text(&o));
        assert!(text(&o).contains(want), "{extra}: {}", text(&o));
    }
    let cfg = write_cfg(
        tmp.path(),
        &base("").replace(
            "runtime = [\"memory\", \"offload\"]",
            "runtime = [\"ofload\"]",
        ),
    );
    let o = zobench(&["validate", "--config", cfg.to_str().unwrap()], tmp.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("did you mean `offload`"), "{}", text(&o));
}
