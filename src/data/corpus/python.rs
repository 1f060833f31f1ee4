//! The synthetic Python generator behind [`super::SyntheticCorpus`].
//!
//! A document is one module: an optional header (shebang, docstring), imports, constants, then functions,
//! classes and module-level "script" code, and sometimes a `__main__` guard. Statements come from weighted
//! templates chosen so that every construct the tasks of the reference paper (Table 1) contrast occurs
//! naturally and often (see the module docs of [`super`]). Indentation is 4 spaces, at most 4 levels deep.

use super::rng::Rng;

/// Deepest indentation level of a statement (4 levels = 16 spaces).
const MAX_DEPTH: usize = 4;

/// Documents longer than this drop their last top-level item (when they have others).
const MAX_CHARS: usize = 2200;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Str,
    List,
    Dict,
    Set,
    Bool,
}

/// Plural collection names and the loop variable that goes with them.
const PAIRS: &[(&str, &str)] = &[
    ("items", "item"),
    ("values", "value"),
    ("numbers", "number"),
    ("names", "name"),
    ("words", "word"),
    ("lines", "line"),
    ("records", "record"),
    ("users", "user"),
    ("scores", "score"),
    ("results", "result"),
    ("nodes", "node"),
    ("edges", "edge"),
    ("tokens", "token"),
    ("files", "filename"),
    ("paths", "path"),
    ("keys", "key"),
    ("rows", "row"),
    ("points", "point"),
    ("tasks", "task"),
    ("entries", "entry"),
    ("prices", "price"),
    ("students", "student"),
    ("books", "book"),
    ("events", "event"),
    ("messages", "message"),
    ("chars", "ch"),
    ("parts", "part"),
    ("pairs", "pair"),
    ("children", "child"),
    ("elements", "element"),
    ("samples", "sample"),
    ("weights", "weight"),
    ("fields", "field"),
    ("cells", "cell"),
    ("tags", "tag"),
    ("orders", "order"),
    ("cities", "city"),
    ("colors", "color"),
    ("nums", "num"),
    ("xs", "x"),
    ("chunks", "chunk"),
    ("jobs", "job"),
    ("batches", "batch"),
    ("frames", "frame"),
    ("msgs", "msg"),
];

const INT_NAMES: &[&str] = &[
    "total",
    "count",
    "n",
    "size",
    "index",
    "idx",
    "limit",
    "offset",
    "width",
    "height",
    "depth",
    "level",
    "step",
    "max_value",
    "min_value",
    "start",
    "end",
    "low",
    "high",
    "mid",
    "num",
    "length",
    "target",
    "threshold",
    "x",
    "y",
    "k",
    "left",
    "right",
    "best",
    "delta",
    "counter",
    "steps",
    "retries",
    "capacity",
    "number",
    "value",
    "score",
    "max_len",
    "num_items",
    "batch_size",
    "pos",
];

const STR_NAMES: &[&str] = &[
    "name",
    "text",
    "line",
    "word",
    "label",
    "message",
    "prefix",
    "suffix",
    "title",
    "key",
    "filename",
    "sep",
    "status",
    "mode",
    "header",
    "token",
    "s",
    "greeting",
    "content",
    "query",
    "user_name",
    "description",
    "tag",
];

const BOOL_NAMES: &[&str] = &[
    "flag", "done", "found", "ok", "valid", "running", "changed", "verbose", "debug", "is_valid", "is_empty", "ready",
    "active", "visible", "enabled", "finished", "stop", "success", "dirty", "match",
];

const ACC_NAMES: &[&str] = &[
    "seen",
    "result",
    "buffer",
    "out",
    "acc",
    "chars",
    "unique",
    "visited",
    "collected",
    "letters",
    "output",
    "text",
    "line",
    "word",
    "names",
    "keys",
    "tags",
    "parts",
    "s",
    "res",
    "joined",
    "found",
];

const LIST_STMT_NAMES: &[&str] = &[
    "values", "values", "values", "matrix", "grid", "data", "points", "pairs", "rows", "nums", "numbers", "items",
    "board", "layers", "batches", "coords", "weights", "table", "groups", "nested", "result", "expected", "samples",
    "scores", "edges", "shape", "vals", "arr", "xs", "ys", "lst", "cells", "tiles", "blocks",
];

const DICT_NAMES: &[&str] = &[
    "config", "counts", "ages", "scores", "mapping", "lookup", "options", "settings", "params", "colors", "prices",
    "data", "record", "info", "table", "index", "cache", "result", "defaults", "stats", "totals", "person",
];

const SET_NAMES: &[&str] = &[
    "seen", "visited", "allowed", "vowels", "tags", "unique", "keys", "done", "blocked",
];

const VERBS: &[&str] = &[
    "get",
    "compute",
    "count",
    "find",
    "build",
    "process",
    "make",
    "update",
    "check",
    "filter",
    "sort",
    "merge",
    "split",
    "format",
    "normalize",
    "validate",
    "collect",
    "extract",
    "render",
    "apply",
    "remove",
    "add",
    "reset",
    "handle",
    "run",
    "create",
    "convert",
    "group",
    "flatten",
    "summarize",
    "parse",
    "encode",
    "decode",
    "scale",
    "clean",
    "print",
];

const OBJECTS: &[&str] = &[
    "data", "items", "config", "line", "words", "graph", "tree", "matrix", "scores", "users", "report", "results",
    "name", "text", "tokens", "records", "stats", "values", "counts", "index", "grid", "list", "total", "average",
    "path", "queue", "stack", "input", "output", "row", "header", "prices", "orders", "events", "message", "pairs",
];

const PREDICATES: &[&str] = &[
    "is_valid",
    "is_empty",
    "is_prime",
    "is_sorted",
    "is_even",
    "has_duplicates",
    "has_key",
    "contains",
    "is_palindrome",
    "is_ready",
    "can_move",
    "is_visible",
    "has_cycle",
    "is_number",
    "is_upper",
    "all_positive",
    "is_match",
    "should_skip",
];

const CLASSES: &[&str] = &[
    "Node",
    "Graph",
    "Stack",
    "Queue",
    "User",
    "Account",
    "Parser",
    "Counter",
    "Inventory",
    "Matrix",
    "Config",
    "Logger",
    "Point",
    "Vector",
    "Book",
    "Library",
    "Student",
    "Task",
    "Cache",
    "Tokenizer",
    "Game",
    "Player",
    "Board",
    "Shape",
    "Circle",
    "Rectangle",
    "Order",
    "Item",
    "Shop",
    "Tree",
    "Timer",
    "Buffer",
    "Record",
    "Reader",
    "Writer",
    "Simulation",
    "Robot",
    "Animal",
    "Car",
    "Employee",
    "Project",
    "Grid",
    "Deck",
    "Card",
];

const BASES: &[&str] = &["object", "Base", "Exception", "dict", "list", "Shape", "Model", "Node"];

const ATTRS: &[(&str, Kind)] = &[
    ("name", Kind::Str),
    ("value", Kind::Int),
    ("items", Kind::List),
    ("count", Kind::Int),
    ("size", Kind::Int),
    ("data", Kind::Dict),
    ("parent", Kind::Int),
    ("children", Kind::List),
    ("left", Kind::Int),
    ("right", Kind::Int),
    ("x", Kind::Int),
    ("y", Kind::Int),
    ("width", Kind::Int),
    ("height", Kind::Int),
    ("radius", Kind::Int),
    ("balance", Kind::Int),
    ("owner", Kind::Str),
    ("title", Kind::Str),
    ("author", Kind::Str),
    ("price", Kind::Int),
    ("quantity", Kind::Int),
    ("level", Kind::Int),
    ("score", Kind::Int),
    ("capacity", Kind::Int),
    ("path", Kind::Str),
    ("mode", Kind::Str),
    ("edges", Kind::List),
    ("nodes", Kind::List),
    ("head", Kind::Int),
    ("total", Kind::Int),
    ("history", Kind::List),
    ("cache", Kind::Dict),
    ("rate", Kind::Int),
    ("color", Kind::Str),
    ("speed", Kind::Int),
    ("label", Kind::Str),
    ("enabled", Kind::Bool),
    ("tags", Kind::Set),
    ("email", Kind::Str),
    ("age", Kind::Int),
    ("key", Kind::Str),
    ("node", Kind::Int),
    ("state", Kind::Str),
    ("id", Kind::Int),
];

const WORDS: &[&str] = &[
    "the",
    "graph",
    "has",
    "a",
    "cycle",
    "no",
    "valid",
    "input",
    "file",
    "not",
    "found",
    "processing",
    "done",
    "error",
    "value",
    "is",
    "too",
    "large",
    "small",
    "missing",
    "key",
    "user",
    "name",
    "total",
    "count",
    "items",
    "loaded",
    "saved",
    "results",
    "to",
    "from",
    "with",
    "of",
    "and",
    "for",
    "in",
    "all",
    "empty",
    "list",
    "could",
    "parse",
    "line",
    "invalid",
    "number",
    "expected",
    "got",
    "starting",
    "finished",
    "skipping",
    "reading",
    "writing",
    "welcome",
    "hello",
    "world",
    "please",
    "enter",
    "your",
    "score",
    "average",
    "maximum",
    "minimum",
    "new",
    "old",
    "data",
    "path",
    "does",
    "exist",
    "warning",
    "unknown",
    "option",
    "ready",
    "waiting",
    "for",
    "next",
    "step",
    "game",
    "over",
    "player",
    "wins",
    "try",
    "again",
    "sorted",
    "order",
    "queue",
    "stack",
    "node",
    "tree",
    "depth",
    "level",
    "config",
    "default",
    "value",
    "set",
    "string",
    "result",
    "match",
    "this",
    "that",
    "it",
    "be",
    "can",
];

const READ_PATHS: &[&str] = &[
    "path",
    "filename",
    "input_path",
    "input_file",
    "source_file",
    "config_path",
    "data_file",
    "in_path",
    "src_path",
    "file_path",
    "fname",
    "infile",
    "config_file",
    "words_file",
    "log_file",
    "in_file",
    "read_path",
    "src_file",
    "load_path",
    "source_path",
    "source",
    "src_path",
];

const WRITE_PATHS: &[&str] = &[
    "output_path",
    "output_file",
    "out_path",
    "report_path",
    "save_path",
    "dest",
    "dest_path",
    "outfile",
    "target_file",
    "results_file",
    "out_file",
    "export_path",
    "write_path",
    "dst_file",
    "dst_path",
    "output",
];

/// Input/output name pairs that appear together (a copy or convert step names both ends).
const IO_PAIRS: &[(&str, &str)] = &[
    ("input_path", "output_path"),
    ("in_file", "out_file"),
    ("read_path", "write_path"),
    ("infile", "outfile"),
    ("src_file", "dst_file"),
    ("load_path", "save_path"),
    ("input_file", "output_file"),
    ("source_path", "dest_path"),
    ("in_path", "out_path"),
    ("src_path", "dst_path"),
    ("source", "dest"),
    ("source_file", "target_file"),
    ("data_file", "results_file"),
    ("config_path", "report_path"),
];

/// Names swapped with `a, b = b, a` (either order).
const SWAP_PAIRS: &[(&str, &str)] = &[
    ("a", "b"),
    ("x", "y"),
    ("i", "j"),
    ("left", "right"),
    ("lo", "hi"),
    ("low", "high"),
    ("first", "second"),
    ("prev", "curr"),
    ("start", "end"),
    ("u", "v"),
    ("p", "q"),
    ("m", "n"),
    ("src", "dst"),
    ("old", "new"),
];

/// Parameter names of typical library-style signatures (`def open_file(path, mode, encoding=None)`).
const PARAM_NAMES: &[&str] = &[
    "path", "name", "data", "size", "mode", "verbose", "timeout", "limit", "key", "value", "encoding", "callback",
    "retries", "debug", "config", "output", "strict", "seed", "items", "count", "text", "prefix", "default", "max_len",
    "sep", "level", "label", "width",
];

/// Keyword defaults for [`PARAM_NAMES`].
const PARAM_DEFAULTS: &[&str] = &[
    "None",
    "None",
    "None",
    "0",
    "1",
    "True",
    "False",
    "10",
    "0.5",
    "\"utf-8\"",
    "\"default\"",
    "3",
    "100",
    "''",
    "\"\"",
    "-1",
    "0.0",
    "30",
];

/// Loop variables that also make natural `while NAME:` loops (the name is rebound in the body).
const WHILE_NAMES: &[(&str, &str)] = &[
    ("node", "node = node.next"),
    ("node", "node = node.parent"),
    ("current", "current = current.next"),
    ("line", "line = f.readline()"),
    ("chunk", "chunk = f.read(1024)"),
    ("task", "task = queue.pop() if queue else None"),
    ("job", "job = next_job()"),
    ("batch", "batch = loader.next_batch()"),
    ("token", "token = lexer.next_token()"),
    ("frame", "frame = frame.f_back"),
    ("msg", "msg = inbox.get()"),
    ("entry", "entry = entry.next"),
    ("item", "item = stack.pop() if stack else None"),
    ("data", "data = sock.recv(4096)"),
    ("text", "text = text[1:]"),
    ("n", "n //= 10"),
    ("x", "x //= 2"),
    ("count", "count -= 1"),
    ("stack", "stack.pop()"),
    ("queue", "queue.pop(0)"),
];

/// `(label, variable)` pairs for progress messages: `print(f"Loaded {count}")` / `print("Loaded", count)`.
const REPORTS: &[(&str, &str)] = &[
    ("Loaded", "count"),
    ("Found", "total"),
    ("Found", "n"),
    ("Processing", "name"),
    ("Processing", "filename"),
    ("Epoch", "epoch"),
    ("Total", "total"),
    ("Average loss", "loss"),
    ("Loss", "loss"),
    ("Saved results to", "path"),
    ("Wrote", "count"),
    ("Number of users", "n"),
    ("Number of items", "count"),
    ("Hello", "name"),
    ("Welcome", "user"),
    ("Elapsed time", "elapsed"),
    ("Current score", "score"),
    ("Final score", "score"),
    ("Step", "step"),
    ("Reading", "filename"),
    ("Reading", "path"),
    ("Writing", "output_path"),
    ("Best accuracy", "best"),
    ("Accuracy", "acc"),
    ("Skipped", "skipped"),
    ("Iteration", "i"),
    ("Result", "result"),
    ("Size", "size"),
    ("Done in", "elapsed"),
    ("Received", "msg"),
    ("Value", "value"),
    ("Remaining", "left"),
];

/// Error/log messages: full sentences ending with a letter, sometimes with a comma.
const MESSAGES: &[&str] = &[
    "Could not open the input file",
    "The graph has a cycle, no valid order exists",
    "Invalid value, expected a positive number",
    "Loading the configuration",
    "Finished processing all records",
    "Empty input",
    "Unknown option",
    "Something went wrong while saving",
    "Please enter a number",
    "Game over",
    "Stack is empty",
    "Queue is full, dropping the oldest item",
    "Missing key in config",
    "Retrying the request",
    "Connection closed by peer",
    "No results found",
    "Index out of bounds",
    "Skipping invalid line",
    "Training started",
    "Saving the model to disk",
    "Value must not be negative",
    "All done",
    "Waiting for input",
    "User does not exist",
    "The file is empty, nothing to do",
    "Starting the server",
    "Cache miss",
    "Timeout reached",
    "Bad request",
    "Goodbye and thanks for playing",
];

const READ_FILES: &[&str] = &[
    "data.txt",
    "input.txt",
    "config.json",
    "words.txt",
    "data.csv",
    "numbers.txt",
    "names.txt",
    "settings.ini",
    "scores.csv",
    "notes.md",
    "log.txt",
    "users.json",
];

const WRITE_FILES: &[&str] = &[
    "output.txt",
    "results.csv",
    "report.txt",
    "out.json",
    "summary.txt",
    "results.txt",
    "output.csv",
    "log.txt",
    "sorted.txt",
    "counts.json",
];

const FILE_HANDLES: &[&str] = &[
    "f", "f", "f", "fh", "fp", "file", "infile", "handle", "src", "out", "outfile",
];

const IMPORTS: &[&str] = &[
    "import os",
    "import sys",
    "import json",
    "import math",
    "import random",
    "import re",
    "import time",
    "import csv",
    "import string",
    "import itertools",
    "from collections import defaultdict",
    "from collections import Counter",
    "from collections import deque",
    "from typing import List, Dict, Optional",
    "from dataclasses import dataclass",
    "from pathlib import Path",
    "import logging",
    "from functools import reduce",
    "import heapq",
];

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

struct Gen {
    r: Rng,
    out: String,
    /// Names in scope and their kinds (loop variables are pushed and popped).
    vars: Vec<(String, Kind)>,
    in_func: bool,
    /// Number of enclosing loops.
    loops: usize,
    in_method: bool,
}

impl Gen {
    // ----------------------------------------------------------------------------------------------------------
    // Output helpers.

    fn line(&mut self, depth: usize, text: &str) {
        for _ in 0..depth {
            self.out.push_str("    ");
        }
        self.out.push_str(text);
        self.out.push('\n');
    }

    fn blank(&mut self) {
        self.out.push('\n');
    }

    fn p(&mut self, prob: f64) -> bool {
        self.r.chance(prob)
    }

    fn pick(&mut self, xs: &[&'static str]) -> &'static str {
        xs[self.r.below(xs.len())]
    }

    // ----------------------------------------------------------------------------------------------------------
    // Names and scope.

    fn declare(&mut self, name: &str, kind: Kind) {
        if !self.vars.iter().any(|(n, k)| n == name && *k == kind) {
            self.vars.push((name.to_owned(), kind));
        }
    }

    fn fresh_name(&mut self, kind: Kind) -> String {
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
    fn var(&mut self, kind: Kind) -> String {
        let in_scope: Vec<usize> = (0..self.vars.len()).filter(|&i| self.vars[i].1 == kind).collect();
        if !in_scope.is_empty() && self.p(0.75) {
            let i = *self.r.pick(&in_scope);
            return self.vars[i].0.clone();
        }
        self.fresh_name(kind)
    }

    /// A collection name and its element name.
    fn collection(&mut self) -> (String, String) {
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

    fn func_name(&mut self) -> String {
        let v = self.pick(VERBS);
        let o = self.pick(OBJECTS);
        if self.p(0.1) {
            format!("_{v}_{o}")
        } else {
            format!("{v}_{o}")
        }
    }

    // ----------------------------------------------------------------------------------------------------------
    // Literals.

    fn int_lit(&mut self) -> String {
        match self.r.weighted(&[40, 30, 15, 8, 7]) {
            0 => self.r.range(0, 10).to_string(),
            1 => self.r.range(0, 100).to_string(),
            2 => self.r.range(100, 9999).to_string(),
            3 => format!("-{}", self.r.range(1, 50)),
            _ => self.pick(&["0", "1", "2", "10", "100"]).to_owned(),
        }
    }

    fn float_lit(&mut self) -> String {
        format!("{}.{}", self.r.range(0, 99), self.r.range(0, 99))
    }

    fn phrase(&mut self, lo: usize, hi: usize) -> String {
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

    fn quote(&mut self) -> char {
        if self.p(0.5) {
            '"'
        } else {
            '\''
        }
    }

    fn str_lit(&mut self) -> String {
        let q = self.quote();
        self.str_lit_q(q)
    }

    fn str_lit_q(&mut self, q: char) -> String {
        let c = self.str_content(q);
        format!("{q}{c}{q}")
    }

    /// An f-string with 1-3 replacement fields.
    fn fstring(&mut self) -> String {
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
    fn list_lit(&mut self, depth: usize, long: bool, mixed: bool, elem: usize) -> String {
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

    fn list_elem_kind(&mut self) -> usize {
        self.r.weighted(&[62, 18, 8, 6, 6])
    }

    /// A random list literal, weighted towards nesting depths 1 and 2.
    fn any_list_lit(&mut self) -> String {
        let depth = 1 + self.r.weighted(&[40, 45, 15]);
        let long = self.p(0.3);
        let mixed = depth > 1 && self.p(0.3);
        let elem = self.list_elem_kind();
        self.list_lit(depth, long, mixed, elem)
    }

    fn dict_lit(&mut self, max_len: usize) -> String {
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

    fn set_lit(&mut self) -> String {
        let n = self.r.urange(1, 5);
        let elem = if self.p(0.5) { 0 } else { 1 };
        let items: Vec<String> = (0..n).map(|_| self.scalar_elem(elem)).collect();
        format!("{{{}}}", items.join(", "))
    }

    // ----------------------------------------------------------------------------------------------------------
    // Expressions.

    fn int_expr(&mut self) -> String {
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

    fn int_expr_simple(&mut self) -> String {
        if self.p(0.5) {
            self.int_lit()
        } else {
            self.var(Kind::Int)
        }
    }

    fn str_expr(&mut self) -> String {
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

    fn comprehension(&mut self) -> String {
        let (coll, el) = self.collection();
        match self.r.below(5) {
            0 => format!("[{el} * 2 for {el} in {coll}]"),
            1 => format!("[{el} for {el} in {coll} if {el}]"),
            2 => format!("[{el} for {el} in {coll} if {el} != {}]", self.int_lit()),
            3 => format!("[str({el}) for {el} in {coll}]"),
            _ => format!("[{el}.strip() for {el} in {coll}]"),
        }
    }

    fn expr(&mut self, kind: Kind) -> String {
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
    fn cond(&mut self) -> String {
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

    // ----------------------------------------------------------------------------------------------------------
    // Simple statements.

    fn list_stmt(&mut self, d: usize) {
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

    fn assign_stmt(&mut self, d: usize) {
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

    fn print_stmt(&mut self, d: usize) {
        let text = match self.r.weighted(&[22, 18, 25, 10, 8, 7, 5, 5]) {
            0 => format!("print({})", self.str_lit_q('"')),
            1 => format!("print({})", self.str_lit_q('\'')),
            2 => format!("print({})", self.fstring()),
            3 => format!("print({}, {})", self.str_lit(), self.var(Kind::Int)),
            4 => {
                let k = *self.r.pick(&[Kind::Int, Kind::Str, Kind::List]);
                format!("print({})", self.var(k))
            }
            5 => format!("print({}, end={})", self.str_lit(), self.pick(&["\"\"", "''", "\" \""])),
            6 => format!(
                "print(\"{}\".format({}))",
                self.phrase(1, 3) + " {}",
                self.var(Kind::Int)
            ),
            _ => format!("print(\"{} %s\" % {})", self.phrase(1, 3), self.var(Kind::Str)),
        };
        self.line(d, &text);
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

    fn comment_stmt(&mut self, d: usize) {
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

    fn open_assign_stmt(&mut self, d: usize) {
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

    fn simple_stmt(&mut self, d: usize) {
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

    fn return_stmt(&mut self, d: usize) {
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

    // ----------------------------------------------------------------------------------------------------------
    // Statements that make the tasks' decision points frequent.

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
    fn depth_list_lit(&mut self) -> String {
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

    /// `NAME = [[1, 2], [3, 4]]` and friends (see [`Self::depth_list_lit`]), on one line.
    fn depth_list_stmt(&mut self, d: usize) {
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
    fn keyed_stmt(&mut self, d: usize) {
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

    /// `print(f"Loaded {count}")` vs `print("Loaded", count)`: a label that ends with a letter, then a value.
    fn report_print(&mut self, d: usize) {
        let (label, var) = *self.r.pick(REPORTS);
        if self.p(0.25) {
            let v = self.int_expr_simple();
            self.line(d, &format!("{var} = {v}"));
        }
        let q = if self.p(0.8) { '"' } else { '\'' };
        let text = match self.r.weighted(&[38, 10, 8, 34, 10]) {
            0 => format!("print(f{q}{label} {{{var}}}{q})"),
            1 => format!("print(f{q}{label} {{{var}}} {}{q})", self.pick(WORDS)),
            2 => format!("print(f{q}{label}: {{{var}}}{q})"),
            3 => format!("print({q}{label}{q}, {var})"),
            _ => format!("print({q}{label}:{q}, {var})"),
        };
        self.line(d, &text);
    }

    /// A message string in a `print`, `raise` or log call: `print("...")` / `raise ValueError('...')`.
    fn message_stmt(&mut self, d: usize) {
        // Half the canned messages are the tasks' own, so that no message's last word is seen with one quote
        // type only.
        let msg = if self.p(0.3) {
            self.pick(MESSAGES).to_owned()
        } else if self.p(0.43) {
            self.pick(crate::data::tasks::snippets::MESSAGES).to_owned()
        } else {
            let mut c = self.phrase(2, 10);
            if let Some(f) = c.chars().next() {
                c = f.to_uppercase().chain(c.chars().skip(1)).collect();
            }
            c
        };
        let q = self.quote();
        let call = match self.r.weighted(&[50, 14, 8, 10, 10, 8]) {
            0 => "print",
            1 => "raise ValueError",
            2 => "raise RuntimeError",
            3 => "logging.info",
            4 => "logger.warning",
            _ => "sys.exit",
        };
        // A trailing comment now and then, so the closing `")`/`')` is also seen as a token of its own
        // rather than only merged with the newline.
        let text = if self.p(0.2) {
            format!("{call}({q}{msg}{q})  # {}", self.phrase(1, 4))
        } else {
            format!("{call}({q}{msg}{q})")
        };
        self.line(d, &text);
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

    /// `while NAME:` loops over a value rebound in the body (`while node:` ... `node = node.next`).
    fn while_name(&mut self, d: usize) {
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

    /// A simple condition like the ones programs test most: `x > 5`, `x is None`, `not x`, `len(xs) > 3`.
    fn simple_cond(&mut self) -> String {
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

    // ----------------------------------------------------------------------------------------------------------
    // Compound statements.

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

    fn body_len(&mut self, d: usize) -> usize {
        match d {
            0..=1 => self.r.urange(1, 3),
            2 => self.r.urange(1, 2),
            _ => 1 + usize::from(self.p(0.25)),
        }
    }

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

    fn if_stmt(&mut self, d: usize) {
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
    fn var_if(&mut self, d: usize) {
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

    fn for_range(&mut self, d: usize) {
        let i = self.pick(&[
            "i", "i", "i", "j", "k", "n", "step", "idx", "_", "row", "col", "attempt",
        ]);
        let args = self.range_args();
        self.line(d, &format!("for {i} in range({args}):"));
        self.loop_body(d + 1, &[(i, Kind::Int)]);
    }

    fn for_enumerate(&mut self, d: usize) {
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

    fn for_in(&mut self, d: usize) {
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

    fn for_items(&mut self, d: usize) {
        let dct = self.var(Kind::Dict);
        let (k, v) = *self
            .r
            .pick(&[("key", "value"), ("k", "v"), ("name", "count"), ("word", "freq")]);
        self.line(d, &format!("for {k}, {v} in {dct}.items():"));
        self.loop_body(d + 1, &[(k, Kind::Str), (v, Kind::Int)]);
    }

    fn for_zip(&mut self, d: usize) {
        let (a, b) = (self.var(Kind::List), self.var(Kind::List));
        self.line(d, &format!("for x, y in zip({a}, {b}):"));
        self.loop_body(d + 1, &[("x", Kind::Int), ("y", Kind::Int)]);
    }

    fn while_cond(&mut self, d: usize) {
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

    fn while_true(&mut self, d: usize) {
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

    /// `with open(path, 'r') as f:` / `with open(path, 'w') as f:`, the path's name implying the mode.
    fn with_open(&mut self, d: usize, read: bool) {
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

    /// A `set()` or `""` accumulator, filled later with `.add(...)` or `+= ...` (set_or_string tasks).
    /// Returns the accumulator's name and whether it was returned.
    fn accumulator(&mut self, d: usize) -> (String, bool) {
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

    fn try_stmt(&mut self, d: usize) {
        self.line(d, "try:");
        let n = self.body_len(d + 1);
        self.block(d + 1, n);
        let exc = self.pick(&[
            "ValueError",
            "KeyError",
            "IndexError",
            "Exception",
            "FileNotFoundError",
            "TypeError",
        ]);
        if self.p(0.5) {
            self.line(d, &format!("except {exc} as e:"));
            let q = self.quote();
            let msg = self.phrase(1, 3);
            self.line(d + 1, &format!("print(f{q}{msg}: {{e}}{q})"));
        } else {
            self.line(d, &format!("except {exc}:"));
            if self.in_func && self.p(0.5) {
                self.return_stmt(d + 1);
            } else {
                let s = if self.loops > 0 && self.p(0.5) {
                    "continue"
                } else {
                    "pass"
                };
                self.line(d + 1, s);
            }
        }
    }

    // ----------------------------------------------------------------------------------------------------------
    // Functions and classes.

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

    fn docstring(&mut self, d: usize) {
        let s = self.phrase(2, 8);
        let mut c = s.chars();
        let s: String = c
            .next()
            .map(|f| f.to_uppercase().chain(c).collect())
            .unwrap_or_default();
        self.line(d, &format!("\"\"\"{s}.\"\"\""));
    }

    fn function(&mut self, d: usize, method: bool) {
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

    fn class(&mut self) {
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

    fn imports(&mut self) {
        let n = self.r.weighted(&[25, 30, 25, 15, 5]);
        let mut chosen: Vec<&str> = Vec::new();
        for _ in 0..n {
            let i = self.pick(IMPORTS);
            if !chosen.contains(&i) {
                chosen.push(i);
            }
        }
        chosen.sort_by_key(|s| (s.starts_with("from"), *s));
        for i in &chosen {
            self.line(0, i);
        }
        if !chosen.is_empty() {
            self.blank();
            if self.p(0.5) {
                self.blank();
            }
        }
    }

    fn constants(&mut self) {
        for _ in 0..self.r.urange(1, 3) {
            let text = match self.r.weighted(&[30, 25, 25, 20]) {
                0 => {
                    let n = self.pick(&[
                        "MAX_SIZE",
                        "DEFAULT_LIMIT",
                        "BATCH_SIZE",
                        "MAX_RETRIES",
                        "WIDTH",
                        "HEIGHT",
                        "N",
                    ]);
                    format!("{n} = {}", self.int_lit())
                }
                1 => {
                    let n = self.pick(&[
                        "DEFAULT_PATH",
                        "OUTPUT_FILE",
                        "INPUT_FILE",
                        "SEPARATOR",
                        "VERSION",
                        "NAME",
                    ]);
                    let v = match n {
                        "DEFAULT_PATH" | "INPUT_FILE" => {
                            let q = self.quote();
                            format!("{q}{}{q}", self.pick(READ_FILES))
                        }
                        "OUTPUT_FILE" => {
                            let q = self.quote();
                            format!("{q}{}{q}", self.pick(WRITE_FILES))
                        }
                        _ => self.str_lit(),
                    };
                    format!("{n} = {v}")
                }
                2 => {
                    let n = self.pick(&["VALUES", "DATA", "GRID", "WEIGHTS", "LEVELS", "MATRIX"]);
                    format!("{n} = {}", self.any_list_lit())
                }
                _ => {
                    let n = self.pick(&["CONFIG", "DEFAULTS", "COLORS", "SETTINGS", "LIMITS"]);
                    format!("{n} = {}", self.dict_lit(5))
                }
            };
            self.line(0, &text);
        }
        self.blank();
    }

    /// Module-level statements.
    fn script(&mut self) {
        let n = self.r.urange(2, 6);
        self.block(0, n);
    }

    fn list_block(&mut self) {
        if self.p(0.4) {
            self.comment_stmt(0);
        }
        for _ in 0..self.r.urange(2, 5) {
            match self.r.below(3) {
                0 => self.list_stmt(0),
                1 => self.depth_list_stmt(0),
                _ if self.p(0.5) => self.keyed_stmt(0),
                _ => self.depth_list_stmt(0),
            }
        }
        if self.p(0.5) {
            self.print_stmt(0);
        }
    }

    fn main_guard(&mut self) {
        self.line(0, "if __name__ == \"__main__\":");
        if self.p(0.6) {
            self.line(1, "main()");
        } else {
            let n = self.r.urange(1, 4);
            self.block(1, n);
        }
    }

    fn document(&mut self) {
        let target = match self.r.weighted(&[30, 45, 25]) {
            0 => self.r.urange(250, 700),
            1 => self.r.urange(700, 1400),
            _ => self.r.urange(1400, 2000),
        };
        if self.p(0.1) {
            self.line(0, "#!/usr/bin/env python3");
        }
        if self.p(0.3) {
            self.docstring(0);
            self.blank();
        } else if self.p(0.15) {
            self.comment_stmt(0);
        }
        self.imports();
        if self.p(0.35) {
            self.constants();
        }
        let mut first = true;
        // At least one function, class or script block, even after a long header.
        while first || self.out.len() < target {
            if !first {
                self.blank();
                if self.p(0.7) {
                    self.blank();
                }
            }
            let only = first;
            first = false;
            let before = self.out.len();
            match self.r.weighted(&[42, 18, 25, 26]) {
                0 => self.function(0, false),
                1 => self.class(),
                2 => self.script(),
                _ => self.list_block(),
            }
            // Keep documents near their target: drop an item that overshoots far (unless it is the only one).
            if !only && self.out.len() > MAX_CHARS.max(target + 600) && self.out[..before].trim().len() > 300 {
                self.out.truncate(before);
                while self.out.ends_with("\n\n") {
                    self.out.pop();
                }
                break;
            }
        }
        if self.p(0.25) {
            self.blank();
            if self.p(0.7) {
                self.blank();
            }
            self.main_guard();
        }
    }
}
