//! Corpus tests: the synthetic generator's determinism and composition, directory and jsonl corpora, splits,
//! errors naming file and line, and the `corpus` CLI helpers.

use std::fs;
use std::path::Path;

use circuitscope::cli::corpus::{corpus_stats, sample_documents, CorpusSampleArgs, CorpusStatsArgs};
use circuitscope::data::corpus::{
    CorpusError, CorpusSource, CorpusStats, EmptyCorpus, SpecProblem, Split, SyntheticCorpus, CONSTRUCTS,
    SYNTHETIC_HELD_OUT_START,
};

#[test]
fn synthetic_is_deterministic_per_seed_and_index() {
    let a = SyntheticCorpus::new(7);
    let b = SyntheticCorpus::new(7);
    for i in [0u64, 1, 2, 99, 12345, u64::MAX - 1] {
        assert_eq!(a.document(i), b.document(i), "index {i}");
    }
    // Order of generation does not matter.
    let forward: Vec<String> = a.documents(0..5).collect();
    let single: Vec<String> = (0..5).rev().map(|i| a.document(i)).rev().collect();
    assert_eq!(forward, single);
    // Different seeds and indices differ.
    let c = SyntheticCorpus::new(8);
    let differ = (0..20).filter(|&i| a.document(i) != c.document(i)).count();
    assert_eq!(differ, 20);
    assert_ne!(a.document(0), a.document(1));
}

#[test]
fn synthetic_documents_are_python_sized_and_indented() {
    let c = SyntheticCorpus::new(0);
    for (i, d) in c.documents(0..200).enumerate() {
        let n = d.chars().count();
        assert!((150..=4000).contains(&n), "document {i} has {n} chars:\n{d}");
        assert!(d.ends_with('\n'), "document {i} does not end with a newline");
        for line in d.lines() {
            let indent = line.len() - line.trim_start_matches(' ').len();
            assert_eq!(indent % 4, 0, "document {i}: indentation not a multiple of 4: {line:?}");
            assert!(indent <= 16, "document {i}: deeper than 4 levels: {line:?}");
            assert!(!line.contains('\t'));
            assert!(!line.ends_with(' '), "document {i}: trailing space: {line:?}");
        }
        // Brackets balance on every document (none is cut mid-literal).
        let opens = d.matches('[').count();
        let closes = d.matches(']').count();
        assert_eq!(opens, closes, "document {i}: unbalanced brackets\n{d}");
        assert_eq!(
            d.matches('(').count(),
            d.matches(')').count(),
            "document {i}: unbalanced parens\n{d}"
        );
    }
}

/// Minimum number of lines showing each construct in the first 200 documents.
const MIN_COUNTS: &[(&str, u64)] = &[
    ("list_stmt", 400),
    ("ends_]]", 150),
    ("ends_]", 300),
    ("nested_ends_]", 40),
    ("int_key_dict", 20),
    ("while_name", 20),
    ("def_last_=None", 40),
    ("print(\"label\", x)", 20),
    ("list_depth3", 30),
    ("dict_literal", 80),
    ("set_literal", 10),
    ("set_init", 40),
    ("str_init", 40),
    ("current_init", 30),
    (".add(", 40),
    ("+=", 100),
    ("current.add/+=", 30),
    ("with_open", 40),
    ("with_open_r", 15),
    ("with_open_w", 15),
    ("open_assign", 10),
    ("lambda", 30),
    ("lambda_assign", 10),
    ("def", 200),
    ("def_=None", 50),
    ("def_no_kwargs", 100),
    ("class", 20),
    ("__init__", 20),
    ("self.x = x", 40),
    ("for_range", 60),
    ("for_enumerate", 50),
    ("for_other", 60),
    ("while_true", 20),
    ("while_cond", 30),
    ("return_true", 30),
    ("if", 200),
    ("elif", 50),
    ("else", 60),
    ("ternary", 40),
    ("if_==", 80),
    ("== True :", 5),
    ("x = True", 20),
    ("swap", 20),
    ("fstring", 80),
    ("print(\"", 60),
    ("print('", 40),
    ("print(f", 40),
    ("comment", 50),
    ("import", 100),
    ("try/except", 5),
    ("indent_4", 30),
    ("main_guard", 10),
];

#[test]
fn every_construct_occurs_often_in_the_first_200_documents() {
    let c = SyntheticCorpus::new(0);
    let docs: Vec<String> = c.documents(0..200).collect();
    let stats = CorpusStats::of(docs.iter().map(String::as_str));
    let mut missing = Vec::new();
    for &(name, min) in MIN_COUNTS {
        assert!(CONSTRUCTS.iter().any(|c| c.name == name), "unknown construct {name}");
        let n = stats.count(name);
        if n < min {
            missing.push(format!("{name}: {n} < {min}"));
        }
    }
    assert!(
        missing.is_empty(),
        "too rare: {missing:?}\nall counts: {:?}",
        stats.constructs
    );
    // Every construct the stats know is covered by the table above.
    for c in CONSTRUCTS {
        assert!(
            MIN_COUNTS.iter().any(|(n, _)| *n == c.name),
            "no minimum for {}",
            c.name
        );
    }
    // About 15% of statement lines are list statements.
    let share = stats.count("list_stmt") as f64 / stats.statement_lines as f64;
    assert!((0.10..=0.25).contains(&share), "list statement share {share}");
    // Both endings of the bracket task, and both quotes of the quote task, in realistic proportions.
    let text = docs.concat();
    assert!(text.matches("]]\n").count() > 100);
    assert!(text.matches("(\"").count() > 100 && text.matches("('").count() > 100);
    assert!(text.matches("\")").count() > 100 && text.matches("')").count() > 100);
    assert!(text.matches("=None").count() > 50);
    assert!(text.matches(" enumerate(").count() > 50 && text.matches(" range(").count() > 50);
    assert!(text.matches(" as ").count() > 40);
}

#[test]
fn spec_parsing() {
    assert_eq!(
        CorpusSource::parse("synthetic").unwrap(),
        CorpusSource::Synthetic { seed: 0 }
    );
    assert_eq!(
        CorpusSource::parse("synthetic:42").unwrap(),
        CorpusSource::Synthetic { seed: 42 }
    );
    let e = CorpusSource::parse("synthetic:abc").unwrap_err();
    assert!(
        matches!(
            e,
            CorpusError::BadSpec {
                reason: SpecProblem::SyntheticSeed(_),
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("synthetic:abc"), "{e}");
    match CorpusSource::parse("mix:synthetic=0").unwrap_err() {
        CorpusError::BadSpec {
            reason: SpecProblem::WeightNotPositive { part },
            ..
        } => assert_eq!(part, "synthetic"),
        e => panic!("{e}"),
    }
    let e = CorpusSource::parse("/definitely/not/here").unwrap_err();
    assert!(matches!(e, CorpusError::NotFound { .. }));
    assert!(e.to_string().contains("/definitely/not/here"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let txt = dir.path().join("notes.txt");
    fs::write(&txt, "x = 1\n").unwrap();
    let e = CorpusSource::parse(txt.to_str().unwrap()).unwrap_err();
    assert!(matches!(e, CorpusError::NotACorpus { .. }), "{e}");
    assert!(e.to_string().contains("notes.txt"), "{e}");
}

#[test]
fn synthetic_splits_are_disjoint_index_ranges() {
    let src = CorpusSource::parse("synthetic:3").unwrap();
    let train: Vec<String> = src.train().unwrap().take(3).collect();
    let all: Vec<String> = src.documents().unwrap().take(3).collect();
    let held: Vec<String> = src.held_out().unwrap().take(3).collect();
    let c = SyntheticCorpus::new(3);
    assert_eq!(train, c.documents(0..3).collect::<Vec<_>>());
    assert_eq!(all, train);
    assert_eq!(
        held,
        c.documents(SYNTHETIC_HELD_OUT_START..SYNTHETIC_HELD_OUT_START + 3)
            .collect::<Vec<_>>()
    );
    assert!(held.iter().all(|h| !train.contains(h)));
}

fn write(path: &Path, bytes: &[u8]) {
    if let Some(p) = path.parent() {
        fs::create_dir_all(p).unwrap();
    }
    fs::write(path, bytes).unwrap();
}

#[test]
fn directory_corpus_reads_text_files_recursively_and_skips_binary() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(&root.join("b.py"), b"print('b')\n");
    write(&root.join("a.py"), b"print('a')\n");
    write(&root.join("sub/deeper/c.txt"), b"c = 3\n");
    write(&root.join("sub/binary.bin"), &[0x00, 0x01, 0x02, 0xff]);
    write(&root.join("sub/latin1.txt"), &[b'c', 0xe9, b'\n']);
    write(&root.join("empty.py"), b"");
    write(&root.join(".hidden/secret.py"), b"nope\n");
    let src = CorpusSource::parse(root.to_str().unwrap()).unwrap();
    assert_eq!(src, CorpusSource::Directory(root.to_path_buf()));
    let mut docs = src.split(Split::All).unwrap();
    let texts: Vec<String> = docs.by_ref().collect();
    assert_eq!(texts, vec!["print('a')\n", "print('b')\n", "c = 3\n"]);
    assert_eq!(docs.skipped(), 2);

    // An empty directory is an error naming it.
    let empty = tempfile::tempdir().unwrap();
    let e = CorpusSource::parse(empty.path().to_str().unwrap())
        .unwrap()
        .documents()
        .err()
        .expect("empty directory");
    assert!(e.to_string().contains(&empty.path().display().to_string()), "{e}");
}

#[test]
fn file_corpora_hold_out_every_20th_document() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("docs.jsonl");
    let lines: Vec<String> = (0..45)
        .map(|i| serde_json::json!({ "text": format!("x = {i}\n") }).to_string())
        .collect();
    fs::write(&path, lines.join("\n") + "\n\n").unwrap();
    let src = CorpusSource::parse(path.to_str().unwrap()).unwrap();
    assert_eq!(src, CorpusSource::Jsonl(path.clone()));
    assert_eq!(src.documents().unwrap().count(), 45);
    let held: Vec<String> = src.held_out().unwrap().collect();
    assert_eq!(held, vec!["x = 19\n", "x = 39\n"]);
    let train: Vec<String> = src.train().unwrap().collect();
    assert_eq!(train.len(), 43);
    assert!(held.iter().all(|h| !train.contains(h)));
}

#[test]
fn jsonl_errors_name_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str, usize, &str)] = &[
        (
            "no_text.jsonl",
            "{\"text\": \"a\"}\n{\"body\": \"b\"}\n",
            2,
            "no \"text\" field",
        ),
        (
            "bad_json.jsonl",
            "{\"text\": \"a\"}\n\n{\"text\": \"b\"\n",
            3,
            "invalid JSON",
        ),
        ("not_string.jsonl", "{\"text\": 5}\n", 1, "must be a string"),
        ("not_object.jsonl", "[1, 2]\n", 1, "JSON object"),
    ];
    for &(name, content, line, what) in cases {
        let path = dir.path().join(name);
        fs::write(&path, content).unwrap();
        let e = CorpusSource::parse(path.to_str().unwrap())
            .unwrap()
            .documents()
            .err()
            .unwrap_or_else(|| panic!("{name} should fail"));
        match &e {
            CorpusError::Jsonl { line: l, .. } => assert_eq!(*l, line, "{name}: {e}"),
            other => panic!("{name}: unexpected error {other}"),
        }
        let msg = e.to_string();
        assert!(msg.contains(&format!("{name}:{line}:")), "{msg}");
        assert!(msg.contains(what), "{msg}");
    }
    let empty = dir.path().join("empty.jsonl");
    fs::write(&empty, "\n\n").unwrap();
    let e = CorpusSource::parse(empty.to_str().unwrap())
        .unwrap()
        .documents()
        .err()
        .expect("empty jsonl");
    assert!(
        matches!(
            e,
            CorpusError::Empty {
                why: EmptyCorpus::NoLines,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().ends_with("has no documents (no non-blank lines)"), "{e}");
}

#[test]
fn cli_sample_and_stats() {
    let args = CorpusSampleArgs {
        corpus: "synthetic:5".into(),
        n: 2,
        seed: None,
        start: 10,
        json: false,
    };
    let docs = sample_documents(&args).unwrap();
    let c = SyntheticCorpus::new(5);
    assert_eq!(docs, vec![c.document(10), c.document(11)]);
    let docs = sample_documents(&CorpusSampleArgs {
        seed: Some(9),
        ..args.clone()
    })
    .unwrap();
    assert_eq!(docs[0], SyntheticCorpus::new(9).document(10));

    // File corpora: a seeded sample is deterministic and a subset.
    let dir = tempfile::tempdir().unwrap();
    for i in 0..30 {
        write(&dir.path().join(format!("f{i:02}.py")), format!("v = {i}\n").as_bytes());
    }
    let file_args = CorpusSampleArgs {
        corpus: dir.path().to_str().unwrap().into(),
        n: 5,
        seed: Some(1),
        start: 0,
        json: true,
    };
    let s1 = sample_documents(&file_args).unwrap();
    let s2 = sample_documents(&file_args).unwrap();
    assert_eq!(s1, s2);
    assert_eq!(s1.len(), 5);

    let (stats, tokens) = corpus_stats(&CorpusStatsArgs {
        corpus: "synthetic".into(),
        docs: 20,
        tokenizer: None,
        json: false,
    })
    .unwrap();
    assert_eq!(stats.documents, 20);
    assert!(stats.chars > 20 * 200);
    assert!(tokens.is_none());

    // With a tokenizer: token counts.
    let tok = circuitscope::tokenize::train::train_bpe(SyntheticCorpus::new(0).documents(0..20), 300, &[]).unwrap();
    let tok_path = dir.path().join("tok.json");
    tok.save(&tok_path).unwrap();
    let (_, tokens) = corpus_stats(&CorpusStatsArgs {
        corpus: "synthetic".into(),
        docs: 20,
        tokenizer: Some(tok_path),
        json: true,
    })
    .unwrap();
    let tokens = tokens.unwrap();
    assert_eq!(tokens.vocab_size, 300);
    assert!(tokens.tokens > 0 && tokens.chars_per_token > 1.2, "{tokens:?}");
}

/// Prints the composition of the first 1000 synthetic documents (`cargo test --test integration corpus:: -- --ignored
/// --nocapture`).
#[test]
#[ignore]
fn report_first_1000() {
    let c = SyntheticCorpus::new(0);
    let docs: Vec<String> = c.documents(0..1000).collect();
    let stats = CorpusStats::of(docs.iter().map(String::as_str));
    println!("{}", serde_json::to_string_pretty(&stats).unwrap());
    if let Ok(path) = std::env::var("CORPUS_DUMP") {
        let lines: Vec<String> = docs
            .iter()
            .map(|d| serde_json::json!({ "text": d }).to_string())
            .collect();
        fs::write(path, lines.join("\n") + "\n").unwrap();
    }
    let show: Vec<usize> = std::env::var("SHOW")
        .ok()
        .map(|v| v.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or(vec![0, 1, 2]);
    for i in show {
        println!("# ----- document {i}\n{}", docs[i]);
    }
}

/// The clap definitions parse as `main.rs` will use them (`circuitscope corpus ...`).
#[test]
fn cli_parses() {
    use circuitscope::cli::corpus::CorpusCommand;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(subcommand)]
        command: CorpusCommand,
    }
    <Cli as clap::CommandFactory>::command().debug_assert();
    let cli = Cli::try_parse_from(["corpus", "sample", "-n", "2", "--seed", "4", "--json"]).unwrap();
    match cli.command {
        CorpusCommand::Sample(a) => {
            assert_eq!(
                (a.n, a.seed, a.json, a.corpus.as_str()),
                (2, Some(4), true, "synthetic")
            );
        }
        CorpusCommand::Stats(_) => panic!("expected sample"),
    }
    let cli = Cli::try_parse_from(["corpus", "stats", "--corpus", "synthetic:3", "--docs", "50"]).unwrap();
    match cli.command {
        CorpusCommand::Stats(a) => assert_eq!((a.docs, a.corpus.as_str(), a.json), (50, "synthetic:3", false)),
        CorpusCommand::Sample(_) => panic!("expected stats"),
    }
}

fn code_tree(n: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("pkg/tests")).unwrap();
    for i in 0..n {
        fs::write(
            dir.path().join(format!("pkg/m{i}.py")),
            format!(
                "def f{i}(x):\n    \"\"\"Doc {i}.\n\n    a\n    b\n    c\n    d\n    \"\"\"\n    return [x, {i}]\n"
            ),
        )
        .unwrap();
    }
    fs::write(dir.path().join("pkg/tests/test_m.py"), "assert True\n").unwrap();
    fs::write(dir.path().join("pkg/uni.py"), "s = 'caf\u{e9}'\n").unwrap();
    dir
}

#[test]
fn real_code_is_cleaned_and_held_out_by_file() {
    let dir = code_tree(80);
    let spec = format!("dir:{}", dir.path().display());
    let src = CorpusSource::parse(&spec).unwrap();
    let all: Vec<String> = src.split(Split::All).unwrap().collect();
    assert_eq!(all.len(), 80, "the test file and the non-ASCII file are dropped");
    assert!(
        all.iter().all(|d| d.contains("\"\"\"Doc ") && !d.contains("    a\n")),
        "long docstrings cut"
    );
    let train: Vec<String> = src.train().unwrap().collect();
    let held: Vec<String> = src.held_out().unwrap().collect();
    assert_eq!(train.len() + held.len(), 80);
    assert!(!held.is_empty());
    for h in &held {
        assert!(!train.contains(h), "a held-out file is in the training split");
    }
    // The split is by path: the same files under another seed (another order) split the same way.
    let other = CorpusSource::parse(&format!("{spec}:9")).unwrap();
    let mut h2: Vec<String> = other.held_out().unwrap().collect();
    let mut h1 = held.clone();
    h1.sort();
    h2.sort();
    assert_eq!(h1, h2);
}

#[test]
fn mixes_are_deterministic_and_follow_their_weights() {
    let dir = code_tree(200);
    let spec = format!("mix:dir:{}=0.7,synthetic=0.3,seed=3", dir.path().display());
    let a: Vec<String> = CorpusSource::parse(&spec).unwrap().train().unwrap().take(150).collect();
    let b: Vec<String> = CorpusSource::parse(&spec).unwrap().train().unwrap().take(150).collect();
    assert_eq!(a, b);
    let other: Vec<String> = CorpusSource::parse(&spec.replace("seed=3", "seed=4"))
        .unwrap()
        .train()
        .unwrap()
        .take(150)
        .collect();
    assert_ne!(a, other, "the seed changes the order");
    let src = CorpusSource::parse(&spec).unwrap();
    assert_eq!(src.parts().len(), 2);
    // Each prefix follows the weights to within one document.
    let (mut real, mut synth, mut longest) = (0usize, 0usize, 0usize);
    for (part, d) in src.split_labelled(Split::Train).unwrap().take(150) {
        longest = longest.max(d.len());
        if part == 0 {
            real += d.len()
        } else {
            synth += d.len()
        }
        let target = 0.7 * (real + synth) as f64;
        assert!(
            (real as f64 - target).abs() <= longest as f64,
            "real {real} synthetic {synth}"
        );
    }
    assert!(real > 0 && synth > 0);
    // Existing specs still parse as before.
    assert_eq!(
        CorpusSource::parse("synthetic:5").unwrap(),
        CorpusSource::Synthetic { seed: 5 }
    );
    assert!(CorpusSource::parse("mix:synthetic=abc").is_err());
    assert!(CorpusSource::parse("mix:").is_err());
}
