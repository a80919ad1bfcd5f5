//! Crash-proof sweeps: `zobench sweep` killed with SIGKILL at arbitrary moments and started
//! again finishes the grid with every finished row intact and each cell recorded once.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn sigkill_at_any_moment_then_resume_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    // Six short cells (bert-tiny, 3 seeds x 2 optimizers) so that kills land before, inside
    // and between cells.
    let cfg = tmp.path().join("kill.toml");
    let body = format!(
        r#"name = "kill"
[grid]
model = ["bert-tiny"]
task = ["sst2"]
scheme = ["head"]
optimizer = ["zo-sgd", "fo-sgd"]
seed = [0, 1, 2]
[settings]
data_dir = {:?}
steps = 300
batch_size = 8
eval_every = 100
num_train = 64
num_dev = 32
num_eval = 64
threads = 1
"#,
        root().join("data").to_str().unwrap()
    );
    std::fs::write(&cfg, body).unwrap();
    let out = tmp.path().join("results");
    let reports = tmp.path().join("reports");
    let run_jobs = |jobs: &str| {
        Command::new(env!("CARGO_BIN_EXE_zobench"))
            .args(["sweep", "--jobs", jobs, "--config"])
            .arg(&cfg)
            .arg("--out")
            .arg(&out)
            .arg("--reports")
            .arg(&reports)
            .current_dir(tmp.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let run = || run_jobs("1");
    let runs = out.join("runs.jsonl");
    let read = || std::fs::read(&runs).unwrap_or_default();
    // Kill after these delays (ms): early (loading), mid-cell, and later; each restart resumes.
    let mut kills = 0;
    for delay_ms in [150u64, 900, 1700, 2600, 400, 3500] {
        let before = read();
        let mut child = run();
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_millis(delay_ms) {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        child.wait().unwrap();
        let after = read();
        assert!(
            after.starts_with(&before),
            "a kill changed rows that were already written"
        );
    }
    assert!(
        kills >= 3,
        "the kills must interrupt running sweeps ({kills})"
    );
    // Simulate a power cut in the middle of a write: a partial last line.
    let mut partial = read();
    partial.extend_from_slice(br#"{"run_id":"torn","sweep":"ki"#);
    std::fs::write(&runs, &partial).unwrap();
    // The final resume runs two cells at a time: one complete line per record still.
    let st = run_jobs("2").wait().unwrap();
    assert!(st.success(), "the final resume finishes the sweep");
    let text = String::from_utf8(read()).unwrap();
    assert!(text.ends_with('\n'));
    let recs: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is a complete record"))
        .collect();
    let mut ids: Vec<&str> = recs
        .iter()
        .filter(|r| r["status"] == "ok")
        .map(|r| r["run_id"].as_str().unwrap())
        .collect();
    ids.sort();
    let n_ok = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), 6, "every cell finished");
    assert_eq!(n_ok, 6, "no finished cell was recomputed");
    // Rows of a killed cell process are never recorded as results: only ok rows exist here,
    // because the sweep dies with SIGKILL before it can append anything else.
    assert!(recs.iter().all(|r| r["status"] == "ok"), "{text}");
}
