//! Loops: `for` over ranges, collections, `enumerate`, `.items()` and `zip`, `while` loops, and the accumulator
//! pattern (an empty set or string filled in a loop).

use super::vocab::{ACC_NAMES, WHILE_NAMES};
use super::{Gen, Kind, MAX_DEPTH};

impl Gen {
    fn range_args(&mut self) -> String {
        match self.r.weighted(&[25, 25, 12, 10, 10, 10, 8]) {
            0 => self.var(Kind::Int),
            1 => format!("len({})", self.var(Kind::List)),
            2 => format!("1, {} + 1", self.var(Kind::Int)),
            3 => self.r.range(2, 20).to_string(),
            4 => format!("{}, {}", self.var(Kind::Int), self.var(Kind::Int)),
            5 => format!("0, {}, {}", self.var(Kind::Int), self.r.range(2, 4)),
            _ => format!("{} - 1", self.var(Kind::Int)),
        }
    }

    fn loop_body(&mut self, d: usize, vars: &[(&str, Kind)]) {
        let mark = self.vars.len();
        for (n, k) in vars {
            self.vars.push(((*n).to_owned(), *k));
        }
        self.loops += 1;
        let n = self.body_len(d);
        self.block(d, n);
        self.loops -= 1;
        self.vars.truncate(mark);
    }

    pub(super) fn for_range(&mut self, d: usize) {
        let i = self.pick(&[
            "i", "i", "i", "j", "k", "n", "step", "idx", "_", "row", "col", "attempt",
        ]);
        let args = self.range_args();
        self.line(d, &format!("for {i} in range({args}):"));
        self.loop_body(d + 1, &[(i, Kind::Int)]);
    }

    pub(super) fn for_enumerate(&mut self, d: usize) {
        let (coll, el) = self.collection();
        let i = self.pick(&["i", "i", "i", "idx", "index", "n", "pos", "lineno", "j", "k"]);
        let start = if self.p(0.15) { ", 1" } else { "" };
        if self.p(0.1) {
            self.line(d, &format!("for {i}, (a, b) in enumerate({coll}{start}):"));
            self.loop_body(d + 1, &[(i, Kind::Int), ("a", Kind::Int), ("b", Kind::Int)]);
        } else {
            self.line(d, &format!("for {i}, {el} in enumerate({coll}{start}):"));
            let el = el.clone();
            self.loop_body(d + 1, &[(i, Kind::Int), (el.as_str(), Kind::Int)]);
        }
    }

    pub(super) fn for_in(&mut self, d: usize) {
        let (coll, el) = self.collection();
        let (header, el) = match self.r.weighted(&[60, 10, 10, 10, 10]) {
            0 => (format!("for {el} in {coll}:"), el),
            1 => {
                let s = self.var(Kind::Str);
                (format!("for ch in {s}:"), "ch".to_owned())
            }
            2 => (format!("for {el} in sorted({coll}):"), el),
            3 => {
                let s = self.var(Kind::Str);
                (format!("for word in {s}.split():"), "word".to_owned())
            }
            _ => {
                let dct = self.var(Kind::Dict);
                (format!("for key in {dct}:"), "key".to_owned())
            }
        };
        self.line(d, &header);
        let kind = if el == "ch" || el == "word" || el == "key" {
            Kind::Str
        } else {
            Kind::Int
        };
        self.loop_body(d + 1, &[(el.as_str(), kind)]);
    }

    pub(super) fn for_items(&mut self, d: usize) {
        let dct = self.var(Kind::Dict);
        let (k, v) = *self
            .r
            .pick(&[("key", "value"), ("k", "v"), ("name", "count"), ("word", "freq")]);
        self.line(d, &format!("for {k}, {v} in {dct}.items():"));
        self.loop_body(d + 1, &[(k, Kind::Str), (v, Kind::Int)]);
    }

    pub(super) fn for_zip(&mut self, d: usize) {
        let (a, b) = (self.var(Kind::List), self.var(Kind::List));
        self.line(d, &format!("for x, y in zip({a}, {b}):"));
        self.loop_body(d + 1, &[("x", Kind::Int), ("y", Kind::Int)]);
    }

    pub(super) fn while_cond(&mut self, d: usize) {
        if d + 2 > MAX_DEPTH {
            let c = self.cond();
            self.line(d, &format!("while {c}:"));
            let s = self.pick(&["break", "pass"]);
            self.line(d + 1, s);
            return;
        }
        match self.r.below(6) {
            0 => {
                let i = self.pick(&["i", "j", "count", "n", "pos", "idx"]);
                self.line(d, &format!("{i} = 0"));
                let lim = if self.p(0.5) {
                    format!("len({})", self.var(Kind::List))
                } else {
                    self.var(Kind::Int)
                };
                self.line(d, &format!("while {i} < {lim}:"));
                self.loops += 1;
                let n = self.body_len(d + 1);
                self.block(d + 1, n);
                self.loops -= 1;
                self.line(d + 1, &format!("{i} += 1"));
            }
            1 => {
                let q = self.pick(&["queue", "stack", "todo", "pending", "frontier", "heap"]);
                self.line(d, &format!("while {q}:"));
                let m = if q == "stack" { "pop()" } else { "pop(0)" };
                let el = self.pick(&["node", "item", "current", "task", "x"]);
                self.line(d + 1, &format!("{el} = {q}.{m}"));
                self.loop_body(d + 1, &[(el, Kind::Int)]);
            }
            2 => {
                let b = self.pick(&["running", "done", "active", "changed", "ok", "searching"]);
                let neg = b == "done";
                self.line(d, &format!("{b} = {}", if neg { "False" } else { "True" }));
                self.line(d, &format!("while {}{b}:", if neg { "not " } else { "" }));
                self.loops += 1;
                let n = self.body_len(d + 1);
                self.block(d + 1, n);
                let c = self.cond();
                self.line(d + 1, &format!("if {c}:"));
                self.line(d + 2, &format!("{b} = {}", if neg { "True" } else { "False" }));
                self.loops -= 1;
            }
            3 => {
                let v = self.var(Kind::Int);
                self.line(d, &format!("while {v} > 0:"));
                self.loops += 1;
                let n = self.body_len(d + 1);
                self.block(d + 1, n);
                self.line(d + 1, &format!("{v} -= 1"));
                self.loops -= 1;
            }
            4 => {
                self.line(d, "while node is not None:");
                self.loops += 1;
                let n = self.body_len(d + 1);
                self.block(d + 1, n);
                self.line(d + 1, "node = node.next");
                self.loops -= 1;
            }
            _ => {
                let c = self.cond();
                self.line(d, &format!("while {c}:"));
                self.loop_body(d + 1, &[]);
            }
        }
    }

    pub(super) fn while_true(&mut self, d: usize) {
        if d + 2 > MAX_DEPTH {
            self.line(d, "while True:");
            self.line(d + 1, "break");
            return;
        }
        self.line(d, "while True:");
        self.loops += 1;
        match self.r.below(3) {
            0 => {
                let v = self.pick(&["line", "command", "answer", "choice", "text"]);
                let prompt = self.str_lit();
                self.line(d + 1, &format!("{v} = input({prompt})"));
                let q = self.quote();
                let stop = self.pick(&["q", "quit", "exit", "", "done", "stop"]);
                self.line(d + 1, &format!("if {v} == {q}{stop}{q}:"));
                self.line(d + 2, "break");
            }
            1 => {
                let n = self.body_len(d + 1);
                self.block(d + 1, n);
                let c = self.cond();
                self.line(d + 1, &format!("if {c}:"));
                if self.in_func && self.p(0.4) {
                    self.return_stmt(d + 2);
                } else {
                    self.line(d + 2, "break");
                }
            }
            _ => {
                let c = self.cond();
                self.line(d + 1, &format!("if {c}:"));
                self.line(d + 2, "break");
                let n = self.body_len(d + 1);
                self.block(d + 1, n);
            }
        }
        self.loops -= 1;
    }

    /// `while NAME:` loops over a value rebound in the body (`while node:` ... `node = node.next`).
    pub(super) fn while_name(&mut self, d: usize) {
        let (name, rebind) = *self.r.pick(WHILE_NAMES);
        if self.p(0.5) {
            let init = if rebind.starts_with(&format!("{name} = {name}.")) {
                self.pick(&["head", "self.head", "root", "start", "first"]).to_owned()
            } else if let Some(rhs) = rebind.strip_prefix(&format!("{name} = ")) {
                rhs.split(" if ").next().unwrap_or(rhs).to_owned()
            } else {
                self.expr(Kind::Int)
            };
            self.line(d, &format!("{name} = {init}"));
        }
        self.line(d, &format!("while {name}:"));
        if d + 1 < MAX_DEPTH {
            self.loops += 1;
            self.vars.push((name.to_owned(), Kind::Int));
            let n = self.body_len(d + 1);
            self.block(d + 1, n);
            self.vars.pop();
            self.loops -= 1;
        }
        self.line(d + 1, rebind);
    }

    /// A `set()` or `""` accumulator, filled later with `.add(...)` or `+= ...` (set_or_string tasks).
    /// Returns the accumulator's name and whether it was returned.
    pub(super) fn accumulator(&mut self, d: usize) -> (String, bool) {
        let is_set = self.p(0.5);
        let name = if self.p(0.45) { "current" } else { self.pick(ACC_NAMES) };
        let init = if is_set {
            "set()"
        } else if self.p(0.65) {
            "\"\""
        } else {
            "''"
        };
        self.line(d, &format!("{name} = {init}"));
        // Sometimes a statement or two between initialisation and use.
        if self.p(0.3) {
            self.assign_stmt(d);
        }
        if d + 1 >= MAX_DEPTH || self.p(0.15) {
            // Straight-line use.
            if is_set {
                let e = self.expr(Kind::Int);
                self.line(d, &format!("{name}.add({e})"));
            } else {
                let e = self.str_expr();
                self.line(d, &format!("{name} += {e}"));
            }
            return (name.to_owned(), false);
        }
        let (coll, el) = if is_set {
            self.collection()
        } else if self.p(0.5) {
            (self.var(Kind::Str), "ch".to_owned())
        } else {
            let (c, e) = self.collection();
            (c, e)
        };
        self.line(d, &format!("for {el} in {coll}:"));
        let filt = d + 2 < MAX_DEPTH && self.p(0.5);
        let b = if filt {
            let c = match self.r.below(5) {
                0 => format!("{el} not in {name}"),
                1 => format!("{el}.isalpha()"),
                2 => format!("{el} != {}", self.str_lit()),
                3 => format!("{el} > {}", self.int_lit()),
                _ => self.cond(),
            };
            self.line(d + 1, &format!("if {c}:"));
            d + 2
        } else {
            d + 1
        };
        let value = match self.r.below(4) {
            0 => format!("{el}.lower()"),
            1 if !is_set => format!("{el} + {}", self.str_lit()),
            2 if !is_set => format!("str({el})"),
            _ => el.clone(),
        };
        if is_set {
            self.line(b, &format!("{name}.add({value})"));
        } else {
            self.line(b, &format!("{name} += {value}"));
        }
        self.declare(name, if is_set { Kind::Set } else { Kind::Str });
        if self.in_func && self.p(0.4) {
            self.line(d, &format!("return {name}"));
            return (name.to_owned(), true);
        } else if self.p(0.3) {
            self.line(d, &format!("print(len({name}))"));
        }
        (name.to_owned(), false)
    }
}

#[cfg(test)]
mod tests {
    use super::super::check::{assert_well_formed, samples, Logical};
    use super::Gen;

    /// Writes one statement of a kind at a depth.
    type Make = fn(&mut Gen, usize);

    /// The loop header of each sample: the first line at the sample's depth that opens a block.
    fn headers(make: Make, d: usize) -> Vec<String> {
        assert_well_formed(&samples(300, d, make), d)
            .into_iter()
            .map(|lines: Vec<Logical>| {
                let h = lines.iter().find(|l| l.indent == 4 * d && l.opens_block);
                h.unwrap_or_else(|| panic!("no loop in {lines:?}")).text.clone()
            })
            .collect()
    }

    #[test]
    fn for_loops_iterate_over_what_their_kind_says() {
        let kinds: [(Make, &str); 5] = [
            (Gen::for_range, "range("),
            (Gen::for_enumerate, "enumerate("),
            (Gen::for_in, " in "),
            (Gen::for_items, ".items()"),
            (Gen::for_zip, "zip("),
        ];
        for (make, what) in kinds {
            for d in [0, 2] {
                for h in headers(make, d) {
                    assert!(h.starts_with("for ") && h.contains(" in ") && h.contains(what), "{h}");
                }
            }
        }
    }

    #[test]
    fn while_loops_have_a_condition() {
        for make in [Gen::while_cond, Gen::while_true, Gen::while_name] {
            for h in headers(make, 1) {
                assert!(h.starts_with("while ") && h.len() > "while :".len(), "{h}");
            }
        }
    }

    /// An accumulator starts empty and is then filled.
    #[test]
    fn accumulators_start_empty() {
        let samples = samples(300, 1, |g, d| {
            g.accumulator(d);
        });
        for lines in assert_well_formed(&samples, 1) {
            let (name, init) = lines[0].text.split_once(" = ").expect("an initialisation");
            assert!(["set()", "\"\"", "''"].contains(&init), "{}", lines[0].text);
            assert!(
                lines[1..].iter().any(|l| l.text.contains(name)),
                "{name} unused in {lines:?}"
            );
        }
    }
}
