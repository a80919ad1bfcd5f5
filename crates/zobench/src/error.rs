//! User-facing errors and exit codes.
//!
//! Exit code 2: bad input (config, names, missing or corrupt checkpoint, data files); the
//! message names the file, the key and the fix. Exit code 1: an internal failure.

/// An error caused by the user's input, reported with exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UserError(pub String);

impl UserError {
    /// Wraps a message.
    pub fn new(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }
}

/// Returns ` (did you mean `x`?)` for the closest of `choices` to `given`, or an empty string.
pub fn did_you_mean(given: &str, choices: &[&str]) -> String {
    let best = choices
        .iter()
        .map(|c| (strsim::jaro_winkler(given, c), *c))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match best {
        Some((score, c)) if score > 0.75 => format!(" (did you mean `{c}`?)"),
        _ => String::new(),
    }
}

/// The process exit code for an error chain: 2 if any cause is a [`UserError`] or a model /
/// task input error, else 1.
pub fn exit_code(err: &anyhow::Error) -> i32 {
    for cause in err.chain() {
        if cause.is::<UserError>()
            || cause.is::<zo_models::ModelError>()
            || cause.is::<zo_tasks::TaskError>()
        {
            return 2;
        }
    }
    1
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn suggests_close_names_only() {
        assert_eq!(
            did_you_mean("zo-sdg", &["zo-sgd", "fo-sgd"]),
            " (did you mean `zo-sgd`?)"
        );
        assert_eq!(
            did_you_mean("minilm", &["minilm-l6", "bert-tiny"]),
            " (did you mean `minilm-l6`?)"
        );
        assert_eq!(did_you_mean("qqqqqq", &["zo-sgd", "fo-sgd"]), "");
    }
}
