//! The SAE's weights and arithmetic, and its two file formats (ours, SAELens's).

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use serde_json::Value;

use super::config::{Architecture, SaeConfig, SAE_FORMAT_VERSION};
use super::{io_err, Result, SaeConfigProblem, SaeError, SaeMismatch};
use crate::fsio::{DirWriter, Keep};
use crate::model::checkpoint::write_safetensors;
use crate::model::error::TensorProblem;
use crate::model::{Checkpoint, Config, HookName, ModelError, Stored};

/// Our config file in an SAE folder.
pub const SAE_CONFIG_FILE: &str = "sae.json";
/// Our weights file in an SAE folder: `W_enc` (d_in, n), `b_enc` (n), `W_dec` (n, d_in), `b_pre` (d_in).
pub const SAE_WEIGHTS_FILE: &str = "sae.safetensors";
/// SAELens's config file.
pub const SAELENS_CONFIG_FILE: &str = "cfg.json";
/// SAELens's weights file: `W_enc` (d_in, n), `b_enc` (n), `W_dec` (n, d_in), `b_dec` (d_in).
pub const SAELENS_WEIGHTS_FILE: &str = "sae_weights.safetensors";

/// A new value for one latent in [`Sae::edit`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LatentEdit {
    /// The latent takes this value (0: zero ablation; its mean: mean ablation).
    Set(f32),
    /// The latent is multiplied by this factor.
    Scale(f32),
}

/// A sparse autoencoder on one hook. Weights are stored as SAELens stores them: W_dec's row i is latent i's
/// decoder direction (the paper's column W_dec[:, i]).
#[derive(Debug, Clone)]
pub struct Sae {
    /// Where it reads, its sizes and provenance.
    pub config: SaeConfig,
    /// (d_in, n_latents)
    pub w_enc: Tensor,
    /// (n_latents)
    pub b_enc: Tensor,
    /// (n_latents, d_in)
    pub w_dec: Tensor,
    /// (d_in): subtracted before encoding (when `apply_b_pre_to_input`) and added back after decoding.
    pub b_pre: Tensor,
}

/// 1.0 at the `k` largest entries of each row of `values` (rows of `cols`), 0.0 elsewhere; ties keep the lower
/// index. With `allowed`, only columns marked true compete (and fewer than k are kept when fewer are allowed).
pub fn topk_mask(values: &[f32], cols: usize, k: usize, allowed: Option<&[bool]>) -> Vec<f32> {
    let mut mask = vec![0f32; values.len()];
    if cols == 0 || k == 0 {
        return mask;
    }
    let candidates: Vec<usize> = match allowed {
        Some(a) => (0..cols).filter(|&c| a[c]).collect(),
        None => (0..cols).collect(),
    };
    let k = k.min(candidates.len());
    if k == 0 {
        return mask;
    }
    let mut idx = candidates.clone();
    for (row, out) in values.chunks_exact(cols).zip(mask.chunks_exact_mut(cols)) {
        idx.copy_from_slice(&candidates);
        // NaN sorts last so that it is never preferred over a number.
        let order = |a: &usize, b: &usize| {
            let (x, y) = (row[*a], row[*b]);
            let key = |v: f32| if v.is_nan() { f32::NEG_INFINITY } else { v };
            key(y).total_cmp(&key(x)).then(a.cmp(b))
        };
        if k < idx.len() {
            idx.select_nth_unstable_by(k - 1, order);
        }
        for &c in &idx[..k] {
            out[c] = 1.0;
        }
    }
    mask
}

impl Sae {
    /// An SAE from its parts, checked against each other.
    pub fn new(config: SaeConfig, w_enc: Tensor, b_enc: Tensor, w_dec: Tensor, b_pre: Tensor) -> Result<Self> {
        if let Some(p) = config.problem() {
            return Err(SaeMismatch::Config(p).into());
        }
        let (d, n) = (config.d_in, config.n_latents);
        for (name, t, shape) in [
            ("W_enc", &w_enc, vec![d, n]),
            ("b_enc", &b_enc, vec![n]),
            ("W_dec", &w_dec, vec![n, d]),
            ("b_pre", &b_pre, vec![d]),
        ] {
            if t.dims() != shape.as_slice() {
                return Err(SaeMismatch::WeightShape {
                    name,
                    got: t.dims().to_vec(),
                    expected: shape,
                }
                .into());
            }
        }
        Ok(Sae {
            config,
            w_enc,
            b_enc,
            w_dec,
            b_pre,
        })
    }

    /// The hook it reads.
    pub fn hook(&self) -> HookName {
        self.config.hook
    }

    /// Reads an SAE folder: ours (`sae.json` + `sae.safetensors`) or SAELens's (`cfg.json` +
    /// `sae_weights.safetensors`). `n_layer` is the model's, to read TransformerLens's `hook_resid_post`.
    pub fn load(dir: &Path, n_layer: usize) -> Result<Self> {
        if dir.join(SAE_CONFIG_FILE).is_file() {
            Self::load_ours(dir)
        } else if dir.join(SAELENS_CONFIG_FILE).is_file() {
            Self::load_saelens(dir, n_layer)
        } else if !dir.is_dir() {
            Err(SaeError::Io {
                path: dir.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such SAE folder"),
            })
        } else {
            Err(SaeError::NotAnSae {
                path: dir.to_path_buf(),
            })
        }
    }

    fn load_ours(dir: &Path) -> Result<Self> {
        let path = dir.join(SAE_CONFIG_FILE);
        let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
        let config: SaeConfig = serde_json::from_str(&text).map_err(|e| SaeError::Config {
            path: path.clone(),
            problem: e.into(),
        })?;
        if let Some(problem) = config.problem() {
            return Err(SaeError::Config { path, problem });
        }
        let ck = Checkpoint::open_safetensors(&dir.join(SAE_WEIGHTS_FILE))?;
        let (w_enc, b_enc, w_dec, b_pre) = read_weights(&ck, &config, "b_pre")?;
        Self::new(config, w_enc, b_enc, w_dec, b_pre)
    }

    fn load_saelens(dir: &Path, n_layer: usize) -> Result<Self> {
        let path = dir.join(SAELENS_CONFIG_FILE);
        let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
        let config = saelens_config(&text, n_layer).map_err(|problem| SaeError::Config {
            path: path.clone(),
            problem,
        })?;
        let ck = Checkpoint::open_safetensors(&dir.join(SAELENS_WEIGHTS_FILE))?;
        let (w_enc, b_enc, w_dec, b_pre) = read_weights(&ck, &config, "b_dec")?;
        Self::new(config, w_enc, b_enc, w_dec, b_pre)
    }

    /// Writes `sae.json` + `sae.safetensors` into `dir` as one folder swap (other files there are kept).
    pub fn save(&self, dir: &Path) -> Result<()> {
        let writer = DirWriter::begin(dir, Keep::Others)?;
        let mut tensors = BTreeMap::new();
        for (name, t) in self.named_tensors() {
            tensors.insert(name.to_string(), Stored::Dense(t.clone()));
        }
        write_safetensors(
            &writer.path().join(SAE_WEIGHTS_FILE),
            &tensors,
            &[("format".into(), "circuitscope-sae".into())],
        )?;
        let json = serde_json::to_string_pretty(&self.config).expect("an SAE config serialises");
        crate::fsio::write_atomic(&writer.path().join(SAE_CONFIG_FILE), json.as_bytes())?;
        writer.commit()?;
        Ok(())
    }

    /// The weights by the names of our file.
    pub fn named_tensors(&self) -> [(&'static str, &Tensor); 4] {
        [
            ("W_enc", &self.w_enc),
            ("b_enc", &self.b_enc),
            ("W_dec", &self.w_dec),
            ("b_pre", &self.b_pre),
        ]
    }

    /// Refuses a model whose hook is missing or has another width, or whose fingerprint differs from the one the
    /// SAE was trained on (when both are known).
    pub fn check_model(&self, cfg: &Config, fingerprint: Option<&str>) -> Result<()> {
        let hook = self.config.hook;
        if hook.layer().is_some_and(|l| l >= cfg.n_layer) {
            return Err(SaeMismatch::NoLayer {
                hook,
                n_layer: cfg.n_layer,
            }
            .into());
        }
        let width = hook.width(cfg).ok_or(SaeMismatch::NoChannels { hook })?;
        if width != self.config.d_in {
            return Err(SaeMismatch::Width {
                hook,
                d_in: self.config.d_in,
                width,
            }
            .into());
        }
        if let (Some(want), Some(got)) = (&self.config.model_fingerprint, fingerprint) {
            if want != got {
                return Err(SaeMismatch::Fingerprint {
                    want: want.clone(),
                    got: got.to_string(),
                }
                .into());
            }
        }
        Ok(())
    }

    /// x (..., d_in) → pre-activations (N, n_latents), N the product of the leading dims.
    pub fn pre_acts(&self, x: &Tensor) -> Result<Tensor> {
        let d = self.config.d_in;
        if x.dims().last() != Some(&d) {
            return Err(SaeMismatch::InputShape {
                d_in: d,
                got: x.dims().to_vec(),
            }
            .into());
        }
        let x = x.reshape(((), d))?;
        let x = if self.config.apply_b_pre_to_input {
            x.broadcast_sub(&self.b_pre)?
        } else {
            x
        };
        Ok(x.matmul(&self.w_enc)?.broadcast_add(&self.b_enc)?)
    }

    /// Pre-activations (N, n) → the sparse code (N, n): TopK then ReLU, or ReLU. Gradients flow to the kept
    /// entries.
    pub fn activate(&self, pre: &Tensor) -> Result<Tensor> {
        let relu = pre.relu()?;
        match (self.config.architecture, self.config.k) {
            (Architecture::TopK, Some(k)) if k < self.config.n_latents => {
                let n = self.config.n_latents;
                let values: Vec<f32> = pre.flatten_all()?.to_vec1()?;
                let mask = Tensor::from_vec(topk_mask(&values, n, k, None), pre.shape(), pre.device())?;
                Ok(relu.mul(&mask)?)
            }
            _ => Ok(relu),
        }
    }

    /// x (..., d_in) → z (N, n_latents).
    pub fn encode(&self, x: &Tensor) -> Result<Tensor> {
        self.activate(&self.pre_acts(x)?)
    }

    /// z (N, n_latents) → x̂ (N, d_in).
    pub fn decode(&self, z: &Tensor) -> Result<Tensor> {
        Ok(z.matmul(&self.w_dec)?.broadcast_add(&self.b_pre)?)
    }

    /// x (..., d_in) → x̂ of the same shape.
    pub fn reconstruct(&self, x: &Tensor) -> Result<Tensor> {
        let out = self.decode(&self.encode(x)?)?;
        Ok(out.reshape(x.shape())?)
    }

    /// The SAE's identity: sha256 (hex, first 16 characters) over its hook, sizes, architecture and every
    /// weight's bits, so that a scan of its features can tell it from another SAE on the same hook.
    pub fn fingerprint(&self) -> Result<String> {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(b"circuitscope-sae-fingerprint-v1\n");
        let c = &self.config;
        h.update(
            format!(
                "{} {} {} {:?} {:?} {}",
                c.hook, c.d_in, c.n_latents, c.architecture, c.k, c.apply_b_pre_to_input
            )
            .as_bytes(),
        );
        for (name, t) in self.named_tensors() {
            h.update(b"\n");
            h.update(name.as_bytes());
            let values: Vec<f32> = t.flatten_all()?.to_vec1()?;
            let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_bits().to_le_bytes()).collect();
            h.update(&bytes);
        }
        Ok(h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect())
    }

    /// An intervention at the SAE's hook that changes latents' contributions: with z = encode(x), each edited
    /// latent i gets a new value z'_i (a constant, or z_i scaled) and `x ← x + Σ (z'_i − z_i)·W_dec[i]`; the rest
    /// of x, the SAE's reconstruction error included, is kept. Setting z'_i = 0 removes latent i's whole
    /// contribution (zero ablation), z'_i = its mean leaves what it writes on average (mean ablation).
    /// x (..., d_in) keeps its shape.
    pub fn edit(&self, latents: &[(usize, LatentEdit)]) -> Result<crate::model::Intervention> {
        use crate::model::{Action, Intervention};
        let n = self.config.n_latents;
        if let Some(&(latent, _)) = latents.iter().find(|(i, _)| *i >= n) {
            return Err(SaeMismatch::LatentOutOfRange { latent, n_latents: n }.into());
        }
        let k = latents.len();
        let dev = self.w_dec.device();
        let idx = Tensor::from_vec(latents.iter().map(|(i, _)| *i as u32).collect::<Vec<u32>>(), k, dev)?;
        // z' = z · factor + constant, per edited latent.
        let (factor, constant): (Vec<f32>, Vec<f32>) = latents
            .iter()
            .map(|(_, e)| match *e {
                LatentEdit::Set(c) => (0.0, c),
                LatentEdit::Scale(f) => (f, 0.0),
            })
            .unzip();
        let factor = Tensor::from_vec(factor, k, dev)?;
        let constant = Tensor::from_vec(constant, k, dev)?;
        // (k, d_in): the edited latents' decoder rows.
        let rows = self.w_dec.index_select(&idx, 0)?;
        let s = self.clone();
        Ok(Intervention::new(Action::Custom(std::sync::Arc::new(
            move |x: &Tensor| {
                let z = s.encode(x).map_err(|e| candle_core::Error::Msg(e.to_string()))?; // (N, n)
                let z = z.index_select(&idx, 1)?; // (N, k)
                let new = z.broadcast_mul(&factor)?.broadcast_add(&constant)?;
                let added = (new - z)?.matmul(&rows)?; // (N, d_in)
                x.reshape(added.shape())?.add(&added)?.reshape(x.shape())
            },
        ))))
    }

    /// Latent `i`'s decoder direction (d_in).
    pub fn decoder_direction(&self, i: usize) -> Result<Vec<f32>> {
        if i >= self.config.n_latents {
            return Err(SaeMismatch::LatentOutOfRange {
                latent: i,
                n_latents: self.config.n_latents,
            }
            .into());
        }
        Ok(self.w_dec.get(i)?.to_vec1()?)
    }
}

/// Reads and checks the four tensors; `bias_name` is the name of b_pre in the file.
fn read_weights(ck: &Checkpoint, cfg: &SaeConfig, bias_name: &str) -> Result<(Tensor, Tensor, Tensor, Tensor)> {
    let (d, n) = (cfg.d_in, cfg.n_latents);
    let get = |name: &str, shape: &[usize]| -> Result<Tensor> {
        let t = ck.require_dense(name, shape)?.to_dtype(DType::F32)?;
        let bad = t
            .flatten_all()?
            .to_vec1::<f32>()?
            .iter()
            .filter(|v| !v.is_finite())
            .count();
        if bad > 0 {
            return Err(ModelError::BadTensor {
                path: ck.path.clone(),
                name: name.to_string(),
                problem: Box::new(TensorProblem::NonFinite {
                    count: bad,
                    overridable: false,
                }),
            }
            .into());
        }
        Ok(t.to_device(&Device::Cpu)?)
    };
    Ok((
        get("W_enc", &[d, n])?,
        get("b_enc", &[n])?,
        get("W_dec", &[n, d])?,
        get(bias_name, &[d])?,
    ))
}

/// Our config from SAELens's `cfg.json` (topk and standard architectures, no activation normalisation).
fn saelens_config(text: &str, n_layer: usize) -> std::result::Result<SaeConfig, SaeConfigProblem> {
    let v: Value = serde_json::from_str(text)?;
    let size = |key: &'static str| -> std::result::Result<usize, SaeConfigProblem> {
        v.get(key)
            .and_then(Value::as_u64)
            .map(|x| x as usize)
            .ok_or(SaeConfigProblem::MissingSize { key })
    };
    let (d_in, n_latents) = (size("d_in")?, size("d_sae")?);
    let arch = v.get("architecture").and_then(Value::as_str).unwrap_or("standard");
    let (architecture, k) = match arch {
        "topk" => (Architecture::TopK, Some(size("k")?)),
        "standard" => (Architecture::Relu, None),
        other => {
            return Err(SaeConfigProblem::Architecture {
                found: other.to_string(),
            })
        }
    };
    if let Some(norm) = v.get("normalize_activations").and_then(Value::as_str) {
        if norm != "none" {
            return Err(SaeConfigProblem::Normalization {
                found: norm.to_string(),
            });
        }
    }
    if v.get("rescale_acts_by_decoder_norm").and_then(Value::as_bool) == Some(true) {
        return Err(SaeConfigProblem::RescaleByDecoderNorm);
    }
    let hook_name = v
        .pointer("/metadata/hook_name")
        .or_else(|| v.get("hook_name"))
        .and_then(Value::as_str)
        .ok_or(SaeConfigProblem::MissingHookName)?;
    let hook = HookName::parse_any(hook_name, n_layer)?;
    let version = v
        .pointer("/metadata/sae_lens_version")
        .and_then(Value::as_str)
        .map(|s| format!("saelens {s}"))
        .unwrap_or_else(|| "saelens".into());
    Ok(SaeConfig {
        format_version: SAE_FORMAT_VERSION,
        hook,
        d_in,
        n_latents,
        architecture,
        k,
        apply_b_pre_to_input: v.get("apply_b_dec_to_input").and_then(Value::as_bool).unwrap_or(true),
        model_fingerprint: None,
        imported_from: Some(version),
        training: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(arch: Architecture, k: Option<usize>) -> SaeConfig {
        SaeConfig {
            format_version: SAE_FORMAT_VERSION,
            hook: HookName::FinalResid,
            d_in: 2,
            n_latents: 3,
            architecture: arch,
            k,
            apply_b_pre_to_input: true,
            model_fingerprint: None,
            imported_from: None,
            training: None,
        }
    }

    fn t(v: &[f32], shape: &[usize]) -> Tensor {
        Tensor::from_vec(v.to_vec(), shape, &Device::Cpu).unwrap()
    }

    /// A 2-d, 3-latent SAE worked by hand:
    /// x = (3, 1), b_pre = (1, 0) → x − b_pre = (2, 1);
    /// W_enc = [[1, 0, 1], [0, 1, -1]] → (2, 1, 1); + b_enc (0, 0.5, -2) → pre = (2, 1.5, -1).
    /// TopK k=1 → z = (2, 0, 0); ReLU → z = (2, 1.5, 0).
    /// W_dec rows (1, 0), (0, 1), (0.6, 0.8): x̂(topk) = 2·(1, 0) + b_pre = (3, 0);
    /// x̂(relu) = 2·(1, 0) + 1.5·(0, 1) + b_pre = (3, 1.5).
    #[test]
    fn hand_computed_encode_decode() {
        let parts = || {
            (
                t(&[1., 0., 1., 0., 1., -1.], &[2, 3]),
                t(&[0., 0.5, -2.], &[3]),
                t(&[1., 0., 0., 1., 0.6, 0.8], &[3, 2]),
                t(&[1., 0.], &[2]),
            )
        };
        let x = t(&[3., 1.], &[1, 2]);
        let (we, be, wd, bp) = parts();
        let topk = Sae::new(cfg(Architecture::TopK, Some(1)), we, be, wd, bp).unwrap();
        let pre: Vec<Vec<f32>> = topk.pre_acts(&x).unwrap().to_vec2().unwrap();
        assert_eq!(pre, vec![vec![2., 1.5, -1.]]);
        let z: Vec<Vec<f32>> = topk.encode(&x).unwrap().to_vec2().unwrap();
        assert_eq!(z, vec![vec![2., 0., 0.]]);
        let xh: Vec<Vec<f32>> = topk.reconstruct(&x).unwrap().to_vec2().unwrap();
        assert_eq!(xh, vec![vec![3., 0.]]);
        let (we, be, wd, bp) = parts();
        let relu = Sae::new(cfg(Architecture::Relu, None), we, be, wd, bp).unwrap();
        let z: Vec<Vec<f32>> = relu.encode(&x).unwrap().to_vec2().unwrap();
        assert_eq!(z, vec![vec![2., 1.5, 0.]]);
        let xh: Vec<Vec<f32>> = relu.reconstruct(&x).unwrap().to_vec2().unwrap();
        assert_eq!(xh, vec![vec![3., 1.5]]);
        // Without centring: x·W_enc = (3, 1, 2) + b_enc = (3, 1.5, 0); TopK 1 → (3, 0, 0) → x̂ = (4, 0).
        let (we, be, wd, bp) = parts();
        let mut c = cfg(Architecture::TopK, Some(1));
        c.apply_b_pre_to_input = false;
        let raw = Sae::new(c, we, be, wd, bp).unwrap();
        let xh: Vec<Vec<f32>> = raw.reconstruct(&x).unwrap().to_vec2().unwrap();
        assert_eq!(xh, vec![vec![4., 0.]]);
    }

    #[test]
    fn topk_mask_keeps_the_largest_and_breaks_ties_low() {
        let v = [1., 5., 5., -2., 3., 0., 0., 0.];
        assert_eq!(topk_mask(&v, 4, 2, None), vec![0., 1., 1., 0., 1., 1., 0., 0.]);
        let allowed = [true, false, false, true];
        assert_eq!(
            topk_mask(&v, 4, 3, Some(&allowed)),
            vec![1., 0., 0., 1., 1., 0., 0., 1.]
        );
        assert_eq!(topk_mask(&[f32::NAN, 1.0], 2, 1, None), vec![0., 1.]);
    }

    #[test]
    fn impossible_configs_are_refused() {
        assert!(cfg(Architecture::TopK, None).problem().is_some());
        assert!(cfg(Architecture::TopK, Some(4)).problem().is_some());
        assert!(cfg(Architecture::Relu, Some(1)).problem().is_some());
        let mut c = cfg(Architecture::Relu, None);
        c.format_version = SAE_FORMAT_VERSION + 1;
        assert!(matches!(
            c.problem(),
            Some(SaeConfigProblem::NewerVersion { found, .. }) if found == SAE_FORMAT_VERSION + 1
        ));
        assert!(matches!(
            cfg(Architecture::TopK, Some(4)).problem(),
            Some(SaeConfigProblem::KOutOfRange { k: 4, .. })
        ));
    }

    #[test]
    fn saelens_configs() {
        let c = saelens_config(
            r#"{"d_in": 4, "d_sae": 8, "architecture": "topk", "k": 2, "apply_b_dec_to_input": false,
                "normalize_activations": "none", "metadata": {"hook_name": "blocks.0.hook_resid_post", "sae_lens_version": "6.1"}}"#,
            2,
        )
        .unwrap();
        assert_eq!(c.hook.to_string(), "1.resid_in");
        assert_eq!(
            (c.architecture, c.k, c.apply_b_pre_to_input),
            (Architecture::TopK, Some(2), false)
        );
        assert_eq!(c.imported_from.as_deref(), Some("saelens 6.1"));
        for (text, want) in [
            (r#"{"d_in": 4, "d_sae": 8, "architecture": "jumprelu"}"#, "jumprelu"),
            (r#"{"d_in": 4, "architecture": "standard"}"#, "d_sae"),
            (r#"{"d_in": 4, "d_sae": 8, "architecture": "standard"}"#, "hook_name"),
            (
                r#"{"d_in": 4, "d_sae": 8, "normalize_activations": "layer_norm", "hook_name": "x"}"#,
                "layer_norm",
            ),
            (
                r#"{"d_in": 4, "d_sae": 8, "hook_name": "blocks.9.hook_resid_post"}"#,
                "not a hook name",
            ),
        ] {
            let e = saelens_config(text, 2).unwrap_err();
            assert!(e.to_string().contains(want), "{e}");
        }
        assert!(matches!(
            saelens_config(r#"{"d_in": 4, "architecture": "standard"}"#, 2),
            Err(SaeConfigProblem::MissingSize { key: "d_sae" })
        ));
        assert!(matches!(
            saelens_config(r#"{"d_in": 4, "d_sae": 8, "architecture": "jumprelu"}"#, 2),
            Err(SaeConfigProblem::Architecture { found }) if found == "jumprelu"
        ));
    }
}
