//! Reading and writing checkpoints: our `model.safetensors` (dense tensors and CSR matrices, memory-mapped) and
//! the reference's PyTorch zip `final_model.pt` (spec A.5).
//!
//! A CSR matrix `<name>` is three tensors `<name>.csr.values` (F32/BF16/F16), `<name>.csr.col_idx` (U32) and
//! `<name>.csr.row_ptr` (U32/U64), with the dense shape in the metadata key `<name>.csr.shape` as `"[rows, cols]"`.
//! F32 values with aligned offsets are used straight from the map; anything else is copied once at load.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use memmap2::Mmap;
use safetensors::Dtype;

use super::error::{io_err, ModelError, Result};
use super::sparse_linear::{CsrWeight, CsrWeightError};

/// The newest model.safetensors layout this build reads and writes.
pub const MODEL_FORMAT_VERSION: u32 = 1;
const CSR_SUFFIXES: [&str; 3] = [".csr.values", ".csr.col_idx", ".csr.row_ptr"];

/// One tensor as stored: dense (always f32 after load) or a CSR matrix.
#[derive(Clone)]
pub enum Stored {
    Dense(Tensor),
    Csr(Arc<CsrWeight>),
}

impl Stored {
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
                let nz = t.ne(0f32)?.to_dtype(DType::F32)?.sum_all()?.to_scalar::<f32>()?;
                nz as f64 / n as f64
            }
            Stored::Csr(w) => w.density(),
        })
    }
}

/// All tensors of one checkpoint file, by name.
pub struct Checkpoint {
    pub path: PathBuf,
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

    fn format_err(&self, msg: impl Into<String>) -> ModelError {
        ModelError::Format {
            path: self.path.clone(),
            msg: msg.into(),
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
            .map_err(|e| ckpt.format_err(format!("corrupt safetensors header: {e}")))?;
        let data_start = 8 + header_len;
        let infos = meta.tensors();
        let extra: HashMap<String, String> = meta.metadata().clone().unwrap_or_default();
        if let Some(v) = extra.get("format_version") {
            let v: u32 = v
                .parse()
                .map_err(|_| ckpt.format_err(format!("format_version `{v}` is not a number")))?;
            if v > MODEL_FORMAT_VERSION {
                return Err(ckpt.format_err(format!(
                    "format_version {v} is newer than this circuitscope reads ({MODEL_FORMAT_VERSION}); upgrade circuitscope"
                )));
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
            let w = ckpt.load_csr(name, &mmap, &infos, &extra, &byte_range)?;
            ckpt.tensors.insert(name.clone(), Stored::Csr(Arc::new(w)));
        }
        for (name, info) in &infos {
            if CSR_SUFFIXES.iter().any(|s| name.ends_with(s)) {
                let base = CSR_SUFFIXES.iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
                if !ckpt.tensors.contains_key(base) {
                    return Err(ckpt.format_err(format!("`{name}` has no matching `{base}.csr.values`")));
                }
                continue;
            }
            let range = data_start + info.data_offsets.0..data_start + info.data_offsets.1;
            let t =
                bytes_to_f32_tensor(&mmap[range], info.dtype, &info.shape).map_err(|msg| ModelError::BadTensor {
                    path: path.to_path_buf(),
                    name: name.clone(),
                    msg,
                })?;
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
        let bad = |msg: String| ModelError::BadTensor {
            path: self.path.clone(),
            name: name.to_string(),
            msg,
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
            .ok_or_else(|| bad(format!("metadata key `{shape_key}` is missing")))
            .and_then(|s| serde_json::from_str(s).map_err(|e| bad(format!("metadata `{shape_key}` = `{s}`: {e}"))))?;
        let [rows, cols] = shape[..] else {
            return Err(bad(format!(
                "metadata `{shape_key}` must be [rows, cols], got {shape:?}"
            )));
        };
        if ci.dtype != Dtype::U32 {
            return Err(bad(format!("col_idx must be U32, got {:?}", ci.dtype)));
        }
        let row_ptr_u64 = match ri.dtype {
            Dtype::U32 => false,
            Dtype::U64 => true,
            d => return Err(bad(format!("row_ptr must be U32 or U64, got {d:?}"))),
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
                Err(e) => return Err(bad(e.to_string())),
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
        CsrWeight::from_parts(values, col_idx, row_ptr, rows, cols).map_err(|e| bad(e.to_string()))
    }

    /// Reads a PyTorch zip state dict (any `*/data.pkl` prefix), up-casting every float tensor to f32.
    /// Causal-mask buffers (`*.attn.bias`, 4-D) are skipped.
    pub fn open_torch(path: &Path) -> Result<Self> {
        let fmt = |msg: String| ModelError::Format {
            path: path.to_path_buf(),
            msg,
        };
        if !path.exists() {
            return Err(ModelError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            });
        }
        let pth = candle_core::pickle::PthTensors::new(path, None)
            .map_err(|e| fmt(format!("not a PyTorch zip state dict: {e}")))?;
        if pth.tensor_infos().is_empty() {
            return Err(fmt("no tensors found in the pickle".into()));
        }
        let mut tensors = BTreeMap::new();
        for name in pth.tensor_infos().keys() {
            if name.ends_with(".attn.bias") && !name.ends_with("c_attn.bias") {
                continue;
            }
            let t = pth
                .get(name)
                .map_err(|e| ModelError::BadTensor {
                    path: path.to_path_buf(),
                    name: name.clone(),
                    msg: e.to_string(),
                })?
                .ok_or_else(|| fmt(format!("tensor `{name}` vanished while reading")))?;
            let t = match t.dtype() {
                DType::F32 => t,
                DType::BF16 | DType::F16 | DType::F64 => t.to_dtype(DType::F32)?,
                // Integer buffers are not weights of the GPT; keep them as they are.
                _ => t,
            };
            tensors.insert(name.clone(), Stored::Dense(t.contiguous()?));
        }
        Ok(Checkpoint {
            path: path.to_path_buf(),
            tensors,
        })
    }

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
                msg: format!("expected a float tensor, got {:?}", t.dtype()),
            });
        }
        Ok(t)
    }
}

fn bytes_to_f32_vec(bytes: &[u8], dtype: Dtype) -> std::result::Result<Vec<f32>, String> {
    Ok(match dtype {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        d => return Err(format!("expected F32, BF16 or F16 values, got {d:?}")),
    })
}

fn bytes_to_f32_tensor(bytes: &[u8], dtype: Dtype, shape: &[usize]) -> std::result::Result<Tensor, String> {
    let values = bytes_to_f32_vec(bytes, dtype)?;
    Tensor::from_vec(values, shape, &Device::Cpu).map_err(|e| e.to_string())
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
        msg: format!("cannot serialise: {e}"),
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
