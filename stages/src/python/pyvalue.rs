//! Python-faithful text for values that crossed the sandbox boundary.
//!
//! The sandbox worker sends Python values as tagged JSON (`encode` in
//! `sandbox/worker.py`: `{"tuple": [...]}`, `{"dict": [[k, v], ...]}`, big
//! ints as hex, floats as Python wrote them). Prompts show those values the way
//! Python prints them, so this module renders `repr` exactly as CPython does for
//! the built-in types, plus the helpers the seed's test-case display used
//! (`textwrap.wrap(...)[0]`, `str(args)[1:-1]`, the JSON round trip that turned
//! tuples into lists).
//!
//! Known gap: a set's items are shown in the worker's sorted order, not
//! CPython's hash order.

use serde_json::Value;

/// `repr(value)` for a tagged value from the sandbox.
pub fn repr(v: &Value) -> String {
    let mut out = String::new();
    write_repr(v, &mut out, false);
    out
}

/// `repr(json.loads(json.dumps(value)))`: what the seed showed for test inputs
/// and outputs, which it kept as JSON (tuples become lists, keys become strings).
pub fn json_roundtrip_repr(v: &Value) -> String {
    let mut out = String::new();
    write_repr(v, &mut out, true);
    out
}

/// Plain JSON (as benchmarks publish inputs) as the sandbox's tagged JSON:
/// objects become dicts; everything else already means the same.
pub fn tagged_from_json(v: &Value) -> Value {
    match v {
        Value::Array(items) => Value::Array(items.iter().map(tagged_from_json).collect()),
        Value::Object(map) => {
            let pairs = map
                .iter()
                .map(|(k, x)| Value::Array(vec![Value::String(k.clone()), tagged_from_json(x)]))
                .collect();
            serde_json::json!({ "dict": Value::Array(pairs) })
        }
        other => other.clone(),
    }
}

/// The items of a list or tuple value, if it is one.
pub fn sequence_items(v: &Value) -> Option<&Vec<Value>> {
    match v {
        Value::Array(items) => Some(items),
        Value::Object(m) => m.get("tuple").and_then(Value::as_array),
        _ => None,
    }
}

/// `', '.join(repr(a) for a in args)`: an argument list as it reads in a call.
pub fn args_text(args: &Value) -> String {
    match sequence_items(args) {
        Some(items) => items.iter().map(repr).collect::<Vec<_>>().join(", "),
        None => repr(args),
    }
}

/// The seed's test-case display, `wrap_func(extract_inx_oux(x))` over the JSON
/// form of `x`: a non-empty list loses its outer brackets (`str(x)[1:-1]`),
/// the result is `repr`ed and cut to the first line `textwrap.wrap(.., 100)`
/// gives.
pub fn seed_display(v: &Value) -> String {
    unwrapped_display(v, json_roundtrip_repr)
}

/// The TTS flavour's display: as [`seed_display`], but of the value itself
/// (its harness kept the test input as Python objects, so tuples stay tuples).
pub fn seed_display_exact(v: &Value) -> String {
    unwrapped_display(v, repr)
}

fn unwrapped_display(v: &Value, show: fn(&Value) -> String) -> String {
    let text = match sequence_items(v) {
        Some(items) if !items.is_empty() => {
            let s = show(v);
            // str(list)[1:-1]: the repr without its brackets, then repr'd again.
            py_str_repr(&s[1..s.len() - 1])
        }
        _ => show(v),
    };
    wrap_first_line(&text, 100)
}

/// The TTS flavour's [`seed_repr`]: of the value itself, tuples kept.
pub fn seed_repr_exact(v: &Value) -> String {
    wrap_first_line(&repr(v), 100)
}

/// `wrap_func(x)` of the seed without the list unwrapping: the first line of
/// `textwrap.wrap(repr(json_form(x)), 100)`.
pub fn seed_repr(v: &Value) -> String {
    wrap_first_line(&json_roundtrip_repr(v), 100)
}

fn write_repr(v: &Value, out: &mut String, json_form: bool) {
    match v {
        Value::Null => out.push_str("None"),
        Value::Bool(true) => out.push_str("True"),
        Value::Bool(false) => out.push_str("False"),
        // The worker's JSON comes from Python's json.dumps, which writes floats
        // with repr(), and serde_json keeps the number's text as written.
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => out.push_str(&py_str_repr(s)),
        Value::Array(items) => write_seq(items, "[", "]", false, out, json_form),
        Value::Object(m) => {
            let (tag, inner) = match m.iter().next() {
                Some((k, v)) => (k.as_str(), v),
                None => {
                    out.push_str("{}");
                    return;
                }
            };
            match (tag, inner) {
                ("tuple", Value::Array(items)) if json_form => {
                    write_seq(items, "[", "]", false, out, json_form)
                }
                ("tuple", Value::Array(items)) => write_seq(items, "(", ")", true, out, json_form),
                ("dict", Value::Array(pairs)) => {
                    out.push('{');
                    for (i, pair) in pairs.iter().enumerate() {
                        if i > 0 {
                            out.push_str(", ");
                        }
                        let (k, x) = match pair.as_array().map(Vec::as_slice) {
                            Some([k, x]) => (k, x),
                            _ => (&Value::Null, &Value::Null),
                        };
                        if json_form {
                            out.push_str(&py_str_repr(&json_key(k)));
                        } else {
                            write_repr(k, out, json_form);
                        }
                        out.push_str(": ");
                        write_repr(x, out, json_form);
                    }
                    out.push('}');
                }
                // The seed's JSON copy turned sets into lists.
                ("set" | "frozenset", Value::Array(items)) if json_form => {
                    write_seq(items, "[", "]", false, out, json_form)
                }
                ("set", Value::Array(items)) if items.is_empty() => out.push_str("set()"),
                ("set", Value::Array(items)) => write_seq(items, "{", "}", false, out, json_form),
                ("frozenset", Value::Array(items)) if items.is_empty() => {
                    out.push_str("frozenset()")
                }
                ("frozenset", Value::Array(items)) => {
                    out.push_str("frozenset(");
                    write_seq(items, "{", "}", false, out, json_form);
                    out.push(')');
                }
                ("int", Value::String(hex)) => out.push_str(&hex_to_decimal(hex)),
                ("float", Value::String(text)) => out.push_str(text),
                ("bytes", Value::String(hex)) => out.push_str(&py_bytes_repr(&hex_bytes(hex))),
                ("complex", Value::Array(parts)) if parts.len() == 2 => {
                    out.push_str(&complex_repr(&parts[0], &parts[1]))
                }
                ("repr", Value::String(r)) => out.push_str(r),
                _ => out.push_str(&Value::Object(m.clone()).to_string()),
            }
        }
    }
}

fn write_seq(
    items: &[Value],
    open: &str,
    close: &str,
    tuple: bool,
    out: &mut String,
    json_form: bool,
) {
    out.push_str(open);
    for (i, x) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        write_repr(x, out, json_form);
    }
    if tuple && items.len() == 1 {
        out.push(',');
    }
    out.push_str(close);
}

/// How `json.dumps` turns a dict key into a string.
fn json_key(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        other => repr(other),
    }
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len() / 2)
        .filter_map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

/// `hex(n)` text (`0x1f`, `-0x1f`) to decimal, for ints wider than 64 bits.
fn hex_to_decimal(hex: &str) -> String {
    let (negative, digits) = match hex.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, hex),
    };
    let digits = digits.trim_start_matches("0x");
    // Base 10^9 limbs, least significant first.
    let mut limbs: Vec<u32> = vec![0];
    for c in digits.chars() {
        let Some(d) = c.to_digit(16) else {
            return hex.to_string();
        };
        let mut carry = u64::from(d);
        for limb in limbs.iter_mut() {
            let x = u64::from(*limb) * 16 + carry;
            *limb = (x % 1_000_000_000) as u32;
            carry = x / 1_000_000_000;
        }
        while carry > 0 {
            limbs.push((carry % 1_000_000_000) as u32);
            carry /= 1_000_000_000;
        }
    }
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    let mut iter = limbs.iter().rev();
    if let Some(first) = iter.next() {
        out.push_str(&first.to_string());
    }
    for limb in iter {
        out.push_str(&format!("{limb:09}"));
    }
    out
}

fn complex_repr(re: &Value, im: &Value) -> String {
    let part = |v: &Value| -> String {
        let text = v.to_string();
        // Complex parts print without a forced `.0`.
        text.strip_suffix(".0").map(String::from).unwrap_or(text)
    };
    let re_text = part(re);
    let im_text = part(im);
    if re_text == "0" {
        return format!("{im_text}j");
    }
    let sign = if im_text.starts_with('-') { "" } else { "+" };
    format!("({re_text}{sign}{im_text}j)")
}

/// `repr(s)` for a Python `str`: quote choice, escapes and the printable test
/// of CPython's `unicode_repr`.
pub fn py_str_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if (c as u32) < 0x7f => out.push(c),
            c if is_printable(c) => out.push(c),
            c if (c as u32) <= 0xff => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if (c as u32) <= 0xffff => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push(quote);
    out
}

/// `str.isprintable()` for one non-ASCII character: false for controls,
/// separators other than the space, format characters and private use.
fn is_printable(c: char) -> bool {
    let u = c as u32;
    if c.is_control() || (c.is_whitespace() && c != ' ') {
        return false;
    }
    let format_or_private = [
        (0x00ad, 0x00ad),
        (0x0600, 0x0605),
        (0x061c, 0x061c),
        (0x06dd, 0x06dd),
        (0x070f, 0x070f),
        (0x0890, 0x0891),
        (0x08e2, 0x08e2),
        (0x180e, 0x180e),
        (0x200b, 0x200f),
        (0x202a, 0x202e),
        (0x2060, 0x2064),
        (0x2066, 0x206f),
        (0xd800, 0xf8ff),
        (0xfeff, 0xfeff),
        (0xfff9, 0xfffb),
        (0x110bd, 0x110bd),
        (0x1bca0, 0x1bca3),
        (0x1d173, 0x1d17a),
        (0xe0001, 0xe0001),
        (0xe0020, 0xe007f),
        (0xf0000, 0x10ffff),
    ];
    !format_or_private
        .iter()
        .any(|&(lo, hi)| (lo..=hi).contains(&u))
}

fn py_bytes_repr(b: &[u8]) -> String {
    let quote = if b.contains(&b'\'') && !b.contains(&b'"') {
        b'"'
    } else {
        b'\''
    };
    let mut out = String::from("b");
    out.push(quote as char);
    for &x in b {
        match x {
            b'\\' => out.push_str("\\\\"),
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            x if x == quote => {
                out.push('\\');
                out.push(x as char);
            }
            0x20..=0x7e => out.push(x as char),
            x => out.push_str(&format!("\\x{x:02x}")),
        }
    }
    out.push(quote as char);
    out
}

/// The first line of `textwrap.wrap(text, width)` (CPython's TextWrapper with
/// its defaults: tabs expanded, whitespace replaced by spaces, words broken
/// after hyphens and when longer than the width).
pub fn wrap_first_line(text: &str, width: usize) -> String {
    let expanded = expand_tabs(text);
    let replaced: String = expanded
        .chars()
        .map(|c| {
            if matches!(c, '\n' | '\x0b' | '\x0c' | '\r') {
                ' '
            } else {
                c
            }
        })
        .collect();
    let mut chunks: Vec<String> = split_chunks(&replaced);
    chunks.reverse();
    let mut line: Vec<String> = Vec::new();
    let mut len = 0usize;
    while let Some(chunk) = chunks.last() {
        let l = chunk.chars().count();
        if len + l <= width {
            len += l;
            line.push(chunks.pop().unwrap_or_default());
        } else {
            break;
        }
    }
    if let Some(chunk) = chunks.last()
        && chunk.chars().count() > width
    {
        let space_left = width.saturating_sub(len).max(1);
        let chars: Vec<char> = chunk.chars().collect();
        let mut end = space_left;
        if chars.len() > space_left {
            let head: String = chars[..space_left].iter().collect();
            if let Some(hyphen) = head.rfind('-') {
                let hyphen = head[..hyphen].chars().count();
                if hyphen > 0 && chars[..hyphen].iter().any(|&c| c != '-') {
                    end = hyphen + 1;
                }
            }
        }
        line.push(chars[..end.min(chars.len())].iter().collect());
    }
    if line.last().is_some_and(|c| c.trim().is_empty()) {
        line.pop();
    }
    line.concat()
}

fn expand_tabs(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut column = 0usize;
    for c in text.chars() {
        match c {
            '\t' => {
                let n = 8 - column % 8;
                out.extend(std::iter::repeat_n(' ', n));
                column += n;
            }
            '\n' | '\r' => {
                out.push(c);
                column = 0;
            }
            c => {
                out.push(c);
                column += 1;
            }
        }
    }
    out
}

/// TextWrapper's word split: runs of whitespace, and words, where a word also
/// ends after a hyphen between two letters on each side (`wordsep_re`).
fn split_chunks(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let letter = |i: usize| chars.get(i).is_some_and(|c| c.is_alphabetic());
    let mut chunks = Vec::new();
    let mut start = 0usize;
    let mut i = 0usize;
    while i < chars.len() {
        if chars[i] == ' ' {
            let mut j = i;
            while j < chars.len() && chars[j] == ' ' {
                j += 1;
            }
            if start < i {
                chunks.push(chars[start..i].iter().collect());
            }
            chunks.push(chars[i..j].iter().collect());
            start = j;
            i = j;
            continue;
        }
        if chars[i] == '-' && i >= 2 {
            let before = (letter(i - 1) && letter(i - 2))
                || (i >= 3 && letter(i - 1) && chars[i - 2] == '-' && letter(i - 3));
            let after = letter(i + 1)
                && (letter(i + 2) || (chars.get(i + 2) == Some(&'-') && letter(i + 3)));
            if before && after {
                chunks.push(chars[start..=i].iter().collect());
                start = i + 1;
            }
        }
        i += 1;
    }
    if start < chars.len() {
        chunks.push(chars[start..].iter().collect());
    }
    chunks
}

/// PySnooper's cut of a long repr: `s[:L] + '...' + s[-R:]`, with
/// `L = (max-3)//2` and `R = max-3-L` characters.
pub fn middle_cut(s: &str, max: usize) -> String {
    let n = s.chars().count();
    if n <= max || max < 4 {
        return s.to_string();
    }
    let left = (max - 3) / 2;
    let right = max - 3 - left;
    let head: String = s.chars().take(left).collect();
    let tail: String = s.chars().skip(n - right).collect();
    format!("{head}...{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn v(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn reprs_follow_cpython() {
        assert_eq!(
            repr(&v(r#"[1, "a", null, true, 1e-05, 2.0]"#)),
            "[1, 'a', None, True, 1e-05, 2.0]"
        );
        assert_eq!(repr(&json!({"tuple": [1]})), "(1,)");
        assert_eq!(repr(&json!({"tuple": []})), "()");
        assert_eq!(
            repr(&json!({"dict": [[{"tuple": [1, 2]}, "x"]]})),
            "{(1, 2): 'x'}"
        );
        assert_eq!(repr(&json!({"set": []})), "set()");
        assert_eq!(repr(&json!({"frozenset": [1]})), "frozenset({1})");
        assert_eq!(repr(&json!({"bytes": "00412722"})), "b'\\x00A\\'\"'");
        assert_eq!(
            repr(&json!({"int": "0x1000000000000000000"})),
            "4722366482869645213696"
        );
        assert_eq!(repr(&json!({"int": "-0x10"})), "-16");
        assert_eq!(repr(&v(r#"{"complex": [1.0, -2.5]}"#)), "(1-2.5j)");
        assert_eq!(repr(&v(r#"{"complex": [0.0, 2.0]}"#)), "2j");
        assert_eq!(repr(&json!({"float": "inf"})), "inf");
        assert_eq!(
            repr(&json!({"repr": "<object>", "type": "object"})),
            "<object>"
        );
    }

    #[test]
    fn string_reprs_pick_quotes_and_escape() {
        assert_eq!(py_str_repr("it's"), "\"it's\"");
        assert_eq!(py_str_repr("say \"hi\" it's"), "'say \"hi\" it\\'s'");
        assert_eq!(
            py_str_repr("a\tb\n\\\x01\u{7f}é\u{200b}\u{a0}"),
            "'a\\tb\\n\\\\\\x01\\x7fé\\u200b\\xa0'"
        );
    }

    #[test]
    fn seed_display_drops_brackets_and_lists_tuples() {
        let args = json!([{"tuple": [10, 20]}, "ab"]);
        assert_eq!(json_roundtrip_repr(&args), "[[10, 20], 'ab']");
        assert_eq!(seed_display(&args), "\"[10, 20], 'ab'\"");
        assert_eq!(seed_display(&json!(3)), "3");
        assert_eq!(seed_display(&json!("abc")), "'abc'");
        assert_eq!(seed_display(&json!([])), "[]");
        assert_eq!(args_text(&args), "(10, 20), 'ab'");
    }

    #[test]
    fn wrap_keeps_the_first_line_of_textwrap() {
        let words = "alpha beta ".repeat(20);
        let first = wrap_first_line(&words, 100);
        assert!(
            first.len() <= 100 && first.ends_with("alpha") || first.ends_with("beta"),
            "{first}"
        );
        assert_eq!(wrap_first_line(&"x".repeat(150), 100), "x".repeat(100));
        assert_eq!(wrap_first_line("short text", 100), "short text");
        // A long hyphenated word breaks after its last hyphen within the width.
        let long = format!("{}-{}", "a".repeat(60), "b".repeat(60));
        assert_eq!(wrap_first_line(&long, 100), format!("{}-", "a".repeat(60)));
    }

    #[test]
    fn middle_cut_matches_pysnooper() {
        assert_eq!(middle_cut("abcdefghij", 100), "abcdefghij");
        assert_eq!(
            middle_cut(&"x".repeat(50), 40),
            format!("{}...{}", "x".repeat(18), "x".repeat(19))
        );
    }
}
