//! `if` / `elif` / `else` statements.

use super::{Gen, Kind};

impl Gen {
    pub(super) fn if_stmt(&mut self, d: usize) {
        let c = self.cond();
        self.line(d, &format!("if {c}:"));
        self.branch_body(d + 1);
        let elifs = match self.r.weighted(&[60, 30, 10]) {
            0 => 0,
            1 => 1,
            _ => 2,
        };
        for _ in 0..elifs {
            let c = self.cond();
            self.line(d, &format!("elif {c}:"));
            self.branch_body(d + 1);
        }
        if self.p(if elifs > 0 { 0.6 } else { 0.4 }) {
            self.line(d, "else:");
            self.branch_body(d + 1);
        }
    }

    /// The body of an `if` branch: sometimes a single `return`/`break`/`continue`/assignment.
    fn branch_body(&mut self, d: usize) {
        let r = self.r.below(10);
        if r == 9 && self.p(0.5) {
            self.message_stmt(d);
        } else if self.in_func && r < 2 {
            self.return_stmt(d);
        } else if self.loops > 0 && r < 3 {
            let s = self.pick(&["break", "continue", "break"]);
            self.line(d, s);
        } else {
            let n = self.body_len(d);
            self.block(d, n);
        }
    }

    /// `if flag == True :` / `if flag == True:` / `flag = True` styles (the var_if task).
    pub(super) fn var_if(&mut self, d: usize) {
        let b = self.var(Kind::Bool);
        let v = self.pick(&["True", "False", "True"]);
        let sp = if self.p(0.5) { " :" } else { ":" };
        match self.r.below(3) {
            0 => {
                self.declare(&b, Kind::Bool);
                self.line(d, &format!("{b} = {v}"));
            }
            _ => {
                self.line(d, &format!("if {b} == {v}{sp}"));
                self.branch_body(d + 1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::check::{assert_well_formed, samples};

    /// An `if` opens a block at its depth, and every other statement at that depth is an `elif` or `else` of
    /// it.
    #[test]
    fn if_statements_have_branches_with_bodies() {
        for d in [0, 2] {
            for lines in assert_well_formed(&samples(300, d, |g, d| g.if_stmt(d)), d) {
                let heads: Vec<_> = lines.iter().filter(|l| l.indent == 4 * d).collect();
                assert!(heads[0].text.starts_with("if ") && heads[0].opens_block, "{heads:?}");
                for h in &heads[1..] {
                    let is_branch = h.text.starts_with("elif ") || h.text.starts_with("else");
                    assert!(is_branch && h.opens_block, "{h:?}");
                }
            }
        }
    }

    #[test]
    fn flag_tests_are_ifs_or_assignments() {
        for lines in assert_well_formed(&samples(300, 1, |g, d| g.var_if(d)), 1) {
            let t = &lines[0].text;
            assert!(t.starts_with("if ") && lines[0].opens_block || t.contains(" = "), "{t}");
        }
    }
}
