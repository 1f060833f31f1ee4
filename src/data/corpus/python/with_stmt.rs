//! `with open(...) as f:` blocks that read or write a file.

use super::vocab::{FILE_HANDLES, READ_FILES, READ_PATHS, WRITE_FILES, WRITE_PATHS};
use super::{Gen, Kind, MAX_DEPTH};

impl Gen {
    /// `with open(path, 'r') as f:` / `with open(path, 'w') as f:`, the path's name implying the mode.
    pub(super) fn with_open(&mut self, d: usize, read: bool) {
        let q = self.quote();
        let target = if self.p(0.55) {
            self.pick(if read { READ_PATHS } else { WRITE_PATHS }).to_owned()
        } else {
            format!("{q}{}{q}", self.pick(if read { READ_FILES } else { WRITE_FILES }))
        };
        let h = self.pick(FILE_HANDLES);
        let mq = if self.p(0.6) { '\'' } else { '"' };
        let mode = if read {
            if self.p(0.12) {
                String::new()
            } else {
                format!(", {mq}r{mq}")
            }
        } else if self.p(0.08) {
            format!(", {mq}a{mq}")
        } else {
            format!(", {mq}w{mq}")
        };
        let enc = if self.p(0.1) { ", encoding=\"utf-8\"" } else { "" };
        self.line(d, &format!("with open({target}{mode}{enc}) as {h}:"));
        let b = d + 1;
        if read {
            match self.r.below(4) {
                0 => {
                    let v = self.pick(&["data", "content", "text", "raw", "source"]);
                    self.line(b, &format!("{v} = {h}.read()"));
                    self.declare(v, Kind::Str);
                }
                1 => {
                    self.line(b, &format!("lines = {h}.readlines()"));
                    self.declare("lines", Kind::List);
                }
                2 if b < MAX_DEPTH => {
                    self.line(b, &format!("for line in {h}:"));
                    self.line(b + 1, "line = line.strip()");
                    if b + 1 < MAX_DEPTH && self.p(0.5) {
                        self.line(b + 1, "if not line:");
                        self.line(b + 2, "continue");
                    }
                    let (coll, _) = self.collection();
                    self.line(b + 1, &format!("{coll}.append(line)"));
                }
                _ => {
                    let v = self.pick(&["config", "data", "settings", "records"]);
                    self.line(b, &format!("{v} = json.load({h})"));
                }
            }
        } else {
            match self.r.below(4) {
                0 => {
                    let s = self.str_expr();
                    self.line(b, &format!("{h}.write({s})"));
                }
                1 if b < MAX_DEPTH => {
                    let (coll, el) = self.collection();
                    self.line(b, &format!("for {el} in {coll}:"));
                    let q = self.quote();
                    self.line(b + 1, &format!("{h}.write(f{q}{{{el}}}\\n{q})"));
                }
                2 => {
                    let v = self.var(Kind::Dict);
                    self.line(b, &format!("json.dump({v}, {h}, indent=2)"));
                }
                _ => {
                    let l = self.var(Kind::List);
                    self.line(b, &format!("{h}.write(\"\\n\".join({l}))"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::check::{assert_well_formed, samples};

    #[test]
    fn with_blocks_open_a_file_as_a_name() {
        for read in [true, false] {
            for d in [0, 2] {
                for lines in assert_well_formed(&samples(300, d, |g, d| g.with_open(d, read)), d) {
                    let h = lines
                        .iter()
                        .find(|l| l.text.starts_with("with "))
                        .expect("a with statement");
                    assert!(h.indent == 4 * d && h.opens_block, "{h:?}");
                    assert!(h.text.contains("open(") && h.text.contains(" as "), "{}", h.text);
                }
            }
        }
    }
}
