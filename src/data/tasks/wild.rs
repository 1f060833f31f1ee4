//! The wild split: minimal pairs mined from real code (the held-out files of a real-code corpus), so that a
//! task's accuracy says how a model does on code nobody wrote for the task.
//!
//! A miner finds a line of real code that shows a task's decision (a list literal closed at depth 1 or 2, a
//! string literal opened with `("`/`('`, a `for NAME in` header, ...) and builds the pair the generator would
//! build from it: the real side is the file's own text up to the decision point, preceded by up to
//! [`CONTEXT_LINES`] lines of the same file; the counterfactual changes only the contrasted piece (one quote,
//! one bracket, one keyword). Like the generator's, each prompt ends at a pre-token boundary: the text before
//! the decision ends in a letter, a digit, `_` or `)` only where the target starts with a space.
//!
//! Tasks without wild pairs, and why: `final_kwarg` (needs a parameter list cut before its last parameter with
//! a known answer; real signatures mix `*args`, annotations and defaults), `class_init` and `var_swap` (their
//! targets are a fixed list of generator names), `fstring_brace` (whether a real string would have had a
//! placeholder is not decided by the context), `indent_for` (the generator's 3-space indentation is not the
//! standard library's), `bracket_brace` and `with_open` (rare in one-line form with plain names in real code;
//! left for later).

use super::TaskPair;

/// Lines of the file before the decision line that a prompt keeps.
pub const CONTEXT_LINES: usize = 30;

/// At most this many pairs of one task come from one file, so that a few large files do not dominate.
pub const MAX_PER_FILE: usize = 12;

/// The tasks that have wild pairs.
pub const WILD_TASKS: &[&str] = &[
    "single_double_quote",
    "set_or_string",
    "set_or_string_fixedvarname",
    "with_as",
    "bracket_counting",
    "for_while",
    "else_elif",
    "if_ternary",
    "lambda_func",
    "if_equals",
    "enumerate_range",
    "var_if",
    "while_return_true",
];

/// Whether a built-in task has a wild miner.
pub fn has_miner(task: &str) -> bool {
    WILD_TASKS.contains(&task)
}

/// Up to `n` pairs of `task` mined from `docs` (in order; at most [`MAX_PER_FILE`] per document). Empty for a
/// task without a miner.
pub fn mine(task: &str, docs: impl Iterator<Item = String>, n: usize) -> Vec<TaskPair> {
    let mut out = Vec::new();
    if !has_miner(task) || n == 0 {
        return out;
    }
    for doc in docs {
        let found = mine_document(task, &doc);
        out.extend(found.into_iter().take(MAX_PER_FILE));
        if out.len() >= n {
            out.truncate(n);
            break;
        }
    }
    out
}

/// Every pair of `task` in one document, in line order.
pub fn mine_document(task: &str, doc: &str) -> Vec<TaskPair> {
    let lines: Vec<&str> = doc.lines().collect();
    let mut out = Vec::new();
    for i in 0..lines.len() {
        let ctx = context(&lines, i);
        let line = lines[i];
        let t = line.trim_start();
        let indent = &line[..line.len() - t.len()];
        let found = match task {
            "single_double_quote" => quote_pair(line),
            "bracket_counting" => bracket_pair(line),
            "for_while" => for_while_pair(indent, t),
            "enumerate_range" => enumerate_pair(indent, t),
            "else_elif" => else_pair(indent, t),
            "while_return_true" => while_true_pair(indent, t),
            "if_equals" => if_equals_pair(indent, t),
            "var_if" => var_if_pair(indent, t),
            "if_ternary" => ternary_pair(indent, t),
            "lambda_func" => lambda_pair(indent, t),
            "with_as" => with_as_pair(indent, t),
            "set_or_string" => set_or_string_pair(&lines, i, None),
            "set_or_string_fixedvarname" => set_or_string_pair(&lines, i, Some("current")),
            _ => None,
        };
        if let Some((p, target, q, alt)) = found {
            out.push(TaskPair {
                prompt: format!("{ctx}{p}"),
                target: target.to_owned(),
                prompt_alt: format!("{ctx}{q}"),
                alt: alt.map(str::to_owned),
            });
        }
    }
    out
}

/// A mined pair before the context: (prompt tail, target, alt prompt tail, alt).
type Found = (String, &'static str, String, Option<&'static str>);

/// The up to [`CONTEXT_LINES`] lines before line `i`, each with its newline.
fn context(lines: &[&str], i: usize) -> String {
    let from = i.saturating_sub(CONTEXT_LINES);
    lines[from..i].iter().map(|l| format!("{l}\n")).collect()
}

fn is_ident(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|f| f.is_ascii_alphabetic() || f == '_') && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn is_keyword(s: &str) -> bool {
    matches!(
        s,
        "if" | "else"
            | "elif"
            | "for"
            | "while"
            | "return"
            | "in"
            | "not"
            | "and"
            | "or"
            | "is"
            | "def"
            | "class"
            | "lambda"
            | "True"
            | "False"
            | "None"
            | "import"
            | "from"
            | "with"
            | "as"
            | "yield"
            | "pass"
    )
}

fn ends_word(s: &str) -> bool {
    // Not `_`: the pre-tokenizer joins it with a following punctuation target (`_]]`).
    s.chars().last().is_some_and(|c| c.is_ascii_alphanumeric())
}

/// `("text")` / `('text')` after a name: the prompt ends inside the string at its last letter.
fn quote_pair(line: &str) -> Option<Found> {
    let b = line.as_bytes();
    for k in 1..b.len().saturating_sub(2) {
        let q = b[k + 1];
        if b[k] != b'(' || !(q == b'"' || q == b'\'') || !(b[k - 1].is_ascii_alphanumeric() || b[k - 1] == b'_') {
            continue;
        }
        let rest = &line[k + 2..];
        let Some(end) = rest.find(q as char) else { continue };
        let text = &rest[..end];
        let closes = rest[end + 1..].starts_with(')');
        let plain = text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " _.,:;!?-".contains(c));
        if !closes || !plain || !ends_word(text) {
            continue;
        }
        let head = &line[..k];
        return Some((format!("{head}(\"{text}"), "\")", format!("{head}('{text}"), Some("')")));
    }
    None
}

/// A one-line list literal assigned or returned, closed at the end of the line at depth 2 (`]]`) or 1 (`]`).
fn bracket_pair(line: &str) -> Option<Found> {
    let t = line.trim_start();
    let rhs_at = if let Some(r) = t.strip_prefix("return ") {
        t.len() - r.len()
    } else {
        let (lhs, _) = t.split_once(" = ")?;
        if !is_ident(lhs.strip_prefix("self.").unwrap_or(lhs)) {
            return None;
        }
        lhs.len() + 3
    };
    let start = line.len() - t.len() + rhs_at;
    let body = line.trim_end();
    if !body[start..].starts_with('[') {
        return None;
    }
    // Walk the literal, skipping strings; record where each open list starts.
    let bytes = body.as_bytes();
    let mut stack: Vec<usize> = Vec::new();
    let mut last_inner_open = None;
    let mut quote: Option<u8> = None;
    let mut i = start;
    let mut closed_at = None;
    while i < bytes.len() {
        let c = bytes[i];
        if let Some(q) = quote {
            if c == b'\\' {
                i += 1;
            } else if c == q {
                quote = None;
            }
        } else {
            match c {
                b'\'' | b'"' => quote = Some(c),
                b'[' => {
                    if stack.len() == 1 {
                        last_inner_open = Some(i);
                    }
                    stack.push(i);
                    if stack.len() > 2 {
                        return None;
                    }
                }
                b']' => {
                    stack.pop()?;
                    if stack.is_empty() {
                        closed_at = Some(i);
                        break;
                    }
                }
                b'(' | b'{' | b'#' => return None,
                _ => {}
            }
        }
        i += 1;
    }
    let closed_at = closed_at?;
    if closed_at + 1 != bytes.len() {
        return None; // something follows the literal
    }
    let run = body.len() - body.trim_end_matches(']').len();
    let e = body.len() - run;
    if !ends_word(&body[..e]) {
        return None;
    }
    match run {
        2 => {
            let open = last_inner_open?;
            let alt = format!("{}{}", &body[..open], &body[open + 1..e]);
            Some((body[..e].to_owned(), "]]\n", alt, Some("]\n")))
        }
        1 => {
            // Open an inner list at the last element: `[a, b, [c` closes with `]]`.
            let inner = &body[start + 1..e];
            let at = match inner.rfind(", ") {
                Some(k) if !inner[k..].contains(['\'', '"']) => start + 1 + k + 2,
                Some(_) => return None,
                None => start + 1,
            };
            let p = format!("{}[{}", &body[..at], &body[at..e]);
            Some((p, "]]\n", body[..e].to_owned(), Some("]\n")))
        }
        _ => None,
    }
}

fn for_while_pair(indent: &str, t: &str) -> Option<Found> {
    let name = if let Some(r) = t.strip_prefix("for ") {
        r.split_once(" in ")?.0
    } else {
        t.strip_prefix("while ")?.strip_suffix(':')?
    };
    if !is_ident(name) || is_keyword(name) {
        return None;
    }
    Some((
        format!("{indent}for {name}"),
        " in",
        format!("{indent}while {name}"),
        Some(":\n"),
    ))
}

fn enumerate_pair(indent: &str, t: &str) -> Option<Found> {
    let r = t.strip_prefix("for ")?;
    let (vars, iter) = r.split_once(" in ")?;
    let (i, item) = if iter.starts_with("enumerate(") {
        let (i, item) = vars.split_once(", ")?;
        (i, item)
    } else if iter.starts_with("range(") {
        (vars, "item")
    } else {
        return None;
    };
    if !is_ident(i) || !is_ident(item) {
        return None;
    }
    Some((
        format!("{indent}for {i}, {item} in"),
        " enumerate",
        format!("{indent}for {i} in"),
        Some(" range"),
    ))
}

fn else_pair(indent: &str, t: &str) -> Option<Found> {
    (t == "else:" || t.starts_with("elif ")).then(|| (format!("{indent}else"), ":\n", format!("{indent}elif"), None))
}

fn while_true_pair(indent: &str, t: &str) -> Option<Found> {
    (t == "while True:" || t == "return True").then(|| {
        (
            format!("{indent}while True"),
            ":\n",
            format!("{indent}return True"),
            Some("\n"),
        )
    })
}

fn if_equals_pair(indent: &str, t: &str) -> Option<Found> {
    let name = if let Some(r) = t.strip_prefix("if ") {
        r.split_once(" == ")?.0
    } else {
        let (lhs, rhs) = t.split_once(" = ")?;
        if rhs.starts_with('=') {
            return None;
        }
        lhs
    };
    (is_ident(name) && !is_keyword(name)).then(|| {
        (
            format!("{indent}if {name}"),
            " ==",
            format!("{indent}{name}"),
            Some(" ="),
        )
    })
}

fn var_if_pair(indent: &str, t: &str) -> Option<Found> {
    let (name, value) = if let Some(r) = t.strip_prefix("if ") {
        let (n, v) = r.strip_suffix(':')?.split_once(" == ")?;
        (n, v.trim_end())
    } else {
        t.split_once(" = ")?
    };
    if !is_ident(name) || is_keyword(name) || !matches!(value, "True" | "False") {
        return None;
    }
    Some((
        format!("{indent}if {name} == {value}"),
        ":\n",
        format!("{indent}{name} = {value}"),
        Some("\n"),
    ))
}

fn ternary_pair(indent: &str, t: &str) -> Option<Found> {
    let (lhs, rhs) = t.split_once(" = ")?;
    if !is_ident(lhs) || t.matches(" if ").count() != 1 || t.matches(" else ").count() != 1 {
        return None;
    }
    let (value, rest) = rhs.split_once(" if ")?;
    let (cond, _) = rest.split_once(" else ")?;
    if !ends_word(cond) || cond.contains(['\'', '"', '(', '[', '{', ':']) || value.contains(['(', '[', '{', ':']) {
        return None;
    }
    Some((
        format!("{indent}if {cond}"),
        ":\n",
        format!("{indent}{lhs} = {value} if {cond}"),
        Some(" else"),
    ))
}

fn lambda_pair(indent: &str, t: &str) -> Option<Found> {
    let (name, arg) = if let Some(r) = t.strip_prefix("def ") {
        let (name, params) = r.split_once('(')?;
        let first = params.split([',', ')', ':', '=']).next()?.trim();
        (name, first)
    } else {
        let (name, rhs) = t.split_once(" = lambda ")?;
        (name, rhs.split_once(':')?.0)
    };
    let ok_arg = arg.split(", ").all(is_ident) && !arg.is_empty();
    (is_ident(name) && ok_arg && name != arg && ends_word(name) && ends_word(arg)).then(|| {
        (
            format!("{indent}{name} = lambda {arg}"),
            ":",
            format!("{indent}def {name}"),
            Some("("),
        )
    })
}

fn with_as_pair(indent: &str, t: &str) -> Option<Found> {
    let (handle, args) = if let Some(r) = t.strip_prefix("with open(") {
        let (args, rest) = r.split_once(") as ")?;
        (rest.strip_suffix(':')?, args)
    } else {
        let (h, r) = t.split_once(" = open(")?;
        (h, r.strip_suffix(')')?)
    };
    if !is_ident(handle) || args.contains(['(', ')']) {
        return None;
    }
    Some((
        format!("{indent}with open({args})"),
        " as",
        format!("{indent}{handle}"),
        Some(" ="),
    ))
}

/// `NAME = set()` (or `""`) followed in the same block by `NAME.add(` (or `NAME += `): the prompt runs to that
/// use's `NAME`, the counterfactual initialises NAME as the other type.
fn set_or_string_pair(lines: &[&str], i: usize, only: Option<&str>) -> Option<Found> {
    let line = lines[i];
    let t = line.trim_start();
    let indent = line.len() - t.len();
    let (name, init) = t.split_once(" = ")?;
    if !is_ident(name) || only.is_some_and(|o| o != name) {
        return None;
    }
    let (is_set, empty) = match init {
        "set()" => (true, "\"\""),
        "\"\"" | "''" => (false, init),
        _ => return None,
    };
    let use_prefix = if is_set {
        format!("{name}.add(")
    } else {
        format!("{name} += ")
    };
    for j in i + 1..lines.len().min(i + 1 + CONTEXT_LINES) {
        let l = lines[j];
        let lt = l.trim_start();
        if lt.is_empty() {
            continue;
        }
        if l.len() - lt.len() < indent || lt.starts_with(&format!("{name} = ")) {
            return None;
        }
        if lt.starts_with(&use_prefix) {
            let head = &line[..indent];
            let between: String = lines[i + 1..j].iter().map(|l| format!("{l}\n")).collect();
            let use_head = &l[..l.len() - lt.len()];
            let p = format!("{head}{name} = set()\n{between}{use_head}{name}");
            let q = format!("{head}{name} = {empty}\n{between}{use_head}{name}");
            return Some((p, ".add", q, Some(" +=")));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brackets_at_depth_two_and_one() {
        let (p, t, q, a) = bracket_pair("    grid = [[1, 2], [3, 4]]").unwrap();
        assert_eq!(
            (p.as_str(), t, q.as_str(), a),
            (
                "    grid = [[1, 2], [3, 4",
                "]]\n",
                "    grid = [[1, 2], 3, 4",
                Some("]\n")
            )
        );
        let (p, _, q, _) = bracket_pair("names = [a, b, c]").unwrap();
        assert_eq!((p.as_str(), q.as_str()), ("names = [a, b, [c", "names = [a, b, c"));
        assert!(bracket_pair("x = [f(a)]").is_none());
        assert!(bracket_pair("x = ['a', 'b']").is_none());
        assert!(bracket_pair("x = [[[1]]]").is_none());
    }

    #[test]
    fn quotes_swap_one_character() {
        let (p, _, q, _) = quote_pair("    raise ValueError(\"bad value\")").unwrap();
        assert_eq!(p, "    raise ValueError(\"bad value");
        assert_eq!(q, "    raise ValueError('bad value");
        assert!(quote_pair("print(\"a %s\" % x)").is_none());
    }
}
