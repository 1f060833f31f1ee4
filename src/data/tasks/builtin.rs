//! The 20 tasks of the paper's Table 1 (reference-model.md D.4) as template generators of minimal pairs.
//!
//! Every generator draws all its random choices first and then builds both prompts from them, so the two
//! prompts share their context and differ only at the decision. Every prompt ends exactly at a pre-token
//! boundary of the tinypython pre-tokenizer regex (C), so that `prompt + target` tokenizes as the prompt's
//! tokens followed by the target's: prompts end in a letter, a digit or a punctuation run that the target cannot
//! extend (`print("abc` + `")`, `[3, 4` + `]]\n`, `open(p, '` + `r`), or, for `indent_for` only, in a newline
//! followed by an indentation target.

use super::rng::Rng;
use super::snippets::{header, int, preamble_def, statement, FUNCS, LISTS, MESSAGES, SCALARS, WORDS};
use super::TaskPair;

/// A generator: all of a task's randomness comes from the `Rng`.
pub(crate) type Generator = fn(&mut Rng) -> TaskPair;

/// A built-in task: name, description, the target strings it can produce (class-1 target first) and its
/// generator.
pub(crate) struct Spec {
    pub name: &'static str,
    pub description: &'static str,
    pub targets: fn() -> Vec<String>,
    pub generate: Generator,
}

fn pair(prompt: String, target: &str, prompt_alt: String, alt: Option<&str>) -> TaskPair {
    TaskPair {
        prompt,
        target: target.to_owned(),
        prompt_alt,
        alt: alt.map(str::to_owned),
    }
}

fn two(a: &str, b: &str) -> Vec<String> {
    vec![a.to_owned(), b.to_owned()]
}

macro_rules! fixed_targets {
    ($a:expr, $b:expr) => {
        || two($a, $b)
    };
}

pub(crate) const SPECS: &[Spec] = &[
    Spec {
        name: "single_double_quote",
        description: "close a string opened with (\" vs ('",
        targets: fixed_targets!("\")", "')"),
        generate: single_double_quote,
    },
    Spec {
        name: "final_kwarg",
        description: "after keyword params the last param needs a default too; after positional ones it may end",
        targets: fixed_targets!("=None", "):\n"),
        generate: final_kwarg,
    },
    Spec {
        name: "set_or_string",
        description: "a variable initialised as set() grows with .add, one initialised as \"\" with +=",
        targets: fixed_targets!(".add", " +="),
        generate: set_or_string,
    },
    Spec {
        name: "set_or_string_fixedvarname",
        description: "set_or_string with the variable always named `current`",
        targets: fixed_targets!(".add", " +="),
        generate: set_or_string_fixedvarname,
    },
    Spec {
        name: "class_init",
        description: "in __init__, `self.NAME =` copies the parameter NAME",
        targets: class_init_targets,
        generate: class_init,
    },
    Spec {
        name: "with_as",
        description: "a file opened in a `with` statement is bound with ` as`, a plain binding with ` =`",
        targets: fixed_targets!(" as", " ="),
        generate: with_as,
    },
    Spec {
        name: "bracket_brace",
        description: "after a key inside a dict literal comes `:`, after an element of a list literal `,`",
        targets: fixed_targets!(":", ","),
        generate: bracket_brace,
    },
    Spec {
        name: "with_open",
        description: "open(NAME, ' takes mode r when NAME is an input, w when it is an output",
        targets: fixed_targets!("r", "w"),
        generate: with_open,
    },
    Spec {
        name: "bracket_counting",
        description: "close a list literal at nesting depth 2 (]]) vs 1 (])",
        targets: fixed_targets!("]]\n", "]\n"),
        generate: bracket_counting,
    },
    Spec {
        name: "for_while",
        description: "`for NAME` continues with ` in`, `while NAME` with `:`",
        targets: fixed_targets!(" in", ":\n"),
        generate: for_while,
    },
    Spec {
        name: "else_elif",
        description: "`else` is followed by `:`, `elif` is not (no alt token: full-vocabulary loss)",
        targets: || vec![":\n".to_owned()],
        generate: else_elif,
    },
    Spec {
        name: "fstring_brace",
        description: "inside print(f\"... a value is inserted with ` {`; a plain string is closed with `\",`",
        targets: fixed_targets!(" {", "\","),
        generate: fstring_brace,
    },
    Spec {
        name: "if_ternary",
        description: "an `if` statement's condition ends with `:`, a ternary's with ` else`",
        targets: fixed_targets!(":\n", " else"),
        generate: if_ternary,
    },
    Spec {
        name: "var_swap",
        description: "in `a, b = b,` the swap ends with ` a`",
        targets: var_swap_targets,
        generate: var_swap,
    },
    Spec {
        name: "indent_for",
        description: "after a `for ...:` line the indentation grows (7 spaces + word), else it stays (3 spaces)",
        targets: fixed_targets!("       ", "   "),
        generate: indent_for,
    },
    Spec {
        name: "lambda_func",
        description: "`NAME = lambda ARG` continues with `:`, `def NAME` with `(`",
        targets: fixed_targets!(":", "("),
        generate: lambda_func,
    },
    Spec {
        name: "if_equals",
        description: "`if NAME` compares with ` ==`, a statement `NAME` assigns with ` =`",
        targets: fixed_targets!(" ==", " ="),
        generate: if_equals,
    },
    Spec {
        name: "enumerate_range",
        description: "`for i, item in` loops over enumerate, `for i in` over range",
        targets: fixed_targets!(" enumerate", " range"),
        generate: enumerate_range,
    },
    Spec {
        name: "var_if",
        description: "`if x == True` ends with `:`, `x = True` with a newline",
        targets: fixed_targets!(":\n", "\n"),
        generate: var_if,
    },
    Spec {
        name: "while_return_true",
        description: "`while True` ends with `:`, `return True` with a newline",
        targets: fixed_targets!(":\n", "\n"),
        generate: while_return_true,
    },
];

/// single_double_quote (paper A.7): a message string opened with `("` vs `('` inside a `print`, `raise` or log
/// call; the message ends with a letter. Targets `")` (1644) / `')` (956).
fn single_double_quote(rng: &mut Rng) -> TaskPair {
    let mut pre = preamble_def(rng, &[], 2);
    let mut indent = "    ".to_owned();
    if rng.chance(0.5) {
        let v = *rng.pick(SCALARS);
        pre.push_str(&format!("    if {v} > {}:\n", int(rng)));
        indent = "        ".to_owned();
    }
    let call = *rng.pick(&[
        "print",
        "print",
        "print",
        "raise ValueError",
        "raise RuntimeError",
        "logging.info",
    ]);
    let msg = *rng.pick(MESSAGES);
    let p = format!("{pre}{indent}{call}(\"{msg}");
    let q = format!("{pre}{indent}{call}('{msg}");
    pair(p, "\")", q, Some("')"))
}

const PARAMS: &[&str] = &[
    "path", "name", "data", "size", "mode", "verbose", "timeout", "limit", "key", "value", "encoding", "callback",
    "retries", "debug", "config", "output", "strict", "seed",
];
const DEFAULTS: &[&str] = &[
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
];

/// final_kwarg: a `def` line cut after the last parameter's name. Class 1 has an earlier parameter with a
/// default, so the last one needs one too: `=None` (1827). Class 2 has the same parameters without defaults:
/// the signature may end, `):\n` (293).
fn final_kwarg(rng: &mut Rng) -> TaskPair {
    let pre = header(rng);
    let n_pos = rng.below(3);
    let n_kw = 1 + rng.below(2);
    let names = rng.pick_distinct(PARAMS, n_pos + n_kw + 1);
    let defaults: Vec<&str> = (0..n_kw).map(|_| *rng.pick(DEFAULTS)).collect();
    let method = rng.chance(0.4);
    let f = *rng.pick(FUNCS);
    let (lead, indent) = if method {
        let cls = *rng.pick(CLASSES);
        (format!("class {cls}:\n"), "    ")
    } else {
        // A short function before, so that the snippet has some context.
        let g = *rng.pick(FUNCS);
        let x = *rng.pick(SCALARS);
        let op = *rng.pick(&["*", "+", "-", "//", "%"]);
        (format!("def {g}({x}):\n    return {x} {op} {}\n\n", int(rng)), "")
    };
    let build = |with_defaults: bool| {
        let mut ps: Vec<String> = Vec::new();
        if method {
            ps.push("self".into());
        }
        for (i, name) in names[..n_pos + n_kw].iter().enumerate() {
            if with_defaults && i >= n_pos {
                ps.push(format!("{name}={}", defaults[i - n_pos]));
            } else {
                ps.push(name.to_string());
            }
        }
        ps.push(names[n_pos + n_kw].to_string());
        format!("{pre}{lead}{indent}def {f}({}", ps.join(", "))
    };
    pair(build(true), "=None", build(false), Some("):\n"))
}

const SET_VARS: &[&str] = &[
    "seen",
    "result",
    "chars",
    "out",
    "letters",
    "unique",
    "collected",
    "buffer",
    "acc",
    "found",
];

fn set_or_string_with(rng: &mut Rng, var: &str) -> TaskPair {
    let src = *rng.pick(&["text", "word", "line", "name", "message", "s", "sentence"]);
    let pre = preamble_def(rng, &[src], 1);
    let empty = *rng.pick(&["\"\"", "''"]);
    let (it, iter, conds): (&str, String, &[&str]) = if rng.chance(0.6) {
        let it = *rng.pick(&["ch", "c", "char", "letter"]);
        let iter = if rng.chance(0.3) {
            format!("{src}.lower()")
        } else {
            src.to_owned()
        };
        (
            it,
            iter,
            &[
                "{it}.isalpha()",
                "{it}.isdigit()",
                "{it} not in \"aeiou\"",
                "{it}.isupper()",
                "{it} != \" \"",
            ],
        )
    } else {
        let it = *rng.pick(&["w", "word", "part", "token"]);
        (
            it,
            format!("{src}.split()"),
            &["len({it}) > 3", "{it}.isalpha()", "{it} not in stop_words", "{it}"],
        )
    };
    let cond = rng.pick(conds).replace("{it}", it);
    let filtered = rng.chance(0.75);
    let tail = |init: &str| {
        let mut s = String::new();
        s.push_str(&format!("    {var} = {init}\n"));
        s.push_str(&format!("    for {it} in {iter}:\n"));
        if filtered {
            s.push_str(&format!("        if {cond}:\n            {var}"));
        } else {
            s.push_str(&format!("        {var}"));
        }
        s
    };
    let p = format!("{pre}{}", tail("set()"));
    let q = format!("{pre}{}", tail(empty));
    pair(p, ".add", q, Some(" +="))
}

/// set_or_string: the variable is initialised as `set()` (class 1: `.add`, 565) or `""` (class 2: ` +=`, 495),
/// then extended inside a loop; the prompt ends with the variable's name.
fn set_or_string(rng: &mut Rng) -> TaskPair {
    let var = *rng.pick(SET_VARS);
    set_or_string_with(rng, var)
}

/// set_or_string_fixedvarname: as set_or_string, the variable always `current`.
fn set_or_string_fixedvarname(rng: &mut Rng) -> TaskPair {
    set_or_string_with(rng, "current")
}

const CLASSES: &[&str] = &[
    "Node", "Config", "Player", "Item", "Server", "Point", "Vehicle", "Account", "Task", "Layer", "Student", "Order",
    "Parser", "Cache",
];
const ATTRS: &[&str] = &[
    "name", "size", "value", "data", "path", "count", "items", "color", "width", "height", "label", "parent", "key",
    "node", "state", "id",
];

fn class_init_targets() -> Vec<String> {
    ATTRS.iter().map(|a| format!(" {a}")).collect()
}

/// class_init (D.4: "copy the name after `=`"): `__init__(self, A, B, C...)` assigns some parameters with
/// `self.X = X` lines, then `self.A =` vs `self.B =` (A, B two parameters not yet assigned): the targets are
/// ` A` vs ` B`, i.e. the model must copy the attribute name. The targets come from a pool of 16 attribute names,
/// every one of which [`class_init_targets`] lists.
fn class_init(rng: &mut Rng) -> TaskPair {
    let pre = header(rng);
    let cls = *rng.pick(CLASSES);
    let n = 2 + rng.below(3);
    let params = rng.pick_distinct(ATTRS, n);
    let n_done = rng.below(n - 1);
    let order = rng.pick_distinct(&params, n);
    let (done, rest) = order.split_at(n_done);
    let (a, b) = (rest[0], rest[1]);
    let mut body = format!("{pre}class {cls}:\n    def __init__(self, {}):\n", params.join(", "));
    for d in done {
        body.push_str(&format!("        self.{d} = {d}\n"));
    }
    let p = format!("{body}        self.{a} =");
    let q = format!("{body}        self.{b} =");
    pair(p, &format!(" {a}"), q, Some(&format!(" {b}")))
}

/// with_as: loading a file in a `with` statement vs by a plain assignment. Class 1 ends with `with open(PATH)`:
/// the handle is bound with ` as` (576). Class 2 ends with the handle's name at the start of a statement: it is
/// bound with ` =` (261). (The natural "plain assignment" pair `f = open(PATH)` + newline is unusable: the
/// pre-tokenizer merges `)` with the newline, so a prompt cannot end between them.)
fn with_as(rng: &mut Rng) -> TaskPair {
    let path = *rng.pick(&["path", "filename", "config_path", "input_file", "fname", "data_path"]);
    let mut pre = preamble_def(rng, &[path], 1);
    pre.push_str(&match rng.below(3) {
        0 => format!("    if not os.path.exists({path}):\n        return None\n"),
        1 => format!("    print(\"Reading\", {path})\n"),
        _ => format!("    if {path} is None:\n        raise ValueError(\"no file given\")\n"),
    });
    let handle = *rng.pick(&["f", "fh", "handle", "infile", "fp", "file"]);
    let p = format!("{pre}    with open({path})");
    let q = format!("{pre}    {handle}");
    pair(p, " as", q, Some(" ="))
}

/// bracket_brace: a literal with at least one complete element pair, cut after a key/element. Class 1 is a dict
/// `{K1: V1, K2` (target `:`, 25); class 2 is the same items in a list `[K1, V1, K2` (target `,`). Keys are ints
/// or names, so that the prompt never ends in a quote (`":` would be one pre-token).
fn bracket_brace(rng: &mut Rng) -> TaskPair {
    let pre = preamble_def(rng, &[], 2);
    let var = *rng.pick(&[
        "mapping", "lookup", "table", "codes", "weights", "config", "counts", "scores", "colors",
    ]);
    let n = 1 + rng.below(4);
    let int_keys = rng.chance(0.6);
    let keys: Vec<String> = if int_keys {
        let start = rng.range(0, 10);
        let step = rng.range(1, 5);
        (0..=n as i64).map(|i| (start + i * step).to_string()).collect()
    } else {
        rng.pick_distinct(SCALARS, n + 1)
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    let vals: Vec<String> = (0..n)
        .map(|_| match rng.below(3) {
            0 => int(rng),
            1 => format!("\"{}\"", rng.pick(WORDS)),
            _ => rng.pick(&["True", "False", "None"]).to_string(),
        })
        .collect();
    let build = |open: &str, sep: &str| {
        let mut s = format!("{pre}    {var} = {open}");
        for i in 0..n {
            s.push_str(&format!("{}{sep} {}, ", keys[i], vals[i]));
        }
        s.push_str(&keys[n]);
        s
    };
    pair(build("{", ":"), ":", build("[", ","), Some(","))
}

/// with_open: the preamble names an input and an output path; the prompt opens one of them:
/// `open(INPUT, '` → `r` (81) vs `open(OUTPUT, '` → `w` (86).
fn with_open(rng: &mut Rng) -> TaskPair {
    let (rd, wr) = *rng.pick(&[
        ("input_path", "output_path"),
        ("in_file", "out_file"),
        ("read_path", "write_path"),
        ("infile", "outfile"),
        ("src_file", "dst_file"),
        ("load_path", "save_path"),
        ("input_file", "output_file"),
        ("source_path", "dest_path"),
    ]);
    let file = *rng.pick(super::snippets::FILES);
    let (stem, ext) = file.split_once('.').unwrap_or((file, "txt"));
    let mut pre = header(rng);
    let f = *rng.pick(FUNCS);
    if rng.chance(0.5) {
        pre.push_str(&format!("{rd} = \"{file}\"\n{wr} = \"{stem}_out.{ext}\"\n\n"));
        pre.push_str(&format!("def {f}():\n"));
    } else {
        pre.push_str(&format!("def {f}({rd}, {wr}):\n"));
    }
    if rng.chance(0.4) {
        pre.push_str(&statement(rng, "    ", rd));
    }
    let with = if rng.chance(0.8) { "with " } else { "handle = " };
    let p = format!("{pre}    {with}open({rd}, '");
    let q = format!("{pre}    {with}open({wr}, '");
    pair(p, "r", q, Some("w"))
}

/// bracket_counting: a list literal cut after a number, at nesting depth 2 (`]]\n`, 1252) vs 1 (`]\n`, 330);
/// class 2 is class 1 with one `[` removed. Half the pairs are the easy case (`[[1, 2, 3` vs `[1, 2, 3`), half
/// the hard one that needs counting (`[[1, 2], [3, 4` vs `[[1, 2], 3, 4`), with up to 6 complete rows and rows
/// of up to 8 numbers.
fn bracket_counting(rng: &mut Rng) -> TaskPair {
    let mut pre = header(rng);
    let indent = if rng.chance(0.5) {
        pre.push_str(&format!("def {}():\n", rng.pick(FUNCS)));
        "    "
    } else {
        ""
    };
    if indent.is_empty() || rng.chance(0.5) {
        let l = *rng.pick(LISTS);
        pre.push_str(&statement(rng, indent, l));
    }
    let var = *rng.pick(&[
        "values", "data", "matrix", "grid", "pairs", "points", "rows", "coords", "items", "board",
    ]);
    let wide = rng.chance(0.2);
    let width = 1 + rng.below(if wide { 8 } else { 4 });
    let hard = rng.chance(0.5);
    let many = rng.chance(0.3);
    let n_rows = if hard {
        1 + rng.below(if many { 6 } else { 3 })
    } else {
        0
    };
    let rows: Vec<Vec<String>> = (0..n_rows)
        .map(|_| (0..width).map(|_| list_number(rng)).collect())
        .collect();
    let long = rng.chance(0.3);
    let last_len = 1 + rng.below(if long { 10 } else { 4 });
    let last: Vec<String> = (0..last_len).map(|_| list_number(rng)).collect();
    let mut head = format!("{pre}{indent}{var} = [");
    for r in &rows {
        head.push_str(&format!("[{}], ", r.join(", ")));
    }
    let p = format!("{head}[{}", last.join(", "));
    let q = format!("{head}{}", last.join(", "));
    pair(p, "]]\n", q, Some("]\n"))
}

/// A list element: mostly small ints, sometimes negative or a float; always ends with a digit.
fn list_number(rng: &mut Rng) -> String {
    if rng.chance(0.1) {
        format!("-{}", rng.range(1, 9))
    } else if rng.chance(0.1) {
        format!("{}.{}", rng.range(0, 9), rng.range(1, 9))
    } else {
        int(rng)
    }
}

const LOOP_VARS: &[&str] = &[
    "node", "line", "item", "chunk", "task", "job", "batch", "token", "frame", "msg", "entry", "current",
];

/// for_while: a loop header cut after its first name: `for NAME` → ` in` (277) vs `while NAME` → `:\n` (265;
/// `:` followed by a newline is one pre-token, so `:\n` rather than `:` is the natural next token).
fn for_while(rng: &mut Rng) -> TaskPair {
    let pre = preamble_def(rng, &[], 2);
    let x = *rng.pick(LOOP_VARS);
    let p = format!("{pre}    for {x}");
    let q = format!("{pre}    while {x}");
    pair(p, " in", q, Some(":\n"))
}

/// else_elif (reference `else_elif_beeg`): an `if` block (maybe followed by `elif` blocks) and then `else` vs
/// `elif`. Class 1's target is `:\n` (265); class 2 has no alt token (`alt: None`): the loss pushes
/// p(`:\n`) down with the full-vocabulary branch.
fn else_elif(rng: &mut Rng) -> TaskPair {
    let x = *rng.pick(SCALARS);
    let mut pre = preamble_def(rng, &[x], 1);
    let n_elif = rng.below(3);
    let mut bound = rng.range(0, 50);
    let op = *rng.pick(&[">", ">=", "<", "=="]);
    let body = |rng: &mut Rng| -> String {
        match rng.below(4) {
            0 => format!("        return \"{}\"\n", rng.pick(WORDS)),
            1 => format!("        return {}\n", int(rng)),
            2 => format!("        {} = {}\n", rng.pick(SCALARS), int(rng)),
            _ => format!("        print(\"{}\")\n", rng.pick(WORDS)),
        }
    };
    pre.push_str(&format!("    if {x} {op} {bound}:\n"));
    pre.push_str(&body(rng));
    for _ in 0..n_elif {
        bound += rng.range(1, 20);
        pre.push_str(&format!("    elif {x} {op} {bound}:\n"));
        pre.push_str(&body(rng));
    }
    pair(format!("{pre}    else"), ":\n", format!("{pre}    elif"), None)
}

/// fstring_brace: a print of a message that ends with a letter, as an f-string or a plain string. Class 1
/// `print(f"MSG` inserts a value: ` {` ; class 2 `print("MSG` closes the string and passes the value as
/// another argument: `",`.
fn fstring_brace(rng: &mut Rng) -> TaskPair {
    let (msg, var) = *rng.pick(&[
        ("Loaded", "count"),
        ("Found", "total"),
        ("Processing", "name"),
        ("Epoch", "epoch"),
        ("Total", "total"),
        ("Average loss", "loss"),
        ("Saved results to", "path"),
        ("Number of users", "n"),
        ("Hello", "name"),
        ("Elapsed time", "elapsed"),
        ("Current score", "score"),
        ("Step", "step"),
        ("Reading", "filename"),
        ("Best accuracy", "best"),
    ]);
    let mut pre = preamble_def(rng, &[], 1);
    if rng.chance(0.6) {
        let rhs = match rng.below(3) {
            0 => int(rng),
            1 => format!("len({})", rng.pick(LISTS)),
            _ => format!("\"{}\"", rng.pick(WORDS)),
        };
        pre.push_str(&format!("    {var} = {rhs}\n"));
    }
    let p = format!("{pre}    print(f\"{msg}");
    let q = format!("{pre}    print(\"{msg}");
    pair(p, " {", q, Some("\","))
}

/// A condition that ends with a letter or digit (never `)`: `):` would be one pre-token).
fn condition(rng: &mut Rng) -> String {
    let x = *rng.pick(SCALARS);
    match rng.below(6) {
        0 => format!("{x} > {}", int(rng)),
        1 => format!("{x} is None"),
        2 => format!("not {x}"),
        3 => format!("{x} == {}", int(rng)),
        4 => format!("len({}) > {}", rng.pick(LISTS), int(rng)),
        _ => format!("{x} < {}", rng.pick(SCALARS)),
    }
}

/// if_ternary: the same condition in an `if` statement (`if COND` → `:\n`, 265) vs in a conditional expression
/// (`V = A if COND` → ` else`, 486).
fn if_ternary(rng: &mut Rng) -> TaskPair {
    let pre = preamble_def(rng, &[], 2);
    let cond = condition(rng);
    let v = *rng.pick(SCALARS);
    let a = match rng.below(3) {
        0 => int(rng),
        1 => format!("\"{}\"", rng.pick(WORDS)),
        _ => rng.pick(SCALARS).to_string(),
    };
    pair(
        format!("{pre}    if {cond}"),
        ":\n",
        format!("{pre}    {v} = {a} if {cond}"),
        Some(" else"),
    )
}

const SWAPS: &[(&str, &str)] = &[
    ("a", "b"),
    ("x", "y"),
    ("i", "j"),
    ("left", "right"),
    ("lo", "hi"),
    ("first", "second"),
    ("prev", "curr"),
    ("start", "end"),
    ("u", "v"),
    ("p", "q"),
];

fn var_swap_targets() -> Vec<String> {
    let mut out = Vec::new();
    for (a, b) in SWAPS {
        out.push(format!(" {a}"));
        out.push(format!(" {b}"));
    }
    out
}

/// var_swap: `A, B = B,` → ` A` vs `B, A = A,` → ` B`: the swap's last name is the first one (copy it). Names
/// come from 10 fixed pairs, every name listed by [`var_swap_targets`].
fn var_swap(rng: &mut Rng) -> TaskPair {
    let (a, b) = *rng.pick(SWAPS);
    let mut pre = preamble_def(rng, &[a, b], 1);
    let mut indent = "    ";
    if rng.chance(0.6) {
        pre.push_str(&format!("    if {a} > {b}:\n"));
        indent = "        ";
    }
    pair(
        format!("{pre}{indent}{a}, {b} = {b},"),
        &format!(" {a}"),
        format!("{pre}{indent}{b}, {a} = {a},"),
        Some(&format!(" {b}")),
    )
}

/// indent_for: inside a function (indent 4) the prompt ends with a line and its newline. After
/// `for X in XS:\n` the next line is indented by 8: the pre-tokenizer gives 7 spaces (the 8th joins the next
/// word), target `"       "`. After `X = XS[0]\n` the indentation stays 4: target `"   "` (3 spaces).
fn indent_for(rng: &mut Rng) -> TaskPair {
    let xs = *rng.pick(LISTS);
    let pre = preamble_def(rng, &[xs], 2);
    let x = *rng.pick(&["item", "x", "row", "value", "entry", "line", "name", "node"]);
    pair(
        format!("{pre}    for {x} in {xs}:\n"),
        "       ",
        format!("{pre}    {x} = {xs}[0]\n"),
        Some("   "),
    )
}

/// lambda_func: `NAME = lambda ARG` → `:` (25) vs `def NAME` → `(` (7). (In natural text `(` merges with a
/// following parameter name into one pre-token, e.g. `(x`; the target follows D.4 regardless.)
fn lambda_func(rng: &mut Rng) -> TaskPair {
    let pre = preamble_def(rng, &[], 2);
    let name = *rng.pick(&[
        "square",
        "key_fn",
        "transform",
        "is_valid",
        "get_name",
        "double",
        "score_fn",
        "clean",
        "add_one",
        "callback",
    ]);
    let arg = *rng.pick(&["x", "item", "row", "s", "value", "n", "pair", "text"]);
    pair(
        format!("{pre}    {name} = lambda {arg}"),
        ":",
        format!("{pre}    def {name}"),
        Some("("),
    )
}

/// if_equals: `if NAME` → ` ==` (365) vs a statement starting with `NAME` → ` =` (261).
fn if_equals(rng: &mut Rng) -> TaskPair {
    let pre = preamble_def(rng, &[], 2);
    let x = *rng.pick(&[
        "mode",
        "status",
        "count",
        "choice",
        "op",
        "key",
        "direction",
        "level",
        "state",
        "n",
        "answer",
        "kind",
    ]);
    pair(format!("{pre}    if {x}"), " ==", format!("{pre}    {x}"), Some(" ="))
}

/// enumerate_range: a loop over two names `for I, ITEM in` → ` enumerate` (968) vs one name `for I in` →
/// ` range` (399).
fn enumerate_range(rng: &mut Rng) -> TaskPair {
    let xs = *rng.pick(LISTS);
    let pre = preamble_def(rng, &[xs], 2);
    let i = *rng.pick(&["i", "idx", "index", "n", "k", "pos", "j"]);
    let item = *rng.pick(&["name", "item", "line", "value", "row", "word", "user", "path", "x"]);
    pair(
        format!("{pre}    for {i}, {item} in"),
        " enumerate",
        format!("{pre}    for {i} in"),
        Some(" range"),
    )
}

/// var_if: `if X == True` → `:\n` (265) vs `X = True` → `\n` (198); `True` or `False`, the same in both.
fn var_if(rng: &mut Rng) -> TaskPair {
    let pre = preamble_def(rng, &[], 2);
    let x = *rng.pick(&[
        "done", "found", "ok", "valid", "running", "is_ready", "flag", "verbose", "changed", "debug",
    ]);
    let b = *rng.pick(&["True", "True", "False"]);
    pair(
        format!("{pre}    if {x} == {b}"),
        ":\n",
        format!("{pre}    {x} = {b}"),
        Some("\n"),
    )
}

/// while_return_true: `while True` → `:\n` (265) vs `return True` → `\n` (198).
fn while_return_true(rng: &mut Rng) -> TaskPair {
    let pre = preamble_def(rng, &[], 3);
    pair(
        format!("{pre}    while True"),
        ":\n",
        format!("{pre}    return True"),
        Some("\n"),
    )
}
