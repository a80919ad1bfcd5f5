//! WinoGrande-style two-option fill-in-the-blank: `winogrande/object.jsonl` (8,998 rows,
//! 4,499 twin pairs), JSON lines with `sentence` (one `_`), `option1`, `option2`, `answer`
//! (`"1"` or `"2"`) and `pair_id` (shared by the two twins).
//!
//! There is only one file (the official splits are not available offline), so all three splits
//! come from it, always in whole twin pairs: first a fixed test set (pairs of a shuffle with a
//! constant seed, independent of the data seed, up to `min(num_eval, rows / 2)` rows — it plays
//! the role of a validation file), then train and dev from the remaining pairs with the data
//! seed, as for every task. Twins therefore never straddle two splits.

use crate::sample::{split_groups, test_groups};
use crate::superglue::{Row, for_each_row};
use crate::{Item, SplitSpec, Splits, TaskError};
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;

/// The data file inside the `winogrande/` folder.
pub const FILE: &str = "object.jsonl";

/// Seed of the fixed test partition (independent of the data seed).
const TEST_PARTITION_SEED: u64 = 0x5749_4E4F;

/// Reads every row of a WinoGrande JSON-lines file, in file order.
///
/// # Errors
/// [`TaskError::Io`], [`TaskError::Empty`], [`TaskError::Parse`] (not JSON), or
/// [`TaskError::Field`] naming the line and field: a missing field, a `sentence` without
/// exactly one `_`, an `answer` other than 1/2, a `pair_id` shared by more than two rows.
pub fn read_items(path: &Path) -> Result<Vec<Item>, TaskError> {
    let mut out = Vec::new();
    let mut pair_rows: HashMap<String, usize> = HashMap::new();
    for_each_row(path, |line, root| {
        let r = Row {
            path,
            line,
            task: "winogrande",
            root,
        };
        let sentence = r.string(root, "sentence", "sentence")?;
        let blanks = sentence.matches('_').count();
        if blanks != 1 {
            return Err(r.err(
                "sentence",
                format!("expected exactly one `_` blank, found {blanks}"),
            ));
        }
        let option1 = r.string(root, "option1", "option1")?;
        let option2 = r.string(root, "option2", "option2")?;
        let label = r.label(
            root,
            "answer",
            "answer",
            &[
                (Value::from("1"), 0),
                (Value::from("2"), 1),
                (Value::from(1), 0),
                (Value::from(2), 1),
            ],
        )?;
        let pair_id = match r.get(root, "pair_id", "pair_id")? {
            Value::String(s) => s.clone(),
            Value::Number(x) => x.to_string(),
            other => {
                return Err(r.err(
                    "pair_id",
                    format!("expected a number or string, got `{other}`"),
                ));
            }
        };
        let seen = pair_rows.entry(pair_id.clone()).or_insert(0);
        *seen += 1;
        if *seen > 2 {
            return Err(r.err(
                "pair_id",
                format!("pair `{pair_id}` has more than two rows"),
            ));
        }
        out.push(Item::WinoGrande {
            sentence,
            option1,
            option2,
            label,
            pair_id,
        });
        Ok(())
    })?;
    Ok(out)
}

/// Groups items by `pair_id`, in order of first appearance.
pub(crate) fn pairs(items: Vec<Item>) -> Vec<Vec<Item>> {
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut out: Vec<Vec<Item>> = Vec::new();
    for it in items {
        let key = match &it {
            Item::WinoGrande { pair_id, .. } => pair_id.clone(),
            _ => unreachable!("winogrande::pairs on another task's items"),
        };
        match index.get(&key) {
            Some(&i) => out[i].push(it),
            None => {
                index.insert(key, out.len());
                out.push(vec![it]);
            }
        }
    }
    out
}

/// Loads `dir/object.jsonl` and samples the splits (see the module documentation).
///
/// # Errors
/// See [`read_items`].
pub fn load_splits(dir: &Path, spec: &SplitSpec) -> Result<Splits, TaskError> {
    let items = read_items(&dir.join(FILE))?;
    let n = items.len();
    let groups = pairs(items);
    // The fixed test partition: a constant-seed shuffle, whole pairs up to the test budget.
    let test_budget = spec.num_eval.min(n / 2);
    let mut test_pool = Vec::new();
    let mut rest = Vec::new();
    {
        use rand::SeedableRng;
        use rand::seq::SliceRandom;
        let mut order: Vec<usize> = (0..groups.len()).collect();
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(TEST_PARTITION_SEED);
        order.shuffle(&mut rng);
        let mut taken = vec![false; groups.len()];
        let mut count = 0;
        for &g in &order {
            if count + groups[g].len() <= test_budget {
                count += groups[g].len();
                taken[g] = true;
            }
        }
        for (g, items) in groups.into_iter().enumerate() {
            if taken[g] {
                test_pool.push(items);
            } else {
                rest.push(items);
            }
        }
    }
    let pool_test: usize = test_pool.iter().map(Vec::len).sum();
    let pool_train: usize = rest.iter().map(Vec::len).sum();
    let (train, dev) = split_groups(rest, spec);
    Ok(Splits {
        name: "winogrande".into(),
        train,
        dev,
        // Every test pair is used, in file order.
        test: test_groups(test_pool, spec),
        requested: *spec,
        pool_train,
        pool_test,
    })
}
