//! The built-in trace representations: the study's formats, one template each
//! under `templates/traces/`, compiled in so that `tw trace` works outside a
//! checkout. Specs name a template by path instead, so a new representation
//! is a template file plus one line here (for `tw trace --format`).

use super::trace_render::TraceRenderer;

/// The built-in representation templates, by format name.
pub const FORMATS: &[(&str, &str)] = &[
    ("next", include_str!("../../../templates/traces/next.j2")),
    (
        "concise",
        include_str!("../../../templates/traces/concise.j2"),
    ),
    (
        "codeexecutor",
        include_str!("../../../templates/traces/codeexecutor.j2"),
    ),
    (
        "scratchpad",
        include_str!("../../../templates/traces/scratchpad.j2"),
    ),
    (
        "semcoder",
        include_str!("../../../templates/traces/semcoder.j2"),
    ),
    (
        "concise2",
        include_str!("../../../templates/traces/concise2.j2"),
    ),
    ("cwm", include_str!("../../../templates/traces/cwm.j2")),
    (
        "notrace",
        include_str!("../../../templates/traces/notrace.j2"),
    ),
];

/// Templates the formats import (`_*.j2`).
pub const SHARED: &[(&str, &str)] = &[(
    "_seed.j2",
    include_str!("../../../templates/traces/_seed.j2"),
)];

/// Every format name.
pub fn names() -> Vec<&'static str> {
    FORMATS.iter().map(|(name, _)| *name).collect()
}

/// The renderer of built-in format `name`, with the templates it imports;
/// `None` for a name that is not built in.
pub fn renderer(name: &str) -> Option<Result<TraceRenderer, minijinja::Error>> {
    let (format, text) = FORMATS.iter().find(|(n, _)| *n == name)?;
    let main = format!("{format}.j2");
    let mut sources = vec![(main.clone(), text.to_string())];
    sources.extend(SHARED.iter().map(|(n, t)| (n.to_string(), t.to_string())));
    Some(TraceRenderer::from_sources(main, sources))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The list and `templates/traces/` hold the same formats.
    #[test]
    fn every_template_in_templates_traces_is_a_format_and_back() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../templates/traces");
        let mut on_disk: Vec<String> = fs_err::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".j2"))
            .collect();
        on_disk.sort();
        let mut listed: Vec<String> = FORMATS
            .iter()
            .map(|(n, _)| format!("{n}.j2"))
            .chain(SHARED.iter().map(|(n, _)| n.to_string()))
            .collect();
        listed.sort();
        assert_eq!(on_disk, listed);
    }
}
