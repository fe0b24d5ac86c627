//! The local executor's work: running one unit's stage in this process, with
//! its inputs, the ledger and its progress bar, through the one commit path.

use super::commit::{Produced, cached_or_commit, describe};
use super::unit::{Unit, UnitDone};
use crate::spec::Spec;
use crate::store::{OutputRecord, Store};
use std::collections::BTreeMap;
use tw_stages::api::{Progress, RunCtx};

/// Run one unit in this process and commit it; a unit already committed is
/// returned as found.
pub fn run_unit(
    spec: &Spec,
    store: &Store,
    node_index: usize,
    unit: &Unit,
    progress: &dyn Progress,
) -> Result<UnitDone, String> {
    let node = &spec.nodes()[node_index];
    cached_or_commit(store, spec, node_index, unit, |staging| {
        let mut ctx = RunCtx::new(
            &node.id,
            &spec.base_dir,
            unit.inputs.clone(),
            staging,
            progress,
        )
        .with_ledger_dir(store.ledger_dir())
        .with_input_origins(crate::plan::input_origins(spec, node))
        .with_row_offset(unit.row_offset);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            node.stage_impl.run(&node.params, &mut ctx)
        }));
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(describe(&e)),
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "unknown panic".into());
                return Err(format!("internal error: the stage panicked: {message}"));
            }
        }
        let (written, notes) = ctx.into_parts();
        let mut outputs = BTreeMap::new();
        for name in &node.outputs {
            let Some(w) = written.get(name) else {
                return Err(format!(
                    "internal error: the stage did not write its output `{name}`"
                ));
            };
            let record = OutputRecord::for_file(name, &w.path, w.rows, w.columns.clone())
                .map_err(|e| e.to_string())?;
            outputs.insert(name.clone(), record);
        }
        Ok(Produced { outputs, notes })
    })
}
