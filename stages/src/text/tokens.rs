//! Token counting and budgets with OpenAI's BPE encodings (tiktoken's
//! `cl100k_base`, which the paper's trace budgets used, and `o200k_base`, the
//! encoding of gpt-4o-mini that its SFT filter used). The BPE tables ship
//! inside the `tiktoken-rs` crate, so counting needs no download.

use serde::{Deserialize, Serialize};
use tiktoken_rs::CoreBPE;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Tokenizer {
    #[default]
    #[serde(rename = "cl100k_base", alias = "cl100k")]
    Cl100k,
    #[serde(rename = "o200k_base", alias = "o200k", alias = "gpt-4o-mini")]
    O200k,
}

impl Tokenizer {
    pub const NAMES: &'static [&'static str] = &["cl100k_base", "o200k_base"];

    pub fn parse(name: &str) -> Option<Tokenizer> {
        match name {
            "cl100k_base" | "cl100k" => Some(Tokenizer::Cl100k),
            "o200k_base" | "o200k" | "gpt-4o-mini" => Some(Tokenizer::O200k),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Tokenizer::Cl100k => "cl100k_base",
            Tokenizer::O200k => "o200k_base",
        }
    }

    fn bpe(self) -> &'static CoreBPE {
        match self {
            Tokenizer::Cl100k => tiktoken_rs::cl100k_base_singleton(),
            Tokenizer::O200k => tiktoken_rs::o200k_base_singleton(),
        }
    }

    /// Tokens in `text`; special-token strings count as plain text.
    pub fn count(self, text: &str) -> usize {
        self.bpe().encode_ordinary(text).len()
    }

    /// `text` cut to its first `max` tokens (never inside a character), and
    /// the token count of the whole text.
    pub fn truncate(self, text: &str, max: usize) -> (String, usize) {
        let bpe = self.bpe();
        let tokens = bpe.encode_ordinary(text);
        if tokens.len() <= max {
            return (text.to_string(), tokens.len());
        }
        let mut keep = max;
        loop {
            match bpe.decode_bytes(&tokens[..keep]).map(String::from_utf8) {
                Ok(Ok(s)) => return (s, tokens.len()),
                // A character split across tokens: drop tokens until whole.
                _ if keep > 0 => keep -= 1,
                _ => return (String::new(), tokens.len()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_match_tiktoken() {
        // The OpenAI cookbook's worked example ("How to count tokens with tiktoken").
        assert_eq!(Tokenizer::Cl100k.count("tiktoken is great!"), 6);
        assert_eq!(Tokenizer::Cl100k.count("hello world"), 2);
        assert_eq!(Tokenizer::O200k.count("hello world"), 2);
        // A special token's text is counted as ordinary text, not one token.
        assert!(Tokenizer::Cl100k.count("<|endoftext|>") > 1);
    }

    #[test]
    fn truncation_never_splits_a_character() {
        let text = "é".repeat(50) + "日本語のテキスト";
        let (cut, full) = Tokenizer::Cl100k.truncate(&text, 7);
        assert!(full > 7);
        assert!(Tokenizer::Cl100k.count(&cut) <= 7);
        assert!(text.starts_with(&cut));
        let (same, n) = Tokenizer::Cl100k.truncate("short", 10);
        assert_eq!((same.as_str(), n), ("short", 1));
    }
}
