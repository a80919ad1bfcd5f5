//! Seeded sampling of the splits (see the crate documentation for the rules).

use crate::{Example, SplitSpec, TaskError};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_xoshiro::Xoshiro256PlusPlus;

/// Mixed into the data seed for the test sample, so test and train/dev draws differ.
const TEST_SEED_SALT: u64 = 0x7E57;

/// MeZO's request for task `name` with data seed 0: 1000 train / 500 dev / 1000 test, except
/// CB and COPA (dev 100, MeZO's `mezo.sh`) and WinoGrande (dev 100, ZO-Bench's sweeps). The
/// files here hold less for the SuperGLUE tasks (64-example training pools), so the real
/// counts are smaller; see [`crate::Splits::shortfall`].
///
/// # Errors
/// [`TaskError::Unknown`].
pub fn default_split(name: &str) -> Result<SplitSpec, TaskError> {
    let num_dev = match name {
        "cb" | "copa" | "winogrande" => 100,
        n if crate::TASKS.contains(&n) => 500,
        other => return Err(TaskError::Unknown(other.into())),
    };
    Ok(SplitSpec {
        num_train: 1000,
        num_dev,
        num_eval: 1000,
        data_seed: 0,
    })
}

/// Budgets `(train, dev)` for a pool of `n` examples: the request when it fits; otherwise the
/// dev split keeps `min(num_dev, n / 2)` and train gets the rest (at most `num_train`).
fn budgets(n: usize, spec: &SplitSpec) -> (usize, usize) {
    let dev = if n >= spec.num_train.saturating_add(spec.num_dev) {
        spec.num_dev
    } else {
        spec.num_dev.min(n / 2)
    };
    (spec.num_train.min(n - dev), dev)
}

/// Shuffles `groups` with the data seed, then fills train and then dev with whole groups while
/// they fit the budgets of [`budgets`] (a group too large for what is left is skipped and
/// stays available for the next split). Singleton groups and a pool large enough reproduce a
/// plain "shuffle, first `num_train`, next `num_dev`".
pub(crate) fn split_groups<T>(mut groups: Vec<Vec<T>>, spec: &SplitSpec) -> (Vec<T>, Vec<T>) {
    let n: usize = groups.iter().map(Vec::len).sum();
    let (train_budget, dev_budget) = budgets(n, spec);
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(spec.data_seed);
    groups.shuffle(&mut rng);
    let mut train = Vec::new();
    let mut rest = Vec::new();
    for g in groups {
        if train.len() + g.len() <= train_budget {
            train.extend(g);
        } else {
            rest.push(g);
        }
    }
    let mut dev = Vec::new();
    for g in rest {
        if dev.len() + g.len() <= dev_budget {
            dev.extend(g);
        }
    }
    (train, dev)
}

/// The test sample: every group in file order when the pool holds at most `num_eval`
/// examples, otherwise whole groups of a seeded shuffle while they fit `num_eval` (MeZO also
/// samples its evaluation set with the data seed).
pub(crate) fn test_groups<T>(mut groups: Vec<Vec<T>>, spec: &SplitSpec) -> Vec<T> {
    let n: usize = groups.iter().map(Vec::len).sum();
    if spec.num_eval >= n {
        return groups.into_iter().flatten().collect();
    }
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(spec.data_seed ^ TEST_SEED_SALT);
    groups.shuffle(&mut rng);
    let mut out = Vec::new();
    for g in groups {
        if out.len() + g.len() <= spec.num_eval {
            out.extend(g);
        }
    }
    out
}

/// Singleton groups.
pub(crate) fn singletons<T>(v: Vec<T>) -> Vec<Vec<T>> {
    v.into_iter().map(|x| vec![x]).collect()
}

/// Draws `num_train` then `num_dev` disjoint examples from `pool` after a seeded shuffle.
/// When the pool is smaller than the request, dev gets `min(num_dev, pool / 2)` and train the
/// rest (see the crate documentation).
pub fn sample_train_dev(pool: Vec<Example>, spec: &SplitSpec) -> (Vec<Example>, Vec<Example>) {
    split_groups(singletons(pool), spec)
}

/// Takes `num_eval` test examples: all of `pool` in file order when it is not larger,
/// otherwise a seeded sample (MeZO samples its evaluation set the same way).
pub fn sample_test(pool: Vec<Example>, spec: &SplitSpec) -> Vec<Example> {
    test_groups(singletons(pool), spec)
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
    fn oversized_requests_keep_a_dev_split() {
        let spec = SplitSpec {
            num_train: 80,
            num_dev: 50,
            num_eval: 1000,
            data_seed: 0,
        };
        // 100 < 80 + 50: dev keeps min(50, 50), train gets the other 50.
        let (tr, dv) = sample_train_dev(pool(100), &spec);
        assert_eq!((tr.len(), dv.len()), (50, 50));
        // MeZO's COPA case: 400 examples, 1000/100 requested → 300/100.
        let copa = SplitSpec {
            num_train: 1000,
            num_dev: 100,
            ..spec
        };
        let (tr, dv) = sample_train_dev(pool(400), &copa);
        assert_eq!((tr.len(), dv.len()), (300, 100));
        // A tiny pool never leaves train empty.
        let (tr, dv) = sample_train_dev(pool(3), &copa);
        assert_eq!((tr.len(), dv.len()), (2, 1));
        assert_eq!(sample_test(pool(7), &spec).len(), 7);
        assert_eq!(
            sample_test(pool(7), &spec),
            pool(7),
            "file order when all fit"
        );
    }

    #[test]
    fn groups_are_never_split() {
        let groups: Vec<Vec<(usize, usize)>> = (0..50)
            .map(|g| (0..1 + g % 4).map(|j| (g, j)).collect())
            .collect();
        let spec = SplitSpec {
            num_train: 40,
            num_dev: 30,
            num_eval: 10,
            data_seed: 9,
        };
        let (tr, dv) = split_groups(groups.clone(), &spec);
        assert!(tr.len() <= 40 && dv.len() <= 30 && tr.len() >= 35 && dv.len() >= 25);
        for g in 0..50 {
            let in_tr = tr.iter().filter(|x| x.0 == g).count();
            let in_dv = dv.iter().filter(|x| x.0 == g).count();
            let size = 1 + g % 4;
            assert!(
                (in_tr == 0 || in_tr == size) && (in_dv == 0 || in_dv == size),
                "group {g} split: {in_tr} train / {in_dv} dev"
            );
            assert!(in_tr == 0 || in_dv == 0);
        }
        let te = test_groups(groups, &spec);
        assert!(te.len() <= 10 && te.len() >= 7);
    }

    #[test]
    fn default_requests_follow_mezo() {
        assert_eq!(default_split("sst2").unwrap().num_dev, 500);
        assert_eq!(default_split("copa").unwrap().num_dev, 100);
        assert_eq!(default_split("cb").unwrap().num_dev, 100);
        assert!(default_split("mnli").is_err());
    }
}
