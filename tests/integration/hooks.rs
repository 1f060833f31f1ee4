//! Interventions through the public API: mean ablation, scaling, adding a vector, patching from another run, and
//! position selection, each on both forward paths (inference and differentiable).

use std::path::Path;

use candle_core::Tensor;
use circuitscope::model::{Action, Gpt, Hooks, Intervention, LoadOptions};

fn model() -> Gpt {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reference-gpt/rms_sink_topk_bigram");
    Gpt::load(&dir, LoadOptions::default()).unwrap().0
}

const IDS: [u32; 6] = [5, 17, 2, 9, 33, 4];
const HOOK: &str = "0.mlp.post_act";

/// Runs with one intervention at HOOK and returns (logits, the recorded hook) as nested vectors.
fn run(model: &Gpt, iv: Option<Intervention>, differentiable: bool) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let mut hooks = Hooks::recording(HOOK).unwrap();
    hooks.differentiable = differentiable;
    if let Some(iv) = iv {
        hooks.intervene(HOOK, iv);
    }
    let logits = model.forward_ids(&IDS, &mut hooks).unwrap();
    (
        logits.to_vec2().unwrap(),
        hooks.recorded[HOOK].squeeze(0).unwrap().to_vec2().unwrap(),
    )
}

#[test]
fn actions_change_exactly_what_they_select() {
    let m = model();
    let width = m.hook_points().into_iter().find(|(h, _)| h == HOOK).unwrap().1;
    for differentiable in [false, true] {
        let (base_logits, base) = run(&m, None, differentiable);
        let means: Vec<f32> = (0..width).map(|c| c as f32 * 0.01).collect();

        let (_, ablated) = run(
            &m,
            Some(Intervention::new(Action::MeanAblate(means.clone())).channels(vec![3, 7])),
            differentiable,
        );
        for (t, row) in ablated.iter().enumerate() {
            for c in 0..width {
                let want = if c == 3 || c == 7 { means[c] } else { base[t][c] };
                assert_eq!(row[c], want, "mean-ablate t={t} c={c}");
            }
        }

        let (_, scaled) = run(
            &m,
            Some(Intervention::new(Action::Scale(2.0)).positions(vec![-1])),
            differentiable,
        );
        for (t, row) in scaled.iter().enumerate() {
            for c in 0..width {
                let want = if t == IDS.len() - 1 {
                    base[t][c] * 2.0
                } else {
                    base[t][c]
                };
                assert!((row[c] - want).abs() < 1e-6, "scale t={t} c={c}");
            }
        }

        let v: Vec<f32> = (0..width).map(|c| if c % 5 == 0 { 1.5 } else { 0.0 }).collect();
        let (added_logits, added) = run(&m, Some(Intervention::new(Action::Add(v.clone()))), differentiable);
        for (t, row) in added.iter().enumerate() {
            for c in 0..width {
                assert!((row[c] - (base[t][c] + v[c])).abs() < 1e-6, "add t={t} c={c}");
            }
        }
        assert_ne!(added_logits, base_logits, "adding to neurons must move the logits");

        // Patch from another prompt's run, channel 0 at position 2 only.
        let mut other = Hooks::recording(HOOK).unwrap();
        m.forward_ids(&[9, 9, 9, 9, 9, 9], &mut other).unwrap();
        let source: Tensor = other.recorded[HOOK].clone();
        let src: Vec<Vec<f32>> = source.squeeze(0).unwrap().to_vec2().unwrap();
        let iv = Intervention::new(Action::Patch(source))
            .channels(vec![0])
            .positions(vec![2]);
        let (_, patched) = run(&m, Some(iv), differentiable);
        for (t, row) in patched.iter().enumerate() {
            for c in 0..width {
                let want = if t == 2 && c == 0 { src[t][c] } else { base[t][c] };
                assert_eq!(row[c], want, "patch t={t} c={c}");
            }
        }
    }
}

#[test]
fn paths_agree_under_interventions() {
    let m = model();
    let iv = || {
        Intervention::new(Action::Set(0.7))
            .channels(vec![1, 2])
            .positions(vec![0, -2])
    };
    let (a, ra) = run(&m, Some(iv()), false);
    let (b, rb) = run(&m, Some(iv()), true);
    let max = |x: &[Vec<f32>], y: &[Vec<f32>]| {
        x.iter()
            .flatten()
            .zip(y.iter().flatten())
            .map(|(p, q)| (p - q).abs())
            .fold(0f32, f32::max)
    };
    assert!(max(&a, &b) < 1e-5 && max(&ra, &rb) < 1e-5);
}

#[test]
fn bad_interventions_are_errors() {
    let m = model();
    for (hook, iv) in [
        (
            "0.mlp.post_act",
            Intervention::new(Action::Set(1.0)).channels(vec![10_000]),
        ),
        (
            "0.mlp.post_act",
            Intervention::new(Action::Set(1.0)).positions(vec![99]),
        ),
        ("0.mlp.post_act", Intervention::new(Action::MeanAblate(vec![0.0; 3]))),
        (
            "0.mlp.post_act",
            Intervention::new(Action::Patch(
                Tensor::zeros((2, 3), candle_core::DType::F32, &candle_core::Device::Cpu).unwrap(),
            )),
        ),
        ("7.attn.q", Intervention::new(Action::Set(1.0))),
    ] {
        let mut hooks = Hooks::none();
        hooks.intervene(hook, iv);
        let err = m.forward_ids(&IDS, &mut hooks).unwrap_err().to_string();
        assert!(err.contains(hook), "{err}");
    }
}
