//! [`TreeModel`] over a llama.cpp context, with the leaf-sequence scheme of BRIEF §3.
//!
//! The committed prefix lives in sequence 0. Every leaf of the pending tree owns a sequence id
//! 1..=255 that holds exactly its root-to-leaf path (plus the prefix, shared by metadata copies in
//! the unified KV cache); a node is tagged with the sequences of every leaf below it, so the
//! attention mask lets it see exactly its ancestors. Committing copies the accepted path's cells
//! into sequence 0 and clears every other sequence.
//!
//! # Cells in position order
//!
//! llama.cpp's CPU attention visits a sequence's cells in cell order, so the same tokens held in
//! other cells give other rounding. Target-only decoding holds position p in cell p; to give the
//! same logits, every sequence's cells must be in position order too. This adapter keeps the
//! invariant *the committed prefix fills cells `0..n` in position order and no other cell is in
//! use* between steps:
//!
//! - a decode lays its nodes out depth first, first child first, so the draft's first-choice
//!   chain occupies the first cells of the tree (llama.cpp gives a batch the first free cells in
//!   batch order);
//! - a commit keeps the accepted nodes only as long as they are the tree's first cells; it drops
//!   every other cell, and the rest of the accepted path (the *backlog*) is decoded again at the
//!   head of the next decode or prefill, where it lands in the next cells in position order.
//!
//! [`LlamaTree::cells`] reads the cache's cells back from llama.cpp to check this.

use std::collections::HashMap;

use canopy_spec::{ModelError, NodeIn, Token, TreeModel};
use std::num::NonZeroU32;

use canopy_worker::HandlerError;
use llama_cpp_2::context::params::{KvCacheType, LlamaContextParams};
use llama_cpp_2::context::session::LlamaStateSeqFlags;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

/// Sequence ids available to leaves: llama.cpp allows `LLAMA_MAX_SEQ` = 256 sequences, 0 is the prefix.
pub const MAX_SEQ: usize = 256;
// The planner's leaf limit is this engine's: one sequence per leaf besides the prefix's.
const _: () = assert!(canopy_plan::ENGINE.max_leaves + 1 == MAX_SEQ);

#[derive(Clone, Debug)]
struct Pending {
    token: Token,
    pos: i32,
    parent: Option<usize>,
    /// A sequence that holds this node's root-to-node path (and possibly deeper nodes).
    seq: i32,
    /// The cell this node got, counted from the first cell after the committed prefix.
    slot: usize,
}

/// What a commit does with accepted nodes that are not the first cells of the tree.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CellReuse {
    /// Drop them and decode them again at the head of the next pass, so that every sequence's
    /// cells stay in position order: logits bit-identical to target-only decoding where the
    /// model's kernels are batch-invariant. The default.
    #[default]
    Ordered,
    /// Keep them where they are; later tokens fill the freed cells below them. Saves the
    /// re-decoded tokens but changes the summation order of attention (logits move by up to
    /// about 0.6 on SmolLM2). For measuring what [`CellReuse::Ordered`] costs.
    Refill,
}

/// Element types of a context's KV cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvTypes {
    /// f16 keys, q8_0 values, flash attention on. llama.cpp's CPU flash attention has faster
    /// paths for f16 and f32 caches that it takes by batch shape (a tiled one for 64 or more
    /// queries, one split over threads for a single query over 512 or more cells); they round
    /// differently, so a token's logits would depend on how it was batched. With q8_0 values it
    /// always takes its one sequential path: logits independent of batching at every tree size
    /// and context length (tests/exactness.rs), and half the value memory. For caches in host
    /// memory, where attention runs on the CPU.
    BatchInvariant,
    /// llama.cpp's defaults (f16 keys and values), for caches on a GPU.
    Default,
}

/// One occupied cell of the KV cache, as llama.cpp holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cell {
    pub pos: i32,
    /// The sequences the cell belongs to, ascending.
    pub seqs: Vec<i32>,
}

/// One llama.cpp context used as a [`TreeModel`].
pub struct LlamaTree<'m> {
    ctx: LlamaContext<'m>,
    batch: LlamaBatch<'static>,
    n_batch: usize,
    n_seq: usize,
    n_vocab: usize,
    /// Committed tokens, including the backlog.
    n_past: usize,
    /// Committed tokens whose cells were dropped to keep the cells in position order; decoded at
    /// the head of the next decode or prefill (positions `n_past - backlog.len()..n_past`).
    backlog: Vec<Token>,
    reuse: CellReuse,
    pending: Vec<Pending>,
    /// sequence id -> the pending node at the end of its path.
    tips: HashMap<i32, usize>,
    /// Batch rows of the nodes that asked for logits in the last decode.
    rows: Vec<i32>,
    /// The committed tokens (`n_past` of them, the backlog last): what the cache holds, so a
    /// later conversation sharing their prefix can reuse its cells ([`LlamaTree::resume`]).
    history: Vec<Token>,
    /// Set by [`LlamaTree::resume`]: the next prefill starts with these tokens, which are cached.
    resumed: Option<usize>,
}

impl<'m> LlamaTree<'m> {
    /// Wraps a context created with `n_batch == n_ubatch`, `kv_unified` and `n_seq_max == n_seq`.
    pub fn new(ctx: LlamaContext<'m>, n_vocab: usize, n_seq: usize) -> Self {
        let n_batch = ctx.n_batch() as usize;
        let n_seq = n_seq.clamp(1, MAX_SEQ);
        LlamaTree {
            batch: LlamaBatch::new(n_batch, n_seq as i32),
            ctx,
            n_batch,
            n_seq,
            n_vocab,
            n_past: 0,
            backlog: Vec::new(),
            reuse: CellReuse::Ordered,
            pending: Vec::new(),
            tips: HashMap::new(),
            rows: Vec::new(),
            history: Vec::new(),
            resumed: None,
        }
    }

    /// Creates a context for tree decoding: `n_batch == n_ubatch` (one micro-batch per tree, so
    /// streamed weights cross PCIe once per pass), a unified KV cache and [`MAX_SEQ`] sequences.
    ///
    /// # Errors
    /// When llama.cpp cannot create the context (for example out of memory).
    pub fn create(
        backend: &LlamaBackend,
        threads: i32,
        model: &'m LlamaModel,
        n_ctx: u32,
        n_batch: usize,
        kv: KvTypes,
    ) -> Result<LlamaTree<'m>, HandlerError> {
        Self::create_with(backend, threads, model, n_ctx, n_batch, kv, true)
    }

    /// [`LlamaTree::create`] with llama.cpp's op offload on or off: off, weights in host memory
    /// are always run by the CPU, whatever the batch (`GGML_OP_OFFLOAD_MIN_BATCH` is ignored).
    ///
    /// # Errors
    /// As [`LlamaTree::create`].
    pub fn create_with(
        backend: &LlamaBackend,
        threads: i32,
        model: &'m LlamaModel,
        n_ctx: u32,
        n_batch: usize,
        kv: KvTypes,
        op_offload: bool,
    ) -> Result<LlamaTree<'m>, HandlerError> {
        // llama.cpp needs room for a whole batch (and aborts on small contexts with many sequences).
        let n_ctx = n_ctx.max(n_batch as u32).max(MAX_SEQ as u32);
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(n_ctx))
            .with_n_batch(n_batch as u32)
            .with_n_ubatch(n_batch as u32)
            .with_n_seq_max(MAX_SEQ as u32)
            .with_kv_unified(true)
            // Flash attention (llama.cpp's default where supported): on the CPU, with the value
            // types of `KvTypes::BatchInvariant` and cells in position order, a tree decode is
            // bit-identical to decoding each path token by token, which the plain attention path
            // is not (tests/exactness.rs).
            .with_n_threads(threads)
            .with_n_threads_batch(threads)
            .with_op_offload(op_offload);
        let params = match kv {
            KvTypes::BatchInvariant => params
                .with_type_v(KvCacheType::Q8_0)
                .with_flash_attention_policy(llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_ENABLED),
            KvTypes::Default => params,
        };
        let ctx = model.new_context(backend, params).map_err(|e| {
            HandlerError::internal(format!("could not create a llama.cpp context: {e}"))
        })?;
        Ok(LlamaTree::new(ctx, model.n_vocab() as usize, MAX_SEQ))
    }

    /// Chooses what commits do with accepted cells out of order (default [`CellReuse::Ordered`]).
    pub fn set_cell_reuse(&mut self, reuse: CellReuse) {
        self.reuse = reuse;
    }

    /// Committed tokens waiting to be decoded again at the head of the next pass.
    pub fn backlog(&self) -> usize {
        self.backlog.len()
    }

    /// The occupied cells of the KV cache in cell order, read back from llama.cpp's own
    /// serialisation of the cache (its metadata part), for checks of the cell layout.
    ///
    /// Only for models with one position per token (not M-RoPE).
    ///
    /// # Errors
    /// When llama.cpp's serialisation is not in the expected layout.
    pub fn cells(&self) -> Result<Vec<Cell>, ModelError> {
        let flags = LlamaStateSeqFlags::empty();
        let size = self.ctx.state_seq_get_size_ext(-1, flags);
        let mut bytes = vec![0u8; size];
        // SAFETY: `bytes` holds the `size` bytes llama.cpp just reported for this state, and the
        // context is not used by anything else in between.
        let written = unsafe {
            self.ctx
                .state_seq_get_data_ext(bytes.as_mut_ptr(), -1, flags)
        };
        let bad = || ModelError::Decode("unexpected layout of the KV cache state".into());
        if written != size {
            return Err(bad());
        }
        let mut at = 0usize;
        let mut word = || -> Result<u32, ModelError> {
            let b = bytes.get(at..at + 4).ok_or_else(bad)?;
            at += 4;
            Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        };
        // llama.cpp's magic and the sequence id (-1: all), one stream (a unified cache), its
        // cell count and, per cell, the position, the number of sequences and their ids.
        const MAGIC: u32 = 0xaf14_3cd8;
        if word()? != MAGIC || word()? != u32::MAX || word()? != 1 {
            return Err(bad());
        }
        let count = word()? as usize;
        let mut cells = Vec::with_capacity(count.min(1 << 20));
        for _ in 0..count {
            let pos = word()? as i32;
            let n = word()? as usize;
            if n > MAX_SEQ {
                return Err(bad());
            }
            let seqs = (0..n)
                .map(|_| word().map(|s| s as i32))
                .collect::<Result<Vec<_>, _>>()?;
            cells.push(Cell { pos, seqs });
        }
        Ok(cells)
    }

    /// The underlying context.
    pub fn context(&self) -> &LlamaContext<'m> {
        &self.ctx
    }

    /// Forgets everything: empty KV cache, no prefix.
    pub fn reset(&mut self) {
        self.ctx.clear_kv_cache();
        self.n_past = 0;
        self.backlog.clear();
        self.pending.clear();
        self.tips.clear();
        self.rows.clear();
        self.history.clear();
        self.resumed = None;
    }

    /// The tokens whose cells the cache holds, in position order (cells `0..len`).
    pub fn cached_tokens(&self) -> &[Token] {
        &self.history[..self.n_past - self.backlog.len()]
    }

    /// How many leading tokens of `prompt` this cache holds and [`LlamaTree::resume`] would keep:
    /// the common prefix, less the prompt's last token (which the next pass decodes).
    pub fn reusable(&self, prompt: &[Token]) -> usize {
        self.cached_tokens()
            .iter()
            .zip(prompt)
            .take_while(|(a, b)| a == b)
            .count()
            .min(prompt.len().saturating_sub(1))
    }

    /// Prepares this context for a new generation over `prompt`, keeping the cells of the longest
    /// cached prefix it shares with `prompt` and dropping every later cell (an edited message keeps
    /// everything before its first changed token). The next [`TreeModel::prefill`] must begin with
    /// `prompt`'s tokens; it decodes only what is not cached. Returns the tokens kept.
    ///
    /// The cells kept are `0..p` in position order and the next ones are decoded into the cells
    /// after them, so the cache's layout is the one a fresh context would have.
    ///
    /// # Errors
    /// When llama.cpp cannot drop the cells.
    pub fn resume(&mut self, prompt: &[Token]) -> Result<usize, ModelError> {
        let keep = self.reusable(prompt);
        self.pending.clear();
        self.tips.clear();
        self.rows.clear();
        self.backlog.clear();
        self.clear_leaf_seqs()?;
        self.ctx
            .clear_kv_cache_seq(Some(0), Some(keep as u32), None)
            .map_err(|e| ModelError::Decode(e.to_string()))?;
        self.n_past = keep;
        self.history.truncate(keep);
        self.resumed = Some(keep);
        Ok(keep)
    }

    /// Highest position held by `seq` (-1 when empty).
    pub fn seq_pos_max(&self, seq: i32) -> i32 {
        self.ctx.kv_cache_seq_pos_max(seq)
    }

    /// Lowest position held by `seq` (-1 when empty).
    pub fn seq_pos_min(&self, seq: i32) -> i32 {
        self.ctx.kv_cache_seq_pos_min(seq)
    }

    /// Number of sequence ids the context was created with.
    pub fn n_seq(&self) -> usize {
        self.n_seq
    }

    /// Empties every leaf sequence (1..), leaving the committed prefix in sequence 0.
    fn clear_leaf_seqs(&mut self) -> Result<(), ModelError> {
        for s in 1..self.n_seq as u32 {
            if self.ctx.kv_cache_seq_pos_max(s as i32) >= 0 {
                self.ctx
                    .clear_kv_cache_seq(Some(s), None, None)
                    .map_err(|e| ModelError::Decode(e.to_string()))?;
            }
        }
        Ok(())
    }

    /// Checks that `nodes` fit the batch and the context and that each parent precedes its
    /// child; which of the new nodes have new children.
    fn check_nodes(&self, nodes: &[NodeIn]) -> Result<Vec<bool>, ModelError> {
        if self.backlog.len() + nodes.len() > self.n_batch {
            return Err(ModelError::InvalidTree(format!(
                "{} nodes (and {} committed tokens decoded again) exceed the batch size {}",
                nodes.len(),
                self.backlog.len(),
                self.n_batch
            )));
        }
        if self.n_past + self.pending.len() + nodes.len() > self.n_ctx() {
            return Err(ModelError::ContextFull {
                n_ctx: self.n_ctx(),
            });
        }
        let base = self.pending.len();
        let mut has_child = vec![false; nodes.len()];
        for (i, node) in nodes.iter().enumerate() {
            if let Some(p) = node.parent {
                if p >= base + i {
                    return Err(ModelError::InvalidTree(format!(
                        "node {} has parent {p}, which does not precede it",
                        base + i
                    )));
                }
                if p >= base {
                    has_child[p - base] = true;
                }
            }
        }
        Ok(has_child)
    }

    /// Gives every new leaf a sequence holding its ancestors (continuing its anchor's sequence
    /// where that ends at the anchor, else a copy of it), and every node the sequences of all
    /// leaves below it; also the sequences claimed.
    fn leaf_sequences(
        &mut self,
        nodes: &[NodeIn],
        has_child: &[bool],
    ) -> Result<(Vec<Vec<i32>>, Vec<i32>), ModelError> {
        let base = self.pending.len();
        let n = nodes.len();
        let mut seqs: Vec<Vec<i32>> = vec![Vec::new(); n];
        let mut claimed: Vec<i32> = Vec::new();
        for i in (0..n).filter(|&i| !has_child[i]) {
            // The nearest ancestor that was decoded before this call.
            let mut top = i;
            while let Some(p) = nodes[top].parent.filter(|&p| p >= base) {
                top = p - base;
            }
            let anchor = nodes[top].parent;
            let reusable = anchor.and_then(|e| {
                let s = self.pending[e].seq;
                (self.tips.get(&s) == Some(&e) && !claimed.contains(&s)).then_some(s)
            });
            let seq = match reusable {
                Some(s) => s,
                None => {
                    let s = self.free_seq(&claimed).ok_or(ModelError::TooManyLeaves {
                        max: self.n_seq - 1,
                    })?;
                    let (src, end) = match anchor {
                        Some(e) => (self.pending[e].seq, Some((self.pending[e].pos + 1) as u32)),
                        None => (0, None),
                    };
                    self.ctx
                        .copy_kv_cache_seq(src, s, None, end)
                        .map_err(|e| ModelError::Decode(e.to_string()))?;
                    s
                }
            };
            claimed.push(seq);
            seqs[i].push(seq);
        }
        for i in (0..n).rev() {
            if let Some(p) = nodes[i].parent.filter(|&p| p >= base) {
                let below = seqs[i].clone();
                seqs[p - base].extend(below);
            }
        }
        Ok((seqs, claimed))
    }

    /// Adds the backlog to the batch: committed tokens, seen by every new leaf and kept in
    /// sequence 0. A backlog only exists right after a commit, so every leaf sequence is new.
    fn add_backlog(&mut self, claimed: &[i32]) -> Result<(), ModelError> {
        let start = self.n_past - self.backlog.len();
        let mut backlog_seqs = claimed.to_vec();
        backlog_seqs.push(0);
        for (j, &t) in self.backlog.iter().enumerate() {
            self.batch
                .add(LlamaToken(t), pos_of(start + j), &backlog_seqs, false)
                .map_err(|e| ModelError::Decode(e.to_string()))?;
        }
        Ok(())
    }

    /// Adds `nodes` to the batch in depth-first order and records them as pending: positions
    /// and pending entries in the caller's order, batch rows in depth-first order.
    fn add_nodes(&mut self, nodes: &[NodeIn], seqs: &[Vec<i32>]) -> Result<(), ModelError> {
        let base = self.pending.len();
        let n = nodes.len();
        let order = depth_first(nodes, base);
        let mut row = vec![0i32; n];
        for (k, &i) in order.iter().enumerate() {
            row[i] = (self.backlog.len() + k) as i32;
        }
        let mut pos = vec![0i32; n];
        for (i, node) in nodes.iter().enumerate() {
            pos[i] = match node.parent {
                Some(p) if p >= base => pos[p - base] + 1,
                Some(p) => self.pending[p].pos + 1,
                None => pos_of(self.n_past),
            };
        }
        for &i in &order {
            self.batch
                .add(
                    LlamaToken(nodes[i].token),
                    pos[i],
                    &seqs[i],
                    nodes[i].logits,
                )
                .map_err(|e| ModelError::Decode(e.to_string()))?;
        }
        self.rows = (0..n)
            .filter(|&i| nodes[i].logits)
            .map(|i| row[i])
            .collect();
        for (i, node) in nodes.iter().enumerate() {
            self.pending.push(Pending {
                token: node.token,
                pos: pos[i],
                parent: node.parent,
                seq: seqs[i][0],
                slot: base + row[i] as usize - self.backlog.len(),
            });
        }
        Ok(())
    }

    fn free_seq(&self, claimed: &[i32]) -> Option<i32> {
        (1..self.n_seq as i32).find(|s| !self.tips.contains_key(s) && !claimed.contains(s))
    }

    fn run_batch(&mut self) -> Result<(), ModelError> {
        self.ctx
            .decode(&mut self.batch)
            .map_err(|e| ModelError::Decode(e.to_string()))
    }
}

fn pos_of(n_past: usize) -> i32 {
    i32::try_from(n_past).unwrap_or(i32::MAX)
}

impl TreeModel for LlamaTree<'_> {
    fn n_vocab(&self) -> usize {
        self.n_vocab
    }

    fn n_ctx(&self) -> usize {
        self.ctx.n_ctx() as usize
    }

    fn n_past(&self) -> usize {
        self.n_past
    }

    /// The batch size less the backlog, which rides at the head of the next decode.
    fn max_batch(&self) -> usize {
        self.n_batch - self.backlog.len()
    }

    fn prefill(&mut self, tokens: &[Token]) -> Result<(), ModelError> {
        if !self.pending.is_empty() {
            return Err(ModelError::InvalidTree(
                "prefill with a pending tree".into(),
            ));
        }
        // After `resume`, the first tokens are cached already.
        let tokens = match self.resumed.take() {
            Some(kept) => {
                if tokens.get(..kept) != Some(&self.history[..kept]) {
                    return Err(ModelError::InvalidTree(
                        "the prefill does not begin with the resumed prompt".into(),
                    ));
                }
                &tokens[kept..]
            }
            None => tokens,
        };
        if self.n_past + tokens.len() > self.n_ctx() {
            return Err(ModelError::ContextFull {
                n_ctx: self.n_ctx(),
            });
        }
        let start = self.n_past - self.backlog.len();
        let mut all = std::mem::take(&mut self.backlog);
        all.extend_from_slice(tokens);
        for (c, chunk) in all.chunks(self.n_batch).enumerate() {
            self.batch.clear();
            for (i, &t) in chunk.iter().enumerate() {
                self.batch
                    .add(
                        LlamaToken(t),
                        pos_of(start + c * self.n_batch + i),
                        &[0],
                        false,
                    )
                    .map_err(|e| ModelError::Decode(e.to_string()))?;
            }
            self.run_batch()?;
        }
        self.n_past += tokens.len();
        self.history.extend_from_slice(tokens);
        self.rows.clear();
        Ok(())
    }

    fn decode(&mut self, nodes: &[NodeIn]) -> Result<(), ModelError> {
        if nodes.is_empty() {
            self.rows.clear();
            return Ok(());
        }
        let has_child = self.check_nodes(nodes)?;
        let (seqs, claimed) = self.leaf_sequences(nodes, &has_child)?;
        let base = self.pending.len();
        self.batch.clear();
        self.add_backlog(&claimed)?;
        self.add_nodes(nodes, &seqs)?;
        for (i, s) in seqs.iter().enumerate() {
            if !has_child[i] {
                self.tips.insert(s[0], base + i);
            }
        }
        self.run_batch()?;
        self.backlog.clear();
        Ok(())
    }

    fn logits(&self, i: usize) -> &[f32] {
        self.ctx.get_logits_ith(self.rows[i])
    }

    fn commit(&mut self, path: &[usize]) -> Result<(), ModelError> {
        // `path` must be a chain starting at a node hung on the prefix.
        for (k, &v) in path.iter().enumerate() {
            let Some(node) = self.pending.get(v) else {
                return Err(ModelError::InvalidTree(format!("unknown node {v}")));
            };
            let expected_parent = k.checked_sub(1).map(|j| path[j]);
            if node.parent != expected_parent {
                return Err(ModelError::InvalidTree(format!(
                    "node {v} does not continue the committed path"
                )));
            }
        }
        // Keep the accepted nodes that sit in the tree's first cells; the rest is re-decoded.
        let kept = match self.reuse {
            CellReuse::Ordered => path
                .iter()
                .enumerate()
                .take_while(|&(k, &v)| self.pending[v].slot == k)
                .count(),
            CellReuse::Refill => path.len(),
        };
        if let Some(&last) = path[..kept].last() {
            let node = &self.pending[last];
            let (seq, end) = (node.seq, (node.pos + 1) as u32);
            self.ctx
                .copy_kv_cache_seq(seq, 0, Some(self.n_past as u32), Some(end))
                .map_err(|e| ModelError::Decode(e.to_string()))?;
        }
        self.clear_leaf_seqs()?;
        self.backlog
            .extend(path[kept..].iter().map(|&v| self.pending[v].token));
        self.history
            .extend(path.iter().map(|&v| self.pending[v].token));
        self.n_past += path.len();
        self.pending.clear();
        self.tips.clear();
        Ok(())
    }
}

/// The new nodes of one decode (indices into `nodes`) in depth-first order, each node's children
/// in the caller's order: a first-child chain occupies consecutive batch rows.
fn depth_first(nodes: &[NodeIn], base: usize) -> Vec<usize> {
    let n = nodes.len();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut roots = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        match node.parent {
            Some(p) if p >= base => children[p - base].push(i),
            _ => roots.push(i),
        }
    }
    let mut order = Vec::with_capacity(n);
    let mut stack: Vec<usize> = roots.into_iter().rev().collect();
    while let Some(i) = stack.pop() {
        order.push(i);
        stack.extend(children[i].iter().rev());
    }
    order
}
