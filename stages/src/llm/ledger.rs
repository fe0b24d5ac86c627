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
//! Layout: `<cache>/ledger/segments/<start>-<host>-<pid>.jsonl`, one
//! append-only JSON Lines file per process that stored something, one
//! record per line (the key first, then the model, the request, the sample's
//! index, the completion and when it arrived), so the ledger can be read
//! without `tw` (`cat segments/*.jsonl | jq`). Half a million completions
//! are a handful of files, not half a million.
//!
//! - A completion is durable the moment it arrives: its line is appended with
//!   one `write` before the stage goes on, so a `kill -9` loses only requests
//!   still in flight. A torn last line (a kill during the write) is skipped
//!   when read, and that completion is asked again.
//! - Many writers at once, on one host or many (Slurm tasks over a shared
//!   file system): each process appends to its own segment; storing takes an
//!   exclusive `flock` on `ledger/lock`, reads what other processes appended
//!   since it last looked (a counter in the lock file says whether anything
//!   was), and stores only if the key is still absent. So the first
//!   completion stored under a key wins everywhere and a rerun replays it.
//!   Where the file system has no working `flock`, two processes may both
//!   store a key; every reader then takes the same one (the earliest
//!   segment's), so reruns still agree.
//! - Reading builds an index (key -> segment, offset) from the segments once
//!   per process and reads a record when asked; `tw` processes share it.
//! - The first layout, one `<2 hex>/<64 hex>.json` file per completion, is
//!   migrated when a ledger is opened: its records are appended to one
//!   segment (`...-migrated.jsonl`), flushed to disk, and the files removed.
//!
//! `tw gc` leaves the ledger alone; delete the directory to forget it.

use super::{Backend, Completion, EndpointStats, LlmError, Request};
use crate::api::Progress;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

/// The format of a ledger record; part of every key.
const LEDGER_FORMAT: u32 = 1;
/// Where segments live under the ledger directory.
const SEGMENTS: &str = "segments";
/// The file writers lock, holding the count of records stored through it.
const LOCK: &str = "lock";
/// How much of a segment is read at once when indexing it.
const SCAN_CHUNK: usize = 8 << 20;

pub struct Ledger {
    dir: PathBuf,
    shared: Arc<Shared>,
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

/// What a ledger holds, for `tw` and the benchmarks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LedgerStats {
    pub records: u64,
    pub segments: u64,
    pub bytes: u64,
}

/// The ledgers this process has open, one per directory: stages share the
/// index and the segment they append to.
static OPEN: Mutex<BTreeMap<PathBuf, Arc<Shared>>> = Mutex::new(BTreeMap::new());

struct Shared {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    index: HashMap<String, Loc>,
    segments: Vec<Segment>,
    by_name: HashMap<String, u32>,
    writer: Option<Writer>,
    lock: Option<File>,
    /// The lock file's record count when this process last caught up.
    seen_count: Option<u64>,
}

struct Segment {
    name: String,
    file: Arc<File>,
    /// Bytes indexed so far (always at a line's end).
    scanned: u64,
}

#[derive(Clone, Copy)]
struct Loc {
    segment: u32,
    offset: u64,
    len: u32,
}

struct Writer {
    segment: u32,
    file: File,
    len: u64,
}

fn io_error(path: &Path, e: impl std::fmt::Display) -> LlmError {
    LlmError::Ledger {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// The key at the start of a record line (`{"key":"<64 hex>"`), without
/// parsing the rest.
fn line_key(line: &[u8]) -> Option<&str> {
    let rest = line.strip_prefix(br#"{"key":""#)?;
    let key = rest.get(..64)?;
    (rest.get(64) == Some(&b'"') && key.iter().all(u8::is_ascii_hexdigit))
        .then(|| std::str::from_utf8(key).ok())
        .flatten()
}

impl State {
    /// Index what every segment gained since the last look.
    fn refresh(&mut self, dir: &Path) -> Result<(), LlmError> {
        let seg_dir = dir.join(SEGMENTS);
        let mut names: Vec<String> = match fs_err::read_dir(&seg_dir) {
            Ok(entries) => entries
                .flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.ends_with(".jsonl"))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_error(&seg_dir, e)),
        };
        names.sort();
        for name in names {
            let id = match self.by_name.get(&name) {
                Some(&id) => id,
                None => self.add_segment(&seg_dir, name)?,
            };
            self.scan(id, &seg_dir)?;
        }
        Ok(())
    }

    /// Start reading segment `name`; its id.
    fn add_segment(&mut self, seg_dir: &Path, name: String) -> Result<u32, LlmError> {
        let path = seg_dir.join(&name);
        let file = fs_err::File::open(&path)
            .map_err(|e| io_error(&path, e))?
            .into_parts()
            .0;
        let id = self.segments.len() as u32;
        self.segments.push(Segment {
            name: name.clone(),
            file: Arc::new(file),
            scanned: 0,
        });
        self.by_name.insert(name, id);
        Ok(id)
    }

    /// Index the complete lines segment `id` gained; a torn last line (no
    /// newline yet) waits for the next look.
    fn scan(&mut self, id: u32, seg_dir: &Path) -> Result<(), LlmError> {
        let seg = &self.segments[id as usize];
        let path = seg_dir.join(&seg.name);
        let file = Arc::clone(&seg.file);
        let len = file.metadata().map_err(|e| io_error(&path, e))?.len();
        let mut line_start = seg.scanned;
        let mut pos = seg.scanned;
        let mut carry: Vec<u8> = Vec::new();
        let mut chunk = Vec::new();
        let mut found: Vec<(String, Loc)> = Vec::new();
        while pos < len {
            let want = ((len - pos) as usize).min(SCAN_CHUNK);
            chunk.resize(want, 0);
            file.read_exact_at(&mut chunk, pos)
                .map_err(|e| io_error(&path, e))?;
            let mut last = 0usize;
            for i in 0..want {
                if chunk[i] != b'\n' {
                    continue;
                }
                let line: &[u8] = if carry.is_empty() {
                    &chunk[last..i]
                } else {
                    carry.extend_from_slice(&chunk[last..i]);
                    &carry
                };
                if let Some(key) = line_key(line) {
                    found.push((
                        key.to_string(),
                        Loc {
                            segment: id,
                            offset: line_start,
                            len: line.len() as u32,
                        },
                    ));
                }
                carry.clear();
                line_start = pos + i as u64 + 1;
                last = i + 1;
            }
            carry.extend_from_slice(&chunk[last..]);
            pos += want as u64;
        }
        self.segments[id as usize].scanned = line_start;
        for (key, loc) in found {
            // The earliest segment's record wins (names start with the time).
            let keep_old = self.index.get(&key).is_some_and(|old| {
                (&self.segments[old.segment as usize].name, old.offset)
                    <= (&self.segments[id as usize].name, loc.offset)
            });
            if !keep_old {
                self.index.insert(key, loc);
            }
        }
        Ok(())
    }

    fn read(&self, loc: Loc) -> Option<Record> {
        let seg = self.segments.get(loc.segment as usize)?;
        let mut buf = vec![0u8; loc.len as usize];
        seg.file.read_exact_at(&mut buf, loc.offset).ok()?;
        serde_json::from_slice(&buf).ok()
    }
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A held `flock` on the ledger's lock file; released on drop.
struct Locked<'f>(&'f File);

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

impl Ledger {
    pub fn open(dir: &Path) -> Result<Ledger, LlmError> {
        fs_err::create_dir_all(dir.join(SEGMENTS)).map_err(|e| io_error(dir, e))?;
        let canonical = fs_err::canonicalize(dir).map_err(|e| io_error(dir, e))?;
        let shared = {
            let mut open = OPEN.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(open.entry(canonical.clone()).or_insert_with(|| {
                Arc::new(Shared {
                    state: Mutex::new(State::default()),
                })
            }))
        };
        let ledger = Ledger {
            dir: canonical,
            shared,
        };
        ledger.migrate_files()?;
        ledger.refresh()?;
        Ok(ledger)
    }

    /// A ledger with state of its own, as another process would have it.
    #[cfg(test)]
    fn open_as_another_process(dir: &Path) -> Result<Ledger, LlmError> {
        fs_err::create_dir_all(dir.join(SEGMENTS)).map_err(|e| io_error(dir, e))?;
        let ledger = Ledger {
            dir: fs_err::canonicalize(dir).map_err(|e| io_error(dir, e))?,
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
            }),
        };
        ledger.migrate_files()?;
        ledger.refresh()?;
        Ok(ledger)
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

    /// Catch up with what other processes stored.
    pub fn refresh(&self) -> Result<(), LlmError> {
        self.shared.state().refresh(&self.dir)
    }

    /// The stored completion, if any; an unreadable record counts as absent
    /// (it is asked for again, and the new one is read from then on).
    pub fn get(&self, key: &str) -> Option<Completion> {
        let state = self.shared.state();
        let loc = *state.index.get(key)?;
        let record = state.read(loc)?;
        (record.key == key).then_some(record.completion)
    }

    /// Records, segments and bytes.
    pub fn stats(&self) -> Result<LedgerStats, LlmError> {
        let mut state = self.shared.state();
        state.refresh(&self.dir)?;
        Ok(LedgerStats {
            records: state.index.len() as u64,
            segments: state.segments.len() as u64,
            bytes: state.segments.iter().map(|s| s.scanned).sum(),
        })
    }

    /// Run `f` holding the ledger's `flock` (blocking) and this process's
    /// state; the lock file is opened once per process.
    fn locked<T>(
        &self,
        f: impl FnOnce(&mut State, &File) -> Result<T, LlmError>,
    ) -> Result<T, LlmError> {
        let path = self.dir.join(LOCK);
        let mut guard = self.shared.state();
        let state = &mut *guard;
        let file = match state.lock.take() {
            Some(file) => file,
            None => std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| io_error(&path, e))?,
        };
        let result = match file.lock() {
            Ok(()) => {
                let held = Locked(&file);
                let out = f(state, &file);
                drop(held);
                out
            }
            Err(e) => Err(io_error(&path, e)),
        };
        state.lock = Some(file);
        result
    }

    /// Store a completion unless one is stored under its key already, and
    /// return the stored one. First writer wins: two stages that asked the
    /// same thing at once (servers answer differently under concurrent
    /// batching) both go on with the same completion, the one a rerun replays.
    pub fn put(&self, record: &Record) -> Result<Completion, LlmError> {
        let lock_path = self.dir.join(LOCK);
        self.locked(|state, lock_file| {
            let count = read_count(lock_file);
            if state.seen_count != Some(count) {
                state.refresh(&self.dir)?;
            }
            state.seen_count = Some(count);
            if let Some(&loc) = state.index.get(&record.key)
                && let Some(stored) = state.read(loc).filter(|r| r.key == record.key)
            {
                return Ok(stored.completion);
            }
            let mut line = serde_json::to_vec(record).map_err(|e| io_error(&lock_path, e))?;
            line.push(b'\n');
            let (segment, offset) = {
                let w = self.writer(state)?;
                (w.segment, w.len)
            };
            let written = match state.writer.as_mut() {
                Some(w) => w.file.write_all(&line),
                None => Err(std::io::Error::other("no segment to write")),
            };
            if let Err(e) = written {
                // A partial line may be on disk: a fresh segment next time.
                state.writer = None;
                return Err(io_error(&self.dir.join(SEGMENTS), e));
            }
            let end = offset + line.len() as u64;
            if let Some(w) = state.writer.as_mut() {
                w.len = end;
            }
            state.segments[segment as usize].scanned = end;
            state.index.insert(
                record.key.clone(),
                Loc {
                    segment,
                    offset,
                    len: (line.len() - 1) as u32,
                },
            );
            write_count(lock_file, count + 1).map_err(|e| io_error(&lock_path, e))?;
            state.seen_count = Some(count + 1);
            Ok(record.completion.clone())
        })
    }

    /// This process's segment, created on its first record.
    fn writer<'s>(&self, state: &'s mut State) -> Result<&'s mut Writer, LlmError> {
        if state.writer.is_none() {
            let name = segment_name("");
            let path = self.dir.join(SEGMENTS).join(&name);
            let file = std::fs::OpenOptions::new()
                .append(true)
                .create_new(true)
                .open(&path)
                .map_err(|e| io_error(&path, e))?;
            let id = state.add_segment(&self.dir.join(SEGMENTS), name)?;
            state.writer = Some(Writer {
                segment: id,
                file,
                len: 0,
            });
        }
        state
            .writer
            .as_mut()
            .ok_or_else(|| io_error(&self.dir, "no segment to write"))
    }

    /// Move records of the first layout (`<2 hex>/<64 hex>.json`) into a
    /// segment, under the lock; remove their files once it is on disk.
    fn migrate_files(&self) -> Result<(), LlmError> {
        if legacy_dirs(&self.dir).is_empty() {
            return Ok(());
        }
        let lock_path = self.dir.join(LOCK);
        self.locked(|state, lock_file| {
            state.refresh(&self.dir)?;
            let mut files: Vec<PathBuf> = Vec::new();
            for d in legacy_dirs(&self.dir) {
                for e in fs_err::read_dir(&d).map_err(|e| io_error(&d, e))?.flatten() {
                    if e.path().extension().is_some_and(|x| x == "json") {
                        files.push(e.path());
                    }
                }
            }
            files.sort();
            let mut out = Vec::new();
            let mut moved = BTreeSet::new();
            for f in &files {
                let Ok(bytes) = fs_err::read(f) else { continue };
                // Unreadable: dropped, and asked for again.
                let Ok(record) = serde_json::from_slice::<Record>(&bytes) else {
                    continue;
                };
                if state.index.contains_key(&record.key) || !moved.insert(record.key.clone()) {
                    continue;
                }
                out.extend_from_slice(&serde_json::to_vec(&record).map_err(|e| io_error(f, e))?);
                out.push(b'\n');
            }
            if !out.is_empty() {
                let path = self.dir.join(SEGMENTS).join(segment_name("-migrated"));
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .map_err(|e| io_error(&path, e))?;
                file.write_all(&out).map_err(|e| io_error(&path, e))?;
                file.sync_all().map_err(|e| io_error(&path, e))?;
                let count = read_count(lock_file);
                write_count(lock_file, count + 1).map_err(|e| io_error(&lock_path, e))?;
            }
            for f in &files {
                let _ = fs_err::remove_file(f);
            }
            for d in legacy_dirs(&self.dir) {
                let _ = std::fs::remove_dir(&d);
            }
            state.refresh(&self.dir)
        })
    }
}

/// `<unix nanos>-<host>-<pid><suffix>.jsonl`: unique per process and host,
/// ordered by when it was started.
fn segment_name(suffix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let host = fs_err::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into())
        .replace(|c: char| !c.is_ascii_alphanumeric() && c != '.', "_");
    format!("{nanos:020}-{host}-{}{suffix}.jsonl", std::process::id())
}

/// The first layout's `<2 hex>` directories.
fn legacy_dirs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs_err::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.len() == 2 && name.bytes().all(|b| b.is_ascii_hexdigit()) && e.path().is_dir()
        })
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

/// The lock file's record count (0 for a new or short file).
fn read_count(file: &File) -> u64 {
    let mut buf = [0u8; 8];
    match file.read_exact_at(&mut buf, 0) {
        Ok(()) => u64::from_le_bytes(buf),
        Err(_) => 0,
    }
}

fn write_count(file: &File, count: u64) -> std::io::Result<()> {
    file.write_all_at(&count.to_le_bytes(), 0)
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
        assert_eq!(
            ledger.put(&record("first", "a")).expect("put").text,
            "first"
        );
        assert_eq!(
            ledger.put(&record("second", "a")).expect("put").text,
            "first"
        );
        assert_eq!(
            ledger.get(&record("x", "a").key).expect("stored").text,
            "first"
        );
    }

    fn record(text: &str, prompt: &str) -> Record {
        let (request, index) = ask(prompt, 1, 0);
        Record {
            key: Ledger::key("m", &request, index),
            model: "m".into(),
            request,
            index,
            completion: Completion {
                text: text.into(),
                finish_reason: FinishReason::Stop,
                prompt_tokens: 0,
                completion_tokens: 0,
            },
            received_unix: 0,
        }
    }

    fn segment_files(dir: &Path) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = fs_err::read_dir(dir.join(SEGMENTS))
            .expect("segments")
            .flatten()
            .map(|e| e.path())
            .collect();
        out.sort();
        out
    }

    /// Two processes, each its own index and segment: the first stored
    /// completion wins in both, and the key is stored once.
    #[test]
    fn across_processes_the_first_completion_stored_wins_and_is_stored_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = Ledger::open_as_another_process(dir.path()).expect("a");
        let b = Ledger::open_as_another_process(dir.path()).expect("b");
        assert_eq!(a.put(&record("from a", "p")).expect("a").text, "from a");
        assert_eq!(b.put(&record("from b", "p")).expect("b").text, "from a");
        assert_eq!(b.put(&record("b only", "q")).expect("b").text, "b only");
        assert_eq!(a.put(&record("a late", "q")).expect("a").text, "b only");
        let c = Ledger::open_as_another_process(dir.path()).expect("c");
        assert_eq!(c.get(&record("", "p").key).expect("p").text, "from a");
        assert_eq!(c.get(&record("", "q").key).expect("q").text, "b only");
        let lines: usize = segment_files(dir.path())
            .iter()
            .map(|f| fs_err::read_to_string(f).expect("read").lines().count())
            .sum();
        assert_eq!(lines, 2, "each key stored once");
        assert_eq!(segment_files(dir.path()).len(), 2, "one segment per writer");
    }

    /// Many writers at once (threads standing in for processes) on
    /// overlapping keys: every key stored exactly once, all agree.
    #[test]
    fn concurrent_writers_store_each_key_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ledgers: Vec<Ledger> = (0..4)
            .map(|_| Ledger::open_as_another_process(dir.path()).expect("open"))
            .collect();
        let got: Vec<Vec<String>> = std::thread::scope(|s| {
            let handles: Vec<_> = ledgers
                .iter()
                .enumerate()
                .map(|(w, l)| {
                    s.spawn(move || {
                        (0..200)
                            .map(|i| {
                                l.put(&record(&format!("w{w}"), &format!("p{i}")))
                                    .expect("put")
                                    .text
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("join"))
                .collect()
        });
        for w in 1..4 {
            assert_eq!(got[0], got[w], "writer {w} disagrees");
        }
        let fresh = Ledger::open_as_another_process(dir.path()).expect("fresh");
        let stats = fresh.stats().expect("stats");
        assert_eq!(stats.records, 200);
        let lines: usize = segment_files(dir.path())
            .iter()
            .map(|f| fs_err::read_to_string(f).expect("read").lines().count())
            .sum();
        assert_eq!(lines, 200, "no key stored twice");
    }

    /// A kill during a write leaves a torn last line: it is skipped when
    /// read, the complete records before it replay, and the torn one is
    /// stored again.
    #[test]
    fn a_torn_last_line_is_skipped_and_its_completion_stored_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let a = Ledger::open_as_another_process(dir.path()).expect("a");
            a.put(&record("kept", "p")).expect("put");
        }
        let seg = segment_files(dir.path()).remove(0);
        let torn = serde_json::to_string(&record("torn", "q")).expect("json");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&seg)
            .expect("open");
        f.write_all(&torn.as_bytes()[..torn.len() / 2])
            .expect("write");
        drop(f);
        let b = Ledger::open_as_another_process(dir.path()).expect("b");
        assert_eq!(b.get(&record("", "p").key).expect("p").text, "kept");
        assert!(
            b.get(&record("", "q").key).is_none(),
            "the torn record is absent"
        );
        assert_eq!(b.put(&record("again", "q")).expect("put").text, "again");
        let c = Ledger::open_as_another_process(dir.path()).expect("c");
        assert_eq!(c.get(&record("", "q").key).expect("q").text, "again");
        assert_eq!(c.stats().expect("stats").records, 2);
    }

    /// The first layout (one pretty-printed file per completion) is moved
    /// into one segment when opened; unreadable files are dropped.
    #[test]
    fn files_of_the_first_layout_are_migrated_into_one_segment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut keys = Vec::new();
        for i in 0..50 {
            let r = record(&format!("old {i}"), &format!("p{i}"));
            let shard = dir.path().join(&r.key[..2]);
            fs_err::create_dir_all(&shard).expect("mkdir");
            fs_err::write(
                shard.join(format!("{}.json", r.key)),
                serde_json::to_vec_pretty(&r).expect("json"),
            )
            .expect("write");
            keys.push(r.key);
        }
        fs_err::write(
            dir.path()
                .join("ab")
                .join(format!("{}.json", "ab".repeat(32))),
            b"{broken",
        )
        .ok();
        let l = Ledger::open_as_another_process(dir.path()).expect("open");
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(l.get(k).expect("migrated").text, format!("old {i}"));
        }
        assert!(legacy_dirs(dir.path()).is_empty(), "old files removed");
        assert_eq!(segment_files(dir.path()).len(), 1);
        assert!(
            segment_files(dir.path())[0]
                .to_string_lossy()
                .ends_with("-migrated.jsonl")
        );
        // A second open finds nothing to migrate and the same records.
        let again = Ledger::open_as_another_process(dir.path()).expect("open");
        assert_eq!(again.stats().expect("stats").records, 50);
    }

    /// Segments are JSON Lines with the key first: readable without tw.
    #[test]
    fn segments_are_plain_json_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let l = Ledger::open_as_another_process(dir.path()).expect("open");
        l.put(&record("hello", "p")).expect("put");
        let text = fs_err::read_to_string(&segment_files(dir.path())[0]).expect("read");
        let v: serde_json::Value = serde_json::from_str(text.trim_end()).expect("json line");
        assert_eq!(v["completion"]["text"], "hello");
        assert!(text.starts_with("{\"key\":\""));
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
