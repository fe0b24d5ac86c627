//! The completion ledger: every completion a stage received, stored
//! content-addressed by what produced it, so that asking again costs nothing.
//!
//! The key is the blake3 hash of the rendered prompt (its exact bytes, or the
//! exact chat messages), the model's identity, the resolved sampling params
//! (temperature, top_p, max_tokens, stop, seed) and the sample's index. It
//! does not depend on the stage, the spec or the endpoint's address, so:
//! - a stage that reruns (an edited downstream param, a new representation)
//!   replays every completion it asked for before, at zero tokens, with
//!   identical text; servers cannot promise that by themselves (vLLM's
//!   seeded sampling changes with batch composition);
//! - a stage killed mid-way, or whose endpoint died, keeps each completion
//!   the moment it arrived (one file each, written atomically), and the next
//!   run asks only for the rest.
//!
//! Layout: `<cache>/ledger/<2 hex>/<64 hex>.json`, one JSON record per
//! completion with its request, so the ledger can be read without `tw`.
//! `tw gc` leaves the ledger alone; delete the directory to forget it.

use super::{Backend, Completion, LlmError, Request};
use crate::api::Progress;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The format of a ledger record; part of every key.
const LEDGER_FORMAT: u32 = 1;

pub struct Ledger {
    dir: PathBuf,
}

/// One stored completion.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub key: String,
    pub model: String,
    pub request: Request,
    pub index: u64,
    pub completion: Completion,
    pub received_unix: u64,
}

#[derive(Serialize)]
struct KeyInput<'a> {
    format: u32,
    model: &'a str,
    request: &'a Request,
    index: u64,
}

impl Ledger {
    pub fn open(dir: &Path) -> Result<Ledger, LlmError> {
        fs_err::create_dir_all(dir).map_err(|e| LlmError::Ledger {
            path: dir.to_path_buf(),
            message: e.to_string(),
        })?;
        Ok(Ledger {
            dir: dir.to_path_buf(),
        })
    }

    pub fn key(model: &str, request: &Request, index: u64) -> String {
        let input = KeyInput {
            format: LEDGER_FORMAT,
            model,
            request,
            index,
        };
        let bytes = serde_json::to_vec(&input).unwrap_or_default();
        blake3::hash(&bytes).to_hex().to_string()
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(&key[..2]).join(format!("{key}.json"))
    }

    /// The stored completion, if any; an unreadable record counts as absent
    /// (it is asked for again and overwritten).
    pub fn get(&self, key: &str) -> Option<Completion> {
        let bytes = fs_err::read(self.path(key)).ok()?;
        let record: Record = serde_json::from_slice(&bytes).ok()?;
        (record.key == key).then_some(record.completion)
    }

    /// Store a completion unless one is stored under its key already, and
    /// return the stored one. First writer wins: two stages that asked the
    /// same thing at once (servers answer differently under concurrent
    /// batching) both go on with the same completion, the one a rerun replays.
    pub fn put(&self, record: &Record) -> Result<Completion, LlmError> {
        let path = self.path(&record.key);
        let fail = |e: std::io::Error| LlmError::Ledger {
            path: path.clone(),
            message: e.to_string(),
        };
        let parent = path.parent().unwrap_or(&self.dir);
        fs_err::create_dir_all(parent).map_err(fail)?;
        let bytes =
            serde_json::to_vec_pretty(record).map_err(|e| fail(std::io::Error::other(e)))?;
        let mut tmp = tempfile::NamedTempFile::new_in(parent).map_err(fail)?;
        std::io::Write::write_all(&mut tmp, &bytes).map_err(fail)?;
        match tmp.persist_noclobber(&path) {
            Ok(_) => Ok(record.completion.clone()),
            Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {
                match self.get(&record.key) {
                    Some(stored) => Ok(stored),
                    // An unreadable record: replace it.
                    None => {
                        e.file.persist(&path).map_err(|e| fail(e.error))?;
                        Ok(record.completion.clone())
                    }
                }
            }
            Err(e) => Err(fail(e.error)),
        }
    }
}

/// What asking cost: calls made, completions replayed, tokens.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CallStats {
    /// Completions received from the backend in this run.
    pub calls: u64,
    /// Completions replayed from the ledger.
    pub replayed: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// A backend behind its ledger: the one way stages ask a model.
pub struct Llm {
    backend: Box<dyn Backend>,
    ledger: Ledger,
    model: String,
    stats: Mutex<CallStats>,
}

impl Llm {
    pub fn new(backend: Box<dyn Backend>, ledger: Ledger) -> Llm {
        let model = backend.model_id();
        Llm {
            backend,
            ledger,
            model,
            stats: Mutex::new(CallStats::default()),
        }
    }

    pub fn model_id(&self) -> &str {
        &self.model
    }

    pub fn stats(&self) -> CallStats {
        self.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Completions of `asks` (a request and its sample index), in order:
    /// replayed from the ledger where stored, asked for otherwise. Each
    /// completion is stored as it arrives; if some fail, the rest are still
    /// stored and the error says how many arrived.
    pub fn complete(
        &self,
        asks: &[(Request, u64)],
        progress: &dyn Progress,
    ) -> Result<Vec<Completion>, LlmError> {
        let keys: Vec<String> = asks
            .iter()
            .map(|(r, i)| Ledger::key(&self.model, r, *i))
            .collect();
        let mut results: Vec<Option<Completion>> =
            keys.iter().map(|k| self.ledger.get(k)).collect();
        let replayed = results.iter().filter(|r| r.is_some()).count();
        progress.inc(replayed as u64);
        // Ask once per distinct key (a greedy prompt asked twice is one call).
        let mut missing: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, (key, r)) in keys.iter().zip(&results).enumerate() {
            if r.is_none() {
                missing.entry(key.as_str()).or_default().push(i);
            }
        }
        let order: Vec<(&str, Vec<usize>)> = {
            let mut v: Vec<(&str, Vec<usize>)> = missing.into_iter().collect();
            v.sort_by_key(|(_, idx)| idx[0]);
            v
        };
        let requests: Vec<Request> = order
            .iter()
            .map(|(_, idx)| asks[idx[0]].0.clone())
            .collect();
        let arrived: Vec<Mutex<Option<Result<Completion, LlmError>>>> =
            requests.iter().map(|_| Mutex::new(None)).collect();
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if !requests.is_empty() {
            self.backend.complete_each(&requests, &|j, result| {
                let (key, idx) = &order[j];
                let result = result.and_then(|received| {
                    let completion = self.ledger.put(&Record {
                        key: key.to_string(),
                        model: self.model.clone(),
                        request: requests[j].clone(),
                        index: asks[idx[0]].1,
                        completion: received,
                        received_unix: unix,
                    })?;
                    if let Ok(mut s) = self.stats.lock() {
                        s.calls += 1;
                        s.prompt_tokens += completion.prompt_tokens as u64;
                        s.completion_tokens += completion.completion_tokens as u64;
                    }
                    progress.inc(idx.len() as u64);
                    Ok(completion)
                });
                if let Ok(mut slot) = arrived[j].lock() {
                    *slot = Some(result);
                }
            });
        }
        if let Ok(mut s) = self.stats.lock() {
            s.replayed += replayed as u64;
        }
        let mut first_error: Option<LlmError> = None;
        let mut failed = 0usize;
        for ((_, idx), slot) in order.iter().zip(arrived) {
            match slot.into_inner().ok().flatten() {
                Some(Ok(c)) => {
                    for &i in idx {
                        results[i] = Some(c.clone());
                    }
                }
                Some(Err(e)) => {
                    failed += idx.len();
                    first_error.get_or_insert(e);
                }
                None => {
                    failed += idx.len();
                    first_error
                        .get_or_insert(LlmError::Backend("the backend returned no result".into()));
                }
            }
        }
        if let Some(first) = first_error {
            return Err(LlmError::Partial {
                total: asks.len(),
                received: asks.len() - failed,
                failed,
                first: Box::new(first),
            });
        }
        // Every slot is filled now: a missing one was counted as failed above.
        results
            .into_iter()
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| LlmError::Backend("a completion went missing".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::NoProgress;
    use crate::llm::{FinishReason, Prompt, Sampling};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A backend that echoes, counts its calls and fails on prompts containing "fail".
    struct Echo {
        calls: AtomicUsize,
    }

    impl Backend for Echo {
        fn model_id(&self) -> String {
            "echo".into()
        }
        fn complete(&self, requests: &[Request]) -> Result<Vec<Completion>, LlmError> {
            Ok(requests
                .iter()
                .map(|r| {
                    self.calls.fetch_add(1, Ordering::SeqCst);
                    let Prompt::Text(t) = &r.prompt else {
                        unreachable!()
                    };
                    Completion {
                        text: format!("{t}/{}", r.sampling.seed),
                        finish_reason: FinishReason::Stop,
                        prompt_tokens: 1,
                        completion_tokens: 2,
                    }
                })
                .collect())
        }
        fn complete_each(
            &self,
            requests: &[Request],
            done: &(dyn Fn(usize, Result<Completion, LlmError>) + Sync),
        ) {
            for (i, r) in requests.iter().enumerate() {
                let Prompt::Text(t) = &r.prompt else {
                    unreachable!()
                };
                if t.contains("fail") {
                    done(i, Err(LlmError::Backend("boom".into())));
                } else {
                    done(
                        i,
                        self.complete(std::slice::from_ref(r))
                            .map(|mut c| c.remove(0)),
                    );
                }
            }
        }
    }

    fn ask(text: &str, seed: u64, index: u64) -> (Request, u64) {
        (
            Request {
                prompt: Prompt::Text(text.into()),
                sampling: Sampling {
                    seed,
                    ..Sampling::default()
                },
            },
            index,
        )
    }

    #[test]
    fn replays_stored_completions_and_asks_only_for_the_rest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let asks = vec![ask("a", 1, 0), ask("fail", 2, 1), ask("b", 3, 2)];
        let llm = Llm::new(
            Box::new(Echo {
                calls: AtomicUsize::new(0),
            }),
            Ledger::open(dir.path()).expect("ledger"),
        );
        let err = llm.complete(&asks, &NoProgress).expect_err("one fails");
        assert!(
            matches!(
                err,
                LlmError::Partial {
                    received: 2,
                    failed: 1,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(llm.stats().calls, 2);

        let again = Llm::new(
            Box::new(Echo {
                calls: AtomicUsize::new(0),
            }),
            Ledger::open(dir.path()).expect("ledger"),
        );
        let asks = vec![
            ask("a", 1, 0),
            ask("c", 2, 1),
            ask("b", 3, 2),
            ask("a", 1, 0),
        ];
        let out = again.complete(&asks, &NoProgress).expect("all succeed");
        assert_eq!(
            out.iter().map(|c| c.text.as_str()).collect::<Vec<_>>(),
            ["a/1", "c/2", "b/3", "a/1"]
        );
        let stats = again.stats();
        assert_eq!((stats.calls, stats.replayed), (1, 3), "only `c` is new");
    }

    #[test]
    fn the_first_completion_stored_under_a_key_wins() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ledger = Ledger::open(dir.path()).expect("ledger");
        let (request, index) = ask("a", 1, 0);
        let record = |text: &str| Record {
            key: Ledger::key("m", &request, index),
            model: "m".into(),
            request: request.clone(),
            index,
            completion: Completion {
                text: text.into(),
                finish_reason: FinishReason::Stop,
                prompt_tokens: 0,
                completion_tokens: 0,
            },
            received_unix: 0,
        };
        assert_eq!(ledger.put(&record("first")).expect("put").text, "first");
        assert_eq!(ledger.put(&record("second")).expect("put").text, "first");
        assert_eq!(ledger.get(&record("x").key).expect("stored").text, "first");
    }

    #[test]
    fn the_key_covers_prompt_model_sampling_index_and_seed() {
        let (r, _) = ask("a", 1, 0);
        let base = Ledger::key("m", &r, 0);
        assert_ne!(base, Ledger::key("m2", &r, 0));
        assert_ne!(base, Ledger::key("m", &r, 1));
        let mut other = r.clone();
        other.sampling.seed = 2;
        assert_ne!(base, Ledger::key("m", &other, 0));
        let mut other = r.clone();
        other.sampling.temperature = 0.7;
        assert_ne!(base, Ledger::key("m", &other, 0));
        let mut other = r.clone();
        other.prompt = Prompt::Text("a ".into());
        assert_ne!(base, Ledger::key("m", &other, 0));
        assert_eq!(base, Ledger::key("m", &r, 0));
    }
}
