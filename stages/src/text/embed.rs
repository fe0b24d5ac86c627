//! Code embeddings for pairing programs by similarity (`mine_pairs`).
//!
//! [`Embedder`] turns programs into unit vectors whose dot product is their
//! cosine similarity. [`Lexical`] needs no weights and is the default: hashed
//! counts of code tokens and token bigrams, so renamed variables or an edited
//! operator lower the similarity in proportion to how much of the program
//! they touch. With the `torch` feature, `model::bert::BertEmbedder` loads a
//! BERT/RoBERTa encoder (all-MiniLM-L6-v2, UniXcoder) from safetensors and
//! `tokenizer.json` and mean-pools its last layer over the real tokens.

use crate::api::StageError;

pub trait Embedder {
    /// A stable name for the cache key and the artifact.
    fn identity(&self) -> String;
    /// One L2-normalised vector per text, in order.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, StageError>;
}

/// The dot product of two unit vectors: their cosine similarity.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

pub fn normalise(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

/// Hashed bag of code tokens and token bigrams, sublinear counts.
pub struct Lexical {
    pub dims: usize,
}

impl Default for Lexical {
    fn default() -> Self {
        Lexical { dims: 4096 }
    }
}

impl Embedder for Lexical {
    fn identity(&self) -> String {
        format!("lexical-v1-{}", self.dims)
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, StageError> {
        Ok(texts.iter().map(|t| self.embed_one(t)).collect())
    }
}

impl Lexical {
    fn embed_one(&self, text: &str) -> Vec<f32> {
        let tokens = code_tokens(text);
        let mut counts = vec![0f32; self.dims];
        let mut bump = |feature: &[&str]| {
            let mut hasher = blake3::Hasher::new();
            for part in feature {
                hasher.update(part.as_bytes());
                hasher.update(&[0]);
            }
            let h = hasher.finalize();
            let bytes: [u8; 8] = h.as_bytes()[..8].try_into().unwrap_or([0; 8]);
            counts[(u64::from_le_bytes(bytes) % self.dims as u64) as usize] += 1.0;
        };
        for (i, tok) in tokens.iter().enumerate() {
            bump(&[tok]);
            if let Some(next) = tokens.get(i + 1) {
                bump(&[tok, next]);
            }
        }
        for c in counts.iter_mut() {
            if *c > 0.0 {
                *c = 1.0 + c.ln();
            }
        }
        normalise(&mut counts);
        counts
    }
}

/// Identifiers, numbers, string literals and operator characters; comments,
/// triple-quoted strings (docstrings) and whitespace are dropped, so layout
/// and the shared problem statement do not count.
pub fn code_tokens(text: &str) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'#' {
            while i < bytes.len() && bytes[i] != b'\n' {
                i += 1;
            }
        } else if c.is_ascii_whitespace() {
            i += 1;
        } else if c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80 {
            let start = i;
            while i < bytes.len()
                && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] >= 0x80)
            {
                i += 1;
            }
            out.push(&text[start..i]);
        } else if (c == b'"' || c == b'\'') && bytes[i..].starts_with(&[c, c, c]) {
            // Docstrings say what the problem is, not how it is solved:
            // programs of one problem share them, so they would hide the code's differences.
            let quote = [c, c, c];
            i += 3;
            while i < bytes.len() && !bytes[i..].starts_with(&quote) {
                if bytes[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i = (i + 3).min(bytes.len());
        } else if c == b'"' || c == b'\'' {
            let start = i;
            i += 1;
            while i < bytes.len() && bytes[i] != c && bytes[i] != b'\n' {
                if bytes[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i = (i + 1).min(bytes.len());
            out.push(&text[start..i]);
        } else {
            out.push(&text[i..i + 1]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sim(a: &str, b: &str) -> f32 {
        let e = Lexical::default().embed(&[a, b]).unwrap();
        cosine(&e[0], &e[1])
    }

    #[test]
    fn layout_and_comments_do_not_count_but_edits_do() {
        let a = "def f(xs):\n    return sum(xs) + 1\n";
        assert!((sim(a, "def f(xs):  # add one\n\n    return sum( xs ) + 1") - 1.0).abs() < 1e-6);
        let small_edit = sim(a, "def f(xs):\n    return sum(xs) - 1\n");
        let rewrite = sim(
            a,
            "def f(xs):\n    total = 0\n    for x in xs:\n        total += x\n    return total + 1\n",
        );
        assert!(small_edit > 0.7 && small_edit < 1.0, "{small_edit}");
        assert!(rewrite < small_edit, "{rewrite} vs {small_edit}");
    }

    #[test]
    fn tokens_keep_strings_whole_and_drop_comments() {
        assert_eq!(
            code_tokens("x = 'a b'  # c\nprint(x)"),
            vec!["x", "=", "'a b'", "print", "(", "x", ")"]
        );
        assert_eq!(
            code_tokens("def f():\n    \"\"\"Doc 'q' \\\"\"\" x.\"\"\"\n    return 1"),
            vec!["def", "f", "(", ")", ":", "return", "1"]
        );
    }
}
