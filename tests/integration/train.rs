//! The trainer: the sparsity invariant after a few steps, and resume reproducing an uninterrupted run.

use std::path::Path;

use circuitscope::model::{Checkpoint, Stored};
use circuitscope::train::params::is_sparse_param;
use circuitscope::train::sparsity::kept_count;
use circuitscope::train::{train, TrainConfig};

fn weights(dir: &Path) -> Checkpoint {
    Checkpoint::open(&dir.join("checkpoint/model.safetensors")).unwrap()
}

#[test]
fn sparsity_invariant_holds_after_steps() {
    let cfg = TrainConfig::preset("test").unwrap();
    let dir = tempfile::tempdir().unwrap();
    train(&cfg, dir.path(), None, false, None).unwrap();
    let ckpt = weights(dir.path());
    let kept = cfg.kept_fraction(cfg.steps);
    let mut checked = 0;
    for (name, t) in &ckpt.tensors {
        let Stored::Dense(t) = t else {
            panic!("checkpoint tensors are dense")
        };
        let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
        let nonzero = v.iter().filter(|x| **x != 0.0).count();
        if !is_sparse_param(name) {
            continue;
        }
        // The scheduled number of entries survive (never more; fewer only if some are exactly zero).
        let want = kept_count(v.len(), kept);
        let dims = t.dims().to_vec();
        if dims.len() == 2 {
            let protected = dims[0] * cfg.min_per_row.min(dims[1]);
            assert!(
                nonzero <= want.max(protected),
                "{name}: {nonzero} nonzeros, scheduled {want}"
            );
            for (r, row) in v.chunks(dims[1]).enumerate() {
                let nz = row.iter().filter(|x| **x != 0.0).count();
                assert!(nz >= cfg.min_per_row.min(dims[1]), "{name} row {r} has {nz} nonzeros");
            }
        } else {
            assert!(nonzero <= want, "{name}: {nonzero} nonzeros, scheduled {want}");
        }
        assert!(
            nonzero as f64 >= 0.9 * want as f64 || v.len() < 40,
            "{name}: {nonzero} of scheduled {want}"
        );
        checked += 1;
    }
    assert!(checked >= 6, "only {checked} sparse tensors checked");
    // The exported model stores the sparse matrices as CSR.
    let exported = Checkpoint::open(&dir.path().join("model.safetensors")).unwrap();
    assert!(exported.tensors.values().any(|t| matches!(t, Stored::Csr(_))));
    assert!(dir.path().join("log.jsonl").exists() && dir.path().join("train_config.json").exists());
}

#[test]
fn resume_reproduces_an_uninterrupted_run() {
    let cfg = TrainConfig::preset("test").unwrap();
    let straight = tempfile::tempdir().unwrap();
    train(&cfg, straight.path(), None, false, None).unwrap();
    let tok = straight.path().join("tokenizer.json");

    let split = tempfile::tempdir().unwrap();
    train(&cfg, split.path(), Some(&tok), false, Some(cfg.steps / 2)).unwrap();
    let state = std::fs::read_to_string(split.path().join("checkpoint/state.json")).unwrap();
    assert!(state.contains(&format!("\"step\":{}", cfg.steps / 2)), "{state}");
    // A second start without --resume must refuse rather than overwrite the run.
    assert!(train(&cfg, split.path(), Some(&tok), false, None).is_err());
    train(&cfg, split.path(), Some(&tok), true, None).unwrap();

    let (a, b) = (weights(straight.path()), weights(split.path()));
    assert_eq!(a.tensors.len(), b.tensors.len());
    for (name, ta) in &a.tensors {
        let ta: Vec<f32> = ta.to_dense().unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let tb: Vec<f32> = b.tensors[name]
            .to_dense()
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let diff = ta.iter().zip(&tb).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert!(diff < 1e-5, "{name} differs by {diff} after resume");
    }
}

#[test]
fn resume_with_other_options_is_refused() {
    let cfg = TrainConfig::preset("test").unwrap();
    let dir = tempfile::tempdir().unwrap();
    train(&cfg, dir.path(), None, false, Some(2)).unwrap();
    let other = TrainConfig {
        lr: cfg.lr * 2.0,
        ..cfg
    };
    let err = train(&other, dir.path(), None, true, None).unwrap_err().to_string();
    assert!(err.contains("another configuration"), "{err}");
}

/// An attention-only run keeps every MLP weight at zero (so each block writes only attention) while the
/// attention weights train, and the preset is the framework paper's toy shape: 2 dense layers, no biases.
#[test]
fn attention_only_runs_keep_their_mlps_at_zero() {
    let preset = TrainConfig::preset("tiny-attn-only").unwrap();
    assert!(preset.attn_only && preset.density == 1.0);
    assert_eq!(
        (preset.model.n_layer, preset.model.bias, preset.model.afrac),
        (2, false, None)
    );
    let test = TrainConfig::preset("test").unwrap();
    let cfg = TrainConfig {
        attn_only: true,
        density: 1.0,
        model: circuitscope::model::Config {
            bias: false,
            ..test.model.clone()
        },
        ..test
    };
    let dir = tempfile::tempdir().unwrap();
    train(&cfg, dir.path(), None, false, None).unwrap();
    let ckpt = weights(dir.path());
    let init = circuitscope::train::params::Params::init(&cfg.model, cfg.seed).unwrap();
    let (mut mlps, mut moved) = (0, 0);
    for (name, t) in &ckpt.tensors {
        let v: Vec<f32> = t.to_dense().unwrap().flatten_all().unwrap().to_vec1().unwrap();
        if name.contains(".mlp.") {
            assert!(v.iter().all(|x| *x == 0.0), "{name} is not zero");
            mlps += 1;
        } else if name.contains(".attn.") {
            let v0: Vec<f32> = init.vars[name].flatten_all().unwrap().to_vec1().unwrap();
            moved += usize::from(v.iter().zip(&v0).any(|(a, b)| a != b));
        }
    }
    assert_eq!(mlps, 2 * cfg.model.n_layer);
    assert!(moved >= 2, "the attention weights did not train");
    // The run's config says so, and an older run's json (without the key) still reads as not attention-only.
    let saved = std::fs::read_to_string(dir.path().join("train_config.json")).unwrap();
    assert!(saved.contains("\"attn_only\": true"), "{saved}");
    let plain = serde_json::to_string(&TrainConfig::preset("tiny").unwrap()).unwrap();
    assert!(!plain.contains("attn_only"));
    let back: TrainConfig = serde_json::from_str(&plain).unwrap();
    assert!(!back.attn_only);
}
