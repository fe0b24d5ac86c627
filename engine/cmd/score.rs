//! `tw score`: score a generations file directly, like `evalplus.evaluate`.

use super::common::Failure;
use crate::cli::{GradingArg, ScoreArgs};
use std::io::Write;
use tw_stages::api::fsutil;
use tw_stages::bench::{Benchmark, GradingMode, Sample, ScoreSettings};
use tw_stages::python::sandbox::Sandbox;

/// The benchmark's reference answers as samples (one per problem).
fn reference_samples(
    bench: Benchmark,
    problems: &[tw_stages::bench::Problem],
) -> Result<Vec<Sample>, String> {
    let mut samples = Vec::with_capacity(problems.len());
    for p in problems {
        if let Some(code) = bench.family().reference_answer(p)? {
            samples.push(Sample {
                task_id: p.task_id.clone(),
                index: 0,
                code,
            });
        }
    }
    Ok(samples)
}

pub fn run(args: ScoreArgs, stdout: &mut dyn Write) -> Result<(), Failure> {
    let usage = |m: String| Failure::usage(m);
    let runtime = |m: String| Failure::runtime(m);
    let bench = Benchmark::parse_graded(&args.benchmark).ok_or_else(|| {
        let names: Vec<&str> = Benchmark::graded().iter().map(|b| b.name()).collect();
        usage(format!(
            "error: unknown benchmark `{}`\n  = help: one of {}{}",
            args.benchmark,
            names.join(", "),
            crate::diag::did_you_mean(&args.benchmark, names.iter().copied())
                .map(|h| format!("; {h}"))
                .unwrap_or_default()
        ))
    })?;
    if args.k.is_empty() || args.k.contains(&0) {
        return Err(usage(
            "error: --k takes positive integers, e.g. --k 1,10".into(),
        ));
    }
    let problems = tw_stages::bench::load_problems(bench, &args.problems)
        .map_err(|e| usage(format!("error: problems: {e}")))?;
    let samples = match &args.samples {
        Some(path) => tw_stages::bench::load_samples(bench, path, &problems)
            .map_err(|e| usage(format!("error: samples: {e}")))?,
        None => reference_samples(bench, &problems).map_err(|e| usage(format!("error: {e}")))?,
    };
    for (flag, date) in [
        ("--start-date", &args.start_date),
        ("--end-date", &args.end_date),
    ] {
        if let Some(d) = date.as_deref().filter(|d| !tw_stages::bench::is_iso_day(d)) {
            return Err(usage(format!(
                "error: {flag} `{d}` is not a date\n  = help: write it as YYYY-MM-DD"
            )));
        }
    }
    let settings = ScoreSettings {
        benchmark: bench.name().to_string(),
        timeout: args.timeout,
        workers: args.jobs,
        k: args.k.clone(),
        start_date: args.start_date.clone(),
        end_date: args.end_date.clone(),
        grading: match args.grading {
            GradingArg::Check => GradingMode::Check,
            GradingArg::Output => GradingMode::Output,
        },
        memory_mb: args.memory_mb.unwrap_or(ScoreSettings::default().memory_mb),
        // The reference answers cover what the benchmark ships answers for.
        allow_partial: args.allow_partial || args.reference,
        run_duplicates: args.run_duplicates,
        ..ScoreSettings::default()
    };
    let sandbox = Sandbox::new(args.jobs).map_err(|e| runtime(format!("error: {e}")))?;
    for warning in &sandbox.isolation().warnings {
        eprintln!("tw: warning: {warning}");
    }
    let started = std::time::Instant::now();
    let report = tw_stages::bench::score(bench, &problems, &samples, &settings, &sandbox, &|| {})
        .map_err(|e| runtime(format!("error: {e}")))?;
    let wall = started.elapsed().as_secs_f64();
    if let Some(path) = &args.details {
        let mut text = String::new();
        for s in &report.samples {
            text.push_str(&serde_json::to_string(s).expect("plain data"));
            text.push('\n');
        }
        fsutil::write_atomic(path, text.as_bytes()).map_err(|e| runtime(format!("error: {e}")))?;
    }
    let io = |e: std::io::Error| runtime(format!("error: {e}"));
    if args.json {
        let value = serde_json::json!({
            "benchmark": report.benchmark,
            "problems": report.problems,
            "problems_scored": report.problems_scored,
            "samples": report.samples.len(),
            "passed": report.samples.iter().filter(|s| s.base_pass).count(),
            "passed_plus": report.samples.iter().filter(|s| s.plus_pass == Some(true)).count(),
            "pass_at_k": report.pass_at_k,
            "skipped_k": report.skipped_k,
            "reference_failures": report.reference_failures,
            "sandbox": sandbox.isolation().fact(),
            "sandbox_retries": report.sandbox_retries,
            "duplicates": report.duplicates,
            "grading": settings.grading,
            "wall_seconds": wall,
        });
        writeln!(
            stdout,
            "{}",
            serde_json::to_string_pretty(&value).expect("plain data")
        )
        .map_err(io)?;
    } else {
        writeln!(
            stdout,
            "{}: {} problems, {} samples, {} pass{}",
            report.benchmark,
            if report.problems_scored < report.problems {
                format!(
                    "{} of {} (--allow-partial: pass@k over these only)",
                    report.problems_scored, report.problems
                )
            } else {
                report.problems.to_string()
            },
            report.samples.len(),
            report.samples.iter().filter(|s| s.base_pass).count(),
            if bench.has_plus() {
                format!(
                    " base, {} pass base+plus",
                    report
                        .samples
                        .iter()
                        .filter(|s| s.plus_pass == Some(true))
                        .count()
                )
            } else {
                String::new()
            }
        )
        .map_err(io)?;
        let width = report
            .pass_at_k
            .iter()
            .map(|r| r.suite.len())
            .max()
            .unwrap_or(4);
        for row in &report.pass_at_k {
            writeln!(
                stdout,
                "  {:<width$} pass@{:<3} {:>6.2}  [95% CI {:.2}, {:.2}]",
                row.suite,
                row.k,
                100.0 * row.score,
                100.0 * row.ci_low,
                100.0 * row.ci_high
            )
            .map_err(io)?;
        }
        if !report.skipped_k.is_empty() {
            writeln!(
                stdout,
                "  (pass@{:?} not reported: some problem has fewer samples)",
                report.skipped_k
            )
            .map_err(io)?;
        }
        if !report.reference_failures.is_empty() {
            writeln!(
                stdout,
                "  warning: reference solutions failed on: {}",
                report.reference_failures.join(", ")
            )
            .map_err(io)?;
        }
        eprintln!(
            "tw: scored in {wall:.2}s ({}){}",
            sandbox.isolation().fact(),
            match report.duplicates {
                0 => String::new(),
                n =>
                    format!("; {n} samples repeat an earlier sample's program and took its verdict"),
            }
        );
    }
    Ok(())
}
