//! SST-2 (GLUE): binary sentiment of movie-review sentences. Files `train.tsv` (67,349 rows)
//! and `dev.tsv` (872 rows), TSV with header `label<TAB>sentence`, 0 = negative,
//! 1 = positive. Train and dev splits are sampled from `train.tsv`; `dev.tsv` is the test split
//! (as MeZO and ZO-Bench do). Metric: accuracy. (`dev.tsv`'s header names the text column
//! `content`; only the `label<TAB>` prefix of the header is checked.)

use crate::sample::{singletons, split_groups, test_groups};
use crate::{Example, Item, SplitSpec, Splits, TaskData, TaskError};
use std::path::Path;

/// Reads one SST-2 TSV file as typed records.
///
/// # Errors
/// [`TaskError::Io`] if unreadable; [`TaskError::Empty`] for a file without data rows;
/// [`TaskError::Field`] naming the line and field for a missing header (field `header`, e.g.
/// a JSON-lines file of another task), a line without a tab (field `sentence`, e.g. a
/// truncated file), or a label other than 0/1 (field `label`).
pub fn read_items(path: &Path) -> Result<Vec<Item>, TaskError> {
    let text = std::fs::read_to_string(path).map_err(|source| TaskError::Io {
        path: path.into(),
        source,
    })?;
    let field = |line: usize, field: &str, msg: String| TaskError::Field {
        path: path.into(),
        line,
        field: field.into(),
        msg,
    };
    let mut lines = text.lines().enumerate();
    match lines.next() {
        None => {
            return Err(TaskError::Empty {
                path: path.into(),
                what: "header or rows".into(),
            });
        }
        Some((_, h)) if h.starts_with("label\t") => {}
        Some(_) => {
            return Err(field(
                1,
                "header",
                "expected a header `label<TAB>sentence` (GLUE SST-2 TSV)".into(),
            ));
        }
    }
    let mut out = Vec::new();
    for (i, line) in lines {
        if line.is_empty() {
            continue;
        }
        let Some((label, sentence)) = line.split_once('\t') else {
            return Err(field(
                i + 1,
                "sentence",
                "missing: no tab separator (truncated file?)".into(),
            ));
        };
        let label = match label.trim() {
            "0" => 0,
            "1" => 1,
            other => {
                return Err(field(
                    i + 1,
                    "label",
                    format!("unknown label `{other}` (expected 0 or 1)"),
                ));
            }
        };
        let sentence = sentence.trim();
        if sentence.is_empty() {
            return Err(field(i + 1, "sentence", "empty".into()));
        }
        out.push(Item::Sst2 {
            sentence: sentence.to_string(),
            label,
        });
    }
    if out.is_empty() {
        return Err(TaskError::Empty {
            path: path.into(),
            what: "data rows after the header".into(),
        });
    }
    Ok(out)
}

/// Reads one SST-2 TSV file in the encoder formulation.
///
/// # Errors
/// See [`read_items`].
pub fn read_tsv(path: &Path) -> Result<Vec<Example>, TaskError> {
    Ok(read_items(path)?.iter().map(Item::example).collect())
}

/// Loads `dir/train.tsv` (training pool) and `dir/dev.tsv` (test split) and samples the
/// splits as typed records.
///
/// # Errors
/// See [`read_items`].
pub fn load_splits(dir: &Path, spec: &SplitSpec) -> Result<Splits, TaskError> {
    let pool = read_items(&dir.join("train.tsv"))?;
    let test = read_items(&dir.join("dev.tsv"))?;
    let (pool_train, pool_test) = (pool.len(), test.len());
    let (train, dev) = split_groups(singletons(pool), spec);
    Ok(Splits {
        name: "sst2".into(),
        train,
        dev,
        test: test_groups(singletons(test), spec),
        requested: *spec,
        pool_train,
        pool_test,
    })
}

/// Loads `dir/train.tsv` and `dir/dev.tsv` and samples the splits (encoder formulation).
///
/// # Errors
/// See [`read_items`].
pub fn load(dir: &Path, spec: &SplitSpec) -> Result<TaskData, TaskError> {
    load_splits(dir, spec).map(|s| s.task_data())
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
