//! # zo-tasks — task data, sampling, prompts and metrics
//!
//! Pure data and text: this crate reads the task files, samples the splits, renders every
//! example in two formulations and scores predictions. It never tokenizes and knows no model.
//!
//! ## Tasks
//!
//! [`TASKS`]: `sst2` (GLUE SST-2), `copa`, `winogrande`, `multirc`, `boolq`, `rte`, `cb`, `wic`,
//! `wsc` (SuperGLUE, official JSON-lines schema; WinoGrande twin pairs). [`task_files`] names
//! the files of each; `data/README.md` gives their provenance and row counts.
//!
//! ## Splits (MeZO / ZO-Bench)
//!
//! `num_train` and `num_dev` examples are drawn disjointly, with the data seed, from the task's
//! training pool; the test split comes from the public validation file, because official test
//! labels are hidden:
//!
//! | task | training pool | test split |
//! |---|---|---|
//! | `sst2` | `train.tsv` | `dev.tsv` |
//! | SuperGLUE | `train.jsonl` ∪ `dev32.jsonl` (both drawn from the SuperGLUE train set) | `val.jsonl` |
//! | `winogrande` | `object.jsonl` minus the test pairs | a fixed (seed-independent) set of whole twin pairs of `object.jsonl` |
//!
//! The sampling unit is one example, except for MultiRC (a question with all its answer
//! options, so F1a and per-question exact match stay computable) and WinoGrande (a twin pair,
//! so twins never straddle two splits). Budgets count examples (MultiRC: answer options, as
//! MeZO's flattened rows); whole units are taken while they fit. When the pool cannot hold
//! `num_train + num_dev`, the dev split gets `min(num_dev, pool / 2)` — MeZO's rule of keeping
//! the dev set (COPA: 300 train / 100 dev of 400), with a floor so train never goes empty —
//! and train gets the rest. Every shortfall is visible: [`Splits::counts`] /
//! [`TaskData::counts`] give the real sizes and [`Splits::shortfall`] says what was asked for.
//! [`default_split`] gives MeZO's per-task request (1000 / 500 / 1000; CB and COPA dev 100;
//! WinoGrande dev 100 as ZO-Bench).
//!
//! ## Two formulations
//!
//! * **Encoder** ([`Example`]: text, optional text pair, class label) — [`load_task`] /
//!   [`Splits::task_data`]; see [`Item::example`] for the per-task mapping.
//! * **Causal LM** ([`Prompted`]: one context, candidate continuations, gold index) —
//!   [`render`] with a named template ([`templates`]; `mezo` default, `none` for the
//!   task-alignment ablation), the training loss kind [`loss_kind`], and in-context
//!   demonstrations [`few_shot`]. See the [`prompt`] module for the templates and the
//!   tokenization contract (left truncation of the context, candidates never truncated).
//! * **Masked-LM prompt** ([`MlmPrompted`]: prompt parts with one mask, a verbaliser word per
//!   class) — [`render_mlm`], template `mlm`, MeZO's RoBERTa (LM-BFF) prompts for encoders with
//!   an MLM head; see the [`mlm`] module.
//!
//! For every task and template, `Example::label == Prompted::gold` for the same item, so one
//! metric function ([`evaluate`]) scores both formulations.
//!
//! ## Metrics
//!
//! [`evaluate`] returns SuperGLUE's metrics: accuracy everywhere, CB macro-F1 as well, MultiRC
//! F1 over all answer options (`f1a`) and exact match per question (`em`), with a primary
//! metric per task ([`primary_metric`]).
//!
//! ## Errors
//!
//! Every bad input is a [`TaskError`] naming the file, and for a bad row its 1-based line and
//! the field (a missing field, an unknown label, a row of another task's schema); an empty file
//! is [`TaskError::Empty`].
#![warn(missing_docs)]

mod item;
pub mod metrics;
pub mod mlm;
pub mod prompt;
mod sample;
pub mod sst2;
pub mod superglue;
pub mod winogrande;

pub use item::{CopaQuestion, Item};
pub use metrics::{Metrics, accuracy, evaluate, macro_f1, multirc_f1a_em, primary_metric};
pub use mlm::{MLM_TASKS, MLM_TEMPLATE, MlmPart, MlmPrompted, mlm_verbalizer, render_mlm};
pub use prompt::{LossKind, Prompted, few_shot, loss_kind, render, templates};
pub use sample::{default_split, sample_test, sample_train_dev};

use std::path::{Path, PathBuf};

/// Names of the tasks this crate can load.
pub const TASKS: &[&str] = &[
    "sst2",
    "copa",
    "winogrande",
    "multirc",
    "boolq",
    "rte",
    "cb",
    "wic",
    "wsc",
];

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
    /// Training examples (drawn from the training pool).
    pub num_train: usize,
    /// Development examples (drawn from the training pool, disjoint from train).
    pub num_dev: usize,
    /// Test examples (from the validation file; all of it when it holds fewer).
    pub num_eval: usize,
    /// Seed of the sampling.
    pub data_seed: u64,
}

/// The loaded, sampled splits of a task in the encoder formulation.
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

/// Which of the three splits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Split {
    /// Training split.
    Train,
    /// Development split (selection only).
    Dev,
    /// Test split (reported only).
    Test,
}

/// The loaded, sampled splits of a task as typed records ([`Item`]), from which both
/// formulations are rendered.
#[derive(Debug, Clone)]
pub struct Splits {
    /// Task name (one of [`TASKS`]).
    pub name: String,
    /// Training items.
    pub train: Vec<Item>,
    /// Development items (disjoint from train; whole MultiRC questions / WinoGrande pairs).
    pub dev: Vec<Item>,
    /// Test items.
    pub test: Vec<Item>,
    /// What was asked for.
    pub requested: SplitSpec,
    /// Examples in the training pool the train and dev splits were drawn from.
    pub pool_train: usize,
    /// Examples in the pool the test split was drawn from.
    pub pool_test: usize,
}

impl Splits {
    /// Real `(train, dev, test)` counts.
    pub fn counts(&self) -> (usize, usize, usize) {
        (self.train.len(), self.dev.len(), self.test.len())
    }

    /// The items of one split.
    pub fn split(&self, which: Split) -> &[Item] {
        match which {
            Split::Train => &self.train,
            Split::Dev => &self.dev,
            Split::Test => &self.test,
        }
    }

    /// `None` when every split got what was requested; otherwise a one-line note with the
    /// requested and real counts and the pool sizes (to be logged with the run).
    pub fn shortfall(&self) -> Option<String> {
        let (tr, dv, te) = self.counts();
        let r = &self.requested;
        if tr == r.num_train && dv == r.num_dev && te == r.num_eval {
            return None;
        }
        Some(format!(
            "task `{}`: requested {}/{}/{} train/dev/test examples, got {tr}/{dv}/{te} \
             (training pool {}, test pool {})",
            self.name, r.num_train, r.num_dev, r.num_eval, self.pool_train, self.pool_test
        ))
    }

    /// The encoder formulation of all three splits.
    pub fn task_data(&self) -> TaskData {
        let conv = |v: &[Item]| v.iter().map(Item::example).collect::<Vec<_>>();
        TaskData {
            name: self.name.clone(),
            label_names: label_names(&self.name)
                .unwrap_or(&[])
                .iter()
                .map(|s| s.to_string())
                .collect(),
            train: conv(&self.train),
            dev: conv(&self.dev),
            test: conv(&self.test),
        }
    }

    /// The causal-LM formulation of one split with template `template`.
    ///
    /// # Errors
    /// [`TaskError::UnknownTemplate`], or a row the template cannot render.
    pub fn prompted(&self, which: Split, template: &str) -> Result<Vec<Prompted>, TaskError> {
        self.split(which)
            .iter()
            .map(|it| render(it, template))
            .collect()
    }

    /// The causal-LM formulation of one split with `k` in-context demonstrations from the
    /// train split (MeZO's ICL baseline; see [`few_shot`]): the same `k` demonstrations, drawn
    /// with `seed`, for every item. With `which == Split::Train` an item may see itself as a
    /// demonstration; evaluate on dev or test.
    ///
    /// # Errors
    /// [`TaskError::UnknownTemplate`].
    pub fn prompted_few_shot(
        &self,
        which: Split,
        template: &str,
        k: usize,
        seed: u64,
    ) -> Result<Vec<Prompted>, TaskError> {
        self.split(which)
            .iter()
            .map(|it| few_shot(&self.train, k, seed, it, template))
            .collect()
    }

    /// The masked-LM prompt formulation (template `mlm`) of one split; see [`render_mlm`].
    ///
    /// # Errors
    /// [`TaskError::NoMlmTemplate`] for a task without one (COPA, WinoGrande).
    pub fn mlm_prompted(&self, which: Split) -> Result<Vec<MlmPrompted>, TaskError> {
        self.split(which).iter().map(render_mlm).collect()
    }

    /// Per-example question ids of one split (MultiRC only; `None` for other tasks): the
    /// third argument of [`evaluate`].
    pub fn question_ids(&self, which: Split) -> Option<Vec<usize>> {
        self.split(which).iter().map(Item::question_id).collect()
    }
}

/// Errors of task loading, rendering and scoring. Every file error names the file.
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
    /// A line does not parse (e.g. not JSON, no tab separator).
    #[error("`{path}` line {line}: {msg}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        msg: String,
    },
    /// A field of a row is missing, of the wrong type, or holds an unknown label.
    #[error("`{path}` line {line}, field `{field}`: {msg}")]
    Field {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The field (a JSON path such as `passage.questions[2].answers[0].label`).
        field: String,
        /// What is wrong (for a row of another task's schema, which task it looks like).
        msg: String,
    },
    /// A data file holds no example.
    #[error("`{path}` line 1: the file is empty (no {what})")]
    Empty {
        /// The file.
        path: PathBuf,
        /// What it should hold.
        what: String,
    },
    /// Unknown task name.
    #[error("unknown task `{0}` (known: {known})", known = TASKS.join(", "))]
    Unknown(String),
    /// Unknown template name for a task.
    #[error("unknown template `{template}` for task `{task}` (known: {known})", known = known.join(", "))]
    UnknownTemplate {
        /// The task.
        task: String,
        /// The requested template.
        template: String,
        /// The templates the task has.
        known: Vec<&'static str>,
    },
    /// A task without a masked-LM prompt (template `mlm`).
    #[error(
        "task `{0}` has no `mlm` template: its options are free text that one mask token cannot score (tasks with one: {tasks})",
        tasks = MLM_TASKS.join(", ")
    )]
    NoMlmTemplate(String),
    /// The `mlm` template asked for as a causal-LM prompt.
    #[error(
        "template `mlm` of task `{0}` is the masked-LM prompt of encoders with an MLM head, not a causal-LM prompt (causal-LM templates: mezo, none)"
    )]
    NotCausalTemplate(String),
    /// In-context demonstrations of another task than the query.
    #[error("few-shot demonstrations of task `{demo}` for a query of task `{query}`")]
    MixedTasks {
        /// The query's task.
        query: &'static str,
        /// The offending demonstration's task.
        demo: &'static str,
    },
    /// Predictions, gold labels or question ids that do not fit together.
    #[error("metric input for task `{task}`: {msg}")]
    Metric {
        /// The task.
        task: String,
        /// What is wrong.
        msg: String,
    },
}

/// Class names of task `name`, index = label = [`Prompted::gold`] (for multiple-choice tasks:
/// the option index).
///
/// # Errors
/// [`TaskError::Unknown`].
pub fn label_names(name: &str) -> Result<&'static [&'static str], TaskError> {
    Ok(match name {
        "sst2" => &["negative", "positive"],
        "copa" => &["choice1", "choice2"],
        "winogrande" => &["option1", "option2"],
        "multirc" => &["false", "true"],
        "boolq" => &["yes", "no"],
        "rte" => &["entailment", "not_entailment"],
        "cb" => &["entailment", "contradiction", "neutral"],
        "wic" => &["false", "true"],
        "wsc" => &["false", "true"],
        other => return Err(TaskError::Unknown(other.into())),
    })
}

/// Loads task `name` from `data_dir` (the folder holding `sst2/`, `superglue/`,
/// `winogrande/`) and samples its splits as typed records.
///
/// # Errors
/// [`TaskError::Unknown`], or the file errors of the task's reader.
pub fn load_splits(name: &str, data_dir: &Path, spec: &SplitSpec) -> Result<Splits, TaskError> {
    match name {
        "sst2" => sst2::load_splits(&data_dir.join("sst2"), spec),
        "winogrande" => winogrande::load_splits(&data_dir.join("winogrande"), spec),
        other => match superglue::dir_name(other) {
            Some(d) => superglue::load_splits(other, &data_dir.join("superglue").join(d), spec),
            None => Err(TaskError::Unknown(other.into())),
        },
    }
}

/// Loads task `name` from `data_dir` and samples its splits, in the encoder formulation.
///
/// # Errors
/// [`TaskError::Unknown`], or the file errors of the task's reader.
pub fn load_task(name: &str, data_dir: &Path, spec: &SplitSpec) -> Result<TaskData, TaskError> {
    load_splits(name, data_dir, spec).map(|s| s.task_data())
}

/// The data files task `name` reads from `data_dir` (empty for an unknown task).
pub fn task_files(name: &str, data_dir: &Path) -> Vec<PathBuf> {
    match name {
        "sst2" => vec![
            data_dir.join("sst2/train.tsv"),
            data_dir.join("sst2/dev.tsv"),
        ],
        "winogrande" => vec![data_dir.join("winogrande/object.jsonl")],
        other => match superglue::dir_name(other) {
            Some(d) => superglue::FILES
                .iter()
                .map(|f| data_dir.join("superglue").join(d).join(f))
                .collect(),
            None => vec![],
        },
    }
}

/// Reads every row of one data file of task `name` (no sampling), in file order.
///
/// # Errors
/// [`TaskError::Unknown`], or the file errors of the task's reader.
pub fn read_file(name: &str, path: &Path) -> Result<Vec<Item>, TaskError> {
    match name {
        "sst2" => sst2::read_items(path),
        "winogrande" => winogrande::read_items(path),
        other if superglue::dir_name(other).is_some() => superglue::read_items(other, path),
        other => Err(TaskError::Unknown(other.into())),
    }
}
