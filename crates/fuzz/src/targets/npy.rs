//! `.npy`: `kiln_runtime::npy::from_bytes`; if it reads, writing and reading
//! again must give the same shape and bit patterns, and a file Kiln wrote must
//! be reproduced byte for byte.

use kiln_runtime::{npy, RandomTensor, Rng};

use crate::Outcome;

/// Runs the target on one input.
pub fn run(input: &[u8]) -> Outcome {
    let t = match npy::from_bytes(input) {
        Ok(t) => t,
        Err(e) => return Outcome::Rejected(e.to_string()),
    };
    let bytes = npy::to_bytes(&t);
    let back = match npy::from_bytes(&bytes) {
        Ok(b) => b,
        Err(e) => return Outcome::Mismatch(format!("a written .npy does not read: {e}")),
    };
    if back.shape() != t.shape() || back.iter().zip(t.iter()).any(|(a, b)| a.to_bits() != b.to_bits()) {
        return Outcome::Mismatch(format!("npy round trip changed the tensor ({:?} -> {:?})", t.shape(), back.shape()));
    }
    if npy::to_bytes(&back) != bytes {
        return Outcome::Mismatch("writing a read-back .npy is not byte-stable".into());
    }
    Outcome::Ok
}

/// A version 2.0 `.npy` header around `data`, written by hand.
pub fn v2(dict: &str, data: &[u8]) -> Vec<u8> {
    let mut header = dict.to_string();
    while !(12 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x02\x00".to_vec();
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

/// Files written by `npy::to_bytes` (scalar, vector, 4-D, empty) and a
/// hand-made version 2.0 file.
pub fn seeds() -> Vec<Vec<u8>> {
    let mut rng = Rng::new(0x4e50);
    let shapes: [&[usize]; 5] = [&[], &[3], &[2, 3], &[1, 2, 1, 3], &[0, 4]];
    let mut out: Vec<Vec<u8>> = shapes.iter().map(|s| npy::to_bytes(&rng.tensor(s))).collect();
    let data: Vec<u8> = [1.0f32, -2.5].iter().flat_map(|x| x.to_le_bytes()).collect();
    out.push(v2("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", &data));
    out
}
