//! Helpers every test module shares: the binary run as a user runs it.

use std::io::Write;
use std::process::{Command, Stdio};

use candle_core::Tensor;

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

/// Runs the binary with `args` (as [`cli`]) and returns (success, stdout, stderr).
pub fn cli_parts(args: &[&str]) -> (bool, String, String) {
    let out = cli(args);
    (out.ok, out.stdout, out.stderr)
}

/// Expects a clean failure: non-zero exit, one `error: ` line that mentions every needle; returns the line.
pub fn cli_err(args: &[&str], needles: &[&str]) -> String {
    let out = cli(args);
    assert!(!out.ok, "{args:?} succeeded: {}", out.stdout);
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("warning: "))
        .collect();
    assert_eq!(lines.len(), 1, "{args:?}: expected one error line: {}", out.stderr);
    assert!(lines[0].starts_with("error: "), "{args:?}: {}", out.stderr);
    for n in needles {
        assert!(lines[0].contains(n), "`{}` does not mention `{n}`", lines[0]);
    }
    lines[0].to_string()
}

/// The largest |a − b| over two tensors of one shape.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shape mismatch");
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// The workbench drawn at `w` × `h` on a test backend.
pub fn draw(app: &circuitscope::tui::App, w: u16, h: u16) -> ratatui::Terminal<ratatui::backend::TestBackend> {
    let mut t = ratatui::Terminal::new(ratatui::backend::TestBackend::new(w, h)).unwrap();
    t.draw(|f| circuitscope::tui::view(app, f)).unwrap();
    t
}

/// A drawn screen's characters, one line per row.
pub fn screen_text(t: &ratatui::Terminal<ratatui::backend::TestBackend>) -> String {
    let buf = t.backend().buffer();
    let mut s = String::new();
    for y in 0..buf.area.height {
        for x in 0..buf.area.width {
            s.push_str(buf[(x, y)].symbol());
        }
        s.push('\n');
    }
    s
}

/// Feeds messages to the workbench as the event loop would: each one updates the app, then the engine's replies
/// are taken in.
pub fn send(
    app: &mut circuitscope::tui::App,
    engine: &mut circuitscope::tui::Engine,
    msgs: impl IntoIterator<Item = circuitscope::tui::Msg>,
) {
    for m in msgs {
        circuitscope::tui::update(app, m);
        circuitscope::tui::pump(app, engine);
    }
}
