//! safetensors: `WeightStore::from_bytes`; if it loads, saving and loading
//! again must give the same keys, shapes and bit patterns (F16 and BF16 are
//! widened exactly, so they survive as F32). Then the store is the state dict
//! of a fixed small model ([`MODEL`]: BatchNorm2d then ConvTranspose2d): if
//! it resolves (the keys and shapes fit), the JIT is compared with the
//! interpreter on those weights, whatever their values (NaN, infinities,
//! subnormals, huge).

use kiln_passes::Pass;
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
    let g = match kiln_ir::parse_model(MODEL) {
        Ok(g) => g,
        Err(e) => return Outcome::Mismatch(format!("the fixed model does not parse: {e}")),
    };
    let h = crate::exec::hash(input);
    let plan = crate::exec::Plan::one(h, h >> 32);
    let mut g = g;
    if let Err(e) = kiln_passes::ShapeInference.run(&mut g) {
        return Outcome::Mismatch(format!("the fixed model does not infer: {e}"));
    }
    match kiln_passes::resolve(&mut g, kiln_passes::ParamSource::StateDict(store.into_tensors())) {
        // Loaded but not this model's state dict: still a successful load.
        Err(_) => Outcome::Ok,
        Ok(()) => {
            crate::note("safetensors: resolved the fixed model");
            crate::exec::compare_resolved(&g, &plan, true)
        }
    }
}

/// The model whose state dict the loaded store is tried as: keys
/// `bn.{weight,bias,running_mean,running_var}` (2) and `up.weight`
/// (2, 1, 2, 2), `up.bias` (1).
pub const MODEL: &str = r#"{"name": "st", "inputs": {"x": [1, 2, 3, 3]}, "nodes": [
  {"name": "bn", "op": "LazyBatchNorm2d", "args": {}, "inputs": null},
  {"name": "up", "op": "LazyConvTranspose2d", "args": {"out_channels": 1, "kernel_size": 2, "stride": 2}, "inputs": null}]}"#;

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
    // The fixed model's state dict, as F32 and with F16 weights.
    let mut sd = WeightStore::new();
    for (k, s) in [
        ("bn.weight", &[2][..]),
        ("bn.bias", &[2]),
        ("bn.running_mean", &[2]),
        ("up.weight", &[2, 1, 2, 2]),
        ("up.bias", &[1]),
    ] {
        sd.insert(k, rng.tensor(s));
    }
    sd.insert("bn.running_var", Tensor::from_elem(vec![2], 0.5));
    if let Ok(b) = sd.to_bytes() {
        out.push(b);
    }
    let ones = |n: usize| f16(&vec![0x3c00; n]);
    out.push(raw(
        &[
            ("bn.bias", "F16", &[2], ones(2)),
            ("bn.num_batches_tracked", "I64", &[], 0i64.to_le_bytes().to_vec()),
            ("bn.running_mean", "BF16", &[2], f16(&[0x3f80, 0xbf80])),
            ("bn.running_var", "F16", &[2], ones(2)),
            ("bn.weight", "F16", &[2], ones(2)),
            ("up.bias", "F16", &[1], f16(&[0x7bff])),
            ("up.weight", "F16", &[2, 1, 2, 2], f16(&[0x3c00, 0x0001, 0x7bff, 0xfbff, 0x3800, 0xb800, 0x4000, 0x0400])),
        ],
        Some("{\"format\":\"pt\"}"),
    ));
    out
}
