//! From tokens to streamed text: UTF-8 reassembly, end of generation, stop strings.

use canopy_spec::{Flow, Source, StopReason, Token, TokenSink};
use canopy_worker::EventSink;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

/// Turns output tokens into text events for the caller.
pub struct TextSink<'a> {
    model: &'a LlamaModel,
    events: &'a mut EventSink,
    stop: &'a [String],
    /// Bytes of an incomplete UTF-8 character.
    partial: Vec<u8>,
    /// Decoded text not yet sent because it might begin a stop string.
    held: String,
    /// Everything sent.
    pub text: String,
    pub provenance: Vec<Source>,
    /// The ids of the output tokens, one per provenance entry.
    pub tokens: Vec<Token>,
}

impl<'a> TextSink<'a> {
    pub fn new(model: &'a LlamaModel, events: &'a mut EventSink, stop: &'a [String]) -> Self {
        TextSink {
            model,
            events,
            stop,
            partial: Vec::new(),
            held: String::new(),
            text: String::new(),
            provenance: Vec::new(),
            tokens: Vec::new(),
        }
    }

    /// Sends whatever is still held (the end of generation without a stop string).
    pub fn flush(&mut self) {
        if !self.partial.is_empty() {
            let tail = String::from_utf8_lossy(&self.partial).into_owned();
            self.partial.clear();
            self.held.push_str(&tail);
        }
        if !self.held.is_empty() {
            let text = std::mem::take(&mut self.held);
            self.send(text, Vec::new());
        }
    }

    fn send(&mut self, text: String, sources: Vec<Source>) {
        self.text.push_str(&text);
        self.events.token(text, sources);
    }
}

/// Moves the longest valid UTF-8 prefix of `bytes` into a string.
fn take_utf8(bytes: &mut Vec<u8>) -> String {
    let valid = match std::str::from_utf8(bytes) {
        Ok(s) => s.len(),
        Err(e) if e.error_len().is_some() => {
            // Invalid bytes (not just an unfinished character): replace them.
            let s = String::from_utf8_lossy(bytes).into_owned();
            bytes.clear();
            return s;
        }
        Err(e) => e.valid_up_to(),
    };
    let rest = bytes.split_off(valid);
    String::from_utf8(std::mem::replace(bytes, rest)).unwrap_or_default()
}

/// Length of the longest suffix of `text` that is a proper prefix of one of `stops`.
fn held_suffix(text: &str, stops: &[String]) -> usize {
    let mut best = 0;
    for stop in stops {
        for (i, _) in stop.char_indices().skip(1) {
            if i > best && text.ends_with(&stop[..i]) {
                best = i;
            }
        }
    }
    best
}

impl TokenSink for TextSink<'_> {
    fn push(&mut self, token: Token, source: Source) -> Flow {
        let vocab = self.model.vocab();
        if vocab.is_eog(LlamaToken(token)) {
            return Flow::Stop(StopReason::Eos);
        }
        let piece = vocab.token_to_piece(LlamaToken(token), false, None);
        self.partial.extend_from_slice(&piece);
        let decoded = take_utf8(&mut self.partial);
        self.held.push_str(&decoded);
        self.provenance.push(source);
        self.tokens.push(token);
        if let Some(at) = self
            .stop
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min()
        {
            let before = self.held[..at].to_owned();
            self.held.clear();
            self.provenance.pop();
            self.tokens.pop();
            self.send(before, Vec::new());
            return Flow::Stop(StopReason::Stop);
        }
        let keep = held_suffix(&self.held, self.stop);
        let ready = self.held.len() - keep;
        let out: String = self.held.drain(..ready).collect();
        self.send(out, vec![source]);
        Flow::Continue
    }

    fn cancelled(&self) -> bool {
        self.events.is_cancelled()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_is_reassembled() {
        let mut b = vec![0xE2, 0x82];
        assert_eq!(take_utf8(&mut b), "");
        b.push(0xAC);
        assert_eq!(take_utf8(&mut b), "€");
        assert!(b.is_empty());
    }

    #[test]
    fn holds_possible_stop_prefixes() {
        let stops = vec!["\nUser:".to_owned()];
        assert_eq!(held_suffix("hello\nUs", &stops), 3);
        assert_eq!(held_suffix("hello", &stops), 0);
    }
}
