//! `tw sandbox check`: what isolation programs get on this machine, probed
//! by a program run in the sandbox itself, and what to do about what is
//! missing.

use super::common::Failure;
use serde_json::{Value, json};
use std::io::Write;
use tw_stages::python::sandbox::{self, INSTALL_HINT, Job, Mode, Sandbox, TestCase};

/// What the probe program reports from inside (the README's hostile battery
/// covers each attack in depth; this is the quick look).
const PROBE: &str = r#"
import json, os, socket
def facts(home, tw, port):
    out = {"pid": os.getpid(), "uid": os.getuid()}
    out["processes_visible"] = len([p for p in os.listdir("/proc") if p.isdigit()])
    out["home_visible"] = os.path.exists(home)
    out["tw_visible"] = os.path.exists(tw)
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        out["loopback_reachable"] = True
    except OSError:
        out["loopback_reachable"] = False
    return json.dumps(out)
"#;

pub fn check(json_out: bool, stdout: &mut dyn Write) -> Result<(), Failure> {
    let io = |e: std::io::Error| Failure::runtime(format!("error: {e}"));
    let iso = match sandbox::isolation() {
        Ok(iso) => iso,
        Err(e) => {
            return Err(Failure::runtime(format!("error: {e}")));
        }
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(io)?;
    let port = listener.local_addr().map_err(io)?.port();
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let tw = std::env::current_exe().map_err(io)?;
    let mut job = Job::new(Mode::Function, PROBE);
    job.entry_point = Some("facts".into());
    job.tests = vec![TestCase {
        args_json: Some(json!([home, tw.to_string_lossy(), port])),
        ..TestCase::default()
    }]
    .into();
    let sb = Sandbox::new(Some(1)).map_err(|e| Failure::runtime(format!("error: {e}")))?;
    let report = sb
        .run_all(std::slice::from_ref(&job), &|| {})
        .map_err(|e| Failure::runtime(format!("error: {e}")))?;
    drop(listener);
    let inside = report
        .first()
        .and_then(|r| r.results.first())
        .and_then(|t| t.output.as_ref()?.as_text())
        .and_then(|text| serde_json::from_str::<Value>(&text).ok())
        .unwrap_or(Value::Null);
    if json_out {
        let value = json!({"isolation": iso, "fact": iso.fact(), "inside": inside});
        writeln!(
            stdout,
            "{}",
            serde_json::to_string_pretty(&value).expect("plain data")
        )
        .map_err(io)?;
        return Ok(());
    }
    for (what, value) in iso.describe() {
        writeln!(stdout, "{what:<28} {value}").map_err(io)?;
    }
    let flag = |key: &str| inside.get(key).and_then(Value::as_bool);
    let seen = |key: &str, good: bool| match flag(key) {
        Some(v) if v == good => "no",
        Some(_) => "YES",
        None => "?",
    };
    writeln!(stdout, "a program, asked from inside the sandbox:").map_err(io)?;
    writeln!(
        stdout,
        "  {:<26} {}",
        "sees your home",
        seen("home_visible", false)
    )
    .map_err(io)?;
    writeln!(
        stdout,
        "  {:<26} {}",
        "sees tw's own files",
        seen("tw_visible", false)
    )
    .map_err(io)?;
    writeln!(
        stdout,
        "  {:<26} {}",
        "reaches 127.0.0.1",
        seen("loopback_reachable", false)
    )
    .map_err(io)?;
    writeln!(
        stdout,
        "  {:<26} {}",
        "processes it can see",
        inside
            .get("processes_visible")
            .map_or("?".to_string(), Value::to_string)
    )
    .map_err(io)?;
    for warning in &iso.warnings {
        writeln!(stdout, "warning: {warning}").map_err(io)?;
    }
    if !iso.filesystem_isolated {
        writeln!(stdout, "hint: {INSTALL_HINT}").map_err(io)?;
    }
    Ok(())
}
