//! [`WeightStore`]: named f32 tensors read from and written to safetensors
//! files, keyed exactly like PyTorch's `state_dict()` (`up1.weight`,
//! `bn1.running_var`), so `safetensors.torch.save_file(model.state_dict(), p)`
//! loads as is and what Kiln saves loads back into PyTorch.
//!
//! Reading is strict and never panics on a malformed file: before handing the
//! bytes to the `safetensors` crate, the header is checked here (length prefix,
//! JSON, every tensor's offsets inside the file, shape × dtype size equal to
//! its byte range, element counts without overflow), so errors name the file,
//! the key and the numbers, and no allocation exceeds the file's own size.
//!
//! Dtypes: F32 is loaded as is. F16 and BF16 are widened to f32, which is
//! exact. Everything else (F64 included, which would lose precision silently,
//! and integer or 8-bit float types) is refused with
//! [`RuntimeError::UnsupportedDtype`] naming the key and dtype. Files are
//! always written as F32 with `{"format": "pt"}` metadata, as PyTorch's
//! helper writes them.
//!
//! This module does not know about graphs: attaching tensors to nodes (and
//! checking them against the ops) is the passes' and the interpreter's job.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use safetensors::{Dtype, SafeTensors, View};
use serde_json::Value;

use crate::error::{fmt_shape, Result, RuntimeError};
use crate::tensor::{checked_len, Tensor};

/// The source name used for stores built from bytes rather than a file.
const BYTES: &str = "<bytes>";

/// Named f32 tensors with PyTorch `state_dict()` keys, kept sorted by key.
///
/// Sorted, not insertion-ordered, because safetensors files do not preserve
/// order either (they sort by dtype and name), so any other order would not
/// survive a round trip.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WeightStore {
    source: String,
    tensors: BTreeMap<String, Tensor>,
}

impl WeightStore {
    /// An empty store.
    pub fn new() -> Self {
        WeightStore { source: "<memory>".into(), tensors: BTreeMap::new() }
    }

    /// Reads a safetensors file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| RuntimeError::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&bytes, path.display().to_string())
    }

    /// Parses the bytes of a safetensors file.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        Self::parse(bytes, BYTES.into())
    }

    fn parse(bytes: &[u8], file: String) -> Result<Self> {
        check_header(bytes, &file)?;
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| RuntimeError::CorruptSafetensors { file: file.clone(), reason: e.to_string() })?;
        let mut tensors = BTreeMap::new();
        for name in st.names() {
            let view = st
                .tensor(name)
                .map_err(|e| RuntimeError::CorruptSafetensors { file: file.clone(), reason: e.to_string() })?;
            if is_training_counter(name, view.dtype()) {
                continue;
            }
            let tensor = decode(&file, name, view.dtype(), view.shape(), view.data())?;
            tensors.insert(name.to_string(), tensor);
        }
        Ok(WeightStore { source: file, tensors })
    }

    /// Writes the store as a safetensors file (F32, `{"format": "pt"}` metadata).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let bytes = self.to_bytes()?;
        std::fs::write(path, bytes).map_err(|source| RuntimeError::Io {
            action: "write",
            path: path.to_path_buf(),
            source,
        })
    }

    /// The store as the bytes of a safetensors file.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let views = self.tensors.iter().map(|(k, t)| (k.as_str(), F32View::new(t)));
        let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
        safetensors::serialize(views, Some(meta)).map_err(|e| RuntimeError::CorruptSafetensors {
            file: self.source.clone(),
            reason: format!("cannot serialize: {e}"),
        })
    }

    /// The tensors whose key starts with `prefix`, with the prefix removed:
    /// `with_prefix("m_dcgan/")` turns `m_dcgan/up1.weight` into `up1.weight`.
    /// Error messages of the new store mention the prefix.
    pub fn with_prefix(&self, prefix: &str) -> WeightStore {
        let tensors = self
            .tensors
            .iter()
            .filter_map(|(k, t)| k.strip_prefix(prefix).map(|rest| (rest.to_string(), t.clone())))
            .collect();
        WeightStore { source: format!("{} (keys under `{prefix}`)", self.source), tensors }
    }

    /// Where the store came from: a path, `<bytes>` or `<memory>`.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The tensors by key, e.g. to hand them to parameter materialization.
    pub fn into_tensors(self) -> BTreeMap<String, Tensor> {
        self.tensors
    }

    /// Adds or replaces a tensor, returning the previous one.
    pub fn insert(&mut self, key: impl Into<String>, tensor: Tensor) -> Option<Tensor> {
        self.tensors.insert(key.into(), tensor)
    }

    /// Removes a tensor.
    pub fn remove(&mut self, key: &str) -> Option<Tensor> {
        self.tensors.remove(key)
    }

    /// The tensor under `key`, if any.
    pub fn get(&self, key: &str) -> Option<&Tensor> {
        self.tensors.get(key)
    }

    /// The tensor under `key`, or [`RuntimeError::MissingTensor`] naming the
    /// key, the source and some keys that do exist.
    pub fn require(&self, key: &str) -> Result<&Tensor> {
        self.tensors.get(key).ok_or_else(|| {
            const SHOWN: usize = 8;
            let mut available: Vec<&str> = self.tensors.keys().take(SHOWN).map(String::as_str).collect();
            if self.tensors.len() > SHOWN {
                available.push("...");
            }
            RuntimeError::MissingTensor {
                file: self.source.clone(),
                key: key.into(),
                available: if available.is_empty() { "nothing".into() } else { available.join(", ") },
            }
        })
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.tensors.contains_key(key)
    }

    /// The keys, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// `(key, tensor)` pairs, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.tensors.iter().map(|(k, t)| (k.as_str(), t))
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }
}

impl FromIterator<(String, Tensor)> for WeightStore {
    fn from_iter<I: IntoIterator<Item = (String, Tensor)>>(iter: I) -> Self {
        WeightStore { source: "<memory>".into(), tensors: iter.into_iter().collect() }
    }
}

/// Bytes per element of the dtypes whose sizes this module checks itself;
/// others (sub-byte floats) are left to the `safetensors` crate.
fn dtype_size(dtype: &str) -> Option<usize> {
    Some(match dtype {
        "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" | "F8_E8M0" => 1,
        "F16" | "BF16" | "I16" | "U16" => 2,
        "F32" | "I32" | "U32" => 4,
        "F64" | "I64" | "U64" => 8,
        _ => return None,
    })
}

/// Validates the header against the file's size before the `safetensors`
/// crate sees it, so every offset it adds up is bounded by the file length
/// and the messages can name the tensor.
fn check_header(bytes: &[u8], file: &str) -> Result<()> {
    if let Some(format) = sniff_other_format(bytes, file) {
        return Err(RuntimeError::NotSafetensors { file: file.into(), format });
    }
    let corrupt = |reason: String| RuntimeError::CorruptSafetensors { file: file.into(), reason };
    let Some((prefix, rest)) = bytes.split_first_chunk::<8>() else {
        return Err(corrupt(format!("the file has {} bytes, fewer than the 8-byte header length", bytes.len())));
    };
    let n = u64::from_le_bytes(*prefix);
    let header_len = match usize::try_from(n) {
        Ok(n) if n <= rest.len() => n,
        _ => {
            return Err(corrupt(format!(
                "the header length says {n} bytes but only {} bytes follow (truncated file?)",
                rest.len()
            )))
        }
    };
    let (header, data) = rest.split_at(header_len);
    let json: Value =
        serde_json::from_slice(header).map_err(|e| corrupt(format!("the header is not valid JSON: {e}")))?;
    let Value::Object(entries) = json else {
        return Err(corrupt("the header is not a JSON object".into()));
    };
    for (key, info) in &entries {
        if key == "__metadata__" {
            continue;
        }
        let field = |name: &str| info.get(name).ok_or_else(|| corrupt(format!("tensor `{key}` has no `{name}` field")));
        let dtype =
            field("dtype")?.as_str().ok_or_else(|| corrupt(format!("tensor `{key}`: `dtype` is not a string")))?;
        let shape: Option<Vec<usize>> = field("shape")?
            .as_array()
            .and_then(|dims| dims.iter().map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok())).collect());
        let shape = shape.ok_or_else(|| corrupt(format!("tensor `{key}`: `shape` is not a list of sizes")))?;
        let offsets: Option<Vec<u64>> =
            field("data_offsets")?.as_array().and_then(|o| o.iter().map(Value::as_u64).collect());
        let (start, end) = match offsets.as_deref() {
            Some(&[s, e]) => (s, e),
            _ => return Err(corrupt(format!("tensor `{key}`: `data_offsets` is not a pair of offsets"))),
        };
        if start > end || end > data.len() as u64 {
            return Err(corrupt(format!(
                "tensor `{key}`: data_offsets [{start}, {end}] lie outside the {}-byte data section (truncated file?)",
                data.len()
            )));
        }
        let mismatch = |reason: String| RuntimeError::TensorData {
            file: file.into(),
            key: key.clone(),
            shape: fmt_shape(&shape),
            reason,
        };
        if let Some(size) = dtype_size(dtype) {
            let Some(needed) = checked_len(&shape).and_then(|n| n.checked_mul(size)) else {
                return Err(mismatch("the element count overflows".into()));
            };
            if needed as u64 != end - start {
                return Err(mismatch(format!(
                    "{dtype} data of this shape takes {needed} bytes, but data_offsets [{start}, {end}] hold {}",
                    end - start
                )));
            }
        }
    }
    Ok(())
}

/// Recognizes the files people give instead of a safetensors state dict:
/// `torch.save` output (a zip archive since PyTorch 1.6, a bare pickle
/// before) and ONNX models. A safetensors file starts with its header length
/// as a little-endian u64 followed by `{`, which none of these do.
fn sniff_other_format(bytes: &[u8], file: &str) -> Option<&'static str> {
    let looks_like_safetensors = bytes.len() > 8 && bytes[8] == b'{';
    if looks_like_safetensors {
        return None;
    }
    if bytes.starts_with(b"PK\x03\x04") {
        return Some("a PyTorch `torch.save` file (zip archive)");
    }
    // Pickle protocol 2..=5 opcode PROTO, as `torch.save(..., _use_new_zipfile_serialization=False)` writes.
    if bytes.len() >= 2 && bytes[0] == 0x80 && (2..=5).contains(&bytes[1]) {
        return Some("a PyTorch `torch.save` file (legacy pickle format)");
    }
    // ONNX's ModelProto starts with field 1 (ir_version, a small varint).
    let onnx_name = file.to_ascii_lowercase().ends_with(".onnx");
    if onnx_name || (bytes.len() >= 2 && bytes[0] == 0x08 && bytes[1] < 0x20) {
        return Some("an ONNX model");
    }
    None
}

/// Converts one stored tensor to f32 (see the module docs for the dtype policy).
/// PyTorch's BatchNorm saves `num_batches_tracked`, an integer training
/// counter that eval-mode inference never reads. Skipping it (only for an
/// integer dtype under that exact name) lets a plain
/// `save_file(model.state_dict(), ...)` load; any other integer tensor is
/// still refused by name.
fn is_training_counter(key: &str, dtype: Dtype) -> bool {
    let integer = matches!(
        dtype,
        Dtype::I64 | Dtype::I32 | Dtype::I16 | Dtype::I8 | Dtype::U64 | Dtype::U32 | Dtype::U16 | Dtype::U8
    );
    integer && (key == "num_batches_tracked" || key.ends_with(".num_batches_tracked"))
}

fn decode(file: &str, key: &str, dtype: Dtype, shape: &[usize], data: &[u8]) -> Result<Tensor> {
    let values: Vec<f32> = match dtype {
        Dtype::F32 => data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        Dtype::F16 => data.chunks_exact(2).map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]]))).collect(),
        Dtype::BF16 => {
            data.chunks_exact(2).map(|c| f32::from_bits(u32::from(u16::from_le_bytes([c[0], c[1]])) << 16)).collect()
        }
        other => {
            return Err(RuntimeError::UnsupportedDtype { file: file.into(), key: key.into(), dtype: other.to_string() })
        }
    };
    let mismatch = |reason: String| RuntimeError::TensorData {
        file: file.into(),
        key: key.into(),
        shape: fmt_shape(shape),
        reason,
    };
    // The header check already guarantees this; re-checking keeps the
    // conversion safe on its own (chunks_exact would silently drop a remainder).
    let expected = checked_len(shape).ok_or_else(|| mismatch("the element count overflows".into()))?;
    if values.len() != expected || !data.len().is_multiple_of((dtype.bitsize() / 8).max(1)) {
        return Err(mismatch(format!("{} bytes of {dtype} for {expected} elements", data.len())));
    }
    Tensor::from_shape_vec(shape.to_vec(), values).map_err(|e| mismatch(e.to_string()))
}

/// IEEE binary16 to f32, exactly (every half value is an f32 value).
pub(crate) fn f16_to_f32(h: u16) -> f32 {
    let negative = h & 0x8000 != 0;
    let exponent = u32::from((h >> 10) & 0x1f);
    let mantissa = u32::from(h & 0x3ff);
    let magnitude = match exponent {
        // Zero and subnormals: mantissa * 2^-24, exact in f32.
        0 => mantissa as f32 * (1.0 / 16_777_216.0),
        // Infinity and NaN (payload kept).
        0x1f => f32::from_bits(0x7f80_0000 | (mantissa << 13)),
        // Normal: rebias the exponent from 15 to 127.
        _ => f32::from_bits(((exponent + 112) << 23) | (mantissa << 13)),
    };
    if negative {
        -magnitude
    } else {
        magnitude
    }
}

/// A tensor as a safetensors [`View`]: little-endian F32 bytes in C order.
struct F32View {
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

impl F32View {
    fn new(t: &Tensor) -> Self {
        // `iter()` walks in logical C order whatever the memory layout.
        let bytes = t.iter().flat_map(|v| v.to_le_bytes()).collect();
        F32View { shape: t.shape().to_vec(), bytes }
    }
}

impl View for F32View {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        (&self.bytes[..]).into()
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::{from_vec, random};
    use ndarray::ArrayD;

    /// A safetensors file written by hand: `header` verbatim, then `data`.
    fn raw(header: &str, data: &[u8]) -> Vec<u8> {
        let mut v = (header.len() as u64).to_le_bytes().to_vec();
        v.extend_from_slice(header.as_bytes());
        v.extend_from_slice(data);
        v
    }

    fn sample() -> WeightStore {
        let mut s = WeightStore::new();
        s.insert("up1.weight", random(&[3, 4, 2, 2], 1));
        s.insert("up1.bias", random(&[4], 2));
        s.insert("bn1.running_var", from_vec(&[2], vec![0.5, 2.0]).unwrap());
        // A non-contiguous tensor must be written in logical order.
        s.insert("t", random(&[2, 3], 3).reversed_axes());
        s.insert("scalar", ArrayD::from_elem(vec![], 7.0));
        s.insert("empty", ArrayD::zeros(vec![0, 3]));
        s
    }

    #[test]
    fn other_formats_are_recognized_and_the_fix_is_named() {
        // The first bytes of real files: torch.save's zip (PK\x03\x04), the legacy
        // pickle (PROTO 2, then the LONG1 magic number), and an ONNX model from
        // torch.onnx.export (ir_version 8, then producer_name "pytorch").
        let zip = b"PK\x03\x04\x00\x00\x08\x08\x00\x00archive/data.pkl".to_vec();
        let pickle = [0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8].to_vec();
        let mut onnx = vec![0x08, 0x08, 0x12, 0x07];
        onnx.extend_from_slice(b"pytorch");
        for (bytes, format) in [(zip, "(zip archive)"), (pickle, "(legacy pickle format)"), (onnx, "an ONNX model")] {
            let e = WeightStore::from_bytes(&bytes).unwrap_err();
            assert!(matches!(e, RuntimeError::NotSafetensors { .. }), "{e}");
            let msg = e.to_string();
            assert!(msg.contains(format), "{msg}");
            assert!(msg.contains("save_file(model.state_dict(), \"model.safetensors\")"), "{msg}");
            assert!(!msg.contains("header length"), "{msg}");
        }
        // The name alone identifies an ONNX file, whatever its first bytes.
        let e = WeightStore::parse(b"\x0a\x05hello world", "decoder.onnx".into()).unwrap_err();
        assert!(e.to_string().starts_with("decoder.onnx is an ONNX model, not safetensors"), "{e}");
        // A real safetensors file is never mistaken for one of them.
        let st = sample().to_bytes().unwrap();
        assert!(sniff_other_format(&st, "x.onnx").is_none());
        assert!(WeightStore::parse(&st, "x.onnx".into()).is_ok());
    }

    #[test]
    fn bytes_round_trip() {
        let s = sample();
        let back = WeightStore::from_bytes(&s.to_bytes().unwrap()).unwrap();
        assert_eq!(back.len(), s.len());
        for (k, t) in s.iter() {
            assert_eq!(back.get(k).unwrap(), t, "{k}");
        }
        assert_eq!(
            back.keys().collect::<Vec<_>>(),
            ["bn1.running_var", "empty", "scalar", "t", "up1.bias", "up1.weight"]
        );
    }

    #[test]
    fn file_round_trip_and_io_errors() {
        let dir = std::env::temp_dir().join(format!("kiln-runtime-weights-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("w.safetensors");
        let s = sample();
        s.save(&path).unwrap();
        let back = WeightStore::load(&path).unwrap();
        assert_eq!(back.get("up1.weight"), s.get("up1.weight"));
        assert_eq!(back.source(), path.display().to_string());
        let missing = dir.join("nope.safetensors");
        let e = WeightStore::load(&missing).unwrap_err();
        assert!(matches!(e, RuntimeError::Io { action: "read", .. }), "{e}");
        assert!(e.to_string().contains("nope.safetensors"), "{e}");
        let e = s.save(dir.join("no-such-dir/w.safetensors")).unwrap_err();
        assert!(matches!(e, RuntimeError::Io { action: "write", .. }), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn prefix_filtering_and_lookup_errors() {
        let mut s = WeightStore::new();
        s.insert("m_dcgan/up1.weight", random(&[1], 1));
        s.insert("m_dcgan/bn1.bias", random(&[1], 2));
        s.insert("c00_basic/weight", random(&[1], 3));
        let m = s.with_prefix("m_dcgan/");
        assert_eq!(m.keys().collect::<Vec<_>>(), ["bn1.bias", "up1.weight"]);
        assert_eq!(m.get("up1.weight"), s.get("m_dcgan/up1.weight"));
        let e = m.require("up2.weight").unwrap_err();
        assert_eq!(
            e.to_string(),
            "<memory> (keys under `m_dcgan/`): no tensor `up2.weight` (it has: bn1.bias, up1.weight)"
        );
        assert!(WeightStore::new().require("x").unwrap_err().to_string().contains("(it has: nothing)"));
    }

    #[test]
    fn header_written_like_pytorch() {
        let bytes = sample().to_bytes().unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
        assert_eq!(header["__metadata__"]["format"], "pt");
        assert_eq!(header["up1.weight"]["dtype"], "F32");
        assert_eq!(header["up1.weight"]["shape"], serde_json::json!([3, 4, 2, 2]));
    }

    #[test]
    fn truncation_never_panics() {
        let bytes = sample().to_bytes().unwrap();
        for cut in 0..bytes.len() {
            let e = WeightStore::from_bytes(&bytes[..cut]).unwrap_err();
            assert!(
                matches!(e, RuntimeError::CorruptSafetensors { .. } | RuntimeError::TensorData { .. }),
                "{cut}: {e}"
            );
        }
        let e = WeightStore::from_bytes(&bytes[..bytes.len() - 1]).unwrap_err();
        assert!(e.to_string().contains("truncated file?"), "{e}");
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(WeightStore::from_bytes(&longer).is_err());
    }

    #[test]
    fn corrupt_headers_are_errors() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![1, 2, 3], "fewer than the 8-byte header length"),
            (u64::MAX.to_le_bytes().to_vec(), "the header length says 18446744073709551615 bytes"),
            (raw("{not json", b""), "not valid JSON"),
            (raw("[1, 2]", b""), "not a JSON object"),
            (raw(r#"{"a":{"shape":[1],"data_offsets":[0,4]}}"#, &[0; 4]), "has no `dtype` field"),
            (raw(r#"{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}"#, &[0; 4]), "`shape` is not a list"),
            (raw(r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4]}}"#, &[0; 4]), "not a pair"),
            (raw(r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}"#, &[0; 4]), "lie outside"),
            // Offsets near u64::MAX must not overflow anything.
            (
                raw(r#"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,18446744073709551615]}}"#, &[0; 4]),
                "lie outside",
            ),
            // Gaps between tensors are caught by the safetensors crate.
            (
                raw(
                    r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#,
                    &[0; 12],
                ),
                "invalid offset",
            ),
            (raw(r#"{"a":{"dtype":"F99","shape":[1],"data_offsets":[0,4]}}"#, &[0; 4]), "not a valid safetensors"),
        ];
        for (bytes, needle) in cases {
            let e = WeightStore::from_bytes(&bytes).unwrap_err();
            assert!(e.to_string().contains(needle), "{needle:?} not in {e}");
            assert_eq!(e.kind(), crate::error::ErrorKind::InvalidInput);
        }
    }

    #[test]
    fn shape_data_mismatch_and_overflow_name_the_key() {
        let e = WeightStore::from_bytes(&raw(r#"{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}}"#, &[0; 12]))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "<bytes>: tensor `w` with shape [2, 2] does not match its data: F32 data of this shape takes 16 bytes, but data_offsets [0, 12] hold 12"
        );
        let huge = raw(r#"{"w":{"dtype":"F32","shape":[4294967296,4294967296,4],"data_offsets":[0,4]}}"#, &[0; 4]);
        let e = WeightStore::from_bytes(&huge).unwrap_err();
        assert!(matches!(&e, RuntimeError::TensorData { key, .. } if key == "w"), "{e}");
        assert!(e.to_string().contains("overflows"), "{e}");
    }

    #[test]
    fn batch_norm_counter_is_skipped() {
        let header = r#"{"bn1.num_batches_tracked":{"dtype":"I64","shape":[],"data_offsets":[0,8]},"bn1.weight":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#;
        let store = WeightStore::from_bytes(&raw(header, &[0; 12])).unwrap();
        assert_eq!(store.keys().collect::<Vec<_>>(), ["bn1.weight"]);
        // A float tensor of that name is still loaded (and then rejected by name downstream).
        let header = r#"{"bn1.num_batches_tracked":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}"#;
        assert_eq!(WeightStore::from_bytes(&raw(header, &[0; 4])).unwrap().len(), 1);
    }

    #[test]
    fn other_dtypes_are_refused_by_name() {
        for (dtype, size) in [("F64", 8), ("I64", 8), ("I32", 4), ("U8", 1), ("BOOL", 1), ("F8_E4M3", 1)] {
            let header =
                format!(r#"{{"bn1.running_mean":{{"dtype":"{dtype}","shape":[2],"data_offsets":[0,{}]}}}}"#, 2 * size);
            let e = WeightStore::from_bytes(&raw(&header, &vec![0; 2 * size])).unwrap_err();
            assert!(
                matches!(&e, RuntimeError::UnsupportedDtype { key, dtype: d, .. } if key == "bn1.running_mean" && d == dtype),
                "{e}"
            );
            assert!(e.to_string().contains(&format!("has dtype {dtype}")), "{e}");
        }
    }

    #[test]
    fn half_precision_is_widened_exactly() {
        // 1.0, -2.0, 65504 (max), 2^-24 (min subnormal), -0.0, inf, 0.333 (0x3555)
        let halves: [u16; 7] = [0x3c00, 0xc000, 0x7bff, 0x0001, 0x8000, 0x7c00, 0x3555];
        let data: Vec<u8> = halves.iter().flat_map(|h| h.to_le_bytes()).collect();
        let s =
            WeightStore::from_bytes(&raw(r#"{"h":{"dtype":"F16","shape":[7],"data_offsets":[0,14]}}"#, &data)).unwrap();
        let h = s.get("h").unwrap();
        assert_eq!(h.as_slice().unwrap()[..6], [1.0, -2.0, 65504.0, 2f32.powi(-24), -0.0, f32::INFINITY]);
        assert!(h[[4]].is_sign_negative());
        assert_eq!(h[[6]], 0.333_251_95);
        assert!(f16_to_f32(0x7e00).is_nan());
        let bf: Vec<u8> = [0x3f80u16, 0xc0a0].iter().flat_map(|h| h.to_le_bytes()).collect();
        let s =
            WeightStore::from_bytes(&raw(r#"{"b":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}}"#, &bf)).unwrap();
        assert_eq!(s.get("b").unwrap().as_slice().unwrap(), [1.0, -5.0]);
    }
}
