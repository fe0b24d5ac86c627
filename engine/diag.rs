//! Diagnostics: every spec and plan problem, with a stable code, a span and a
//! hint, rendered rustc-style in one place.
//!
//! ```text
//! error[tw::spec::unknown_stage]: stage `score` reads `sampels.rows`, but no stage is named `sampels`
//!   --> specs/x.yaml:9:35
//!    |
//!  9 |     inputs: { rows: sampels.rows }
//!    |                     ^^^^^^^^^^^^ no such stage
//!    |
//!    = help: did you mean `samples`?
//! ```

use crate::source::{Sources, Span};
use std::fmt::Write;

/// Stable diagnostic codes. Never reuse a retired code for something else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Code {
    Syntax,
    DuplicateKey,
    UnknownField,
    MissingField,
    WrongType,
    InvalidName,
    UnknownKind,
    KindUnavailable,
    UnknownParam,
    MissingParam,
    InvalidParam,
    UnknownInput,
    MissingInput,
    InputArity,
    BadReference,
    UnknownStage,
    UnknownOutput,
    Cycle,
    UnknownAxis,
    EmptyAxis,
    MissingFile,
    UnknownStageSelector,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Syntax => "tw::spec::syntax",
            Code::DuplicateKey => "tw::spec::duplicate_key",
            Code::UnknownField => "tw::spec::unknown_field",
            Code::MissingField => "tw::spec::missing_field",
            Code::WrongType => "tw::spec::wrong_type",
            Code::InvalidName => "tw::spec::invalid_name",
            Code::UnknownKind => "tw::spec::unknown_kind",
            Code::KindUnavailable => "tw::spec::kind_unavailable",
            Code::UnknownParam => "tw::spec::unknown_param",
            Code::MissingParam => "tw::spec::missing_param",
            Code::InvalidParam => "tw::spec::invalid_param",
            Code::UnknownInput => "tw::spec::unknown_input",
            Code::MissingInput => "tw::spec::missing_input",
            Code::InputArity => "tw::spec::input_arity",
            Code::BadReference => "tw::spec::bad_reference",
            Code::UnknownStage => "tw::spec::unknown_stage",
            Code::UnknownOutput => "tw::spec::unknown_output",
            Code::Cycle => "tw::spec::cycle",
            Code::UnknownAxis => "tw::spec::unknown_axis",
            Code::EmptyAxis => "tw::spec::empty_axis",
            Code::MissingFile => "tw::plan::missing_file",
            Code::UnknownStageSelector => "tw::cli::unknown_stage",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub code: Code,
    pub message: String,
    pub span: Option<Span>,
    /// Short text under the caret.
    pub label: Option<String>,
    pub help: Option<String>,
    /// Extra lines (`note: ...`), e.g. each step of a cycle.
    pub notes: Vec<String>,
}

impl Diagnostic {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Diagnostic {
            code,
            message: message.into(),
            span: None,
            label: None,
            help: None,
            notes: Vec::new(),
        }
    }

    pub fn at(mut self, span: Span) -> Self {
        self.span = Some(span);
        self
    }

    pub fn at_opt(mut self, span: Option<Span>) -> Self {
        self.span = span;
        self
    }

    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn help_opt(mut self, help: Option<String>) -> Self {
        if help.is_some() {
            self.help = help;
        }
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }

    /// `file:line:col` of the span, if any.
    pub fn location(&self, sources: &Sources) -> Option<String> {
        let span = self.span?;
        let file = sources.get(span.file)?;
        let (line, col) = file.line_col(span.start);
        Some(format!("{}:{line}:{col}", file.path.display()))
    }

    pub fn render(&self, sources: &Sources) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "error[{}]: {}", self.code.as_str(), self.message);
        let located = self
            .span
            .and_then(|span| sources.get(span.file).map(|file| (span, file)));
        if let Some((span, file)) = located {
            let (line, col) = file.line_col(span.start);
            let gutter = line.to_string().len();
            let pad = " ".repeat(gutter);
            let _ = writeln!(out, "{pad}--> {}:{line}:{col}", file.path.display());
            let text = file.line_text(line);
            let _ = writeln!(out, "{pad} |");
            let _ = writeln!(out, "{line} | {text}");
            let (end_line, end_col) = file.line_col(span.end.max(span.start));
            let width = if end_line == line && end_col > col {
                end_col - col
            } else {
                1
            };
            let caret_offset: String = text
                .chars()
                .take(col - 1)
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            let label = self
                .label
                .as_deref()
                .map(|l| format!(" {l}"))
                .unwrap_or_default();
            let _ = writeln!(out, "{pad} | {caret_offset}{}{label}", "^".repeat(width));
            if self.help.is_some() || !self.notes.is_empty() {
                let _ = writeln!(out, "{pad} |");
            }
            for note in &self.notes {
                let _ = writeln!(out, "{pad} = note: {note}");
            }
            if let Some(help) = &self.help {
                let _ = writeln!(out, "{pad} = help: {help}");
            }
        } else {
            for note in &self.notes {
                let _ = writeln!(out, "  = note: {note}");
            }
            if let Some(help) = &self.help {
                let _ = writeln!(out, "  = help: {help}");
            }
        }
        out
    }
}

/// Render a batch of diagnostics followed by a count line.
pub fn render_all(diagnostics: &[Diagnostic], sources: &Sources) -> String {
    let mut out = String::new();
    for d in diagnostics {
        out.push_str(&d.render(sources));
        out.push('\n');
    }
    let n = diagnostics.len();
    let _ = writeln!(
        out,
        "error: {n} problem{} found",
        if n == 1 { "" } else { "s" }
    );
    out
}

/// The closest candidate to `name`, if any is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let mut best: Option<(f64, &str)> = None;
    for candidate in candidates {
        let score = tw_stages::api::name_similarity(name, candidate);
        if score >= tw_stages::api::LIKELY_TYPO && best.is_none_or(|(b, _)| score > b) {
            best = Some((score, candidate));
        }
    }
    best.map(|(_, c)| format!("did you mean `{c}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SourceFile;

    #[test]
    fn renders_location_snippet_and_help() {
        let mut sources = Sources::default();
        let text = "stages:\n  a: { kind: lod }\n";
        let file = sources.add(SourceFile::new("s.yaml".into(), text.into()));
        let start = text.find("lod").unwrap();
        let d = Diagnostic::new(Code::UnknownKind, "unknown stage kind `lod`")
            .at(Span::new(file, start, start + 3))
            .label("not a kind")
            .help("did you mean `load`?");
        let rendered = d.render(&sources);
        assert_eq!(
            rendered,
            "error[tw::spec::unknown_kind]: unknown stage kind `lod`\n --> s.yaml:2:14\n  |\n2 |   a: { kind: lod }\n  |              ^^^ not a kind\n  |\n  = help: did you mean `load`?\n"
        );
    }

    #[test]
    fn did_you_mean_finds_typos_only() {
        assert_eq!(
            did_you_mean("sampels", ["samples", "score"]),
            Some("did you mean `samples`?".into())
        );
        assert_eq!(did_you_mean("zzz", ["samples", "score"]), None);
    }
}
