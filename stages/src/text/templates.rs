//! Loading templates from files: a template with every template it includes,
//! extends or imports by literal name (all of them go in the cache key), in
//! `tw`'s minijinja environment ([`super::templating`]).

use crate::api::{FileDep, PlanEnv, StageError};
use std::path::Path;

/// `tw`'s template environment holding the template at `path` and every
/// template it references by literal name; returns it with the main name.
pub fn load_templates(
    path: &Path,
) -> Result<(minijinja::Environment<'static>, String), StageError> {
    let template_error = |e: minijinja::Error| StageError::Template {
        path: path.to_path_buf(),
        message: describe(&e),
    };
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut env = super::templating::environment().map_err(template_error)?;
    env.add_template_owned(name.clone(), fs_err::read_to_string(path)?)
        .map_err(template_error)?;
    for other in referenced_templates(path, &dir)? {
        let text = fs_err::read_to_string(dir.join(&other))?;
        env.add_template_owned(other, text)
            .map_err(template_error)?;
    }
    Ok((env, name))
}

/// A template param's file and every template it references by literal name,
/// recorded relative to the spec like the main one.
pub fn template_deps(template: &str, env: &PlanEnv) -> Vec<FileDep> {
    let main = env.resolve(template);
    let dir = main.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut deps = vec![FileDep {
        param: "template".into(),
        path: template.to_string(),
    }];
    let prefix = Path::new(template)
        .parent()
        .map(|d| d.to_string_lossy().into_owned())
        .unwrap_or_default();
    if let Ok(names) = referenced_templates(&main, &dir) {
        for name in names {
            let path = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            deps.push(FileDep {
                param: "template".into(),
                path,
            });
        }
    }
    deps
}

pub fn describe(e: &minijinja::Error) -> String {
    let mut message = e.to_string();
    if let Some(line) = e.line() {
        message = format!("line {line}: {message}");
    }
    message
}

/// Names of templates referenced by literal string, transitively, sorted.
pub fn referenced_templates(main: &Path, dir: &Path) -> Result<Vec<String>, StageError> {
    let pattern = regex::Regex::new(
        r#"\{%-?\s*(?:include|extends|import|from)\s+(?:\[\s*)?["']([^"']+)["']"#,
    )
    .map_err(|e| StageError::failed(e.to_string()))?;
    let mut seen = std::collections::BTreeSet::new();
    let mut queue = vec![fs_err::read_to_string(main)?];
    while let Some(text) = queue.pop() {
        for capture in pattern.captures_iter(&text) {
            let name = capture[1].to_string();
            if seen.insert(name.clone()) {
                queue.push(fs_err::read_to_string(dir.join(&name))?);
            }
        }
    }
    Ok(seen.into_iter().collect())
}
