//! A minimal, strict reader and writer for NumPy `.npy` files holding
//! little-endian float32 arrays (`'<f4'`) in C order: what `numpy.save` writes
//! for a C-contiguous `float32` array, and what the CLI needs for model inputs
//! and outputs.
//!
//! Read: format versions 1.0, 2.0 and 3.0 (3.0 differs only in allowing a
//! UTF-8 header, which a float32 header never needs). The header dict must
//! have exactly the keys `descr`, `fortran_order` and `shape`. Any other dtype
//! (including big-endian `'>f4'` and `'<f8'`), Fortran order, object arrays,
//! truncated data and trailing bytes are errors that say what was found and
//! what to do. The element count is checked for overflow and against the
//! file's size before anything is allocated.
//!
//! Write: version 1.0 (2.0 if the header would not fit), the header padded
//! with spaces to a multiple of 64 bytes and ended by a newline, as NumPy does,
//! so a round trip of a NumPy-written file reproduces it byte for byte.
//!
//! Not supported: other dtypes, structured arrays, `.npz` archives, memory mapping.

use std::path::Path;

use ndarray::{ArrayD, IxDyn};

use crate::error::{fmt_shape, Result, RuntimeError};
use crate::tensor::{checked_len, Tensor};

const MAGIC: &[u8; 6] = b"\x93NUMPY";
/// NumPy aligns the data to this many bytes (header included).
const ALIGN: usize = 64;

/// Reads a `.npy` file holding a little-endian float32 C-order array.
pub fn read(path: impl AsRef<Path>) -> Result<Tensor> {
    let path = path.as_ref();
    let bytes =
        std::fs::read(path).map_err(|source| RuntimeError::Io { action: "read", path: path.to_path_buf(), source })?;
    parse(&bytes, &path.display().to_string())
}

/// Parses the bytes of a `.npy` file (see [`read()`]).
pub fn from_bytes(bytes: &[u8]) -> Result<Tensor> {
    parse(bytes, "<bytes>")
}

/// Writes `tensor` as a version 1.0 `.npy` file (`'<f4'`, C order), whatever its
/// memory layout.
pub fn write(path: impl AsRef<Path>, tensor: &Tensor) -> Result<()> {
    let path = path.as_ref();
    std::fs::write(path, to_bytes(tensor)).map_err(|source| RuntimeError::Io {
        action: "write",
        path: path.to_path_buf(),
        source,
    })
}

/// The bytes of a `.npy` file holding `tensor` (see [`write()`]).
pub fn to_bytes(tensor: &Tensor) -> Vec<u8> {
    let shape = match tensor.shape() {
        [] => "()".to_string(),
        [n] => format!("({n},)"),
        dims => format!("({})", dims.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")),
    };
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    // Version 1.0 has a 2-byte header length; fall back to 2.0 (4 bytes) for
    // absurdly high ranks, as NumPy does.
    let (version, len_bytes) = if dict.len() + 1 + 10 + ALIGN <= usize::from(u16::MAX) { (1u8, 2) } else { (2u8, 4) };
    let prefix = MAGIC.len() + 2 + len_bytes;
    let unpadded = prefix + dict.len() + 1;
    let header_len = dict.len() + 1 + (ALIGN - unpadded % ALIGN) % ALIGN;
    let mut out = Vec::with_capacity(prefix + header_len + tensor.len() * 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[version, 0]);
    if version == 1 {
        // Fits: checked when choosing the version.
        out.extend_from_slice(&(header_len as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(header_len as u32).to_le_bytes());
    }
    out.extend_from_slice(dict.as_bytes());
    out.resize(prefix + header_len - 1, b' ');
    out.push(b'\n');
    // `iter()` walks in logical C order whatever the memory layout.
    out.extend(tensor.iter().flat_map(|v| v.to_le_bytes()));
    out
}

fn parse(bytes: &[u8], file: &str) -> Result<Tensor> {
    let invalid = |reason: String| RuntimeError::InvalidNpy { file: file.into(), reason };
    if bytes.len() < MAGIC.len() + 2 || &bytes[..MAGIC.len()] != MAGIC {
        return Err(invalid("missing the `\\x93NUMPY` magic string: not a .npy file".into()));
    }
    let (major, minor) = (bytes[6], bytes[7]);
    let len_bytes = match (major, minor) {
        (1, 0) => 2,
        (2, 0) | (3, 0) => 4,
        _ => return Err(invalid(format!("format version {major}.{minor} is not supported (1.0, 2.0, 3.0 are)"))),
    };
    let prefix = 8 + len_bytes;
    let Some(len_field) = bytes.get(8..prefix) else {
        return Err(invalid("truncated before the header length".into()));
    };
    let header_len = len_field.iter().rev().fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
    let Some(header) = prefix.checked_add(header_len).and_then(|end| bytes.get(prefix..end)) else {
        return Err(invalid(format!(
            "the header length says {header_len} bytes but only {} follow (truncated file?)",
            bytes.len() - prefix.min(bytes.len())
        )));
    };
    let header = std::str::from_utf8(header).map_err(|_| invalid("the header is not UTF-8 text".into()))?;
    let fields = parse_header(header).map_err(|e| invalid(format!("{e} in header {:?}", header.trim_end())))?;
    if fields.descr != "<f4" {
        return Err(invalid(format!(
            "dtype {:?} is not supported: Kiln reads little-endian float32 ('<f4'); convert with `arr.astype('<f4')`",
            fields.descr
        )));
    }
    if fields.fortran_order {
        return Err(invalid("Fortran-order arrays are not supported: save `np.ascontiguousarray(arr)` instead".into()));
    }
    let shape = fields.shape;
    let data = &bytes[prefix + header_len..];
    let mismatch = |reason: String| RuntimeError::TensorData {
        file: file.into(),
        key: "<array>".into(),
        shape: fmt_shape(&shape),
        reason,
    };
    let Some(needed) = checked_len(&shape).and_then(|n| n.checked_mul(4)) else {
        return Err(mismatch("the element count overflows".into()));
    };
    if data.len() < needed {
        return Err(mismatch(format!("needs {needed} bytes of data, the file has {} (truncated file?)", data.len())));
    }
    if data.len() > needed {
        return Err(mismatch(format!("needs {needed} bytes of data, the file has {} extra", data.len() - needed)));
    }
    let values: Vec<f32> = data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    ArrayD::from_shape_vec(IxDyn(&shape), values).map_err(|e| mismatch(e.to_string()))
}

/// The three fields of a `.npy` header.
struct Header {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

/// A value in the header's Python dict literal.
enum Literal {
    Str(String),
    Bool(bool),
    Tuple(Vec<usize>),
}

/// Parses the header: a Python dict literal with string keys and string,
/// bool or int-tuple values, optionally followed by whitespace.
fn parse_header(text: &str) -> std::result::Result<Header, String> {
    let mut p = Parser { s: text.as_bytes(), i: 0 };
    p.expect(b'{')?;
    let (mut descr, mut fortran, mut shape) = (None, None, None);
    loop {
        p.skip_ws();
        if p.eat(b'}') {
            break;
        }
        let key = p.string()?;
        p.skip_ws();
        p.expect(b':')?;
        p.skip_ws();
        let value = p.literal()?;
        let slot_filled = match (key.as_str(), value) {
            ("descr", Literal::Str(s)) => descr.replace(s).is_some(),
            ("fortran_order", Literal::Bool(b)) => fortran.replace(b).is_some(),
            ("shape", Literal::Tuple(t)) => shape.replace(t).is_some(),
            ("descr" | "fortran_order" | "shape", _) => {
                return Err(format!("key '{key}' has a value of the wrong type"))
            }
            _ => return Err(format!("unexpected key '{key}'")),
        };
        if slot_filled {
            return Err(format!("key '{key}' appears twice"));
        }
        p.skip_ws();
        if !p.eat(b',') {
            p.skip_ws();
            p.expect(b'}')?;
            break;
        }
    }
    p.skip_ws();
    if p.i != p.s.len() {
        return Err(format!("unexpected text after the dict at byte {}", p.i));
    }
    Ok(Header {
        descr: descr.ok_or("missing key 'descr'")?,
        fortran_order: fortran.ok_or("missing key 'fortran_order'")?,
        shape: shape.ok_or("missing key 'shape'")?,
    })
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn skip_ws(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn expect(&mut self, c: u8) -> std::result::Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!("expected '{}' at byte {}", c as char, self.i))
        }
    }
    /// A quoted string without escapes (none occur in valid headers).
    fn string(&mut self) -> std::result::Result<String, String> {
        let quote = match self.peek() {
            Some(q @ (b'\'' | b'"')) => q,
            _ => return Err(format!("expected a quoted string at byte {}", self.i)),
        };
        self.i += 1;
        let start = self.i;
        while let Some(c) = self.peek() {
            if c == b'\\' {
                return Err(format!("escape sequences are not supported (byte {})", self.i));
            }
            if c == quote {
                let s = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
                self.i += 1;
                return Ok(s);
            }
            self.i += 1;
        }
        Err("unterminated string".into())
    }
    fn word(&mut self, w: &str) -> bool {
        if self.s[self.i..].starts_with(w.as_bytes()) {
            self.i += w.len();
            true
        } else {
            false
        }
    }
    fn literal(&mut self) -> std::result::Result<Literal, String> {
        match self.peek() {
            Some(b'\'' | b'"') => self.string().map(Literal::Str),
            Some(b'(') => self.tuple().map(Literal::Tuple),
            _ if self.word("True") => Ok(Literal::Bool(true)),
            _ if self.word("False") => Ok(Literal::Bool(false)),
            _ => Err(format!("unsupported value at byte {}", self.i)),
        }
    }
    /// `()`, `(3,)`, `(2, 3)` or `(2, 3,)`: non-negative integers only.
    fn tuple(&mut self) -> std::result::Result<Vec<usize>, String> {
        self.expect(b'(')?;
        let mut dims = Vec::new();
        loop {
            self.skip_ws();
            // Reached at the start or right after a comma: `()` or a trailing comma.
            if self.eat(b')') {
                return Ok(dims);
            }
            let start = self.i;
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.i += 1;
            }
            if start == self.i {
                return Err(format!("expected a non-negative integer in the shape at byte {}", self.i));
            }
            let digits = std::str::from_utf8(&self.s[start..self.i]).map_err(|e| e.to_string())?;
            // NumPy may write `3L` on very old Python 2 versions; not accepted.
            let dim = digits.parse::<usize>().map_err(|_| format!("shape dimension {digits} is too large"))?;
            dims.push(dim);
            self.skip_ws();
            if !self.eat(b',') {
                self.skip_ws();
                self.expect(b')')?;
                // `(3)` is an int, not a tuple, in Python; NumPy never writes it.
                if dims.len() == 1 {
                    return Err("a one-element shape must be written `(n,)`".into());
                }
                return Ok(dims);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::random;

    /// A `.npy` file with `dict` as its header (padded like NumPy) and `data`.
    fn npy(dict: &str, data: &[u8]) -> Vec<u8> {
        let mut h = dict.to_string();
        while !(10 + h.len() + 1).is_multiple_of(64) {
            h.push(' ');
        }
        h.push('\n');
        let mut v = MAGIC.to_vec();
        v.extend_from_slice(&[1, 0]);
        v.extend_from_slice(&(h.len() as u16).to_le_bytes());
        v.extend_from_slice(h.as_bytes());
        v.extend_from_slice(data);
        v
    }

    fn err(bytes: &[u8]) -> String {
        from_bytes(bytes).unwrap_err().to_string()
    }

    #[test]
    fn round_trips_any_rank_and_layout() {
        for shape in [vec![], vec![5], vec![2, 3], vec![2, 32, 1, 1], vec![0, 4], vec![1, 2, 3, 4, 5]] {
            let t = random(&shape, 9);
            let bytes = to_bytes(&t);
            assert_eq!((bytes.len() - t.len() * 4) % 64, 0, "data is 64-byte aligned");
            assert_eq!(from_bytes(&bytes).unwrap(), t, "{shape:?}");
        }
        let t = random(&[3, 4], 1).reversed_axes();
        assert_eq!(from_bytes(&to_bytes(&t)).unwrap(), t);
    }

    #[test]
    fn header_matches_numpy_exactly() {
        let t = Tensor::zeros(IxDyn(&[2, 32, 1, 1]));
        let bytes = to_bytes(&t);
        let header = std::str::from_utf8(&bytes[10..128]).unwrap();
        assert_eq!(header.trim_end(), "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 32, 1, 1), }");
        assert_eq!(&bytes[..10], b"\x93NUMPY\x01\x00\x76\x00");
        assert!(header.ends_with('\n'));
        let one = to_bytes(&Tensor::zeros(IxDyn(&[7])));
        assert!(std::str::from_utf8(&one[10..128]).unwrap().contains("'shape': (7,), }"));
    }

    #[test]
    fn accepts_variations_numpy_may_write() {
        let data: Vec<u8> = [1.0f32, 2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
        for dict in [
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }",
            "{\"shape\": (2,), \"fortran_order\": False, \"descr\": \"<f4\"}",
            "{'descr':'<f4','fortran_order':False,'shape':(1, 2)}",
            "{'descr': '<f4', 'fortran_order': False, 'shape': ( 2 , ) , }",
        ] {
            let t = from_bytes(&npy(dict, &data)).unwrap();
            assert_eq!(t.iter().copied().collect::<Vec<_>>(), [1.0, 2.0], "{dict}");
        }
        // Version 2.0: 4-byte header length.
        let mut v2 = MAGIC.to_vec();
        let h = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }\n";
        v2.extend_from_slice(&[2, 0]);
        v2.extend_from_slice(&(h.len() as u32).to_le_bytes());
        v2.extend_from_slice(h.as_bytes());
        v2.extend_from_slice(&data);
        assert_eq!(from_bytes(&v2).unwrap().len(), 2);
    }

    #[test]
    fn other_dtypes_orders_and_versions_are_refused() {
        let d8 = [0u8; 8];
        for (dict, needle) in [
            ("{'descr': '<f8', 'fortran_order': False, 'shape': (1,), }", "dtype \"<f8\" is not supported"),
            ("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", "dtype \">f4\" is not supported"),
            ("{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }", "astype('<f4')"),
            ("{'descr': '|O', 'fortran_order': False, 'shape': (2,), }", "not supported"),
            ("{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }", "Fortran-order"),
            ("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", "unsupported value"),
            ("{'descr': '<f4', 'fortran_order': False}", "missing key 'shape'"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 'y'}", "unexpected key 'x'"),
            ("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}", "appears twice"),
            ("{'descr': '<f4', 'fortran_order': 0, 'shape': (2,)}", "unsupported value"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': '2'}", "wrong type"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (2)}", "(n,)"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (-2,)}", "non-negative integer"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,)}", "too large"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} x", "unexpected text"),
            ("{'descr': '<f4', 'fortran_order': False, 'shape': (2,)", "expected '}'"),
            ("['descr']", "expected '{'"),
        ] {
            let e = err(&npy(dict, &d8));
            assert!(e.contains(needle), "{needle:?} not in {e}");
        }
        let mut v4 = npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", &d8);
        v4[6] = 4;
        assert!(err(&v4).contains("format version 4.0 is not supported"));
        assert!(err(b"PK\x03\x04 an npz").contains("magic"));
    }

    #[test]
    fn truncated_extra_and_overflowing_data() {
        let ok = to_bytes(&random(&[3, 5], 2));
        for cut in 0..ok.len() {
            let e = from_bytes(&ok[..cut]).unwrap_err();
            assert!(matches!(e, RuntimeError::InvalidNpy { .. } | RuntimeError::TensorData { .. }), "{cut}: {e}");
        }
        assert!(err(&ok[..ok.len() - 3]).contains("needs 60 bytes of data, the file has 57 (truncated file?)"));
        let mut extra = ok.clone();
        extra.push(0);
        assert!(err(&extra).contains("1 extra"));
        let huge = npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }", &[]);
        assert!(err(&huge).contains("overflows"));
        let big = npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000, 1000), }", &[0; 4]);
        assert!(err(&big).contains("truncated"), "no allocation before the size check");
        let mut lying = ok.clone();
        lying[8] = 0xff;
        lying[9] = 0xff;
        assert!(err(&lying).contains("truncated file?"));
    }

    #[test]
    fn file_io_and_errors() {
        let dir = std::env::temp_dir().join(format!("kiln-runtime-npy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.npy");
        let t = random(&[2, 3, 4], 5);
        write(&path, &t).unwrap();
        assert_eq!(read(&path).unwrap(), t);
        assert!(matches!(read(dir.join("missing.npy")).unwrap_err(), RuntimeError::Io { action: "read", .. }));
        assert!(matches!(write(dir.join("x/y.npy"), &t).unwrap_err(), RuntimeError::Io { action: "write", .. }));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
