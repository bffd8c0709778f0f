//! The seam between the speculation loop and an inference library.

use crate::Token;

/// One node to decode: a token hung below an earlier node of the pending tree, or directly on the
/// committed prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeIn {
    pub token: Token,
    /// Index into the pending tree (every node passed to [`TreeModel::decode`] since the last
    /// commit, in order), or `None` to hang the node on the committed prefix.
    pub parent: Option<usize>,
    /// Whether the logits of this node are wanted.
    pub logits: bool,
}

/// Failure of a model operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// The context cannot hold the tokens.
    #[error("the context is full ({n_ctx} tokens)")]
    ContextFull { n_ctx: usize },
    /// The tree needs more leaves (sequences) than the context was created with.
    #[error("the tree has more leaves than the {max} sequences of the context")]
    TooManyLeaves { max: usize },
    /// The backend failed.
    #[error("decode failed: {0}")]
    Decode(String),
    /// The caller broke the contract (a parent after its child, an unknown index).
    #[error("invalid tree: {0}")]
    InvalidTree(String),
}

/// A causal language model that can decode a tree of tokens hanging off a committed prefix.
///
/// The committed prefix is the conversation so far; the *pending tree* collects the nodes decoded
/// since the last [`commit`](TreeModel::commit). Each node attends to the committed prefix and its
/// own ancestors only.
pub trait TreeModel {
    /// Vocabulary size (length of a logits row).
    fn n_vocab(&self) -> usize;
    /// Context size in tokens.
    fn n_ctx(&self) -> usize;
    /// Tokens in the committed prefix.
    fn n_past(&self) -> usize;
    /// The most tokens one decode may carry.
    fn max_batch(&self) -> usize;

    /// Appends `tokens` to the committed prefix (no logits). Only valid with an empty pending tree.
    ///
    /// # Errors
    /// [`ModelError::ContextFull`] when they do not fit; [`ModelError::Decode`] on backend failure.
    fn prefill(&mut self, tokens: &[Token]) -> Result<(), ModelError>;

    /// Decodes `nodes` into the pending tree in one pass. Parents precede their children.
    ///
    /// # Errors
    /// When the tree does not fit the context, needs too many sequences, or the backend fails.
    fn decode(&mut self, nodes: &[NodeIn]) -> Result<(), ModelError>;

    /// Logits of the `i`-th node that asked for logits in the last [`decode`](TreeModel::decode).
    fn logits(&self, i: usize) -> &[f32];

    /// Keeps `path` (pending-tree indices forming a chain that starts at a node hung on the committed
    /// prefix) as the continuation of the committed prefix and drops every other pending node.
    ///
    /// # Errors
    /// [`ModelError::InvalidTree`] when `path` is not such a chain.
    fn commit(&mut self, path: &[usize]) -> Result<(), ModelError>;
}
