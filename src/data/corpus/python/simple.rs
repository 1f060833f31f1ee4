//! Simple statements (one logical line each, except a swap guarded by a comparison): assignments, calls,
//! augmented assignments, swaps, lambdas, comments; and the chooser among them.

use super::vocab::{
    DICT_NAMES, FILE_HANDLES, INT_NAMES, LIST_STMT_NAMES, READ_FILES, READ_PATHS, SET_NAMES, SWAP_PAIRS, WORDS,
    WRITE_FILES, WRITE_PATHS,
};
use super::{Gen, Kind, MAX_DEPTH};

impl Gen {
    pub(super) fn simple_stmt(&mut self, d: usize) {
        match self
            .r
            .weighted(&[14, 36, 10, 6, 8, 10, 8, 3, 7, 2, 4, 3, 2, 3, 3, 58, 9, 6, 14, 4])
        {
            0 => self.assign_stmt(d),
            1 => self.list_stmt(d),
            2 => {
                let name = self.pick(DICT_NAMES);
                let v = if self.p(0.8) { self.dict_lit(5) } else { "{}".to_owned() };
                self.declare(name, Kind::Dict);
                self.line(d, &format!("{name} = {v}"));
            }
            3 => {
                let name = self.pick(SET_NAMES);
                let v = match self.r.below(3) {
                    0 => "set()".to_owned(),
                    1 => format!("set({})", self.var(Kind::List)),
                    _ => self.set_lit(),
                };
                self.declare(name, Kind::Set);
                self.line(d, &format!("{name} = {v}"));
            }
            4 => self.aug_stmt(d),
            5 => self.print_stmt(d),
            6 => self.call_stmt(d),
            7 => {
                // A comment never makes a block on its own.
                self.comment_stmt(d);
                self.assign_stmt(d);
            }
            8 => self.ternary_stmt(d),
            9 => self.swap_stmt(d),
            10 => self.lambda_stmt(d),
            11 => {
                let name = self.fresh_name(Kind::List);
                let c = self.comprehension();
                self.declare(&name, Kind::List);
                self.line(d, &format!("{name} = {c}"));
            }
            12 => self.open_assign_stmt(d),
            13 => self.flag_stmt(d),
            15 => self.depth_list_stmt(d),
            16 => self.keyed_stmt(d),
            17 => self.report_print(d),
            18 => self.message_stmt(d),
            19 => self.swap_pair_stmt(d),
            _ => {
                if self.loops > 0 && self.p(0.5) {
                    let s = self.pick(&["break", "continue"]);
                    self.line(d, s);
                } else if self.in_func {
                    self.return_stmt(d);
                } else {
                    self.assign_stmt(d);
                }
            }
        }
    }

    pub(super) fn list_stmt(&mut self, d: usize) {
        let lit = self.any_list_lit();
        let form = self.r.weighted(&[72, 6, 6, 5, 5, 6]);
        let text = match form {
            0 => {
                let name = self.pick(LIST_STMT_NAMES);
                self.declare(name, Kind::List);
                format!("{name} = {lit}")
            }
            1 if self.in_func => format!("return {lit}"),
            2 => format!("{}.append({lit})", self.var(Kind::List)),
            3 => format!("print({lit})"),
            4 if self.in_method => {
                let a = self.pick(&["items", "history", "data", "grid", "values", "children"]);
                format!("self.{a} = {lit}")
            }
            5 if d == 0 || (d < MAX_DEPTH && self.p(0.3)) => {
                // A multi-line literal of lists.
                let name = self.pick(LIST_STMT_NAMES);
                self.declare(name, Kind::List);
                self.line(d, &format!("{name} = ["));
                let rows = self.r.urange(2, 5);
                let elem = self.list_elem_kind();
                for _ in 0..rows {
                    let row_depth = 1 + self.r.below(2);
                    let row = self.list_lit(row_depth, false, false, elem);
                    self.line(d + 1, &format!("{row},"));
                }
                self.line(d, "]");
                return;
            }
            _ => {
                let name = self.pick(LIST_STMT_NAMES);
                self.declare(name, Kind::List);
                format!("{name} = {lit}")
            }
        };
        self.line(d, &text);
    }

    pub(super) fn assign_stmt(&mut self, d: usize) {
        let kind = *self
            .r
            .pick(&[Kind::Int, Kind::Int, Kind::Int, Kind::Str, Kind::Str, Kind::Bool]);
        let name = self.fresh_name(kind);
        let value = match kind {
            Kind::Bool => self.pick(&["True", "False", "True"]).to_owned(),
            k => self.expr(k),
        };
        self.declare(&name, kind);
        self.line(d, &format!("{name} = {value}"));
    }

    fn call_stmt(&mut self, d: usize) {
        let text = match self.r.weighted(&[20, 8, 15, 10, 10, 8, 8, 6, 6, 9]) {
            0 => {
                let l = self.var(Kind::List);
                let k = *self.r.pick(&[Kind::Int, Kind::Str]);
                let v = self.expr(k);
                format!("{l}.append({v})")
            }
            1 => format!("{}.sort()", self.var(Kind::List)),
            2 => {
                let f = self.func_name();
                let n = self.r.below(3);
                let args: Vec<String> = (0..n)
                    .map(|_| {
                        let k = *self.r.pick(&[Kind::Int, Kind::List, Kind::Str]);
                        self.var(k)
                    })
                    .collect();
                format!("{f}({})", args.join(", "))
            }
            3 => {
                let lvl = self.pick(&["info", "debug", "warning", "error"]);
                format!("logger.{lvl}({})", self.str_lit())
            }
            4 => format!("{}[{}] = {}", self.var(Kind::Dict), self.str_lit(), self.int_expr()),
            5 => {
                let (coll, _) = self.collection();
                format!("{coll}.extend({})", self.var(Kind::List))
            }
            6 => {
                let dct = self.var(Kind::Dict);
                let k = self.var(Kind::Str);
                format!("{dct}[{k}] = {dct}.get({k}, 0) + 1")
            }
            7 => format!("{}.update({})", self.var(Kind::Dict), self.dict_lit(2)),
            8 => format!("{}.pop()", self.var(Kind::List)),
            _ => {
                let f = self.func_name();
                let kw = self.pick(&["verbose", "debug", "strict", "force", "sep", "limit"]);
                let v = match kw {
                    "sep" => self.str_lit(),
                    "limit" => self.int_lit(),
                    _ => self.pick(&["True", "False"]).to_owned(),
                };
                format!("{f}({}, {kw}={v})", self.var(Kind::List))
            }
        };
        self.line(d, &text);
    }

    fn aug_stmt(&mut self, d: usize) {
        let text = match self.r.weighted(&[30, 25, 15, 10, 10, 10]) {
            0 => format!("{} += {}", self.var(Kind::Int), self.int_expr_simple()),
            1 => format!("{} += 1", self.var(Kind::Int)),
            2 => format!("{} -= 1", self.var(Kind::Int)),
            3 => format!("{} *= {}", self.var(Kind::Int), self.int_lit()),
            4 => format!("{} += {}", self.var(Kind::Str), self.str_lit()),
            _ => format!("{} += [{}]", self.var(Kind::List), self.int_lit()),
        };
        self.line(d, &text);
    }

    pub(super) fn comment_stmt(&mut self, d: usize) {
        let c = match self.r.below(6) {
            0 => format!("# TODO: {}", self.phrase(2, 5)),
            1 => format!("# NOTE: {}", self.phrase(2, 5)),
            _ => format!("# {}", self.phrase(2, 7)),
        };
        self.line(d, &c);
    }

    fn ternary_stmt(&mut self, d: usize) {
        let kind = *self.r.pick(&[Kind::Int, Kind::Str, Kind::Int]);
        let name = self.fresh_name(kind);
        let (a, b) = match kind {
            Kind::Str => (self.str_lit(), self.str_lit()),
            _ => match self.r.below(4) {
                3 => {
                    let q = self.quote();
                    (
                        format!("{q}{}{q}", self.pick(WORDS)),
                        self.pick(&["None", "0", "\"\"", "False"]).to_owned(),
                    )
                }
                0 => ("1".to_owned(), "-1".to_owned()),
                1 => (self.var(Kind::Int), self.int_lit()),
                _ => (self.var(Kind::Int), self.var(Kind::Int)),
            },
        };
        let c = if self.p(0.5) { self.simple_cond() } else { self.cond() };
        let text = if self.in_func && self.p(0.1) {
            format!("return {a} if {c} else {b}")
        } else {
            self.declare(&name, kind);
            format!("{name} = {a} if {c} else {b}")
        };
        self.line(d, &text);
    }

    fn swap_stmt(&mut self, d: usize) {
        let text = match self.r.weighted(&[40, 25, 20, 15]) {
            0 => {
                let (mut a, mut b) = *self.r.pick(SWAP_PAIRS);
                if self.p(0.4) {
                    std::mem::swap(&mut a, &mut b);
                }
                format!("{a}, {b} = {b}, {a}")
            }
            1 => {
                let l = self.var(Kind::List);
                let (i, j) = *self
                    .r
                    .pick(&[("i", "j"), ("i", "i + 1"), ("j", "j + 1"), ("0", "-1"), ("a", "b")]);
                format!("{l}[{i}], {l}[{j}] = {l}[{j}], {l}[{i}]")
            }
            2 => {
                let (a, b) = *self.r.pick(&[("a", "b"), ("x", "y"), ("prev", "curr")]);
                format!("{a}, {b} = {b}, {a} + {b}")
            }
            _ => {
                let a = self.pick(&["self.left", "self.head", "self.x", "node.left"]);
                let b = match a {
                    "self.left" => "self.right",
                    "self.head" => "self.tail",
                    "self.x" => "self.y",
                    _ => "node.right",
                };
                format!("{a}, {b} = {b}, {a}")
            }
        };
        self.line(d, &text);
    }

    fn lambda_stmt(&mut self, d: usize) {
        let arg = self.pick(&["x", "x", "item", "p", "s", "pair", "k", "n"]);
        let body = match self.r.below(6) {
            0 => format!("{arg}[1]"),
            1 => format!("{arg}[0]"),
            2 => format!("{arg} * {arg}"),
            3 => format!("{arg} + {}", self.int_lit()),
            4 => format!("len({arg})"),
            _ => format!("-{arg}"),
        };
        let colon = if self.p(0.12) { " :" } else { ":" };
        let text = match self.r.weighted(&[45, 25, 10, 10, 10]) {
            0 => {
                let name = self.pick(&[
                    "key",
                    "square",
                    "double",
                    "get_key",
                    "score",
                    "by_len",
                    "f",
                    "transform",
                    "fn",
                ]);
                format!("{name} = lambda {arg}{colon} {body}")
            }
            1 => format!(
                "{} = sorted({}, key=lambda {arg}{colon} {body})",
                self.fresh_name(Kind::List),
                self.var(Kind::List)
            ),
            2 => format!(
                "{}.sort(key=lambda {arg}{colon} {body}, reverse=True)",
                self.var(Kind::List)
            ),
            3 => format!("add = lambda a, b{colon} a + b"),
            _ => format!(
                "{} = list(map(lambda {arg}{colon} {body}, {}))",
                self.fresh_name(Kind::List),
                self.var(Kind::List)
            ),
        };
        self.line(d, &text);
    }

    pub(super) fn open_assign_stmt(&mut self, d: usize) {
        let read = self.p(0.6);
        let q = self.quote();
        let (target, mode) = if read {
            let t = if self.p(0.5) {
                self.pick(READ_PATHS).to_owned()
            } else {
                format!("{q}{}{q}", self.pick(READ_FILES))
            };
            (t, 'r')
        } else {
            let t = if self.p(0.5) {
                self.pick(WRITE_PATHS).to_owned()
            } else {
                format!("{q}{}{q}", self.pick(WRITE_FILES))
            };
            (t, 'w')
        };
        let h = self.pick(FILE_HANDLES);
        let mq = self.quote();
        self.line(d, &format!("{h} = open({target}, {mq}{mode}{mq})"));
        if read {
            let v = self.pick(&["data", "content", "text", "lines"]);
            let m = if v == "lines" { "readlines" } else { "read" };
            self.line(d, &format!("{v} = {h}.{m}()"));
        } else {
            let s = self.str_expr();
            self.line(d, &format!("{h}.write({s})"));
        }
        if self.p(0.7) {
            self.line(d, &format!("{h}.close()"));
        }
    }

    fn flag_stmt(&mut self, d: usize) {
        let b = self.var(Kind::Bool);
        let v = self.pick(&["True", "False", "True"]);
        self.declare(&b, Kind::Bool);
        self.line(d, &format!("{b} = {v}"));
    }

    /// `NAME = [[1, 2], [3, 4]]` and friends (see [`Self::depth_list_lit`]), on one line.
    pub(super) fn depth_list_stmt(&mut self, d: usize) {
        let lit = self.depth_list_lit();
        let text = match self.r.weighted(&[85, 6, 5, 4]) {
            1 if self.in_func => format!("return {lit}"),
            2 if self.in_method => {
                let a = self.pick(&["items", "data", "grid", "values", "rows", "board"]);
                format!("self.{a} = {lit}")
            }
            3 => format!("{} = {lit}", self.pick(LIST_STMT_NAMES).to_uppercase()),
            _ => {
                let name = self.pick(LIST_STMT_NAMES);
                self.declare(name, Kind::List);
                format!("{name} = {lit}")
            }
        };
        self.line(d, &text);
    }

    /// Dicts keyed by ints or names with mixed values, and lists of the same elements:
    /// `codes = {3: "red", 7: 12}` vs `codes = [3, "red", 7, 12]` / `codes = [3, 7, 11]`.
    pub(super) fn keyed_stmt(&mut self, d: usize) {
        let name = self.pick(&[
            "mapping",
            "lookup",
            "table",
            "codes",
            "weights",
            "config",
            "counts",
            "scores",
            "colors",
            "ids",
            "ranks",
            "labels",
            "levels",
            "ports",
            "limits",
            "record",
            "row",
            "slots",
            "sizes",
            "priorities",
        ]);
        let n = self.r.urange(1, 6);
        let keys: Vec<String> = if self.p(0.65) {
            let start = self.r.range(0, 12);
            let step = if self.p(0.7) {
                self.r.range(1, 5)
            } else {
                self.r.range(5, 100)
            };
            (0..n as i64).map(|i| (start + i * step).to_string()).collect()
        } else {
            let mut ks: Vec<String> = Vec::new();
            while ks.len() < n {
                let k = self.pick(INT_NAMES).to_owned();
                if !ks.contains(&k) {
                    ks.push(k);
                }
            }
            ks
        };
        let dq = self.p(0.75);
        let vals: Vec<String> = (0..n)
            .map(|_| match self.r.weighted(&[35, 35, 20, 10]) {
                0 => self.int_lit(),
                1 => {
                    let w = self.pick(WORDS);
                    if dq {
                        format!("\"{w}\"")
                    } else {
                        format!("'{w}'")
                    }
                }
                2 => self.pick(&["True", "False", "None"]).to_owned(),
                _ => self.float_lit(),
            })
            .collect();
        let lit = match self.r.weighted(&[55, 25, 20]) {
            0 => {
                let parts: Vec<String> = keys.iter().zip(&vals).map(|(k, v)| format!("{k}: {v}")).collect();
                self.declare(name, Kind::Dict);
                format!("{{{}}}", parts.join(", "))
            }
            1 => {
                let parts: Vec<String> = keys.iter().zip(&vals).map(|(k, v)| format!("{k}, {v}")).collect();
                format!("[{}]", parts.join(", "))
            }
            _ => format!("[{}]", keys.join(", ")),
        };
        self.line(d, &format!("{name} = {lit}"));
    }

    /// `a, b = b, a` with either name first, sometimes guarded by a comparison.
    fn swap_pair_stmt(&mut self, d: usize) {
        let (mut a, mut b) = *self.r.pick(SWAP_PAIRS);
        if self.p(0.4) {
            std::mem::swap(&mut a, &mut b);
        }
        if d < MAX_DEPTH && self.p(0.5) {
            let op = self.pick(&[">", "<", ">", ">="]);
            self.line(d, &format!("if {a} {op} {b}:"));
            self.line(d + 1, &format!("{a}, {b} = {b}, {a}"));
        } else {
            self.line(d, &format!("{a}, {b} = {b}, {a}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::check::{assert_well_formed, samples};

    fn is_name(s: &str) -> bool {
        let mut c = s.chars();
        c.next().is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
            && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
    }

    /// Simple statements stay at their depth and open no block, except a swap guarded by a comparison, whose
    /// body is the one swap.
    #[test]
    fn simple_statements_open_no_block() {
        for d in [0, 2, 4] {
            for lines in assert_well_formed(&samples(500, d, |g, d| g.simple_stmt(d)), d) {
                let mut rest = lines.iter();
                while let Some(l) = rest.next() {
                    assert_eq!(l.indent, 4 * d, "{l:?}");
                    if l.opens_block {
                        assert!(l.text.starts_with("if "), "{l:?}");
                        let body = rest.next().expect("a body");
                        assert!(body.indent == 4 * d + 4 && body.text.contains(" = "), "{body:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn assignments_bind_a_name() {
        for lines in assert_well_formed(&samples(300, 1, |g, d| g.assign_stmt(d)), 1) {
            let (name, value) = lines[0].text.split_once(" = ").expect("an assignment");
            assert!(is_name(name) && !value.is_empty(), "{}", lines[0].text);
        }
    }

    #[test]
    fn augmented_assignments_use_an_operator() {
        for lines in assert_well_formed(&samples(300, 1, |g, d| g.aug_stmt(d)), 1) {
            let t = &lines[0].text;
            assert!([" += ", " -= ", " *= "].iter().any(|op| t.contains(op)), "{t}");
        }
    }

    /// A swap has as many targets as values.
    #[test]
    fn swaps_pair_targets_with_values() {
        let samples = samples(
            300,
            0,
            |g, d| {
                if g.p(0.5) {
                    g.swap_stmt(d)
                } else {
                    g.swap_pair_stmt(d)
                }
            },
        );
        for lines in assert_well_formed(&samples, 0) {
            let swap = lines
                .iter()
                .find(|l| l.text.contains(", ") && l.text.contains(" = "))
                .expect("a swap");
            let (lhs, rhs) = swap.text.split_once(" = ").expect("an assignment");
            assert_eq!(lhs.matches(", ").count(), 1, "{}", swap.text);
            assert!(rhs.contains(", "), "{}", swap.text);
        }
    }

    #[test]
    fn lambdas_have_parameters_and_a_body() {
        for lines in assert_well_formed(&samples(300, 0, |g, d| g.lambda_stmt(d)), 0) {
            let t = &lines[0].text;
            let after = t.split_once("lambda ").expect("a lambda").1;
            let (params, body) = after.split_once(':').expect("a lambda's colon");
            assert!(!params.trim().is_empty() && !body.trim().is_empty(), "{t}");
        }
    }

    #[test]
    fn list_and_keyed_statements_are_well_formed() {
        assert_well_formed(&samples(300, 0, |g, d| g.list_stmt(d)), 0);
        assert_well_formed(&samples(300, 1, |g, d| g.depth_list_stmt(d)), 1);
        assert_well_formed(&samples(300, 1, |g, d| g.keyed_stmt(d)), 1);
        assert_well_formed(&samples(300, 1, |g, d| g.call_stmt(d)), 1);
        assert_well_formed(&samples(300, 1, |g, d| g.ternary_stmt(d)), 1);
        assert_well_formed(&samples(300, 1, |g, d| g.open_assign_stmt(d)), 1);
        assert_well_formed(&samples(300, 1, |g, d| g.flag_stmt(d)), 1);
    }

    #[test]
    fn comments_are_comments() {
        for s in samples(100, 1, |g, d| g.comment_stmt(d)) {
            assert!(s.lines().all(|l| l.trim_start().starts_with('#')), "{s}");
        }
    }
}
