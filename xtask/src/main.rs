//! Generators of circuitscope's bundled artefacts, run as `cargo run --release -p xtask -- <task>`:
//!
//! - `example-session`: re-measures the bundled model and rewrites `sessions/example.json` and
//!   `docs/example-report.md`.
//! - `circuits`: prunes the bundled circuits again (`assets/circuits/<model>/<task>.json`, about 15 minutes on
//!   two cores); `circuits --help` lists its options.

mod circuits;
mod example_session;

use std::process::ExitCode;

const USAGE: &str = "usage: cargo run --release -p xtask -- example-session\n       ";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = format!("{USAGE}{}", circuits::USAGE);
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["example-session"] => {
            example_session::build();
            ExitCode::SUCCESS
        }
        ["circuits", "--help" | "-h"] => {
            println!("usage: {}", circuits::USAGE);
            ExitCode::SUCCESS
        }
        ["circuits", rest @ ..] => {
            // Paths given relative to where the command was run; the prunes run from the repository root, so
            // that the default output and the `out` in each `.prune.json` are the repository's relative paths.
            let cwd = std::env::current_dir().expect("the current directory is readable");
            let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
            let result = circuits::Options::parse(rest, &cwd).and_then(|o| {
                std::env::set_current_dir(&root).map_err(|e| format!("{}: {e}", root.display()))?;
                circuits::build(&o)
            });
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: circuits: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        ["help"] | ["--help"] | ["-h"] => {
            println!("{usage}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{usage}");
            ExitCode::from(2)
        }
    }
}
