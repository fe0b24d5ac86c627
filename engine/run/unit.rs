//! A unit of work: a whole stage, or one shard of a sharded stage, with its
//! key, pre-image and input paths already decided by the coordinating
//! `tw run`. Whoever runs a unit commits its artifact to the store under that
//! key, so the coordinator learns the outcome from the store alone: an
//! executor never ships bytes back, and a unit another run already committed
//! is a cache hit wherever it was computed.

use crate::plan::PreImage;
use crate::store::OutputRecord;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// One unit of work: a stage, or one shard of it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Unit {
    /// The node's id; a shard adds `#<index>` in messages only.
    pub node: String,
    pub shard: Option<usize>,
    pub key: String,
    pub pre_image: PreImage,
    pub inputs: BTreeMap<String, Vec<PathBuf>>,
    #[serde(default)]
    pub row_offset: usize,
    #[serde(default)]
    pub forced: bool,
}

impl Unit {
    pub fn label(&self) -> String {
        match self.shard {
            Some(k) => format!("{} shard {k}", self.node),
            None => self.node.clone(),
        }
    }
}

/// A unit's result, once it is in the store.
#[derive(Debug, Clone)]
pub struct UnitDone {
    pub outputs: BTreeMap<String, OutputRecord>,
    pub notes: BTreeMap<String, serde_json::Value>,
    pub seconds: f64,
    /// Found committed (by another process, or an earlier attempt).
    pub cached: bool,
}
