//! `try` / `except` / `else` / `finally` statements.

use super::Gen;

impl Gen {
    pub(super) fn try_stmt(&mut self, d: usize) {
        self.line(d, "try:");
        let n = self.body_len(d + 1);
        self.block(d + 1, n);
        let exc = self.pick(&[
            "ValueError",
            "KeyError",
            "IndexError",
            "Exception",
            "FileNotFoundError",
            "TypeError",
        ]);
        if self.p(0.5) {
            self.line(d, &format!("except {exc} as e:"));
            let q = self.quote();
            let msg = self.phrase(1, 3);
            self.line(d + 1, &format!("print(f{q}{msg}: {{e}}{q})"));
        } else {
            self.line(d, &format!("except {exc}:"));
            if self.in_func && self.p(0.5) {
                self.return_stmt(d + 1);
            } else {
                let s = if self.loops > 0 && self.p(0.5) {
                    "continue"
                } else {
                    "pass"
                };
                self.line(d + 1, s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::check::{assert_well_formed, samples};

    /// `try:` opens the statement, and an `except` or `finally` clause follows at the same depth.
    #[test]
    fn try_statements_have_a_handler() {
        for d in [0, 2] {
            for lines in assert_well_formed(&samples(300, d, |g, d| g.try_stmt(d)), d) {
                let heads: Vec<&str> = lines
                    .iter()
                    .filter(|l| l.indent == 4 * d)
                    .map(|l| l.text.as_str())
                    .collect();
                assert_eq!(heads[0], "try:");
                assert!(
                    heads.iter().any(|h| h.starts_with("except") || *h == "finally:"),
                    "{heads:?}"
                );
                for h in &heads[1..] {
                    let clause = ["except", "else:", "finally:"].iter().any(|c| h.starts_with(c));
                    assert!(clause && h.ends_with(':'), "{h}");
                }
            }
        }
    }
}
