//! Where units run: in this process (the default), or as Slurm jobs on a
//! cluster that shares the cache directory.

pub use super::slurm::SlurmOptions;
use super::unit::{Unit, UnitDone};
use crate::spec::Spec;
use crate::store::Store;
use tw_stages::api::Progress;

#[derive(Debug, Clone)]
pub enum Executor {
    Local,
    Slurm(SlurmOptions),
}

impl Executor {
    pub fn name(&self) -> &'static str {
        match self {
            Executor::Local => "local",
            Executor::Slurm(_) => "slurm",
        }
    }

    /// Run every unit of one node; each result in unit order.
    pub fn run_units(
        &self,
        spec: &Spec,
        store: &Store,
        node: usize,
        units: &[Unit],
        progress: &dyn Progress,
        log: &(dyn Fn(String) + Sync),
    ) -> Vec<Result<UnitDone, String>> {
        match self {
            Executor::Local => {
                if units.len() > 1 {
                    progress.set_total(units.len() as u64);
                }
                units
                    .iter()
                    .map(|unit| {
                        let quiet = tw_stages::api::NoProgress;
                        let inner: &dyn Progress = if units.len() > 1 { &quiet } else { progress };
                        let done = super::local::run_unit(spec, store, node, unit, inner);
                        if units.len() > 1 {
                            progress.inc(1);
                        }
                        done
                    })
                    .collect()
            }
            Executor::Slurm(options) => {
                super::slurm::run_units(options, spec, store, node, units, progress, log)
            }
        }
    }
}
