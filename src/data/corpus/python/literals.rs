//! Literals: numbers, strings and f-strings, and list, dict and set displays (nested and multi-line ones too).

use super::vocab::WORDS;
use super::{Gen, Kind};

impl Gen {
    pub(super) fn int_lit(&mut self) -> String {
        match self.r.weighted(&[40, 30, 15, 8, 7]) {
            0 => self.r.range(0, 10).to_string(),
            1 => self.r.range(0, 100).to_string(),
            2 => self.r.range(100, 9999).to_string(),
            3 => format!("-{}", self.r.range(1, 50)),
            _ => self.pick(&["0", "1", "2", "10", "100"]).to_owned(),
        }
    }

    pub(super) fn float_lit(&mut self) -> String {
        format!("{}.{}", self.r.range(0, 99), self.r.range(0, 99))
    }

    pub(super) fn phrase(&mut self, lo: usize, hi: usize) -> String {
        let n = self.r.urange(lo, hi);
        let mut s = String::new();
        for i in 0..n {
            if i > 0 {
                s.push(' ');
            }
            s.push_str(self.pick(WORDS));
        }
        if self.p(0.3) {
            let mut c = s.chars();
            if let Some(f) = c.next() {
                s = f.to_uppercase().chain(c).collect();
            }
        }
        s
    }

    /// The text of a string literal (without quotes); may contain an apostrophe when `q` is `"`.
    fn str_content(&mut self, q: char) -> String {
        let mut s = match self.r.weighted(&[50, 15, 10, 10, 8, 7]) {
            0 => self.phrase(1, 7),
            1 => self.pick(WORDS).to_owned(),
            2 => format!("{}:", self.phrase(1, 3)),
            3 => format!("{}!", self.phrase(2, 5)),
            4 => self
                .pick(&[",", " ", "", "-", ", ", "\\n", "/", "_", ".", "|"])
                .to_owned(),
            _ => format!("{}...", self.phrase(1, 3)),
        };
        if q == '"' && self.p(0.05) {
            s.push_str(" don't");
        }
        s
    }

    pub(super) fn quote(&mut self) -> char {
        if self.p(0.5) {
            '"'
        } else {
            '\''
        }
    }

    pub(super) fn str_lit(&mut self) -> String {
        let q = self.quote();
        self.str_lit_q(q)
    }

    pub(super) fn str_lit_q(&mut self, q: char) -> String {
        let c = self.str_content(q);
        format!("{q}{c}{q}")
    }

    /// An f-string with 1-3 replacement fields.
    pub(super) fn fstring(&mut self) -> String {
        let q = self.quote();
        let mut s = format!("f{q}");
        let fields = self.r.urange(1, 3);
        for i in 0..fields {
            if i > 0 || self.p(0.6) {
                if i > 0 {
                    s.push(' ');
                }
                s.push_str(&self.phrase(1, 3));
                s.push_str(self.pick(&[" ", ": ", " = ", ", ", " has "]));
            }
            let kind = *self.r.pick(&[Kind::Int, Kind::Str, Kind::Int, Kind::Str, Kind::List]);
            let v = self.var(kind);
            let field = match (kind, self.r.below(8)) {
                (Kind::List, _) => format!("len({v})"),
                (Kind::Int, 0) => format!("{v}:.2f"),
                (Kind::Int, 1) => format!("{v} + 1"),
                (Kind::Str, 0) => format!("{v}!r"),
                _ => v,
            };
            s.push('{');
            s.push_str(&field);
            s.push('}');
        }
        if self.p(0.5) {
            s.push(' ');
            s.push_str(&self.phrase(1, 2));
        }
        s.push(q);
        s
    }

    fn scalar_elem(&mut self, kind: usize) -> String {
        match kind {
            0 => self.int_lit(),
            1 => {
                let q = self.quote();
                format!("{q}{}{q}", self.pick(WORDS))
            }
            2 => self.float_lit(),
            3 => self.var(Kind::Int),
            _ => self.pick(&["True", "False", "None", "0", "1"]).to_owned(),
        }
    }

    /// A list literal of nesting depth `depth` (1 = flat). `long` lists have many elements. With `mixed`, a nested
    /// list may hold scalars next to sublists (`[[1, 2], 3, 4]`), so its last element is sometimes a scalar.
    pub(super) fn list_lit(&mut self, depth: usize, long: bool, mixed: bool, elem: usize) -> String {
        // Names repeat when many are drawn: only short lists hold names.
        let (long, elem) = if elem == 3 && (long || depth > 1) {
            (long, 0)
        } else {
            (long, elem)
        };
        if depth <= 1 {
            let n = if long {
                self.r.urange(8, 24)
            } else {
                self.r.urange(1, 5)
            };
            let items: Vec<String> = (0..n).map(|_| self.scalar_elem(elem)).collect();
            return format!("[{}]", items.join(", "));
        }
        let n = if long {
            self.r.urange(4, 10)
        } else {
            self.r.urange(2, 4)
        };
        let mut items = Vec::with_capacity(n);
        let mut any_nested = false;
        for i in 0..n {
            let last = i + 1 == n;
            let nested = !mixed || self.p(0.5) || (last && !any_nested);
            if nested {
                any_nested = true;
                let inner_long = long && depth == 2 && self.p(0.2);
                let inner_mixed = mixed && self.p(0.3);
                items.push(self.list_lit(depth - 1, inner_long, inner_mixed, elem));
            } else {
                items.push(self.scalar_elem(elem));
            }
        }
        format!("[{}]", items.join(", "))
    }

    pub(super) fn list_elem_kind(&mut self) -> usize {
        self.r.weighted(&[62, 18, 8, 6, 6])
    }

    /// A random list literal, weighted towards nesting depths 1 and 2.
    pub(super) fn any_list_lit(&mut self) -> String {
        let depth = 1 + self.r.weighted(&[40, 45, 15]);
        let long = self.p(0.3);
        let mixed = depth > 1 && self.p(0.3);
        let elem = self.list_elem_kind();
        self.list_lit(depth, long, mixed, elem)
    }

    pub(super) fn dict_lit(&mut self, max_len: usize) -> String {
        let n = self.r.urange(1, max_len);
        let style = self.r.weighted(&[55, 35, 10]);
        let mut parts = Vec::with_capacity(n);
        for _ in 0..n {
            let q = match style {
                0 => '"',
                1 => '\'',
                _ => self.quote(),
            };
            let key = self.pick(WORDS);
            let value = match self.r.weighted(&[40, 25, 12, 8, 8, 7]) {
                0 => self.int_lit(),
                1 => self.str_lit(),
                2 => {
                    let e = self.list_elem_kind();
                    self.list_lit(1, false, false, e)
                }
                3 => self.pick(&["True", "False", "None"]).to_owned(),
                4 if max_len > 2 => self.dict_lit(2),
                _ => self.float_lit(),
            };
            parts.push(format!("{q}{key}{q}: {value}"));
        }
        format!("{{{}}}", parts.join(", "))
    }

    pub(super) fn set_lit(&mut self) -> String {
        let n = self.r.urange(1, 5);
        let elem = if self.p(0.5) { 0 } else { 1 };
        let items: Vec<String> = (0..n).map(|_| self.scalar_elem(elem)).collect();
        format!("{{{}}}", items.join(", "))
    }

    /// A number as list elements are written: small ints, sometimes negative, large or a short float (`4.3`).
    fn num_elem(&mut self) -> String {
        match self.r.weighted(&[66, 12, 9, 9, 4]) {
            0 => self.r.range(0, 19).to_string(),
            1 => self.r.range(21, 999).to_string(),
            2 => format!("-{}", self.r.range(1, 9)),
            3 => format!("{}.{}", self.r.range(0, 9), self.r.range(1, 9)),
            _ => self.pick(&["0", "1", "10", "100", "0.5", "1.0"]).to_owned(),
        }
    }

    /// An element of a bracket-heavy list: numbers (kind 0), quoted words (1) or either (2).
    fn bl_elem(&mut self, kind: usize) -> String {
        let word = kind == 1 || (kind == 2 && self.p(0.3));
        if word {
            let q = self.quote();
            format!("{q}{}{q}", self.pick(WORDS))
        } else {
            self.num_elem()
        }
    }

    fn bl_row(&mut self, kind: usize, n: usize) -> String {
        let items: Vec<String> = (0..n).map(|_| self.bl_elem(kind)).collect();
        format!("[{}]", items.join(", "))
    }

    /// A one-line list literal whose closing brackets depend on the nesting depth at its end: flat lists short
    /// and long, matrices (one row or many), rows followed by scalars (`[[1, 2], 3, 4]`), scalars followed by rows
    /// (`[0, [1, 2]]`) and the odd depth-3 literal.
    pub(super) fn depth_list_lit(&mut self) -> String {
        let kind = self.r.weighted(&[84, 13, 3]);
        let width = if self.p(0.2) {
            self.r.urange(1, 8)
        } else {
            self.r.urange(1, 4)
        };
        match self.r.weighted(&[16, 10, 28, 26, 10, 5, 5]) {
            0 => {
                let n = self.r.urange(1, 6);
                self.bl_row(kind, n)
            }
            1 => {
                let n = self.r.urange(10, 30);
                self.bl_row(kind, n)
            }
            2 => {
                // A matrix; the last row sometimes longer.
                let rows = if self.p(0.3) {
                    self.r.urange(1, 7)
                } else {
                    self.r.urange(2, 4)
                };
                let mut items: Vec<String> = (0..rows - 1).map(|_| self.bl_row(kind, width)).collect();
                let last = if self.p(0.3) { self.r.urange(1, 10) } else { width };
                items.push(self.bl_row(kind, last));
                format!("[{}]", items.join(", "))
            }
            3 => {
                // Rows, then scalars: the literal ends at depth 1.
                let rows = if self.p(0.3) {
                    self.r.urange(1, 6)
                } else {
                    self.r.urange(1, 3)
                };
                let mut items: Vec<String> = (0..rows).map(|_| self.bl_row(kind, width)).collect();
                let tail = if self.p(0.3) {
                    self.r.urange(1, 10)
                } else {
                    self.r.urange(1, 4)
                };
                for _ in 0..tail {
                    items.push(self.bl_elem(kind));
                }
                format!("[{}]", items.join(", "))
            }
            4 => {
                // A single row: `[[4, 8, 10]]`.
                let n = if self.p(0.3) {
                    self.r.urange(1, 10)
                } else {
                    self.r.urange(1, 4)
                };
                format!("[{}]", self.bl_row(kind, n))
            }
            5 => {
                // Scalars, then rows: ends at depth 2.
                let mut items: Vec<String> = (0..self.r.urange(1, 3)).map(|_| self.bl_elem(kind)).collect();
                for _ in 0..self.r.urange(1, 3) {
                    items.push(self.bl_row(kind, width));
                }
                format!("[{}]", items.join(", "))
            }
            _ => {
                let blocks: Vec<String> = (0..self.r.urange(1, 3))
                    .map(|_| {
                        let rows: Vec<String> = (0..self.r.urange(1, 3)).map(|_| self.bl_row(kind, width)).collect();
                        format!("[{}]", rows.join(", "))
                    })
                    .collect();
                format!("[{}]", blocks.join(", "))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::check::{samples, well_formed};
    use super::Gen;

    /// `make`'s expression as the value of an assignment, checked as code and by `shape`.
    fn assert_values(make: impl Fn(&mut Gen) -> String, shape: impl Fn(&str) -> bool) {
        for v in samples(400, 0, |g, _| {
            let v = make(g);
            g.out = v;
        }) {
            well_formed(&format!("x = {v}\n"), 0).unwrap_or_else(|e| panic!("{e}: {v}"));
            assert!(shape(&v), "{v}");
        }
    }

    /// Opens and closes with the same quote.
    fn quoted(v: &str) -> bool {
        let q = v.chars().next();
        matches!(q, Some('"') | Some('\'')) && v.len() >= 2 && v.ends_with(q.unwrap_or(' '))
    }

    #[test]
    fn numbers_parse() {
        assert_values(Gen::int_lit, |v| v.parse::<i64>().is_ok());
        assert_values(Gen::float_lit, |v| v.parse::<f64>().is_ok());
    }

    /// Strings open and close with the same quote; f-strings carry their prefix.
    #[test]
    fn strings_close_with_their_quote() {
        assert_values(Gen::str_lit, quoted);
        assert_values(|g| g.str_lit_q('"'), |v| v.starts_with('"') && v.ends_with('"'));
        assert_values(|g| g.str_lit_q('\''), |v| v.starts_with('\'') && v.ends_with('\''));
        assert_values(Gen::fstring, |v| v.starts_with('f') && quoted(&v[1..]));
    }

    #[test]
    fn collections_have_their_brackets() {
        assert_values(Gen::any_list_lit, |v| v.starts_with('[') && v.ends_with(']'));
        assert_values(Gen::depth_list_lit, |v| v.starts_with('[') && v.ends_with(']'));
        assert_values(|g| g.dict_lit(4), |v| v.starts_with('{') && v.ends_with('}'));
        assert_values(Gen::set_lit, |v| {
            (v.starts_with('{') && v.ends_with('}')) || v.starts_with("set(")
        });
    }
}
