//! Spec -> validated spec: read the file, parse YAML or TOML into one spanned
//! tree ([`parse`], into the [`model`] of a raw spec), check the schema,
//! expand the matrix and resolve every reference against the registry of
//! kinds ([`resolve`]), with `shard:` and `resources:` read by [`placement`].
//!
//! May import: `diag`, `source`, the stages crate's registry. Nothing else of the engine.

pub mod model;
pub mod parse;
pub mod placement;
pub mod resolve;

use crate::diag::{Code, Diagnostic};
use crate::source::{SourceFile, Sources};
pub use resolve::{Node, NodeInput, OutputRef, Resolved};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use tw_stages::Registry;

static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::builtin);

/// The registry of every stage kind in this build.
pub fn registry() -> &'static Registry {
    &REGISTRY
}

/// A spec that passed validation.
pub struct Spec {
    pub path: PathBuf,
    /// Relative paths in params resolve against this directory.
    pub base_dir: PathBuf,
    pub sources: Sources,
    pub resolved: Resolved,
}

impl Spec {
    pub fn experiment(&self) -> &str {
        &self.resolved.experiment
    }

    pub fn nodes(&self) -> &[Node] {
        &self.resolved.nodes
    }
}

/// Why a spec could not be loaded: every problem, plus the sources to render them.
#[derive(Debug)]
pub struct SpecErrors {
    pub diagnostics: Vec<Diagnostic>,
    pub sources: Sources,
}

impl SpecErrors {
    pub fn render(&self) -> String {
        crate::diag::render_all(&self.diagnostics, &self.sources)
    }
}

pub fn load(path: &Path) -> Result<Spec, SpecErrors> {
    let mut sources = Sources::default();
    let fail = |sources: Sources, d: Diagnostic| SpecErrors {
        diagnostics: vec![d],
        sources,
    };
    let Some(format) = parse::Format::from_path(path) else {
        return Err(fail(
            sources,
            Diagnostic::new(
                Code::Syntax,
                format!(
                    "`{}` is not a spec file: expected a .yaml, .yml or .toml extension",
                    path.display()
                ),
            ),
        ));
    };
    let text = match fs_err::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            return Err(fail(
                sources,
                Diagnostic::new(Code::Syntax, format!("cannot read spec: {e}")),
            ));
        }
    };
    let file = SourceFile::new(path.to_path_buf(), text);
    let file_id = sources.add(file.clone());
    let root = parse::parse(format, &file, file_id).map_err(|diagnostics| SpecErrors {
        diagnostics,
        sources: sources.clone(),
    })?;
    let mut errors = Vec::new();
    let raw = model::read_spec(&root, &mut errors);
    let base_dir = path
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let resolved = raw.and_then(|raw| resolve::resolve(&raw, registry(), &base_dir, &mut errors));
    match resolved {
        Some(resolved) if errors.is_empty() => Ok(Spec {
            path: path.to_path_buf(),
            base_dir,
            sources,
            resolved,
        }),
        _ => Err(SpecErrors {
            diagnostics: errors,
            sources,
        }),
    }
}
