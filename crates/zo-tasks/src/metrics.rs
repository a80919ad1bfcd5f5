//! Metrics as SuperGLUE defines them.
//!
//! | task | metrics (name) | primary |
//! |---|---|---|
//! | every task | accuracy (`acc`) | `acc`, except MultiRC |
//! | cb | + macro-F1 over the classes present in gold or predictions (`f1_macro`), their mean (`acc_and_f1`, SuperGLUE's CB score) | `acc` (as MeZO reports CB) |
//! | multirc | + F1 of the positive class over all answer options (`f1a`), exact match per question (`em`) | `f1a` |
//!
//! `acc` for MultiRC is per answer option (what MeZO reports as MultiRC accuracy). Values are
//! fractions in [0, 1]. Predictions and gold are class indices (= candidate indices of
//! [`crate::Prompted`]; MultiRC: 1 = the answer option is correct).

use crate::TaskError;
use std::collections::{BTreeMap, BTreeSet};

/// Named metric values of one evaluation, with the task's primary metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    /// Name of the primary metric (a key of `values`).
    pub primary: &'static str,
    /// Every metric, by name.
    pub values: BTreeMap<&'static str, f64>,
}

impl Metrics {
    /// The value of the primary metric.
    pub fn primary_value(&self) -> f64 {
        self.values[self.primary]
    }

    /// The value of metric `name`, if computed.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.values.get(name).copied()
    }
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

/// F1 of one class from counts (0 when precision and recall are both undefined or zero).
fn f1(tp: usize, fp: usize, fn_: usize) -> f64 {
    if tp == 0 {
        return 0.0;
    }
    let p = tp as f64 / (tp + fp) as f64;
    let r = tp as f64 / (tp + fn_) as f64;
    2.0 * p * r / (p + r)
}

/// Macro-F1: the unweighted mean of the per-class F1 over the classes that occur in `gold`
/// or `pred` (scikit-learn's `f1_score(average="macro")`, which SuperGLUE's CB uses); 0 for
/// empty input.
///
/// # Panics
/// If the lengths differ.
pub fn macro_f1(pred: &[usize], gold: &[usize]) -> f64 {
    assert_eq!(pred.len(), gold.len(), "macro_f1: lengths differ");
    let classes: BTreeSet<usize> = pred.iter().chain(gold).copied().collect();
    if classes.is_empty() {
        return 0.0;
    }
    let sum: f64 = classes
        .iter()
        .map(|&c| {
            let tp = pred
                .iter()
                .zip(gold)
                .filter(|&(&p, &g)| p == c && g == c)
                .count();
            let fp = pred
                .iter()
                .zip(gold)
                .filter(|&(&p, &g)| p == c && g != c)
                .count();
            let fn_ = pred
                .iter()
                .zip(gold)
                .filter(|&(&p, &g)| p != c && g == c)
                .count();
            f1(tp, fp, fn_)
        })
        .sum();
    sum / classes.len() as f64
}

/// MultiRC's `(f1a, em)`: F1 of the positive class (label 1) over all answer options, and the
/// fraction of questions (by `question_ids`) whose options are all predicted correctly.
/// `(0, 0)` for empty input.
///
/// # Panics
/// If the lengths differ.
pub fn multirc_f1a_em(pred: &[usize], gold: &[usize], question_ids: &[usize]) -> (f64, f64) {
    assert!(
        pred.len() == gold.len() && gold.len() == question_ids.len(),
        "multirc_f1a_em: lengths differ"
    );
    let tp = pred
        .iter()
        .zip(gold)
        .filter(|&(&p, &g)| p == 1 && g == 1)
        .count();
    let fp = pred
        .iter()
        .zip(gold)
        .filter(|&(&p, &g)| p == 1 && g != 1)
        .count();
    let fn_ = pred
        .iter()
        .zip(gold)
        .filter(|&(&p, &g)| p != 1 && g == 1)
        .count();
    let mut per_q: BTreeMap<usize, bool> = BTreeMap::new();
    for ((p, g), q) in pred.iter().zip(gold).zip(question_ids) {
        *per_q.entry(*q).or_insert(true) &= p == g;
    }
    let em = if per_q.is_empty() {
        0.0
    } else {
        per_q.values().filter(|&&ok| ok).count() as f64 / per_q.len() as f64
    };
    (f1(tp, fp, fn_), em)
}

/// The primary metric of task `name`: `f1a` for MultiRC, `acc` otherwise.
///
/// # Errors
/// [`TaskError::Unknown`].
pub fn primary_metric(name: &str) -> Result<&'static str, TaskError> {
    match name {
        "multirc" => Ok("f1a"),
        n if crate::TASKS.contains(&n) => Ok("acc"),
        other => Err(TaskError::Unknown(other.into())),
    }
}

/// Scores predictions of task `name` against gold (class indices). `question_ids` is required
/// for MultiRC ([`crate::Splits::question_ids`]) and ignored otherwise.
///
/// # Errors
/// [`TaskError::Unknown`]; [`TaskError::Metric`] when the lengths differ, or MultiRC lacks
/// question ids.
pub fn evaluate(
    name: &str,
    pred: &[usize],
    gold: &[usize],
    question_ids: Option<&[usize]>,
) -> Result<Metrics, TaskError> {
    let primary = primary_metric(name)?;
    let bad = |msg: String| TaskError::Metric {
        task: name.into(),
        msg,
    };
    if pred.len() != gold.len() {
        return Err(bad(format!(
            "{} predictions for {} gold labels",
            pred.len(),
            gold.len()
        )));
    }
    let mut values = BTreeMap::new();
    values.insert("acc", accuracy(pred, gold));
    match name {
        "cb" => {
            let f = macro_f1(pred, gold);
            values.insert("f1_macro", f);
            values.insert("acc_and_f1", (values["acc"] + f) / 2.0);
        }
        "multirc" => {
            let q = question_ids.ok_or_else(|| bad("MultiRC needs question ids".into()))?;
            if q.len() != gold.len() {
                return Err(bad(format!(
                    "{} question ids for {} gold labels",
                    q.len(),
                    gold.len()
                )));
            }
            let (f1a, em) = multirc_f1a_em(pred, gold, q);
            values.insert("f1a", f1a);
            values.insert("em", em);
        }
        _ => {}
    }
    Ok(Metrics { primary, values })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_counts_matches() {
        assert_eq!(accuracy(&[1, 0, 1, 1], &[1, 1, 1, 0]), 0.5);
        assert_eq!(accuracy(&[], &[]), 0.0);
    }

    #[test]
    fn cb_macro_f1_by_hand() {
        // gold:  E E E C C N ; pred: E E C C N N
        // E: tp 2, fp 0, fn 1 → P 1, R 2/3, F1 0.8
        // C: tp 1, fp 1, fn 1 → 0.5
        // N: tp 1, fp 1, fn 0 → P 1/2, R 1, F1 2/3
        let gold = [0, 0, 0, 1, 1, 2];
        let pred = [0, 0, 1, 1, 2, 2];
        let want = (0.8 + 0.5 + 2.0 / 3.0) / 3.0;
        assert!((macro_f1(&pred, &gold) - want).abs() < 1e-12);
        let m = evaluate("cb", &pred, &gold, None).unwrap();
        assert_eq!(m.primary, "acc");
        assert!((m.get("acc").unwrap() - 4.0 / 6.0).abs() < 1e-12);
        assert!((m.get("f1_macro").unwrap() - want).abs() < 1e-12);
        assert!((m.get("acc_and_f1").unwrap() - (4.0 / 6.0 + want) / 2.0).abs() < 1e-12);
        // A class absent from gold and predictions does not count.
        assert_eq!(macro_f1(&[0, 1], &[0, 1]), 1.0);
    }

    #[test]
    fn multirc_f1a_and_em_by_hand() {
        // question 7: gold 1 0 1, pred 1 0 0  → wrong
        // question 9: gold 0 1,   pred 0 1    → right
        // question 4: gold 0 0,   pred 1 0    → wrong
        let gold = [1, 0, 1, 0, 1, 0, 0];
        let pred = [1, 0, 0, 0, 1, 1, 0];
        let qid = [7, 7, 7, 9, 9, 4, 4];
        // tp 2, fp 1, fn 1 → P 2/3, R 2/3, F1 2/3 ; EM 1/3 ; acc 5/7
        let m = evaluate("multirc", &pred, &gold, Some(&qid)).unwrap();
        assert_eq!(m.primary, "f1a");
        assert!((m.primary_value() - 2.0 / 3.0).abs() < 1e-12);
        assert!((m.get("em").unwrap() - 1.0 / 3.0).abs() < 1e-12);
        assert!((m.get("acc").unwrap() - 5.0 / 7.0).abs() < 1e-12);
        assert!(evaluate("multirc", &pred, &gold, None).is_err());
        assert!(evaluate("multirc", &pred, &gold, Some(&qid[..3])).is_err());
    }

    #[test]
    fn plain_tasks_report_accuracy() {
        let m = evaluate("copa", &[0, 1, 1, 0], &[0, 1, 0, 0], None).unwrap();
        assert_eq!((m.primary, m.primary_value()), ("acc", 0.75));
        assert_eq!(m.values.len(), 1);
        assert!(evaluate("copa", &[0], &[0, 1], None).is_err());
        assert!(evaluate("mnli", &[0], &[0], None).is_err());
    }
}
