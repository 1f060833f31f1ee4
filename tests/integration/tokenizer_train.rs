//! BPE training tests: determinism, round trips, required single tokens, the id layout, errors, and the
//! `tokenizer train` CLI helpers.

use std::sync::OnceLock;

use circuitscope::cli::tokenizer_train::{run, TokenizerTrainArgs};
use circuitscope::data::corpus::SyntheticCorpus;
use circuitscope::tokenize::bytes::rank_to_byte;
use circuitscope::tokenize::train::{
    check_required_strings, train_bpe, train_bpe_report, TrainedBpe, DEFAULT_REQUIRED,
};
use circuitscope::tokenize::{Tokenizer, ENDOFTEXT};

fn docs(n: u64) -> impl Iterator<Item = String> {
    SyntheticCorpus::new(0).documents(0..n)
}

/// Required strings for the tests: the defaults plus one that training on 300 documents never learns.
fn required() -> Vec<&'static str> {
    let mut r = DEFAULT_REQUIRED.to_vec();
    r.push(" Zyzzyva");
    r
}

fn trained() -> &'static TrainedBpe {
    static T: OnceLock<TrainedBpe> = OnceLock::new();
    T.get_or_init(|| train_bpe_report(docs(300), 512, &required()).expect("training"))
}

#[test]
fn training_is_deterministic() {
    let a = trained();
    let b = train_bpe(docs(300), 512, &required()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (pa, pb) = (dir.path().join("a.json"), dir.path().join("b.json"));
    a.tokenizer.save(&pa).unwrap();
    b.save(&pb).unwrap();
    assert_eq!(std::fs::read(&pa).unwrap(), std::fs::read(&pb).unwrap());
}

#[test]
fn vocabulary_layout_matches_tinypython() {
    let t = &trained().tokenizer;
    assert_eq!(t.vocab_size(), 512);
    assert_eq!(t.eot_id(), Some(511));
    assert_eq!(t.token_bytes(511).unwrap(), ENDOFTEXT.as_bytes());
    // Ids 0..=255 are the single bytes in data_gym order.
    for r in 0..=255u8 {
        assert_eq!(t.token_bytes(r as u32).unwrap(), vec![rank_to_byte(r)], "id {r}");
    }
    assert_eq!(t.token_bytes(0).unwrap(), b"!");
    // Every id below the special has bytes, and all are distinct.
    let mut seen = std::collections::HashSet::new();
    for id in 0..511 {
        let b = t.token_bytes(id).unwrap_or_else(|| panic!("id {id} has no bytes"));
        assert!(seen.insert(b), "id {id} duplicates another token");
    }
    assert_eq!(trained().learned_merges + trained().added_merges, 511 - 256);
}

#[test]
fn round_trips_text() {
    let t = &trained().tokenizer;
    let held_out = SyntheticCorpus::new(0).documents(1_000_000..1_000_020);
    let extra = [
        "héllo wörld ✓ 日本語 🦀\n\ttabs\r\n".to_owned(),
        "<|endoftext|> is plain text here".to_owned(),
        "\u{0}\u{1}\u{7f} bytes".to_owned(),
        String::new(),
    ];
    for s in held_out.chain(extra) {
        let ids = t.encode(&s).unwrap();
        assert_eq!(t.decode(&ids), s);
        assert_eq!(t.decode_bytes(&ids).unwrap(), s.as_bytes());
    }
    // The trained merges compress held-out code: over 1.6 characters per token on average (a byte-level BPE
    // without merges would give 1.0; this small 512-token vocabulary measured ~1.9).
    let (mut chars, mut tokens) = (0, 0);
    for doc in SyntheticCorpus::new(0).documents(5_000_000..5_000_020) {
        chars += doc.len();
        tokens += t.encode(&doc).unwrap().len();
    }
    assert!(chars as f64 / tokens as f64 > 1.6, "{tokens} tokens for {chars} chars");
}

#[test]
fn required_strings_are_single_tokens() {
    let tr = trained();
    let t = &tr.tokenizer;
    for s in required() {
        let ids = t.encode(s).unwrap();
        assert_eq!(ids.len(), 1, "{s:?} -> {ids:?}");
        assert!(tr.required_ids.contains(&(s.to_owned(), ids[0])));
    }
    assert!(
        tr.added_required.contains(&" Zyzzyva".to_owned()),
        "{:?}",
        tr.added_required
    );
    // Tokens of the tasks show up whole in context.
    let ids = t.encode("values = [[1, 2], [3, 4]]\n").unwrap();
    let last = *ids.last().unwrap();
    assert_eq!(t.token_bytes(last).unwrap(), b"]]\n");
    let ids = t.encode("print(\"hello\")").unwrap();
    assert_eq!(t.token_bytes(*ids.last().unwrap()).unwrap(), b"\")");
    let ids = t.encode("x = Zyzzyva\n").unwrap();
    assert!(ids.iter().any(|&id| t.token_bytes(id).unwrap() == b" Zyzzyva"));
}

#[test]
fn reload_gives_the_same_encodings() {
    let t = &trained().tokenizer;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("tokenizer.json");
    t.save(&p).unwrap();
    let u = Tokenizer::load(&p).unwrap();
    assert_eq!(u.vocab_size(), t.vocab_size());
    for d in SyntheticCorpus::new(1).documents(0..10) {
        assert_eq!(u.encode(&d).unwrap(), t.encode(&d).unwrap());
    }
}

#[test]
fn impossible_required_strings_are_reported() {
    let e = check_required_strings(&["x ==", "]]\n", "a\nb", ""]).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("\"x ==\""), "{msg}");
    assert!(msg.contains("\"a\\nb\""), "{msg}");
    assert!(msg.contains("empty"), "{msg}");
    assert!(!msg.contains("\"]]\\n\" ("), "{msg}");
    assert!(check_required_strings(DEFAULT_REQUIRED).is_ok());
    // Training refuses before doing any work.
    let e = train_bpe(docs(3), 300, &["x =="]).unwrap_err();
    assert!(e.to_string().contains("\"x ==\""), "{e}");
}

#[test]
fn vocab_too_small_is_an_error() {
    let e = train_bpe(docs(3), 256, &[]).unwrap_err();
    assert!(e.to_string().contains("too small"), "{e}");
    let e = train_bpe(docs(3), 258, &[" enumerate", " range"]).unwrap_err();
    assert!(e.to_string().contains("too small"), "{e}");
    // The minimum works: bytes and <|endoftext|> only.
    let t = train_bpe(docs(3), 257, &["r", "\n"]).unwrap();
    assert_eq!(t.vocab_size(), 257);
    assert_eq!(t.encode("ab").unwrap().len(), 2);
}

#[test]
fn cli_refuses_to_overwrite_and_reads_require_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tok.json");
    std::fs::write(&out, "old").unwrap();
    let req = dir.path().join("required.json");
    std::fs::write(&req, r#"["]]\n", ".add", " Zyzzyva"]"#).unwrap();
    let mut args = TokenizerTrainArgs {
        corpus: "synthetic:2".into(),
        docs: 40,
        vocab: 300,
        require_file: Some(req),
        output: out.clone(),
        force: false,
        json: false,
    };
    let e = run(args.clone()).unwrap_err();
    assert!(e.to_string().contains("--force"), "{e}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "old");
    args.force = true;
    run(args.clone()).unwrap();
    let t = Tokenizer::load(&out).unwrap();
    assert_eq!(t.vocab_size(), 300);
    assert_eq!(t.encode(" Zyzzyva").unwrap().len(), 1);

    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"not\": \"a list\"}").unwrap();
    args.require_file = Some(bad);
    let e = run(args).unwrap_err();
    assert!(format!("{e:#}").contains("bad.json"), "{e:#}");
}

/// Trains a vocab-1024 tokenizer on the first 1000 synthetic documents and prints token statistics
/// (`cargo test --release --test integration tokenizer_train:: -- --ignored --nocapture`).
#[test]
#[ignore]
fn report_vocab_1024_on_1000_documents() {
    let start = std::time::Instant::now();
    let tr = train_bpe_report(docs(1000), 1024, DEFAULT_REQUIRED).unwrap();
    let t = &tr.tokenizer;
    let mut tokens = 0;
    let mut used = vec![false; t.vocab_size()];
    for d in docs(1000) {
        let ids = t.encode(&d).unwrap();
        tokens += ids.len();
        for id in ids {
            used[id as usize] = true;
        }
    }
    let unused = used.iter().filter(|u| !**u).count() - 1; // minus <|endoftext|>
    println!(
        "trained in {:.1} s: {} docs, {} chars, {} tokens ({:.2} chars/token), {} learned merges, added {:?} \
         ({} merges), {} ids unused",
        start.elapsed().as_secs_f64(),
        tr.documents,
        tr.chars,
        tokens,
        tr.chars as f64 / tokens as f64,
        tr.learned_merges,
        tr.added_required,
        tr.added_merges,
        unused
    );
    for (s, id) in &tr.required_ids {
        print!("{s:?}={id} ");
    }
    println!();
    let unused_tokens: Vec<String> = (256..t.vocab_size() as u32 - 1)
        .filter(|&id| !used[id as usize])
        .map(|id| format!("{:?}", t.token_display(id)))
        .collect();
    println!("unused merged tokens: {}", unused_tokens.join(" "));
}

/// The clap definition parses as `tokenizer train` will use it.
#[test]
fn cli_parses() {
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: TokenizerTrainArgs,
    }
    <Cli as clap::CommandFactory>::command().debug_assert();
    let cli = Cli::try_parse_from(["train", "--vocab", "2048", "-o", "t.json", "--force", "--json"]).unwrap();
    let a = cli.args;
    assert_eq!((a.vocab, a.docs, a.force, a.json), (2048, 4000, true, true));
    assert_eq!(a.output, std::path::PathBuf::from("t.json"));
    assert_eq!(a.corpus, "synthetic");
    assert!(a.require_file.is_none());
}

#[test]
fn a_2048_token_bpe_on_a_real_code_mix_keeps_every_task_target_single() {
    use circuitscope::cli::tokenizer_train::train;
    let dir = tempfile::tempdir().unwrap();
    for i in 0..40 {
        std::fs::write(
            dir.path().join(format!("m{i}.py")),
            format!(
                "import os\n\n\ndef load_{i}(path, names):\n    seen = set()\n    for name in names:\n        \
                 seen.add(name)\n    return [[{i}, 2], [3, path]]\n"
            ),
        )
        .unwrap();
    }
    let args = TokenizerTrainArgs {
        corpus: format!("mix:dir:{}=0.7,synthetic=0.3", dir.path().display()),
        docs: 120,
        vocab: 2048,
        require_file: None,
        output: dir.path().join("tokenizer.json"),
        force: false,
        json: false,
    };
    let trained = train(&args).unwrap();
    let tok = &trained.tokenizer;
    assert!(tok.vocab_size() <= 2048);
    assert_eq!(tok.eot_id(), Some(tok.vocab_size() as u32 - 1));
    for t in circuitscope::data::tasks::target_strings() {
        assert_eq!(tok.encode(&t).unwrap().len(), 1, "{t:?}");
    }
    // Deterministic for the same files and seed.
    let again = train(&args).unwrap();
    assert_eq!(
        again.tokenizer.encode("seen.add(name)").unwrap(),
        tok.encode("seen.add(name)").unwrap()
    );
}
