//! A reader for `torch.save` zip files holding arbitrary (weights_only) pickles: nested dicts with str, int,
//! float or 0-d tensor keys, lists, tuples and tensors (spec F.1).
//!
//! candle's pickle VM stores memo entries by value, so a list or dict that the pickle references twice (pickle
//! memoises a container when it is still empty, then fills it) comes back empty the second time; the reference's
//! viz_data.pt shares `prune_config` and the `pair_data` name lists that way. This VM keeps containers in arenas
//! and memoises references to them, so shared containers read back complete.
//!
//! Files are hostile until checked: the VM never recurses on the pickle's nesting (tuples carry their depth and
//! are refused past [`MAX_DEPTH`]), the resolved value is bounded in size by the pickle's bytes, and a tensor's
//! claimed shape, strides and offset are checked, without overflow, against its storage's actual bytes before
//! anything is allocated for it. It lives in `model` because both checkpoint loading (`final_model.pt`) and the
//! viewer import (`viz_data.pt`) read torch zips.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The deepest nesting of containers a pickle may have; torch state dicts and viz payloads nest a handful.
pub const MAX_DEPTH: u32 = 256;

/// Why a torch zip could not be read. Both variants name the file.
#[derive(Debug, thiserror::Error)]
pub enum TorchZipError {
    /// Reading the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The zip file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a torch zip this reader accepts (zip layout, pickle opcodes, storages).
    #[error("{path}: {problem}")]
    Format {
        /// The zip file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        problem: ZipProblem,
    },
}

/// What is wrong with a torch zip (the `problem` of [`TorchZipError::Format`]).
#[derive(Debug, thiserror::Error)]
pub enum ZipProblem {
    /// The zip's central directory cannot be read.
    #[error("not a torch zip (torch.save output): {0}")]
    NotZip(#[source] zip::result::ZipError),
    /// No `data.pkl` (at any prefix) in the zip.
    #[error("the zip has no `data.pkl` entry")]
    NoDataPkl,
    /// The zip entry holding the pickle cannot be read.
    #[error(transparent)]
    Entry(EntryProblem),
    /// The pickle does not decode.
    #[error("`{entry}`: {source}")]
    Pickle {
        /// The zip entry holding the pickle.
        entry: String,
        /// The VM's complaint.
        #[source]
        source: PickleError,
    },
    /// A tensor's storage cannot be read or does not hold what the tensor claims.
    #[error("tensor storage `{key}`: {problem}")]
    Storage {
        /// The storage key (`data/<key>` in the zip).
        key: String,
        /// What is wrong with it (boxed: shapes and strides would make every error this large).
        #[source]
        problem: Box<StorageProblem>,
    },
}

/// Why one zip entry could not be read whole.
#[derive(Debug, thiserror::Error)]
pub enum EntryProblem {
    /// The entry is absent or its local header is unreadable.
    #[error("zip entry `{name}`: {source}")]
    Open {
        /// The entry's name.
        name: String,
        /// The zip reader's complaint.
        #[source]
        source: zip::result::ZipError,
    },
    /// The entry claims more bytes than the file could decompress to.
    #[error("zip entry `{name}` claims {claimed} bytes, more than a {file_len}-byte file can hold")]
    TooLarge {
        /// The entry's name.
        name: String,
        /// The uncompressed size it claims.
        claimed: u64,
        /// The zip file's length.
        file_len: u64,
    },
    /// Decompressing the entry failed.
    #[error("zip entry `{name}`: {source}")]
    Read {
        /// The entry's name.
        name: String,
        /// The decompressor's (or the OS's) error.
        #[source]
        source: std::io::Error,
    },
}

/// What is wrong with a tensor's storage, or with the tensor's claims on it.
#[derive(Debug, thiserror::Error)]
pub enum StorageProblem {
    /// A float read of an integer storage.
    #[error("expected floats, found {kind:?}")]
    NotFloat {
        /// The storage's element type.
        kind: StorageKind,
    },
    /// The storage's zip entry cannot be read.
    #[error(transparent)]
    Entry(EntryProblem),
    /// Shape and stride have different lengths.
    #[error("shape {shape:?} and stride {stride:?} differ in rank")]
    RankMismatch {
        /// The tensor's shape.
        shape: Vec<usize>,
        /// The tensor's strides.
        stride: Vec<usize>,
    },
    /// The last element the shape, strides and offset address lies past the storage.
    #[error("shape {shape:?} stride {stride:?} offset {offset} reaches past the storage's {elements} elements")]
    OutOfBounds {
        /// The tensor's shape.
        shape: Vec<usize>,
        /// The tensor's strides.
        stride: Vec<usize>,
        /// The tensor's offset, in elements.
        offset: usize,
        /// Elements the storage holds.
        elements: usize,
    },
    /// The shape claims more elements than the storage holds (a zero stride repeating them).
    #[error("shape {shape:?} claims {numel} elements but the storage holds only {elements} (stride 0?)")]
    ClaimsTooMany {
        /// The tensor's shape.
        shape: Vec<usize>,
        /// Elements the shape claims.
        numel: usize,
        /// Elements the storage holds.
        elements: usize,
    },
}

type Result<T, E = TorchZipError> = std::result::Result<T, E>;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TorchZipError + '_ {
    move |source| TorchZipError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The element type of a torch storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageKind {
    /// `DoubleStorage`: 64-bit float.
    F64,
    /// `FloatStorage`: 32-bit float.
    F32,
    /// `HalfStorage`: IEEE 16-bit float.
    F16,
    /// `BFloat16Storage`: bfloat16.
    BF16,
    /// `LongStorage`: 64-bit signed integer.
    I64,
    /// `IntStorage`: 32-bit signed integer.
    I32,
    /// `ShortStorage`: 16-bit signed integer.
    I16,
    /// `CharStorage`: 8-bit signed integer.
    I8,
    /// `ByteStorage`: 8-bit unsigned integer.
    U8,
    /// `BoolStorage`: one byte per boolean.
    Bool,
}

impl StorageKind {
    fn from_class(name: &str) -> Option<Self> {
        Some(match name {
            "DoubleStorage" => StorageKind::F64,
            "FloatStorage" => StorageKind::F32,
            "HalfStorage" => StorageKind::F16,
            "BFloat16Storage" => StorageKind::BF16,
            "LongStorage" => StorageKind::I64,
            "IntStorage" => StorageKind::I32,
            "ShortStorage" => StorageKind::I16,
            "CharStorage" => StorageKind::I8,
            "ByteStorage" => StorageKind::U8,
            "BoolStorage" => StorageKind::Bool,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            StorageKind::F64 | StorageKind::I64 => 8,
            StorageKind::F32 | StorageKind::I32 => 4,
            StorageKind::F16 | StorageKind::BF16 | StorageKind::I16 => 2,
            StorageKind::I8 | StorageKind::U8 | StorageKind::Bool => 1,
        }
    }

    /// Whether the elements are floating point.
    pub fn is_float(self) -> bool {
        matches!(
            self,
            StorageKind::F64 | StorageKind::F32 | StorageKind::F16 | StorageKind::BF16
        )
    }
}

/// A tensor as the pickle describes it; its data lies in the zip entry `<prefix>data/<key>`.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorRef {
    /// Element type of the storage.
    pub kind: StorageKind,
    /// Storage key: the data lies in the zip entry `<prefix>data/<key>`.
    pub key: String,
    /// In elements.
    pub offset: usize,
    /// Size of each dimension.
    pub shape: Vec<usize>,
    /// Step of each dimension, in elements (row-major contiguous when it matches the shape).
    pub stride: Vec<usize>,
}

impl TensorRef {
    /// The number of elements the shape claims; saturates instead of wrapping on a hostile shape.
    pub fn numel(&self) -> usize {
        self.shape
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .unwrap_or(usize::MAX)
    }
}

/// A decoded pickle value.
#[derive(Debug, Clone, PartialEq)]
pub enum Py {
    /// Python `None`.
    None,
    /// A Python bool.
    Bool(bool),
    /// A Python int that fits in i64.
    Int(i64),
    /// A Python float.
    Float(f64),
    /// A Python str.
    Str(String),
    /// Python bytes.
    Bytes(Vec<u8>),
    /// A Python list.
    List(Vec<Py>),
    /// A Python tuple.
    Tuple(Vec<Py>),
    /// In insertion order.
    Dict(Vec<(Py, Py)>),
    /// A tensor rebuilt by `torch._utils._rebuild_tensor_v2`; its data stays in the zip.
    Tensor(TensorRef),
    /// Anything else (a global, or an object the VM does not build), described.
    Other(String),
}

impl Py {
    /// The Python type's name, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Py::None => "None",
            Py::Bool(_) => "bool",
            Py::Int(_) => "int",
            Py::Float(_) => "float",
            Py::Str(_) => "str",
            Py::Bytes(_) => "bytes",
            Py::List(_) => "list",
            Py::Tuple(_) => "tuple",
            Py::Dict(_) => "dict",
            Py::Tensor(_) => "tensor",
            Py::Other(_) => "object",
        }
    }

    /// The value of `key` in a dict with string keys.
    pub fn get(&self, key: &str) -> Option<&Py> {
        match self {
            Py::Dict(items) => items
                .iter()
                .find(|(k, _)| matches!(k, Py::Str(s) if s == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// Items of a list or tuple.
    pub fn as_seq(&self) -> Option<&[Py]> {
        match self {
            Py::List(v) | Py::Tuple(v) => Some(v),
            _ => None,
        }
    }

    /// Items of a dict, in insertion order.
    pub fn as_dict(&self) -> Option<&[(Py, Py)]> {
        match self {
            Py::Dict(v) => Some(v),
            _ => None,
        }
    }

    /// The text of a str.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Py::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// Tensor values, widened: floats to f64, integers to i64.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    /// Values of a floating-point storage.
    Float(Vec<f64>),
    /// Values of an integer or boolean storage.
    Int(Vec<i64>),
}

impl TensorData {
    /// The number of values.
    pub fn len(&self) -> usize {
        match self {
            TensorData::Float(v) => v.len(),
            TensorData::Int(v) => v.len(),
        }
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values as f64.
    pub fn to_f64(&self) -> Vec<f64> {
        match self {
            TensorData::Float(v) => v.clone(),
            TensorData::Int(v) => v.iter().map(|&x| x as f64).collect(),
        }
    }

    /// Integer values; None if any float is not integral.
    pub fn to_i64(&self) -> Option<Vec<i64>> {
        match self {
            TensorData::Int(v) => Some(v.clone()),
            TensorData::Float(v) => v
                .iter()
                .map(|&x| (x.fract() == 0.0 && x.abs() < 9.0e15).then_some(x as i64))
                .collect(),
        }
    }
}

/// An opened torch zip: the decoded pickle plus access to the storages.
pub struct TorchZip {
    /// The zip file, for error messages.
    pub path: PathBuf,
    archive: zip::ZipArchive<std::fs::File>,
    prefix: String,
    /// The zip file's length: no entry may claim to decompress to much more than this allows.
    file_len: u64,
    storages: HashMap<String, Vec<u8>>,
}

/// deflate cannot expand a stream by more than about 1032:1; an entry claiming more is corrupt or a bomb.
const MAX_DEFLATE_RATIO: u64 = 1032;

impl TorchZip {
    /// Opens the zip and decodes its `*/data.pkl`.
    pub fn open(path: &Path) -> Result<(Self, Py)> {
        let file = std::fs::File::open(path).map_err(io_err(path))?;
        let file_len = file.metadata().map_err(io_err(path))?.len();
        let bad = |problem: ZipProblem| TorchZipError::Format {
            path: path.to_path_buf(),
            problem,
        };
        let mut archive = zip::ZipArchive::new(file).map_err(|e| bad(ZipProblem::NotZip(e)))?;
        let pkl = archive
            .file_names()
            .filter_map(|n| n.ok().map(|n| n.into_owned()))
            .filter(|n| n == "data.pkl" || n.ends_with("/data.pkl"))
            .min_by_key(|n| n.len())
            .ok_or_else(|| bad(ZipProblem::NoDataPkl))?;
        let prefix = pkl.strip_suffix("data.pkl").unwrap_or("").to_string();
        let bytes = read_entry(&mut archive, &pkl, file_len).map_err(|e| bad(ZipProblem::Entry(e)))?;
        let value = unpickle(&bytes).map_err(|source| {
            bad(ZipProblem::Pickle {
                entry: pkl.clone(),
                source,
            })
        })?;
        Ok((
            TorchZip {
                path: path.to_path_buf(),
                archive,
                prefix,
                file_len,
                storages: HashMap::new(),
            },
            value,
        ))
    }

    /// Reads a tensor's values, widened (any strides; bounds checked against the storage).
    pub fn read(&mut self, t: &TensorRef) -> Result<TensorData> {
        let k = t.kind;
        Ok(match k {
            StorageKind::F64 | StorageKind::F32 | StorageKind::F16 | StorageKind::BF16 => {
                TensorData::Float(self.gather(t, |b| widen_float(k, b))?)
            }
            _ => TensorData::Int(self.gather(t, |b| widen_int(k, b))?),
        })
    }

    /// Reads a float tensor's values as f32 (weights: no detour through f64).
    pub fn read_f32(&mut self, t: &TensorRef) -> Result<Vec<f32>> {
        let k = t.kind;
        if !k.is_float() {
            return Err(TorchZipError::Format {
                path: self.path.clone(),
                problem: ZipProblem::Storage {
                    key: t.key.clone(),
                    problem: Box::new(StorageProblem::NotFloat { kind: k }),
                },
            });
        }
        self.gather(t, |b| match k {
            StorageKind::F64 => f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32,
            StorageKind::F32 => f32::from_le_bytes(b.try_into().expect("4 bytes")),
            StorageKind::F16 => half::f16::from_le_bytes(b.try_into().expect("2 bytes")).to_f32(),
            _ => half::bf16::from_le_bytes(b.try_into().expect("2 bytes")).to_f32(),
        })
    }

    /// The storage's bytes, read from the zip once.
    fn storage(&mut self, key: &str) -> Result<&[u8]> {
        if !self.storages.contains_key(key) {
            let name = format!("{}data/{}", self.prefix, key);
            let buf = read_entry(&mut self.archive, &name, self.file_len).map_err(|e| TorchZipError::Format {
                path: self.path.clone(),
                problem: ZipProblem::Storage {
                    key: key.to_string(),
                    problem: Box::new(StorageProblem::Entry(e)),
                },
            })?;
            self.storages.insert(key.to_string(), buf);
        }
        Ok(&self.storages[key])
    }

    /// The tensor's elements in row-major order of its logical shape, each converted by `conv` from its bytes.
    fn gather<T>(&mut self, t: &TensorRef, conv: impl Fn(&[u8]) -> T) -> Result<Vec<T>> {
        let path = self.path.clone();
        let bad = |problem: StorageProblem| TorchZipError::Format {
            path: path.clone(),
            problem: ZipProblem::Storage {
                key: t.key.clone(),
                problem: Box::new(problem),
            },
        };
        if t.shape.len() != t.stride.len() {
            return Err(bad(StorageProblem::RankMismatch {
                shape: t.shape.clone(),
                stride: t.stride.clone(),
            }));
        }
        let size = t.kind.size();
        let bytes = self.storage(&t.key)?;
        let n_storage = bytes.len() / size;
        let numel = t.numel();
        if numel == 0 {
            return Ok(Vec::new());
        }
        // Checked arithmetic: a stride near 2^63 must not wrap into a small, "in bounds" element.
        let last = t.shape.iter().zip(&t.stride).try_fold(t.offset, |acc, (&d, &s)| {
            (d - 1).checked_mul(s).and_then(|x| acc.checked_add(x))
        });
        match last {
            Some(last) if last < n_storage => {}
            _ => {
                return Err(bad(StorageProblem::OutOfBounds {
                    shape: t.shape.clone(),
                    stride: t.stride.clone(),
                    offset: t.offset,
                    elements: n_storage,
                }))
            }
        }
        // Stride 0 repeats elements; a file claiming far more elements than it stores would make us allocate
        // what the file never paid for, so the claim is held to the storage's size.
        if numel > n_storage {
            return Err(bad(StorageProblem::ClaimsTooMany {
                shape: t.shape.clone(),
                numel,
                elements: n_storage,
            }));
        }
        let mut out = Vec::with_capacity(numel);
        let mut idx = vec![0usize; t.shape.len()];
        for _ in 0..numel {
            // In bounds: every index is below its dimension and the largest element was checked above.
            let o = t.offset + idx.iter().zip(&t.stride).map(|(i, s)| i * s).sum::<usize>();
            out.push(conv(&bytes[o * size..(o + 1) * size]));
            for d in (0..idx.len()).rev() {
                idx[d] += 1;
                if idx[d] < t.shape[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
        Ok(out)
    }
}

/// Reads one zip entry whole, refusing a size the archive cannot honestly hold.
fn read_entry(
    archive: &mut zip::ZipArchive<std::fs::File>,
    name: &str,
    file_len: u64,
) -> std::result::Result<Vec<u8>, EntryProblem> {
    let entry = archive.by_name(name).map_err(|source| EntryProblem::Open {
        name: name.to_string(),
        source,
    })?;
    let claimed = entry.size();
    let limit = if entry.compression() == zip::CompressionMethod::Stored {
        file_len
    } else {
        file_len.saturating_mul(MAX_DEFLATE_RATIO)
    };
    if claimed > limit {
        return Err(EntryProblem::TooLarge {
            name: name.to_string(),
            claimed,
            file_len,
        });
    }
    let mut buf = Vec::with_capacity(claimed as usize);
    // take(): the declared size is what was checked; a stream that runs on past it is not believed.
    entry
        .take(claimed)
        .read_to_end(&mut buf)
        .map_err(|source| EntryProblem::Read {
            name: name.to_string(),
            source,
        })?;
    Ok(buf)
}

fn widen_float(k: StorageKind, b: &[u8]) -> f64 {
    match k {
        StorageKind::F64 => f64::from_le_bytes(b.try_into().expect("8 bytes")),
        StorageKind::F32 => short_f64(f32::from_le_bytes(b.try_into().expect("4 bytes"))),
        StorageKind::F16 => short_f64(half::f16::from_le_bytes(b.try_into().expect("2 bytes")).to_f32()),
        _ => short_f64(half::bf16::from_le_bytes(b.try_into().expect("2 bytes")).to_f32()),
    }
}

fn widen_int(k: StorageKind, b: &[u8]) -> i64 {
    match k {
        StorageKind::I64 => i64::from_le_bytes(b.try_into().expect("8 bytes")),
        StorageKind::I32 => i32::from_le_bytes(b.try_into().expect("4 bytes")) as i64,
        StorageKind::I16 => i16::from_le_bytes(b.try_into().expect("2 bytes")) as i64,
        StorageKind::I8 => b[0] as i8 as i64,
        _ => b[0] as i64,
    }
}

/// An f32 widened to the f64 with the f32's shortest decimal (0.1f32 → 0.1, not 0.10000000149011612). The value
/// casts back to the same f32, and it survives a JSON round trip exactly (serde_json parses short decimals
/// exactly, 17-digit ones only to within an ulp).
pub fn short_f64(x: f32) -> f64 {
    if !x.is_finite() {
        return x as f64;
    }
    format!("{x:e}").parse().unwrap_or(x as f64)
}

// ---------------------------------------------------------------------------------------------------------------
// The pickle VM.

#[derive(Debug, Clone)]
enum V {
    Mark,
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    /// Items and nesting depth (1 + the deepest item's), kept so that depth is checked without recursion.
    Tuple(Vec<V>, u32),
    List(usize),
    Dict(usize),
    Global(String, String),
    Tensor(Box<TensorRef>),
    /// The persistent id and its nesting depth.
    Persid(Box<V>, u32),
    Other(String),
}

impl V {
    /// Nesting depth of the value itself (containers in arenas count when resolved, not here).
    /// What the value is, for messages (never its contents: they may be huge).
    fn kind(&self) -> &'static str {
        match self {
            V::Mark => "MARK",
            V::None => "None",
            V::Bool(_) => "bool",
            V::Int(_) => "int",
            V::Float(_) => "float",
            V::Str(_) => "str",
            V::Bytes(_) => "bytes",
            V::Tuple(..) => "tuple",
            V::List(_) => "list",
            V::Dict(_) => "dict",
            V::Global(..) => "global",
            V::Tensor(_) => "tensor",
            V::Persid(..) => "persistent id",
            V::Other(_) => "object",
        }
    }

    fn depth(&self) -> u32 {
        match self {
            V::Tuple(_, d) | V::Persid(_, d) => *d,
            _ => 0,
        }
    }
}

/// A tuple of `items`, refused when it would nest deeper than [`MAX_DEPTH`]: a pickle of 200,000 nested TUPLE1
/// opcodes would otherwise build a value whose drop alone overflows the stack.
fn tuple(items: Vec<V>) -> VmResult<V> {
    let d = 1 + items.iter().map(V::depth).max().unwrap_or(0);
    if d > MAX_DEPTH {
        return Err(PickleError::TooDeep);
    }
    Ok(V::Tuple(items, d))
}

fn persid(pid: V) -> VmResult<V> {
    let d = 1 + pid.depth();
    if d > MAX_DEPTH {
        return Err(PickleError::TooDeep);
    }
    Ok(V::Persid(Box::new(pid), d))
}

struct Vm<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<V>,
    memo: HashMap<u32, V>,
    lists: Vec<Vec<V>>,
    dicts: Vec<Vec<(V, V)>>,
    /// Bytes of values made by copying (memo gets, DUP, resolving), against `budget`: a few bytes of BINGET
    /// can copy a large value, and shared containers expand when resolved, so without this a small file
    /// could ask for gigabytes.
    spent: std::cell::Cell<usize>,
    budget: usize,
}

/// Copies and resolved values may take this many bytes per byte of pickle (plus [`BUDGET_BASE`]).
const BUDGET_PER_BYTE: usize = 64;
const BUDGET_BASE: usize = 64 << 20;

/// Why a pickle could not be decoded. Offsets and sizes are the pickle's own, so a message locates the problem.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PickleError {
    /// An opcode's operand runs past the end.
    #[error("truncated pickle: needs {needed} more bytes at offset {offset} of {len}")]
    Truncated {
        /// Bytes the operand needs.
        needed: usize,
        /// Where it starts.
        offset: usize,
        /// The pickle's length.
        len: usize,
    },
    /// A text operand has no terminating newline.
    #[error("truncated pickle: unterminated text line")]
    UnterminatedLine,
    /// A string operand is not UTF-8.
    #[error("invalid UTF-8 in a pickled string")]
    BadUtf8,
    /// An opcode pops more than the stack holds.
    #[error("corrupt pickle: stack underflow")]
    StackUnderflow,
    /// An opcode needs a MARK and there is none.
    #[error("corrupt pickle: no MARK on the stack")]
    NoMark,
    /// PUT or DUP with nothing to copy.
    #[error("corrupt pickle: {op} on an empty stack")]
    EmptyStack {
        /// The opcode's name.
        op: &'static str,
    },
    /// A memo GET of an id never PUT.
    #[error("corrupt pickle: memo entry {0} is missing")]
    MissingMemo(u32),
    /// APPEND(S) or SETITEM(S) on a value that is no list or dict.
    #[error("corrupt pickle: {op} a {found}")]
    WrongTarget {
        /// The opcode and its preposition (`APPEND to`, `SETITEM on`).
        op: &'static str,
        /// What the target is.
        found: &'static str,
    },
    /// SETITEMS with a key and no value.
    #[error("corrupt pickle: SETITEMS with an odd number of items")]
    OddSetItems,
    /// A callable applied to something other than an argument tuple.
    #[error("corrupt pickle: {callable} called with a {found}")]
    BadCallArgs {
        /// `module.name` of the callable.
        callable: String,
        /// What it was called with.
        found: &'static str,
    },
    /// A protocol newer than 5.
    #[error("unsupported pickle protocol {0}")]
    Protocol(u8),
    /// A LONG1/LONG4 operand wider than 64 bits.
    #[error("integer of {0} bytes is too large")]
    IntTooLarge(usize),
    /// A text integer or float that does not parse.
    #[error("bad {kind} literal `{text}`")]
    BadLiteral {
        /// `integer` or `float`.
        kind: &'static str,
        /// The text.
        text: String,
    },
    /// A text memo id that does not parse.
    #[error("bad memo id `{0}`")]
    BadMemoId(String),
    /// A MARK among a TUPLE1-3's items.
    #[error("corrupt pickle: MARK inside a tuple")]
    MarkInTuple,
    /// STACK_GLOBAL of non-strings.
    #[error("corrupt pickle: STACK_GLOBAL needs two strings")]
    StackGlobal,
    /// A byte that is no opcode.
    #[error("unknown pickle opcode 0x{op:02x} at offset {offset} (corrupt or not a pickle)")]
    UnknownOpcode {
        /// The byte.
        op: u8,
        /// Its offset.
        offset: usize,
    },
    /// Values nest deeper than [`MAX_DEPTH`] (while building them).
    #[error("pickle nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// Values nest deeper than [`MAX_DEPTH`] when resolved, which shared or cyclic containers also give.
    #[error("pickle nests deeper than {MAX_DEPTH} levels (or is cyclic)")]
    TooDeepOrCyclic,
    /// A MARK left where a value belongs.
    #[error("corrupt pickle: stray MARK")]
    StrayMark,
    /// Copies and resolved values would take more than the budget for the file's size.
    #[error("pickle expands past {budget_mb} MB for a {len}-byte file (shared or repeated values); refusing")]
    Expands {
        /// The budget in MB.
        budget_mb: usize,
        /// The pickle's length.
        len: usize,
    },
    /// A tensor rebuild whose arguments are not laid out as torch.save writes them.
    #[error("{0}")]
    Tensor(&'static str),
    /// A tensor's size or stride is not a tuple of non-negative integers.
    #[error("tensor {what} {problem}")]
    TensorShape {
        /// `size` or `stride`.
        what: &'static str,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// A storage class this reader does not know.
    #[error("unsupported storage type {0}")]
    StorageType(String),
}

type VmResult<T> = std::result::Result<T, PickleError>;

/// Decodes a pickle (protocols 0-5, the subset torch.save and builtins use).
pub fn unpickle(data: &[u8]) -> std::result::Result<Py, PickleError> {
    let mut vm = Vm {
        data,
        pos: 0,
        stack: Vec::new(),
        memo: HashMap::new(),
        lists: Vec::new(),
        dicts: Vec::new(),
        spent: std::cell::Cell::new(0),
        budget: data.len().saturating_mul(BUDGET_PER_BYTE).saturating_add(BUDGET_BASE),
    };
    let top = vm.run()?;
    vm.resolve(&top, 0)
}

/// Roughly the bytes a copy of `v` takes (containers in arenas are charged when resolved).
fn weight(v: &V) -> usize {
    const NODE: usize = std::mem::size_of::<V>();
    NODE + match v {
        V::Str(s) | V::Other(s) => s.len(),
        V::Bytes(b) => b.len(),
        V::Global(m, n) => m.len() + n.len(),
        V::Tuple(items, _) => items.iter().map(weight).sum(),
        V::Persid(p, _) => weight(p),
        V::Tensor(t) => std::mem::size_of::<TensorRef>() + t.key.len() + 16 * t.shape.len(),
        _ => 0,
    }
}

impl Vm<'_> {
    fn charge(&self, bytes: usize) -> VmResult<()> {
        let spent = self.spent.get().saturating_add(bytes);
        if spent > self.budget {
            return Err(PickleError::Expands {
                budget_mb: self.budget >> 20,
                len: self.data.len(),
            });
        }
        self.spent.set(spent);
        Ok(())
    }

    fn take(&mut self, n: usize) -> VmResult<&[u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or(PickleError::Truncated {
                needed: n,
                offset: self.pos,
                len: self.data.len(),
            })?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> VmResult<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> VmResult<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2 bytes")))
    }

    fn u32(&mut self) -> VmResult<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")))
    }

    fn u64(&mut self) -> VmResult<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes")))
    }

    fn line(&mut self) -> VmResult<String> {
        let rest = &self.data[self.pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(PickleError::UnterminatedLine)?;
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.pos += n + 1;
        Ok(s)
    }

    fn string(&mut self, n: usize) -> VmResult<String> {
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| PickleError::BadUtf8)
    }

    fn pop(&mut self) -> VmResult<V> {
        self.stack.pop().ok_or(PickleError::StackUnderflow)
    }

    fn pop_mark(&mut self) -> VmResult<Vec<V>> {
        let m = self
            .stack
            .iter()
            .rposition(|v| matches!(v, V::Mark))
            .ok_or(PickleError::NoMark)?;
        let items = self.stack.split_off(m + 1);
        self.stack.pop();
        Ok(items)
    }

    fn top_index(&self) -> VmResult<usize> {
        self.stack.len().checked_sub(1).ok_or(PickleError::StackUnderflow)
    }

    fn memo_put(&mut self, id: u32) -> VmResult<()> {
        let top = self.stack.last().ok_or(PickleError::EmptyStack { op: "PUT" })?;
        self.charge(weight(top))?;
        let v = top.clone();
        self.memo.insert(id, v);
        Ok(())
    }

    fn memo_get(&mut self, id: u32) -> VmResult<()> {
        let v = self.memo.get(&id).ok_or(PickleError::MissingMemo(id))?;
        self.charge(weight(v))?;
        let v = v.clone();
        self.stack.push(v);
        Ok(())
    }

    fn append(&mut self, target: usize, items: Vec<V>) -> VmResult<()> {
        match &self.stack[target] {
            V::List(id) => {
                let id = *id;
                self.lists[id].extend(items);
                Ok(())
            }
            other => Err(PickleError::WrongTarget {
                op: "APPEND to",
                found: other.kind(),
            }),
        }
    }

    fn set_items(&mut self, target: usize, items: Vec<V>) -> VmResult<()> {
        if !items.len().is_multiple_of(2) {
            return Err(PickleError::OddSetItems);
        }
        match &self.stack[target] {
            V::Dict(id) => {
                let id = *id;
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    self.dicts[id].push((k, v));
                }
                Ok(())
            }
            other => Err(PickleError::WrongTarget {
                op: "SETITEM on",
                found: other.kind(),
            }),
        }
    }

    fn new_list(&mut self, items: Vec<V>) -> V {
        self.lists.push(items);
        V::List(self.lists.len() - 1)
    }

    fn new_dict(&mut self) -> V {
        self.dicts.push(Vec::new());
        V::Dict(self.dicts.len() - 1)
    }

    fn reduce(&mut self, callable: V, args: V) -> VmResult<V> {
        let V::Global(module, name) = &callable else {
            return Ok(V::Other("a call of a non-global".into()));
        };
        let args = match args {
            V::Tuple(a, _) => a,
            other => {
                return Err(PickleError::BadCallArgs {
                    callable: format!("{module}.{name}"),
                    found: other.kind(),
                })
            }
        };
        Ok(match (module.as_str(), name.as_str()) {
            ("collections", "OrderedDict") | ("builtins", "dict") | ("__builtin__", "dict") => self.new_dict(),
            ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
                V::Tensor(Box::new(rebuild_tensor(&args)?))
            }
            ("torch._utils", "_rebuild_parameter") => args.into_iter().next().unwrap_or(V::None),
            ("builtins", "set") | ("builtins", "frozenset") => match args.into_iter().next() {
                Some(V::List(id)) => V::List(id),
                _ => self.new_list(Vec::new()),
            },
            _ => V::Other(format!("{module}.{name}(...)")),
        })
    }

    fn run(&mut self) -> VmResult<V> {
        loop {
            let op = self.u8()?;
            match op {
                0x80 => {
                    let proto = self.u8()?;
                    if proto > 5 {
                        return Err(PickleError::Protocol(proto));
                    }
                }
                0x95 => {
                    self.u64()?;
                }
                b'.' => return self.pop(),
                b'(' => self.stack.push(V::Mark),
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let top = self.stack.last().ok_or(PickleError::EmptyStack { op: "DUP" })?;
                    self.charge(weight(top))?;
                    let v = top.clone();
                    self.stack.push(v);
                }
                b'N' => self.stack.push(V::None),
                0x88 => self.stack.push(V::Bool(true)),
                0x89 => self.stack.push(V::Bool(false)),
                b'J' => {
                    let v = self.u32()? as i32;
                    self.stack.push(V::Int(v as i64));
                }
                b'K' => {
                    let v = self.u8()?;
                    self.stack.push(V::Int(v as i64));
                }
                b'M' => {
                    let v = self.u16()?;
                    self.stack.push(V::Int(v as i64));
                }
                0x8a | 0x8b => {
                    let n = if op == 0x8a {
                        self.u8()? as usize
                    } else {
                        self.u32()? as usize
                    };
                    if n > 8 {
                        return Err(PickleError::IntTooLarge(n));
                    }
                    let b = self.take(n)?;
                    let mut v: i64 = 0;
                    for (i, &byte) in b.iter().enumerate() {
                        v |= (byte as i64) << (8 * i);
                    }
                    if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
                        v -= 1i64 << (8 * n);
                    }
                    self.stack.push(V::Int(v));
                }
                b'I' | b'L' => {
                    let s = self.line()?;
                    let s = s.trim_end_matches('L');
                    let v = match s {
                        "01" => V::Bool(true),
                        "00" => V::Bool(false),
                        _ => V::Int(s.parse().map_err(|_| PickleError::BadLiteral {
                            kind: "integer",
                            text: s.to_string(),
                        })?),
                    };
                    self.stack.push(v);
                }
                b'F' => {
                    let s = self.line()?;
                    self.stack.push(V::Float(s.parse().map_err(|_| PickleError::BadLiteral {
                        kind: "float",
                        text: s.clone(),
                    })?));
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.take(8)?.try_into().expect("8 bytes"));
                    self.stack.push(V::Float(v));
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let s = self.string(n)?;
                    self.stack.push(V::Str(s));
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    let s = self.string(n)?;
                    self.stack.push(V::Str(s));
                }
                0x8d => {
                    let n = self.u64()? as usize;
                    let s = self.string(n)?;
                    self.stack.push(V::Str(s));
                }
                b'T' | b'U' => {
                    let n = if op == b'T' {
                        self.u32()? as usize
                    } else {
                        self.u8()? as usize
                    };
                    let b = self.take(n)?;
                    let s = String::from_utf8_lossy(b).into_owned();
                    self.stack.push(V::Str(s));
                }
                b'B' | b'C' | 0x8e => {
                    let n = match op {
                        b'B' => self.u32()? as usize,
                        b'C' => self.u8()? as usize,
                        _ => self.u64()? as usize,
                    };
                    let b = self.take(n)?.to_vec();
                    self.stack.push(V::Bytes(b));
                }
                b')' => self.stack.push(V::Tuple(Vec::new(), 1)),
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(tuple(items)?);
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return Err(PickleError::StackUnderflow);
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    if items.iter().any(|v| matches!(v, V::Mark)) {
                        return Err(PickleError::MarkInTuple);
                    }
                    self.stack.push(tuple(items)?);
                }
                b']' => {
                    let v = self.new_list(Vec::new());
                    self.stack.push(v);
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    let v = self.new_list(items);
                    self.stack.push(v);
                }
                b'a' => {
                    let item = self.pop()?;
                    let t = self.top_index()?;
                    self.append(t, vec![item])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    let t = self.top_index()?;
                    self.append(t, items)?;
                }
                0x8f => {
                    let v = self.new_list(Vec::new());
                    self.stack.push(v);
                }
                0x90 => {
                    let items = self.pop_mark()?;
                    let t = self.top_index()?;
                    self.append(t, items)?;
                }
                0x91 => {
                    let items = self.pop_mark()?;
                    let v = self.new_list(items);
                    self.stack.push(v);
                }
                b'}' => {
                    let v = self.new_dict();
                    self.stack.push(v);
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    let v = self.new_dict();
                    self.stack.push(v);
                    let t = self.top_index()?;
                    self.set_items(t, items)?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    let t = self.top_index()?;
                    self.set_items(t, vec![k, v])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let t = self.top_index()?;
                    self.set_items(t, items)?;
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.stack.push(V::Global(module, name));
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (V::Str(m), V::Str(n)) => self.stack.push(V::Global(m, n)),
                        _ => return Err(PickleError::StackGlobal),
                    }
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let v = self.reduce(callable, args)?;
                    self.stack.push(v);
                }
                0x81 => {
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    let v = self.reduce(cls, args)?;
                    self.stack.push(v);
                }
                0x92 => {
                    let _kwargs = self.pop()?;
                    let args = self.pop()?;
                    let cls = self.pop()?;
                    let v = self.reduce(cls, args)?;
                    self.stack.push(v);
                }
                b'b' => {
                    // BUILD: object state (e.g. an OrderedDict's `_metadata`); not needed, so dropped.
                    self.pop()?;
                    self.top_index()?;
                }
                b'Q' => {
                    let pid = self.pop()?;
                    self.stack.push(persid(pid)?);
                }
                b'P' => {
                    let pid = self.line()?;
                    self.stack.push(persid(V::Str(pid))?);
                }
                b'h' => {
                    let id = self.u8()? as u32;
                    self.memo_get(id)?;
                }
                b'j' => {
                    let id = self.u32()?;
                    self.memo_get(id)?;
                }
                b'g' => {
                    let s = self.line()?;
                    let id = s.parse().map_err(|_| PickleError::BadMemoId(s.clone()))?;
                    self.memo_get(id)?;
                }
                b'q' => {
                    let id = self.u8()? as u32;
                    self.memo_put(id)?;
                }
                b'r' => {
                    let id = self.u32()?;
                    self.memo_put(id)?;
                }
                b'p' => {
                    let s = self.line()?;
                    let id = s.parse().map_err(|_| PickleError::BadMemoId(s.clone()))?;
                    self.memo_put(id)?;
                }
                0x94 => {
                    let id = self.memo.len() as u32;
                    self.memo_put(id)?;
                }
                other => {
                    return Err(PickleError::UnknownOpcode {
                        op: other,
                        offset: self.pos - 1,
                    })
                }
            }
        }
    }

    fn resolve(&self, v: &V, depth: u32) -> VmResult<Py> {
        if depth > MAX_DEPTH {
            return Err(PickleError::TooDeepOrCyclic);
        }
        // Only this node: its items are charged as they are resolved.
        let own = match v {
            V::Str(s) | V::Other(s) => s.len(),
            V::Bytes(b) => b.len(),
            _ => 0,
        };
        self.charge(own + std::mem::size_of::<Py>())?;
        Ok(match v {
            V::Mark => return Err(PickleError::StrayMark),
            V::None => Py::None,
            V::Bool(b) => Py::Bool(*b),
            V::Int(i) => Py::Int(*i),
            V::Float(f) => Py::Float(*f),
            V::Str(s) => Py::Str(s.clone()),
            V::Bytes(b) => Py::Bytes(b.clone()),
            V::Tuple(items, _) => Py::Tuple(
                items
                    .iter()
                    .map(|x| self.resolve(x, depth + 1))
                    .collect::<VmResult<_>>()?,
            ),
            V::List(id) => Py::List(
                self.lists[*id]
                    .iter()
                    .map(|x| self.resolve(x, depth + 1))
                    .collect::<VmResult<_>>()?,
            ),
            V::Dict(id) => Py::Dict(
                self.dicts[*id]
                    .iter()
                    .map(|(k, x)| Ok((self.resolve(k, depth + 1)?, self.resolve(x, depth + 1)?)))
                    .collect::<VmResult<_>>()?,
            ),
            V::Tensor(t) => Py::Tensor(t.as_ref().clone()),
            V::Global(m, n) => Py::Other(format!("{m}.{n}")),
            V::Persid(..) => Py::Other("a persistent reference".into()),
            V::Other(s) => Py::Other(s.clone()),
        })
    }
}

fn as_usizes(v: &V, what: &'static str) -> VmResult<Vec<usize>> {
    match v {
        V::Tuple(items, _) => items
            .iter()
            .map(|x| match x {
                V::Int(i) if *i >= 0 => Ok(*i as usize),
                _ => Err(PickleError::TensorShape {
                    what,
                    problem: "holds a non-integer",
                }),
            })
            .collect(),
        _ => Err(PickleError::TensorShape {
            what,
            problem: "is not a tuple",
        }),
    }
}

/// `_rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])` with storage
/// `persid('storage', torch.<T>Storage, key, device, numel)`.
fn rebuild_tensor(args: &[V]) -> VmResult<TensorRef> {
    if args.len() < 4 {
        return Err(PickleError::Tensor("tensor rebuild with fewer than 4 arguments"));
    }
    let V::Persid(pid, _) = &args[0] else {
        return Err(PickleError::Tensor("tensor without a storage reference"));
    };
    let V::Tuple(pid, _) = pid.as_ref() else {
        return Err(PickleError::Tensor("tensor storage reference is not a tuple"));
    };
    let (kind, key) = match pid.as_slice() {
        [_, V::Global(_, class), V::Str(key), ..] => (
            StorageKind::from_class(class).ok_or_else(|| PickleError::StorageType(class.clone()))?,
            key.clone(),
        ),
        _ => return Err(PickleError::Tensor("tensor storage reference has an unexpected layout")),
    };
    let offset = match &args[1] {
        V::Int(i) if *i >= 0 => *i as usize,
        _ => {
            return Err(PickleError::Tensor(
                "tensor storage offset is not a non-negative integer",
            ))
        }
    };
    let shape = as_usizes(&args[2], "size")?;
    let stride = as_usizes(&args[3], "stride")?;
    if shape.len() != stride.len() {
        return Err(PickleError::Tensor("tensor size and stride differ in rank"));
    }
    Ok(TensorRef {
        kind,
        key,
        offset,
        shape,
        stride,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_containers_read_back_complete() {
        // pickle.dumps({'a': x, 'b': x}, protocol=2) with x = {'k': [1, 2]}
        let data: &[u8] = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01}q\x02X\x01\x00\x00\x00kq\x03]q\x04(K\x01K\x02esX\x01\x00\x00\x00bq\x05h\x02u.";
        let v = unpickle(data).unwrap();
        let a = v.get("a").unwrap();
        let b = v.get("b").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.get("k"), Some(&Py::List(vec![Py::Int(1), Py::Int(2)])));
    }

    #[test]
    fn truncated_and_garbage() {
        assert!(unpickle(b"\x80\x02}q\x00(X\x05\x00\x00\x00ab").is_err());
        assert!(unpickle(b"\xff\xfe").is_err());
        assert!(unpickle(b"").is_err());
    }

    #[test]
    fn unreadable_zips_name_their_cause() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("viz_data.pt");
        std::fs::write(&path, b"not a zip at all").unwrap();
        match TorchZip::open(&path) {
            Err(TorchZipError::Format {
                problem: ZipProblem::NotZip(_),
                ..
            }) => {}
            other => panic!("{:?}", other.err()),
        }
        // A zip without data.pkl.
        let mut w = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
        w.start_file("archive/other.txt", zip::write::SimpleFileOptions::default())
            .unwrap();
        std::io::Write::write_all(&mut w, b"hello").unwrap();
        w.finish().unwrap();
        let e = TorchZip::open(&path).err().unwrap();
        assert!(
            matches!(
                e,
                TorchZipError::Format {
                    problem: ZipProblem::NoDataPkl,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().ends_with(": the zip has no `data.pkl` entry"));
    }
}
