//! The runner's view of `zo-optim`: optimizer names, their hyper-parameters (for strict config
//! checking), per-scheme default axes, and construction from a cell's hyper-parameters.

use crate::record::HParams;
use serde_json::Value;
use std::collections::BTreeMap;

/// Optimizer names in `zobench ls optimizers` order.
pub fn names() -> Vec<&'static str> {
    zo_optim::OPTIMIZERS.iter().map(|o| o.name).collect()
}

/// Whether `optimizer` is zeroth order (no backward pass at all).
pub fn is_zo(optimizer: &str) -> bool {
    zo_optim::OPTIMIZERS
        .iter()
        .find(|o| o.name == optimizer)
        .is_some_and(|o| o.zeroth_order)
}

/// Checks one hyper-parameter value of `optimizer`.
///
/// # Errors
/// A message naming the key: unknown for this optimizer (with the valid keys and the closest
/// one), or a value out of range.
pub fn check_hparam(optimizer: &str, key: &str, value: &Value) -> Result<(), String> {
    let Some(info) = zo_optim::OPTIMIZERS.iter().find(|o| o.name == optimizer) else {
        return Err(format!("unknown optimizer `{optimizer}`"));
    };
    if !info.hparams.contains(&key) {
        return Err(format!(
            "`{key}` is not a hyper-parameter of {optimizer}{}; it takes: {}",
            crate::error::did_you_mean(key, info.hparams),
            info.hparams.join(", ")
        ));
    }
    let mut one = BTreeMap::new();
    one.insert(key.to_string(), value.clone());
    zo_optim::HParams::from_map::<_, serde_json::Error>(&one)
        .and_then(|h| h.validate_keys(&[key]))
        .map_err(|e| e.to_string())
}

/// Default axes of `optimizer` under `scheme` (any axis a config leaves out). PEFT schemes and
/// the head take larger learning rates than full fine-tuning (MeZO / ZO-Bench defaults).
pub fn default_axes(optimizer: &str, scheme: &str) -> BTreeMap<String, Vec<Value>> {
    let zo = is_zo(optimizer);
    let peft = scheme != "ft";
    let lr = match (zo, peft, optimizer) {
        (_, _, o) if o.starts_with("fo-adam") || o == "zo-adam" => {
            if peft {
                1e-3
            } else {
                1e-5
            }
        }
        (true, false, _) => 1e-6,
        (true, true, _) => 1e-3,
        (false, false, _) => 1e-4,
        (false, true, _) => 1e-2,
    };
    let mut m = BTreeMap::new();
    m.insert("lr".to_string(), vec![Value::from(lr)]);
    if let Some(info) = zo_optim::OPTIMIZERS.iter().find(|o| o.name == optimizer) {
        if info.hparams.contains(&"mu") {
            m.insert("mu".to_string(), vec![Value::from(1e-3)]);
        }
    }
    m
}

/// Builds the optimizer of a cell.
///
/// # Errors
/// An unknown optimizer or an invalid hyper-parameter (the config check makes both rare).
pub fn build(optimizer: &str, hp: &HParams) -> anyhow::Result<Box<dyn zo_optim::Optimizer>> {
    let h = zo_optim::HParams::from_map::<_, serde_json::Error>(hp)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    zo_optim::build(optimizer, &h).map_err(|e| anyhow::anyhow!("{e}"))
}
