//! Candidates from the conversation itself, at no model cost: prompt lookup (n-gram) drafting, as
//! llama.cpp's `ngram` speculation and "prompt lookup decoding" do.
//!
//! Much of what people ask a local model to write repeats text already in the conversation: code
//! being edited, a document being revised, names and quotes. [`LookupIndex`] keeps, for every
//! n-gram of the committed tokens (prompt and output), the positions that followed its latest
//! occurrences, updated as tokens are committed. At each step [`LookupIndex::propose`] matches the
//! last n tokens, longest n first, and proposes what followed the match: the latest site's
//! continuation as the first chain, then other sites' continuations, merged into a small trie (a
//! site that agrees with an earlier one on its first tokens adds only where it diverges).
//!
//! # Which n
//!
//! [`LookupConfig::default`] matches 4 down to 2 tokens. A one-token match fires on nearly every
//! common token of a long conversation (spaces, punctuation, frequent word pieces), and what
//! followed one earlier occurrence is a weak guess; every candidate costs a target token in the
//! pass, and the policy measures lookup acceptance by position, not by match length, so weak
//! guesses would also drag down the estimate of the good ones. Above 4, a longer match rarely
//! changes the pick: where a 4-gram recurs with different continuations, recency picks the first
//! chain and the other sites become siblings; each extra length costs one more probe per step and
//! one more entry per committed token. Both ends are settings ([`LookupConfig::new`]).
//!
//! # Cost
//!
//! Committing a token costs one hash-map update per n-gram length; a proposal costs one probe per
//! length, a comparison per site to rule out hash collisions, and at most `sites × max_len` token
//! copies: bounded by the settings, independent of the history's length ([`LookupProposal::work`]
//! counts it). Memory is one entry of at most [`MAX_SITES`] positions per distinct n-gram, at most
//! `(max_ngram − min_ngram + 1)` per committed token.
//!
//! A continuation may run past the end of the history: it then copies what it has proposed itself
//! (an overlapping copy, as in LZ77), so a repeating pattern is proposed as far as `max_len`.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use canopy_plan::LookupNode;

use crate::Token;

/// The longest n-gram the index can match.
pub const MAX_NGRAM: usize = 8;
/// The most match sites kept per n-gram (the latest ones).
pub const MAX_SITES: usize = 4;
/// The longest continuation a site may propose.
pub const MAX_LEN: usize = 256;
/// The most nodes of one proposal.
pub const MAX_NODES: usize = 1024;

/// Invalid lookup settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// The n-gram lengths are not `1 <= min_ngram <= max_ngram <= MAX_NGRAM`.
    #[error(
        "n-gram lengths {min_ngram}..={max_ngram} are invalid: they must satisfy \
         1 <= min <= max <= {MAX_NGRAM}"
    )]
    NgramRange { min_ngram: usize, max_ngram: usize },
    /// A count is outside its range.
    #[error("{name} = {value} is outside 1..={max}")]
    OutOfRange {
        name: &'static str,
        value: usize,
        max: usize,
    },
}

/// Settings of the lookup drafter. Cannot be built invalid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LookupConfig {
    min_ngram: usize,
    max_ngram: usize,
    max_len: usize,
    sites: usize,
    max_nodes: usize,
}

impl Default for LookupConfig {
    /// Matches of 4 down to 2 tokens (see the module docs), continuations of up to 16 tokens from
    /// up to 3 sites, at most 32 nodes.
    fn default() -> Self {
        LookupConfig {
            min_ngram: 2,
            max_ngram: 4,
            max_len: 16,
            sites: 3,
            max_nodes: 32,
        }
    }
}

impl LookupConfig {
    /// Matches of `max_ngram` down to `min_ngram` tokens; continuations of up to `max_len` tokens
    /// from up to `sites` match sites; at most `max_nodes` nodes per proposal.
    ///
    /// # Errors
    /// When the n-gram lengths are not `1 <= min_ngram <= max_ngram <= MAX_NGRAM`, or `max_len`,
    /// `sites` or `max_nodes` is 0 or above [`MAX_LEN`], [`MAX_SITES`] or [`MAX_NODES`].
    pub fn new(
        min_ngram: usize,
        max_ngram: usize,
        max_len: usize,
        sites: usize,
        max_nodes: usize,
    ) -> Result<Self, LookupError> {
        if min_ngram == 0 || min_ngram > max_ngram || max_ngram > MAX_NGRAM {
            return Err(LookupError::NgramRange {
                min_ngram,
                max_ngram,
            });
        }
        for (name, value, max) in [
            ("max_len", max_len, MAX_LEN),
            ("sites", sites, MAX_SITES),
            ("max_nodes", max_nodes, MAX_NODES),
        ] {
            if value == 0 || value > max {
                return Err(LookupError::OutOfRange { name, value, max });
            }
        }
        Ok(LookupConfig {
            min_ngram,
            max_ngram,
            max_len,
            sites,
            max_nodes,
        })
    }

    /// The shortest match used.
    pub fn min_ngram(&self) -> usize {
        self.min_ngram
    }

    /// The longest match tried first.
    pub fn max_ngram(&self) -> usize {
        self.max_ngram
    }

    /// The longest continuation proposed from one site.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// The most match sites a proposal draws on.
    pub fn sites(&self) -> usize {
        self.sites
    }

    /// The most nodes of one proposal.
    pub fn max_nodes(&self) -> usize {
        self.max_nodes
    }
}

/// The latest positions that followed one n-gram, latest first.
#[derive(Clone, Copy, Debug, Default)]
struct Sites {
    at: [u32; MAX_SITES],
    len: u8,
}

impl Sites {
    fn push(&mut self, pos: u32, keep: usize) {
        self.at.copy_within(0..MAX_SITES - 1, 1);
        self.at[0] = pos;
        self.len = (usize::from(self.len) + 1).min(keep) as u8;
    }

    fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.at[..usize::from(self.len)].iter().map(|&p| p as usize)
    }
}

/// The keys are already well mixed: hashing them again would only cost time.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// The key of an n-gram: its tokens and its length, mixed.
fn gram_key(gram: impl Iterator<Item = Token>) -> u64 {
    let mut h: u64 = 0x243f_6a88_85a3_08d3;
    for t in gram {
        h = (h.rotate_left(23) ^ u64::from(t as u32)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

/// An incremental index of the committed tokens' n-grams.
#[derive(Clone, Debug)]
pub struct LookupIndex {
    config: LookupConfig,
    tokens: Vec<Token>,
    /// Key of an n-gram (every length in the configured range) → the positions that followed it.
    sites: HashMap<u64, Sites, BuildHasherDefault<KeyHasher>>,
}

impl LookupIndex {
    /// An empty index.
    pub fn new(config: LookupConfig) -> Self {
        LookupIndex {
            config,
            tokens: Vec::new(),
            sites: HashMap::default(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &LookupConfig {
        &self.config
    }

    /// The committed tokens indexed so far.
    pub fn tokens(&self) -> &[Token] {
        &self.tokens
    }

    /// Distinct n-grams held (at most `(max_ngram − min_ngram + 1)` per token).
    pub fn entries(&self) -> usize {
        self.sites.len()
    }

    /// Commits `tokens` after the ones indexed so far. Returns the work done (hash-map updates and
    /// tokens hashed): a constant per token.
    pub fn extend(&mut self, tokens: &[Token]) -> usize {
        let mut work = 0;
        for &t in tokens {
            // The n-grams that end just before the new token now have a continuation.
            let pos = self.tokens.len();
            self.tokens.push(t);
            for n in self.config.min_ngram..=self.config.max_ngram.min(pos) {
                let key = gram_key(self.tokens[pos - n..pos].iter().copied());
                self.sites
                    .entry(key)
                    .or_default()
                    .push(pos as u32, self.config.sites);
                work += n + 1;
            }
        }
        work
    }

    /// Candidates for the position after the committed tokens followed by `tail` (tokens not
    /// committed yet, such as a path of the speculation tree; empty at the root).
    ///
    /// The first chain continues the latest site of the longest matching n-gram; further sites of
    /// that length (latest first), then of shorter ones, add their continuations as a trie.
    pub fn propose(&self, tail: &[Token]) -> LookupProposal {
        let cfg = &self.config;
        let committed = self.tokens.len();
        let total = committed + tail.len();
        let at = |i: usize| -> Token {
            if i < committed {
                self.tokens[i]
            } else {
                tail[i - committed]
            }
        };
        let mut proposal = LookupProposal::default();
        let mut starts: Vec<usize> = Vec::with_capacity(cfg.sites);
        'lengths: for n in (cfg.min_ngram..=cfg.max_ngram.min(total)).rev() {
            let suffix = total - n..total;
            proposal.work += n + 1;
            let Some(sites) = self.sites.get(&gram_key(suffix.clone().map(at))) else {
                continue;
            };
            for pos in sites.iter() {
                // Rule out a collision of keys: the site's n-gram must be the suffix.
                proposal.work += n;
                if !(pos - n..pos)
                    .zip(suffix.clone())
                    .all(|(a, b)| at(a) == at(b))
                {
                    continue;
                }
                if starts.contains(&pos) {
                    continue;
                }
                if proposal.matched == 0 {
                    proposal.matched = n;
                }
                starts.push(pos);
                if starts.len() == cfg.sites {
                    break 'lengths;
                }
            }
        }
        let mut chain = Vec::with_capacity(cfg.max_len);
        for &start in &starts {
            chain.clear();
            for j in 0..cfg.max_len {
                let i = start + j;
                // Past the end: the continuation copies what it proposed itself.
                chain.push(if i < total { at(i) } else { chain[i - total] });
            }
            proposal.work += cfg.max_len;
            proposal.insert(&chain, cfg.max_nodes);
        }
        proposal
    }
}

/// Lookup candidates for one position: a trie of continuations, parents before children, siblings
/// in the order their sites were ranked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LookupProposal {
    tokens: Vec<Token>,
    shape: Vec<LookupNode>,
    /// First child of each node, and of the top (last entry).
    first_child: Vec<Option<usize>>,
    next_sibling: Vec<Option<usize>>,
    top_first: Option<usize>,
    matched: usize,
    work: usize,
}

impl LookupProposal {
    /// No candidates.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Number of candidate nodes.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether nothing matched.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The token of every node.
    pub fn tokens(&self) -> &[Token] {
        &self.tokens
    }

    /// The trie's shape (parent, rank among lookup siblings, depth), in node order.
    pub fn shape(&self) -> &[LookupNode] {
        &self.shape
    }

    /// Length of the longest n-gram matched (0 when none).
    pub fn matched(&self) -> usize {
        self.matched
    }

    /// Work done to build the proposal (hash probes, tokens compared and copied): bounded by the
    /// settings, independent of the history's length.
    pub fn work(&self) -> usize {
        self.work
    }

    /// The children of `node` (of the top with `None`), in rank order.
    pub fn children(&self, node: Option<usize>) -> impl Iterator<Item = usize> + '_ {
        let first = match node {
            None => self.top_first,
            Some(v) => self.first_child.get(v).copied().flatten(),
        };
        std::iter::successors(first, |&c| self.next_sibling[c])
    }

    /// The tokens of the first chain (the top's first child, its first child, …).
    pub fn first_chain(&self) -> Vec<Token> {
        let mut out = Vec::new();
        let mut next = self.top_first;
        while let Some(v) = next {
            out.push(self.tokens[v]);
            next = self.first_child[v];
        }
        out
    }

    fn insert(&mut self, chain: &[Token], max_nodes: usize) {
        let mut parent: Option<usize> = None;
        for &token in chain {
            let mut child = match parent {
                None => self.top_first,
                Some(p) => self.first_child[p],
            };
            let mut last = None;
            let mut rank = 1;
            while let Some(c) = child {
                self.work += 1;
                if self.tokens[c] == token {
                    break;
                }
                last = Some(c);
                rank += 1;
                child = self.next_sibling[c];
            }
            let node = match child {
                Some(c) => c,
                None => {
                    if self.tokens.len() >= max_nodes {
                        return;
                    }
                    let id = self.tokens.len();
                    self.tokens.push(token);
                    self.shape.push(LookupNode {
                        parent,
                        rank,
                        depth: parent.map_or(1, |p| self.shape[p].depth + 1),
                    });
                    self.first_child.push(None);
                    self.next_sibling.push(None);
                    match (last, parent) {
                        (Some(l), _) => self.next_sibling[l] = Some(id),
                        (None, None) => self.top_first = Some(id),
                        (None, Some(p)) => self.first_child[p] = Some(id),
                    }
                    id
                }
            };
            parent = Some(node);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(tokens: &[Token], cfg: LookupConfig) -> LookupIndex {
        let mut ix = LookupIndex::new(cfg);
        ix.extend(tokens);
        ix
    }

    fn cfg(min: usize, max: usize, len: usize, sites: usize) -> LookupConfig {
        LookupConfig::new(min, max, len, sites, 64).unwrap()
    }

    #[test]
    fn the_longest_match_wins() {
        // "1 2" was followed by 7 most recently, but "9 1 2" (longer) was followed by 5.
        let ix = index(&[9, 1, 2, 5, 6, 0, 1, 2, 7, 8, 3, 9, 1, 2], cfg(1, 4, 3, 1));
        let p = ix.propose(&[]);
        assert_eq!(p.matched(), 3);
        assert_eq!(p.first_chain(), vec![5, 6, 0]);
    }

    #[test]
    fn the_most_recent_site_wins_among_equal_lengths() {
        let ix = index(&[1, 2, 5, 0, 1, 2, 6, 3, 1, 2], cfg(2, 4, 2, 1));
        let p = ix.propose(&[]);
        assert_eq!(p.matched(), 2);
        assert_eq!(p.first_chain(), vec![6, 3]);
        // With more sites, the older continuation becomes a sibling of rank 2.
        let ix = index(&[1, 2, 5, 0, 1, 2, 6, 3, 1, 2], cfg(2, 4, 2, 3));
        let p = ix.propose(&[]);
        assert_eq!(p.tokens(), &[6, 3, 5, 0]);
        let ranks: Vec<(Option<usize>, u32, u32)> = p
            .shape()
            .iter()
            .map(|n| (n.parent, n.rank, n.depth))
            .collect();
        assert_eq!(
            ranks,
            vec![(None, 1, 1), (Some(0), 1, 2), (None, 2, 1), (Some(2), 1, 2)]
        );
    }

    #[test]
    fn agreeing_sites_share_their_prefix() {
        // Both sites continue with 3 4, then diverge.
        let ix = index(&[1, 2, 3, 4, 5, 1, 2, 3, 4, 6, 1, 2], cfg(2, 2, 3, 2));
        let p = ix.propose(&[]);
        assert_eq!(p.first_chain(), vec![3, 4, 6]);
        assert_eq!(p.len(), 4);
        assert_eq!(p.tokens()[3], 5);
        assert_eq!(p.shape()[3].rank, 2);
        assert_eq!(p.shape()[3].depth, 3);
    }

    #[test]
    fn no_match_proposes_nothing() {
        let ix = index(&[1, 2, 3, 4, 5, 6], LookupConfig::default());
        let p = ix.propose(&[]);
        assert!(p.is_empty());
        assert_eq!(p.matched(), 0);
        // A single repeated token is below the default shortest match.
        let ix = index(&[1, 2, 3, 1], LookupConfig::default());
        assert!(ix.propose(&[]).is_empty());
        assert!(index(&[], LookupConfig::default()).propose(&[]).is_empty());
    }

    #[test]
    fn the_tail_extends_the_suffix_and_the_copy_overlaps() {
        let ix = index(&[4, 5, 6, 7, 8, 4], cfg(2, 2, 4, 1));
        // Committed "... 4", tail "5": matches "4 5" at the start.
        assert_eq!(ix.propose(&[5]).first_chain(), vec![6, 7, 8, 4]);
        // A period-2 pattern continues past the end of the history.
        let ix = index(&[1, 2, 1, 2], cfg(2, 2, 5, 1));
        assert_eq!(ix.propose(&[]).first_chain(), vec![1, 2, 1, 2, 1]);
    }

    #[test]
    fn the_index_grows_as_tokens_are_committed() {
        let mut ix = LookupIndex::new(cfg(2, 2, 2, 1));
        ix.extend(&[1, 2, 3]);
        assert!(ix.propose(&[]).is_empty());
        ix.extend(&[1]);
        assert!(ix.propose(&[]).is_empty());
        ix.extend(&[2]);
        assert_eq!(ix.propose(&[]).first_chain(), vec![3, 1]);
    }

    #[test]
    fn the_node_limit_holds() {
        let cfg = LookupConfig::new(1, 1, 10, 4, 12).unwrap();
        let ix = index(&[0, 1, 2, 3, 4, 0, 5, 6, 7, 0, 8, 9, 0, 3, 0], cfg);
        let p = ix.propose(&[]);
        assert_eq!(p.len(), 12);
        assert_eq!(p.first_chain().len(), 10);
        for (i, node) in p.shape().iter().enumerate() {
            assert!(node.parent.is_none_or(|q| q < i), "parents come first");
        }
    }

    #[test]
    fn work_per_step_does_not_grow_with_the_history() {
        // Repetitive text (every n-gram has many sites) of 80 and of 8000 tokens: the work of a
        // proposal and of committing a token is the same constant, far below one pass over the
        // history.
        let cfg = LookupConfig::default();
        let text =
            |len: usize| -> Vec<Token> { (0..len).map(|i| ((i * 7) % 13) as Token).collect() };
        let bound = (cfg.max_ngram() + 1) * (cfg.max_ngram() - cfg.min_ngram() + 1)
            + cfg.max_ngram() * MAX_SITES * (cfg.max_ngram() - cfg.min_ngram() + 1)
            + cfg.sites() * cfg.max_len() * (1 + cfg.sites());
        let mut works = Vec::new();
        for len in [80, 8000] {
            let mut ix = index(&text(len), cfg);
            let p = ix.propose(&[]);
            assert!(!p.is_empty());
            assert!(p.work() <= bound, "{} > {bound}", p.work());
            let per_token = ix.extend(&[3]);
            assert!(per_token <= (cfg.max_ngram() + 1) * 3);
            assert!(ix.entries() <= ix.tokens().len() * 3);
            works.push((p.work(), per_token));
        }
        assert_eq!(works[0], works[1]);
        assert!(bound < 8000 / 10);
    }

    #[test]
    fn settings_are_checked() {
        assert!(LookupConfig::new(0, 3, 8, 2, 8).is_err());
        assert!(LookupConfig::new(3, 2, 8, 2, 8).is_err());
        assert!(LookupConfig::new(1, MAX_NGRAM + 1, 8, 2, 8).is_err());
        assert!(LookupConfig::new(1, 2, 0, 2, 8).is_err());
        assert!(LookupConfig::new(1, 2, 8, MAX_SITES + 1, 8).is_err());
        assert_eq!(
            LookupConfig::new(1, 2, 8, 2, 0).unwrap_err().to_string(),
            "max_nodes = 0 is outside 1..=1024"
        );
        let d = LookupConfig::default();
        assert_eq!(
            LookupConfig::new(
                d.min_ngram(),
                d.max_ngram(),
                d.max_len(),
                d.sites(),
                d.max_nodes()
            ),
            Ok(d)
        );
    }
}
