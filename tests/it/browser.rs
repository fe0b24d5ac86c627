//! The study browser in a real browser: headless Chromium driven over
//! WebDriver (`chromedriver`, spoken here over plain HTTP) opens the site
//! `tw report` wrote from the file system, clicks into cells, problems and
//! the side-by-side view, and checks the DOM.

use crate::harness::Project;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tw_stages::testing::{Need, have};

/// Chromium and chromedriver, or a skip (a failure under `TW_REQUIRE_BROWSER`).
fn browser() -> Option<(PathBuf, PathBuf)> {
    let find = |var: &str, names: &[&str]| -> Option<PathBuf> {
        if let Some(v) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            return Some(PathBuf::from(v));
        }
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .flat_map(|d| names.iter().map(move |n| d.join(n)))
            .find(|p| p.is_file())
    };
    let chromium = find(
        "TW_CHROMIUM",
        &["chromium", "chromium-browser", "google-chrome"],
    );
    let driver = find("TW_CHROMEDRIVER", &["chromedriver"]);
    let present = chromium.is_some() && driver.is_some();
    if !have(
        Need::Browser,
        present,
        "no chromium and chromedriver (TW_CHROMIUM, TW_CHROMEDRIVER or PATH)",
    ) {
        return None;
    }
    Some((chromium?, driver?))
}

/// A WebDriver session on a chromedriver this test started.
pub struct Driver {
    child: Child,
    port: u16,
    session: String,
    /// Chromium's `TMPDIR`: it leaves scoped directories behind in the temp
    /// directory even after its session is closed; this one goes with the
    /// driver (fields drop after `drop` has stopped the driver).
    _tmp: tempfile::TempDir,
}

fn http(port: u16, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| e.to_string())?;
    // chromedriver keeps the connection open: read the head, then exactly
    // the body it announces (or its chunks).
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    let head_end = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed before the HTTP head".into());
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    let header = |name: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
    };
    let mut body_bytes = raw[head_end..].to_vec();
    let payload = if let Some(len) = header("content-length:") {
        let len: usize = len.parse().map_err(|e| format!("content-length: {e}"))?;
        while body_bytes.len() < len {
            let n = stream.read(&mut buf).map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            body_bytes.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&body_bytes[..len.min(body_bytes.len())]).to_string()
    } else if header("transfer-encoding:").is_some_and(|v| v.contains("chunked")) {
        while !body_bytes.windows(5).any(|w| w == b"0\r\n\r\n") {
            let n = stream.read(&mut buf).map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            body_bytes.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&body_bytes).to_string();
        let mut out = String::new();
        let mut rest = text.as_str();
        while let Some((size, after)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).map_err(|e| e.to_string())?;
            if n == 0 || after.len() < n {
                break;
            }
            out.push_str(&after[..n]);
            rest = after[n..].trim_start_matches("\r\n");
        }
        out
    } else {
        stream
            .read_to_end(&mut body_bytes)
            .map_err(|e| e.to_string())?;
        String::from_utf8_lossy(&body_bytes).to_string()
    };
    let v: Value = serde_json::from_str(&payload).map_err(|e| format!("{e}: {payload}"))?;
    if let Some(err) = v["value"]["error"].as_str() {
        return Err(format!("{err}: {}", v["value"]["message"]));
    }
    Ok(v["value"].clone())
}

impl Driver {
    pub fn start(chromium: &Path, driver: &Path) -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let tmp = tempfile::Builder::new()
            .prefix("tw-chromium-")
            .tempdir()
            .expect("a temp directory for Chromium");
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .env("TMPDIR", tmp.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", driver.display()));
        let start = Instant::now();
        while http(port, "GET", "/status", None)
            .map(|v| v["ready"] != true)
            .unwrap_or(true)
        {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "chromedriver did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                // Root in CI: Chromium's own sandbox needs an ordinary user.
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000"]
            }
        }}});
        let session = http(port, "POST", "/session", Some(&caps))
            .unwrap_or_else(|e| panic!("new session: {e}"));
        Driver {
            child,
            port,
            session: session["sessionId"].as_str().unwrap().to_string(),
            _tmp: tmp,
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        http(self.port, method, &path, body.as_ref())
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// Run `script` (a function body) in the page and return its value.
    pub fn js(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
    }

    /// Wait for the page's router to finish (it sets `data-ready`).
    fn settle(&self) {
        let start = Instant::now();
        while self.js("return document.body && document.body.dataset.ready") != "yes" {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the page never finished loading"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn open(&self, url: &str) {
        self.call("POST", "/url", Some(json!({"url": url})));
        self.settle();
    }

    fn find(&self, css: &str) -> String {
        let v = self.call(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}"))
            .to_string()
    }

    /// Click the first element matching `css` whose text contains `text`.
    pub fn click(&self, css: &str, text: &str) {
        let found = self.call(
            "POST",
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        );
        let id = found
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| {
                e.as_object()
                    .and_then(|o| o.values().next())
                    .and_then(Value::as_str)
            })
            .find(|id| {
                self.call("GET", &format!("/element/{id}/text"), None)
                    .as_str()
                    .is_some_and(|t| t.contains(text))
            })
            .unwrap_or_else(|| panic!("no {css} with text {text:?}"))
            .to_string();
        self.js("document.body.dataset.ready = 'clicked'; return 0");
        self.call("POST", &format!("/element/{id}/click"), Some(json!({})));
        // A click that routes sets `ready` again; one that does not leaves it.
        let start = Instant::now();
        while self.js("return document.body.dataset.ready") == "no" {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the page never finished loading"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        if self.js("return document.body.dataset.ready") == "clicked" {
            self.js("document.body.dataset.ready = 'yes'; return 0");
        }
        self.settle();
    }

    pub fn click_css(&self, css: &str) {
        let id = self.find(css);
        self.js("document.body.dataset.ready = 'clicked'; return 0");
        self.call("POST", &format!("/element/{id}/click"), Some(json!({})));
        std::thread::sleep(Duration::from_millis(100));
        if self.js("return document.body.dataset.ready") == "clicked" {
            self.js("document.body.dataset.ready = 'yes'; return 0");
        }
        self.settle();
    }

    pub fn text(&self) -> String {
        self.js("return document.body.innerText")
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    pub fn screenshot(&self, to: &Path) {
        let b64 = self.call("GET", "/screenshot", None);
        let bytes = base64_decode(b64.as_str().unwrap());
        fs_err::create_dir_all(to.parent().unwrap()).unwrap();
        fs_err::write(to, bytes).unwrap();
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = http(
            self.port,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let Some(v) = value(c) else { continue };
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// Where screenshots of the tests go (kept after the run): the build's temp
/// dir, or, when that is not ours to write (CI's ordinary-user run), one
/// under the user's home.
pub fn artifact_dir() -> PathBuf {
    let writable =
        |dir: &Path| fs_err::create_dir_all(dir).is_ok() && tempfile::tempfile_in(dir).is_ok();
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser");
    if writable(&target) {
        return target;
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(".cache/tw-test-artifacts/browser");
    assert!(
        writable(&home),
        "no writable place for screenshots: {}",
        home.display()
    );
    home
}

/// A sample whose program carries markup that would run if the page
/// inserted it as HTML.
const HOSTILE: &str = r#"{"candidate": "HumanEval/0#0", "task_id": "HumanEval/0", "entry_point": "has_close_elements", "program": "def has_close_elements(numbers, threshold):\n    # </script><script>window.__pwned = 1</script><img src=x onerror=\"window.__pwned = 2\">\n    return False\n"}
{"candidate": "HumanEval/0#1", "task_id": "HumanEval/0", "entry_point": "has_close_elements", "program": "def has_close_elements(numbers, threshold):\n    return any(abs(a - b) < threshold for i, a in enumerate(numbers) for j, b in enumerate(numbers) if i != j)\n"}
{"candidate": "HumanEval/1#0", "task_id": "HumanEval/1", "entry_point": "separate_paren_groups", "program": "def separate_paren_groups(paren_string):\n    return []\n"}
"#;

/// HumanEval's directory, Chromium and chromedriver, or a skip.
fn humaneval_and_browser() -> Option<(PathBuf, PathBuf, PathBuf)> {
    let data =
        tw_stages::testing::shared_data("TW_BENCHMARKS", "benchmarks", "HumanEval.jsonl.gz")?;
    let (chromium, driver) = browser()?;
    Some((data, chromium, driver))
}

/// The grading half of a study over the hostile samples: `execute` on
/// HumanEval's tests, browsed with the tests and the samples as context.
fn hostile_project(data: &Path) -> Project {
    let p = Project::new();
    p.write("data/hostile.jsonl", HOSTILE);
    p.write(
        "hostile.yaml",
        &format!(
            r#"experiment: hostile
stages:
  humaneval:
    kind: load_benchmark
    params: {{ benchmark: humaneval, path: "{data}/HumanEval.jsonl.gz", limit: 2 }}
  hostile:
    kind: load
    params: {{ path: data/hostile.jsonl }}
  verify:
    kind: execute
    inputs: {{ candidates: hostile.rows, tests: humaneval.tests }}
    params: {{ candidate_id: candidate, input_format: tagged, expected_format: tagged, timeout: 3 }}
  report:
    kind: report
    inputs:
      rows: [verify.summary]
      instances: [verify.summary, verify.results]
      context: [hostile.rows, humaneval.problems, humaneval.tests]
    params:
      title: Hostile samples
      tables:
        - {{ name: labels, rows: [label], value: pass, aggregate: count, digits: 0 }}
"#,
            data = data.display(),
        ),
    );
    p
}

#[test]
#[ignore = "needs HumanEval (TW_REQUIRE_DATA) and headless Chromium (scripts/setup-browser.sh, TW_REQUIRE_BROWSER)"]
fn the_browser_shows_a_completion_as_text_and_runs_nothing_of_it() {
    let Some((data, chromium, driver)) = humaneval_and_browser() else {
        return;
    };
    let p = hostile_project(&data);
    let ran = p.tw(&["report", "hostile.yaml"]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    assert!(ran.stdout.contains("index.html"), "{}", ran.stdout);
    // The data files hold the markup escaped, never as `</script>`.
    let data_dir = p.path("reports/report/data");
    for entry in walk(&data_dir) {
        let text = fs_err::read_to_string(&entry).unwrap();
        assert!(
            !text.contains("</script") && !text.contains("<img"),
            "{}",
            entry.display()
        );
    }

    let d = Driver::start(&chromium, &driver);
    d.open(&format!(
        "file://{}",
        p.path("reports/report/index.html").display()
    ));
    assert!(
        d.text().contains("labels"),
        "the report's table is on the first page"
    );
    d.click("a.cell-link", "verify");
    assert!(d.text().contains("HumanEval/1"));
    // Filter by verdict: HumanEval/0 has a passing and a failing sample.
    d.click_css("#verdict-filter option[value=mixed]");
    assert!(
        !d.text().contains("HumanEval/1"),
        "the filter hides problems without a mix"
    );
    d.click("a.problem-link", "HumanEval/0");
    let page = d.text();
    assert!(
        page.contains("<script>window.__pwned = 1</script>"),
        "{page}"
    );
    assert!(page.contains("<img src=x onerror="), "{page}");
    assert!(
        page.contains("wrong_answer") && page.contains("correct"),
        "verdicts: {page}"
    );
    assert_eq!(d.js("return typeof window.__pwned"), "undefined");
    assert_eq!(
        d.js("return document.querySelectorAll('main img, main script').length"),
        0
    );
    // Per-test rows carry the test's expected output beside the actual one.
    assert_eq!(
        d.js("return [...document.querySelectorAll('th')].some(t => t.textContent === 'expected')"),
        true
    );
    d.screenshot(&artifact_dir().join("hostile.png"));
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs_err::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
#[ignore = "needs SmolLM2 (TW_REQUIRE_MODELS), HumanEval (TW_REQUIRE_DATA) and headless Chromium (scripts/setup-browser.sh, TW_REQUIRE_BROWSER)"]
fn the_browser_shows_prompts_traces_and_verdicts_side_by_side() {
    let Some(model) = tw_stages::testing::env_path(Need::Models, "TW_SMOLLM2_HF") else {
        return;
    };
    let Some((data, chromium, driver)) = humaneval_and_browser() else {
        return;
    };
    let templates = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("templates");
    let p = Project::new();
    p.write(
        "browse.yaml",
        &format!(
            r#"experiment: browse
matrix:
  feedback: [notrace, next]
stages:
  humaneval:
    kind: load_benchmark
    params: {{ benchmark: humaneval, path: "{data}/HumanEval.jsonl.gz", limit: 2 }}
  seq:
    kind: sequential_scaling
    inputs: {{ problems: humaneval.problems, tests: humaneval.tests }}
    params:
      model: {{ backend: tch, path: "{model}", device: cpu }}
      first_template: {t}/prompts/nl2code.j2
      debug_template: {t}/prompts/self_debug.j2
      representation: "{t}/traces/${{feedback}}.j2"
      n: 1
      rounds: 1
      temperature: 0.8
      sampling: {{ max_tokens: 96 }}
  report:
    kind: report
    inputs:
      rows: ["seq[*].summary"]
      instances: ["seq[*].rounds"]
      context: [humaneval.problems, humaneval.tests]
    params:
      title: Browser test
      tables:
        - {{ name: self_debug, rows: [strategy], columns: [feedback], value: honest_pct }}
"#,
            data = data.display(),
            model = model.display(),
            t = templates.display()
        ),
    );
    let ran = p.tw(&["report", "browse.yaml"]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    // A problem of the `next` cell whose feedback carries a trace, as tw exported it.
    let rounds = p.tw(&[
        "export",
        "browse.yaml",
        "seq[feedback=next].rounds",
        "--format",
        "jsonl",
    ]);
    assert_eq!(rounds.code, 0, "{}", rounds.stderr);
    let (traced_task, trace_line) = rounds
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find_map(|r| {
            let feedback: Value = serde_json::from_str(r["feedback"].as_str()?).ok()?;
            let trace = feedback
                .as_array()?
                .iter()
                .find_map(|t| t["trace"].as_str())?;
            let line = trace
                .lines()
                .map(str::trim)
                .find(|l| l.len() > 12)?
                .to_string();
            Some((r["task_id"].as_str()?.to_string(), line))
        })
        .expect("SmolLM2 failed no public test with a trace: nothing to show");

    let d = Driver::start(&chromium, &driver);
    d.open(&format!(
        "file://{}",
        p.path("reports/report/index.html").display()
    ));
    let home = d.text();
    for cell in [
        "seq [feedback=notrace]",
        "seq [feedback=next]",
        "self_debug",
    ] {
        assert!(home.contains(cell), "home lacks {cell}: {home}");
    }
    // A self-debugging problem: the messages asked, the trace shown, the verdicts.
    d.click("a.cell-link", "seq [feedback=next]");
    d.click("a.problem-link", &traced_task);
    let page = d.text();
    assert!(page.contains("user"), "the chat messages asked: {page}");
    assert!(page.contains("def "), "the prompt's code: {page}");
    assert!(
        page.contains(&trace_line),
        "the trace shown ({trace_line}): {page}"
    );
    assert!(page.contains("trace shown"), "{page}");
    assert!(page.contains("pass") || page.contains("fail"), "{page}");
    // Side by side with the no-trace cell, and a diff of the two programs.
    d.click_css("#compare-with option:nth-child(1)");
    d.click_css("#compare-go");
    assert_eq!(
        d.js("return document.querySelectorAll('#side-by-side .side').length"),
        2
    );
    let diff = d.js("return document.getElementById('program-diff').innerText");
    assert!(
        diff.as_str().is_some_and(|t| t.contains("program diff")),
        "{diff}"
    );
    assert!(d.text().contains("seq [feedback=notrace]"));
    d.screenshot(&artifact_dir().join("side_by_side.png"));
    eprintln!("screenshots in {}", artifact_dir().display());
}
