//! `tw trace`: trace one run of a program and print one representation of it.
//!
//! The quickest way to see what a model will be shown. It goes through the
//! same code as the stages: the row is turned into a sandbox job by
//! `trace::job_for_row`, the report into `runs`/`events` rows by
//! `trace::report_rows`, those rows back into a run record by the functions
//! `represent` reads its inputs with, and the record is rendered by
//! `TraceRenderer`. The built-in templates are compiled in, so the command
//! works outside a checkout; `--template` renders a file of your own instead.

use super::common::Failure;
use crate::cli::TraceArgs;
use serde_json::{Map, Value, json};
use std::io::Write;
use tw_stages::python::programs::ProgramMode;
use tw_stages::python::sandbox::Sandbox;
use tw_stages::python::trace_jobs::{self as trace, TraceParams};
use tw_stages::text::formats;
use tw_stages::text::trace_render::{
    self as represent, RenderOptions, RenderRequest, TraceRenderer,
};

/// Every name `--format` accepts: the built-in formats and `raw`.
pub fn format_names() -> Vec<&'static str> {
    formats::names()
        .into_iter()
        .chain(std::iter::once("raw"))
        .collect()
}

/// `f(1, [2, 3])` -> (`f`, `1, [2, 3]`). `Class.method(...)` works too.
fn parse_call(call: &str) -> Result<(String, String), String> {
    let call = call.trim();
    let hint = "write it as a call, e.g. --call 'f(1, [2, 3])'";
    let open = call
        .find('(')
        .ok_or_else(|| format!("`{call}` is not a call\n  = help: {hint}"))?;
    if !call.ends_with(')') {
        return Err(format!("`{call}` does not end with `)`\n  = help: {hint}"));
    }
    let name = call[..open].trim();
    let is_identifier = |part: &str| {
        let mut chars = part.chars();
        chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
            && chars.all(|c| c.is_alphanumeric() || c == '_')
    };
    if name.is_empty() || !name.split('.').all(is_identifier) {
        return Err(format!(
            "`{name}` is not a function name (`f` or `Class.method`)\n  = help: {hint}"
        ));
    }
    Ok((name.to_string(), call[open + 1..call.len() - 1].to_string()))
}

pub fn run(args: TraceArgs, stdout: &mut dyn Write) -> Result<(), Failure> {
    let usage = |m: String| Failure::usage(format!("error: {m}"));
    let io = |e: std::io::Error| Failure::runtime(format!("error: writing output: {e}"));
    let format = args.format.as_str();
    if args.template.is_none() && !format_names().contains(&format) {
        return Err(usage(format!(
            "unknown format `{format}`\n  = help: one of {}{}",
            format_names().join(", "),
            crate::diag::did_you_mean(format, format_names())
                .map(|h| format!("; {h}"))
                .unwrap_or_default()
        )));
    }
    let program = fs_err::read_to_string(&args.program).map_err(|e| usage(e.to_string()))?;
    let prelude = match &args.prelude {
        Some(path) => Some(fs_err::read_to_string(path).map_err(|e| usage(e.to_string()))?),
        None => None,
    };

    // One input row, in the columns the trace stage reads by default.
    let mut row = Map::new();
    row.insert("task_id".into(), json!(args.program.display().to_string()));
    row.insert("program".into(), json!(program));
    let mode = match (&args.call, &args.stdin) {
        (Some(call), None) => {
            let (entry, arguments) = parse_call(call).map_err(|m| usage(format!("--call: {m}")))?;
            row.insert("entry_point".into(), json!(entry));
            row.insert("input".into(), json!(arguments));
            ProgramMode::Function
        }
        (None, Some(path)) => {
            let stdin = if path.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())
                    .map_err(|e| usage(format!("reading stdin: {e}")))?
            } else {
                fs_err::read_to_string(path).map_err(|e| usage(e.to_string()))?
            };
            row.insert("input".into(), json!(stdin));
            ProgramMode::Stdio
        }
        _ => unreachable!("clap requires exactly one of --call and --stdin"),
    };
    if let Some(expected) = &args.expected {
        row.insert("expected".into(), json!(expected));
    }
    let params: TraceParams = serde_json::from_value(json!({
        "mode": mode,
        "input_format": "python",
        "expected": args.expected.as_ref().map(|_| "expected"),
        "prelude": prelude,
        // What a script prints is compared line by line, trailing space ignored.
        "comparator": if mode == ProgramMode::Stdio { "lcb_stdio" } else { "exact" },
        "max_steps": args.max_steps,
        "depth": args.depth,
        "timeout": args.timeout,
    }))
    .map_err(|e| Failure::runtime(format!("error: internal: trace params: {e}")))?;
    let (id, job) =
        trace::job_for_row(&params, &row, "--call", 0).map_err(|e| usage(e.to_string()))?;

    let sandbox = Sandbox::new(Some(1))
        .map_err(|e| Failure::runtime(format!("error: the sandbox cannot start: {e}")))?;
    let reports = sandbox
        .run_all(std::slice::from_ref(&job), &|| {})
        .map_err(|e| Failure::runtime(format!("error: {e}")))?;
    let report = reports
        .first()
        .ok_or_else(|| Failure::runtime("error: the sandbox returned no report"))?;
    let (run_row, event_rows) = trace::report_rows(&params, 0, &id, &row, &job, report)
        .map_err(|e| Failure::runtime(format!("error: {e}")))?;
    // Failures of what was asked for, not of the program: no trace to show.
    let exc = |k: &str| run_row.get(k).and_then(Value::as_str).unwrap_or_default();
    match exc("exc_type") {
        "EntryPointError" | "TestInputError" => {
            return Err(usage(format!("--call: {}", exc("exc_message"))));
        }
        "ComparatorError" => {
            return Err(usage(format!(
                "--expected: cannot compare with it: {}",
                exc("exc_message")
            )));
        }
        _ => {}
    }
    eprintln!("{}", summary(&run_row));

    if args.template.is_none() && format == "raw" {
        for event in &event_rows {
            let line = serde_json::to_string(event)
                .map_err(|e| Failure::runtime(format!("error: internal: {e}")))?;
            writeln!(stdout, "{line}").map_err(io)?;
        }
        return Ok(());
    }

    let mut record = represent::record_from_row(&run_row)
        .map_err(|e| Failure::runtime(format!("error: internal: run row: {e}")))?;
    record.events = event_rows
        .iter()
        .map(represent::event_from_row)
        .collect::<Result<_, _>>()
        .map_err(|e| Failure::runtime(format!("error: internal: event row: {e}")))?;
    let options: RenderOptions = serde_json::from_value(json!({
        "mode": mode,
        "compat": args.compat,
        "max_value_chars": args.max_value_chars,
    }))
    .map_err(|e| usage(format!("--compat: {e}")))?;
    let renderer = match &args.template {
        Some(path) => TraceRenderer::from_file(path).map_err(|e| usage(e.to_string()))?,
        None => formats::renderer(format)
            .ok_or_else(|| usage(format!("unknown format `{format}`")))?
            .map_err(|e| Failure::runtime(format!("error: built-in template: {e:#}")))?,
    };
    let text = renderer
        .render(&RenderRequest {
            id: &id,
            program: &program,
            runs: std::slice::from_ref(&record),
            options: &options,
        })
        .map_err(|e| Failure::runtime(format!("error: rendering `{format}`: {e}")))?;
    stdout.write_all(text.as_bytes()).map_err(io)?;
    if !text.ends_with('\n') {
        writeln!(stdout).map_err(io)?;
    }
    Ok(())
}

/// One line for stderr: how the run ended.
fn summary(run: &Map<String, Value>) -> String {
    let text = |k: &str| run.get(k).and_then(Value::as_str).unwrap_or_default();
    let mut line = format!(
        "traced: {}, {} steps",
        text("verdict"),
        run.get("steps").and_then(Value::as_u64).unwrap_or_default()
    );
    match run.get("passed").and_then(Value::as_bool) {
        Some(true) => line.push_str(", matches --expected"),
        Some(false) => line.push_str(", does not match --expected"),
        None => {}
    }
    if !text("exc_type").is_empty() {
        line.push_str(&format!(
            ", raised {}: {}",
            text("exc_type"),
            text("exc_message")
        ));
    } else if !text("output").is_empty() {
        let output = text("output").replace('\n', "\\n");
        let shown: String = output.chars().take(80).collect();
        let more = if shown.len() < output.len() {
            "..."
        } else {
            ""
        };
        line.push_str(&format!(", output {shown}{more}"));
    }
    if !text("truncated").is_empty() {
        line.push_str(&format!(" (trace cut: {})", text("truncated")));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_split_into_entry_and_arguments() {
        assert_eq!(
            parse_call("f(1, [2, 3])").unwrap(),
            ("f".to_string(), "1, [2, 3]".to_string())
        );
        assert_eq!(
            parse_call(" Solution.run('a(b)') ").unwrap(),
            ("Solution.run".to_string(), "'a(b)'".to_string())
        );
        assert_eq!(parse_call("g()").unwrap(), ("g".to_string(), String::new()));
        assert!(parse_call("f").unwrap_err().contains("not a call"));
        assert!(parse_call("f(1").unwrap_err().contains("does not end"));
        assert!(
            parse_call("1f(2)")
                .unwrap_err()
                .contains("not a function name")
        );
        assert!(
            parse_call("a b(2)")
                .unwrap_err()
                .contains("not a function name")
        );
    }

    #[test]
    fn every_built_in_template_loads() {
        for name in formats::names() {
            formats::renderer(name).unwrap().unwrap();
        }
    }
}
