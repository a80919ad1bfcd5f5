//! The masked-LM prompt formulation (template `mlm`): MeZO's RoBERTa experiments
//! (`medium_models`, the LM-BFF code base of Gao et al. 2021) for encoders that have an MLM
//! head.
//!
//! An item renders to an [`MlmPrompted`]: a sequence of [`MlmPart`]s holding exactly one
//! `<mask>`, and one verbaliser word per class. The runner feeds the prompt to the encoder,
//! puts the hidden state **at the mask position only** through the MLM head, and reads the
//! logits of the verbaliser tokens: they are the class scores. Training loss = cross-entropy
//! over those logits; prediction = their argmax.
//!
//! ## Templates
//!
//! In LM-BFF's template language (`*cls*`, `*mask*`, `*sep+*` are special tokens; `*sent_i*`
//! is field i; `*+sent_i*` adds a space before it; `*sentl_i*` / `*sentu_i*` lower- / upper-case
//! its first character; `*sent-_i*` drops its last character; `_` is a space in template
//! text):
//!
//! | task | template | verbaliser (class order) | source |
//! |---|---|---|---|
//! | sst2 | `*cls**sent_0*_It_was*mask*.*sep+*` | ` terrible` / ` great` | LM-BFF / MeZO `run_fewshot.sh` (SST-2) |
//! | rte | `*cls**sent-_0*?*mask*,*+sentl_1**sep+*` | ` Yes` / ` No` | LM-BFF / MeZO (RTE) |
//! | cb | `*cls**sent-_0*?*mask*,*+sentl_1**sep+*` | ` Yes` / ` No` / ` Maybe` | LM-BFF's MNLI template and words (CB has the same three classes) |
//! | boolq | `*cls**sent_0*_Question:*+sentu_1*?_Answer:*mask*.*sep+*` | ` Yes` / ` No` | PET's BoolQ pattern (Schick & Schütze 2021) |
//! | multirc | `*cls**sent_0*_Question:*+sent_1*_Is_it*+sent_2*?*mask*.*sep+*` | ` No` / ` Yes` | PET's MultiRC pattern |
//! | wic | `*cls*"*sent_0*"_/_"*sent_1*"_Similar_sense_of_"*sent_2*"?*mask*.*sep+*` | ` No` / ` Yes` | PET's WiC pattern |
//! | wsc | `*cls**sent_0*_In_the_previous_sentence,_does_the_pronoun_"*sent_1*"_refer_to*+sent_2*?*mask*.*sep+*` | ` No` / ` Yes` | MeZO's causal WSC question |
//!
//! COPA and WinoGrande have **no** `mlm` template: their options are free text of several
//! tokens, which a single mask cannot score (LM-BFF has no multiple-choice tasks); a config
//! asking for one is rejected.
//!
//! As in LM-BFF, every verbaliser word carries a leading space (LM-BFF turns label word `w`
//! into the token of `' ' + w`), and each verbaliser word must be **one** token of the
//! model's tokenizer (the runner checks this when it loads the cell). Question marks are added
//! to BoolQ / MultiRC questions that lack one; `*sent-_i*` drops the last character only when
//! it is punctuation (`.`, `!`, `?`), and fields are trimmed of surrounding white space.
//!
//! ## Tokenization contract (for the runner)
//!
//! Each part is tokenized on its own, without special tokens, and the ids are concatenated
//! (LM-BFF's `tokenize_multipart_input`); `Cls`, `Sep` and `Mask` are the tokenizer's special
//! tokens. A prompt longer than `max_length` loses tokens from the end of its longest
//! [`MlmPart::Field`] (repeatedly: longest first); template text and the mask are never cut.

use crate::{Item, TaskError};

/// The template name of this formulation.
pub const MLM_TEMPLATE: &str = "mlm";

/// One piece of a masked-LM prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MlmPart {
    /// The tokenizer's classification / begin token (`<s>`, `[CLS]`).
    Cls,
    /// The tokenizer's separator / end token (`</s>`, `[SEP]`).
    Sep,
    /// The mask token (`<mask>`, `[MASK]`) whose MLM logits score the classes.
    Mask,
    /// Template text: tokenized as is, never truncated.
    Text(String),
    /// Text of the example: tokenized as is; cut from its end when the prompt is too long.
    Field(String),
}

/// One item in the masked-LM formulation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MlmPrompted {
    /// The prompt, with exactly one [`MlmPart::Mask`].
    pub parts: Vec<MlmPart>,
    /// Verbaliser word of each class (index = label), each with its leading space.
    pub verbalizer: Vec<String>,
    /// Gold class (= the item's label).
    pub gold: usize,
}

impl MlmPrompted {
    /// The prompt as text, with `cls`, `sep` and `mask` standing for the special tokens (for
    /// display and tests).
    pub fn text(&self, cls: &str, sep: &str, mask: &str) -> String {
        self.parts
            .iter()
            .map(|p| match p {
                MlmPart::Cls => cls,
                MlmPart::Sep => sep,
                MlmPart::Mask => mask,
                MlmPart::Text(t) | MlmPart::Field(t) => t.as_str(),
            })
            .collect()
    }
}

/// Tasks that have an `mlm` template.
pub const MLM_TASKS: &[&str] = &["sst2", "rte", "cb", "boolq", "multirc", "wic", "wsc"];

/// The verbaliser words (class order, leading space included) of task `name`'s `mlm`
/// template.
///
/// # Errors
/// [`TaskError::Unknown`] for an unknown task; [`TaskError::NoMlmTemplate`] for COPA and
/// WinoGrande.
pub fn mlm_verbalizer(name: &str) -> Result<&'static [&'static str], TaskError> {
    Ok(match name {
        "sst2" => &[" terrible", " great"],
        "rte" | "boolq" => &[" Yes", " No"],
        "cb" => &[" Yes", " No", " Maybe"],
        "multirc" | "wic" | "wsc" => &[" No", " Yes"],
        n if crate::TASKS.contains(&n) => return Err(TaskError::NoMlmTemplate(n.into())),
        other => return Err(TaskError::Unknown(other.into())),
    })
}

/// `s` trimmed, without a final `.`, `!` or `?` (LM-BFF's `*sent-_i*`).
fn drop_last_punct(s: &str) -> String {
    let s = s.trim();
    s.strip_suffix(['.', '!', '?']).unwrap_or(s).to_string()
}

/// `s` trimmed, with its first character lower-cased (`*sentl_i*`).
fn lower_first(s: &str) -> String {
    let s = s.trim();
    let mut cs = s.chars();
    match cs.next() {
        Some(f) => f.to_lowercase().chain(cs).collect(),
        None => String::new(),
    }
}

/// `s` trimmed, with its first character upper-cased (`*sentu_i*`).
fn upper_first(s: &str) -> String {
    let s = s.trim();
    let mut cs = s.chars();
    match cs.next() {
        Some(f) => f.to_uppercase().chain(cs).collect(),
        None => String::new(),
    }
}

/// `s` trimmed, ending in `?`.
fn question(s: &str) -> String {
    let s = s.trim();
    if s.ends_with('?') {
        s.to_string()
    } else {
        format!("{s}?")
    }
}

/// Renders `item` with its task's `mlm` template (see the module documentation).
///
/// # Errors
/// [`TaskError::NoMlmTemplate`] for COPA and WinoGrande items.
pub fn render_mlm(item: &Item) -> Result<MlmPrompted, TaskError> {
    use MlmPart::{Cls, Field, Mask, Sep, Text};
    let t = |s: &str| Text(s.to_string());
    let parts = match item {
        Item::Sst2 { sentence, .. } => vec![
            Cls,
            Field(sentence.trim().to_string()),
            t(" It was"),
            Mask,
            t("."),
            Sep,
        ],
        Item::Rte {
            premise,
            hypothesis,
            ..
        }
        | Item::Cb {
            premise,
            hypothesis,
            ..
        } => vec![
            Cls,
            Field(drop_last_punct(premise)),
            t("?"),
            Mask,
            t(","),
            Field(format!(" {}", lower_first(hypothesis))),
            Sep,
        ],
        Item::BoolQ {
            passage,
            question: q,
            ..
        } => vec![
            Cls,
            Field(passage.trim().to_string()),
            t(" Question:"),
            Field(format!(" {}", question(&upper_first(q)))),
            t(" Answer:"),
            Mask,
            t("."),
            Sep,
        ],
        Item::MultiRc {
            paragraph,
            question: q,
            answer,
            ..
        } => vec![
            Cls,
            Field(paragraph.trim().to_string()),
            t(" Question:"),
            Field(format!(" {}", question(q))),
            t(" Is it"),
            Field(format!(" {}", answer.trim())),
            t("?"),
            Mask,
            t("."),
            Sep,
        ],
        Item::Wic {
            word,
            sentence1,
            sentence2,
            ..
        } => vec![
            Cls,
            t("\""),
            Field(sentence1.trim().to_string()),
            t("\" / \""),
            Field(sentence2.trim().to_string()),
            t("\" Similar sense of \""),
            Field(word.trim().to_string()),
            t("\"?"),
            Mask,
            t("."),
            Sep,
        ],
        Item::Wsc {
            text, span1, span2, ..
        } => vec![
            Cls,
            Field(text.trim().to_string()),
            t(" In the previous sentence, does the pronoun \""),
            Field(span2.trim().to_lowercase()),
            t("\" refer to"),
            Field(format!(" {}", span1.trim())),
            t("?"),
            Mask,
            t("."),
            Sep,
        ],
        Item::Copa { .. } | Item::WinoGrande { .. } => {
            return Err(TaskError::NoMlmTemplate(item.task().into()));
        }
    };
    let verbalizer = mlm_verbalizer(item.task())?
        .iter()
        .map(|w| w.to_string())
        .collect();
    Ok(MlmPrompted {
        parts,
        verbalizer,
        gold: item.label(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CopaQuestion;

    fn shown(item: &Item) -> String {
        render_mlm(item).unwrap().text("<s>", "</s>", "<mask>")
    }

    #[test]
    fn sst2_and_rte_follow_lm_bff() {
        let s = Item::Sst2 {
            sentence: "a gorgeous , witty , seductive movie . ".into(),
            label: 1,
        };
        assert_eq!(
            shown(&s),
            "<s>a gorgeous , witty , seductive movie . It was<mask>.</s>"
        );
        let p = render_mlm(&s).unwrap();
        assert_eq!(p.verbalizer, vec![" terrible", " great"]);
        assert_eq!(p.gold, 1);
        let r = Item::Rte {
            premise: "Dana Reeve died of lung cancer.".into(),
            hypothesis: "Christopher Reeve had an accident.".into(),
            label: 1,
        };
        assert_eq!(
            shown(&r),
            "<s>Dana Reeve died of lung cancer?<mask>, christopher Reeve had an accident.</s>"
        );
        assert_eq!(render_mlm(&r).unwrap().verbalizer, vec![" Yes", " No"]);
    }

    #[test]
    fn every_template_has_one_mask_and_a_word_per_class() {
        let items = [
            Item::Cb {
                premise: "It was raining".into(),
                hypothesis: "The ground was wet.".into(),
                label: 2,
            },
            Item::BoolQ {
                passage: "Paris -- Paris is in France.".into(),
                question: "is paris in france".into(),
                label: 0,
            },
            Item::MultiRc {
                paragraph: "Sam ran.".into(),
                question: "Who ran?".into(),
                answer: "Sam".into(),
                label: 1,
                question_id: 0,
            },
            Item::Wic {
                word: "bank".into(),
                sentence1: "The river bank.".into(),
                sentence2: "The bank closed.".into(),
                label: 0,
            },
            Item::Wsc {
                text: "Mark told Pete he was late.".into(),
                span1: "Pete".into(),
                span2: "He".into(),
                label: 1,
            },
        ];
        for it in &items {
            let p = render_mlm(it).unwrap();
            let masks = p.parts.iter().filter(|x| **x == MlmPart::Mask).count();
            assert_eq!(masks, 1, "{it:?}");
            assert_eq!(p.parts.first(), Some(&MlmPart::Cls));
            assert_eq!(p.parts.last(), Some(&MlmPart::Sep));
            assert_eq!(
                p.verbalizer.len(),
                crate::label_names(it.task()).unwrap().len()
            );
            assert_eq!(p.gold, it.label());
        }
        assert_eq!(
            shown(&items[0]),
            "<s>It was raining?<mask>, the ground was wet.</s>"
        );
        assert_eq!(
            shown(&items[1]),
            "<s>Paris -- Paris is in France. Question: Is paris in france? Answer:<mask>.</s>"
        );
        assert_eq!(
            shown(&items[2]),
            "<s>Sam ran. Question: Who ran? Is it Sam?<mask>.</s>"
        );
        assert_eq!(
            shown(&items[3]),
            "<s>\"The river bank.\" / \"The bank closed.\" Similar sense of \"bank\"?<mask>.</s>"
        );
        assert_eq!(
            shown(&items[4]),
            "<s>Mark told Pete he was late. In the previous sentence, does the pronoun \"he\" refer to Pete?<mask>.</s>"
        );
    }

    #[test]
    fn multiple_choice_tasks_have_no_mlm_template() {
        let c = Item::Copa {
            premise: "The man fell.".into(),
            choice1: "He slipped.".into(),
            choice2: "He sang.".into(),
            question: CopaQuestion::Cause,
            label: 0,
        };
        let e = render_mlm(&c).unwrap_err().to_string();
        assert!(e.contains("copa") && e.contains("no `mlm` template"), "{e}");
        assert!(mlm_verbalizer("winogrande").is_err());
        assert!(matches!(mlm_verbalizer("sst3"), Err(TaskError::Unknown(_))));
        for t in MLM_TASKS {
            assert!(crate::templates(t).contains(&MLM_TEMPLATE), "{t}");
        }
        assert!(!crate::templates("copa").contains(&MLM_TEMPLATE));
    }
}
