//! # zo-tasks — task data, sampling and metrics
//!
//! Tasks follow MeZO / ZO-Bench: `num_train` and `num_dev` examples are drawn disjointly from
//! the task's training file with the data seed, and the test split comes from the public
//! validation file (for SST-2: `dev.tsv`), because the official test labels are hidden.
//! When a request exceeds what a file holds, every available example is used and the real
//! counts are reported in [`TaskData::counts`]; nothing is silently capped.
//!
//! Tasks in this version: [`sst2`] (binary sentiment, accuracy).
#![warn(missing_docs)]

pub mod sst2;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_xoshiro::Xoshiro256PlusPlus;
use std::path::{Path, PathBuf};

/// Names of the tasks this crate can load.
pub const TASKS: &[&str] = &["sst2"];

/// One labelled example in the encoder formulation (text or text pair → class).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// The text (first segment).
    pub text: String,
    /// Optional second segment of a text pair.
    pub text_pair: Option<String>,
    /// Gold class index, `< num_labels`.
    pub label: usize,
}

/// Requested split sizes and the data seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitSpec {
    /// Training examples (drawn from the training file).
    pub num_train: usize,
    /// Development examples (drawn from the training file, disjoint from train).
    pub num_dev: usize,
    /// Test examples (from the validation file; all of it when it holds fewer).
    pub num_eval: usize,
    /// Seed of the sampling.
    pub data_seed: u64,
}

/// The loaded, sampled splits of a task.
#[derive(Debug, Clone)]
pub struct TaskData {
    /// Task name.
    pub name: String,
    /// Class names, index = label.
    pub label_names: Vec<String>,
    /// Training examples.
    pub train: Vec<Example>,
    /// Development examples (model and hyper-parameter selection only).
    pub dev: Vec<Example>,
    /// Test examples (reported, never used for selection).
    pub test: Vec<Example>,
}

impl TaskData {
    /// Number of classes.
    pub fn num_labels(&self) -> usize {
        self.label_names.len()
    }

    /// Real `(train, dev, test)` counts.
    pub fn counts(&self) -> (usize, usize, usize) {
        (self.train.len(), self.dev.len(), self.test.len())
    }
}

/// Errors of task loading. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// A data file is missing or unreadable.
    #[error("cannot read task file `{path}`: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// A line does not parse.
    #[error("`{path}` line {line}: {msg}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        msg: String,
    },
    /// Unknown task name.
    #[error("unknown task `{0}` (known: {known})", known = TASKS.join(", "))]
    Unknown(String),
}

/// Loads task `name` from `data_dir` (the folder holding `sst2/`, …) and samples its splits.
///
/// # Errors
/// [`TaskError::Unknown`], or the file errors of the task's loader.
pub fn load_task(name: &str, data_dir: &Path, spec: &SplitSpec) -> Result<TaskData, TaskError> {
    match name {
        "sst2" => sst2::load(&data_dir.join("sst2"), spec),
        other => Err(TaskError::Unknown(other.into())),
    }
}

/// The data files task `name` reads from `data_dir` (empty for an unknown task).
pub fn task_files(name: &str, data_dir: &Path) -> Vec<PathBuf> {
    match name {
        "sst2" => vec![
            data_dir.join("sst2/train.tsv"),
            data_dir.join("sst2/dev.tsv"),
        ],
        _ => vec![],
    }
}

/// Draws `num_train` then `num_dev` disjoint examples from `pool` after a seeded shuffle.
/// Returns fewer when the pool is smaller (train first).
pub fn sample_train_dev(mut pool: Vec<Example>, spec: &SplitSpec) -> (Vec<Example>, Vec<Example>) {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(spec.data_seed);
    pool.shuffle(&mut rng);
    let n_train = spec.num_train.min(pool.len());
    let dev: Vec<Example> = pool.split_off(n_train);
    let train = pool;
    let dev = dev.into_iter().take(spec.num_dev).collect();
    (train, dev)
}

/// Takes `num_eval` test examples: all of `pool` in file order when it is not larger,
/// otherwise a seeded sample (MeZO samples its evaluation set the same way).
pub fn sample_test(mut pool: Vec<Example>, spec: &SplitSpec) -> Vec<Example> {
    if spec.num_eval >= pool.len() {
        return pool;
    }
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(spec.data_seed ^ 0x7E57);
    pool.shuffle(&mut rng);
    pool.truncate(spec.num_eval);
    pool
}

/// Fraction of `pred[i] == gold[i]`, in [0, 1]; 0 for empty input.
///
/// # Panics
/// If the lengths differ.
pub fn accuracy(pred: &[usize], gold: &[usize]) -> f64 {
    assert_eq!(
        pred.len(),
        gold.len(),
        "accuracy: {} predictions for {} labels",
        pred.len(),
        gold.len()
    );
    if pred.is_empty() {
        return 0.0;
    }
    pred.iter().zip(gold).filter(|(p, g)| p == g).count() as f64 / pred.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: usize) -> Vec<Example> {
        (0..n)
            .map(|i| Example {
                text: format!("t{i}"),
                text_pair: None,
                label: i % 2,
            })
            .collect()
    }

    #[test]
    fn train_and_dev_are_disjoint_and_seeded() {
        let spec = SplitSpec {
            num_train: 30,
            num_dev: 20,
            num_eval: 10,
            data_seed: 3,
        };
        let (tr, dv) = sample_train_dev(pool(100), &spec);
        assert_eq!((tr.len(), dv.len()), (30, 20));
        for d in &dv {
            assert!(!tr.contains(d));
        }
        let (tr2, dv2) = sample_train_dev(pool(100), &spec);
        assert_eq!((tr.clone(), dv.clone()), (tr2, dv2));
        let (tr3, _) = sample_train_dev(
            pool(100),
            &SplitSpec {
                data_seed: 4,
                ..spec
            },
        );
        assert_ne!(tr, tr3);
    }

    #[test]
    fn oversized_requests_use_what_there_is() {
        let spec = SplitSpec {
            num_train: 80,
            num_dev: 50,
            num_eval: 1000,
            data_seed: 0,
        };
        let (tr, dv) = sample_train_dev(pool(100), &spec);
        assert_eq!((tr.len(), dv.len()), (80, 20));
        assert_eq!(sample_test(pool(7), &spec).len(), 7);
    }

    #[test]
    fn accuracy_counts_matches() {
        assert_eq!(accuracy(&[1, 0, 1, 1], &[1, 1, 1, 0]), 0.5);
        assert_eq!(accuracy(&[], &[]), 0.0);
    }
}
