//! Class definitions: bases, class attributes, `__init__` and methods.

use super::vocab::{ATTRS, BASES, CLASSES};
use super::{Gen, Kind};

impl Gen {
    pub(super) fn class(&mut self) {
        let name = self.pick(CLASSES);
        let header = match self.r.weighted(&[60, 25, 15]) {
            0 => format!("class {name}:"),
            1 => format!("class {name}({}):", self.pick(BASES)),
            _ => format!("class {name}(object):"),
        };
        self.line(0, &header);
        if self.p(0.4) {
            self.docstring(1);
            if self.p(0.5) {
                self.blank();
            }
        }
        // __init__: `self.x = x` lines.
        let n_attrs = self.r.urange(1, 5);
        let mut attrs: Vec<(&str, Kind)> = Vec::new();
        for _ in 0..n_attrs {
            let a = *self.r.pick(ATTRS);
            if !attrs.iter().any(|(n, _)| *n == a.0) {
                attrs.push(a);
            }
        }
        let n_kw = if self.p(0.5) { self.r.urange(0, attrs.len()) } else { 0 };
        let n_pos = attrs.len() - n_kw;
        let mut ps = vec!["self".to_owned()];
        for (i, (a, k)) in attrs.iter().enumerate() {
            if i < n_pos {
                ps.push((*a).to_owned());
            } else {
                let default = match (self.r.below(3), k) {
                    (0, Kind::Int) => self.int_lit(),
                    (0, Kind::Str) => self.str_lit(),
                    (0, Kind::Bool) => "False".to_owned(),
                    _ => "None".to_owned(),
                };
                ps.push(format!("{a}={default}"));
            }
        }
        self.line(1, &format!("def __init__({}):", ps.join(", ")));
        if self.p(0.15) && header.contains('(') {
            self.line(2, "super().__init__()");
        }
        let saved = std::mem::take(&mut self.vars);
        // Assignments usually follow the parameters' order, sometimes not.
        let mut order = attrs.clone();
        if self.p(0.4) {
            for i in (1..order.len()).rev() {
                let j = self.r.below(i + 1);
                order.swap(i, j);
            }
        }
        for (a, k) in &order {
            let text = match self.r.weighted(&[85, 5, 5, 5]) {
                0 => format!("self.{a} = {a}"),
                1 if *k == Kind::List => format!("self.{a} = {a} or []"),
                2 if *k == Kind::List => format!("self.{a} = list({a})"),
                3 => format!("self.{a} = {a} if {a} is not None else {}", self.expr(*k)),
                _ => format!("self.{a} = {a}"),
            };
            self.line(2, &text);
            self.vars.push((format!("self.{a}"), *k));
        }
        for _ in 0..self.r.urange(0, 2) {
            let (a, init, k) = *self.r.pick(&[
                ("count", "0", Kind::Int),
                ("items", "[]", Kind::List),
                ("cache", "{}", Kind::Dict),
                ("seen", "set()", Kind::Set),
                ("buffer", "\"\"", Kind::Str),
                ("history", "[]", Kind::List),
                ("total", "0", Kind::Int),
                ("current", "set()", Kind::Set),
                ("current", "\"\"", Kind::Str),
            ]);
            if attrs.iter().any(|(n, _)| *n == a) {
                continue;
            }
            self.line(2, &format!("self.{a} = {init}"));
            self.vars.push((format!("self.{a}"), k));
        }
        // Methods.
        self.in_method = true;
        for _ in 0..self.r.urange(1, 3) {
            self.blank();
            self.function(1, true);
        }
        self.in_method = false;
        self.vars = saved;
    }
}

#[cfg(test)]
mod tests {
    use super::super::check::{assert_well_formed, samples};

    /// A class opens a block; its methods take `self` first.
    #[test]
    fn classes_have_a_body_and_methods_take_self() {
        for lines in assert_well_formed(&samples(300, 0, |g, _| g.class()), 0) {
            assert!(
                lines[0].text.starts_with("class ") && lines[0].opens_block,
                "{:?}",
                lines[0]
            );
            for def in lines.iter().filter(|l| l.indent == 4 && l.text.starts_with("def ")) {
                let params = def.text.split_once('(').expect("a parameter list").1;
                assert!(params.starts_with("self"), "{}", def.text);
            }
        }
    }
}
