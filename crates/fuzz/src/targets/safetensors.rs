//! safetensors: `WeightStore::from_bytes`; if it loads, saving and loading
//! again must give the same keys, shapes and bit patterns (F16 and BF16 are
//! widened exactly, so they survive as F32).

use kiln_runtime::{RandomTensor, Rng, Tensor, WeightStore};

use crate::Outcome;

/// Runs the target on one input.
pub fn run(input: &[u8]) -> Outcome {
    let store = match WeightStore::from_bytes(input) {
        Ok(s) => s,
        Err(e) => return Outcome::Rejected(e.to_string()),
    };
    let bytes = match store.to_bytes() {
        Ok(b) => b,
        Err(e) => return Outcome::Mismatch(format!("a loaded store does not save: {e}")),
    };
    let back = match WeightStore::from_bytes(&bytes) {
        Ok(b) => b,
        Err(e) => return Outcome::Mismatch(format!("a saved store does not load: {e}")),
    };
    if let Some(why) = differ(store.iter(), back.iter()) {
        return Outcome::Mismatch(format!("safetensors round trip changed the store: {why}"));
    }
    Outcome::Ok
}

/// Where two tensor maps differ (keys, shapes, bits), if they do.
pub fn differ<'a>(
    a: impl Iterator<Item = (&'a str, &'a Tensor)>,
    b: impl Iterator<Item = (&'a str, &'a Tensor)>,
) -> Option<String> {
    let a: Vec<_> = a.collect();
    let b: Vec<_> = b.collect();
    if a.len() != b.len() {
        return Some(format!("{} tensors became {}", a.len(), b.len()));
    }
    for ((ka, ta), (kb, tb)) in a.iter().zip(&b) {
        if ka != kb {
            return Some(format!("key `{ka}` became `{kb}`"));
        }
        if ta.shape() != tb.shape() {
            return Some(format!("`{ka}`: shape {:?} became {:?}", ta.shape(), tb.shape()));
        }
        if ta.iter().zip(tb.iter()).any(|(x, y)| x.to_bits() != y.to_bits()) {
            return Some(format!("`{ka}`: values changed"));
        }
    }
    None
}

/// A safetensors file written by hand: `(name, dtype, shape, data)` entries
/// and optional metadata, laid out in order.
pub fn raw(entries: &[(&str, &str, &[usize], Vec<u8>)], metadata: Option<&str>) -> Vec<u8> {
    let mut header = String::from("{");
    if let Some(m) = metadata {
        header.push_str(&format!("\"__metadata__\":{m},"));
    }
    let mut offset = 0;
    let mut data = Vec::new();
    for (k, (name, dtype, shape, bytes)) in entries.iter().enumerate() {
        if k > 0 {
            header.push(',');
        }
        let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
        header.push_str(&format!(
            "\"{name}\":{{\"dtype\":\"{dtype}\",\"shape\":[{}],\"data_offsets\":[{offset},{}]}}",
            dims.join(","),
            offset + bytes.len()
        ));
        offset += bytes.len();
        data.extend_from_slice(bytes);
    }
    header.push('}');
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&data);
    out
}

/// Stores written by `WeightStore::to_bytes` and a few hand-made files
/// (F16, BF16, a scalar, an empty tensor, `num_batches_tracked`).
pub fn seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rng = Rng::new(0x5afe);
    let shapes: [&[usize]; 4] = [&[3], &[2, 3], &[2, 1, 2, 2], &[]];
    let mut store = WeightStore::new();
    for (k, s) in shapes.iter().enumerate() {
        store.insert(format!("up{k}.weight"), rng.tensor(s));
    }
    store.insert("bn.running_var", rng.tensor(&[0]));
    if let Ok(b) = store.to_bytes() {
        out.push(b);
    }
    let mut one = WeightStore::new();
    one.insert("w", rng.tensor(&[1, 1, 1, 1]));
    if let Ok(b) = one.to_bytes() {
        out.push(b);
    }
    let f16 = |v: &[u16]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    out.push(raw(
        &[
            ("a.bias", "F16", &[2], f16(&[0x3c00, 0xc000])),
            ("a.weight", "BF16", &[1, 2], f16(&[0x3f80, 0x7f80])),
            ("bn.num_batches_tracked", "I64", &[], 7i64.to_le_bytes().to_vec()),
        ],
        Some("{\"format\":\"pt\"}"),
    ));
    out.push(raw(&[("x", "F32", &[2, 0], Vec::new()), ("y", "F64", &[1], 1f64.to_le_bytes().to_vec())], None));
    out
}
