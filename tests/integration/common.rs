//! Helpers every test module shares: the binary run as a user runs it.

use std::io::Write;
use std::process::{Command, Stdio};

/// What one run of the binary gave.
pub struct Out {
    /// Whether it exited 0.
    pub ok: bool,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

/// Runs the binary with `args` and `stdin` (none: /dev/null), failing the test if it panics.
pub fn cli_stdin(args: &[&str], stdin: Option<&str>) -> Out {
    let mut child = Command::new(env!("CARGO_BIN_EXE_circuitscope"))
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting circuitscope");
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let r = Out {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(
        !r.stderr.contains("panicked"),
        "circuitscope {args:?} panicked: {}",
        r.stderr
    );
    r
}

/// Runs the binary with `args`, stdin /dev/null, failing the test if it panics.
pub fn cli(args: &[&str]) -> Out {
    cli_stdin(args, None)
}
