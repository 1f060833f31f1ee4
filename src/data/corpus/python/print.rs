//! `print(...)` statements: plain, formatted, reports of a value and messages.

use super::vocab::{MESSAGES, REPORTS, WORDS};
use super::{Gen, Kind};

impl Gen {
    pub(super) fn print_stmt(&mut self, d: usize) {
        let text = match self.r.weighted(&[22, 18, 25, 10, 8, 7, 5, 5]) {
            0 => format!("print({})", self.str_lit_q('"')),
            1 => format!("print({})", self.str_lit_q('\'')),
            2 => format!("print({})", self.fstring()),
            3 => format!("print({}, {})", self.str_lit(), self.var(Kind::Int)),
            4 => {
                let k = *self.r.pick(&[Kind::Int, Kind::Str, Kind::List]);
                format!("print({})", self.var(k))
            }
            5 => format!("print({}, end={})", self.str_lit(), self.pick(&["\"\"", "''", "\" \""])),
            6 => format!(
                "print(\"{}\".format({}))",
                self.phrase(1, 3) + " {}",
                self.var(Kind::Int)
            ),
            _ => format!("print(\"{} %s\" % {})", self.phrase(1, 3), self.var(Kind::Str)),
        };
        self.line(d, &text);
    }

    /// `print(f"Loaded {count}")` vs `print("Loaded", count)`: a label that ends with a letter, then a value.
    pub(super) fn report_print(&mut self, d: usize) {
        let (label, var) = *self.r.pick(REPORTS);
        if self.p(0.25) {
            let v = self.int_expr_simple();
            self.line(d, &format!("{var} = {v}"));
        }
        let q = if self.p(0.8) { '"' } else { '\'' };
        let text = match self.r.weighted(&[38, 10, 8, 34, 10]) {
            0 => format!("print(f{q}{label} {{{var}}}{q})"),
            1 => format!("print(f{q}{label} {{{var}}} {}{q})", self.pick(WORDS)),
            2 => format!("print(f{q}{label}: {{{var}}}{q})"),
            3 => format!("print({q}{label}{q}, {var})"),
            _ => format!("print({q}{label}:{q}, {var})"),
        };
        self.line(d, &text);
    }

    /// A message string in a `print`, `raise` or log call: `print("...")` / `raise ValueError('...')`.
    pub(super) fn message_stmt(&mut self, d: usize) {
        // Half the canned messages are the tasks' own, so that no message's last word is seen with one quote
        // type only.
        let msg = if self.p(0.3) {
            self.pick(MESSAGES).to_owned()
        } else if self.p(0.43) {
            self.pick(crate::data::tasks::snippets::MESSAGES).to_owned()
        } else {
            let mut c = self.phrase(2, 10);
            if let Some(f) = c.chars().next() {
                c = f.to_uppercase().chain(c.chars().skip(1)).collect();
            }
            c
        };
        let q = self.quote();
        let call = match self.r.weighted(&[50, 14, 8, 10, 10, 8]) {
            0 => "print",
            1 => "raise ValueError",
            2 => "raise RuntimeError",
            3 => "logging.info",
            4 => "logger.warning",
            _ => "sys.exit",
        };
        // A trailing comment now and then, so the closing `")`/`')` is also seen as a token of its own
        // rather than only merged with the newline.
        let text = if self.p(0.2) {
            format!("{call}({q}{msg}{q})  # {}", self.phrase(1, 4))
        } else {
            format!("{call}({q}{msg}{q})")
        };
        self.line(d, &text);
    }
}

#[cfg(test)]
mod tests {
    use super::super::check::{assert_well_formed, samples};
    use super::Gen;

    #[test]
    fn print_statements_call_print() {
        for lines in assert_well_formed(&samples(500, 1, |g, d| g.print_stmt(d)), 1) {
            let t = &lines[0].text;
            assert!(lines.len() == 1 && t.starts_with("print(") && t.ends_with(')'), "{t}");
        }
    }

    #[test]
    fn reports_and_messages_are_well_formed() {
        for make in [Gen::report_print, Gen::message_stmt] {
            for lines in assert_well_formed(&samples(300, 1, make), 1) {
                assert!(lines.iter().all(|l| !l.opens_block), "{lines:?}");
            }
        }
    }
}
