//! Structural checks of generated Python, for the unit tests of each statement kind: strings close on their
//! line (or, triple-quoted, at all), brackets balance and match outside strings and comments, indentation
//! comes in steps of four, every line that opens a block (ends in `:`) is followed by a body indented one step
//! deeper, and no other line is.

use super::super::rng::Rng;
use super::Gen;

/// A generator for one test sample, as inside a function body (so that `return` may occur) when `in_func`.
pub(super) fn gen(seed: u64, in_func: bool) -> Gen {
    Gen {
        r: Rng::for_document(0x7e57, seed),
        out: String::new(),
        vars: Vec::new(),
        in_func,
        loops: 0,
        in_method: false,
    }
}

/// The text `make` writes for each of `n` seeds, at indentation depth `depth` (the closure gets the depth).
pub(super) fn samples(n: u64, depth: usize, mut make: impl FnMut(&mut Gen, usize)) -> Vec<String> {
    (0..n)
        .map(|seed| {
            let mut g = gen(seed, seed % 2 == 0);
            make(&mut g, depth);
            g.out
        })
        .collect()
}

/// One logical line: where it starts, how deep it is indented, and whether it opens a block.
#[derive(Debug)]
pub(super) struct Logical {
    /// 1-based number of its first physical line.
    pub(super) line: usize,
    /// Leading spaces.
    pub(super) indent: usize,
    /// Its text without indentation, continuation lines joined by '\n'.
    pub(super) text: String,
    /// Its last character outside strings and comments is `:`.
    pub(super) opens_block: bool,
}

/// Splits `src` into logical lines (bracketed continuations joined), checking that strings close and brackets
/// balance; blank and comment-only lines are left out.
pub(super) fn logical_lines(src: &str) -> Result<Vec<Logical>, String> {
    let mut out = Vec::new();
    let mut stack: Vec<char> = Vec::new();
    // (quote character, triple-quoted)
    let mut string: Option<(char, bool)> = None;
    let mut start: Option<(usize, usize, usize)> = None; // (line, indent, byte offset)
    let mut last_code: Option<char> = None;
    let mut line_no = 1;
    let mut at_line_start = true;
    let chars: Vec<(usize, char)> = src.char_indices().collect();
    let mut i = 0;
    while i < chars.len() {
        let (pos, c) = chars[i];
        if at_line_start && string.is_none() && stack.is_empty() && start.is_none() {
            let indent = src[pos..].chars().take_while(|&c| c == ' ').count();
            let rest = src[pos + indent..].chars().next();
            if !matches!(rest, None | Some('\n') | Some('#')) {
                start = Some((line_no, indent, pos + indent));
                last_code = None;
            }
        }
        at_line_start = false;
        if let Some((q, triple)) = string {
            match c {
                '\\' => i += 1,
                '\n' if !triple => return Err(format!("line {line_no}: string not closed")),
                _ if c == q => {
                    if !triple {
                        string = None;
                    } else if chars.get(i + 1).map(|x| x.1) == Some(q) && chars.get(i + 2).map(|x| x.1) == Some(q) {
                        string = None;
                        i += 2;
                    }
                }
                _ => {}
            }
            if c == '\n' {
                line_no += 1;
                at_line_start = true;
            }
            last_code = Some(q);
            i += 1;
            continue;
        }
        match c {
            '#' => {
                while i + 1 < chars.len() && chars[i + 1].1 != '\n' {
                    i += 1;
                }
            }
            '\'' | '"' => {
                let triple = chars.get(i + 1).map(|x| x.1) == Some(c) && chars.get(i + 2).map(|x| x.1) == Some(c);
                string = Some((c, triple));
                if triple {
                    i += 2;
                }
                last_code = Some(c);
            }
            '(' | '[' | '{' => {
                stack.push(c);
                last_code = Some(c);
            }
            ')' | ']' | '}' => {
                let open = match c {
                    ')' => '(',
                    ']' => '[',
                    _ => '{',
                };
                if stack.pop() != Some(open) {
                    return Err(format!("line {line_no}: unmatched `{c}`"));
                }
                last_code = Some(c);
            }
            '\n' => {
                if stack.is_empty() {
                    if let Some((line, indent, from)) = start.take() {
                        out.push(Logical {
                            line,
                            indent,
                            text: src[from..pos].to_owned(),
                            opens_block: last_code == Some(':'),
                        });
                    }
                }
                line_no += 1;
                at_line_start = true;
            }
            ' ' => {}
            _ => last_code = Some(c),
        }
        i += 1;
    }
    if let Some((q, _)) = string {
        return Err(format!("string opened with {q} not closed at the end"));
    }
    if let Some(b) = stack.last() {
        return Err(format!("`{b}` not closed at the end"));
    }
    if start.is_some() {
        return Err("the last line has no newline".into());
    }
    Ok(out)
}

/// Checks that `src` is well-formed Python code starting at indentation depth `depth`, and returns its logical
/// lines.
pub(super) fn well_formed(src: &str, depth: usize) -> Result<Vec<Logical>, String> {
    let lines = logical_lines(src)?;
    let base = 4 * depth;
    let first = lines.first().ok_or("no code")?;
    if first.indent != base {
        return Err(format!(
            "line {}: starts at indent {}, not {base}",
            first.line, first.indent
        ));
    }
    for (l, next) in lines.iter().zip(lines.iter().skip(1).map(Some).chain([None])) {
        if l.indent % 4 != 0 || l.indent < base {
            return Err(format!("line {}: indent {}", l.line, l.indent));
        }
        match next {
            Some(n) if l.opens_block && n.indent != l.indent + 4 => {
                return Err(format!("line {}: block without an indented body", l.line))
            }
            Some(n) if !l.opens_block && n.indent > l.indent => {
                return Err(format!("line {}: unexpected indent", n.line))
            }
            None if l.opens_block => return Err(format!("line {}: block without a body", l.line)),
            _ => {}
        }
    }
    Ok(lines)
}

/// Panics with the sample and the reason unless every sample is well-formed at `depth`; returns each sample's
/// logical lines.
pub(super) fn assert_well_formed(samples: &[String], depth: usize) -> Vec<Vec<Logical>> {
    samples
        .iter()
        .map(|s| well_formed(s, depth).unwrap_or_else(|e| panic!("{e} in:\n{s}")))
        .collect()
}

#[test]
fn the_checks_reject_broken_code() {
    assert!(well_formed("x = (1, 2\n", 0).is_err());
    assert!(well_formed("x = 'abc\n", 0).is_err());
    assert!(well_formed("x = [1, 2)\n", 0).is_err());
    assert!(well_formed("if x:\ny = 1\n", 0).is_err());
    assert!(well_formed("x = 1\n    y = 2\n", 0).is_err());
    assert!(well_formed("def f():\n", 0).is_err());
    assert!(well_formed("s = \"\"\"open\n", 0).is_err());
    let ok = well_formed(
        "if x:  # note: a comment\n    y = {'a': [1, (2, 3)]}\nz = \"\"\"a\nb\"\"\"\n",
        0,
    );
    let lines = ok.expect("well-formed");
    assert_eq!(lines.len(), 3);
    assert!(lines[0].opens_block && !lines[1].opens_block && !lines[2].opens_block);
}
