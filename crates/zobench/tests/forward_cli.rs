//! `zobench forward` on every tiny fixture (HF float64 references, ≤ 1e-4 at real positions)
//! and its bad-input exit codes.

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn zobench(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_zobench"))
        .args(args)
        .output()
        .expect("run zobench")
}

fn max_err(r: &Value, o: &Value, key: &str, mask: &Value) -> f64 {
    let mut err: f64 = 0.0;
    for (b, row) in r[key].as_array().unwrap().iter().enumerate() {
        for (t, v) in row.as_array().unwrap().iter().enumerate() {
            if mask[b][t] != 1 {
                continue;
            }
            for (x, y) in v
                .as_array()
                .unwrap()
                .iter()
                .zip(o[key][b][t].as_array().unwrap())
            {
                err = err.max((x.as_f64().unwrap() - y.as_f64().unwrap()).abs());
            }
        }
    }
    err
}

#[test]
fn forward_matches_every_fixture() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = root().join("fixtures/models");
    let mut seen = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let m = e.unwrap().path();
        let refp = m.join("reference.json");
        let out = tmp.path().join("out.json");
        let o = zobench(&[
            "forward",
            "--model",
            m.to_str().unwrap(),
            "--input",
            refp.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(
            o.status.success(),
            "{}: {}",
            m.display(),
            String::from_utf8_lossy(&o.stderr)
        );
        let r: Value = serde_json::from_str(&std::fs::read_to_string(&refp).unwrap()).unwrap();
        let got: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
        let key = if r.get("logits").is_some() {
            "logits"
        } else {
            "last_hidden_state"
        };
        let err = max_err(&r, &got, key, &r["attention_mask"]);
        assert!(err < 1e-4, "{}: {key} max abs error {err}", m.display());
        if let Some(p) = r.get("pooler_output") {
            let e = p
                .as_array()
                .unwrap()
                .iter()
                .zip(got["pooler_output"].as_array().unwrap())
                .flat_map(|(a, b)| {
                    a.as_array()
                        .unwrap()
                        .iter()
                        .zip(b.as_array().unwrap())
                        .map(|(x, y)| (x.as_f64().unwrap() - y.as_f64().unwrap()).abs())
                        .collect::<Vec<_>>()
                })
                .fold(0.0, f64::max);
            assert!(e < 1e-4, "{}: pooler_output {e}", m.display());
        }
        seen += 1;
    }
    assert!(seen >= 6, "fixtures found: {seen}");
}

#[test]
fn bad_inputs_exit_2_with_the_file_and_key() {
    let tmp = tempfile::tempdir().unwrap();
    let m = root().join("fixtures/models/llama-tiny");
    let case = |body: &str| {
        let p = tmp.path().join("in.json");
        std::fs::write(&p, body).unwrap();
        let o = zobench(&[
            "forward",
            "--model",
            m.to_str().unwrap(),
            "--input",
            p.to_str().unwrap(),
        ]);
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (c, e) = case("{\"input_ids\": [[1, 2, 3], [4, 5]]}");
    assert_eq!(c, Some(2), "{e}");
    assert!(e.contains("in.json") && e.contains("input_ids"), "{e}");
    let (c, e) = case("{\"input_ids\": [[1, 2, 99999]]}");
    assert_eq!(c, Some(2), "{e}");
    assert!(e.contains("99999"), "{e}");
    let (c, e) = case("{\"input_ids\": [[1, 2]], \"attention_mask\": [[1]]}");
    assert_eq!(c, Some(2), "{e}");
    assert!(e.contains("attention_mask"), "{e}");
    let (c, e) = case("not json");
    assert_eq!(c, Some(2), "{e}");
    let (c, e) = case("{\"ids\": [[1]]}");
    assert_eq!(c, Some(2), "{e}");
    assert!(e.contains("input_ids"), "{e}");
    // A model folder with an unsupported model_type.
    let bad = tmp.path().join("bad-model");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("config.json"), "{\"model_type\": \"t5\"}").unwrap();
    let p = tmp.path().join("ok.json");
    std::fs::write(&p, "{\"input_ids\": [[1, 2]]}").unwrap();
    let o = zobench(&[
        "forward",
        "--model",
        bad.to_str().unwrap(),
        "--input",
        p.to_str().unwrap(),
    ]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains("t5") && e.contains("config.json"), "{e}");
}
