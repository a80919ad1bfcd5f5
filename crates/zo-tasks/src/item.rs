//! Typed task records and their encoder formulation.

use crate::Example;

/// Which relation a COPA question asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CopaQuestion {
    /// "What was the cause?" — MeZO joins premise and choice with " because ".
    Cause,
    /// "What happened as a result?" — MeZO joins with " so ".
    Effect,
}

/// One labelled record of a task, with the fields of its file (SuperGLUE names).
///
/// Labels are stored as the class / option index of [`crate::label_names`], which is also the
/// gold index of the rendered [`crate::Prompted`] and the [`Example::label`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// SST-2: sentence → 0 negative / 1 positive.
    Sst2 {
        /// The review sentence.
        sentence: String,
        /// 0 = negative, 1 = positive.
        label: usize,
    },
    /// COPA: premise, two alternatives, cause or effect.
    Copa {
        /// The premise.
        premise: String,
        /// First alternative.
        choice1: String,
        /// Second alternative.
        choice2: String,
        /// Cause or effect.
        question: CopaQuestion,
        /// 0 = `choice1`, 1 = `choice2`.
        label: usize,
    },
    /// WinoGrande: a sentence with one `_` and two fillers.
    WinoGrande {
        /// The sentence, with exactly one `_`.
        sentence: String,
        /// First filler.
        option1: String,
        /// Second filler.
        option2: String,
        /// 0 = `option1`, 1 = `option2` (the file's `answer` minus one).
        label: usize,
        /// The twin-pair id (the two items of a pair share it).
        pair_id: String,
    },
    /// MultiRC, flattened to one answer option (as MeZO's rows).
    MultiRc {
        /// The passage text.
        paragraph: String,
        /// The question.
        question: String,
        /// This answer option.
        answer: String,
        /// 1 = the option is correct, 0 = not.
        label: usize,
        /// Question id, unique within one load (all options of a question share it).
        question_id: usize,
    },
    /// BoolQ: passage and yes/no question.
    BoolQ {
        /// The passage.
        passage: String,
        /// The question (as in the file: lower case, no `?`).
        question: String,
        /// 0 = yes (true), 1 = no (false) — MeZO's candidate order.
        label: usize,
    },
    /// RTE: premise / hypothesis entailment.
    Rte {
        /// The premise.
        premise: String,
        /// The hypothesis.
        hypothesis: String,
        /// 0 = entailment, 1 = not_entailment.
        label: usize,
    },
    /// CB (CommitmentBank): three-way entailment.
    Cb {
        /// The premise.
        premise: String,
        /// The hypothesis.
        hypothesis: String,
        /// 0 = entailment, 1 = contradiction, 2 = neutral.
        label: usize,
    },
    /// WiC: does `word` mean the same in both sentences?
    Wic {
        /// The target word (lemma).
        word: String,
        /// First sentence.
        sentence1: String,
        /// Second sentence.
        sentence2: String,
        /// 0 = different sense, 1 = same sense.
        label: usize,
    },
    /// WSC: does the pronoun `span2` refer to `span1`?
    Wsc {
        /// The sentence(s).
        text: String,
        /// The candidate referent (`target.span1_text`).
        span1: String,
        /// The pronoun (`target.span2_text`).
        span2: String,
        /// 0 = no, 1 = yes.
        label: usize,
    },
}

impl Item {
    /// The task this record belongs to (one of [`crate::TASKS`]).
    pub fn task(&self) -> &'static str {
        match self {
            Item::Sst2 { .. } => "sst2",
            Item::Copa { .. } => "copa",
            Item::WinoGrande { .. } => "winogrande",
            Item::MultiRc { .. } => "multirc",
            Item::BoolQ { .. } => "boolq",
            Item::Rte { .. } => "rte",
            Item::Cb { .. } => "cb",
            Item::Wic { .. } => "wic",
            Item::Wsc { .. } => "wsc",
        }
    }

    /// The gold class / option index.
    pub fn label(&self) -> usize {
        match self {
            Item::Sst2 { label, .. }
            | Item::Copa { label, .. }
            | Item::WinoGrande { label, .. }
            | Item::MultiRc { label, .. }
            | Item::BoolQ { label, .. }
            | Item::Rte { label, .. }
            | Item::Cb { label, .. }
            | Item::Wic { label, .. }
            | Item::Wsc { label, .. } => *label,
        }
    }

    /// The MultiRC question id (`None` for other tasks).
    pub fn question_id(&self) -> Option<usize> {
        match self {
            Item::MultiRc { question_id, .. } => Some(*question_id),
            _ => None,
        }
    }

    /// The encoder formulation. Pair tasks keep their two segments; the multiple-choice tasks
    /// (COPA, WinoGrande) are flattened to a two-class classification whose label is the index
    /// of the correct option, with both options in the second segment:
    ///
    /// | task | `text` | `text_pair` |
    /// |---|---|---|
    /// | sst2 | sentence | — |
    /// | copa | `<premise> What was the cause?` / `… What happened as a result?` | `(1) <choice1> (2) <choice2>` |
    /// | winogrande | sentence (with `_`) | `(1) <option1> (2) <option2>` |
    /// | multirc | paragraph | `<question> <answer>` (one example per answer option) |
    /// | boolq | question | passage |
    /// | rte, cb | premise | hypothesis |
    /// | wic | `<word>: <sentence1>` | sentence2 |
    /// | wsc | text | `<span2> refers to <span1>` |
    pub fn example(&self) -> Example {
        let (text, text_pair) = match self {
            Item::Sst2 { sentence, .. } => (sentence.clone(), None),
            Item::Copa {
                premise,
                choice1,
                choice2,
                question,
                ..
            } => {
                let q = match question {
                    CopaQuestion::Cause => "What was the cause?",
                    CopaQuestion::Effect => "What happened as a result?",
                };
                (
                    format!("{premise} {q}"),
                    Some(format!("(1) {choice1} (2) {choice2}")),
                )
            }
            Item::WinoGrande {
                sentence,
                option1,
                option2,
                ..
            } => (
                sentence.clone(),
                Some(format!("(1) {option1} (2) {option2}")),
            ),
            Item::MultiRc {
                paragraph,
                question,
                answer,
                ..
            } => (paragraph.clone(), Some(format!("{question} {answer}"))),
            Item::BoolQ {
                passage, question, ..
            } => (question.clone(), Some(passage.clone())),
            Item::Rte {
                premise,
                hypothesis,
                ..
            }
            | Item::Cb {
                premise,
                hypothesis,
                ..
            } => (premise.clone(), Some(hypothesis.clone())),
            Item::Wic {
                word,
                sentence1,
                sentence2,
                ..
            } => (format!("{word}: {sentence1}"), Some(sentence2.clone())),
            Item::Wsc {
                text, span1, span2, ..
            } => (text.clone(), Some(format!("{span2} refers to {span1}"))),
        };
        Example {
            text,
            text_pair,
            label: self.label(),
        }
    }
}
