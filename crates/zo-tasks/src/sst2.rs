//! SST-2 (GLUE): binary sentiment of movie-review sentences. Files `train.tsv` (67,349 rows)
//! and `dev.tsv` (872 rows), TSV with header `label<TAB>sentence`, 0 = negative,
//! 1 = positive. Train and dev splits are sampled from `train.tsv`; `dev.tsv` is the test split
//! (as MeZO and ZO-Bench do). Metric: accuracy.

use crate::{Example, SplitSpec, TaskData, TaskError, sample_test, sample_train_dev};
use std::path::Path;

/// Reads one SST-2 TSV file.
///
/// # Errors
/// [`TaskError::Io`] if unreadable; [`TaskError::Parse`] naming the line for a missing header,
/// a line without a tab (e.g. a truncated file), or a label other than 0/1.
pub fn read_tsv(path: &Path) -> Result<Vec<Example>, TaskError> {
    let text = std::fs::read_to_string(path).map_err(|source| TaskError::Io {
        path: path.into(),
        source,
    })?;
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, h)) if h.starts_with("label\t") => {}
        _ => {
            return Err(TaskError::Parse {
                path: path.into(),
                line: 1,
                msg: "expected a header `label<TAB>sentence` (GLUE SST-2 TSV)".into(),
            });
        }
    }
    let mut out = Vec::new();
    for (i, line) in lines {
        if line.is_empty() {
            continue;
        }
        let Some((a, b)) = line.split_once('\t') else {
            return Err(TaskError::Parse {
                path: path.into(),
                line: i + 1,
                msg: "no tab separator (truncated file?)".into(),
            });
        };
        let (label, sentence) = (a, b);
        let label = match label.trim() {
            "0" => 0,
            "1" => 1,
            other => {
                return Err(TaskError::Parse {
                    path: path.into(),
                    line: i + 1,
                    msg: format!("label `{other}` is not 0 or 1"),
                });
            }
        };
        out.push(Example {
            text: sentence.trim().to_string(),
            text_pair: None,
            label,
        });
    }
    Ok(out)
}

/// Loads `dir/train.tsv` and `dir/dev.tsv` and samples the splits.
///
/// # Errors
/// See [`read_tsv`].
pub fn load(dir: &Path, spec: &SplitSpec) -> Result<TaskData, TaskError> {
    let pool = read_tsv(&dir.join("train.tsv"))?;
    let test = read_tsv(&dir.join("dev.tsv"))?;
    let (train, dev) = sample_train_dev(pool, spec);
    Ok(TaskData {
        name: "sst2".into(),
        label_names: vec!["negative".into(), "positive".into()],
        train,
        dev,
        test: sample_test(test, spec),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn data() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/sst2")
    }

    #[test]
    fn reads_the_real_files() {
        let train = read_tsv(&data().join("train.tsv")).unwrap();
        let dev = read_tsv(&data().join("dev.tsv")).unwrap();
        assert_eq!(train.len(), 67_349);
        assert_eq!(dev.len(), 872);
        let pos = dev.iter().filter(|e| e.label == 1).count();
        assert_eq!(pos, 444, "GLUE SST-2 dev has 444 positive sentences");
        assert_eq!(dev[0].text, "one long string of cliches .");
    }

    #[test]
    fn truncated_file_is_a_named_error() {
        let dir = std::env::temp_dir().join(format!("sst2-trunc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("train.tsv");
        std::fs::write(&p, "label\tsentence\n1\tgood movie\n0\tbad mo").unwrap();
        assert!(read_tsv(&p).is_ok());
        std::fs::write(&p, "label\tsentence\n1\tgood movie\n0").unwrap();
        let e = read_tsv(&p).unwrap_err().to_string();
        assert!(e.contains("train.tsv") && e.contains("line 3"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn sampled_splits_have_requested_sizes() {
        let spec = SplitSpec {
            num_train: 1000,
            num_dev: 500,
            num_eval: 1000,
            data_seed: 0,
        };
        let t = load(&data(), &spec).unwrap();
        assert_eq!(t.counts(), (1000, 500, 872));
    }
}
