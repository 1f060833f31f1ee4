//! PyTorch checkpoints with BF16 and F16 storages (and a `final_model/` archive prefix, as `torch.save(path)`
//! writes): every tensor is read back exactly and up-cast to f32, and the model runs. The fixtures are made from
//! the layernorm_tied_relu reference fixture by tests/fixtures/half-precision/make.py.

use std::path::Path;

use circuitscope::model::{Checkpoint, Gpt, Hooks, LoadOptions};

fn fixture(p: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(p)
}

#[test]
fn half_precision_storages_load_exactly() {
    let full = Checkpoint::open(&fixture("reference-gpt/layernorm_tied_relu/final_model.pt")).unwrap();
    type Round = fn(f32) -> f32;
    let cases: [(&str, Round); 2] = [
        ("half-precision/bf16", |v| half::bf16::from_f32(v).to_f32()),
        ("half-precision/f16", |v| half::f16::from_f32(v).to_f32()),
    ];
    for (dir, round) in cases {
        let half = Checkpoint::open(&fixture(dir).join("final_model.pt")).unwrap();
        assert_eq!(half.tensors.len(), full.tensors.len(), "{dir}");
        for (name, t) in &full.tensors {
            let want: Vec<f32> = t.to_dense().unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let got = half.tensors[name].to_dense().unwrap();
            assert_eq!(got.dtype(), candle_core::DType::F32, "{dir} {name} is up-cast");
            let got: Vec<f32> = got.flatten_all().unwrap().to_vec1().unwrap();
            let want: Vec<f32> = want.into_iter().map(round).collect();
            assert_eq!(got, want, "{dir} {name}");
        }
        let (model, _) = Gpt::load(&fixture(dir), LoadOptions::default()).unwrap();
        let logits = model.forward_ids(&[1, 2, 3, 4], &mut Hooks::none()).unwrap();
        let v: Vec<f32> = logits.flatten_all().unwrap().to_vec1().unwrap();
        assert!(v.iter().all(|x| x.is_finite()), "{dir}");
    }
}
