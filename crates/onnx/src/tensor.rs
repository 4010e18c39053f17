//! Tensors: the checks that a `TensorProto`'s shape, type and data agree, and
//! [`Tensor`], the checked owned form with typed accessors.
//!
//! ONNX stores a tensor's elements either as little-endian bytes in `raw_data`
//! (or an external file, which `external.rs` reads into `raw_data`) or in the
//! typed field of its storage class: narrow integer types, bool and the bits of
//! half-precision floats widen into `int32_data`, `uint32`/`uint64` go into
//! `uint64_data`, `double` into `double_data`. [`Tensor`] keeps whichever form
//! the file used and converts on access, so a checked tensor is never copied
//! just to be normalized.

use crate::error::{OnnxError, Result};
use crate::limits::Limits;
use crate::proto::{DataLocation, DataType, TensorProto};

/// The typed field of `TensorProto` that holds a type's elements when
/// `raw_data` is not used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    Float,
    Int32,
    String,
    Int64,
    Double,
    Uint64,
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Field::Float => "float_data",
            Field::Int32 => "int32_data",
            Field::String => "string_data",
            Field::Int64 => "int64_data",
            Field::Double => "double_data",
            Field::Uint64 => "uint64_data",
        }
    }
}

/// The onnx.proto spelling of a type (`FLOAT16`), for messages.
pub(crate) fn type_name(t: DataType) -> &'static str {
    t.proto_name()
}

/// How a type is stored: bits per element in `raw_data` (`None` for strings,
/// which have no raw form), its typed field, and how many elements one entry
/// of that field holds (`per_entry`, > 1 for packed 4- and 2-bit types) or how
/// many entries one element takes (`entries_per`, 2 for complex numbers).
struct Storage {
    bits: Option<u64>,
    field: Field,
    per_entry: u64,
    entries_per: u64,
}

fn storage(t: DataType) -> Option<Storage> {
    use DataType as D;
    let s = |bits: u64, field, per_entry, entries_per| Storage { bits: Some(bits), field, per_entry, entries_per };
    Some(match t {
        D::Undefined => return None,
        D::Float => s(32, Field::Float, 1, 1),
        D::Complex64 => s(64, Field::Float, 1, 2),
        D::Double => s(64, Field::Double, 1, 1),
        D::Complex128 => s(128, Field::Double, 1, 2),
        D::Int64 => s(64, Field::Int64, 1, 1),
        D::Uint32 => s(32, Field::Uint64, 1, 1),
        D::Uint64 => s(64, Field::Uint64, 1, 1),
        D::Int32 => s(32, Field::Int32, 1, 1),
        D::Int16 | D::Uint16 | D::Float16 | D::Bfloat16 => s(16, Field::Int32, 1, 1),
        D::Int8 | D::Uint8 | D::Bool => s(8, Field::Int32, 1, 1),
        D::Float8e4m3fn | D::Float8e4m3fnuz | D::Float8e5m2 | D::Float8e5m2fnuz | D::Float8e8m0 => {
            s(8, Field::Int32, 1, 1)
        }
        D::Uint4 | D::Int4 | D::Float4e2m1 => s(4, Field::Int32, 2, 1),
        D::Uint2 | D::Int2 => s(2, Field::Int32, 4, 1),
        D::String => Storage { bits: None, field: Field::String, per_entry: 1, entries_per: 1 },
    })
}

/// What [`check`] establishes about a `TensorProto`.
#[derive(Clone, Debug)]
pub(crate) struct Checked {
    pub dims: Vec<u64>,
    pub data_type: DataType,
    /// Bytes of the raw (little-endian) form; `None` for strings.
    pub byte_len: Option<u64>,
    /// Whether the data is in an external file (not yet read).
    pub external: bool,
}

/// Checks a tensor's metadata and that its data has exactly the length its
/// shape implies, in exactly one place. `label` names it in errors.
pub(crate) fn check(t: &TensorProto, label: &str, limits: &Limits) -> Result<Checked> {
    let data_type = DataType::try_from(t.data_type)
        .map_err(|_| OnnxError::tensor(label, format!("unknown data_type {}", t.data_type)))?;
    let st = storage(data_type).ok_or_else(|| OnnxError::tensor(label, "data_type is UNDEFINED"))?;
    if t.dims.len() > limits.max_rank {
        return Err(OnnxError::limit(format!("rank of tensor `{label}`"), t.dims.len() as u64, limits.max_rank as u64));
    }
    let mut dims = Vec::with_capacity(t.dims.len());
    let mut count: u64 = 1;
    for (i, &d) in t.dims.iter().enumerate() {
        let d = u64::try_from(d).map_err(|_| OnnxError::tensor(label, format!("dimension {i} is negative ({d})")))?;
        count = count
            .checked_mul(d)
            .ok_or_else(|| OnnxError::tensor(label, format!("element count of dims {:?} overflows 64 bits", t.dims)))?;
        dims.push(d);
    }
    let byte_len = match st.bits {
        Some(bits) => {
            let total_bits = count
                .checked_mul(bits)
                .ok_or_else(|| OnnxError::tensor(label, format!("byte size of dims {:?} overflows 64 bits", t.dims)))?;
            Some(total_bits.div_ceil(8))
        }
        None => None,
    };
    // Strings have no raw size; bound them by one byte per element at least,
    // their real size being bounded by the file.
    let size = byte_len.unwrap_or(count);
    if size > limits.max_tensor_bytes {
        return Err(OnnxError::limit(format!("byte size of tensor `{label}`"), size, limits.max_tensor_bytes));
    }
    if t.segment.is_some() {
        return Err(OnnxError::tensor(label, "segmented tensors (`segment`) are not supported"));
    }

    let typed: [(Field, usize); 6] = [
        (Field::Float, t.float_data.len()),
        (Field::Int32, t.int32_data.len()),
        (Field::String, t.string_data.len()),
        (Field::Int64, t.int64_data.len()),
        (Field::Double, t.double_data.len()),
        (Field::Uint64, t.uint64_data.len()),
    ];
    let present: Vec<&'static str> = typed
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(f, _)| f.name())
        .chain((!t.raw_data.is_empty()).then_some("raw_data"))
        .collect();

    let location = DataLocation::try_from(t.data_location)
        .map_err(|_| OnnxError::tensor(label, format!("unknown data_location {}", t.data_location)))?;
    if location == DataLocation::External {
        if let Some(f) = present.first() {
            return Err(OnnxError::tensor(label, format!("data_location is EXTERNAL but `{f}` is set too")));
        }
        if byte_len.is_none() {
            return Err(OnnxError::tensor(label, "STRING tensors cannot have external data"));
        }
        return Ok(Checked { dims, data_type, byte_len, external: true });
    }
    if !t.external_data.is_empty() {
        return Err(OnnxError::tensor(label, "external_data is set but data_location is not EXTERNAL"));
    }
    if present.len() > 1 {
        return Err(OnnxError::tensor(label, format!("data is given twice: {}", present.join(" and "))));
    }
    // A tensor with elements but no data at all is malformed too: the length
    // check of the field the type would use reports it.
    let raw_given = !t.raw_data.is_empty();
    if raw_given {
        let Some(expected) = byte_len else {
            return Err(OnnxError::tensor(label, "STRING tensors cannot use raw_data"));
        };
        if t.raw_data.len() as u64 != expected {
            return Err(OnnxError::tensor(
                label,
                format!(
                    "raw_data has {} bytes, but {} elements of {} need {expected}",
                    t.raw_data.len(),
                    count,
                    type_name(data_type)
                ),
            ));
        }
    } else {
        if let Some(wrong) = typed.iter().find(|(f, n)| *n > 0 && *f != st.field) {
            return Err(OnnxError::tensor(
                label,
                format!(
                    "data of type {} is in `{}`; it belongs in `{}`",
                    type_name(data_type),
                    wrong.0.name(),
                    st.field.name()
                ),
            ));
        }
        let have = typed.iter().find(|(f, _)| *f == st.field).map_or(0, |(_, n)| *n) as u64;
        // `count * entries_per` cannot overflow: count ≤ max_tensor_bytes·8 / bits.
        let want = count.div_ceil(st.per_entry).saturating_mul(st.entries_per);
        if have != want {
            return Err(OnnxError::tensor(
                label,
                format!(
                    "{} has {have} entries, but {count} elements of {} need {want}{}",
                    st.field.name(),
                    type_name(data_type),
                    if have == 0 { " (no data given)" } else { "" }
                ),
            ));
        }
    }
    Ok(Checked { dims, data_type, byte_len, external: false })
}

/// The elements of a checked tensor, in the form the file stored them.
#[derive(Clone, Debug, PartialEq)]
enum Data {
    /// Little-endian bytes (`raw_data` or external), exactly `byte_len` long.
    Raw(Vec<u8>),
    Float(Vec<f32>),
    Int32(Vec<i32>),
    Int64(Vec<i64>),
    Double(Vec<f64>),
    Uint64(Vec<u64>),
    Strings(Vec<Vec<u8>>),
}

/// A tensor whose shape, type and data length have been checked (its external
/// data, if any, already read). The accessors convert the elements to a
/// working type; conversions that lose range (`uint64` above `i64::MAX`) are
/// errors, not wraps.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    name: String,
    dims: Vec<u64>,
    data_type: DataType,
    data: Data,
}

impl Tensor {
    /// Checks `t` (see [`check`]) and takes its data. External data must have
    /// been read into `raw_data` before.
    pub(crate) fn from_proto(mut t: TensorProto, label: &str, limits: &Limits) -> Result<Tensor> {
        let c = check(&t, label, limits)?;
        if c.external {
            return Err(OnnxError::tensor(label, "external data was not resolved"));
        }
        let data = if !t.raw_data.is_empty() || c.byte_len == Some(0) {
            Data::Raw(std::mem::take(&mut t.raw_data))
        } else if !t.float_data.is_empty() {
            Data::Float(std::mem::take(&mut t.float_data))
        } else if !t.int32_data.is_empty() {
            Data::Int32(std::mem::take(&mut t.int32_data))
        } else if !t.int64_data.is_empty() {
            Data::Int64(std::mem::take(&mut t.int64_data))
        } else if !t.double_data.is_empty() {
            Data::Double(std::mem::take(&mut t.double_data))
        } else if !t.uint64_data.is_empty() {
            Data::Uint64(std::mem::take(&mut t.uint64_data))
        } else {
            // Strings, possibly zero of them.
            Data::Strings(std::mem::take(&mut t.string_data))
        };
        Ok(Tensor { name: label.to_string(), dims: c.dims, data_type: c.data_type, data })
    }

    /// The tensor's name (for an unnamed attribute tensor, where it sits).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The shape.
    pub fn dims(&self) -> &[u64] {
        &self.dims
    }

    /// The element type.
    pub fn data_type(&self) -> DataType {
        self.data_type
    }

    /// The number of elements (1 for a scalar, the product of the dims).
    pub fn element_count(&self) -> u64 {
        // Checked when the tensor was built.
        self.dims.iter().product()
    }

    /// Whether the elements came from `raw_data` or an external file (as
    /// opposed to a typed field).
    pub fn is_raw(&self) -> bool {
        matches!(self.data, Data::Raw(_))
    }

    fn type_error(&self, wanted: &'static str) -> OnnxError {
        OnnxError::TensorType { tensor: self.name.clone(), actual: type_name(self.data_type).to_string(), wanted }
    }

    fn range_error(&self, field: &str, index: usize, value: impl std::fmt::Display) -> OnnxError {
        OnnxError::tensor(
            &self.name,
            format!("{field}[{index}] = {value} is not a valid {} value", type_name(self.data_type)),
        )
    }

    /// `int32_data` entries as 16-bit patterns (float16, bfloat16 bits).
    fn int32_as_u16(&self, v: &[i32]) -> Result<Vec<u16>> {
        v.iter().enumerate().map(|(i, &x)| u16::try_from(x).map_err(|_| self.range_error("int32_data", i, x))).collect()
    }

    /// The elements as `f32`: from FLOAT, DOUBLE (rounded), FLOAT16 and BFLOAT16.
    pub fn to_f32_vec(&self) -> Result<Vec<f32>> {
        use DataType as D;
        match (self.data_type, &self.data) {
            (D::Float, Data::Raw(b)) => Ok(le_chunks::<4>(b).map(f32::from_le_bytes).collect()),
            (D::Float, Data::Float(v)) => Ok(v.clone()),
            (D::Double, _) => Ok(self.to_f64_vec()?.into_iter().map(|x| x as f32).collect()),
            (D::Float16, Data::Raw(b)) => Ok(le_chunks::<2>(b).map(|c| f16_to_f32(u16::from_le_bytes(c))).collect()),
            (D::Float16, Data::Int32(v)) => Ok(self.int32_as_u16(v)?.into_iter().map(f16_to_f32).collect()),
            (D::Bfloat16, Data::Raw(b)) => Ok(le_chunks::<2>(b).map(|c| bf16_to_f32(u16::from_le_bytes(c))).collect()),
            (D::Bfloat16, Data::Int32(v)) => Ok(self.int32_as_u16(v)?.into_iter().map(bf16_to_f32).collect()),
            _ => Err(self.type_error("f32")),
        }
    }

    /// The elements as `f64`: from DOUBLE, FLOAT, FLOAT16 and BFLOAT16 (all exact).
    pub fn to_f64_vec(&self) -> Result<Vec<f64>> {
        use DataType as D;
        match (self.data_type, &self.data) {
            (D::Double, Data::Raw(b)) => Ok(le_chunks::<8>(b).map(f64::from_le_bytes).collect()),
            (D::Double, Data::Double(v)) => Ok(v.clone()),
            (D::Float | D::Float16 | D::Bfloat16, _) => Ok(self.to_f32_vec()?.into_iter().map(f64::from).collect()),
            _ => Err(self.type_error("f64")),
        }
    }

    /// The elements as `i64`: from INT64, INT32, INT16, INT8, UINT8, UINT16,
    /// UINT32, UINT64 (an error above `i64::MAX`) and BOOL (0 or 1; any other
    /// byte is an error). Typed entries outside their type's range are errors.
    pub fn to_i64_vec(&self) -> Result<Vec<i64>> {
        use DataType as D;
        let t = self.data_type;
        match &self.data {
            Data::Raw(b) => match t {
                D::Int64 => Ok(le_chunks::<8>(b).map(i64::from_le_bytes).collect()),
                D::Int32 => Ok(le_chunks::<4>(b).map(|c| i64::from(i32::from_le_bytes(c))).collect()),
                D::Uint32 => Ok(le_chunks::<4>(b).map(|c| i64::from(u32::from_le_bytes(c))).collect()),
                D::Int16 => Ok(le_chunks::<2>(b).map(|c| i64::from(i16::from_le_bytes(c))).collect()),
                D::Uint16 => Ok(le_chunks::<2>(b).map(|c| i64::from(u16::from_le_bytes(c))).collect()),
                D::Int8 => Ok(b.iter().map(|&x| i64::from(x as i8)).collect()),
                D::Uint8 => Ok(b.iter().map(|&x| i64::from(x)).collect()),
                D::Bool => b
                    .iter()
                    .enumerate()
                    .map(|(i, &x)| if x <= 1 { Ok(i64::from(x)) } else { Err(self.range_error("raw_data", i, x)) })
                    .collect(),
                D::Uint64 => le_chunks::<8>(b)
                    .enumerate()
                    .map(|(i, c)| {
                        let x = u64::from_le_bytes(c);
                        i64::try_from(x).map_err(|_| self.range_error("raw_data", i, x))
                    })
                    .collect(),
                _ => Err(self.type_error("i64")),
            },
            Data::Int64(v) => Ok(v.clone()),
            Data::Int32(v) => {
                let (lo, hi): (i64, i64) = match t {
                    D::Int32 => (i32::MIN.into(), i32::MAX.into()),
                    D::Int16 => (i16::MIN.into(), i16::MAX.into()),
                    D::Uint16 => (0, u16::MAX.into()),
                    D::Int8 => (i8::MIN.into(), i8::MAX.into()),
                    D::Uint8 => (0, u8::MAX.into()),
                    D::Bool => (0, 1),
                    _ => return Err(self.type_error("i64")),
                };
                v.iter()
                    .enumerate()
                    .map(|(i, &x)| {
                        let x = i64::from(x);
                        if (lo..=hi).contains(&x) {
                            Ok(x)
                        } else {
                            Err(self.range_error("int32_data", i, x))
                        }
                    })
                    .collect()
            }
            Data::Uint64(v) => {
                let hi = if t == D::Uint32 { u64::from(u32::MAX) } else { i64::MAX as u64 };
                v.iter()
                    .enumerate()
                    .map(|(i, &x)| if x <= hi { Ok(x as i64) } else { Err(self.range_error("uint64_data", i, x)) })
                    .collect()
            }
            Data::Float(_) | Data::Double(_) | Data::Strings(_) => Err(self.type_error("i64")),
        }
    }

    /// The elements of a STRING tensor, as the bytes stored (UTF-8 by
    /// convention, not checked).
    pub fn strings(&self) -> Result<&[Vec<u8>]> {
        match &self.data {
            Data::Strings(v) if self.data_type == DataType::String => Ok(v),
            _ => Err(self.type_error("string")),
        }
    }
}

/// Fixed-size little-endian chunks of a buffer whose length is a multiple of
/// `N` (checked when the tensor was built; a ragged tail would be ignored).
fn le_chunks<const N: usize>(b: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
    b.chunks_exact(N).map(|c| {
        let mut a = [0u8; N];
        a.copy_from_slice(c);
        a
    })
}

/// IEEE 754 binary16 to f32, exactly (every f16 is an f32): subnormals are
/// renormalized, infinities kept, NaN payloads shifted into place (so a quiet
/// NaN stays quiet).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h & 0x8000) << 16;
    let exp = u32::from((h >> 10) & 0x1f);
    let mant = u32::from(h & 0x3ff);
    let bits = match exp {
        0 if mant == 0 => sign,
        0 => {
            // mant · 2^-24: shift the leading one up to the implicit bit (bit 10),
            // lowering the exponent from that of 2^-14 once per shift.
            let mut e = 127 - 14;
            let mut m = mant;
            while m & 0x400 == 0 {
                m <<= 1;
                e -= 1;
            }
            sign | (e << 23) | ((m & 0x3ff) << 13)
        }
        0x1f => sign | 0x7f80_0000 | (mant << 13),
        _ => sign | ((exp + 127 - 15) << 23) | (mant << 13),
    };
    f32::from_bits(bits)
}

/// bfloat16 to f32: the 16 bits are the upper half of the f32.
pub fn bf16_to_f32(h: u16) -> f32 {
    f32::from_bits(u32::from(h) << 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The f16 value from the definition, in f64 arithmetic.
    fn f16_reference(h: u16) -> f64 {
        let s = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
        let e = i32::from((h >> 10) & 0x1f);
        let m = f64::from(h & 0x3ff);
        match e {
            0 => s * m * 2f64.powi(-24),
            0x1f if m == 0.0 => s * f64::INFINITY,
            0x1f => f64::NAN,
            _ => s * (1.0 + m / 1024.0) * 2f64.powi(e - 15),
        }
    }

    #[test]
    fn every_f16_converts_exactly() {
        for h in 0..=u16::MAX {
            let got = f16_to_f32(h);
            let want = f16_reference(h);
            if want.is_nan() {
                assert!(got.is_nan(), "{h:#06x}");
                // Quiet bit and payload keep their place.
                assert_eq!(got.to_bits() & 0x007f_ffff, u32::from(h & 0x3ff) << 13, "{h:#06x}");
            } else {
                assert_eq!(f64::from(got), want, "{h:#06x}");
                assert_eq!(got.is_sign_negative(), h & 0x8000 != 0, "{h:#06x}");
            }
        }
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
    }

    #[test]
    fn bf16_is_the_upper_half() {
        assert_eq!(bf16_to_f32(0x3f80), 1.0);
        assert_eq!(bf16_to_f32(0xff80), f32::NEG_INFINITY);
    }
}
