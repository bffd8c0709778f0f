//! How to speculate: `none`, `chain:K`, `tree:N` or `auto`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest draft chain: llama.cpp keeps 256 sequences and a chain of K drafts plus the bonus token
/// is one leaf sequence deep K + 1.
pub const MAX_CHAIN: u32 = 255;
/// Largest tree of one verification pass. Each leaf needs a sequence of its own and llama.cpp has
/// 255 for leaves, so trees beyond 256 tokens are planned under that leaf limit.
pub const MAX_TREE: u32 = 1024;

/// How to speculate. Written as text everywhere a person or a file sees it (`tree:64`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Plan {
    /// Plain decoding: one target pass per token.
    #[default]
    None,
    /// A chain of K draft tokens per pass (`1..=MAX_CHAIN`).
    Chain(u32),
    /// The best tree of N tokens for the measured acceptance (`2..=MAX_TREE`).
    Tree(u32),
    /// Size and shape chosen from this machine's measured costs and acceptance.
    Auto,
}

/// A plan that is not one of the accepted forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid plan {0:?}: use none, chain:K (1 <= K <= {MAX_CHAIN}), tree:N (2 <= N <= {MAX_TREE}) or auto"
)]
pub struct InvalidPlan(pub String);

impl Plan {
    /// A chain of `k` drafts. Fails outside `1..=MAX_CHAIN`.
    pub fn chain(k: u32) -> Result<Plan, InvalidPlan> {
        if (1..=MAX_CHAIN).contains(&k) {
            Ok(Plan::Chain(k))
        } else {
            Err(InvalidPlan(format!("chain:{k}")))
        }
    }

    /// A tree of `n` tokens. Fails outside `2..=MAX_TREE`.
    pub fn tree(n: u32) -> Result<Plan, InvalidPlan> {
        if (2..=MAX_TREE).contains(&n) {
            Ok(Plan::Tree(n))
        } else {
            Err(InvalidPlan(format!("tree:{n}")))
        }
    }

    /// Whether this plan uses a draft model.
    pub fn speculates(self) -> bool {
        !matches!(self, Plan::None)
    }

    /// Tokens one verification pass holds at most (`None` for `auto`, which decides at run time).
    pub fn fixed_budget(self) -> Option<u32> {
        match self {
            Plan::None => Some(1),
            Plan::Chain(k) => Some(k + 1),
            Plan::Tree(n) => Some(n),
            Plan::Auto => None,
        }
    }

    /// The plan with a draft, or plain decoding without one.
    pub fn with_draft(self, has_draft: bool) -> Plan {
        if has_draft {
            self
        } else {
            Plan::None
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Plan::None => f.write_str("none"),
            Plan::Chain(k) => write!(f, "chain:{k}"),
            Plan::Tree(n) => write!(f, "tree:{n}"),
            Plan::Auto => f.write_str("auto"),
        }
    }
}

impl FromStr for Plan {
    type Err = InvalidPlan;

    /// Parses `none`, `auto`, `chain:K` or `tree:N` within the engine's limits.
    fn from_str(s: &str) -> Result<Plan, InvalidPlan> {
        let bad = || InvalidPlan(s.to_owned());
        let number = |v: &str| v.trim().parse::<u32>().map_err(|_| bad());
        match s.trim().split_once(':') {
            None if s.trim() == "none" => Ok(Plan::None),
            None if s.trim() == "auto" => Ok(Plan::Auto),
            Some(("chain", k)) => Plan::chain(number(k)?).map_err(|_| bad()),
            Some(("tree", n)) => Plan::tree(number(n)?).map_err(|_| bad()),
            _ => Err(bad()),
        }
    }
}

impl Serialize for Plan {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Plan {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Plan, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(feature = "ts")]
impl ts_rs::TS for Plan {
    type WithoutGenerics = Plan;
    type OptionInnerType = Plan;
    fn name(_: &ts_rs::Config) -> String {
        "Plan".to_owned()
    }
    fn docs() -> Option<String> {
        Some(
            "/** `none`, `auto`, `chain:K` (1 ≤ K ≤ 255) or `tree:N` (2 ≤ N ≤ 1024). */\n"
                .to_owned(),
        )
    }
    fn decl(_: &ts_rs::Config) -> String {
        r#"type Plan = "none" | "auto" | `chain:${number}` | `tree:${number}`;"#.to_owned()
    }
    fn decl_concrete(c: &ts_rs::Config) -> String {
        Self::decl(c)
    }
    fn inline(_: &ts_rs::Config) -> String {
        "Plan".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips_within_the_engine_limits() {
        for text in [
            "none",
            "auto",
            "chain:1",
            "chain:255",
            "tree:2",
            "tree:1024",
        ] {
            let plan: Plan = text.parse().unwrap();
            assert_eq!(plan.to_string(), text);
            let json = serde_json::to_string(&plan).unwrap();
            assert_eq!(serde_json::from_str::<Plan>(&json).unwrap(), plan);
        }
        for bad in [
            "",
            "tree",
            "tree:1",
            "tree:1025",
            "chain:0",
            "chain:256",
            "chain:x",
            "bush:3",
            "tree:-4",
        ] {
            let err = bad.parse::<Plan>().unwrap_err();
            assert!(err.to_string().contains("use none"), "{err}");
        }
        assert!(serde_json::from_str::<Plan>("\"tree:2048\"").is_err());
    }

    #[test]
    fn budgets_and_drafts() {
        assert_eq!(Plan::Chain(4).fixed_budget(), Some(5));
        assert_eq!(Plan::Auto.fixed_budget(), None);
        assert_eq!(Plan::Tree(16).with_draft(false), Plan::None);
        assert!(!Plan::None.speculates());
    }
}
