//! The module level: imports, constants, script code, `__main__` guards, and the whole document.

use super::vocab::{IMPORTS, READ_FILES, WRITE_FILES};
use super::{Gen, MAX_CHARS};

impl Gen {
    fn imports(&mut self) {
        let n = self.r.weighted(&[25, 30, 25, 15, 5]);
        let mut chosen: Vec<&str> = Vec::new();
        for _ in 0..n {
            let i = self.pick(IMPORTS);
            if !chosen.contains(&i) {
                chosen.push(i);
            }
        }
        chosen.sort_by_key(|s| (s.starts_with("from"), *s));
        for i in &chosen {
            self.line(0, i);
        }
        if !chosen.is_empty() {
            self.blank();
            if self.p(0.5) {
                self.blank();
            }
        }
    }

    fn constants(&mut self) {
        for _ in 0..self.r.urange(1, 3) {
            let text = match self.r.weighted(&[30, 25, 25, 20]) {
                0 => {
                    let n = self.pick(&[
                        "MAX_SIZE",
                        "DEFAULT_LIMIT",
                        "BATCH_SIZE",
                        "MAX_RETRIES",
                        "WIDTH",
                        "HEIGHT",
                        "N",
                    ]);
                    format!("{n} = {}", self.int_lit())
                }
                1 => {
                    let n = self.pick(&[
                        "DEFAULT_PATH",
                        "OUTPUT_FILE",
                        "INPUT_FILE",
                        "SEPARATOR",
                        "VERSION",
                        "NAME",
                    ]);
                    let v = match n {
                        "DEFAULT_PATH" | "INPUT_FILE" => {
                            let q = self.quote();
                            format!("{q}{}{q}", self.pick(READ_FILES))
                        }
                        "OUTPUT_FILE" => {
                            let q = self.quote();
                            format!("{q}{}{q}", self.pick(WRITE_FILES))
                        }
                        _ => self.str_lit(),
                    };
                    format!("{n} = {v}")
                }
                2 => {
                    let n = self.pick(&["VALUES", "DATA", "GRID", "WEIGHTS", "LEVELS", "MATRIX"]);
                    format!("{n} = {}", self.any_list_lit())
                }
                _ => {
                    let n = self.pick(&["CONFIG", "DEFAULTS", "COLORS", "SETTINGS", "LIMITS"]);
                    format!("{n} = {}", self.dict_lit(5))
                }
            };
            self.line(0, &text);
        }
        self.blank();
    }

    /// Module-level statements.
    fn script(&mut self) {
        let n = self.r.urange(2, 6);
        self.block(0, n);
    }

    fn list_block(&mut self) {
        if self.p(0.4) {
            self.comment_stmt(0);
        }
        for _ in 0..self.r.urange(2, 5) {
            match self.r.below(3) {
                0 => self.list_stmt(0),
                1 => self.depth_list_stmt(0),
                _ if self.p(0.5) => self.keyed_stmt(0),
                _ => self.depth_list_stmt(0),
            }
        }
        if self.p(0.5) {
            self.print_stmt(0);
        }
    }

    fn main_guard(&mut self) {
        self.line(0, "if __name__ == \"__main__\":");
        if self.p(0.6) {
            self.line(1, "main()");
        } else {
            let n = self.r.urange(1, 4);
            self.block(1, n);
        }
    }

    pub(super) fn document(&mut self) {
        let target = match self.r.weighted(&[30, 45, 25]) {
            0 => self.r.urange(250, 700),
            1 => self.r.urange(700, 1400),
            _ => self.r.urange(1400, 2000),
        };
        if self.p(0.1) {
            self.line(0, "#!/usr/bin/env python3");
        }
        if self.p(0.3) {
            self.docstring(0);
            self.blank();
        } else if self.p(0.15) {
            self.comment_stmt(0);
        }
        self.imports();
        if self.p(0.35) {
            self.constants();
        }
        let mut first = true;
        // At least one function, class or script block, even after a long header.
        while first || self.out.len() < target {
            if !first {
                self.blank();
                if self.p(0.7) {
                    self.blank();
                }
            }
            let only = first;
            first = false;
            let before = self.out.len();
            match self.r.weighted(&[42, 18, 25, 26]) {
                0 => self.function(0, false),
                1 => self.class(),
                2 => self.script(),
                _ => self.list_block(),
            }
            // Keep documents near their target: drop an item that overshoots far (unless it is the only one).
            if !only && self.out.len() > MAX_CHARS.max(target + 600) && self.out[..before].trim().len() > 300 {
                self.out.truncate(before);
                while self.out.ends_with("\n\n") {
                    self.out.pop();
                }
                break;
            }
        }
        if self.p(0.25) {
            self.blank();
            if self.p(0.7) {
                self.blank();
            }
            self.main_guard();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::check::{assert_well_formed, logical_lines, samples, well_formed};
    use super::super::generate;

    /// Whole documents are well-formed modules.
    #[test]
    fn documents_are_well_formed() {
        for i in 0..300 {
            let doc = generate(3, i);
            well_formed(&doc, 0).unwrap_or_else(|e| panic!("{e} in:\n{doc}"));
        }
    }

    /// Imports (there may be none) are `import` or `from` lines at the top level.
    #[test]
    fn imports_are_import_statements() {
        for s in samples(200, 0, |g, _| g.imports()) {
            for l in logical_lines(&s).unwrap_or_else(|e| panic!("{e} in:\n{s}")) {
                assert!(
                    l.indent == 0 && (l.text.starts_with("import ") || l.text.starts_with("from ")),
                    "{}",
                    l.text
                );
            }
        }
    }

    #[test]
    fn constants_are_assignments() {
        for lines in assert_well_formed(&samples(200, 0, |g, _| g.constants()), 0) {
            assert!(lines.iter().all(|l| l.text.contains(" = ")), "{lines:?}");
        }
    }

    #[test]
    fn main_guards_guard_a_body() {
        for lines in assert_well_formed(&samples(200, 0, |g, _| g.main_guard()), 0) {
            assert_eq!(lines[0].text, "if __name__ == \"__main__\":");
        }
    }

    #[test]
    fn script_code_is_well_formed() {
        assert_well_formed(&samples(300, 0, |g, _| g.script()), 0);
        assert_well_formed(&samples(300, 0, |g, _| g.list_block()), 0);
    }
}
