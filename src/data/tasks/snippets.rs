//! Pools of identifiers, literals and messages, and the shared context ("preamble") that precedes a task's
//! decision point: a few imports, maybe a module constant, a `def` line and a couple of body statements, in the
//! style of the synthetic Python corpus.

use super::rng::Rng;

pub(crate) const IMPORTS: &[&str] = &[
    "import os",
    "import sys",
    "import json",
    "import re",
    "import math",
    "import random",
    "import csv",
    "import time",
    "import logging",
    "from collections import defaultdict",
    "from collections import Counter",
    "from pathlib import Path",
    "from typing import List, Optional",
    "from dataclasses import dataclass",
];

pub(crate) const CONSTANTS: &[&str] = &[
    "MAX_RETRIES",
    "BATCH_SIZE",
    "DEFAULT_TIMEOUT",
    "NUM_WORKERS",
    "MAX_LENGTH",
    "THRESHOLD",
    "PAGE_SIZE",
    "SEED",
];

pub(crate) const FUNCS: &[&str] = &[
    "process_data",
    "load_config",
    "compute_total",
    "parse_line",
    "update_state",
    "run_experiment",
    "build_index",
    "clean_text",
    "handle_request",
    "merge_results",
    "find_matches",
    "summarize",
    "validate_input",
    "train_model",
    "count_words",
    "read_records",
    "format_report",
    "normalize",
    "main",
    "check_status",
];

/// Names of collections (plural).
pub(crate) const LISTS: &[&str] = &[
    "data", "items", "values", "results", "records", "names", "lines", "words", "numbers", "scores", "users", "files",
    "rows", "tokens", "entries", "tasks", "nodes", "points",
];

/// Names of scalars.
pub(crate) const SCALARS: &[&str] = &[
    "count",
    "total",
    "index",
    "offset",
    "limit",
    "size",
    "threshold",
    "step",
    "retries",
    "width",
    "height",
    "score",
    "level",
    "depth",
    "result",
    "value",
    "n",
    "x",
    "y",
    "k",
];

pub(crate) const WORDS: &[&str] = &[
    "hello", "error", "done", "data", "config", "default", "output", "train", "test", "admin", "guest", "debug",
    "ready", "pending", "active",
];

pub(crate) const FILES: &[&str] = &[
    "data.csv",
    "config.json",
    "results.txt",
    "users.json",
    "log.txt",
    "notes.md",
    "scores.csv",
    "report.txt",
    "words.txt",
    "settings.ini",
];

/// A small integer literal, sometimes larger.
pub(crate) fn int(rng: &mut Rng) -> String {
    if rng.chance(0.8) {
        rng.range(0, 20).to_string()
    } else {
        rng.range(21, 1000).to_string()
    }
}

/// A simple statement at `indent`, using `param` (a name in scope), assigning a fresh name.
pub(crate) fn statement(rng: &mut Rng, indent: &str, param: &str) -> String {
    let v = *rng.pick(SCALARS);
    let l = *rng.pick(LISTS);
    let body = match rng.below(11) {
        0 => format!("{v} = {}", int(rng)),
        1 => format!("{l} = []"),
        2 => format!("{l} = {{}}"),
        3 => format!("{v} = len({param})"),
        4 => format!("{v} = \"{}\"", rng.pick(WORDS)),
        5 => format!("{v} = {param}[{}]", rng.range(0, 3)),
        6 => format!("{v} = {} * {}", int(rng), int(rng)),
        7 => format!("print({param})"),
        8 => format!("{v} = 0"),
        9 => format!("{l} = list({param})"),
        _ => format!("{v} = {param}.get(\"{}\")", rng.pick(WORDS)),
    };
    format!("{indent}{body}\n")
}

/// Imports and maybe a constant, each line ending in "\n", followed by a blank line when not empty.
pub(crate) fn header(rng: &mut Rng) -> String {
    let mut out = String::new();
    let n = rng.below(3);
    for imp in rng.pick_distinct(IMPORTS, n) {
        out.push_str(imp);
        out.push('\n');
    }
    if rng.chance(0.3) {
        out.push_str(&format!("{} = {}\n", rng.pick(CONSTANTS), rng.range(1, 100)));
    }
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

/// `header`, then `def NAME(PARAMS):` with `params` (or one random list name when empty) and 1..=`max_stmts`
/// body statements at indent 4. Ends with "\n"; the caller continues at indent 4.
pub(crate) fn preamble_def(rng: &mut Rng, params: &[&str], max_stmts: usize) -> String {
    let mut out = header(rng);
    let f = *rng.pick(FUNCS);
    let own;
    let params: Vec<&str> = if params.is_empty() {
        own = *rng.pick(LISTS);
        vec![own]
    } else {
        params.to_vec()
    };
    out.push_str(&format!("def {f}({}):\n", params.join(", ")));
    let k = 1 + rng.below(max_stmts.max(1));
    for _ in 0..k {
        out.push_str(&statement(rng, "    ", params[0]));
    }
    out
}

/// Messages for strings: no quotes, no braces, no backslashes; each ends with a letter.
pub(crate) const MESSAGES: &[&str] = &[
    "There is no topological sort, the graph has a cycle",
    "Could not find the config file",
    "Loading data from disk",
    "Training finished",
    "Invalid input, expected a positive number",
    "Skipping empty line",
    "Connection refused by the server",
    "Done",
    "Starting the main loop",
    "The cache is stale",
    "User not found",
    "Saving results",
    "Something went wrong",
    "Please enter your name",
    "Welcome to the game",
    "Value must be between zero and one",
    "Reached the maximum number of retries",
    "Processing batch",
    "All tests passed",
    "Unknown command",
    "File is empty",
    "Goodbye",
    "Missing required field",
    "Waiting for the next job",
    "Index out of range",
];
