//! The synthetic Python generator behind [`super::SyntheticCorpus`].
//!
//! A document is one module: an optional header (shebang, docstring), imports, constants, then functions,
//! classes and module-level "script" code, and sometimes a `__main__` guard. Statements come from weighted
//! templates chosen so that every construct the tasks of the reference paper (Table 1) contrast occurs
//! naturally and often (see the module docs of [`super`]). Indentation is 4 spaces, at most 4 levels deep.
//!
//! One file per statement kind (`simple`, `print`, `conditional`, `loops`, `with_stmt`, `try_stmt`, `function`,
//! `class`, `module`), with the literals, expressions, names and word lists they draw on in their own files;
//! each adds its methods to [`Gen`].

#[cfg(test)]
mod check;
mod class;
mod conditional;
mod expressions;
mod function;
mod literals;
mod loops;
mod module;
mod print;
mod scope;
mod simple;
mod try_stmt;
mod vocab;
mod with_stmt;

use super::rng::Rng;

/// Deepest indentation level of a statement (4 levels = 16 spaces).
const MAX_DEPTH: usize = 4;

/// Documents longer than this drop their last top-level item (when they have others).
const MAX_CHARS: usize = 2200;

/// What a variable holds, so that statements use names of the right kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Str,
    List,
    Dict,
    Set,
    Bool,
}

/// Generates document `index` of corpus `seed`.
pub(crate) fn generate(seed: u64, index: u64) -> String {
    let mut g = Gen {
        r: Rng::for_document(seed, index),
        out: String::with_capacity(2048),
        vars: Vec::new(),
        in_func: false,
        loops: 0,
        in_method: false,
    };
    g.document();
    g.out
}

/// The state of one document's generation; each file of this module adds the methods of one kind of
/// statement (or of what statements are made of).
struct Gen {
    r: Rng,
    /// The document so far.
    out: String,
    /// Names in scope and their kinds (loop variables are pushed and popped).
    vars: Vec<(String, Kind)>,
    /// Inside a function body (`return` is allowed).
    in_func: bool,
    /// Number of enclosing loops.
    loops: usize,
    /// Inside a method (`self.` attributes are in use).
    in_method: bool,
}

impl Gen {
    /// Writes `text` as one line indented `depth` levels.
    fn line(&mut self, depth: usize, text: &str) {
        for _ in 0..depth {
            self.out.push_str("    ");
        }
        self.out.push_str(text);
        self.out.push('\n');
    }

    /// Writes an empty line.
    fn blank(&mut self) {
        self.out.push('\n');
    }

    /// True with probability `prob`.
    fn p(&mut self, prob: f64) -> bool {
        self.r.chance(prob)
    }

    /// One of `xs`, uniformly.
    fn pick(&mut self, xs: &[&'static str]) -> &'static str {
        xs[self.r.below(xs.len())]
    }

    /// `n` statements at depth `d` (at least one); loop variables declared inside are dropped afterwards.
    fn block(&mut self, d: usize, n: usize) {
        let mark = self.vars.len();
        for i in 0..n.max(1) {
            if i > 0 && self.p(0.06) {
                self.blank();
            }
            self.stmt(d);
        }
        // Python scoping: names assigned in a block stay visible, but keep the scope small.
        if self.vars.len() > mark + 16 {
            self.vars.truncate(mark + 16);
        }
    }

    /// How many statements a block at depth `d` gets: fewer the deeper it is.
    fn body_len(&mut self, d: usize) -> usize {
        match d {
            0..=1 => self.r.urange(1, 3),
            2 => self.r.urange(1, 2),
            _ => 1 + usize::from(self.p(0.25)),
        }
    }

    /// One statement at depth `d`, simple or compound, by weights that shift toward simple ones with depth.
    fn stmt(&mut self, d: usize) {
        if d >= MAX_DEPTH {
            self.simple_stmt(d);
            return;
        }
        let simple = [40, 52, 60, 75][d];
        match self.r.weighted(&[simple, 12, 4, 4, 5, 1, 1, 2, 2, 2, 2, 4, 1, 1, 3]) {
            0 => self.simple_stmt(d),
            1 => self.if_stmt(d),
            2 => self.for_range(d),
            3 => self.for_enumerate(d),
            4 => self.for_in(d),
            5 => self.for_items(d),
            6 => self.for_zip(d),
            7 => self.while_cond(d),
            8 => self.while_true(d),
            9 => self.with_open(d, true),
            10 => self.with_open(d, false),
            11 => {
                self.accumulator(d);
            }
            12 => self.try_stmt(d),
            13 => self.var_if(d),
            _ => self.while_name(d),
        }
    }
}
