//! `render`: render a minijinja template once per row into a new text column.
//!
//! # What it does
//! For each row of `rows`, renders `template` with the row's columns as
//! variables (also available together as `row`) plus the constant `vars`, and
//! stores the result in column `column`. Undefined variables are errors (strict
//! mode), so a misspelled column fails loudly instead of rendering blank.
//! Templates may `include`, `import` or `extend` other templates by literal
//! name, relative to the main template's directory.
//!
//! # Params
//! - `template` (string, required): template file, relative to the spec's directory.
//! - `column` (string, default `text`): name of the output column (replaced if present).
//! - `vars` (map, default empty): constants visible to the template as `vars`.
//! - `trim` (bool, default `true`): strip leading and trailing whitespace of each result.
//!
//! # Inputs
//! - `rows`: any table.
//!
//! # Outputs
//! - `rows`: the input table plus `column`.
//!
//! # Caching
//! The bytes of the template and of every template it references by literal
//! name are hashed into the key: editing any of them reruns exactly the stages
//! that read them. A reference built at render time (`include name ~ ".j2"`)
//! cannot be seen at plan time and is therefore an error.
//!
//! # Example
//! ```yaml
//! prompts:
//!   kind: render
//!   inputs: { rows: problems.rows }
//!   params: { template: ../templates/prompts/repair.j2, column: prompt }
//! ```

use crate::api::artifact;
use crate::api::{FileDep, InputSlot, PlanEnv, Problem, RunCtx, Stage, StageError};
use crate::text::templates::{describe, load_templates, template_deps};
use crate::text::templating;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub struct Render;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenderParams {
    pub template: String,
    #[serde(default = "default_column")]
    pub column: String,
    #[serde(default)]
    pub vars: BTreeMap<String, serde_json::Value>,
    #[serde(default = "default_true")]
    pub trim: bool,
}

fn default_column() -> String {
    "text".into()
}

fn default_true() -> bool {
    true
}

impl Stage for Render {
    const KIND: &'static str = "render";
    const VERSION: u32 = 1;
    const SOURCE: &'static str = include_str!("render.rs");
    const ROW_MAPPED: Option<&'static str> = Some("rows");
    const INPUTS: &'static [InputSlot] = &[InputSlot::one("rows")];
    const OUTPUTS: &'static [&'static str] = &["rows"];
    type Params = RenderParams;

    fn validate(p: &RenderParams) -> Vec<Problem> {
        let mut problems = Vec::new();
        if p.column.trim().is_empty() {
            problems.push(Problem::at("column", "`column` is empty"));
        }
        if p.template.trim().is_empty() {
            problems.push(Problem::at("template", "`template` is empty"));
        }
        problems
    }

    fn file_deps(p: &RenderParams, env: &PlanEnv) -> Vec<FileDep> {
        template_deps(&p.template, env)
    }

    fn run(p: &RenderParams, ctx: &mut RunCtx<'_>) -> Result<(), StageError> {
        let main = ctx.resolve(&p.template);
        let (env, main_name) = load_templates(&main)?;
        let template = env
            .get_template(&main_name)
            .map_err(|e| StageError::Template {
                path: main.clone(),
                message: describe(&e),
            })?;
        let table = ctx.input("rows")?;
        let rows = artifact::table_to_json_rows(&table)?;
        ctx.progress().set_total(rows.len() as u64);
        let mut out = Vec::with_capacity(rows.len());
        // Converted once: every row sees the same constants.
        let vars = templating::json_value(
            &serde_json::to_value(&p.vars).map_err(|e| StageError::failed(e.to_string()))?,
        );
        for (i, row) in rows.into_iter().enumerate() {
            let row = templating::json_value(&serde_json::Value::Object(row));
            let rendered = template
                .render(minijinja::context! { row => row.clone(), vars => vars.clone(), ..row })
                .map_err(|e| StageError::Template {
                    path: main.clone(),
                    message: format!("row {i}: {}", describe(&e)),
                })?;
            out.push(Some(if p.trim {
                rendered.trim().to_string()
            } else {
                rendered
            }));
            ctx.progress().inc(1);
        }
        let result = artifact::with_string_column(&table, &p.column, out)?;
        ctx.write_output("rows", &result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::NoProgress;
    use std::path::Path;

    fn params(template: &str) -> RenderParams {
        RenderParams {
            template: template.into(),
            column: "prompt".into(),
            vars: BTreeMap::from([("lang".to_string(), serde_json::json!("Python"))]),
            trim: true,
        }
    }

    fn write_input(dir: &Path) -> std::path::PathBuf {
        let rows: Vec<serde_json::Map<String, serde_json::Value>> = vec![
            serde_json::json!({"name": "add", "code": "def add(a, b): return a + b"}),
            serde_json::json!({"name": "sub", "code": "def sub(a, b): return a - b"}),
        ]
        .into_iter()
        .map(|v| v.as_object().unwrap().clone())
        .collect();
        let (t, _) = artifact::json_rows_to_table(&rows).unwrap();
        let path = dir.join("in.parquet");
        artifact::write_table(&path, &t).unwrap();
        path
    }

    fn run(
        dir: &Path,
        p: &RenderParams,
    ) -> Result<Vec<serde_json::Map<String, serde_json::Value>>, StageError> {
        let input = write_input(dir);
        let out = dir.join("out");
        fs_err::create_dir_all(&out).unwrap();
        let inputs = BTreeMap::from([("rows".to_string(), vec![input])]);
        let mut ctx = RunCtx::new("t", dir, inputs, &out, &NoProgress);
        Render::run(p, &mut ctx)?;
        let (written, _) = ctx.into_parts();
        artifact::table_to_json_rows(&artifact::read_table(&written["rows"].path).unwrap())
    }

    #[test]
    fn renders_each_row_with_includes() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::create_dir_all(dir.path().join("t")).unwrap();
        fs_err::write(
            dir.path().join("t/main.j2"),
            "{% include 'header.j2' %}\n{{ name }}: {{ row.code }}\n",
        )
        .unwrap();
        fs_err::write(dir.path().join("t/header.j2"), "# {{ vars.lang }}").unwrap();
        let rows = run(dir.path(), &params("t/main.j2")).unwrap();
        assert_eq!(
            rows[0]["prompt"],
            "# Python\nadd: def add(a, b): return a + b"
        );
        assert_eq!(
            rows[1]["prompt"],
            "# Python\nsub: def sub(a, b): return a - b"
        );
        let deps = Render::file_deps(
            &params("t/main.j2"),
            &PlanEnv {
                base_dir: dir.path().into(),
            },
        );
        let paths: Vec<_> = deps.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(paths, ["t/main.j2", "t/header.j2"]);
    }

    #[test]
    fn undefined_variable_is_an_error_with_row_and_line() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::write(dir.path().join("m.j2"), "ok\n{{ nmae }}").unwrap();
        let err = run(dir.path(), &params("m.j2")).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("m.j2") && msg.contains("row 0") && msg.contains("line 2"),
            "{msg}"
        );
    }
}
