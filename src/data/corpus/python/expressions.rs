//! Expressions of each kind, and conditions.

use super::{Gen, Kind};

impl Gen {
    pub(super) fn int_expr(&mut self) -> String {
        match self.r.weighted(&[25, 20, 10, 10, 8, 8, 6, 6, 7]) {
            0 => self.int_lit(),
            1 => self.var(Kind::Int),
            2 => format!("len({})", self.var(Kind::List)),
            3 => {
                let a = self.var(Kind::Int);
                let op = self.pick(&["+", "-", "*", "//", "%"]);
                let b = if self.p(0.5) {
                    self.int_lit()
                } else {
                    self.var(Kind::Int)
                };
                format!("{a} {op} {b}")
            }
            4 => {
                let f = self.pick(&["max", "min"]);
                format!("{f}({}, {})", self.var(Kind::Int), self.int_expr_simple())
            }
            5 => format!("sum({})", self.var(Kind::List)),
            6 => {
                let (a, b) = (self.var(Kind::Int), self.var(Kind::Int));
                format!("({a} + {b}) // 2")
            }
            7 => format!("{}[{}]", self.var(Kind::List), self.int_expr_simple()),
            _ => format!("{}.get({}, 0)", self.var(Kind::Dict), self.str_lit()),
        }
    }

    pub(super) fn int_expr_simple(&mut self) -> String {
        if self.p(0.5) {
            self.int_lit()
        } else {
            self.var(Kind::Int)
        }
    }

    pub(super) fn str_expr(&mut self) -> String {
        match self.r.weighted(&[35, 15, 10, 8, 10, 8, 7, 7]) {
            0 => self.str_lit(),
            1 => self.var(Kind::Str),
            2 => format!("{}.strip()", self.var(Kind::Str)),
            3 => format!("{}.join({})", self.str_lit(), self.var(Kind::List)),
            4 => self.fstring(),
            5 => format!("str({})", self.var(Kind::Int)),
            6 => {
                let m = self.pick(&["lower", "upper", "title", "strip"]);
                format!("{}.{m}()", self.var(Kind::Str))
            }
            _ => format!("{} + {}", self.var(Kind::Str), self.str_lit()),
        }
    }

    fn bool_expr(&mut self) -> String {
        match self.r.below(4) {
            0 => self.pick(&["True", "False"]).to_owned(),
            _ => self.cond(),
        }
    }

    fn list_expr(&mut self) -> String {
        match self.r.weighted(&[25, 20, 12, 10, 10, 10, 13]) {
            0 => self.any_list_lit(),
            1 => self.var(Kind::List),
            2 => format!("sorted({})", self.var(Kind::List)),
            3 => format!("list(range({}))", self.int_expr_simple()),
            4 => format!(
                "{}.split({})",
                self.var(Kind::Str),
                self.pick(&["", "\",\"", "' '", "\"\\n\""])
            ),
            5 => "[]".to_owned(),
            _ => self.comprehension(),
        }
    }

    pub(super) fn comprehension(&mut self) -> String {
        let (coll, el) = self.collection();
        match self.r.below(5) {
            0 => format!("[{el} * 2 for {el} in {coll}]"),
            1 => format!("[{el} for {el} in {coll} if {el}]"),
            2 => format!("[{el} for {el} in {coll} if {el} != {}]", self.int_lit()),
            3 => format!("[str({el}) for {el} in {coll}]"),
            _ => format!("[{el}.strip() for {el} in {coll}]"),
        }
    }

    pub(super) fn expr(&mut self, kind: Kind) -> String {
        match kind {
            Kind::Int => self.int_expr(),
            Kind::Str => self.str_expr(),
            Kind::Bool => self.bool_expr(),
            Kind::List => self.list_expr(),
            Kind::Dict => {
                if self.p(0.6) {
                    self.dict_lit(4)
                } else {
                    "{}".to_owned()
                }
            }
            Kind::Set => {
                if self.p(0.5) {
                    self.set_lit()
                } else {
                    "set()".to_owned()
                }
            }
        }
    }

    /// A condition for `if`/`elif`/`while`.
    pub(super) fn cond(&mut self) -> String {
        let c = match self.r.weighted(&[14, 14, 10, 8, 8, 8, 7, 6, 5, 5, 5, 4, 4]) {
            0 => {
                let op = self.pick(&["<", ">", "<=", ">=", "==", "!=", "=="]);
                format!("{} {op} {}", self.var(Kind::Int), self.int_expr_simple())
            }
            1 => {
                let a = self.var(Kind::Int);
                let mut b = self.var(Kind::Int);
                if b == a {
                    b = self.int_lit();
                }
                format!("{a} == {b}")
            }
            2 => {
                let op = self.pick(&["==", "==", "!="]);
                format!("{} {op} {}", self.var(Kind::Str), self.str_lit())
            }
            3 => match self.r.below(3) {
                0 => format!("not {}", self.var(Kind::List)),
                1 => format!("len({}) == 0", self.var(Kind::List)),
                _ => format!("len({}) > {}", self.var(Kind::List), self.int_expr_simple()),
            },
            4 => {
                let (coll, el) = self.collection();
                let op = self.pick(&["in", "not in"]);
                let target = if self.p(0.5) { self.var(Kind::Set) } else { coll };
                format!("{el} {op} {target}")
            }
            5 => {
                let b = self.var(Kind::Bool);
                match self.r.below(6) {
                    0 | 1 => b,
                    2 => format!("not {b}"),
                    3 => format!("{b} == True"),
                    4 => format!("{b} == False"),
                    _ => format!("{b} is True"),
                }
            }
            6 => {
                let op = self.pick(&["is None", "is not None"]);
                format!("{} {op}", self.var(Kind::Int))
            }
            7 => format!("{} % 2 == 0", self.var(Kind::Int)),
            8 => {
                let t = self.pick(&["int", "str", "list", "dict", "float"]);
                format!("isinstance({}, {t})", self.var(Kind::Int))
            }
            9 => {
                let m = self.pick(&["startswith", "endswith"]);
                format!("{}.{m}({})", self.var(Kind::Str), self.str_lit())
            }
            10 => format!("{} in {}", self.str_lit(), self.var(Kind::Dict)),
            11 => format!("{} == {}", self.var(Kind::Str), self.var(Kind::Str)),
            _ => format!(
                "{}[{}] == {}",
                self.var(Kind::List),
                self.var(Kind::Int),
                self.int_lit()
            ),
        };
        if self.p(0.08) {
            let op = self.pick(&["and", "or"]);
            let rhs = self.cond_simple();
            format!("{c} {op} {rhs}")
        } else {
            c
        }
    }

    fn cond_simple(&mut self) -> String {
        let op = self.pick(&["<", ">", "==", "!="]);
        format!("{} {op} {}", self.var(Kind::Int), self.int_lit())
    }

    /// A simple condition like the ones programs test most: `x > 5`, `x is None`, `not x`, `len(xs) > 3`.
    pub(super) fn simple_cond(&mut self) -> String {
        let x = self.var(Kind::Int);
        match self.r.below(7) {
            0 => format!("{x} > {}", self.int_lit()),
            1 => format!("{x} is None"),
            2 => format!("not {x}"),
            3 => format!("{x} == {}", self.int_lit()),
            4 => format!("len({}) > {}", self.var(Kind::List), self.r.range(0, 10)),
            5 => format!("{x} < {}", self.var(Kind::Int)),
            _ => format!("{x} is not None"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::check::{samples, well_formed};
    use super::{Gen, Kind};

    fn texts(make: impl Fn(&mut Gen) -> String) -> Vec<String> {
        samples(400, 0, |g, _| {
            let v = make(g);
            g.out = v;
        })
    }

    #[test]
    fn expressions_of_every_kind_are_well_formed() {
        for kind in [Kind::Int, Kind::Str, Kind::List, Kind::Dict, Kind::Set, Kind::Bool] {
            for e in texts(|g| g.expr(kind)) {
                well_formed(&format!("x = {e}\n"), 0).unwrap_or_else(|err| panic!("{kind:?}: {err}: {e}"));
            }
        }
    }

    #[test]
    fn conditions_head_an_if() {
        for make in [Gen::cond, Gen::cond_simple, Gen::simple_cond] {
            for c in texts(make) {
                let code = format!("if {c}:\n    pass\n");
                let lines = well_formed(&code, 0).unwrap_or_else(|e| panic!("{e}: {code}"));
                assert!(lines[0].opens_block && !c.is_empty(), "{code}");
            }
        }
    }

    #[test]
    fn comprehensions_have_a_for_clause() {
        for c in texts(Gen::comprehension) {
            well_formed(&format!("x = {c}\n"), 0).unwrap_or_else(|e| panic!("{e}: {c}"));
            assert!(c.contains(" for ") && c.contains(" in "), "{c}");
        }
    }
}
