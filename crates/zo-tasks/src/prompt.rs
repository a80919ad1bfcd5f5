//! The causal-LM formulation: templates, candidates, loss kind and in-context demonstrations.
//!
//! An item renders to a [`Prompted`]: one `context` and the `candidates` an LM scores as its
//! continuation. The runner predicts the argmax over candidates of the **mean** log-likelihood
//! of the candidate tokens (length-normalised, as MeZO's evaluation), and trains with the
//! task's [`LossKind`].
//!
//! ## Templates
//!
//! Every task has the template `mezo` (the default: MeZO's `large_models/templates.py`, the
//! class named per task below; COPA's and WinoGrande's are also ZO-Bench's) and `none` (the raw
//! text fields joined by single spaces, the label words alone as candidates — the
//! "no task alignment" ablation). In this table `⏎` is a newline and `·` the boundary between
//! context and candidate:
//!
//! | task | `mezo` context · candidates | `none` context · candidates |
//! |---|---|---|
//! | sst2 (`SST2Template`) | `<sentence> It was` · ` terrible` / ` great` | `<sentence>` · same |
//! | copa (`CopaTemplate`) | `<premise without final ".">` + ` because` (cause) / ` so` (effect) · ` <choice>` with the first word lower-cased unless it is `I` | `<premise>` · ` <choice1>` / ` <choice2>` |
//! | winogrande (`WinoGrandeTemplate` + ZO-Bench's `tasks.py`) | text before `_` · ` <option><text after _>` | `<sentence>` · ` <option1>` / ` <option2>` |
//! | multirc (`MultiRCTemplate`) | `<paragraph>⏎Question: <question>⏎I found this answer "<answer>". Is that correct? Yes or No?⏎` · `No` / `Yes` | `<paragraph> <question> <answer>` · ` No` / ` Yes` |
//! | boolq (`BoolQTemplateV3`, MeZO's default version) | `<passage> <Question>?⏎` (first letter upper-cased, `?` added if missing) · `Yes` / `No` | `<passage> <question>` · ` Yes` / ` No` |
//! | rte (`RTETemplate`) | `<premise>⏎Does this mean that "<hypothesis>" is true? Yes or No?⏎` · `Yes` / `No` | `<premise> <hypothesis>` · ` Yes` / ` No` |
//! | cb (`CBTemplate`) | `Suppose <premise> Can we infer that "<hypothesis>"? Yes, No, or Maybe?⏎` · `Yes` / `No` / `Maybe` | `<premise> <hypothesis>` · ` Yes` / ` No` / ` Maybe` |
//! | wic (`WICTemplate`) | `Does the word "<word>" have the same meaning in these two sentences? Yes, No?⏎<sentence1>⏎<sentence2>⏎` · `No` / `Yes` | `<word> <sentence1> <sentence2>` · ` No` / ` Yes` |
//! | wsc (`WSCTemplate`) | `<text>⏎In the previous sentence, does the pronoun "<span2 lower-cased>" refer to <span1>? Yes or No?⏎` · `No` / `Yes` | `<text> <span2> <span1>` · ` No` / ` Yes` |
//!
//! The template `mlm` (tasks other than COPA and WinoGrande) is not a causal-LM prompt: it is
//! the masked-LM prompt of encoders with an MLM head ([`crate::mlm`]); [`render`] refuses it
//! with [`TaskError::NotCausalTemplate`].
//!
//! The texts are the files' fields as they are: the SuperGLUE BoolQ passages here start with
//! their article title (`Title -- text`), which MeZO's Hugging Face `boolq` passages lack.
//!
//! `context + candidate` is exactly MeZO's verbalised string. Where MeZO's prompt ends in a
//! space (COPA's conjunction, WinoGrande's text before `_`), that space is moved to the front
//! of the candidate, so a context never ends in a space and candidates start with the space
//! that BPE tokenizers attach to the following word. The candidate order (and so the gold
//! index) is the same for every template of a task and equals the item's class index.
//!
//! MeZO's WinoGrande scoring is "context = text before the blank, candidate = option + the rest
//! of the sentence" (one shared context, so the options are compared on the whole completion).
//! WinoGrande also has the `partial` template (Trinh & Le's partial scoring, the usual LM
//! evaluation of WinoGrande): each option is placed in its own context, `text before _ +
//! option`, and only the rest of the sentence — the same tokens for both options — is scored
//! ([`Prompted::candidate_contexts`]).
//!
//! ## Tokenization contract (for the runner)
//!
//! This crate never tokenizes. The runner tokenizes `context` (with the model's BOS, if any)
//! and each candidate (without special tokens) and concatenates them; when the sequence is too
//! long it drops tokens from the **left of the context** (after BOS), never from a candidate,
//! as MeZO's left truncation does. Few-shot prompts ([`few_shot`]) are truncated the same way,
//! so the oldest demonstrations go first.

use crate::{CopaQuestion, Item, TaskError};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_xoshiro::Xoshiro256PlusPlus;

/// Templates every task has: MeZO's (default) and the no-alignment ablation.
const TEMPLATES: &[&str] = &["mezo", "none"];

/// Separator between in-context demonstrations and before the query (MeZO's `train_sep`).
pub const DEMO_SEPARATOR: &str = "\n\n";

/// One item in the causal-LM formulation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompted {
    /// The text the candidates continue (never ends in a space).
    pub context: String,
    /// The continuations scored by the LM (in a fixed order per task).
    pub candidates: Vec<String>,
    /// Index of the correct candidate (= the item's class index).
    pub gold: usize,
    /// Per-candidate contexts (WinoGrande's `partial` template): when non-empty, candidate i
    /// continues `candidate_contexts[i]` instead of `context` (which then holds the shared
    /// text before the options, for display and demonstrations).
    pub candidate_contexts: Vec<String>,
}

impl Prompted {
    /// `context + candidates[gold]`: the full gold text (MeZO's verbalised string).
    pub fn gold_text(&self) -> String {
        format!(
            "{}{}",
            self.context_of(self.gold),
            self.candidates[self.gold]
        )
    }

    /// The context candidate `i` continues.
    pub fn context_of(&self, i: usize) -> &str {
        self.candidate_contexts
            .get(i)
            .map_or(self.context.as_str(), String::as_str)
    }
}

/// What the training loss of the causal-LM formulation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LossKind {
    /// Cross-entropy over the candidates' length-normalised log-likelihoods (MeZO's
    /// `--train_as_classification`).
    CandidateCe,
    /// Language-model loss on the gold candidate's tokens only (MeZO's
    /// `--train_as_classification False`, `only_train_option`).
    GoldLm,
}

/// The training-loss kind of task `name`, as MeZO's `mezo.sh` / ZO-Bench's sweeps set it:
/// [`LossKind::GoldLm`] for the multiple-choice tasks COPA and WinoGrande (whose candidates are
/// free text), [`LossKind::CandidateCe`] for the classification tasks (SST-2, MultiRC, BoolQ,
/// RTE, CB, WiC, WSC).
///
/// # Errors
/// [`TaskError::Unknown`].
pub fn loss_kind(name: &str) -> Result<LossKind, TaskError> {
    match name {
        "copa" | "winogrande" => Ok(LossKind::GoldLm),
        n if crate::TASKS.contains(&n) => Ok(LossKind::CandidateCe),
        other => Err(TaskError::Unknown(other.into())),
    }
}

/// The template names of task `name` (the first is the default); empty for an unknown task.
/// `mlm` (the masked-LM prompt, [`crate::mlm`]) is listed for the tasks that have one.
pub fn templates(name: &str) -> &'static [&'static str] {
    if name == "winogrande" {
        &["mezo", "none", "partial"]
    } else if crate::MLM_TASKS.contains(&name) {
        &["mezo", "none", "mlm"]
    } else if crate::TASKS.contains(&name) {
        TEMPLATES
    } else {
        &[]
    }
}

fn words(ws: &[&str], sep: &str) -> Vec<String> {
    ws.iter().map(|w| format!("{sep}{w}")).collect()
}

/// MeZO's COPA capitalisation: the first word of a choice is lower-cased unless it is `I`.
fn copa_choice(c: &str) -> String {
    let mut parts: Vec<String> = c.split(' ').map(str::to_string).collect();
    if parts[0] != "I" {
        parts[0] = parts[0].to_lowercase();
    }
    parts.join(" ")
}

/// Moves trailing spaces of `prefix` to the front of each candidate.
fn split_space(prefix: &str, candidates: Vec<String>) -> (String, Vec<String>) {
    let trimmed = prefix.trim_end_matches(' ');
    let moved = &prefix[trimmed.len()..];
    (
        trimmed.to_string(),
        candidates
            .into_iter()
            .map(|c| format!("{moved}{c}"))
            .collect(),
    )
}

/// Renders `item` with template `template` (see the module documentation).
///
/// # Errors
/// [`TaskError::UnknownTemplate`] listing the task's templates.
pub fn render(item: &Item, template: &str) -> Result<Prompted, TaskError> {
    let task = item.task();
    if template == "partial" {
        if let Item::WinoGrande {
            sentence,
            option1,
            option2,
            ..
        } = item
        {
            // Each option in its own context; the shared rest of the sentence is scored.
            let (before, after) = sentence.split_once('_').unwrap_or((sentence, ""));
            let before = before.trim_end();
            // Nothing after the blank: score a final period, so both options share tokens.
            let cand = if after.is_empty() {
                ".".to_string()
            } else {
                after.to_string()
            };
            return Ok(Prompted {
                context: before.to_string(),
                candidates: vec![cand.clone(), cand],
                gold: item.label(),
                candidate_contexts: vec![
                    format!("{before} {option1}"),
                    format!("{before} {option2}"),
                ],
            });
        }
    }
    let mezo = match template {
        "mezo" => true,
        "none" => false,
        crate::MLM_TEMPLATE if templates(task).contains(&crate::MLM_TEMPLATE) => {
            return Err(TaskError::NotCausalTemplate(task.into()));
        }
        other => {
            return Err(TaskError::UnknownTemplate {
                task: task.into(),
                template: other.into(),
                known: templates(task).to_vec(),
            });
        }
    };
    let yes_no = |sep: &str| words(&["Yes", "No"], sep);
    let no_yes = |sep: &str| words(&["No", "Yes"], sep);
    let (context, candidates) = match item {
        Item::Sst2 { sentence, .. } => {
            let s = sentence.trim();
            let ctx = if mezo {
                format!("{s} It was")
            } else {
                s.to_string()
            };
            (ctx, words(&["terrible", "great"], " "))
        }
        Item::Copa {
            premise,
            choice1,
            choice2,
            question,
            ..
        } => {
            if mezo {
                let p = premise.trim_end();
                let p = p.strip_suffix('.').unwrap_or(p);
                let conj = match question {
                    CopaQuestion::Cause => " because ",
                    CopaQuestion::Effect => " so ",
                };
                split_space(
                    &format!("{p}{conj}"),
                    vec![copa_choice(choice1), copa_choice(choice2)],
                )
            } else {
                (premise.clone(), words(&[choice1, choice2], " "))
            }
        }
        Item::WinoGrande {
            sentence,
            option1,
            option2,
            ..
        } => {
            if mezo {
                // The loader guarantees exactly one `_`.
                let (before, after) = sentence.split_once('_').unwrap_or((sentence, ""));
                split_space(
                    before,
                    vec![format!("{option1}{after}"), format!("{option2}{after}")],
                )
            } else {
                (sentence.clone(), words(&[option1, option2], " "))
            }
        }
        Item::MultiRc {
            paragraph,
            question,
            answer,
            ..
        } => {
            if mezo {
                (
                    format!(
                        "{paragraph}\nQuestion: {question}\nI found this answer \"{answer}\". Is that correct? Yes or No?\n"
                    ),
                    no_yes(""),
                )
            } else {
                (format!("{paragraph} {question} {answer}"), no_yes(" "))
            }
        }
        Item::BoolQ {
            passage, question, ..
        } => {
            if mezo {
                let mut q = question.clone();
                if !q.ends_with('?') {
                    q.push('?');
                }
                let mut cs = q.chars();
                let q: String = match cs.next() {
                    Some(f) => f.to_uppercase().chain(cs).collect(),
                    None => q,
                };
                (format!("{passage} {q}\n"), yes_no(""))
            } else {
                (format!("{passage} {question}"), yes_no(" "))
            }
        }
        Item::Rte {
            premise,
            hypothesis,
            ..
        } => {
            if mezo {
                (
                    format!(
                        "{premise}\nDoes this mean that \"{hypothesis}\" is true? Yes or No?\n"
                    ),
                    yes_no(""),
                )
            } else {
                (format!("{premise} {hypothesis}"), yes_no(" "))
            }
        }
        Item::Cb {
            premise,
            hypothesis,
            ..
        } => {
            let sep = if mezo { "" } else { " " };
            let ctx = if mezo {
                format!(
                    "Suppose {premise} Can we infer that \"{hypothesis}\"? Yes, No, or Maybe?\n"
                )
            } else {
                format!("{premise} {hypothesis}")
            };
            (ctx, words(&["Yes", "No", "Maybe"], sep))
        }
        Item::Wic {
            word,
            sentence1,
            sentence2,
            ..
        } => {
            if mezo {
                (
                    format!(
                        "Does the word \"{word}\" have the same meaning in these two sentences? Yes, No?\n{sentence1}\n{sentence2}\n"
                    ),
                    no_yes(""),
                )
            } else {
                (format!("{word} {sentence1} {sentence2}"), no_yes(" "))
            }
        }
        Item::Wsc {
            text, span1, span2, ..
        } => {
            if mezo {
                (
                    format!(
                        "{text}\nIn the previous sentence, does the pronoun \"{}\" refer to {span1}? Yes or No?\n",
                        span2.to_lowercase()
                    ),
                    no_yes(""),
                )
            } else {
                (format!("{text} {span2} {span1}"), no_yes(" "))
            }
        }
    };
    Ok(Prompted {
        context,
        candidates,
        gold: item.label(),
        candidate_contexts: Vec::new(),
    })
}

/// Renders `query` with `k` in-context demonstrations (MeZO's ICL baseline): `k` items drawn
/// from `train` with `seed` (all of them when it holds fewer; the same demonstrations for every
/// query of a given seed), each rendered with `template` as its full gold text
/// ([`Prompted::gold_text`]), joined by [`DEMO_SEPARATOR`], then the separator and the query's
/// context. The candidates and gold are the query's.
///
/// # Errors
/// [`TaskError::UnknownTemplate`]; [`TaskError::MixedTasks`] when a demonstration belongs to
/// another task than the query.
pub fn few_shot(
    train: &[Item],
    k: usize,
    seed: u64,
    query: &Item,
    template: &str,
) -> Result<Prompted, TaskError> {
    let mut q = render(query, template)?;
    if let Some(other) = train.iter().find(|i| i.task() != query.task()) {
        return Err(TaskError::MixedTasks {
            query: query.task(),
            demo: other.task(),
        });
    }
    let mut idx: Vec<usize> = (0..train.len()).collect();
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    idx.shuffle(&mut rng);
    let mut parts = Vec::with_capacity(k.min(train.len()) + 1);
    for &i in idx.iter().take(k) {
        parts.push(render(&train[i], template)?.gold_text());
    }
    if parts.is_empty() {
        return Ok(q);
    }
    let demos = parts.join(DEMO_SEPARATOR);
    q.context = format!("{demos}{DEMO_SEPARATOR}{}", q.context);
    for c in &mut q.candidate_contexts {
        *c = format!("{demos}{DEMO_SEPARATOR}{c}");
    }
    Ok(q)
}
