//! Tokenizer tests. The `tinypython_2k` files are public data kept outside
//! the repository (`../shared/tokenizers/tinypython_2k`); tests that need
//! them print a note and pass when they are absent.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use circuitscope::cli::tokenize::{format_json, format_table, run_import, TokenizerImportArgs};
use circuitscope::tokenize::bytes::{byte_to_char, bytes_to_symbols, rank_to_byte};
use circuitscope::tokenize::reference::TiktokenBpe;
use circuitscope::tokenize::{
    import_gpt2_bpe, read_gpt2_bpe, LoadProblem, MergeLineProblem, TokenizeError, Tokenizer, VocabDisagreement,
    TINYPYTHON_PATTERN,
};

const SHARED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/tokenizers/tinypython_2k");

fn shared_files() -> Option<(PathBuf, PathBuf)> {
    let dir = Path::new(SHARED);
    let enc = dir.join("encoder.json");
    let bpe = dir.join("vocab.bpe");
    if enc.is_file() && bpe.is_file() {
        Some((enc, bpe))
    } else {
        eprintln!("note: {SHARED} not found; skipping test that needs tinypython_2k");
        None
    }
}

/// The imported tinypython_2k tokenizer, built once.
fn tp() -> Option<&'static Tokenizer> {
    static TOK: OnceLock<Option<Tokenizer>> = OnceLock::new();
    TOK.get_or_init(|| {
        let (enc, bpe) = shared_files()?;
        Some(import_gpt2_bpe(&enc, &bpe).expect("import tinypython_2k"))
    })
    .as_ref()
}

fn reference() -> Option<&'static TiktokenBpe> {
    static REF: OnceLock<Option<TiktokenBpe>> = OnceLock::new();
    REF.get_or_init(|| {
        let (enc, bpe) = shared_files()?;
        let parsed = read_gpt2_bpe(&enc, &bpe).expect("read tinypython_2k");
        Some(TiktokenBpe::from_gpt2(&parsed, TINYPYTHON_PATTERN).expect("reference"))
    })
    .as_ref()
}

const KNOWN: &[(&str, u32)] = &[
    ("\")", 1644),
    ("')", 956),
    ("(\"", 449),
    ("('", 519),
    ("]\n", 330),
    ("]]\n", 1252),
    ("]]", 1008),
    ("],", 383),
    (" [[", 833),
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
    ("'", 6),
    (" :", 1058),
    ("(", 7),
    (" True", 635),
    ("\n", 198),
    ("    ", 257),
    ("current", 1559),
    ("lambda", 1151),
    (" else", 486),
    ("e", 68),
    ("lse", 476),
    ("lif", 610),
];

const SNIPPETS: &[&str] = &[
    "def f(x):\n    return x + 1\n",
    "for i, row in enumerate(grid):\n    for j in range(len(row)):\n        if row[j] == '#':\n            seen.add((i, j))\n",
    "class Foo(object):\n    def __init__(self, a=None):\n        self.a = a\n\n    def __repr__(self):\n        return f\"Foo({self.a!r})\"\n",
    "x = [[1, 2], [3, 4]]\nprint(x[0][1])\n",
    "d = {'a': 1, \"b\": 2}\nfor k, v in d.items():\n\tprint(k, v)\r\n",
    "if a:\n    pass\nelif b:\n    pass\nelse:\n    raise ValueError('bad')\n",
    "f = lambda s: s.strip().split(',')\nwith open('x.txt', 'w') as fh:\n    fh.write(\"héllo wörld ✓ 日本語\\n\")\n",
    "total += 12345678 * 3.14e-10  # comment with  double  spaces   \n\n\n",
    "   \n  \t \n",
    "<|endoftext|>def g():\n    return None<|endoftext|>",
    "emoji 🎉🐍 and nul \u{0} and del \u{7f} and nbsp \u{a0}.",
    "",
];

#[test]
fn known_ids_are_single_tokens() {
    let Some(tok) = tp() else { return };
    for &(s, id) in KNOWN {
        assert_eq!(tok.encode(s).unwrap(), vec![id], "encoding {s:?}");
        assert_eq!(tok.token_bytes(id).as_deref(), Some(s.as_bytes()), "bytes of {id}");
        assert_eq!(tok.token_display(id), s);
        assert_eq!(tok.id_of_bytes(s.as_bytes()), Some(id));
    }
}

#[test]
fn vocab_layout() {
    let Some(tok) = tp() else { return };
    assert_eq!(tok.vocab_size(), 2048);
    assert_eq!(tok.eot_id(), Some(2047));
    assert_eq!(tok.token_bytes(0), Some(b"!".to_vec()));
    assert_eq!(tok.token_bytes(187), Some(vec![0xFF]));
    assert_eq!(tok.token_bytes(188), Some(vec![0x00]));
    assert_eq!(tok.token_bytes(2046), None);
    assert_eq!(tok.token_bytes(2047), Some(b"<|endoftext|>".to_vec()));
    assert_eq!(tok.token_bytes(2048), None);
    assert_eq!(tok.token_bytes(u32::MAX), None);
    for id in 0..2046 {
        assert!(tok.token_bytes(id).is_some(), "id {id} has bytes");
    }
    // Display decoding is lossy.
    assert_eq!(tok.token_display(187), "\u{FFFD}");
    assert!(matches!(
        tok.decode_bytes(&[0, 2046]),
        Err(TokenizeError::UnknownId(2046))
    ));
    assert_eq!(tok.decode(&[0, 2046, 0]), "!\u{FFFD}!");
}

#[test]
fn every_byte_is_one_token() {
    let Some(tok) = tp() else { return };
    for r in 0..=255u8 {
        let b = rank_to_byte(r);
        assert_eq!(tok.token_bytes(r as u32), Some(vec![b]));
        assert_eq!(tok.id_of_bytes(&[b]), Some(r as u32));
    }
}

#[test]
fn endoftext_is_ordinary_text_by_default() {
    let Some(tok) = tp() else { return };
    assert_eq!(tok.encode("<|endoftext|>").unwrap(), vec![453, 448, 451]);
    assert_eq!(tok.encode_with_specials("<|endoftext|>").unwrap(), vec![2047]);
    let mixed = tok.encode_with_specials("a<|endoftext|>b").unwrap();
    let mut expect = tok.encode("a").unwrap();
    expect.push(2047);
    expect.extend(tok.encode("b").unwrap());
    assert_eq!(mixed, expect);
    // <|startoftext|> is not special at all.
    let ids = tok.encode_with_specials("<|startoftext|>").unwrap();
    assert!(!ids.contains(&2046) && !ids.contains(&2047));
}

#[test]
fn snippets_round_trip() {
    let Some(tok) = tp() else { return };
    for s in SNIPPETS {
        let ids = tok.encode(s).unwrap();
        assert_eq!(&tok.decode(&ids), s);
        assert_eq!(tok.decode_bytes(&ids).unwrap(), s.as_bytes());
        assert!(ids.iter().all(|&id| id < 2046), "{s:?} gave {ids:?}");
        // The ByteLevel decoder of the wrapped tokenizer agrees.
        assert_eq!(&tok.inner().decode(&ids, false).unwrap(), s);
    }
}

fn assert_matches_tiktoken(tok: &Tokenizer, reference: &TiktokenBpe, text: &str) {
    let ours = tok.encode(text).unwrap();
    let theirs = reference.encode_ordinary(text);
    assert_eq!(ours, theirs, "ids differ from tiktoken's for {text:?}");
}

#[test]
fn matches_tiktoken_reference_on_snippets() {
    let (Some(tok), Some(reference)) = (tp(), reference()) else {
        return;
    };
    for s in SNIPPETS {
        assert_matches_tiktoken(tok, reference, s);
    }
    for &(s, _) in KNOWN {
        assert_matches_tiktoken(tok, reference, s);
    }
    for n in 1..=64 {
        assert_matches_tiktoken(tok, reference, &" ".repeat(n));
        assert_matches_tiktoken(tok, reference, &format!("{}x", " ".repeat(n)));
        assert_matches_tiktoken(tok, reference, &format!("\n{}if", " ".repeat(n)));
    }
}

/// Real Python source, when the machine has some (the system Python's
/// standard library).
#[test]
fn matches_tiktoken_reference_on_python_sources() {
    let (Some(tok), Some(reference)) = (tp(), reference()) else {
        return;
    };
    let mut files: Vec<PathBuf> = ["/usr/lib/python3", "/usr/lib/python3.11", "/usr/lib/python3.12"]
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "py"))
        .collect();
    files.sort();
    files.truncate(40);
    if files.is_empty() {
        eprintln!("note: no Python sources found; skipping");
    }
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        let text: String = text.chars().take(20_000).collect();
        let ids = tok.encode(&text).unwrap();
        assert_eq!(ids, reference.encode_ordinary(&text), "{}", f.display());
        assert_eq!(tok.decode(&ids), text);
    }
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn matches_tiktoken_and_round_trips(
            s in "[ \\t\\n\\r_a-zA-Z0-9()\\[\\]{}:=.,'\"#+*<>|\\-é日🐍]{0,40}"
        ) {
            let (Some(tok), Some(reference)) = (tp(), reference()) else { return Ok(()) };
            let ids = tok.encode(&s).unwrap();
            prop_assert_eq!(&ids, &reference.encode_ordinary(&s));
            prop_assert_eq!(tok.decode(&ids), s);
        }

        #[test]
        fn arbitrary_text_round_trips(s in any::<String>()) {
            let (Some(tok), Some(reference)) = (tp(), reference()) else { return Ok(()) };
            let ids = tok.encode(&s).unwrap();
            prop_assert_eq!(&ids, &reference.encode_ordinary(&s));
            prop_assert_eq!(tok.decode(&ids), s);
        }
    }
}

#[test]
fn save_then_load_gives_identical_ids() {
    let Some(tok) = tp() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    tok.save(&path).unwrap();
    let loaded = Tokenizer::load(&path).unwrap();
    assert_eq!(loaded.vocab_size(), 2048);
    assert_eq!(loaded.eot_id(), Some(2047));
    assert_eq!(loaded.token_bytes(2046), None);
    assert_eq!(loaded.encode("<|endoftext|>").unwrap(), vec![453, 448, 451]);
    for s in SNIPPETS {
        assert_eq!(loaded.encode(s).unwrap(), tok.encode(s).unwrap(), "{s:?}");
    }
    for id in 0..2050 {
        assert_eq!(loaded.token_bytes(id), tok.token_bytes(id), "id {id}");
    }
    // Saving again gives the same file.
    let path2 = dir.path().join("again.json");
    loaded.save(&path2).unwrap();
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        std::fs::read_to_string(&path2).unwrap()
    );
}

// ---------------------------------------------------------------------------
// A tiny synthetic GPT-2 style file pair (no shared data needed).

const TOY_MERGES: &[(&str, &str)] = &[("Ġ", "Ġ"), ("i", "n"), ("Ġ", "in"), ("ĠĠ", "ĠĠ")];

fn toy_encoder() -> BTreeMap<String, u32> {
    let mut enc = BTreeMap::new();
    let mut ranks: Vec<String> = (0..=255u8).map(|r| byte_to_char(rank_to_byte(r)).to_string()).collect();
    for (a, b) in TOY_MERGES {
        ranks.push(format!("{a}{b}"));
    }
    for (i, t) in ranks.into_iter().enumerate() {
        enc.insert(t, i as u32);
    }
    let n = enc.len() as u32;
    enc.insert("<|startoftext|>".into(), n);
    enc.insert("<|endoftext|>".into(), n + 1);
    enc
}

fn toy_bpe_text() -> String {
    let mut s = String::from("# BPE Encoder v3\n");
    for (a, b) in TOY_MERGES {
        s.push_str(&format!("{a} {b}\n"));
    }
    s
}

fn write_toy(dir: &Path, encoder: &str, bpe: &str) -> (PathBuf, PathBuf) {
    let enc = dir.join("encoder.json");
    let voc = dir.join("vocab.bpe");
    std::fs::write(&enc, encoder).unwrap();
    std::fs::write(&voc, bpe).unwrap();
    (enc, voc)
}

fn toy_encoder_text() -> String {
    serde_json::to_string(&toy_encoder()).unwrap()
}

#[test]
fn toy_import_works() {
    let dir = tempfile::tempdir().unwrap();
    let (enc, voc) = write_toy(dir.path(), &toy_encoder_text(), &toy_bpe_text());
    let tok = import_gpt2_bpe(&enc, &voc).unwrap();
    assert_eq!(tok.vocab_size(), 262);
    assert_eq!(tok.eot_id(), Some(261));
    assert_eq!(tok.token_bytes(260), None);
    assert_eq!(tok.encode(" in").unwrap(), vec![258]);
    assert_eq!(tok.encode("    ").unwrap(), vec![259]);
    let sp = rank_of(b' ');
    // `\s+(?!\S)` leaves the last space to the word.
    assert_eq!(tok.encode("    x").unwrap(), vec![256, sp, sp, rank_of(b'x')]);
    assert!(!tok.encode("<|endoftext|>").unwrap().contains(&261));
    assert_eq!(tok.encode_with_specials("<|endoftext|>").unwrap(), vec![261]);
    let s = "  in in\n\tx";
    assert_eq!(tok.decode(&tok.encode(s).unwrap()), s);
    assert_eq!(bytes_to_symbols(b" \n"), "ĠĊ");
}

fn rank_of(b: u8) -> u32 {
    (0..=255u8).position(|r| rank_to_byte(r) == b).unwrap() as u32
}

#[test]
fn missing_trailing_newline_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let bpe = toy_bpe_text();
    let (enc, voc) = write_toy(dir.path(), &toy_encoder_text(), bpe.trim_end_matches('\n'));
    let parsed = read_gpt2_bpe(&enc, &voc).unwrap();
    assert!(parsed.missing_trailing_newline);
    assert_eq!(parsed.merges.len(), TOY_MERGES.len());
    assert_eq!(import_gpt2_bpe(&enc, &voc).unwrap().encode("    ").unwrap(), vec![259]);
}

#[test]
fn error_missing_encoder_json() {
    let dir = tempfile::tempdir().unwrap();
    let (_, voc) = write_toy(dir.path(), "{}", &toy_bpe_text());
    let missing = dir.path().join("nope").join("encoder.json");
    let err = import_gpt2_bpe(&missing, &voc).unwrap_err();
    assert!(matches!(err, TokenizeError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains(&missing.display().to_string()), "{err}");
}

#[test]
fn error_missing_vocab_bpe() {
    let dir = tempfile::tempdir().unwrap();
    let (enc, _) = write_toy(dir.path(), &toy_encoder_text(), "");
    let missing = dir.path().join("missing.bpe");
    let err = import_gpt2_bpe(&enc, &missing).unwrap_err();
    assert!(matches!(err, TokenizeError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("missing.bpe"), "{err}");
}

#[test]
fn error_corrupt_json() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = toy_encoder_text();
    text.truncate(text.len() / 2);
    let (enc, voc) = write_toy(dir.path(), &text, &toy_bpe_text());
    let err = import_gpt2_bpe(&enc, &voc).unwrap_err();
    assert!(matches!(err, TokenizeError::Json { .. }), "{err:?}");
    assert!(err.to_string().contains("encoder.json"), "{err}");

    let (enc, voc) = write_toy(dir.path(), r#"{"a": "not an id"}"#, &toy_bpe_text());
    let err = import_gpt2_bpe(&enc, &voc).unwrap_err();
    assert!(matches!(err, TokenizeError::Json { .. }), "{err:?}");
}

#[test]
fn error_malformed_merge_line() {
    let dir = tempfile::tempdir().unwrap();
    let bpe = toy_bpe_text().replace("i n\n", "in\n");
    let (enc, voc) = write_toy(dir.path(), &toy_encoder_text(), &bpe);
    let err = import_gpt2_bpe(&enc, &voc).unwrap_err();
    match &err {
        TokenizeError::MalformedMerge {
            line, content, reason, ..
        } => {
            assert_eq!(*line, 3);
            assert_eq!(content, "in");
            assert_eq!(*reason, MergeLineProblem::PartCount { found: 1 });
        }
        other => panic!("unexpected {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("vocab.bpe:3"), "{msg}");

    // Three parts, and a blank line, are malformed too.
    for bad in ["i n x\n", "\n"] {
        let bpe = toy_bpe_text().replace("i n\n", bad);
        let (enc, voc) = write_toy(dir.path(), &toy_encoder_text(), &bpe);
        assert!(matches!(
            import_gpt2_bpe(&enc, &voc),
            Err(TokenizeError::MalformedMerge { line: 3, .. })
        ));
    }
}

#[test]
fn error_merge_with_unknown_token() {
    let dir = tempfile::tempdir().unwrap();
    // "in" is only made by the following merge.
    let bpe = toy_bpe_text().replace("i n\nĠ in\n", "Ġ in\ni n\n");
    let (enc, voc) = write_toy(dir.path(), &toy_encoder_text(), &bpe);
    let err = import_gpt2_bpe(&enc, &voc).unwrap_err();
    match &err {
        TokenizeError::UnknownMergeToken { line, token, .. } => {
            assert_eq!(*line, 3);
            assert_eq!(token, "in");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn error_inconsistent_files() {
    let dir = tempfile::tempdir().unwrap();
    // One merge fewer than encoder.json lists.
    let bpe = toy_bpe_text().replace("ĠĠ ĠĠ\n", "");
    let (enc, voc) = write_toy(dir.path(), &toy_encoder_text(), &bpe);
    let err = import_gpt2_bpe(&enc, &voc).unwrap_err();
    match &err {
        TokenizeError::Inconsistent { detail, .. } => assert_eq!(
            **detail,
            VocabDisagreement::NotMade {
                token: "ĠĠĠĠ".into(),
                id: 259
            }
        ),
        other => panic!("unexpected {other:?}"),
    }

    // Swapped ids.
    let mut e = toy_encoder();
    e.insert("in".into(), 258);
    e.insert("Ġin".into(), 257);
    let (enc, voc) = write_toy(dir.path(), &serde_json::to_string(&e).unwrap(), &toy_bpe_text());
    let err = import_gpt2_bpe(&enc, &voc).unwrap_err();
    match &err {
        TokenizeError::Inconsistent { detail, .. } => {
            assert!(matches!(**detail, VocabDisagreement::IdIsNotRank { .. }), "{detail:?}")
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("encoder.json"), "{err}");
}

#[test]
fn load_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent.json");
    let err = Tokenizer::load(&missing).unwrap_err();
    assert!(err.to_string().contains("absent.json"), "{err}");
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{not json").unwrap();
    let err = Tokenizer::load(&bad).unwrap_err();
    assert!(
        matches!(
            err,
            TokenizeError::Load {
                problem: LoadProblem::Json(_),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("bad.json"), "{err}");
}

// ---------------------------------------------------------------------------
// CLI

#[test]
fn cli_import_refuses_overwrite_and_output_formats() {
    let dir = tempfile::tempdir().unwrap();
    let (enc, voc) = write_toy(dir.path(), &toy_encoder_text(), &toy_bpe_text());
    let out = dir.path().join("tok.json");
    let args = TokenizerImportArgs {
        encoder_json: enc,
        vocab_bpe: voc,
        output: out.clone(),
        force: false,
    };
    run_import(args.clone()).unwrap();
    let err = run_import(args.clone()).unwrap_err();
    assert!(err.to_string().contains("--force"), "{err}");
    run_import(TokenizerImportArgs { force: true, ..args }).unwrap();

    let tok = Tokenizer::load(&out).unwrap();
    let ids = tok.encode(" in\n").unwrap();
    let nl = rank_of(b'\n');
    assert_eq!(ids, vec![258, nl]);
    assert_eq!(
        format_json(&tok, &ids),
        format!("{{\"ids\":[258,{nl}],\"tokens\":[\" in\",\"\\n\"]}}\n")
    );
    let table = format_table(&tok, &ids);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].contains("idx") && lines[0].contains("id") && lines[0].contains("token"));
    assert!(lines[1].ends_with("258  \" in\""), "{table}");
    assert!(lines[2].ends_with(&format!("{nl}  \"\\n\"")), "{table}");
}

/// Runs the built binary, if `src/main.rs` wires the tokenize commands.
#[test]
fn cli_binary_tokenize() {
    let Some((enc, voc)) = shared_files() else {
        return;
    };
    let exe = env!("CARGO_BIN_EXE_circuitscope");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tokenizer.json");
    let import = std::process::Command::new(exe)
        .args(["tokenizer", "import"])
        .arg(&enc)
        .arg(&voc)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    if !out.exists() {
        eprintln!(
            "note: `circuitscope tokenizer import` not available (main.rs not wired?): {}",
            String::from_utf8_lossy(&import.stderr)
        );
        return;
    }
    assert!(import.status.success());
    // Second import without --force must fail.
    let again = std::process::Command::new(exe)
        .args(["tokenizer", "import"])
        .arg(&enc)
        .arg(&voc)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(!again.status.success());

    let run = std::process::Command::new(exe)
        .arg("tokenize")
        .arg("--tokenizer")
        .arg(&out)
        .arg("--json")
        .args(["--text", "<|endoftext|>"])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let v: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(v["ids"], serde_json::json!([453, 448, 451]));
    assert_eq!(v["tokens"].as_array().unwrap().len(), 3);

    // stdin, table output
    use std::io::Write;
    let mut child = std::process::Command::new(exe)
        .arg("tokenize")
        .arg("--tokenizer")
        .arg(&out)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"):\n").unwrap();
    let res = child.wait_with_output().unwrap();
    assert!(res.status.success());
    let table = String::from_utf8(res.stdout).unwrap();
    assert!(table.contains("293") && table.contains("\"):\\n\""), "{table}");
}
