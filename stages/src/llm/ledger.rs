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

use super::{Backend, Completion, EndpointStats, LlmError, Request};
use crate::api::Progress;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

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

    /// The model a stage asks (its `model:` param), behind the ledger the
    /// engine put in the stage's context.
    pub fn open(
        ctx: &crate::api::RunCtx<'_>,
        model: &super::ModelSpec,
    ) -> Result<Llm, crate::api::StageError> {
        let dir = ctx.ledger_dir().ok_or_else(|| {
            crate::api::StageError::failed(
                "internal error: no completion ledger directory was set for this stage",
            )
        })?;
        let ledger =
            Ledger::open(dir).map_err(|e| crate::api::StageError::failed(e.to_string()))?;
        Ok(Llm::new(model.open(ctx)?, ledger))
    }

    /// Record what asking the model cost in the manifest.
    pub fn note(&self, ctx: &mut crate::api::RunCtx<'_>) {
        let stats = self.stats();
        ctx.note("model", self.model_id().to_string());
        ctx.note("llm_calls", stats.calls);
        ctx.note("llm_replayed", stats.replayed);
        ctx.note("prompt_tokens", stats.prompt_tokens);
        ctx.note("completion_tokens", stats.completion_tokens);
        self.note_endpoints(ctx);
    }

    pub fn model_id(&self) -> &str {
        &self.model
    }

    pub fn stats(&self) -> CallStats {
        self.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// What each endpoint of an HTTP backend served and failed so far.
    pub fn endpoints(&self) -> Vec<EndpointStats> {
        self.backend.endpoints()
    }

    /// Record in the manifest, as `llm_endpoints`, how many requests each
    /// endpoint served, how many attempts on it failed, and the tokens in
    /// and out it served; nothing for an in-process model.
    pub fn note_endpoints(&self, ctx: &mut crate::api::RunCtx<'_>) {
        let endpoints = self.endpoints();
        if endpoints.is_empty() {
            return;
        }
        let map: serde_json::Map<String, serde_json::Value> = endpoints
            .into_iter()
            .map(|e| {
                (
                    e.base_url,
                    serde_json::json!({
                        "served": e.served,
                        "failed": e.failed,
                        "prompt_tokens": e.prompt_tokens,
                        "completion_tokens": e.completion_tokens,
                    }),
                )
            })
            .collect();
        ctx.note("llm_endpoints", serde_json::Value::Object(map));
    }

    /// Completions of `asks` (a request and its sample index), in order:
    /// replayed from the ledger where stored, asked for otherwise. Each
    /// completion is stored as it arrives; if some fail, the rest are still
    /// stored and the error says how many arrived.
    ///
    /// A prompt that another stage of this process is asking right now (the
    /// first round of sequential scaling is the same for every trace
    /// representation of a matrix) is not asked twice: this stage asks for
    /// the rest first, then waits and takes that stage's completion from the
    /// ledger.
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
        let mut replayed = results.iter().filter(|r| r.is_some()).count();
        progress.inc(replayed as u64);
        // Ask once per distinct key (a greedy prompt asked twice is one call),
        // in the order the asks first name them.
        let mut missing: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, (key, r)) in keys.iter().zip(&results).enumerate() {
            if r.is_none() {
                missing.entry(key.as_str()).or_default().push(i);
            }
        }
        let mut order: Vec<(&str, Vec<usize>)> = missing.into_iter().collect();
        order.sort_by_key(|(_, idx)| idx[0]);

        let (mine, busy) = IN_FLIGHT.claim(&self.ledger.dir, order);
        let mut outcomes = self.ask(asks, &mine.keys, progress);
        drop(mine);
        if !busy.is_empty() {
            IN_FLIGHT.wait_for(&self.ledger.dir, &busy);
            let mut again = Vec::new();
            for (key, idx) in busy {
                match self.ledger.get(key) {
                    Some(c) => {
                        replayed += idx.len();
                        progress.inc(idx.len() as u64);
                        outcomes.push((idx, Some(Ok(c))));
                    }
                    // The other stage failed to get it: ask ourselves.
                    None => again.push((key, idx)),
                }
            }
            outcomes.extend(self.ask(asks, &again, progress));
        }
        if let Ok(mut s) = self.stats.lock() {
            s.replayed += replayed as u64;
        }

        let mut first_error: Option<LlmError> = None;
        let mut failed = 0usize;
        for (idx, outcome) in outcomes {
            match outcome {
                Some(Ok(c)) => {
                    for &i in &idx {
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

    /// Ask the backend for each `(key, asks using it)` and store what arrives;
    /// one outcome per key, `None` where the backend never answered.
    fn ask(
        &self,
        asks: &[(Request, u64)],
        order: &[(&str, Vec<usize>)],
        progress: &dyn Progress,
    ) -> Vec<Outcome> {
        if order.is_empty() {
            return Vec::new();
        }
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
        order
            .iter()
            .zip(arrived)
            .map(|((_, idx), slot)| (idx.clone(), slot.into_inner().ok().flatten()))
            .collect()
    }
}

/// The asks sharing one key, and what the backend said (`None`: nothing).
type Outcome = (Vec<usize>, Option<Result<Completion, LlmError>>);

/// Ledger keys some stage of this process is asking the backend for now.
struct InFlight {
    keys: Mutex<BTreeSet<String>>,
    released: Condvar,
}

static IN_FLIGHT: InFlight = InFlight {
    keys: Mutex::new(BTreeSet::new()),
    released: Condvar::new(),
};

/// Keys claimed by one `complete` call; released (and waiters woken) on
/// drop, so a stage that fails or panics never leaves others waiting.
struct Claim<'k> {
    ids: Vec<String>,
    keys: Vec<(&'k str, Vec<usize>)>,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut keys = IN_FLIGHT.lock();
        for id in &self.ids {
            keys.remove(id);
        }
        IN_FLIGHT.released.notify_all();
    }
}

impl InFlight {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The ledger holds each key once per directory; two caches may share a process.
    fn id(dir: &Path, key: &str) -> String {
        format!("{}/{key}", dir.display())
    }

    /// Claim the keys nobody asks for now; return them and the busy rest.
    fn claim<'k>(
        &self,
        dir: &Path,
        order: Vec<(&'k str, Vec<usize>)>,
    ) -> (Claim<'k>, Vec<(&'k str, Vec<usize>)>) {
        let mut keys = self.lock();
        let mut mine = Claim {
            ids: Vec::new(),
            keys: Vec::new(),
        };
        let mut busy = Vec::new();
        for (key, idx) in order {
            let id = Self::id(dir, key);
            if keys.insert(id.clone()) {
                mine.ids.push(id);
                mine.keys.push((key, idx));
            } else {
                busy.push((key, idx));
            }
        }
        (mine, busy)
    }

    /// Block until none of `busy` is being asked for.
    fn wait_for(&self, dir: &Path, busy: &[(&str, Vec<usize>)]) {
        let ids: Vec<String> = busy.iter().map(|(k, _)| Self::id(dir, k)).collect();
        let mut keys = self.lock();
        while ids.iter().any(|id| keys.contains(id)) {
            keys = self.released.wait(keys).unwrap_or_else(|e| e.into_inner());
        }
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

    /// Echo that takes a while per request and counts, shared by two "stages".
    struct Slow(std::sync::Arc<AtomicUsize>);

    impl Backend for Slow {
        fn model_id(&self) -> String {
            "slow".into()
        }
        fn complete(&self, requests: &[Request]) -> Result<Vec<Completion>, LlmError> {
            std::thread::sleep(std::time::Duration::from_millis(50));
            self.0.fetch_add(requests.len(), Ordering::SeqCst);
            Echo {
                calls: AtomicUsize::new(0),
            }
            .complete(requests)
        }
    }

    #[test]
    fn two_stages_asking_the_same_prompts_at_once_share_one_call_each() {
        let dir = tempfile::tempdir().expect("tempdir");
        let calls = std::sync::Arc::new(AtomicUsize::new(0));
        let stage = || {
            Llm::new(
                Box::new(Slow(calls.clone())),
                Ledger::open(dir.path()).expect("ledger"),
            )
        };
        let (a, b) = (stage(), stage());
        // Both ask a, b, c; `b` also asks its own d.
        let shared: Vec<_> = (0..3).map(|i| ask(&format!("p{i}"), i, 0)).collect();
        let mut with_own = shared.clone();
        with_own.push(ask("own", 9, 0));
        let (out_a, out_b) = std::thread::scope(|s| {
            let ta = s.spawn(|| a.complete(&shared, &NoProgress));
            let tb = s.spawn(|| b.complete(&with_own, &NoProgress));
            (ta.join().expect("a"), tb.join().expect("b"))
        });
        let (out_a, out_b) = (out_a.expect("a succeeds"), out_b.expect("b succeeds"));
        assert_eq!(out_a[..], out_b[..3], "both see the same completions");
        assert_eq!(calls.load(Ordering::SeqCst), 4, "p0..p2 once, `own` once");
        let (sa, sb) = (a.stats(), b.stats());
        assert_eq!(sa.calls + sb.calls, 4);
        assert_eq!(
            sa.replayed + sb.replayed,
            3,
            "what one asked, the other replayed"
        );
        let ours = InFlight::id(dir.path(), "");
        assert!(
            !IN_FLIGHT.lock().iter().any(|id| id.starts_with(&ours)),
            "claims are released"
        );
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
