//! Tasks: the 20 generators' invariants, splits, jsonl user tasks, the contrast loss, and the targets against
//! the reference tokenizer.

use std::collections::HashSet;
use std::path::Path;

use candle_core::{Device, Tensor, Var};
use circuitscope::data::tasks::{
    self, by_name, contrast_loss, contrast_loss_tensor, one_sided_loss, pair_correct, registry, split, split_seeded,
    target_strings, JsonlTask, RecordProblem, Split, Task, TaskError, TaskPair,
};

const NAMES: [&str; 20] = [
    "single_double_quote",
    "final_kwarg",
    "set_or_string",
    "set_or_string_fixedvarname",
    "class_init",
    "with_as",
    "bracket_brace",
    "with_open",
    "bracket_counting",
    "for_while",
    "else_elif",
    "fstring_brace",
    "if_ternary",
    "var_swap",
    "indent_for",
    "lambda_func",
    "if_equals",
    "enumerate_range",
    "var_if",
    "while_return_true",
];

#[test]
fn all_twenty_tasks_are_registered_by_name() {
    let names: Vec<String> = registry().iter().map(|t| t.name().to_owned()).collect();
    assert_eq!(names, NAMES.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    for n in NAMES {
        assert_eq!(by_name(n).unwrap().name(), n);
    }
    assert!(by_name("nope").is_none());
    let e = tasks::lookup("nope").err().unwrap().to_string();
    assert!(e.contains("nope") && e.contains("bracket_counting"), "{e}");
}

#[test]
fn pairs_are_deterministic_in_seed_and_index() {
    for t in registry() {
        for i in [0u64, 1, 17, 1 << 40] {
            assert_eq!(t.pair(3, i), t.pair(3, i), "{}", t.name());
        }
        let a: Vec<TaskPair> = (0..20).map(|i| t.pair(1, i)).collect();
        let b: Vec<TaskPair> = (0..20).map(|i| t.pair(2, i)).collect();
        assert_ne!(a, b, "{}: seeds 1 and 2 give the same pairs", t.name());
        let distinct: HashSet<&str> = a.iter().map(|p| p.prompt.as_str()).collect();
        assert!(
            distinct.len() >= 10,
            "{}: only {} distinct prompts in 20",
            t.name(),
            distinct.len()
        );
    }
    // A fresh registry gives the same pairs (no hidden state).
    let t = by_name("bracket_counting").unwrap();
    assert_eq!(
        split(t.as_ref(), Split::Train, 10),
        split(by_name("bracket_counting").unwrap().as_ref(), Split::Train, 10)
    );
}

fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let sub = prev[j - 1] + usize::from(a[i - 1] != b[j - 1]);
            cur[j] = sub.min(prev[j] + 1).min(cur[j - 1] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The two prompts with their common prefix and suffix removed, and the common prefix's length.
fn diff_span<'a>(a: &'a str, b: &'a str) -> (&'a str, &'a str, usize) {
    let pre = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    let (ra, rb) = (&a.as_bytes()[pre..], &b.as_bytes()[pre..]);
    let suf = ra.iter().rev().zip(rb.iter().rev()).take_while(|(x, y)| x == y).count();
    // Prompts are ASCII, so byte offsets are char boundaries.
    (&a[pre..a.len() - suf], &b[pre..b.len() - suf], pre)
}

#[test]
fn every_task_gives_clean_minimal_pairs() {
    for t in registry() {
        let name = t.name();
        let targets = t.targets();
        let pairs = split(t.as_ref(), Split::Train, 50);
        assert_eq!(pairs.len(), 50, "{name}");
        let mut max_edit = 0;
        for p in &pairs {
            let ctx = || format!("{name}: {p:?}");
            assert!(p.prompt.is_ascii() && p.prompt_alt.is_ascii(), "{}", ctx());
            assert_ne!(p.prompt, p.prompt_alt, "{}", ctx());
            assert!(!p.is_one_sided());
            assert!(!p.target.is_empty(), "{}", ctx());
            assert!(targets.contains(&p.target), "{}: target not in targets()", ctx());
            match &p.alt {
                Some(a) => {
                    assert_ne!(a, &p.target, "{}", ctx());
                    assert!(targets.contains(a), "{}: alt not in targets()", ctx());
                }
                None => assert_eq!(name, "else_elif", "only else_elif has no alt"),
            }
            // Minimal: a few characters of edits (one span, or for bracket_brace one character per item), in a
            // shared context that is most of the prompt.
            let (da, db, common_prefix) = diff_span(&p.prompt, &p.prompt_alt);
            let edit = levenshtein(da, db);
            max_edit = max_edit.max(edit);
            assert!(
                (1..=24).contains(&edit),
                "{}: edit distance {edit} ({da:?} vs {db:?})",
                ctx()
            );
            assert!(common_prefix > 0, "{}: no shared context", ctx());
            assert!(
                edit * 3 <= p.prompt.len().min(p.prompt_alt.len()),
                "{}: short shared context",
                ctx()
            );
            for (prompt, target) in [(&p.prompt, Some(&p.target)), (&p.prompt_alt, p.alt.as_ref())] {
                // Realistic and short enough for a 128-token context.
                assert!(prompt.lines().count() >= 2, "{}: not a snippet", ctx());
                assert!(prompt.len() <= 600, "{}: prompt of {} chars", ctx(), prompt.len());
                assert!(!prompt.contains('\t') && !prompt.contains('\r'), "{}", ctx());
                // No trailing space or tab: it would be a pre-token of its own (or merge with the target).
                let last = prompt.chars().last().unwrap();
                assert!(last != ' ' && last != '\t', "{}: prompt ends with a space", ctx());
                // A final newline only where the target is the next line's indentation, after a non-blank line.
                if last == '\n' {
                    assert_eq!(name, "indent_for", "{}", ctx());
                    assert!(!prompt.ends_with("\n\n") && !prompt.ends_with(" \n"), "{}", ctx());
                    if let Some(t) = target {
                        assert!(t.chars().all(|c| c == ' '), "{}", ctx());
                    }
                }
            }
        }
        eprintln!("{name}: max edit distance {max_edit}");
    }
}

#[test]
fn train_and_test_splits_are_disjoint_and_deterministic() {
    for t in registry() {
        let train = split(t.as_ref(), Split::Train, 50);
        let test = split(t.as_ref(), Split::Test, 50);
        assert_eq!(test.len(), 50, "{}", t.name());
        let train_prompts: HashSet<(&str, &str)> = train
            .iter()
            .map(|p| (p.prompt.as_str(), p.prompt_alt.as_str()))
            .collect();
        for p in &test {
            assert!(
                !train_prompts.contains(&(p.prompt.as_str(), p.prompt_alt.as_str())),
                "{}: {p:?}",
                t.name()
            );
            assert_eq!(tasks::split_of(p), Split::Test);
        }
        assert!(train.iter().all(|p| tasks::split_of(p) == Split::Train));
        assert_eq!(test, split(t.as_ref(), Split::Test, 50));
        assert_ne!(
            split_seeded(t.as_ref(), Split::Train, 5, 9),
            split_seeded(t.as_ref(), Split::Train, 5, 10)
        );
    }
    assert_eq!("test".parse::<Split>().unwrap(), Split::Test);
    assert!("dev".parse::<Split>().is_err());
}

#[test]
fn target_strings_cover_every_task() {
    let all = target_strings();
    for t in registry() {
        for s in t.targets() {
            assert!(all.contains(&s), "{s:?}");
        }
    }
    for s in [
        "\")",
        "')",
        "]]\n",
        "]\n",
        ".add",
        " +=",
        "=None",
        "):\n",
        " enumerate",
        " range",
        " ==",
        " =",
        "r",
        "w",
    ] {
        assert!(all.contains(&s.to_owned()), "{s:?}");
    }
    let distinct: HashSet<&String> = all.iter().collect();
    assert_eq!(distinct.len(), all.len());
}

#[test]
fn spec_examples_have_the_documented_shape() {
    let t = by_name("bracket_counting").unwrap();
    let mut hard = 0;
    for p in split(t.as_ref(), Split::Train, 100) {
        assert_eq!((p.target.as_str(), p.alt.as_deref()), ("]]\n", Some("]\n")));
        // Class 2 is class 1 with one `[` removed.
        let (a, b, _) = diff_span(&p.prompt, &p.prompt_alt);
        assert_eq!((a, b), ("[", ""));
        let last_line = p.prompt.lines().last().unwrap();
        if last_line.matches('[').count() > 2 {
            hard += 1;
        }
    }
    assert!((25..=75).contains(&hard), "hard cases (closed inner lists): {hard}");
    let t = by_name("single_double_quote").unwrap();
    let p = t.pair(0, 0);
    assert!(p.prompt.contains("(\"") && p.prompt_alt.contains("('"));
    let p = by_name("else_elif").unwrap().pair(0, 0);
    assert!(p.prompt.ends_with("else") && p.prompt_alt.ends_with("elif") && p.alt.is_none());
    let p = by_name("with_open").unwrap().pair(0, 0);
    assert!(p.prompt.ends_with(", '") && p.prompt_alt.ends_with(", '"));
}

fn write_tmp(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("my_task.jsonl");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

#[test]
fn jsonl_tasks_load_with_and_without_counterfactuals() {
    let (_d, path) = write_tmp(concat!(
        r#"{"prompt": "x = [[1, 2", "target": "]]\n", "alt": "]\n", "prompt_alt": "x = [1, 2"}"#,
        "\n\n",
        r#"{"prompt": "print('hi", "target": "')", "alt": "\")"}"#,
        "\n",
        r#"{"prompt": "while True", "target": ":\n", "prompt_alt": "return True", "extra": 1}"#,
        "\n",
    ));
    let t = JsonlTask::load(&path).unwrap();
    assert_eq!(t.name(), "my_task");
    assert_eq!(t.finite_len(), Some(3));
    assert_eq!(t.pairs()[0].prompt_alt, "x = [1, 2");
    assert!(!t.pairs()[0].is_one_sided());
    assert!(t.pairs()[1].is_one_sided());
    assert_eq!(t.pairs()[1].prompt_alt, "print('hi");
    assert_eq!(t.pairs()[2].alt, None);
    assert_eq!(t.pair(0, 4), t.pairs()[1]);
    assert_eq!(t.targets(), vec!["]]\n", "]\n", "')", "\")", ":\n"]);
    let train = split(&t, Split::Train, 10);
    let test = split(&t, Split::Test, 10);
    assert_eq!(train.len() + test.len(), 3);
}

#[test]
fn jsonl_errors_name_the_file_and_line() {
    let cases: [(&str, &str); 7] = [
        (
            "{\"prompt\": \"a\", \"target\": \"b\"}\n{not json\n",
            ":2: invalid JSON",
        ),
        ("{\"target\": \"b\"}\n", ":1: missing field \"prompt\""),
        ("\n{\"prompt\": \"a\"}\n", ":2: missing field \"target\""),
        (
            "{\"prompt\": \"a\", \"target\": \"b\", \"alt\": \"b\"}\n",
            ":1: \"alt\" equals \"target\"",
        ),
        ("{\"prompt\": \"a\", \"target\": \"\"}\n", ":1: \"target\" is empty"),
        (
            "{\"prompt\": \"a\", \"target\": \"b\", \"prompt_alt\": \"a\"}\n",
            ":1: \"prompt_alt\" equals \"prompt\"",
        ),
        ("{\"prompt\": 3, \"target\": \"b\"}\n", ":1: invalid JSON"),
    ];
    for (text, want) in cases {
        let (_d, path) = write_tmp(text);
        let e = JsonlTask::load(&path).unwrap_err();
        assert!(matches!(e, TaskError::Record { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(
            msg.contains("my_task.jsonl") && msg.contains(want),
            "{msg} (want {want})"
        );
    }
    let (_d, path) = write_tmp("{\"prompt\": \"a\", \"target\": \"b\", \"prompt_alt\": \"a\"}\n");
    assert!(matches!(
        JsonlTask::load(&path),
        Err(TaskError::Record {
            problem: RecordProblem::PromptAltIsPrompt,
            ..
        })
    ));
    let (_d, path) = write_tmp("{\"target\": \"b\"}\n");
    assert!(matches!(
        JsonlTask::load(&path),
        Err(TaskError::Record {
            problem: RecordProblem::MissingField { field: "prompt" },
            ..
        })
    ));
    let (_d, path) = write_tmp("\n  \n");
    let e = JsonlTask::load(&path).unwrap_err();
    assert!(
        matches!(e, TaskError::Empty { .. }) && e.to_string().contains("my_task.jsonl"),
        "{e}"
    );
    let e = JsonlTask::load(Path::new("/nonexistent/t.jsonl")).unwrap_err();
    assert!(
        matches!(e, TaskError::Io { .. }) && e.to_string().contains("/nonexistent/t.jsonl"),
        "{e}"
    );
}

fn close(a: f32, b: f64) -> bool {
    (a as f64 - b).abs() < 1e-5
}

#[test]
fn contrast_loss_matches_hand_computation() {
    // With alt: softplus(l_pos[alt] - l_pos[tok]) + softplus(l_neg[tok] - l_neg[alt]).
    let pos = [1.0f32, 2.0, 0.0];
    let neg = [0.0f32, 0.0, 3.0];
    let want = (1.0f64 + 1f64.exp()).ln() + 2f64.ln(); // softplus(1) + softplus(0) = 1.3132617 + 0.6931472
    assert!(close(contrast_loss(&pos, &neg, 0, Some(1)), want));
    // Equal logits on both sides: 2 ln 2, the "chance" level of the summed (2x) loss.
    assert!(close(contrast_loss(&[0.0; 4], &[0.0; 4], 2, Some(3)), 2.0 * 2f64.ln()));
    // Without alt: -log p_pos(tok) - log(1 - p_neg(tok)); p_pos = 1/4, p_neg(tok) = 3/(3+3) = 1/2.
    let neg = [3f32.ln(), 0.0, 0.0, 0.0];
    assert!(close(contrast_loss(&[0.0; 4], &neg, 0, None), 4f64.ln() + 2f64.ln()));
    // A confident, correct model has a small loss; a wrong one a large loss.
    assert!(contrast_loss(&[10.0, 0.0], &[0.0, 10.0], 0, Some(1)) < 1e-3);
    assert!(contrast_loss(&[0.0, 10.0], &[10.0, 0.0], 0, Some(1)) > 19.9);
    // Stable for large logits.
    let l = contrast_loss(&[1000.0, -1000.0, 0.0], &[-1000.0, 1000.0, 0.0], 0, None);
    assert!(l.is_finite() && l < 1e-6, "{l}");
    // One-sided.
    assert!(close(one_sided_loss(&[0.0; 4], 1, None), 4f64.ln()));
    assert!(close(
        one_sided_loss(&[1.0, 2.0], 0, Some(1)),
        (1.0f64 + 1f64.exp()).ln()
    ));
}

#[test]
fn pair_correct_needs_both_sides() {
    assert!(pair_correct(&[2.0, 1.0], &[1.0, 2.0], 0, Some(1)));
    assert!(!pair_correct(&[2.0, 1.0], &[2.0, 1.0], 0, Some(1)));
    assert!(!pair_correct(&[1.0, 2.0], &[1.0, 2.0], 0, Some(1)));
    // Without alt: p_pos(tok) > 0.5 and p_neg(tok) < 0.5.
    assert!(pair_correct(&[3.0, 0.0, 0.0], &[0.0, 0.0, 0.0], 0, None));
    assert!(!pair_correct(&[0.5, 0.0, 0.0], &[0.0, 0.0, 0.0], 0, None)); // p_pos = 0.45
    assert!(!pair_correct(&[3.0, 0.0, 0.0], &[3.0, 0.0, 0.0], 0, None));
}

#[test]
fn contrast_loss_tensor_is_the_batch_mean_and_differentiable() {
    let dev = Device::Cpu;
    let pos_rows: [[f32; 4]; 3] = [[1.0, 2.0, 0.0, -1.0], [0.0, 0.0, 0.0, 0.0], [0.3, -2.0, 5.0, 1.0]];
    let neg_rows: [[f32; 4]; 3] = [[0.0, 0.0, 3.0, 0.5], [3f32.ln(), 0.0, 0.0, 0.0], [2.0, 1.0, -1.0, 0.0]];
    let tok = [0u32, 0, 2];
    let alt = [Some(1u32), None, Some(3)];
    let want: f32 = (0..3)
        .map(|i| contrast_loss(&pos_rows[i], &neg_rows[i], tok[i], alt[i]))
        .sum::<f32>()
        / 3.0;
    let pos = Var::from_vec(pos_rows.concat(), (3, 4), &dev).unwrap();
    let neg = Var::from_vec(neg_rows.concat(), (3, 4), &dev).unwrap();
    let loss = contrast_loss_tensor(pos.as_tensor(), neg.as_tensor(), &tok, &alt).unwrap();
    assert_eq!(loss.dims(), &[] as &[usize]);
    let got = loss.to_scalar::<f32>().unwrap();
    assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    let grads = loss.backward().unwrap();
    let gp: Vec<Vec<f32>> = grads.get(pos.as_tensor()).unwrap().to_vec2().unwrap();
    let gn: Vec<Vec<f32>> = grads.get(neg.as_tensor()).unwrap().to_vec2().unwrap();
    assert!(gp.iter().chain(&gn).flatten().all(|g| g.is_finite()));
    // Row 0 (alt): d/d l_pos[tok] = -sigmoid(l_alt - l_tok) / N; the untouched tokens get no gradient.
    let s = 1.0 / (1.0 + (-1.0f32).exp());
    assert!(
        (gp[0][0] + s / 3.0).abs() < 1e-5 && (gp[0][1] - s / 3.0).abs() < 1e-5,
        "{gp:?}"
    );
    assert!(gp[0][2].abs() < 1e-7 && gn[0][2].abs() < 1e-7);
    // Row 1 (no alt): d/d l_pos = (softmax - onehot) / N.
    assert!(
        (gp[1][0] - (0.25 - 1.0) / 3.0).abs() < 1e-5 && (gp[1][3] - 0.25 / 3.0).abs() < 1e-5,
        "{gp:?}"
    );
    // Central finite difference on one neg logit of the no-alt row.
    let f = |d: f32| {
        let mut n = neg_rows;
        n[1][0] += d;
        (0..3)
            .map(|i| contrast_loss(&pos_rows[i], &n[i], tok[i], alt[i]) as f64)
            .sum::<f64>()
            / 3.0
    };
    let fd = (f(1e-2) - f(-1e-2)) / 2e-2;
    assert!((gn[1][0] as f64 - fd).abs() < 1e-3, "{} vs {fd}", gn[1][0]);
    // Shape errors are errors, not panics.
    assert!(contrast_loss_tensor(pos.as_tensor(), neg.as_tensor(), &tok[..2], &alt).is_err());
    assert!(contrast_loss_tensor(pos.as_tensor(), neg.as_tensor(), &[0, 0, 9], &alt).is_err());
    let _ = Tensor::zeros(1, candle_core::DType::F32, &dev);
}

/// With the reference tokenizer (tinypython_2k): the targets D.4 gives ids for encode to exactly those ids,
/// every prompt ends at a token boundary (`prompt + target` encodes as the prompt's tokens then the target's),
/// and the targets that are not single tokens there are reported.
#[test]
fn targets_against_the_reference_tokenizer() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/tokenizers/tinypython_2k");
    let (enc, bpe) = (Path::new(dir).join("encoder.json"), Path::new(dir).join("vocab.bpe"));
    if !enc.exists() || !bpe.exists() {
        eprintln!("note: {dir} is absent; skipping the reference-tokenizer check");
        return;
    }
    let tok = circuitscope::tokenize::import_gpt2_bpe(&enc, &bpe).unwrap();
    let spec: [(&str, u32); 22] = [
        ("\")", 1644),
        ("')", 956),
        ("]\n", 330),
        ("]]\n", 1252),
        (".add", 565),
        (" +=", 495),
        ("=None", 1827),
        ("):\n", 293),
        (":", 25),
        (":\n", 265),
        (" in", 277),
        (" enumerate", 968),
        (" range", 399),
        (" ==", 365),
        (" =", 261),
        (" as", 576),
        ("r", 81),
        ("w", 86),
        ("(", 7),
        (" True", 635),
        ("\n", 198),
        (" else", 486),
    ];
    let all = target_strings();
    for (s, id) in spec {
        assert_eq!(tok.encode(s).unwrap(), vec![id], "{s:?}");
    }
    for (s, _) in spec.iter().filter(|(s, _)| *s != " True") {
        assert!(
            all.contains(&s.to_string()),
            "spec target {s:?} is not used by any task"
        );
    }
    let mut not_single = Vec::new();
    for s in &all {
        let ids = tok.encode(s).unwrap();
        if ids.len() != 1 {
            not_single.push(format!("{s:?} -> {ids:?}"));
        }
    }
    eprintln!(
        "targets that are not single tokens in tinypython_2k ({}): {}",
        not_single.len(),
        not_single.join(", ")
    );
    for t in registry() {
        for p in split(t.as_ref(), Split::Train, 20) {
            for (prompt, target) in [(&p.prompt, Some(&p.target)), (&p.prompt_alt, p.alt.as_ref())] {
                let Some(target) = target else { continue };
                let alone = tok.encode(prompt).unwrap();
                let full = tok.encode(&format!("{prompt}{target}")).unwrap();
                assert!(
                    full.starts_with(&alone) && full[alone.len()..] == tok.encode(target).unwrap()[..],
                    "{}: {prompt:?} + {target:?} does not split at the boundary",
                    t.name()
                );
                assert!(alone.len() <= 128, "{}: {} tokens", t.name(), alone.len());
            }
        }
    }
}

#[test]
fn cli_list_and_show_render_pairs() {
    use circuitscope::cli::tasks::{list, show, ListArgs, ShowArgs};
    let text = list(&ListArgs { json: false });
    assert_eq!(text.lines().count(), 20);
    assert!(
        text.contains("bracket_counting") && text.contains("\"]]\\n\" / \"]\\n\""),
        "{text}"
    );
    let json: serde_json::Value = serde_json::from_str(&list(&ListArgs { json: true })).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 20);
    let args = |name: &str| ShowArgs {
        name: Some(name.to_owned()),
        jsonl: None,
        n: 2,
        split: Split::Test,
        corpus: "stdlib".to_owned(),
        seed: 5,
        tokenizer: None,
        lines: 6,
        json: false,
    };
    let out = show(&args("single_double_quote")).unwrap();
    assert!(
        out.contains("⟨here⟩") && out.contains("→ \"\\\")\"") && out.contains("→ \"')\""),
        "{out}"
    );
    assert!(out.contains(r#"differs: "\"" vs "'""#), "{out}");
    let out = show(&args("else_elif")).unwrap();
    assert!(out.contains("no alt"), "{out}");
    let mut a = args("bracket_counting");
    a.json = true;
    let v: serde_json::Value = serde_json::from_str(&show(&a).unwrap()).unwrap();
    assert_eq!(v["task"], "bracket_counting");
    assert_eq!(v["pairs"].as_array().unwrap().len(), 2);
    assert_eq!(v["pairs"][0]["target"], "]]\n");
    let pairs: Vec<TaskPair> = serde_json::from_value(v["pairs"].clone()).unwrap();
    assert_eq!(
        pairs,
        split_seeded(by_name("bracket_counting").unwrap().as_ref(), Split::Test, 2, 5)
    );
    assert!(show(&args("no_such_task"))
        .unwrap_err()
        .to_string()
        .contains("unknown task"));
    // With a tokenizer: ids and single-token status.
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/tokenizers/tinypython_2k");
    let (enc, bpe) = (Path::new(dir).join("encoder.json"), Path::new(dir).join("vocab.bpe"));
    if enc.exists() && bpe.exists() {
        let tmp = tempfile::tempdir().unwrap();
        let tj = tmp.path().join("tokenizer.json");
        circuitscope::tokenize::import_gpt2_bpe(&enc, &bpe)
            .unwrap()
            .save(&tj)
            .unwrap();
        let mut a = args("bracket_counting");
        a.tokenizer = Some(tj);
        let out = show(&a).unwrap();
        assert!(
            out.contains("ids [1252] (single token)") && out.contains("ids [330] (single token)"),
            "{out}"
        );
        assert!(!out.contains("warning"), "{out}");
    }
    // Example pairs, one per task (visible with --nocapture).
    for t in registry() {
        let mut a = args(t.name());
        a.n = 1;
        a.split = Split::Train;
        a.seed = 0;
        a.lines = 3;
        eprintln!("{}", show(&a).unwrap());
    }
}

/// Real-looking code with every construct the wild miners look for.
const WILD_SOURCE: &str = r#"import os


def load(path, names):
    """Load things."""
    seen = set()
    for name in names:
        seen.add(name)
    text = ""
    for ch in path:
        text += ch
    grid = [[1, 2], [3, 4]]
    row = [width, height, depth]
    with open(path) as handle:
        data = handle.read()
    if data == None:
        raise ValueError("no data here")
    elif data:
        print('loaded file')
    else:
        pass
    key = lambda item: item
    flag = True
    mode = 1 if flag else 2
    for i, item in enumerate(names):
        pass
    for k in range(3):
        pass
    while True:
        break
    return True
"#;

#[test]
fn wild_pairs_differ_minimally_and_end_at_the_decision_point() {
    use circuitscope::data::tasks::wild;
    for &name in wild::WILD_TASKS {
        let pairs = wild::mine_document(name, WILD_SOURCE);
        if name == "set_or_string_fixedvarname" {
            assert!(pairs.is_empty(), "no variable named current here");
            continue;
        }
        assert!(!pairs.is_empty(), "{name}: nothing mined");
        let targets = by_name(name).unwrap().targets();
        for p in &pairs {
            let ctx = || format!("{name}: {p:?}");
            assert!(targets.contains(&p.target), "{}", ctx());
            if let Some(a) = &p.alt {
                assert!(targets.contains(a) && a != &p.target, "{}", ctx());
            } else {
                assert_eq!(name, "else_elif");
            }
            let (da, db, common_prefix) = diff_span(&p.prompt, &p.prompt_alt);
            let edit = levenshtein(da, db);
            assert!((1..=24).contains(&edit), "{}: edit {edit} ({da:?} vs {db:?})", ctx());
            assert!(common_prefix > 0, "{}", ctx());
            // One side is the file's own text up to the decision: the file continues with the target's
            // non-newline part (or, for pairs built from the other side's line, the other prompt is real).
            let real = |prompt: &str, target: Option<&String>| {
                target.is_some_and(|t| WILD_SOURCE.contains(&format!("{prompt}{}", t.trim_end_matches('\n'))))
            };
            assert!(
                real(&p.prompt, Some(&p.target))
                    || real(&p.prompt_alt, p.alt.as_ref())
                    || WILD_SOURCE.contains(&p.prompt_alt)
                    || WILD_SOURCE.contains(&p.prompt),
                "{}: neither side is real code",
                ctx()
            );
            for prompt in [&p.prompt, &p.prompt_alt] {
                let last = prompt.chars().last().unwrap();
                assert!(last.is_ascii_alphanumeric() || last == ')', "{}: ends {last:?}", ctx());
            }
        }
    }
    // Exact shapes of the key tasks.
    let b = wild::mine_document("bracket_counting", WILD_SOURCE);
    assert!(b
        .iter()
        .any(|p| p.prompt.ends_with("grid = [[1, 2], [3, 4") && p.prompt_alt.ends_with("grid = [[1, 2], 3, 4")));
    assert!(b
        .iter()
        .any(|p| p.prompt.ends_with("row = [width, height, [depth")
            && p.prompt_alt.ends_with("row = [width, height, depth")));
    let q = wild::mine_document("single_double_quote", WILD_SOURCE);
    assert!(
        q.iter()
            .any(|p| p.prompt.ends_with("ValueError(\"no data here")
                && p.prompt_alt.ends_with("ValueError('no data here"))
    );
    let s = wild::mine_document("set_or_string", WILD_SOURCE);
    assert!(s.iter().any(|p| p.prompt.contains("seen = set()")
        && p.prompt_alt.contains("seen = \"\"")
        && p.prompt.ends_with("seen")));
    // Tasks without a miner get none.
    assert!(wild::mine_document("var_swap", "a, b = b, a\n").is_empty());
}

#[test]
fn the_wild_split_reads_only_held_out_files_deterministically() {
    use circuitscope::data::corpus::{realcode, CorpusSource};
    use circuitscope::data::tasks::wild_split;
    let dir = tempfile::tempdir().unwrap();
    for i in 0..60 {
        std::fs::write(
            dir.path().join(format!("mod_{i}.py")),
            WILD_SOURCE.replace("grid", &format!("grid{i}")),
        )
        .unwrap();
    }
    let spec = format!("dir:{}", dir.path().display());
    let corpus = CorpusSource::parse(&spec).unwrap();
    let a = wild_split("bracket_counting", &corpus, 20).unwrap();
    assert_eq!(
        a,
        wild_split("bracket_counting", &CorpusSource::parse(&spec).unwrap(), 20).unwrap()
    );
    assert!(!a.is_empty());
    let held: Vec<usize> = (0..60)
        .filter(|i| realcode::is_held_out(&format!("mod_{i}.py")))
        .collect();
    for p in &a {
        let i: usize = p
            .prompt
            .split("grid")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(held.contains(&i), "mod_{i}.py is a training file");
    }
}

#[test]
fn the_eval_table_puts_the_wild_split_beside_the_test_split() {
    use circuitscope::analysis::eval::TaskScore;
    use circuitscope::cli::eval::markdown_table_with_wild;
    let s = |accuracy: f64, pairs: usize| TaskScore {
        accuracy,
        loss: 0.5,
        pairs,
    };
    let scores = vec![
        ("bracket_counting".to_owned(), s(0.97, 200)),
        ("var_swap".to_owned(), s(0.72, 200)),
    ];
    let wild = vec![
        ("bracket_counting".to_owned(), Some(s(0.3, 10))),
        ("var_swap".to_owned(), None),
    ];
    let t = markdown_table_with_wild(&scores, &wild, "stdlib", 1.5, 0.125, 200);
    // Losses are shown halved, as the workbench and the reports show them, and labelled so.
    assert!(
        t.contains("| bracket_counting | 0.970 | 0.2500 | 0.300 | 0.2500 | 10 |"),
        "{t}"
    );
    assert!(t.contains("| var_swap | 0.720 | 0.2500 | - | - | 0 |"), "{t}");
    assert!(
        t.contains("| contrast loss (halved) |") && t.contains("| wild loss (halved) |"),
        "{t}"
    );
    assert!(t.contains("Contrast loss halved"), "{t}");
    assert!(
        t.contains("1 of 2 tasks at ≥ 90%") && t.contains("0 of 1 tasks with wild pairs at ≥ 90%"),
        "{t}"
    );
}
