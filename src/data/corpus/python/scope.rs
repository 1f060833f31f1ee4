//! Names and scope: the variables in scope with their kinds, and plausible names for new ones.

use super::vocab::{BOOL_NAMES, DICT_NAMES, INT_NAMES, OBJECTS, PAIRS, SET_NAMES, STR_NAMES, VERBS};
use super::{Gen, Kind};

impl Gen {
    pub(super) fn declare(&mut self, name: &str, kind: Kind) {
        if !self.vars.iter().any(|(n, k)| n == name && *k == kind) {
            self.vars.push((name.to_owned(), kind));
        }
    }

    pub(super) fn fresh_name(&mut self, kind: Kind) -> String {
        match kind {
            Kind::Int => self.pick(INT_NAMES).to_owned(),
            Kind::Str => self.pick(STR_NAMES).to_owned(),
            Kind::Bool => self.pick(BOOL_NAMES).to_owned(),
            Kind::List => self.r.pick(PAIRS).0.to_owned(),
            Kind::Dict => self.pick(DICT_NAMES).to_owned(),
            Kind::Set => self.pick(SET_NAMES).to_owned(),
        }
    }

    /// A variable of the kind: one in scope (usually), else a plausible fresh name.
    pub(super) fn var(&mut self, kind: Kind) -> String {
        let in_scope: Vec<usize> = (0..self.vars.len()).filter(|&i| self.vars[i].1 == kind).collect();
        if !in_scope.is_empty() && self.p(0.75) {
            let i = *self.r.pick(&in_scope);
            return self.vars[i].0.clone();
        }
        self.fresh_name(kind)
    }

    /// A collection name and its element name.
    pub(super) fn collection(&mut self) -> (String, String) {
        let lists: Vec<String> = self
            .vars
            .iter()
            .filter(|(_, k)| *k == Kind::List)
            .map(|(n, _)| n.clone())
            .collect();
        if !lists.is_empty() && self.p(0.6) {
            let name = self.r.pick(&lists).clone();
            let bare = name.trim_start_matches("self.");
            let elem = PAIRS
                .iter()
                .find(|(p, _)| *p == bare)
                .map(|(_, s)| (*s).to_owned())
                .unwrap_or_else(|| if self.r.chance(0.5) { "x".into() } else { "item".into() });
            return (name, elem);
        }
        let (p, s) = *self.r.pick(PAIRS);
        (p.to_owned(), s.to_owned())
    }

    pub(super) fn func_name(&mut self) -> String {
        let v = self.pick(VERBS);
        let o = self.pick(OBJECTS);
        if self.p(0.1) {
            format!("_{v}_{o}")
        } else {
            format!("{v}_{o}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::check::gen;
    use super::Kind;

    fn is_name(s: &str) -> bool {
        let mut c = s.chars();
        c.next().is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
            && c.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
    }

    /// Names in scope are found again; fresh ones are identifiers (attributes with `self.` in methods).
    #[test]
    fn variables_are_names_in_scope_or_identifiers() {
        for seed in 0..200 {
            let mut g = gen(seed, true);
            g.declare("total", Kind::Int);
            let mut seen = false;
            for _ in 0..20 {
                let v = g.var(Kind::Int);
                assert!(is_name(&v), "{v}");
                seen |= v == "total";
            }
            assert!(seen, "seed {seed}: `total` never picked from scope");
            let (many, one) = g.collection();
            assert!(is_name(&many) && is_name(&one) && many != one, "{many} {one}");
            let f = g.func_name();
            assert!(is_name(&f), "{f}");
        }
    }
}
