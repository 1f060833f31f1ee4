//! Generators of circuitscope's bundled artefacts, run as `cargo run --release -p xtask -- <task>`:
//!
//! - `example-session`: re-measures the bundled model and rewrites `sessions/example.json` and
//!   `docs/example-report.md`.

mod example_session;

use std::process::ExitCode;

const USAGE: &str = "usage: cargo run --release -p xtask -- example-session";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["example-session"] => {
            example_session::build();
            ExitCode::SUCCESS
        }
        ["help"] | ["--help"] | ["-h"] => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}
