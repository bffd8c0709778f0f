//! Prompt sets for acceptance measurements, benchmarks, profiles and simulations.

use std::path::Path;

use crate::error::{CoreError, CoreResult};

/// The shipped set (chat, code, prose, reasoning).
const DEFAULT_PROMPTS: &str = include_str!("../../../assets/prompts.json");

/// Prompts from `file` — a JSON array of strings or of objects with a `prompt` field, or one prompt
/// per non-empty line — or the shipped set when `file` is `None`.
///
/// # Errors
/// A user error when the file cannot be read or holds no prompt.
pub fn load_prompts(file: Option<&Path>) -> CoreResult<Vec<String>> {
    let (text, name) = match file {
        Some(path) => (
            std::fs::read_to_string(path).map_err(|e| {
                CoreError::user(format!("cannot read prompts {}: {e}", path.display()))
            })?,
            path.display().to_string(),
        ),
        None => (
            DEFAULT_PROMPTS.to_owned(),
            "the shipped prompt set".to_owned(),
        ),
    };
    let prompts = parse(&text);
    if prompts.is_empty() {
        return Err(CoreError::user(format!(
            "no prompts in {name} (expected a JSON array of strings or of {{\"prompt\": ...}} objects, or one prompt per line)"
        )));
    }
    Ok(prompts)
}

fn parse(text: &str) -> Vec<String> {
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Array(items)) => items
            .iter()
            .filter_map(|v| {
                v.as_str()
                    .or_else(|| v.get("prompt").and_then(|p| p.as_str()))
            })
            .map(str::to_owned)
            .collect(),
        _ => text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_set_is_varied() {
        let all: serde_json::Value = serde_json::from_str(DEFAULT_PROMPTS).unwrap();
        let kinds: std::collections::BTreeSet<&str> = all
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v["kind"].as_str())
            .collect();
        assert_eq!(
            kinds.into_iter().collect::<Vec<_>>(),
            ["chat", "code", "prose", "reasoning"]
        );
        assert!(load_prompts(None).unwrap().len() >= 8);
    }

    #[test]
    fn formats() {
        assert_eq!(parse("[\"a\", {\"prompt\": \"b\"}]"), ["a", "b"]);
        assert_eq!(parse("one\n\n two \n"), ["one", "two"]);
    }
}
