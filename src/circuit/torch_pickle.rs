//! A reader for `torch.save` zip files holding arbitrary (weights_only) pickles: nested dicts with str, int,
//! float or 0-d tensor keys, lists, tuples and tensors (spec F.1).
//!
//! candle's pickle VM stores memo entries by value, so a list or dict that the pickle references twice (pickle
//! memoises a container when it is still empty, then fills it) comes back empty the second time; the reference's
//! viz_data.pt shares `prune_config` and the `pair_data` name lists that way. This VM keeps containers in arenas
//! and memoises references to them, so shared containers read back complete.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::error::{io_err, CircuitError, Result};

/// The element type of a torch storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageKind {
    F64,
    F32,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
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

    pub fn size(self) -> usize {
        match self {
            StorageKind::F64 | StorageKind::I64 => 8,
            StorageKind::F32 | StorageKind::I32 => 4,
            StorageKind::F16 | StorageKind::BF16 | StorageKind::I16 => 2,
            StorageKind::I8 | StorageKind::U8 | StorageKind::Bool => 1,
        }
    }

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
    pub kind: StorageKind,
    pub key: String,
    /// In elements.
    pub offset: usize,
    pub shape: Vec<usize>,
    pub stride: Vec<usize>,
}

impl TensorRef {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A decoded pickle value.
#[derive(Debug, Clone, PartialEq)]
pub enum Py {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<Py>),
    Tuple(Vec<Py>),
    /// In insertion order.
    Dict(Vec<(Py, Py)>),
    Tensor(TensorRef),
    /// Anything else (a global, or an object the VM does not build), described.
    Other(String),
}

impl Py {
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

    pub fn as_dict(&self) -> Option<&[(Py, Py)]> {
        match self {
            Py::Dict(v) => Some(v),
            _ => None,
        }
    }

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
    Float(Vec<f64>),
    Int(Vec<i64>),
}

impl TensorData {
    pub fn len(&self) -> usize {
        match self {
            TensorData::Float(v) => v.len(),
            TensorData::Int(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

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
    pub path: PathBuf,
    archive: zip::ZipArchive<std::fs::File>,
    prefix: String,
    storages: HashMap<String, Vec<u8>>,
}

impl TorchZip {
    /// Opens the zip and decodes its `*/data.pkl`.
    pub fn open(path: &Path) -> Result<(Self, Py)> {
        let file = std::fs::File::open(path).map_err(io_err(path))?;
        let bad = |msg: String| CircuitError::Pickle {
            path: path.to_path_buf(),
            msg,
        };
        let mut archive =
            zip::ZipArchive::new(file).map_err(|e| bad(format!("not a torch zip (torch.save output): {e}")))?;
        let pkl = archive
            .file_names()
            .filter_map(|n| n.ok().map(|n| n.into_owned()))
            .filter(|n| n == "data.pkl" || n.ends_with("/data.pkl"))
            .min_by_key(|n| n.len())
            .ok_or_else(|| bad("the zip has no `data.pkl` entry".into()))?;
        let prefix = pkl.strip_suffix("data.pkl").unwrap_or("").to_string();
        let mut bytes = Vec::new();
        archive
            .by_name(&pkl)
            .map_err(|e| bad(format!("cannot open `{pkl}`: {e}")))?
            .read_to_end(&mut bytes)
            .map_err(|e| bad(format!("cannot read `{pkl}`: {e}")))?;
        let value = unpickle(&bytes).map_err(|e| bad(format!("`{pkl}`: {e}")))?;
        Ok((
            TorchZip {
                path: path.to_path_buf(),
                archive,
                prefix,
                storages: HashMap::new(),
            },
            value,
        ))
    }

    /// Reads a tensor's values (any strides; bounds checked against the storage).
    pub fn read(&mut self, t: &TensorRef) -> Result<TensorData> {
        let bad = |msg: String| CircuitError::Pickle {
            path: self.path.clone(),
            msg: format!("tensor storage `{}`: {msg}", t.key),
        };
        if t.shape.len() != t.stride.len() {
            return Err(bad(format!(
                "shape {:?} and stride {:?} differ in rank",
                t.shape, t.stride
            )));
        }
        if !self.storages.contains_key(&t.key) {
            let name = format!("{}data/{}", self.prefix, t.key);
            let mut buf = Vec::new();
            let mut entry = self
                .archive
                .by_name(&name)
                .map_err(|e| bad(format!("zip entry `{name}`: {e}")))?;
            entry
                .read_to_end(&mut buf)
                .map_err(|e| bad(format!("zip entry `{name}`: {e}")))?;
            drop(entry);
            self.storages.insert(t.key.clone(), buf);
        }
        let bytes = &self.storages[&t.key];
        let size = t.kind.size();
        let n_storage = bytes.len() / size;
        let numel = t.numel();
        if numel > 0 {
            let last = t.offset
                + t.shape
                    .iter()
                    .zip(&t.stride)
                    .map(|(&d, &s)| (d - 1).saturating_mul(s))
                    .sum::<usize>();
            if last >= n_storage {
                return Err(bad(format!(
                    "shape {:?} stride {:?} offset {} reaches element {last}, but the storage holds {n_storage}",
                    t.shape, t.stride, t.offset
                )));
            }
        }
        // Element offsets in row-major order of the logical shape.
        let mut offsets = Vec::with_capacity(numel);
        let mut idx = vec![0usize; t.shape.len()];
        for _ in 0..numel {
            offsets.push(t.offset + idx.iter().zip(&t.stride).map(|(i, s)| i * s).sum::<usize>());
            for d in (0..idx.len()).rev() {
                idx[d] += 1;
                if idx[d] < t.shape[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
        let at = |o: usize| &bytes[o * size..(o + 1) * size];
        Ok(match t.kind {
            StorageKind::F64 => TensorData::Float(
                offsets
                    .iter()
                    .map(|&o| f64::from_le_bytes(at(o).try_into().expect("8 bytes")))
                    .collect(),
            ),
            StorageKind::F32 => TensorData::Float(
                offsets
                    .iter()
                    .map(|&o| short_f64(f32::from_le_bytes(at(o).try_into().expect("4 bytes"))))
                    .collect(),
            ),
            StorageKind::F16 => TensorData::Float(
                offsets
                    .iter()
                    .map(|&o| short_f64(half::f16::from_le_bytes(at(o).try_into().expect("2 bytes")).to_f32()))
                    .collect(),
            ),
            StorageKind::BF16 => TensorData::Float(
                offsets
                    .iter()
                    .map(|&o| short_f64(half::bf16::from_le_bytes(at(o).try_into().expect("2 bytes")).to_f32()))
                    .collect(),
            ),
            StorageKind::I64 => TensorData::Int(
                offsets
                    .iter()
                    .map(|&o| i64::from_le_bytes(at(o).try_into().expect("8 bytes")))
                    .collect(),
            ),
            StorageKind::I32 => TensorData::Int(
                offsets
                    .iter()
                    .map(|&o| i32::from_le_bytes(at(o).try_into().expect("4 bytes")) as i64)
                    .collect(),
            ),
            StorageKind::I16 => TensorData::Int(
                offsets
                    .iter()
                    .map(|&o| i16::from_le_bytes(at(o).try_into().expect("2 bytes")) as i64)
                    .collect(),
            ),
            StorageKind::I8 => TensorData::Int(offsets.iter().map(|&o| bytes[o] as i8 as i64).collect()),
            StorageKind::U8 | StorageKind::Bool => TensorData::Int(offsets.iter().map(|&o| bytes[o] as i64).collect()),
        })
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
    Tuple(Vec<V>),
    List(usize),
    Dict(usize),
    Global(String, String),
    Tensor(TensorRef),
    Persid(Box<V>),
    Other(String),
}

struct Vm<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<V>,
    memo: HashMap<u32, V>,
    lists: Vec<Vec<V>>,
    dicts: Vec<Vec<(V, V)>>,
}

type VmResult<T> = std::result::Result<T, String>;

/// Decodes a pickle (protocols 0-5, the subset torch.save and builtins use).
pub fn unpickle(data: &[u8]) -> std::result::Result<Py, String> {
    let mut vm = Vm {
        data,
        pos: 0,
        stack: Vec::new(),
        memo: HashMap::new(),
        lists: Vec::new(),
        dicts: Vec::new(),
    };
    let top = vm.run()?;
    vm.resolve(&top, 0)
}

impl Vm<'_> {
    fn take(&mut self, n: usize) -> VmResult<&[u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| {
                format!(
                    "truncated pickle: needs {n} more bytes at offset {} of {}",
                    self.pos,
                    self.data.len()
                )
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
            .ok_or("truncated pickle: unterminated text line")?;
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.pos += n + 1;
        Ok(s)
    }

    fn string(&mut self, n: usize) -> VmResult<String> {
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| "invalid UTF-8 in a pickled string".to_string())
    }

    fn pop(&mut self) -> VmResult<V> {
        self.stack
            .pop()
            .ok_or_else(|| "corrupt pickle: stack underflow".to_string())
    }

    fn pop_mark(&mut self) -> VmResult<Vec<V>> {
        let m = self
            .stack
            .iter()
            .rposition(|v| matches!(v, V::Mark))
            .ok_or("corrupt pickle: no MARK on the stack")?;
        let items = self.stack.split_off(m + 1);
        self.stack.pop();
        Ok(items)
    }

    fn top_index(&self) -> VmResult<usize> {
        self.stack
            .len()
            .checked_sub(1)
            .ok_or_else(|| "corrupt pickle: stack underflow".to_string())
    }

    fn memo_put(&mut self, id: u32) -> VmResult<()> {
        let v = self
            .stack
            .last()
            .ok_or("corrupt pickle: PUT on an empty stack")?
            .clone();
        self.memo.insert(id, v);
        Ok(())
    }

    fn memo_get(&mut self, id: u32) -> VmResult<()> {
        let v = self
            .memo
            .get(&id)
            .ok_or_else(|| format!("corrupt pickle: memo entry {id} is missing"))?
            .clone();
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
            other => Err(format!("corrupt pickle: APPEND to a {other:?}")),
        }
    }

    fn set_items(&mut self, target: usize, items: Vec<V>) -> VmResult<()> {
        if !items.len().is_multiple_of(2) {
            return Err("corrupt pickle: SETITEMS with an odd number of items".into());
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
            other => Err(format!("corrupt pickle: SETITEM on a {other:?}")),
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
            V::Tuple(a) => a,
            other => return Err(format!("corrupt pickle: {module}.{name} called with {other:?}")),
        };
        Ok(match (module.as_str(), name.as_str()) {
            ("collections", "OrderedDict") | ("builtins", "dict") | ("__builtin__", "dict") => self.new_dict(),
            ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
                V::Tensor(rebuild_tensor(&args)?)
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
                        return Err(format!("unsupported pickle protocol {proto}"));
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
                    let v = self
                        .stack
                        .last()
                        .ok_or("corrupt pickle: DUP on an empty stack")?
                        .clone();
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
                        return Err(format!("integer of {n} bytes is too large"));
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
                        _ => V::Int(s.parse().map_err(|_| format!("bad integer literal `{s}`"))?),
                    };
                    self.stack.push(v);
                }
                b'F' => {
                    let s = self.line()?;
                    self.stack
                        .push(V::Float(s.parse().map_err(|_| format!("bad float literal `{s}`"))?));
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
                b')' => self.stack.push(V::Tuple(Vec::new())),
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(V::Tuple(items));
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return Err("corrupt pickle: stack underflow".into());
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    if items.iter().any(|v| matches!(v, V::Mark)) {
                        return Err("corrupt pickle: MARK inside a tuple".into());
                    }
                    self.stack.push(V::Tuple(items));
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
                        _ => return Err("corrupt pickle: STACK_GLOBAL needs two strings".into()),
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
                    self.stack.push(V::Persid(Box::new(pid)));
                }
                b'P' => {
                    let pid = self.line()?;
                    self.stack.push(V::Persid(Box::new(V::Str(pid))));
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
                    let id = s.parse().map_err(|_| format!("bad memo id `{s}`"))?;
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
                    let id = s.parse().map_err(|_| format!("bad memo id `{s}`"))?;
                    self.memo_put(id)?;
                }
                0x94 => {
                    let id = self.memo.len() as u32;
                    self.memo_put(id)?;
                }
                other => {
                    return Err(format!(
                        "unknown pickle opcode 0x{other:02x} at offset {} (corrupt or not a pickle)",
                        self.pos - 1
                    ))
                }
            }
        }
    }

    fn resolve(&self, v: &V, depth: usize) -> VmResult<Py> {
        if depth > 256 {
            return Err("pickle nests too deep (or is cyclic)".into());
        }
        Ok(match v {
            V::Mark => return Err("corrupt pickle: stray MARK".into()),
            V::None => Py::None,
            V::Bool(b) => Py::Bool(*b),
            V::Int(i) => Py::Int(*i),
            V::Float(f) => Py::Float(*f),
            V::Str(s) => Py::Str(s.clone()),
            V::Bytes(b) => Py::Bytes(b.clone()),
            V::Tuple(items) => Py::Tuple(
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
            V::Tensor(t) => Py::Tensor(t.clone()),
            V::Global(m, n) => Py::Other(format!("{m}.{n}")),
            V::Persid(_) => Py::Other("a persistent reference".into()),
            V::Other(s) => Py::Other(s.clone()),
        })
    }
}

fn as_usizes(v: &V, what: &str) -> VmResult<Vec<usize>> {
    match v {
        V::Tuple(items) => items
            .iter()
            .map(|x| match x {
                V::Int(i) if *i >= 0 => Ok(*i as usize),
                _ => Err(format!("tensor {what} holds a non-integer")),
            })
            .collect(),
        _ => Err(format!("tensor {what} is not a tuple")),
    }
}

/// `_rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])` with storage
/// `persid('storage', torch.<T>Storage, key, device, numel)`.
fn rebuild_tensor(args: &[V]) -> VmResult<TensorRef> {
    if args.len() < 4 {
        return Err("tensor rebuild with fewer than 4 arguments".into());
    }
    let V::Persid(pid) = &args[0] else {
        return Err("tensor without a storage reference".into());
    };
    let V::Tuple(pid) = pid.as_ref() else {
        return Err("tensor storage reference is not a tuple".into());
    };
    let (kind, key) = match pid.as_slice() {
        [_, V::Global(_, class), V::Str(key), ..] => (
            StorageKind::from_class(class).ok_or_else(|| format!("unsupported storage type {class}"))?,
            key.clone(),
        ),
        _ => return Err("tensor storage reference has an unexpected layout".into()),
    };
    let offset = match &args[1] {
        V::Int(i) if *i >= 0 => *i as usize,
        _ => return Err("tensor storage offset is not a non-negative integer".into()),
    };
    let shape = as_usizes(&args[2], "size")?;
    let stride = as_usizes(&args[3], "stride")?;
    if shape.len() != stride.len() {
        return Err("tensor size and stride differ in rank".into());
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
}
