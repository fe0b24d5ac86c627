//! `tw report SPEC`: write the files the spec's `report` stages rendered.
//!
//! The stage renders Markdown, CSV, LaTeX, PNG and SVG into its cached
//! `files` artifact; this command copies them out to
//! `<out>/<report stage>/`, so a reader never has to know the cache layout,
//! and writes the spec's compute disclosure to `<out>/compute/`.

use super::common::{Failure, load_spec, make_plan, open_store, run_options, run_selection};
use super::show;
use crate::cli::ExecutorArgs;
use crate::plan::{Facts, Plan, Selection};
use crate::spec::Spec;
use crate::store::Store;
use arrow::array::{Array, BinaryArray, StringArray};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use tw_stages::api::artifact;
use tw_stages::api::fsutil;

/// `tw report SPEC`: run what the report stages need (unless `no_run`), then write their files.
#[allow(clippy::too_many_arguments)]
pub fn run(
    cache_dir: &Path,
    spec: &Path,
    stage: &[String],
    out: &Path,
    no_run: bool,
    jobs: Option<usize>,
    no_progress: bool,
    power: super::compute::Power,
    executor: ExecutorArgs,
    stdout: &mut dyn Write,
) -> Result<(), Failure> {
    let spec = load_spec(spec)?;
    let store = open_store(cache_dir)?;
    let reports = report_nodes(&spec, stage)?;
    if !no_run {
        let selection = Selection {
            to: reports
                .iter()
                .map(|&i| spec.nodes()[i].id.clone())
                .collect(),
            ..Selection::default()
        };
        let options = run_options(jobs, false, no_progress, executor.executor());
        run_selection(&spec, &store, &selection, &options)?;
    }
    let plan = make_plan(&spec, &store, &Selection::default(), &Facts::default())?;
    write_reports(&spec, &plan, &store, &reports, out, stdout)?;
    write_compute(&spec, &plan, out, power, stdout)
}

/// `<out>/compute/compute.{md,csv}`: what each model x dataset pair cost.
fn write_compute(
    spec: &Spec,
    plan: &Plan,
    out: &Path,
    power: super::compute::Power,
    stdout: &mut dyn Write,
) -> Result<(), Failure> {
    let runtime = |e: String| Failure::runtime(format!("error: {e}"));
    let (md, csv) = super::compute::render(&super::compute::costs(spec, plan), power);
    let dir = out.join("compute");
    fs_err::create_dir_all(&dir).map_err(|e| runtime(e.to_string()))?;
    for (name, text) in [("compute.md", md), ("compute.csv", csv)] {
        let file = dir.join(name);
        fsutil::write_atomic(&file, text.as_bytes())
            .map_err(|e| runtime(format!("{}: {e}", file.display())))?;
        writeln!(stdout, "{}", file.display()).map_err(|e| runtime(e.to_string()))?;
    }
    Ok(())
}

/// Indices of the report stages to write: those named, else every one.
pub fn report_nodes(spec: &Spec, wanted: &[String]) -> Result<Vec<usize>, Failure> {
    let reports: Vec<usize> = spec
        .nodes()
        .iter()
        .enumerate()
        .filter(|(_, n)| n.kind() == "report")
        .map(|(i, _)| i)
        .collect();
    if reports.is_empty() {
        return Err(Failure::usage(format!(
            "error: {} has no stage of kind `report`\n  = help: add one; `tw stages describe report` shows its params",
            spec.experiment()
        )));
    }
    if wanted.is_empty() {
        return Ok(reports);
    }
    let mut chosen = Vec::new();
    for name in wanted {
        let matching: Vec<usize> = reports
            .iter()
            .copied()
            .filter(|&i| spec.nodes()[i].id == *name || spec.nodes()[i].stage == *name)
            .collect();
        if matching.is_empty() {
            let names: Vec<&str> = reports
                .iter()
                .map(|&i| spec.nodes()[i].id.as_str())
                .collect();
            return Err(Failure::usage(format!(
                "error: `{name}` is not a report stage of {} (report stages: {})",
                spec.experiment(),
                names.join(", ")
            )));
        }
        chosen.extend(matching);
    }
    chosen.sort_unstable();
    chosen.dedup();
    Ok(chosen)
}

/// `report[representation=next]` -> `report-representation=next`: a
/// directory name without brackets or commas.
fn directory_name(id: &str) -> String {
    let mut out = String::new();
    for c in id.chars() {
        match c {
            '[' | ',' => out.push('-'),
            ']' => {}
            c if c.is_ascii_alphanumeric() || "_-.=".contains(c) => out.push(c),
            _ => out.push('_'),
        }
    }
    out
}

/// A relative path of plain components (`index.html`, `data/c0/p1.js`): no
/// `..`, no hidden or empty components, no backslashes.
fn safe_relative_name(name: &str) -> bool {
    !name.is_empty()
        && name.split('/').all(|part| {
            !part.is_empty()
                && !part.starts_with('.')
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.=".contains(c))
        })
}

/// Copy every file of each report stage's `files` artifact under `out`,
/// and list what was written on stdout.
pub fn write_reports(
    spec: &Spec,
    plan: &Plan,
    store: &Store,
    reports: &[usize],
    out: &Path,
    stdout: &mut dyn Write,
) -> Result<(), Failure> {
    let runtime = |e: String| Failure::runtime(format!("error: {e}"));
    let mut missing = Vec::new();
    for &i in reports {
        let node = &spec.nodes()[i];
        let path = match show::locate(spec, plan, store, &format!("{}.files", node.id)) {
            Ok(p) => p,
            Err(e) => {
                missing.push(e.to_string());
                continue;
            }
        };
        let table = artifact::read_table(&path).map_err(|e| runtime(e.to_string()))?;
        let column = |name: &str| {
            table
                .column_by_name(name)
                .ok_or_else(|| runtime(format!("{}: no `{name}` column", path.display())))
        };
        let names = column("name")?
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| runtime(format!("{}: `name` is not text", path.display())))?;
        let contents = column("content")?
            .as_any()
            .downcast_ref::<BinaryArray>()
            .ok_or_else(|| runtime(format!("{}: `content` is not bytes", path.display())))?;
        let dir = out.join(directory_name(&node.id));
        fs_err::create_dir_all(&dir).map_err(|e| runtime(e.to_string()))?;
        // The browser's data files are all rewritten: a smaller study must not
        // leave the last one's problems behind.
        let data = dir.join("data");
        if data.is_dir() {
            fs_err::remove_dir_all(&data).map_err(|e| runtime(e.to_string()))?;
        }
        let mut nested: BTreeMap<String, usize> = BTreeMap::new();
        for row in 0..table.num_rows() {
            let name = names.value(row);
            // Names come from the stage; refuse anything that could escape `dir`.
            if !safe_relative_name(name) {
                return Err(runtime(format!("refusing to write a file named `{name}`")));
            }
            let file = dir.join(name);
            if let Some(parent) = file.parent() {
                fs_err::create_dir_all(parent).map_err(|e| runtime(e.to_string()))?;
            }
            fsutil::write_atomic(&file, contents.value(row))
                .map_err(|e| runtime(format!("{}: {e}", file.display())))?;
            match name.split_once('/') {
                // Thousands of data files: list their folder once.
                Some((folder, _)) => *nested.entry(folder.to_string()).or_default() += 1,
                None => {
                    writeln!(stdout, "{}", file.display()).map_err(|e| runtime(e.to_string()))?
                }
            }
        }
        for (folder, count) in nested {
            writeln!(stdout, "{}/ ({count} files)", dir.join(folder).display())
                .map_err(|e| runtime(e.to_string()))?;
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Failure::runtime(format!(
            "error: {}\n  = help: run `tw report` without --no-run, or `tw run` the spec first",
            missing.join("\nerror: ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::{directory_name, safe_relative_name};

    #[test]
    fn only_plain_relative_names_are_written() {
        for ok in ["index.html", "table3.md", "data/c0/p12.js", "data/c0.js"] {
            assert!(safe_relative_name(ok), "{ok}");
        }
        for bad in [
            "",
            "../x",
            "data/../../x",
            "/etc/passwd",
            ".hidden",
            "a//b",
            "a\\b",
            "data/.x",
            "a b",
        ] {
            assert!(!safe_relative_name(bad), "{bad}");
        }
    }

    #[test]
    fn directory_names_drop_brackets() {
        assert_eq!(directory_name("report"), "report");
        assert_eq!(
            directory_name("report[model=smollm2,n=8]"),
            "report-model=smollm2-n=8"
        );
        assert_eq!(directory_name("r[x=a/b]"), "r-x=a_b");
    }
}
