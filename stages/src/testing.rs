//! What the test suites need from outside the repository, and the one way a
//! test says it cannot run.
//!
//! A test that needs benchmark files, a llama-server, Slurm, model weights,
//! LLaMA-Factory or the sandbox's process isolation is marked
//! `#[ignore = "needs …"]`, so a plain `cargo test` counts it as ignored
//! instead of passing it unseen; `cargo test -- --include-ignored` runs it.
//! When it then finds its resource missing, [`have`] either fails it (the
//! resource's `TW_REQUIRE_*` variable is `1`, as CI sets them all) or prints
//! `skipped: …` and lets it return. No test skips any other way: a test in
//! `tests/it/house.rs` checks the sources for that.
//!
//! Hidden from the docs: only test code uses this module.

use std::path::PathBuf;

/// A resource from outside the repository that some tests need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// `../shared/data` (benchmarks, the original study's artifacts), or the
    /// directories `TW_BENCHMARKS` / `TW_SEED_ARTIFACTS` name.
    Data,
    /// llama.cpp's `llama-server` and SmolLM2's GGUF (`TW_LLAMA_SERVER`, `TW_SMOLLM2_GGUF`).
    Llm,
    /// A single-node Slurm answering `sinfo`.
    Slurm,
    /// Model weights and the Hugging Face reference environment
    /// (`TW_SMOLLM2_HF`, `TW_MINILM`, `TW_TORCH_PYTHON`).
    Models,
    /// `llamafactory-cli` (`TW_LLAMAFACTORY_CLI`).
    LlamaFactory,
    /// The bubblewrap sandbox with job namespaces (what `--sandbox require` needs).
    Isolation,
    /// Headless Chromium and its WebDriver (`chromedriver`), for the study
    /// browser's tests (`TW_CHROMIUM`, `TW_CHROMEDRIVER`, or on `PATH`).
    Browser,
}

impl Need {
    /// Every resource, for documentation and the house test.
    pub const ALL: [Need; 7] = [
        Need::Data,
        Need::Llm,
        Need::Slurm,
        Need::Models,
        Need::LlamaFactory,
        Need::Isolation,
        Need::Browser,
    ];

    /// The variable that turns this resource's absence into a failure.
    pub fn require_var(self) -> &'static str {
        match self {
            Need::Data => "TW_REQUIRE_DATA",
            Need::Llm => "TW_REQUIRE_LLM",
            Need::Slurm => "TW_REQUIRE_SLURM",
            Need::Models => "TW_REQUIRE_MODELS",
            Need::LlamaFactory => "TW_REQUIRE_LLAMAFACTORY",
            Need::Isolation => "TW_REQUIRE_ISOLATION",
            Need::Browser => "TW_REQUIRE_BROWSER",
        }
    }

    /// How to provide it.
    pub fn setup_hint(self) -> &'static str {
        match self {
            Need::Data => "scripts/link-data.sh, or TW_BENCHMARKS / TW_SEED_ARTIFACTS",
            Need::Llm => {
                "eval \"$(scripts/setup-models.sh)\"; eval \"$(scripts/setup-llama-server.sh)\""
            }
            Need::Slurm => "eval \"$(scripts/setup-slurm.sh)\"",
            Need::Models => {
                "eval \"$(scripts/setup-models.sh)\"; eval \"$(scripts/setup-torch.sh --with-hf)\""
            }
            Need::LlamaFactory => "eval \"$(scripts/setup-llamafactory.sh)\"",
            Need::Browser => {
                "scripts/setup-browser.sh (Debian: `apt-get install chromium chromium-driver`)"
            }
            Need::Isolation => {
                "install bubblewrap (`apt-get install bubblewrap`) where unprivileged user namespaces are allowed; `tw sandbox check` says what is missing"
            }
        }
    }

    fn required(self) -> bool {
        std::env::var(self.require_var()).as_deref() == Ok("1")
    }
}

/// Whether a test can go on: `true` when `present`. Otherwise it panics when
/// the resource's `TW_REQUIRE_*` is `1`, and else prints `skipped: <what>` and
/// returns `false`, for the test to return.
#[track_caller]
pub fn have(need: Need, present: bool, what: &str) -> bool {
    if present {
        return true;
    }
    assert!(
        !need.required(),
        "{} is 1 but {what}: {}",
        need.require_var(),
        need.setup_hint()
    );
    eprintln!(
        "skipped: {what} ({}; {} makes this a failure)",
        need.setup_hint(),
        need.require_var()
    );
    false
}

/// The path in environment variable `var` when it is set and not empty;
/// else [`have`] decides (`None` to skip).
#[track_caller]
pub fn env_path(need: Need, var: &str) -> Option<PathBuf> {
    let value = std::env::var_os(var).filter(|v| !v.is_empty());
    if have(need, value.is_some(), &format!("{var} is not set")) {
        value.map(PathBuf::from)
    } else {
        None
    }
}

/// A directory of the shared data beside the checkout (`../shared/data/<rel>`,
/// or the one `env_var` names) when it holds `marker`; else [`have`] decides.
#[track_caller]
pub fn shared_data(env_var: &str, rel: &str, marker: &str) -> Option<PathBuf> {
    let dir = std::env::var_os(env_var)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../shared/data")
                .join(rel)
        });
    let present = dir.join(marker).exists();
    have(
        Need::Data,
        present,
        &format!("no {marker} in {} ({env_var} names another)", dir.display()),
    )
    .then_some(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_need_has_its_own_variable_and_a_hint() {
        let mut vars: Vec<_> = Need::ALL.iter().map(|n| n.require_var()).collect();
        vars.sort_unstable();
        vars.dedup();
        assert_eq!(vars.len(), Need::ALL.len());
        assert!(vars.iter().all(|v| v.starts_with("TW_REQUIRE_")));
        assert!(Need::ALL.iter().all(|n| !n.setup_hint().is_empty()));
    }
}
