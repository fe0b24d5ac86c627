//! Helpers: a temp project with a cache, and running the real `tw` binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Project {
    pub dir: tempfile::TempDir,
}

pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    /// Stdout and stderr with temp paths and timings made stable for snapshots.
    pub fn normalized(&self, project: &Project) -> String {
        let root = project.dir.path().display().to_string();
        let mut text = format!(
            "exit: {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        );
        text = text.replace(&root, "[TMP]");
        let secs = regex::Regex::new(r"\d+\.\d+s").unwrap();
        secs.replace_all(&text, "[T]s").into_owned()
    }
}

impl Project {
    pub fn new() -> Project {
        Project {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, text: &str) -> &Self {
        let path = self.path(rel);
        fs_err::create_dir_all(path.parent().unwrap()).unwrap();
        fs_err::write(path, text).unwrap();
        self
    }

    pub fn read(&self, rel: &str) -> String {
        fs_err::read_to_string(self.path(rel)).unwrap()
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tw"));
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("TW_CACHE_DIR", self.path("cache"))
            // Always set (CI requires the sandbox), so usage lines are stable.
            .env(
                "TW_SANDBOX",
                std::env::var("TW_SANDBOX").unwrap_or_else(|_| "auto".into()),
            )
            .env_remove("TW_FAILPOINT")
            .env("NO_COLOR", "1");
        cmd
    }

    pub fn tw(&self, args: &[&str]) -> Ran {
        self.tw_env(args, &[])
    }

    pub fn tw_env(&self, args: &[&str], env: &[(&str, &str)]) -> Ran {
        let mut cmd = self.command(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        into_ran(cmd.output().unwrap())
    }

    /// `tw run` that must succeed; returns stderr.
    pub fn run_ok(&self, spec: &str) -> String {
        let ran = self.tw(&["run", spec, "-j", "2"]);
        assert_eq!(
            ran.code, 0,
            "tw run failed:\n{}\n{}",
            ran.stdout, ran.stderr
        );
        ran.stderr
    }

    /// Node id -> (status, key) from `tw plan --json`.
    pub fn plan(&self, spec: &str) -> Vec<(String, String, Option<String>, Vec<String>)> {
        let ran = self.tw(&["plan", spec, "--json"]);
        assert_eq!(ran.code, 0, "tw plan failed:\n{}", ran.stderr);
        let v: serde_json::Value = serde_json::from_str(&ran.stdout).unwrap();
        v["stages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["id"].as_str().unwrap().to_string(),
                    s["status"].as_str().unwrap().to_string(),
                    s["key"].as_str().map(String::from),
                    s["reasons"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|r| r.as_str().unwrap().to_string())
                        .collect(),
                )
            })
            .collect()
    }

    pub fn statuses(&self, spec: &str) -> Vec<(String, String)> {
        self.plan(spec)
            .into_iter()
            .map(|(id, st, _, _)| (id, st))
            .collect()
    }

    pub fn keys(&self, spec: &str) -> Vec<(String, String)> {
        self.plan(spec)
            .into_iter()
            .map(|(id, _, key, _)| (id, key.expect("key known")))
            .collect()
    }

    /// Every committed artifact's manifest, as one text (to look for notes).
    pub fn manifests_text(&self) -> String {
        self.objects()
            .iter()
            .filter_map(|o| fs_err::read_to_string(o.join("manifest.json")).ok())
            .collect()
    }

    /// The note `key` of every committed artifact that has one.
    pub fn notes(&self, key: &str) -> Vec<serde_json::Value> {
        self.objects()
            .iter()
            .filter_map(|o| fs_err::read_to_string(o.join("manifest.json")).ok())
            .filter_map(|m| serde_json::from_str::<serde_json::Value>(&m).ok())
            .filter_map(|m| m["notes"].get(key).cloned())
            .collect()
    }

    /// Committed artifacts in the cache.
    pub fn objects(&self) -> Vec<PathBuf> {
        let obj = self.path("cache/v1/obj");
        let mut out = Vec::new();
        if let Ok(shards) = fs_err::read_dir(obj) {
            for shard in shards.flatten() {
                for entry in fs_err::read_dir(shard.path()).unwrap().flatten() {
                    out.push(entry.path());
                }
            }
        }
        out.sort();
        out
    }
}

pub fn into_ran(out: Output) -> Ran {
    Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn status_map(statuses: &[(String, String)]) -> std::collections::BTreeMap<&str, &str> {
    statuses
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect()
}

pub const PROBLEMS: &str = r#"{"task_id": "t0", "difficulty": "easy", "n_tests": 3, "prompt": "def f0():"}
{"task_id": "t1", "difficulty": "hard", "n_tests": 5, "prompt": "def f1():"}
{"task_id": "t2", "difficulty": "easy", "n_tests": 1, "prompt": "def f2():"}
{"task_id": "t3", "difficulty": "medium", "n_tests": 4, "prompt": "def f3():"}
{"task_id": "t4", "difficulty": "easy", "n_tests": 7, "prompt": "def f4():"}
"#;

/// A small pipeline: load -> filter -> render -> select (+ a second render).
pub const PIPELINE: &str = r#"experiment: pipeline
stages:
  problems:
    kind: load
    params: { path: data/problems.jsonl }
  easy:
    kind: filter
    inputs: { rows: problems.rows }
    params: { where: "difficulty = 'easy'" }
  prompts:
    kind: render
    inputs: { rows: easy.rows }
    params: { template: templates/prompt.j2, column: prompt_text }
  notes:
    kind: render
    inputs: { rows: problems.rows }
    params: { template: templates/note.j2, column: note }
  slim:
    kind: select
    inputs: { rows: prompts.rows }
    params: { columns: [task_id, prompt_text] }
"#;

pub fn pipeline_project() -> Project {
    let p = Project::new();
    p.write("data/problems.jsonl", PROBLEMS)
        .write("specs/pipeline.yaml", PIPELINE)
        .write(
            "specs/templates/prompt.j2",
            "{% include 'header.j2' %}\nFix {{ task_id }}:\n{{ prompt }}\n",
        )
        .write("specs/templates/header.j2", "# Task")
        .write(
            "specs/templates/note.j2",
            "{{ task_id }} has {{ n_tests }} tests",
        );
    // the spec lives in specs/, so its relative paths resolve there
    p.write("specs/data/problems.jsonl", PROBLEMS);
    p
}

#[allow(dead_code)]
pub fn exists(p: &Path) -> bool {
    p.exists()
}
