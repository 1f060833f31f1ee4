//! Reading and writing checkpoints: our `model.safetensors` (dense tensors and CSR matrices, memory-mapped) and
//! the reference's PyTorch zip `final_model.pt` (spec A.5).
//!
//! A CSR matrix `<name>` is three tensors `<name>.csr.values` (F32/BF16/F16), `<name>.csr.col_idx` (U32) and
//! `<name>.csr.row_ptr` (U32/U64), with the dense shape in the metadata key `<name>.csr.shape` as `"[rows, cols]"`.
//! F32 values with aligned offsets are used straight from the map; anything else is copied once at load.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use memmap2::Mmap;
use safetensors::Dtype;

use super::config::Config;
use super::error::{io_err, unread_summary, FormatProblem, ModelError, Result, TensorProblem};
use super::gpt::LoadOptions;
use super::sparse_linear::{CsrWeight, CsrWeightError};
use super::torch_pickle::{Py, TensorData, TensorRef, TorchZip, TorchZipError};

/// The newest model.safetensors layout this build reads and writes.
pub const MODEL_FORMAT_VERSION: u32 = 1;
const CSR_SUFFIXES: [&str; 3] = [".csr.values", ".csr.col_idx", ".csr.row_ptr"];

/// One tensor as stored: dense (always f32 after load) or a CSR matrix.
#[derive(Clone)]
pub enum Stored {
    /// A dense f32 tensor.
    Dense(Tensor),
    /// A CSR matrix (from `.csr.*` parts), shared so that layers can hold it without a copy.
    Csr(Arc<CsrWeight>),
}

impl Stored {
    /// The dense shape (a CSR matrix reports `[rows, cols]`).
    pub fn shape(&self) -> Vec<usize> {
        match self {
            Stored::Dense(t) => t.dims().to_vec(),
            Stored::Csr(w) => vec![w.rows(), w.cols()],
        }
    }

    /// The dense f32 tensor (materialised for CSR).
    pub fn to_dense(&self) -> Result<Tensor> {
        Ok(match self {
            Stored::Dense(t) => t.clone(),
            Stored::Csr(w) => w.to_dense()?,
        })
    }

    /// Fraction of nonzero entries.
    pub fn density(&self) -> Result<f64> {
        Ok(match self {
            Stored::Dense(t) => {
                let n = t.elem_count().max(1);
                // A sum of 0/1 rather than filter().count(), so that the loop vectorises.
                let nz = with_f32_values(t, |v| v.iter().map(|&x| usize::from(x != 0.0)).sum::<usize>())?;
                nz as f64 / n as f64
            }
            Stored::Csr(w) => w.density(),
        })
    }
}

/// All tensors of one checkpoint file, by name.
pub struct Checkpoint {
    /// The file the tensors came from, for error messages.
    pub path: PathBuf,
    /// Tensors by state-dict name; CSR parts are already joined into one entry.
    pub tensors: BTreeMap<String, Stored>,
}

impl Checkpoint {
    /// Opens `model.safetensors` or a PyTorch zip (`*.pt`, `*.pth`, `*.bin`), by extension.
    pub fn open(path: &Path) -> Result<Self> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("safetensors") => Self::open_safetensors(path),
            _ => Self::open_torch(path),
        }
    }

    fn format_err(&self, problem: FormatProblem) -> ModelError {
        ModelError::Format {
            path: self.path.clone(),
            problem,
        }
    }

    /// Memory-maps a safetensors file; CSR triples become `Stored::Csr`.
    pub fn open_safetensors(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(io_err(path))?;
        // SAFETY: the map is read-only; a file truncated under us by another process is outside what a
        // reader can defend against, as for every mmap-based loader.
        let mmap = Arc::new(unsafe { Mmap::map(&file) }.map_err(io_err(path))?);
        let mut ckpt = Checkpoint {
            path: path.to_path_buf(),
            tensors: BTreeMap::new(),
        };
        let (header_len, meta) = safetensors::SafeTensors::read_metadata(&mmap)
            .map_err(|e| ckpt.format_err(FormatProblem::SafetensorsHeader(e)))?;
        let data_start = 8 + header_len;
        let infos = meta.tensors();
        let extra: HashMap<String, String> = meta.metadata().clone().unwrap_or_default();
        if let Some(v) = extra.get("format_version") {
            let v: u32 = v
                .parse()
                .map_err(|_| ckpt.format_err(FormatProblem::VersionNotNumber { text: v.clone() }))?;
            if v > MODEL_FORMAT_VERSION {
                return Err(ckpt.format_err(FormatProblem::NewerVersion {
                    found: v,
                    supported: MODEL_FORMAT_VERSION,
                }));
            }
        }
        let byte_range = |name: &str| -> Option<std::ops::Range<usize>> {
            infos
                .get(name)
                .map(|i| data_start + i.data_offsets.0..data_start + i.data_offsets.1)
        };
        let mut csr_names: Vec<String> = infos
            .keys()
            .filter_map(|k| k.strip_suffix(CSR_SUFFIXES[0]).map(str::to_string))
            .collect();
        csr_names.sort();
        for name in &csr_names {
            if infos.contains_key(name.as_str()) {
                return Err(ckpt.format_err(FormatProblem::DenseAndCsr { name: name.clone() }));
            }
            let w = ckpt.load_csr(name, &mmap, &infos, &extra, &byte_range)?;
            ckpt.tensors.insert(name.clone(), Stored::Csr(Arc::new(w)));
        }
        for (name, info) in &infos {
            if CSR_SUFFIXES.iter().any(|s| name.ends_with(s)) {
                let base = CSR_SUFFIXES.iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
                if !ckpt.tensors.contains_key(base) {
                    return Err(ckpt.format_err(FormatProblem::OrphanCsrPart {
                        part: name.clone(),
                        base: base.to_string(),
                    }));
                }
                continue;
            }
            let range = data_start + info.data_offsets.0..data_start + info.data_offsets.1;
            let t = bytes_to_f32_tensor(&mmap[range.clone()], info.dtype, &info.shape).map_err(|problem| {
                ModelError::BadTensor {
                    path: path.to_path_buf(),
                    name: name.clone(),
                    problem: Box::new(problem),
                }
            })?;
            release_pages(&mmap, range);
            ckpt.tensors.insert(name.clone(), Stored::Dense(t));
        }
        Ok(ckpt)
    }

    fn load_csr(
        &self,
        name: &str,
        mmap: &Arc<Mmap>,
        infos: &HashMap<String, &safetensors::tensor::TensorInfo>,
        extra: &HashMap<String, String>,
        byte_range: &dyn Fn(&str) -> Option<std::ops::Range<usize>>,
    ) -> Result<CsrWeight> {
        let bad = |problem: TensorProblem| ModelError::BadTensor {
            path: self.path.clone(),
            name: name.to_string(),
            problem: Box::new(problem),
        };
        let part = |suffix: &str| -> Result<(&safetensors::tensor::TensorInfo, std::ops::Range<usize>)> {
            let full = format!("{name}{suffix}");
            match (infos.get(&full), byte_range(&full)) {
                (Some(i), Some(r)) => Ok((i, r)),
                _ => Err(ModelError::MissingTensor {
                    path: self.path.clone(),
                    name: full,
                }),
            }
        };
        let (vi, vr) = part(CSR_SUFFIXES[0])?;
        let (ci, cr) = part(CSR_SUFFIXES[1])?;
        let (ri, rr) = part(CSR_SUFFIXES[2])?;
        let shape_key = format!("{name}.csr.shape");
        let shape: Vec<usize> = extra
            .get(&shape_key)
            .ok_or_else(|| bad(TensorProblem::CsrShapeMissing { key: shape_key.clone() }))
            .and_then(|s| {
                serde_json::from_str(s).map_err(|source| {
                    bad(TensorProblem::CsrShapeJson {
                        key: shape_key.clone(),
                        text: s.clone(),
                        source,
                    })
                })
            })?;
        let [rows, cols] = shape[..] else {
            return Err(bad(TensorProblem::CsrShapeRank { key: shape_key, shape }));
        };
        if ci.dtype != Dtype::U32 {
            return Err(bad(TensorProblem::ColIdxDtype { dtype: ci.dtype }));
        }
        let row_ptr_u64 = match ri.dtype {
            Dtype::U32 => false,
            Dtype::U64 => true,
            dtype => return Err(bad(TensorProblem::RowPtrDtype { dtype })),
        };
        if vi.dtype == Dtype::F32 {
            match CsrWeight::from_mmap(
                mmap.clone(),
                vr.clone(),
                cr.clone(),
                rr.clone(),
                row_ptr_u64,
                rows,
                cols,
            ) {
                Ok(w) => return Ok(w),
                Err(CsrWeightError::Misaligned { .. }) => {}
                Err(e) => return Err(bad(e.into())),
            }
        }
        // Unaligned or non-f32 values: copy once, validating on the way.
        let values = bytes_to_f32_vec(&mmap[vr], vi.dtype).map_err(bad)?;
        let col_idx: Vec<u32> = mmap[cr]
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let row_ptr: Vec<u64> = if row_ptr_u64 {
            mmap[rr]
                .chunks_exact(8)
                .map(|b| u64::from_le_bytes(b.try_into().expect("chunk of 8")))
                .collect()
        } else {
            mmap[rr]
                .chunks_exact(4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u64)
                .collect()
        };
        CsrWeight::from_parts(values, col_idx, row_ptr, rows, cols).map_err(|e| bad(e.into()))
    }

    /// Reads a PyTorch zip state dict (any `*/data.pkl` prefix), up-casting every float tensor to f32.
    /// Causal-mask buffers (`*.attn.bias`, 4-D) are skipped.
    pub fn open_torch(path: &Path) -> Result<Self> {
        let fmt = |problem: FormatProblem| ModelError::Format {
            path: path.to_path_buf(),
            problem,
        };
        if !path.exists() {
            return Err(ModelError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            });
        }
        // Our own reader, not candle's: candle's recursive pickle VM overflows the stack on deeply nested
        // pickles, and it allocates whatever shape a tensor claims before looking at the storage's bytes.
        let (mut zip, root) = TorchZip::open(path).map_err(|e| match e {
            TorchZipError::Io { path, source } => ModelError::Io { path, source },
            TorchZipError::Format { problem, .. } => fmt(FormatProblem::TorchZip(Box::new(problem))),
        })?;
        let items = state_dict_items(&root).ok_or_else(|| {
            fmt(FormatProblem::NotStateDict {
                found: root.type_name(),
            })
        })?;
        let mut tensors = BTreeMap::new();
        for (name, t) in items {
            if name.ends_with(".attn.bias") && !name.ends_with("c_attn.bias") {
                continue;
            }
            let bad = |problem: TensorProblem| ModelError::BadTensor {
                path: path.to_path_buf(),
                name: name.to_string(),
                problem: Box::new(problem),
            };
            let tensor = if t.kind.is_float() {
                let values = zip.read_f32(t).map_err(|e| bad(TensorProblem::Storage(Box::new(e))))?;
                Tensor::from_vec(values, t.shape.as_slice(), &Device::Cpu)?
            } else {
                // Integer buffers are not weights of the GPT; keep them as they are.
                let values = match zip.read(t).map_err(|e| bad(TensorProblem::Storage(Box::new(e))))? {
                    TensorData::Int(v) => v,
                    TensorData::Float(_) => return Err(bad(TensorProblem::IntReadAsFloat)),
                };
                Tensor::from_vec(values, t.shape.as_slice(), &Device::Cpu)?
            };
            tensors.insert(name.to_string(), Stored::Dense(tensor));
        }
        if tensors.is_empty() {
            return Err(fmt(FormatProblem::NoTensors));
        }
        Ok(Checkpoint {
            path: path.to_path_buf(),
            tensors,
        })
    }

    /// Tensors a model of `cfg` does not read: extra layers, sink logits with `sink: false`, a bigram table with
    /// `enable_bigram_table: false`, anything unknown. A tied model's separate `transformer.wte.weight` counts as
    /// read only when it equals `lm_head.weight` (torch saves tied parameters under both names).
    pub fn unread_tensors(&self, cfg: &Config) -> Result<Vec<String>> {
        let mut expected: BTreeSet<String> = BTreeSet::new();
        let norm = |p: &str, expected: &mut BTreeSet<String>| {
            expected.insert(format!("{p}.weight"));
            if !cfg.rms_norm && cfg.ln_bias {
                expected.insert(format!("{p}.bias"));
            }
        };
        let linear = |p: &str, expected: &mut BTreeSet<String>| {
            expected.insert(format!("{p}.weight"));
            if cfg.bias {
                expected.insert(format!("{p}.bias"));
            }
        };
        for l in 0..cfg.n_layer {
            let p = format!("transformer.h.{l}");
            norm(&format!("{p}.ln_1"), &mut expected);
            norm(&format!("{p}.ln_2"), &mut expected);
            if cfg.d_pos_emb.is_some() {
                norm(&format!("{p}.ln_p1"), &mut expected);
                norm(&format!("{p}.ln_p2"), &mut expected);
            }
            linear(&format!("{p}.attn.c_attn"), &mut expected);
            linear(&format!("{p}.attn.c_proj"), &mut expected);
            linear(&format!("{p}.mlp.c_fc"), &mut expected);
            linear(&format!("{p}.mlp.c_proj"), &mut expected);
            if cfg.sink {
                expected.insert(format!("{p}.attn.attn_imp.sink_logit"));
            }
        }
        norm("transformer.ln_f", &mut expected);
        for name in ["transformer.wpe.weight", "lm_head.weight", "final_logits_bias"] {
            expected.insert(name.to_string());
        }
        if cfg.enable_bigram_table {
            expected.insert("bigram_table".into());
        }
        let wte = "transformer.wte.weight";
        let tied_copy = match (self.get(wte), self.get("lm_head.weight")) {
            (Some(w), Some(h)) if cfg.tied_unembed => {
                w.shape() == h.shape() && w.to_dense()?.eq(&h.to_dense()?)?.min_all()?.to_scalar::<u8>()? == 1
            }
            _ => true,
        };
        if !cfg.tied_unembed || tied_copy {
            expected.insert(wte.to_string());
        }
        Ok(self
            .tensors
            .keys()
            .filter(|k| !expected.contains(k.as_str()))
            .cloned()
            .collect())
    }

    /// The first tensor holding a NaN or an infinity, with the count of such values: weights like that make
    /// every downstream number meaningless without any error.
    pub fn non_finite(&self) -> Result<Option<(String, usize)>> {
        for (name, stored) in &self.tensors {
            let bad = match stored {
                Stored::Dense(t) if t.dtype() == DType::F32 => {
                    // NaN or infinite: all exponent bits set; tested on the bits so that the loop vectorises.
                    with_f32_values(t, |v| {
                        v.iter()
                            .map(|x| usize::from(x.to_bits() & 0x7f80_0000 == 0x7f80_0000))
                            .sum::<usize>()
                    })?
                }
                Stored::Dense(_) => 0,
                Stored::Csr(w) => w.view().values().iter().filter(|v| !v.is_finite()).count(),
            };
            if bad > 0 {
                return Ok(Some((name.clone(), bad)));
            }
        }
        Ok(None)
    }

    /// The checks a model load applies to a checkpoint beyond shapes (issue 22): non-finite weights are an
    /// error unless `opts.allow_nonfinite`; unread tensors are an error, or warnings with `opts.allow_extra`.
    pub fn audit(&self, cfg: &Config, opts: &LoadOptions) -> Result<Vec<String>> {
        let mut warnings = Vec::new();
        if let Some((name, count)) = self.non_finite()? {
            if !opts.allow_nonfinite {
                return Err(ModelError::BadTensor {
                    path: self.path.clone(),
                    name,
                    problem: Box::new(TensorProblem::NonFinite {
                        count,
                        overridable: true,
                    }),
                });
            }
            warnings.push(format!("tensor `{name}`: {count} NaN or infinite value(s)"));
        }
        let unread = self.unread_tensors(cfg)?;
        if !unread.is_empty() {
            if !opts.allow_extra {
                return Err(self.format_err(FormatProblem::UnreadTensors { names: unread }));
            }
            warnings.push(unread_summary(&unread));
        }
        Ok(warnings)
    }

    /// The tensor named `name`, if present.
    pub fn get(&self, name: &str) -> Option<&Stored> {
        self.tensors.get(name)
    }

    /// A required tensor with a checked shape.
    pub fn require(&self, name: &str, shape: &[usize]) -> Result<&Stored> {
        let t = self.get(name).ok_or_else(|| ModelError::MissingTensor {
            path: self.path.clone(),
            name: name.to_string(),
        })?;
        let got = t.shape();
        if got != shape {
            return Err(ModelError::Shape {
                path: self.path.clone(),
                name: name.to_string(),
                expected: shape.to_vec(),
                got,
            });
        }
        Ok(t)
    }

    /// A required dense f32 tensor with a checked shape.
    pub fn require_dense(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let t = self.require(name, shape)?.to_dense()?;
        if t.dtype() != DType::F32 {
            return Err(ModelError::BadTensor {
                path: self.path.clone(),
                name: name.to_string(),
                problem: Box::new(TensorProblem::NotFloat { dtype: t.dtype() }),
            });
        }
        Ok(t)
    }
}

/// The named tensors of a state dict: the top-level dict, or the dict under `state_dict` / `model` when the
/// file wraps it (as training scripts often do). Non-tensor entries are skipped.
fn state_dict_items(root: &Py) -> Option<Vec<(&str, &TensorRef)>> {
    fn tensors(d: &Py) -> Vec<(&str, &TensorRef)> {
        d.as_dict()
            .unwrap_or(&[])
            .iter()
            .filter_map(|(k, v)| match (k, v) {
                (Py::Str(k), Py::Tensor(t)) => Some((k.as_str(), t)),
                _ => None,
            })
            .collect()
    }
    root.as_dict()?;
    let top = tensors(root);
    if !top.is_empty() {
        return Some(top);
    }
    ["state_dict", "model"]
        .iter()
        .filter_map(|k| root.get(k))
        .map(tensors)
        .find(|t| !t.is_empty())
        .or(Some(top))
}

fn bytes_to_f32_vec(bytes: &[u8], dtype: Dtype) -> std::result::Result<Vec<f32>, TensorProblem> {
    Ok(match dtype {
        Dtype::F32 => le_f32s(bytes),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        dtype => return Err(TensorProblem::ValuesDtype { dtype }),
    })
}

/// Little-endian f32 bytes as values: one memcpy on little-endian machines (a per-value conversion was a third
/// of the load time of a GPT-2 small).
fn le_f32s(bytes: &[u8]) -> Vec<f32> {
    let n = bytes.len() / 4;
    #[cfg(target_endian = "little")]
    {
        let mut v: Vec<f32> = Vec::with_capacity(n);
        // SAFETY: the vector has room for n values, i.e. 4·n bytes, which are copied from `bytes` (at least that
        // long) before the length is set; every bit pattern is a valid f32, and the layouts agree on this target.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), v.as_mut_ptr().cast::<u8>(), 4 * n);
            v.set_len(n);
        }
        v
    }
    #[cfg(not(target_endian = "little"))]
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Drops the pages of `range` from this process's resident set once a dense tensor has been copied out of
/// them, so that a dense model is held once in memory, not twice (its copy and the map's pages). Only whole
/// pages inside the range are dropped, so CSR parts used straight from the map keep theirs.
fn release_pages(mmap: &Mmap, range: std::ops::Range<usize>) {
    #[cfg(unix)]
    {
        const PAGE: usize = 4096;
        let start = range.start.div_ceil(PAGE) * PAGE;
        let end = range.end / PAGE * PAGE;
        if end > start {
            // SAFETY: the map is a read-only shared mapping of the file, so MADV_DONTNEED only drops the page
            // table entries: a later read faults the same bytes back in from the file. Nothing borrows these
            // bytes any more (the tensor is a copy). A failure only costs memory, so it is ignored.
            let _ = unsafe { mmap.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start) };
        }
    }
    #[cfg(not(unix))]
    let _ = (mmap, range);
}

/// Runs `f` on the values of a CPU f32 tensor in storage order, without copying when the tensor is one
/// contiguous block of its storage or a transposed view of one (a 2-D matrix read `[in, out]`). For reductions
/// that do not depend on the order (counts, sums); other tensors are copied first.
fn with_f32_values<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let block = |t: &Tensor| t.layout().contiguous_offsets();
    let offsets = block(t).or_else(|| if t.rank() == 2 { block(&t.t().ok()?) } else { None });
    if let (Some((start, end)), DType::F32) = (offsets, t.dtype()) {
        let (storage, _) = t.storage_and_layout();
        if let candle_core::Storage::Cpu(candle_core::CpuStorage::F32(v)) = &*storage {
            return Ok(f(&v[start..end]));
        }
    }
    Ok(f(&t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?))
}

fn bytes_to_f32_tensor(bytes: &[u8], dtype: Dtype, shape: &[usize]) -> std::result::Result<Tensor, TensorProblem> {
    let values = bytes_to_f32_vec(bytes, dtype)?;
    Tensor::from_vec(values, shape, &Device::Cpu).map_err(|e| TensorProblem::Build(Box::new(e)))
}

/// Writes tensors to `path` as safetensors, atomically (temp file + fsync + rename), so that an interrupted write
/// never leaves a broken file where a good one was.
pub fn write_safetensors(
    path: &Path,
    tensors: &BTreeMap<String, Stored>,
    extra_meta: &[(String, String)],
) -> Result<()> {
    let mut views: Vec<(String, RawView)> = Vec::new();
    let mut meta: HashMap<String, String> = HashMap::new();
    meta.insert("format".into(), "circuitscope-model".into());
    meta.insert("format_version".into(), MODEL_FORMAT_VERSION.to_string());
    for (k, v) in extra_meta {
        meta.insert(k.clone(), v.clone());
    }
    for (name, stored) in tensors {
        match stored {
            Stored::Dense(t) => {
                let t = t.to_dtype(DType::F32)?.contiguous()?;
                let data: Vec<f32> = t.flatten_all()?.to_vec1()?;
                views.push((name.clone(), RawView::f32(&data, t.dims().to_vec())));
            }
            Stored::Csr(w) => {
                let v = w.view();
                meta.insert(format!("{name}.csr.shape"), format!("[{}, {}]", w.rows(), w.cols()));
                views.push((format!("{name}.csr.values"), RawView::f32(v.values(), vec![v.nnz()])));
                let col: Vec<u8> = v.col_idx().iter().flat_map(|c| c.to_le_bytes()).collect();
                views.push((
                    format!("{name}.csr.col_idx"),
                    RawView {
                        dtype: Dtype::U32,
                        shape: vec![v.nnz()],
                        data: col,
                    },
                ));
                let rp: Vec<u8> = (0..=w.rows()).flat_map(|r| v.row_ptr().get(r).to_le_bytes()).collect();
                views.push((
                    format!("{name}.csr.row_ptr"),
                    RawView {
                        dtype: Dtype::U64,
                        shape: vec![w.rows() + 1],
                        data: rp,
                    },
                ));
            }
        }
    }
    let bytes = safetensors::tensor::serialize(views, Some(meta)).map_err(|e| ModelError::Format {
        path: path.to_path_buf(),
        problem: FormatProblem::Serialise(e),
    })?;
    write_atomic(path, &canonical_header(bytes))
}

/// safetensors writes the metadata from a HashMap, whose order changes from run to run. Rewrites the header with
/// sorted keys (same length, so the data offsets stay valid) so that equal inputs give byte-identical files.
fn canonical_header(mut bytes: Vec<u8>) -> Vec<u8> {
    fn sorted(v: serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(m) => {
                let mut entries: Vec<_> = m.into_iter().collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                serde_json::Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
            }
            v => v,
        }
    }
    let Some(n) = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
    else {
        return bytes;
    };
    let Some(Ok(value)) = bytes.get(8..8 + n).map(serde_json::from_slice::<serde_json::Value>) else {
        return bytes;
    };
    let text = serde_json::to_string(&sorted(value)).expect("a json value serialises");
    if text.len() <= n {
        bytes[8..8 + text.len()].copy_from_slice(text.as_bytes());
        bytes[8 + text.len()..8 + n].fill(b' ');
    }
    bytes
}

/// Writes a file atomically through the one writer ([`crate::fsio::write_atomic`]): a temp file beside it,
/// fsynced, renamed over the target, the folder fsynced; the old file intact and no temp left on error.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    crate::fsio::write_atomic(path, bytes).map_err(|e| io_err(path)(e.into_io()))
}

struct RawView {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl RawView {
    fn f32(values: &[f32], shape: Vec<usize>) -> Self {
        RawView {
            dtype: Dtype::F32,
            shape,
            data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        }
    }
}

impl safetensors::View for RawView {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::error::{FormatProblem, TensorProblem};
    use crate::model::synth::SynthShape;
    use crate::model::torch_pickle::ZipProblem;

    fn one(name: &str, values: &[f32]) -> Checkpoint {
        let t = Tensor::new(values, &Device::Cpu).unwrap();
        Checkpoint {
            path: "m.safetensors".into(),
            tensors: BTreeMap::from([(name.to_string(), Stored::Dense(t))]),
        }
    }

    #[test]
    fn a_nan_weight_is_a_non_finite_tensor() {
        let ckpt = one("transformer.wpe.weight", &[1.0, f32::NAN, f32::INFINITY]);
        let err = ckpt
            .audit(&SynthShape::Tiny.config(), &LoadOptions::default())
            .unwrap_err();
        match &err {
            ModelError::BadTensor { name, problem, .. } => {
                assert_eq!(name, "transformer.wpe.weight");
                assert!(
                    matches!(
                        **problem,
                        TensorProblem::NonFinite {
                            count: 2,
                            overridable: true
                        }
                    ),
                    "{problem:?}"
                );
            }
            other => panic!("{other}"),
        }
        assert_eq!(
            err.to_string(),
            "m.safetensors: tensor `transformer.wpe.weight`: 2 NaN or infinite value(s); refusing to compute with \
             them (--allow-nonfinite to load anyway)"
        );
        let opts = LoadOptions {
            allow_nonfinite: true,
            ..LoadOptions::default()
        };
        assert_eq!(
            ckpt.audit(&SynthShape::Tiny.config(), &opts).unwrap(),
            ["tensor `transformer.wpe.weight`: 2 NaN or infinite value(s)"]
        );
    }

    #[test]
    fn unread_tensors_are_listed_in_the_problem() {
        let ckpt = one("bogus", &[1.0]);
        let err = ckpt
            .audit(&SynthShape::Tiny.config(), &LoadOptions::default())
            .unwrap_err();
        match &err {
            ModelError::Format {
                problem: FormatProblem::UnreadTensors { names },
                ..
            } => assert_eq!(names, &["bogus"]),
            other => panic!("{other}"),
        }
        assert!(err.to_string().ends_with(
            "1 tensor(s) the config does not use: bogus (check n_layer, sink, tied_unembed, enable_bigram_table); \
             --allow-extra loads anyway"
        ));
    }

    #[test]
    fn corrupt_files_name_their_cause() {
        let dir = tempfile::tempdir().unwrap();
        let garbage = dir.path().join("model.safetensors");
        std::fs::write(&garbage, b"\xff\xff\xff\xff\xff\xff\xff\xffnot a header").unwrap();
        match Checkpoint::open(&garbage) {
            Err(ModelError::Format {
                problem: FormatProblem::SafetensorsHeader(_),
                ..
            }) => {}
            other => panic!("{:?}", other.err()),
        }
        let ints = dir.path().join("ints.safetensors");
        let view = RawView {
            dtype: Dtype::I32,
            shape: vec![2],
            data: vec![0; 8],
        };
        let bytes = safetensors::tensor::serialize([("w", view)], None).unwrap();
        std::fs::write(&ints, bytes).unwrap();
        match Checkpoint::open(&ints) {
            Err(ModelError::BadTensor { name, problem, .. }) => {
                assert_eq!(name, "w");
                assert!(
                    matches!(*problem, TensorProblem::ValuesDtype { dtype: Dtype::I32 }),
                    "{problem:?}"
                );
            }
            other => panic!("{:?}", other.err()),
        }
        let pt = dir.path().join("final_model.pt");
        std::fs::write(&pt, b"PK not really a zip").unwrap();
        let err = Checkpoint::open(&pt).err().unwrap();
        assert!(
            matches!(&err, ModelError::Format { problem: FormatProblem::TorchZip(p), .. } if matches!(**p, ZipProblem::NotZip(_))),
            "{err:?}"
        );
        assert!(err
            .to_string()
            .contains("not a readable checkpoint: not a PyTorch zip state dict: not a torch zip"));
    }
}
