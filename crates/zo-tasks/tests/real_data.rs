//! Loaders, templates, sampling and errors against the real files in `data/`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use zo_tasks::*;

fn data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data")
}

fn sg(task: &str, file: &str) -> PathBuf {
    data()
        .join("superglue")
        .join(superglue::dir_name(task).unwrap())
        .join(file)
}

fn first(task: &str) -> Item {
    let path = match task {
        "sst2" => data().join("sst2/train.tsv"),
        "winogrande" => data().join("winogrande/object.jsonl"),
        t => sg(t, "train.jsonl"),
    };
    read_file(task, &path).unwrap().remove(0)
}

fn mezo(task: &str) -> Prompted {
    render(&first(task), "mezo").unwrap()
}

fn none(task: &str) -> Prompted {
    render(&first(task), "none").unwrap()
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------- row counts (data/README.md)

#[test]
fn row_counts_match_the_data_readme() {
    assert_eq!(
        read_file("sst2", &data().join("sst2/train.tsv"))
            .unwrap()
            .len(),
        67_349
    );
    assert_eq!(
        read_file("sst2", &data().join("sst2/dev.tsv"))
            .unwrap()
            .len(),
        872
    );
    let val = [
        ("boolq", 3270),
        ("cb", 56),
        ("copa", 100),
        ("rte", 277),
        ("wic", 638),
        ("wsc", 104),
    ];
    for (task, n) in val {
        assert_eq!(
            read_file(task, &sg(task, "train.jsonl")).unwrap().len(),
            32,
            "{task}"
        );
        assert_eq!(
            read_file(task, &sg(task, "dev32.jsonl")).unwrap().len(),
            32,
            "{task}"
        );
        assert_eq!(
            read_file(task, &sg(task, "val.jsonl")).unwrap().len(),
            n,
            "{task}"
        );
    }
    // MultiRC: 83 validation passages, 953 questions, 4,848 answer options; the FewGLUE
    // files hold 32 passages each (32 questions; 154 and 167 answer options).
    let mr = |f: &str| read_file("multirc", &sg("multirc", f)).unwrap();
    let count_q = |v: &[Item]| {
        v.iter()
            .map(|i| i.question_id())
            .collect::<HashSet<_>>()
            .len()
    };
    let (tr, d32, val) = (mr("train.jsonl"), mr("dev32.jsonl"), mr("val.jsonl"));
    assert_eq!((tr.len(), count_q(&tr)), (154, 32));
    assert_eq!((d32.len(), count_q(&d32)), (167, 32));
    assert_eq!((val.len(), count_q(&val)), (4848, 953));
    assert_eq!(val.iter().filter(|i| i.label() == 1).count(), 2075);
    let wg = read_file("winogrande", &data().join("winogrande/object.jsonl")).unwrap();
    assert_eq!(wg.len(), 8_998);
    let pairs: HashSet<_> = wg
        .iter()
        .map(|i| match i {
            Item::WinoGrande { pair_id, .. } => pair_id.clone(),
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(pairs.len(), 4_499);
}

#[test]
fn every_task_has_files_and_loads_with_its_default_split() {
    assert_eq!(TASKS.len(), 9);
    for task in TASKS {
        let files = task_files(task, &data());
        assert!(!files.is_empty(), "{task}");
        for f in &files {
            assert!(f.is_file(), "{}", f.display());
        }
        let spec = default_split(task).unwrap();
        let s = load_splits(task, &data(), &spec).unwrap();
        let (tr, dv, te) = s.counts();
        assert!(tr > 0 && dv > 0 && te > 0, "{task}: {:?}", s.counts());
        let d = load_task(task, &data(), &spec).unwrap();
        assert_eq!(d.counts(), s.counts());
        assert_eq!(d.num_labels(), label_names(task).unwrap().len());
        for ex in d.train.iter().chain(&d.test) {
            assert!(ex.label < d.num_labels());
        }
        let want: &[&str] = if *task == "winogrande" {
            &["mezo", "none", "partial"]
        } else if zo_tasks::MLM_TASKS.contains(task) {
            &["mezo", "none", "mlm"]
        } else {
            &["mezo", "none"]
        };
        assert_eq!(templates(task), want);
        for t in templates(task) {
            if *t == zo_tasks::MLM_TEMPLATE {
                // The masked-LM prompt: one mask, a verbaliser word per class, gold = label.
                assert!(
                    s.prompted(Split::Test, t).is_err(),
                    "{task}: not a causal template"
                );
                let m = s.mlm_prompted(Split::Test).unwrap();
                assert_eq!(m.len(), s.test.len());
                for (p, it) in m.iter().zip(&s.test) {
                    let masks = p.parts.iter().filter(|x| **x == zo_tasks::MlmPart::Mask);
                    assert_eq!(masks.count(), 1, "{task}");
                    assert_eq!(p.verbalizer.len(), d.num_labels());
                    assert_eq!(p.gold, it.label());
                }
                continue;
            }
            for p in s.prompted(Split::Test, t).unwrap() {
                assert!(p.gold < p.candidates.len());
                assert!(!p.context.ends_with(' '), "{task}/{t}: {:?}", p.context);
            }
        }
        // Example label and prompted gold agree item by item.
        let p = s.prompted(Split::Train, "mezo").unwrap();
        for (e, p) in d.train.iter().zip(&p) {
            assert_eq!(e.label, p.gold);
        }
    }
    assert!(task_files("mnli", &data()).is_empty());
    assert!(matches!(
        load_task("mnli", &data(), &default_split("sst2").unwrap()),
        Err(TaskError::Unknown(_))
    ));
}

#[test]
fn real_counts_follow_the_sampling_rules() {
    let spec = |t: &str| default_split(t).unwrap();
    let counts = |t: &str| load_splits(t, &data(), &spec(t)).unwrap().counts();
    assert_eq!(counts("sst2"), (1000, 500, 872));
    // 64-example pools: dev keeps half, train the rest.
    for t in ["boolq", "rte", "wic", "wsc", "cb", "copa"] {
        assert_eq!(counts(t).0 + counts(t).1, 64, "{t}");
        assert_eq!(counts(t).1, 32, "{t}");
    }
    assert_eq!(counts("boolq").2, 1000);
    assert_eq!(counts("cb").2, 56);
    assert_eq!(counts("copa").2, 100);
    assert_eq!(counts("wsc").2, 104);
    let w = load_splits("winogrande", &data(), &spec("winogrande")).unwrap();
    assert_eq!(w.counts(), (1000, 100, 1000));
    assert_eq!((w.pool_train, w.pool_test), (7_998, 1_000));
    assert!(w.shortfall().is_none());
    let c = load_splits("copa", &data(), &spec("copa")).unwrap();
    let note = c.shortfall().unwrap();
    assert!(
        note.contains("requested 1000/100/1000") && note.contains("got 32/32/100"),
        "{note}"
    );
    // MultiRC budgets count answer options, filled with whole questions.
    let m = load_splits("multirc", &data(), &spec("multirc")).unwrap();
    let (tr, dv, te) = m.counts();
    assert_eq!(m.pool_train, 321);
    assert!(tr <= 161 && dv <= 160 && te <= 1000, "{:?}", m.counts());
    assert!(tr >= 140 && dv >= 140 && te >= 985, "{:?}", m.counts());
}

// ---------------------------------------------------------------- sampling

fn keyset(v: &[Item]) -> HashSet<String> {
    v.iter().map(|i| format!("{i:?}")).collect()
}

#[test]
fn sampling_is_disjoint_reproducible_and_seeded_for_every_task() {
    for task in TASKS {
        let spec = SplitSpec {
            data_seed: 1,
            ..default_split(task).unwrap()
        };
        let a = load_splits(task, &data(), &spec).unwrap();
        let (tr, dv) = (keyset(&a.train), keyset(&a.dev));
        assert!(tr.is_disjoint(&dv), "{task}: train ∩ dev ≠ ∅");
        let b = load_splits(task, &data(), &spec).unwrap();
        assert_eq!(a.train, b.train, "{task}");
        assert_eq!(a.dev, b.dev, "{task}");
        assert_eq!(a.test, b.test, "{task}");
        let c = load_splits(
            task,
            &data(),
            &SplitSpec {
                data_seed: 2,
                ..spec
            },
        )
        .unwrap();
        assert_ne!(
            a.train, c.train,
            "{task}: another seed gives the same train split"
        );
    }
}

#[test]
fn winogrande_twins_never_straddle_and_test_is_fixed() {
    let pid = |v: &[Item]| -> HashSet<String> {
        v.iter()
            .map(|i| match i {
                Item::WinoGrande { pair_id, .. } => pair_id.clone(),
                _ => unreachable!(),
            })
            .collect()
    };
    for seed in [0, 1, 7] {
        let spec = SplitSpec {
            num_train: 999, // odd: whole pairs only, so 998
            num_dev: 300,
            num_eval: 500,
            data_seed: seed,
        };
        let s = load_splits("winogrande", &data(), &spec).unwrap();
        assert_eq!(s.counts(), (998, 300, 500));
        let (tr, dv, te) = (pid(&s.train), pid(&s.dev), pid(&s.test));
        assert_eq!(
            (tr.len(), dv.len(), te.len()),
            (499, 150, 250),
            "both twins of every pair"
        );
        assert!(tr.is_disjoint(&dv) && tr.is_disjoint(&te) && dv.is_disjoint(&te));
    }
    let spec = |seed| SplitSpec {
        num_train: 100,
        num_dev: 100,
        num_eval: 1000,
        data_seed: seed,
    };
    let a = load_splits("winogrande", &data(), &spec(0)).unwrap();
    let b = load_splits("winogrande", &data(), &spec(5)).unwrap();
    assert_eq!(
        a.test, b.test,
        "the test pairs do not depend on the data seed"
    );
    assert_ne!(a.train, b.train);
}

#[test]
fn multirc_questions_are_never_split() {
    let spec = SplitSpec {
        num_train: 100,
        num_dev: 100,
        num_eval: 300,
        data_seed: 3,
    };
    let s = load_splits("multirc", &data(), &spec).unwrap();
    for which in [Split::Train, Split::Dev, Split::Test] {
        let items = s.split(which);
        let ids = s.question_ids(which).unwrap();
        assert_eq!(ids.len(), items.len());
        // Options of one question are contiguous and share the question text.
        let mut seen = HashSet::new();
        let mut prev = None;
        for (it, q) in items.iter().zip(&ids) {
            if prev != Some(*q) {
                assert!(
                    seen.insert(*q),
                    "{which:?}: question {q} appears in two runs"
                );
                prev = Some(*q);
            }
            assert_eq!(it.question_id(), Some(*q));
        }
    }
    let tr: HashSet<_> = s.question_ids(Split::Train).unwrap().into_iter().collect();
    let dv: HashSet<_> = s.question_ids(Split::Dev).unwrap().into_iter().collect();
    assert!(tr.is_disjoint(&dv));
    // Whole questions: every option of a sampled question is in its split.
    let mut pool = read_file("multirc", &sg("multirc", "train.jsonl")).unwrap();
    pool.extend(read_file("multirc", &sg("multirc", "dev32.jsonl")).unwrap());
    for it in s.train.iter().chain(&s.dev) {
        let Item::MultiRc {
            question,
            paragraph,
            ..
        } = it
        else {
            panic!()
        };
        let in_pool = pool
            .iter()
            .filter(|p| matches!(p, Item::MultiRc { question: q, paragraph: g, .. } if q == question && g == paragraph))
            .count();
        let in_split = s
            .train
            .iter()
            .chain(&s.dev)
            .filter(|p| matches!(p, Item::MultiRc { question: q, paragraph: g, .. } if q == question && g == paragraph))
            .count();
        assert_eq!(in_pool, in_split, "question {question:?} was split");
    }
    assert!(s.counts().0 <= 100 && s.counts().1 <= 100 && s.counts().2 <= 300);
    assert!(s.question_ids(Split::Train).is_some());
    let sst = load_splits("sst2", &data(), &spec).unwrap();
    assert!(sst.question_ids(Split::Train).is_none());
}

// ---------------------------------------------------------------- templates on the first row

#[test]
fn sst2_first_row_renders() {
    let p = mezo("sst2");
    assert_eq!(
        p.context,
        "hide new secretions from the parental units It was"
    );
    assert_eq!(p.candidates, strs(&[" terrible", " great"]));
    assert_eq!(p.gold, 0);
    assert_eq!(
        p.gold_text(),
        "hide new secretions from the parental units It was terrible"
    );
    let n = none("sst2");
    assert_eq!(n.context, "hide new secretions from the parental units");
    assert_eq!(n.candidates, strs(&[" terrible", " great"]));
    assert_eq!(loss_kind("sst2").unwrap(), LossKind::CandidateCe);
}

#[test]
fn copa_first_row_renders() {
    // premise "The chandelier shattered on the floor.", question cause, label 0.
    let p = mezo("copa");
    assert_eq!(p.context, "The chandelier shattered on the floor because");
    assert_eq!(
        p.candidates,
        strs(&[
            " the chandelier dropped from the ceiling.",
            " the chandelier's lights flickered on and off."
        ])
    );
    assert_eq!(p.gold, 0);
    let n = none("copa");
    assert_eq!(n.context, "The chandelier shattered on the floor.");
    assert_eq!(
        n.candidates,
        strs(&[
            " The chandelier dropped from the ceiling.",
            " The chandelier's lights flickered on and off."
        ])
    );
    assert_eq!(loss_kind("copa").unwrap(), LossKind::GoldLm);
    // Effect questions use " so"; a choice starting with "I" keeps its capital.
    let effect = Item::Copa {
        premise: "I ran out of money.".into(),
        choice1: "I borrowed some.".into(),
        choice2: "My Friend paid.".into(),
        question: CopaQuestion::Effect,
        label: 0,
    };
    let p = render(&effect, "mezo").unwrap();
    assert_eq!(p.context, "I ran out of money so");
    assert_eq!(
        p.candidates,
        strs(&[" I borrowed some.", " my Friend paid."])
    );
}

#[test]
fn winogrande_first_row_renders() {
    let p = mezo("winogrande");
    assert_eq!(
        p.context,
        "The rats fled their holes for the open spaces since the"
    );
    assert_eq!(
        p.candidates,
        strs(&[
            " holes were crowded for them.",
            " spaces were crowded for them."
        ])
    );
    assert_eq!(p.gold, 0);
    let n = none("winogrande");
    assert_eq!(
        n.context,
        "The rats fled their holes for the open spaces since the _ were crowded for them."
    );
    assert_eq!(n.candidates, strs(&[" holes", " spaces"]));
    assert_eq!(loss_kind("winogrande").unwrap(), LossKind::GoldLm);
    // Partial scoring: each option in its own context, the shared rest scored.
    let p = render(&first("winogrande"), "partial").unwrap();
    assert_eq!(
        p.candidate_contexts,
        strs(&[
            "The rats fled their holes for the open spaces since the holes",
            "The rats fled their holes for the open spaces since the spaces"
        ])
    );
    assert_eq!(
        p.candidates,
        strs(&[" were crowded for them.", " were crowded for them."])
    );
    assert_eq!(p.context_of(1), p.candidate_contexts[1]);
    assert_eq!(
        p.gold_text(),
        "The rats fled their holes for the open spaces since the holes were crowded for them."
    );
    // Other tasks have no `partial` template.
    assert!(render(&first("copa"), "partial").is_err());
}

#[test]
fn multirc_first_row_renders() {
    let it = first("multirc");
    let Item::MultiRc { paragraph, .. } = &it else {
        panic!()
    };
    assert!(paragraph.starts_with("A stranger in town meets pretty young Susan"));
    assert!(paragraph.ends_with("to see if the men they love will survive . "));
    let p = mezo("multirc");
    assert_eq!(
        p.context,
        format!(
            "{paragraph}\nQuestion: How does Jason react to the stranger who arrives with Susan?\nI found this answer \"He welcomes him with open arm\". Is that correct? Yes or No?\n"
        )
    );
    assert_eq!(p.candidates, strs(&["No", "Yes"]));
    assert_eq!(p.gold, 0);
    let n = none("multirc");
    assert_eq!(
        n.context,
        format!(
            "{paragraph} How does Jason react to the stranger who arrives with Susan? He welcomes him with open arm"
        )
    );
    assert_eq!(n.candidates, strs(&[" No", " Yes"]));
    assert_eq!(loss_kind("multirc").unwrap(), LossKind::CandidateCe);
}

#[test]
fn boolq_first_row_renders() {
    let it = first("boolq");
    let Item::BoolQ { passage, .. } = &it else {
        panic!()
    };
    assert!(passage.starts_with("Ghost in the Shell -- Animation studio Production I.G"));
    let p = mezo("boolq");
    assert_eq!(
        p.context,
        format!("{passage} Is ghost in the shell based on the anime?\n")
    );
    assert_eq!(p.candidates, strs(&["Yes", "No"]));
    assert_eq!(p.gold, 1, "label false → No");
    let n = none("boolq");
    assert_eq!(
        n.context,
        format!("{passage} is ghost in the shell based on the anime")
    );
    assert_eq!(n.candidates, strs(&[" Yes", " No"]));
}

#[test]
fn rte_first_row_renders() {
    let it = first("rte");
    let Item::Rte { premise, .. } = &it else {
        panic!()
    };
    assert!(premise.starts_with("Even the most draconian proposal \u{2014} to reinstate"));
    let p = mezo("rte");
    assert_eq!(
        p.context,
        format!(
            "{premise}\nDoes this mean that \"JFK airport is in New York.\" is true? Yes or No?\n"
        )
    );
    assert_eq!(p.candidates, strs(&["Yes", "No"]));
    assert_eq!(p.gold, 1, "not_entailment → No");
    assert_eq!(
        none("rte").context,
        format!("{premise} JFK airport is in New York.")
    );
}

#[test]
fn cb_first_row_renders() {
    let it = first("cb");
    let Item::Cb { premise, .. } = &it else {
        panic!()
    };
    assert!(premise.ends_with("pretending she had not noticed anything was amiss."));
    let p = mezo("cb");
    assert_eq!(
        p.context,
        format!(
            "Suppose {premise} Can we infer that \"something was amiss\"? Yes, No, or Maybe?\n"
        )
    );
    assert_eq!(p.candidates, strs(&["Yes", "No", "Maybe"]));
    assert_eq!(p.gold, 0, "entailment → Yes");
    assert_eq!(none("cb").candidates, strs(&[" Yes", " No", " Maybe"]));
}

#[test]
fn wic_first_row_renders() {
    let p = mezo("wic");
    assert_eq!(
        p.context,
        "Does the word \"feel\" have the same meaning in these two sentences? Yes, No?\nYou make me feel naked.\nShe felt small and insignificant.\n"
    );
    assert_eq!(p.candidates, strs(&["No", "Yes"]));
    assert_eq!(p.gold, 1);
    let n = none("wic");
    assert_eq!(
        n.context,
        "feel You make me feel naked. She felt small and insignificant."
    );
    assert_eq!(n.candidates, strs(&[" No", " Yes"]));
}

#[test]
fn wsc_first_row_renders() {
    let p = mezo("wsc");
    assert_eq!(
        p.context,
        "The actress used to be named Terpsichore , but she changed it to Tina a few years ago, because she figured it was easier to pronounce.\nIn the previous sentence, does the pronoun \"it\" refer to Tina? Yes or No?\n"
    );
    assert_eq!(p.candidates, strs(&["No", "Yes"]));
    assert_eq!(p.gold, 1);
    assert_eq!(
        none("wsc").context,
        "The actress used to be named Terpsichore , but she changed it to Tina a few years ago, because she figured it was easier to pronounce. it Tina"
    );
}

#[test]
fn encoder_formulation_of_first_rows() {
    let e = first("copa").example();
    assert_eq!(
        e.text,
        "The chandelier shattered on the floor. What was the cause?"
    );
    assert_eq!(
        e.text_pair.as_deref(),
        Some(
            "(1) The chandelier dropped from the ceiling. (2) The chandelier's lights flickered on and off."
        )
    );
    assert_eq!(e.label, 0);
    let e = first("wic").example();
    assert_eq!(e.text, "feel: You make me feel naked.");
    assert_eq!(
        e.text_pair.as_deref(),
        Some("She felt small and insignificant.")
    );
    assert_eq!(e.label, 1);
    let e = first("wsc").example();
    assert_eq!(e.text_pair.as_deref(), Some("it refers to Tina"));
    let e = first("sst2").example();
    assert_eq!(
        (e.text.as_str(), e.text_pair, e.label),
        ("hide new secretions from the parental units", None, 0)
    );
}

#[test]
fn unknown_template_lists_the_known_ones() {
    let e = render(&first("rte"), "gpt3").unwrap_err().to_string();
    assert!(
        e.contains("`gpt3`") && e.contains("`rte`") && e.contains("mezo, none"),
        "{e}"
    );
    assert!(templates("mnli").is_empty());
}

#[test]
fn few_shot_prepends_gold_demonstrations() {
    let train = read_file("copa", &sg("copa", "train.jsonl")).unwrap();
    let query = read_file("copa", &sg("copa", "val.jsonl"))
        .unwrap()
        .remove(0);
    let zero = render(&query, "mezo").unwrap();
    assert_eq!(zero.context, "The man turned on the faucet so");
    let p = few_shot(&train, 2, 0, &query, "mezo").unwrap();
    let parts: Vec<&str> = p.context.split("\n\n").collect();
    assert_eq!(parts.len(), 3);
    assert_eq!(parts[2], zero.context);
    assert_eq!(
        (p.candidates.clone(), p.gold),
        (zero.candidates.clone(), zero.gold)
    );
    let golds: HashSet<String> = train
        .iter()
        .map(|i| render(i, "mezo").unwrap().gold_text())
        .collect();
    assert!(golds.contains(parts[0]) && golds.contains(parts[1]) && parts[0] != parts[1]);
    assert_eq!(
        few_shot(&train, 2, 0, &query, "mezo").unwrap(),
        p,
        "reproducible"
    );
    assert_ne!(
        few_shot(&train, 2, 1, &query, "mezo").unwrap().context,
        p.context
    );
    assert_eq!(few_shot(&train, 0, 0, &query, "mezo").unwrap(), zero);
    let all = few_shot(&train, 1000, 0, &query, "mezo").unwrap();
    assert_eq!(all.context.split("\n\n").count(), 33);
    // Demonstrations of another task are refused.
    let rte = read_file("rte", &sg("rte", "train.jsonl")).unwrap();
    let e = few_shot(&rte, 2, 0, &query, "mezo")
        .unwrap_err()
        .to_string();
    assert!(e.contains("`rte`") && e.contains("`copa`"), "{e}");
    // Whole split with demonstrations from its own train split.
    let s = load_splits("copa", &data(), &default_split("copa").unwrap()).unwrap();
    let plain = s.prompted(Split::Test, "mezo").unwrap();
    let icl = s.prompted_few_shot(Split::Test, "mezo", 4, 0).unwrap();
    assert_eq!(plain.len(), icl.len());
    let prefix = icl[0]
        .context
        .strip_suffix(plain[0].context.as_str())
        .unwrap();
    for (a, b) in plain.iter().zip(&icl) {
        assert_eq!(
            b.context,
            format!("{prefix}{}", a.context),
            "same demonstrations for all"
        );
        assert_eq!((&a.candidates, a.gold), (&b.candidates, b.gold));
    }
    assert_eq!(prefix.matches("\n\n").count(), 4);
}

// ---------------------------------------------------------------- bad input

fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

fn err(task: &str, path: &Path) -> String {
    read_file(task, path).unwrap_err().to_string()
}

#[test]
fn bad_rows_name_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let good_rte = r#"{"premise": "A man sleeps.", "hypothesis": "A man rests.", "label": "entailment", "idx": 0}"#;
    // Missing field on line 2.
    let p = write(
        dir.path(),
        "rte_missing.jsonl",
        &format!("{good_rte}\n{{\"premise\": \"x\", \"label\": \"entailment\"}}\n"),
    );
    let e = err("rte", &p);
    assert!(
        e.contains("rte_missing.jsonl")
            && e.contains("line 2")
            && e.contains("`hypothesis`")
            && e.contains("missing"),
        "{e}"
    );
    // Unknown label on line 3.
    let p = write(
        dir.path(),
        "rte_label.jsonl",
        &format!(
            "{good_rte}\n{good_rte}\n{}\n",
            good_rte.replace("\"entailment\"", "\"maybe\"")
        ),
    );
    let e = err("rte", &p);
    assert!(
        e.contains("rte_label.jsonl")
            && e.contains("line 3")
            && e.contains("`label`")
            && e.contains("unknown label"),
        "{e}"
    );
    // Empty file (and a file of blank lines).
    for body in ["", "\n\n"] {
        let p = write(dir.path(), "empty.jsonl", body);
        let e = err("boolq", &p);
        assert!(
            e.contains("empty.jsonl") && e.contains("line 1") && e.contains("empty"),
            "{e}"
        );
    }
    let p = write(dir.path(), "train.tsv", "");
    assert!(err("sst2", &p).contains("empty"));
    let p = write(dir.path(), "train.tsv", "label\tsentence\n");
    assert!(err("sst2", &p).contains("empty"));
    // Another task's schema: a real CB file read as RTE, a real COPA file read as BoolQ,
    // a real WinoGrande file read as WSC, a SuperGLUE file read as SST-2.
    // (CB and RTE share their fields; the first CB row whose label RTE lacks is line 4.)
    let e = err("rte", &sg("cb", "train.jsonl"));
    assert!(
        e.contains("CB/train.jsonl")
            && e.contains("line 4")
            && e.contains("`label`")
            && e.contains("looks like a `cb` row"),
        "{e}"
    );
    let e = err("boolq", &sg("copa", "val.jsonl"));
    assert!(
        e.contains("line 1") && e.contains("`passage`") && e.contains("looks like a `copa` row"),
        "{e}"
    );
    let e = err("wsc", &data().join("winogrande/object.jsonl"));
    assert!(
        e.contains("object.jsonl")
            && e.contains("line 1")
            && e.contains("`target`")
            && e.contains("`winogrande`"),
        "{e}"
    );
    let e = err("sst2", &sg("rte", "val.jsonl"));
    assert!(e.contains("line 1") && e.contains("`header`"), "{e}");
    let e = err("multirc", &sg("boolq", "train.jsonl"));
    assert!(
        e.contains("line 1") && e.contains("`passage`") && e.contains("expected an object"),
        "{e}"
    );
    // Nested MultiRC field: the path names the question and answer.
    let p = write(
        dir.path(),
        "mrc.jsonl",
        r#"{"idx": 0, "passage": {"text": "P.", "questions": [{"question": "Q?", "answers": [{"text": "a", "label": 1}, {"text": "b", "label": 5}]}]}}"#,
    );
    let e = err("multirc", &p);
    assert!(
        e.contains("line 1") && e.contains("`passage.questions[0].answers[1].label`"),
        "{e}"
    );
    // WinoGrande: a sentence without the blank, an answer outside 1/2.
    let p = write(
        dir.path(),
        "wg.jsonl",
        "{\"sentence\": \"no blank here.\", \"option1\": \"a\", \"option2\": \"b\", \"answer\": \"1\", \"pair_id\": 0}\n",
    );
    let e = err("winogrande", &p);
    assert!(
        e.contains("line 1") && e.contains("`sentence`") && e.contains("one `_`"),
        "{e}"
    );
    let p = write(
        dir.path(),
        "wg2.jsonl",
        "{\"sentence\": \"a _ b.\", \"option1\": \"a\", \"option2\": \"b\", \"answer\": \"3\", \"pair_id\": 0}\n",
    );
    let e = err("winogrande", &p);
    assert!(e.contains("`answer`") && e.contains("unknown label"), "{e}");
    // A truncated JSON line.
    let p = write(
        dir.path(),
        "trunc.jsonl",
        &format!("{good_rte}\n{{\"premise\": \"A"),
    );
    let e = err("rte", &p);
    assert!(e.contains("trunc.jsonl") && e.contains("line 2"), "{e}");
    // SST-2 unknown label and missing sentence.
    let p = write(dir.path(), "bad.tsv", "label\tsentence\n1\tgood\n2\tbad\n");
    let e = err("sst2", &p);
    assert!(e.contains("line 3") && e.contains("`label`"), "{e}");
    let p = write(dir.path(), "bad2.tsv", "label\tsentence\n1\tgood\n0\n");
    let e = err("sst2", &p);
    assert!(e.contains("line 3") && e.contains("`sentence`"), "{e}");
    // A missing file names the file.
    let e = load_task("cb", dir.path(), &default_split("cb").unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("CB/train.jsonl"), "{e}");
}
