//! The one explicit list of stage kinds.
//!
//! No `inventory`/`ctor` magic (buck2 found it unreliable): adding a kind is
//! one line in [`Registry::builtin`]. Kinds that need a cargo feature that is
//! off are still known by name, so a spec using them gets "rebuild with
//! feature X" instead of "unknown kind".

use crate::api::{DynStage, Erased, Stage};
use crate::kinds::{bench, data, dataset, llm, programs, sft};
use std::collections::BTreeMap;

pub struct Registry {
    kinds: BTreeMap<&'static str, Box<dyn DynStage>>,
    /// kind -> cargo feature it needs, for kinds compiled out of this build.
    unavailable: BTreeMap<&'static str, &'static str>,
}

impl Registry {
    /// Every stage kind this build of `tw` knows.
    pub fn builtin() -> Self {
        let mut r = Registry {
            kinds: BTreeMap::new(),
            unavailable: BTreeMap::new(),
        };
        // Tables.
        r.add::<data::load::Load>();
        r.add::<data::render::Render>();
        #[cfg(feature = "polars")]
        {
            r.add::<data::filter::Filter>();
            r.add::<data::select::Select>();
            r.add::<data::sample::Sample>();
            r.add::<data::join::Join>();
            r.add::<data::concat::Concat>();
            r.add::<crate::kinds::report::Report>();
        }
        #[cfg(not(feature = "polars"))]
        for kind in ["filter", "select", "sample", "join", "concat", "report"] {
            r.unavailable.insert(kind, "polars");
        }
        // Benchmarks and generations.
        r.add::<bench::load_benchmark::LoadBenchmark>();
        r.add::<bench::load_samples::LoadSamples>();
        r.add::<bench::score::Score>();
        // Running programs.
        r.add::<programs::execute::Execute>();
        r.add::<programs::trace::Trace>();
        r.add::<programs::failing_tests::FailingTests>();
        // The repair dataset.
        r.add::<dataset::mine_pairs::MinePairs>();
        r.add::<dataset::decontaminate::Decontaminate>();
        r.add::<dataset::represent::Represent>();
        r.add::<dataset::score_traces::ScoreTraces>();
        r.add::<dataset::reasoning_tasks::ReasoningTasks>();
        r.add::<dataset::grade_answers::GradeAnswers>();
        r.add::<dataset::export_sft::ExportSft>();
        r.add::<dataset::sanitize::Sanitize>();
        r.add::<dataset::flag_exploits::FlagExploits>();
        r.add::<dataset::export_traces::ExportTraces>();
        // Asking models.
        r.add::<llm::generate::Generate>();
        r.add::<llm::sequential_scaling::SequentialScaling>();
        r.add::<llm::parallel_scaling::ParallelScaling>();
        #[cfg(feature = "torch")]
        r.add::<llm::sample_candidates::SampleCandidates>();
        #[cfg(not(feature = "torch"))]
        r.unavailable.insert("sample_candidates", "torch");
        // Fine-tuning: in every build (its `llamafactory` backend needs no
        // torch; its default `tch` backend says to rebuild with it).
        r.add::<sft::Sft>();
        r
    }

    /// Register a kind. Panics on a duplicate name: that is a programming error.
    pub fn add<S: Stage>(&mut self) {
        assert!(
            !self.kinds.contains_key(S::KIND),
            "stage kind `{}` registered twice",
            S::KIND
        );
        self.kinds.insert(S::KIND, Box::new(Erased::<S>::new()));
    }

    pub fn get(&self, kind: &str) -> Option<&dyn DynStage> {
        self.kinds.get(kind).map(|b| b.as_ref())
    }

    /// The cargo feature a known-but-compiled-out kind needs.
    pub fn needs_feature(&self, kind: &str) -> Option<&'static str> {
        self.unavailable.get(kind).copied()
    }

    pub fn kinds(&self) -> impl Iterator<Item = &dyn DynStage> {
        self.kinds.values().map(|b| b.as_ref())
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.kinds.keys().copied().collect()
    }

    /// Kinds that map over rows, which `shard:` may split.
    pub fn row_mapped_kinds(&self) -> Vec<&'static str> {
        self.kinds
            .iter()
            .filter(|(_, k)| k.row_mapped_slot().is_some())
            .map(|(name, _)| *name)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_names_are_unique_snake_case_and_documented() {
        let r = Registry::builtin();
        assert!(!r.names().is_empty());
        for stage in r.kinds() {
            let kind = stage.kind();
            assert!(
                kind.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                    && kind.starts_with(|c: char| c.is_ascii_lowercase()),
                "`{kind}` is not snake_case"
            );
            let doc = stage.doc();
            for section in [
                "# Params",
                "# Inputs",
                "# Outputs",
                "# Caching",
                "# Example",
            ] {
                assert!(doc.contains(section), "`{kind}` doc lacks `{section}`");
            }
            assert!(
                doc.starts_with(&format!("`{kind}`: ")),
                "`{kind}` doc must start with its name"
            );
            assert!(stage.version() >= 1);
        }
    }

    #[test]
    #[should_panic(expected = "registered twice")]
    fn duplicate_kind_panics() {
        let mut r = Registry::builtin();
        r.add::<data::load::Load>();
    }
}
