//! `tw plan`: what `tw run` would run, and why, as a table or JSON.

use super::common::{Failure, load_spec, make_plan, open_store};
use crate::cli::SelectArgs;
use crate::plan::{self, Facts, Selection};
use std::io::Write;
use std::path::Path;
pub fn run(
    cache_dir: &Path,
    spec: &Path,
    select: SelectArgs,
    json: bool,
    allow_missing: bool,
    stdout: &mut dyn Write,
) -> Result<(), Failure> {
    let io = |e: std::io::Error| Failure::runtime(format!("error: {e}"));
    let spec = load_spec(spec)?;
    let store = open_store(cache_dir)?;
    let facts = Facts::default();
    let selection = Selection {
        allow_missing,
        ..select.into()
    };
    let plan = make_plan(&spec, &store, &selection, &facts)?;
    let text = if json {
        plan::render_json(&spec, &plan) + "\n"
    } else {
        plan::render_text(&spec, &plan)
    };
    stdout.write_all(text.as_bytes()).map_err(io)
}
