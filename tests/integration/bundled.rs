//! The bundled models in assets/models: their eval reproduces the committed eval.md (with the wild split for the
//! real-code models, when this machine's Python standard library is there), their tokenizer makes every task
//! target a single token, and they are weight-sparse (or dense) as documented.

use std::path::{Path, PathBuf};

use circuitscope::analysis::eval;
use circuitscope::cli::eval::{markdown_table, markdown_table_with_wild, weight_density, EVAL_CORPUS, EVAL_PAIRS};
use circuitscope::data::corpus::CorpusSource;
use circuitscope::data::tasks;
use circuitscope::data::TokenPool;
use circuitscope::model::{Gpt, LoadOptions};
use circuitscope::tokenize::Tokenizer;

const MODELS: [&str; 5] = [
    "tinypython-sparse",
    "tinypython-dense",
    "realcode-sparse",
    "realcode-dense",
    "tiny-attn-only",
];

/// The models trained on real code, whose eval.md carries the wild split (mined from the standard library).
fn has_wild_split(name: &str) -> bool {
    name.starts_with("realcode")
}

fn model_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/models").join(name)
}

#[test]
fn bundled_models_are_complete() {
    for name in MODELS {
        let dir = model_dir(name);
        for file in [
            "config.json",
            "model.safetensors",
            "tokenizer.json",
            "train_config.json",
            "log.jsonl",
            "eval.md",
        ] {
            assert!(dir.join(file).exists(), "{} lacks {file}", dir.display());
        }
    }
    for name in MODELS {
        let density = weight_density(&model_dir(name)).unwrap();
        if name.ends_with("-sparse") {
            assert!(density <= 1.0 / 8.0 + 1e-6, "{name}: sparse model density {density}");
        } else {
            assert!(density > 0.9, "{name}: dense model density {density}");
        }
    }
}

#[test]
fn task_targets_are_single_tokens() {
    for name in MODELS {
        let tok = Tokenizer::load(model_dir(name).join("tokenizer.json")).unwrap();
        for t in tasks::registry() {
            for target in t.targets() {
                let ids = tok.encode(&target).unwrap();
                assert_eq!(ids.len(), 1, "{name}: {}: target {target:?} is {ids:?}", t.name());
            }
        }
    }
}

// One test per model, so that they (the longest tests of the suite) run beside the others, not in a row.
#[test]
fn eval_of_tinypython_sparse_reproduces_its_eval_md() {
    eval_reproduces_committed_eval_md("tinypython-sparse");
}

#[test]
fn eval_of_tinypython_dense_reproduces_its_eval_md() {
    eval_reproduces_committed_eval_md("tinypython-dense");
}

#[test]
fn eval_of_realcode_sparse_reproduces_its_eval_md() {
    eval_reproduces_committed_eval_md("realcode-sparse");
}

#[test]
fn eval_of_realcode_dense_reproduces_its_eval_md() {
    eval_reproduces_committed_eval_md("realcode-dense");
}

#[test]
fn eval_of_tiny_attn_only_reproduces_its_eval_md() {
    eval_reproduces_committed_eval_md("tiny-attn-only");
}

#[test]
fn every_bundled_model_has_its_eval_test() {
    let src = include_str!("bundled.rs");
    for name in MODELS {
        let test = format!("fn eval_of_{}_reproduces_its_eval_md", name.replace('-', "_"));
        assert!(src.contains(&test), "no `{test}`");
    }
}

fn eval_reproduces_committed_eval_md(name: &str) {
    let dir = model_dir(name);
    let (model, _) = Gpt::load(&dir, LoadOptions::default()).unwrap();
    let tok = Tokenizer::load(dir.join("tokenizer.json")).unwrap();
    let scores = eval::score_tasks(&model, &tok, &tasks::registry(), EVAL_PAIRS).unwrap();
    let corpus = CorpusSource::parse(EVAL_CORPUS).unwrap();
    let block = model.config.block_size;
    let held = TokenPool::build(corpus.held_out().unwrap(), &tok, 64 * (block + 1)).unwrap();
    let loss = eval::corpus_loss(&model, &held.tokens, block, 64).unwrap();
    let density = weight_density(&dir).unwrap();
    let table = if has_wild_split(name) {
        let stdlib = match CorpusSource::parse(tasks::WILD_CORPUS) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("note: {name}: eval.md not checked, no standard library for its wild split ({e})");
                return;
            }
        };
        let wild = eval::score_wild(&model, &tok, &tasks::registry(), EVAL_PAIRS, &stdlib).unwrap();
        markdown_table_with_wild(&scores, &wild, tasks::WILD_CORPUS, loss, density, EVAL_PAIRS)
    } else {
        markdown_table(&scores, loss, density, EVAL_PAIRS)
    };
    let committed = std::fs::read_to_string(dir.join("eval.md")).unwrap();
    let start = committed.find("| task |").expect("eval.md has no table");
    // The table is followed by the file's other notes; compare as many words as the fresh table has.
    let words = table.split_whitespace().count();
    let committed: Vec<&str> = committed[start..].split_whitespace().take(words).collect();
    assert!(
        same_up_to_last_digit(&committed.join(" "), &table),
        "{name}: eval.md differs from a fresh eval:\n{table}"
    );
}

/// The texts agree word for word, except that four-decimal numbers may differ by one in the last place: a
/// kernel that sums in another order moves a loss by ~1e-7, which can flip its rounding. Accuracies (counts of
/// pairs, three decimals) must match exactly.
fn same_up_to_last_digit(a: &str, b: &str) -> bool {
    let (wa, wb): (Vec<&str>, Vec<&str>) = (a.split_whitespace().collect(), b.split_whitespace().collect());
    wa.len() == wb.len()
        && wa.iter().zip(&wb).all(|(x, y)| {
            if x == y {
                return true;
            }
            let decimals = |s: &str| s.split_once('.').map_or(0, |(_, f)| f.len());
            match (x.parse::<f64>(), y.parse::<f64>()) {
                (Ok(p), Ok(q)) => decimals(x) == 4 && decimals(y) == 4 && (p - q).abs() <= 1.01e-4,
                _ => false,
            }
        })
}

#[test]
fn last_digit_comparison_is_strict_elsewhere() {
    assert!(same_up_to_last_digit(
        "| a | 0.905 | 0.2501 |",
        "| a | 0.905 | 0.2500 |"
    ));
    assert!(!same_up_to_last_digit(
        "| a | 0.905 | 0.2501 |",
        "| a | 0.900 | 0.2501 |"
    ));
    assert!(!same_up_to_last_digit(
        "| a | 0.905 | 0.2503 |",
        "| a | 0.905 | 0.2501 |"
    ));
    assert!(!same_up_to_last_digit(
        "| a | 0.905 | 0.2501 |",
        "| b | 0.905 | 0.2501 |"
    ));
    assert!(!same_up_to_last_digit("| a | 0.905 |", "| a | 0.905 | 0.2501 |"));
}
