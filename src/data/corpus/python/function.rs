//! Function definitions: parameter lists, docstrings, bodies, `return`; and the library-style I/O and swap
//! functions.

use super::vocab::{
    IO_PAIRS, PARAM_DEFAULTS, PARAM_NAMES, PREDICATES, READ_FILES, READ_PATHS, SWAP_PAIRS, WRITE_FILES, WRITE_PATHS,
};
use super::{Gen, Kind};

impl Gen {
    /// A parameter list; returns the text inside the parentheses.
    fn params(&mut self, method: bool) -> String {
        if self.p(0.45) {
            return self.lib_params(method);
        }
        let mut ps: Vec<String> = Vec::new();
        if method {
            ps.push("self".into());
        }
        let npos = self.r.weighted(&[8, 30, 32, 20, 10]);
        let nkw = self.r.weighted(&[45, 25, 18, 12]);
        let mut used: Vec<String> = Vec::new();
        for _ in 0..npos {
            let kind = *self.r.pick(&[Kind::Int, Kind::List, Kind::Str, Kind::List, Kind::Dict]);
            let name = self.fresh_name(kind);
            if used.contains(&name) {
                continue;
            }
            used.push(name.clone());
            self.declare(&name, kind);
            ps.push(name);
        }
        let all_none = self.p(0.5);
        for _ in 0..nkw {
            let kind = *self.r.pick(&[Kind::Int, Kind::Str, Kind::Bool, Kind::List, Kind::Int]);
            let name = self.fresh_name(kind);
            if used.contains(&name) {
                continue;
            }
            used.push(name.clone());
            self.declare(&name, kind);
            let default = if all_none || self.p(0.45) {
                "None".to_owned()
            } else {
                match kind {
                    Kind::Int => self.int_lit(),
                    Kind::Str => self.str_lit(),
                    Kind::Bool => self.pick(&["True", "False"]).to_owned(),
                    _ => "None".to_owned(),
                }
            };
            ps.push(format!("{name}={default}"));
        }
        ps.join(", ")
    }

    /// Parameters in the style of library signatures: positional names, then keyword parameters, the last one
    /// usually `=None` (`def fetch(path, timeout=10, retries=None)`), or all positional.
    fn lib_params(&mut self, method: bool) -> String {
        let mut ps: Vec<String> = Vec::new();
        if method {
            ps.push("self".into());
        }
        let n = self.r.urange(1, 5);
        let mut names: Vec<&str> = Vec::new();
        while names.len() < n {
            let x = self.pick(PARAM_NAMES);
            if !names.contains(&x) {
                names.push(x);
            }
        }
        let n_kw = if self.p(0.6) { self.r.urange(1, n.min(3)) } else { 0 };
        for (i, name) in names.iter().enumerate() {
            let kind = match *name {
                "path" | "name" | "mode" | "encoding" | "key" | "text" | "prefix" | "sep" | "label" | "output"
                | "default" => Kind::Str,
                "data" | "items" => Kind::List,
                "config" => Kind::Dict,
                "verbose" | "debug" | "strict" => Kind::Bool,
                _ => Kind::Int,
            };
            self.declare(name, kind);
            if i + n_kw < n {
                ps.push((*name).to_owned());
            } else {
                let default = if i + 1 == n && (n_kw > 1 || self.p(0.6)) && self.p(0.85) {
                    "None"
                } else {
                    self.pick(PARAM_DEFAULTS)
                };
                ps.push(format!("{name}={default}"));
            }
        }
        ps.join(", ")
    }

    pub(super) fn docstring(&mut self, d: usize) {
        let s = self.phrase(2, 8);
        let mut c = s.chars();
        let s: String = c
            .next()
            .map(|f| f.to_uppercase().chain(c).collect())
            .unwrap_or_default();
        self.line(d, &format!("\"\"\"{s}.\"\"\""));
    }

    pub(super) fn function(&mut self, d: usize, method: bool) {
        let saved_vars = std::mem::take(&mut self.vars);
        if method {
            for (a, k) in saved_vars.iter().filter(|(n, _)| n.starts_with("self.")) {
                self.vars.push((a.clone(), *k));
            }
        }
        let was_in_func = self.in_func;
        self.in_func = true;
        let b = d + 1;
        let mut template = self.r.weighted(&[50, 12, 9, 9, 4, 4, 6, 6, 9, 6]);
        if template == 4 && method {
            template = 5;
        }
        match template {
            1 => {
                // A predicate: `return True` / `return False`.
                let name = self.pick(PREDICATES);
                let params = self.params(method);
                let params = if params.is_empty() || params == "self" {
                    if method {
                        "self, value".to_owned()
                    } else {
                        "value".to_owned()
                    }
                } else {
                    params
                };
                self.line(d, &format!("def {name}({params}):"));
                if self.p(0.3) {
                    self.docstring(b);
                }
                if self.p(0.6) {
                    let (coll, el) = self.collection();
                    self.line(b, &format!("for {el} in {coll}:"));
                    let c = self.cond();
                    self.line(b + 1, &format!("if {c}:"));
                    self.line(b + 2, "return True");
                    self.line(b, "return False");
                } else {
                    let c = self.cond();
                    self.line(b, &format!("if {c}:"));
                    self.line(b + 1, "return False");
                    if self.p(0.5) {
                        let n = self.body_len(b);
                        self.block(b, n);
                    }
                    self.line(b, "return True");
                }
            }
            2 => {
                // An accumulator function.
                let name = self.pick(&[
                    "unique_words",
                    "collect_chars",
                    "join_parts",
                    "get_letters",
                    "build_string",
                    "unique_values",
                    "collect_tags",
                    "seen_names",
                    "merge_text",
                    "find_unique",
                ]);
                let params = self.params(method);
                self.line(d, &format!("def {name}({params}):"));
                let (acc, returned) = self.accumulator(b);
                if !returned {
                    self.line(b, &format!("return {acc}"));
                }
            }
            3 => {
                // Reading or writing a file; the name says which.
                let read = self.p(0.5);
                let verb = if read {
                    self.pick(&["load", "read", "parse", "import"])
                } else {
                    self.pick(&["save", "write", "dump", "export"])
                };
                let obj = self.pick(&[
                    "config", "data", "lines", "results", "report", "scores", "file", "words",
                ]);
                let path = self.pick(if read { READ_PATHS } else { WRITE_PATHS });
                let extra = if read {
                    String::new()
                } else {
                    format!(", {}", self.fresh_name(Kind::List))
                };
                self.line(
                    d,
                    &format!("def {verb}_{obj}({}{path}{extra}):", if method { "self, " } else { "" }),
                );
                self.declare(path, Kind::Str);
                if self.p(0.8) {
                    self.with_open(b, read);
                } else {
                    self.open_assign_stmt(b);
                }
                if read && self.p(0.7) {
                    let v = self.pick(&["data", "lines", "content", "config"]);
                    self.line(b, &format!("return {v}"));
                }
            }
            4 => {
                // Bubble sort with swaps.
                let name = self.pick(&["bubble_sort", "sort_values", "sort_in_place", "order_items"]);
                let l = self.pick(&["xs", "values", "items", "arr", "nums", "data"]);
                self.line(d, &format!("def {name}({}{l}):", if method { "self, " } else { "" }));
                self.line(b, &format!("n = len({l})"));
                self.line(b, "for i in range(n):");
                self.line(b + 1, "for j in range(n - i - 1):");
                self.line(b + 2, &format!("if {l}[j] > {l}[j + 1]:"));
                self.line(b + 3, &format!("{l}[j], {l}[j + 1] = {l}[j + 1], {l}[j]"));
                self.line(b, &format!("return {l}"));
            }
            5 => {
                // Fibonacci / gcd style swaps.
                if self.p(0.5) {
                    self.line(d, &format!("def fib({}n):", if method { "self, " } else { "" }));
                    self.line(b, "a, b = 0, 1");
                    self.line(b, "for _ in range(n):");
                    self.line(b + 1, "a, b = b, a + b");
                    self.line(b, "return a");
                } else {
                    self.line(d, &format!("def gcd({}a, b):", if method { "self, " } else { "" }));
                    self.line(b, "while b:");
                    self.line(b + 1, "a, b = b, a % b");
                    self.line(b, "return a");
                }
            }
            6 => {
                // A key function defined with def (vs lambda elsewhere).
                let name = self.pick(&[
                    "key",
                    "by_score",
                    "get_key",
                    "sort_key",
                    "score",
                    "square",
                    "double",
                    "transform",
                ]);
                let arg = self.pick(&["x", "item", "pair", "p", "record"]);
                self.line(d, &format!("def {name}({}{arg}):", if method { "self, " } else { "" }));
                let body = match self.r.below(4) {
                    0 => format!("{arg}[1]"),
                    1 => format!("{arg} * {arg}"),
                    2 => format!("len({arg})"),
                    _ => format!("{arg}[0]"),
                };
                self.line(b, &format!("return {body}"));
            }
            8 => self.io_function(d, method),
            9 => self.swap_function(d, method),
            7 => {
                let name = self.func_name();
                let params = self.params(method);
                self.line(d, &format!("def {name}({params}):"));
                self.while_true(b);
                if self.p(0.5) {
                    self.return_stmt(b);
                }
            }
            _ => {
                let name = self.func_name();
                let params = self.params(method);
                self.line(d, &format!("def {name}({params}):"));
                if self.p(0.3) {
                    self.docstring(b);
                }
                let n = self.r.urange(2, 6);
                self.block(b, n);
                if self.p(0.7) {
                    self.return_stmt(b);
                }
            }
        }
        self.in_func = was_in_func;
        self.vars = saved_vars;
    }

    /// A function that reads an input file and writes an output file, named as a pair (`src_file`, `dst_file`).
    fn io_function(&mut self, d: usize, method: bool) {
        let (rd, wr) = *self.r.pick(IO_PAIRS);
        let b = d + 1;
        let name = format!(
            "{}_{}",
            self.pick(&[
                "convert",
                "copy",
                "process",
                "transform",
                "clean",
                "filter",
                "merge",
                "export"
            ]),
            self.pick(&["file", "data", "lines", "records", "csv", "log", "text", "results"])
        );
        let globals = d == 0 && !method && self.p(0.4);
        if globals {
            let file = self.pick(READ_FILES);
            let (stem, ext) = file.split_once('.').unwrap_or((file, "txt"));
            let q = self.quote();
            self.line(0, &format!("{rd} = {q}{file}{q}"));
            let out = if self.p(0.5) {
                format!("{stem}_out.{ext}")
            } else {
                self.pick(WRITE_FILES).to_owned()
            };
            self.line(0, &format!("{wr} = {q}{out}{q}"));
            self.blank();
            self.line(0, &format!("def {name}():"));
        } else {
            self.line(
                d,
                &format!("def {name}({}{rd}, {wr}):", if method { "self, " } else { "" }),
            );
        }
        if self.p(0.3) {
            let c = self.pick(&["os.path.exists", "os.path.isfile"]);
            self.line(b, &format!("if not {c}({rd}):"));
            self.line(b + 1, "return None");
        }
        let mq = if self.p(0.65) { '\'' } else { '"' };
        let which = self.r.weighted(&[70, 15, 15]);
        let wmode = if self.p(0.1) { 'a' } else { 'w' };
        if which != 2 {
            let h = self.pick(&["f", "f", "src", "infile", "fin", "fh"]);
            if self.p(0.8) {
                self.line(b, &format!("with open({rd}, {mq}r{mq}) as {h}:"));
                let m = self.pick(&["readlines", "read"]);
                self.line(b + 1, &format!("lines = {h}.{m}()"));
            } else {
                self.line(b, &format!("{h} = open({rd}, {mq}r{mq})"));
                self.line(b, &format!("lines = {h}.readlines()"));
                self.line(b, &format!("{h}.close()"));
            }
        } else {
            self.line(b, "lines = [line.upper() for line in lines]");
        }
        if which != 1 {
            let h = self.pick(&["out", "f", "dst", "outfile", "fout", "handle"]);
            if self.p(0.8) {
                self.line(b, &format!("with open({wr}, {mq}{wmode}{mq}) as {h}:"));
                self.line(b + 1, "for line in lines:");
                let w = self.pick(&["line", "line.strip() + \"\\n\"", "line.upper()", "line.lower()"]);
                self.line(b + 2, &format!("{h}.write({w})"));
            } else {
                self.line(b, &format!("{h} = open({wr}, {mq}{wmode}{mq})"));
                self.line(b, &format!("{h}.writelines(lines)"));
                self.line(b, &format!("{h}.close()"));
            }
        } else {
            self.line(b, "return lines");
        }
        if self.p(0.3) {
            self.line(b, &format!("print(\"Wrote\", len(lines), \"lines to\", {wr})"));
        }
    }

    /// A function that orders two values with a swap: `if lo > hi: lo, hi = hi, lo`.
    fn swap_function(&mut self, d: usize, method: bool) {
        let (mut a, mut b) = *self.r.pick(SWAP_PAIRS);
        if self.p(0.3) {
            std::mem::swap(&mut a, &mut b);
        }
        let name = self.pick(&[
            "ordered",
            "sort_pair",
            "normalize_range",
            "min_max",
            "swap",
            "order",
            "clamp_range",
        ]);
        self.line(
            d,
            &format!("def {name}({}{a}, {b}):", if method { "self, " } else { "" }),
        );
        let body = d + 1;
        if self.p(0.3) {
            self.line(body, &format!("print({a}, {b})"));
        }
        let op = self.pick(&[">", ">", "<", ">="]);
        self.line(body, &format!("if {a} {op} {b}:"));
        if self.p(0.5) {
            self.line(body + 1, &format!("{a}, {b} = {b}, {a}"));
        } else {
            self.line(body + 1, &format!("{b}, {a} = {a}, {b}"));
        }
        self.line(body, &format!("return {a}, {b}"));
    }

    pub(super) fn return_stmt(&mut self, d: usize) {
        let v = match self.r.weighted(&[25, 10, 10, 20, 10, 10, 15]) {
            0 => "True".to_owned(),
            1 => "False".to_owned(),
            2 => "None".to_owned(),
            3 => {
                let k = *self.r.pick(&[Kind::Int, Kind::List, Kind::Str, Kind::Dict]);
                self.var(k)
            }
            4 => self.int_expr(),
            5 => format!("{}, {}", self.var(Kind::Int), self.var(Kind::List)),
            _ => self.str_expr(),
        };
        self.line(d, &format!("return {v}"));
    }
}

#[cfg(test)]
mod tests {
    use super::super::check::{assert_well_formed, samples, well_formed};
    use super::Gen;

    /// A `def` at the sample's depth, with a body.
    fn assert_defines(make: fn(&mut Gen, usize), d: usize) {
        for lines in assert_well_formed(&samples(300, d, make), d) {
            let def = lines.iter().find(|l| l.indent == 4 * d && l.text.starts_with("def "));
            let def = def.unwrap_or_else(|| panic!("no def in {lines:?}"));
            assert!(
                def.opens_block && def.text.contains('(') && def.text.contains(')'),
                "{}",
                def.text
            );
        }
    }

    #[test]
    fn functions_have_a_signature_and_a_body() {
        assert_defines(|g, d| g.function(d, false), 0);
        assert_defines(|g, d| g.function(d, true), 1);
        assert_defines(|g, d| g.io_function(d, false), 0);
        assert_defines(|g, d| g.swap_function(d, false), 0);
    }

    /// Parameter lists are valid inside `def f(...)`, and methods take `self` first.
    #[test]
    fn parameter_lists_are_valid() {
        for method in [false, true] {
            for p in samples(300, 0, |g, _| {
                let p = g.params(method);
                g.out = p;
            }) {
                let def = format!("def f({p}):\n    pass\n");
                well_formed(&def, 0).unwrap_or_else(|e| panic!("{e}: {def}"));
                assert_eq!(method, p.starts_with("self"), "{p}");
            }
        }
    }

    #[test]
    fn docstrings_and_returns_are_one_line() {
        for s in samples(200, 1, |g, d| g.docstring(d)) {
            let t = s.trim();
            assert!(
                t.starts_with("\"\"\"") && t.ends_with("\"\"\"") && t.len() > 6 && s.lines().count() == 1,
                "{s}"
            );
        }
        for lines in assert_well_formed(&samples(200, 1, |g, d| g.return_stmt(d)), 1) {
            assert!(lines.len() == 1 && lines[0].text.starts_with("return"), "{lines:?}");
        }
    }
}
