//! The CodeExecutor trace format (Liu et al. 2023; `templates/traces/
//! codeexecutor.j2`) read back into frames, so that `score_traces` scores a
//! prediction in this older format as it scores CWM's.
//!
//! ```text
//! <line> <2> <state>nums = [3, 5]<dictsep>total = 0</state>
//! <line> <3> <state>nums = [3, 5]<dictsep>total = 0<dictsep>x = 3</state>
//! <output>8
//! ```
//!
//! Each `<line>` entry is a line frame: the line that ran and every visible
//! variable *after* it (CodeExecutor's convention, unlike CWM's before).
//! `<output>` is the run's result (or its exception), read as a return
//! frame that ends the trace. Other text (the representation's headings,
//! the program, a model's prose) is passed over; what follows `<output>` is
//! ignored.

use super::cwm::{Frame, Kind, ParseError, Parsed};

const LINE: &str = "<line>";
const STATE: &str = "<state>";
const STATE_END: &str = "</state>";
const DICTSEP: &str = "<dictsep>";
const OUTPUT: &str = "<output>";

/// Read a CodeExecutor trace (the whole representation or only its
/// entries); a malformed entry stops the reading with its reason.
pub fn parse(text: &str, program: &str) -> Parsed {
    let code_lines: Vec<&str> = program
        .split('\n')
        .map(|l| l.trim_end_matches('\r'))
        .collect();
    let mut parsed = Parsed::default();
    for raw in text.lines() {
        let entry = raw.trim();
        let index = parsed.frames.len();
        let fail = |reason: String| ParseError {
            frame: index,
            reason,
        };
        if let Some(value) = entry.strip_prefix(OUTPUT) {
            parsed.frames.push(Frame {
                kind: Kind::Return,
                line: None,
                source: String::new(),
                locals: Vec::new(),
                arg: Some(value.trim().to_string()),
            });
            parsed.ended = true;
            break;
        }
        let Some(rest) = entry.strip_prefix(LINE) else {
            continue;
        };
        match line_entry(rest.trim_start(), &code_lines) {
            Ok(frame) => parsed.frames.push(frame),
            Err(reason) => {
                parsed.error = Some(fail(reason));
                break;
            }
        }
    }
    if parsed.frames.is_empty() && parsed.error.is_none() {
        parsed.error = Some(ParseError {
            frame: 0,
            reason: if text.trim().is_empty() {
                "empty prediction".into()
            } else {
                "no `<line>` or `<output>` entry".into()
            },
        });
    }
    parsed
}

/// `<N> <state>a = 1<dictsep>b = 2</state>` (after `<line> `).
fn line_entry(rest: &str, code_lines: &[&str]) -> Result<Frame, String> {
    let number = rest
        .strip_prefix('<')
        .and_then(|r| r.split_once('>'))
        .ok_or_else(|| format!("no `<N>` line number after `<line>` in `{rest}`"))?;
    let line: u32 = number
        .0
        .trim()
        .parse()
        .map_err(|_| format!("line number `{}` is not a number", number.0))?;
    let state = number.1.trim_start();
    let body = state
        .strip_prefix(STATE)
        .ok_or_else(|| format!("no `{STATE}` after line {line}"))?;
    let body = body
        .strip_suffix(STATE_END)
        .ok_or_else(|| format!("no `{STATE_END}` closing line {line}'s state"))?;
    let mut locals = Vec::new();
    if !body.trim().is_empty() {
        for item in body.split(DICTSEP) {
            let (name, value) = item
                .split_once(" = ")
                .ok_or_else(|| format!("`{item}` in line {line}'s state is not `name = value`"))?;
            locals.push((name.trim().to_string(), value.to_string()));
        }
    }
    let source = code_lines
        .get((line as usize).wrapping_sub(1))
        .map(|l| l.to_string());
    Ok(Frame {
        kind: Kind::Line,
        line: source.as_ref().map(|_| line),
        source: source.unwrap_or_default(),
        locals,
        arg: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROGRAM: &str =
        "def f(xs):\n    total = 0\n    for x in xs:\n        total += x\n    return total\n";

    #[test]
    fn reads_entries_and_passes_over_other_text() {
        let text = "## EXPLANATION\n\n<line> <2> <state>xs = [1]<dictsep>total = 0</state>\n<line> <3> <state>xs = [1]<dictsep>total = 0<dictsep>x = 1</state>\nsome prose\n<output>1\n<line> <9> <state></state>";
        let p = parse(text, PROGRAM);
        assert!(p.error.is_none(), "{:?}", p.error);
        assert!(p.ended);
        assert_eq!(p.frames.len(), 3, "the entry after <output> is ignored");
        assert_eq!(p.frames[1].line, Some(3));
        assert_eq!(p.frames[1].source, "    for x in xs:");
        assert_eq!(
            p.frames[1].locals,
            vec![
                ("xs".to_string(), "[1]".to_string()),
                ("total".to_string(), "0".to_string()),
                ("x".to_string(), "1".to_string())
            ]
        );
        assert_eq!(p.frames[2].kind, Kind::Return);
        assert_eq!(p.frames[2].arg.as_deref(), Some("1"));
    }

    #[test]
    fn malformed_entries_stop_with_a_reason() {
        for (text, frame, reason) in [
            ("<line> <2> <state>total = 0", 0, "no `</state>`"),
            (
                "<line> <2> <state>xs = [1]</state>\n<line> <x> <state></state>",
                1,
                "not a number",
            ),
            ("<line> 2 <state></state>", 0, "no `<N>`"),
            (
                "<line> <2> <state>total: 0</state>",
                0,
                "not `name = value`",
            ),
            ("the answer is 3", 0, "no `<line>`"),
            ("", 0, "empty prediction"),
        ] {
            let p = parse(text, PROGRAM);
            let e = p
                .error
                .unwrap_or_else(|| panic!("{text:?} read without error"));
            assert_eq!(e.frame, frame, "{text:?}");
            assert!(e.reason.contains(reason), "{text:?}: {}", e.reason);
        }
    }

    #[test]
    fn a_line_outside_the_program_has_no_source() {
        let p = parse("<line> <40> <state></state>", PROGRAM);
        assert_eq!(p.frames[0].line, None);
        assert_eq!(p.frames[0].source, "");
    }
}
