//! A load generator for `bench/llm_load.sh`: an OpenAI-compatible server
//! that answers every chat or text completion at once (after `--delay-ms`)
//! with a canned program, so that what is measured is the client. It is a
//! benchmark tool only: functional tests use the real llama-server.
//!
//! ```sh
//! cargo run --release -p tw-stages --example load_server -- --port 0 --delay-ms 0
//! ```
//!
//! Prints `http://127.0.0.1:<port>/v1` on its first line, then serves until
//! killed; one thread per connection (HTTP/1.1 keep-alive). The reply's
//! program defines the first function the request names (`def <name>(`),
//! returning `None`: a real program, wrong on almost every test.
//!
//! `--error-every N --error-status S` makes every Nth completion request
//! fail with HTTP status S (503 by default) after the same delay, as an
//! overloaded vLLM server does; the fleet part of the benchmark uses it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

static SERVED: AtomicU64 = AtomicU64::new(0);
static COMPLETION_REQUESTS: AtomicU64 = AtomicU64::new(0);

/// How the server answers completion requests.
#[derive(Clone, Copy)]
struct Behaviour {
    delay: Duration,
    /// Every `error_every`th completion request fails (0: none does).
    error_every: u64,
    error_status: u16,
}

fn main() {
    let mut port = 0u16;
    let mut delay_ms = 0u64;
    let mut error_every = 0u64;
    let mut error_status = 503u16;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let value = args.next().unwrap_or_default();
        match a.as_str() {
            "--port" => port = value.parse().unwrap_or(0),
            "--delay-ms" => delay_ms = value.parse().unwrap_or(0),
            "--error-every" => error_every = value.parse().unwrap_or(0),
            "--error-status" => error_status = value.parse().unwrap_or(503),
            other => {
                eprintln!(
                    "load_server: unknown flag {other} (use --port, --delay-ms, --error-every, \
                     --error-status)"
                );
                std::process::exit(2);
            }
        }
    }
    let listener = match TcpListener::bind(("127.0.0.1", port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("load_server: cannot listen on port {port}: {e}");
            std::process::exit(1);
        }
    };
    let addr = listener.local_addr().map(|a| a.port()).unwrap_or(port);
    println!("http://127.0.0.1:{addr}/v1");
    let _ = std::io::stdout().flush();
    let behaviour = Behaviour {
        delay: Duration::from_millis(delay_ms),
        error_every,
        error_status,
    };
    for stream in listener.incoming().flatten() {
        let _ = stream.set_nodelay(true);
        std::thread::spawn(move || serve(stream, behaviour));
    }
}

/// Requests on one connection until the client closes it.
fn serve(stream: TcpStream, behaviour: Behaviour) {
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let mut out = write_half;
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let path = request_line.split_whitespace().nth(1).unwrap_or("/");
        let mut status = 200u16;
        let reply = if path.ends_with("/models") {
            r#"{"object":"list","data":[{"id":"load","object":"model"}]}"#.to_string()
        } else if path.ends_with("/completions") {
            if !behaviour.delay.is_zero() {
                std::thread::sleep(behaviour.delay);
            }
            let nth = COMPLETION_REQUESTS.fetch_add(1, Ordering::Relaxed) + 1;
            if behaviour.error_every > 0 && nth.is_multiple_of(behaviour.error_every) {
                status = behaviour.error_status;
                r#"{"error":{"message":"the load server refuses this one","type":"overloaded"}}"#
                    .to_string()
            } else {
                SERVED.fetch_add(1, Ordering::Relaxed);
                completion(path.ends_with("/chat/completions"), &body)
            }
        } else {
            r#"{"status":"ok"}"#.to_string()
        };
        let head = format!(
            "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: keep-alive\r\n\r\n",
            if status == 200 { "OK" } else { "Error" },
            reply.len()
        );
        if out.write_all(head.as_bytes()).is_err() || out.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

/// The canned completion, as the OpenAI API writes it.
fn completion(chat: bool, body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let name = text
        .split("def ")
        .skip(1)
        .find_map(|rest| {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            (!name.is_empty() && rest[name.len()..].starts_with('(')).then_some(name)
        })
        .unwrap_or_else(|| "solution".into());
    let program = format!("```python\ndef {name}(*args):\n    return None\n```");
    let content = serde_json::Value::String(program).to_string();
    let n = SERVED.load(Ordering::Relaxed);
    if chat {
        format!(
            r#"{{"id":"load-{n}","object":"chat.completion","created":0,"model":"load","choices":[{{"index":0,"message":{{"role":"assistant","content":{content}}},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":100,"completion_tokens":20,"total_tokens":120}}}}"#
        )
    } else {
        format!(
            r#"{{"id":"load-{n}","object":"text_completion","created":0,"model":"load","choices":[{{"index":0,"text":{content},"finish_reason":"stop"}}],"usage":{{"prompt_tokens":100,"completion_tokens":20,"total_tokens":120}}}}"#
        )
    }
}
