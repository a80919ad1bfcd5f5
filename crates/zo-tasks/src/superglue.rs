//! SuperGLUE tasks in the official JSON-lines schema: BoolQ, CB, COPA, MultiRC, RTE, WiC, WSC.
//!
//! Each task folder holds `train.jsonl` (the 32 FewGLUE training examples), `dev32.jsonl`
//! (32 more from the SuperGLUE train set) and `val.jsonl` (the official validation set). The
//! training pool is `train.jsonl` followed by `dev32.jsonl` (64 examples; MultiRC 321 answer
//! options of 64 questions), from which train and dev are drawn with the data seed; `val.jsonl`
//! is the test split. MultiRC's passages nest questions and answer options; each answer option
//! becomes one [`Item::MultiRc`] and the options of a question are sampled together.
//!
//! Fields read per task (others, e.g. `idx`, WiC's character offsets, are ignored):
//!
//! | task | fields | label |
//! |---|---|---|
//! | boolq | `passage`, `question` | `label`: true / false |
//! | cb | `premise`, `hypothesis` | `label`: entailment / contradiction / neutral |
//! | copa | `premise`, `choice1`, `choice2`, `question` (cause / effect) | `label`: 0 / 1 |
//! | multirc | `passage.text`, `passage.questions[].question`, `….answers[].text` | `….answers[].label`: 0 / 1 |
//! | rte | `premise`, `hypothesis` | `label`: entailment / not_entailment |
//! | wic | `word`, `sentence1`, `sentence2` | `label`: true / false |
//! | wsc | `text`, `target.span1_text`, `target.span2_text` | `label`: true / false |

use crate::sample::{singletons, split_groups, test_groups};
use crate::{CopaQuestion, Item, SplitSpec, Splits, TaskError};
use serde_json::{Map, Value};
use std::path::Path;

/// The files of a SuperGLUE task folder, in reading order.
pub const FILES: &[&str] = &["train.jsonl", "dev32.jsonl", "val.jsonl"];

/// The folder name under `superglue/` of task `name` (`None` if it is not a SuperGLUE task).
pub fn dir_name(name: &str) -> Option<&'static str> {
    Some(match name {
        "boolq" => "BoolQ",
        "cb" => "CB",
        "copa" => "COPA",
        "multirc" => "MultiRC",
        "rte" => "RTE",
        "wic" => "WiC",
        "wsc" => "WSC",
        _ => return None,
    })
}

/// Which task a JSON row's keys (and label) look like, for error messages.
pub(crate) fn guess_schema(obj: &Map<String, Value>) -> Option<&'static str> {
    let has = |k: &str| obj.contains_key(k);
    Some(if has("passage") && obj["passage"].is_object() {
        "multirc"
    } else if has("choice1") {
        "copa"
    } else if has("option1") {
        "winogrande"
    } else if has("word") && has("sentence1") {
        "wic"
    } else if has("target") && has("text") {
        "wsc"
    } else if has("premise") && has("hypothesis") {
        match obj.get("label").and_then(Value::as_str) {
            Some("not_entailment") => "rte",
            Some("contradiction" | "neutral") => "cb",
            _ => return None,
        }
    } else if has("passage") && has("question") {
        "boolq"
    } else if has("sentence") {
        "sst2"
    } else {
        return None;
    })
}

/// One parsed JSON row with its location, for field access with named errors.
pub(crate) struct Row<'a> {
    pub path: &'a Path,
    pub line: usize,
    pub task: &'a str,
    pub root: &'a Map<String, Value>,
}

impl Row<'_> {
    /// An error about `field` of this row; when the row looks like another task's, says so.
    pub fn err(&self, field: &str, msg: impl Into<String>) -> TaskError {
        let mut msg = msg.into();
        if let Some(other) = guess_schema(self.root)
            && other != self.task
        {
            msg.push_str(&format!(
                " (this row looks like a `{other}` row, not `{}`)",
                self.task
            ));
        }
        TaskError::Field {
            path: self.path.into(),
            line: self.line,
            field: field.into(),
            msg,
        }
    }

    /// `obj[key]` at JSON path `at`, or a "missing" error.
    pub fn get<'v>(
        &self,
        obj: &'v Map<String, Value>,
        key: &str,
        at: &str,
    ) -> Result<&'v Value, TaskError> {
        obj.get(key)
            .filter(|v| !v.is_null())
            .ok_or_else(|| self.err(at, "missing"))
    }

    /// A non-empty string field.
    pub fn string(
        &self,
        obj: &Map<String, Value>,
        key: &str,
        at: &str,
    ) -> Result<String, TaskError> {
        match self.get(obj, key, at)? {
            Value::String(s) if !s.trim().is_empty() => Ok(s.clone()),
            Value::String(_) => Err(self.err(at, "empty string")),
            other => Err(self.err(at, format!("expected a string, got `{other}`"))),
        }
    }

    /// An object field.
    pub fn object<'v>(
        &self,
        obj: &'v Map<String, Value>,
        key: &str,
        at: &str,
    ) -> Result<&'v Map<String, Value>, TaskError> {
        match self.get(obj, key, at)? {
            Value::Object(m) => Ok(m),
            other => Err(self.err(at, format!("expected an object, got `{other}`"))),
        }
    }

    /// A non-empty array field.
    pub fn array<'v>(
        &self,
        obj: &'v Map<String, Value>,
        key: &str,
        at: &str,
    ) -> Result<&'v [Value], TaskError> {
        match self.get(obj, key, at)? {
            Value::Array(a) if !a.is_empty() => Ok(a),
            Value::Array(_) => Err(self.err(at, "empty list")),
            other => Err(self.err(at, format!("expected a list, got `{other}`"))),
        }
    }

    /// A label field mapped through `known` (JSON value → index); unknown values are an
    /// error listing the known ones.
    pub fn label(
        &self,
        obj: &Map<String, Value>,
        key: &str,
        at: &str,
        known: &[(Value, usize)],
    ) -> Result<usize, TaskError> {
        let v = self.get(obj, key, at)?;
        known
            .iter()
            .find(|(k, _)| k == v)
            .map(|(_, i)| *i)
            .ok_or_else(|| {
                let names: Vec<String> = known.iter().map(|(k, _)| k.to_string()).collect();
                self.err(
                    at,
                    format!("unknown label `{v}` (expected one of {})", names.join(", ")),
                )
            })
    }
}

/// Calls `f` on every non-blank line of a JSON-lines file, parsed as an object, with its
/// 1-based line number.
///
/// # Errors
/// [`TaskError::Io`], [`TaskError::Parse`] for a line that is not a JSON object,
/// [`TaskError::Empty`] for a file without rows, and whatever `f` returns.
pub(crate) fn for_each_row(
    path: &Path,
    mut f: impl FnMut(usize, &Map<String, Value>) -> Result<(), TaskError>,
) -> Result<(), TaskError> {
    let text = std::fs::read_to_string(path).map_err(|source| TaskError::Io {
        path: path.into(),
        source,
    })?;
    let mut rows = 0;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parse_err = |msg: String| TaskError::Parse {
            path: path.into(),
            line: i + 1,
            msg,
        };
        let v: Value = serde_json::from_str(line)
            .map_err(|e| parse_err(format!("not a JSON line ({e}); truncated file?")))?;
        let Value::Object(obj) = v else {
            return Err(parse_err("expected a JSON object".into()));
        };
        f(i + 1, &obj)?;
        rows += 1;
    }
    if rows == 0 {
        return Err(TaskError::Empty {
            path: path.into(),
            what: "JSON rows".into(),
        });
    }
    Ok(())
}

fn b(x: bool) -> Value {
    Value::Bool(x)
}
fn s(x: &str) -> Value {
    Value::String(x.into())
}
fn n(x: u64) -> Value {
    Value::from(x)
}

/// Reads every row of one file of SuperGLUE task `task`, in file order. MultiRC question ids
/// start at `first_qid`; returns the items and the next free question id.
fn read_from(task: &str, path: &Path, first_qid: usize) -> Result<(Vec<Item>, usize), TaskError> {
    let mut out = Vec::new();
    let mut qid = first_qid;
    for_each_row(path, |line, root| {
        let r = Row {
            path,
            line,
            task,
            root,
        };
        match task {
            "boolq" => out.push(Item::BoolQ {
                passage: r.string(root, "passage", "passage")?,
                question: r.string(root, "question", "question")?,
                label: r.label(root, "label", "label", &[(b(true), 0), (b(false), 1)])?,
            }),
            "cb" => out.push(Item::Cb {
                premise: r.string(root, "premise", "premise")?,
                hypothesis: r.string(root, "hypothesis", "hypothesis")?,
                label: r.label(
                    root,
                    "label",
                    "label",
                    &[
                        (s("entailment"), 0),
                        (s("contradiction"), 1),
                        (s("neutral"), 2),
                    ],
                )?,
            }),
            "rte" => out.push(Item::Rte {
                premise: r.string(root, "premise", "premise")?,
                hypothesis: r.string(root, "hypothesis", "hypothesis")?,
                label: r.label(
                    root,
                    "label",
                    "label",
                    &[(s("entailment"), 0), (s("not_entailment"), 1)],
                )?,
            }),
            "copa" => {
                let question = match r.string(root, "question", "question")?.as_str() {
                    "cause" => CopaQuestion::Cause,
                    "effect" => CopaQuestion::Effect,
                    other => {
                        return Err(r.err(
                            "question",
                            format!("unknown value `{other}` (expected cause or effect)"),
                        ));
                    }
                };
                out.push(Item::Copa {
                    premise: r.string(root, "premise", "premise")?,
                    choice1: r.string(root, "choice1", "choice1")?,
                    choice2: r.string(root, "choice2", "choice2")?,
                    question,
                    label: r.label(root, "label", "label", &[(n(0), 0), (n(1), 1)])?,
                });
            }
            "wic" => out.push(Item::Wic {
                word: r.string(root, "word", "word")?,
                sentence1: r.string(root, "sentence1", "sentence1")?,
                sentence2: r.string(root, "sentence2", "sentence2")?,
                label: r.label(root, "label", "label", &[(b(false), 0), (b(true), 1)])?,
            }),
            "wsc" => {
                let target = r.object(root, "target", "target")?;
                out.push(Item::Wsc {
                    text: r.string(root, "text", "text")?,
                    span1: r.string(target, "span1_text", "target.span1_text")?,
                    span2: r.string(target, "span2_text", "target.span2_text")?,
                    label: r.label(root, "label", "label", &[(b(false), 0), (b(true), 1)])?,
                });
            }
            "multirc" => {
                let passage = r.object(root, "passage", "passage")?;
                let paragraph = r.string(passage, "text", "passage.text")?;
                let questions = r.array(passage, "questions", "passage.questions")?;
                for (qi, q) in questions.iter().enumerate() {
                    let at = format!("passage.questions[{qi}]");
                    let Value::Object(q) = q else {
                        return Err(r.err(&at, "expected an object"));
                    };
                    let question = r.string(q, "question", &format!("{at}.question"))?;
                    let answers = r.array(q, "answers", &format!("{at}.answers"))?;
                    for (ai, a) in answers.iter().enumerate() {
                        let at = format!("{at}.answers[{ai}]");
                        let Value::Object(a) = a else {
                            return Err(r.err(&at, "expected an object"));
                        };
                        out.push(Item::MultiRc {
                            paragraph: paragraph.clone(),
                            question: question.clone(),
                            answer: r.string(a, "text", &format!("{at}.text"))?,
                            label: r.label(
                                a,
                                "label",
                                &format!("{at}.label"),
                                &[(n(0), 0), (n(1), 1)],
                            )?,
                            question_id: qid,
                        });
                    }
                    qid += 1;
                }
            }
            other => return Err(TaskError::Unknown(other.into())),
        }
        Ok(())
    })?;
    Ok((out, qid))
}

/// Reads every row of one file of SuperGLUE task `task` (`boolq`, `cb`, `copa`, `multirc`,
/// `rte`, `wic`, `wsc`), in file order; MultiRC is flattened to answer options, with question
/// ids numbered from 0 in file order.
///
/// # Errors
/// [`TaskError::Io`], [`TaskError::Empty`], [`TaskError::Parse`] (not JSON),
/// [`TaskError::Field`] (missing or ill-typed field, unknown label; names the line and the
/// field, and the task the row looks like when it is another task's schema),
/// [`TaskError::Unknown`].
pub fn read_items(task: &str, path: &Path) -> Result<Vec<Item>, TaskError> {
    read_from(task, path, 0).map(|(v, _)| v)
}

/// Groups consecutive MultiRC items of the same question; singletons for other tasks.
pub(crate) fn units(items: Vec<Item>) -> Vec<Vec<Item>> {
    if !matches!(items.first(), Some(Item::MultiRc { .. })) {
        return singletons(items);
    }
    let mut out: Vec<Vec<Item>> = Vec::new();
    for it in items {
        match out.last_mut() {
            Some(g) if g[0].question_id() == it.question_id() => g.push(it),
            _ => out.push(vec![it]),
        }
    }
    out
}

/// Loads SuperGLUE task `task` from its folder `dir` and samples the splits: train and dev
/// from `train.jsonl` + `dev32.jsonl`, test from `val.jsonl`.
///
/// # Errors
/// See [`read_items`].
pub fn load_splits(task: &str, dir: &Path, spec: &SplitSpec) -> Result<Splits, TaskError> {
    let (mut pool, next) = read_from(task, &dir.join(FILES[0]), 0)?;
    let (more, next) = read_from(task, &dir.join(FILES[1]), next)?;
    pool.extend(more);
    let (test, _) = read_from(task, &dir.join(FILES[2]), next)?;
    let (pool_train, pool_test) = (pool.len(), test.len());
    let (train, dev) = split_groups(units(pool), spec);
    Ok(Splits {
        name: task.into(),
        train,
        dev,
        test: test_groups(units(test), spec),
        requested: *spec,
        pool_train,
        pool_test,
    })
}
