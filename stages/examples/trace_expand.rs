//! For `bench/tracer.sh`: how long tw takes to read a trace the sandbox sent
//! (JSON text to typed events, every visible local rebuilt at each step), so
//! the tracer benchmark counts the whole path, not only the Python side.
//!
//! ```sh
//! cargo run --release -p tw-stages --example trace_expand -- summary.json [--repeat 5]
//! ```
//!
//! Prints the median seconds of one read, and the number of events.

use tw_stages::python::sandbox::Trace;

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .expect("usage: trace_expand <summary.json> [--repeat N]");
    let repeat: usize = match (args.next().as_deref(), args.next()) {
        (Some("--repeat"), Some(n)) => n.parse().expect("--repeat takes a number"),
        _ => 5,
    };
    let text = fs_err::read_to_string(&path).expect("the summary file");
    let mut times = Vec::with_capacity(repeat);
    let mut events = 0;
    for _ in 0..repeat.max(1) {
        let start = std::time::Instant::now();
        let raw: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        let trace = Trace::from_wire(&raw).expect("a trace");
        events = trace.events.len();
        std::hint::black_box(&trace);
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    println!("{:.6} {events}", times[times.len() / 2]);
}
