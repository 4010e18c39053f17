//! Malformed bytes are errors, never panics: every prefix of every fixture,
//! and a few thousand seeded random mutations of each.

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use common::{fixture_bytes, fixtures, FIXTURES};
use kiln_onnx::{Limits, OnnxModel};

/// xorshift64*: a deterministic, dependency-free mutation source.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Runs the reader, turning a panic into a test failure that names the input.
fn must_not_panic(what: &str, bytes: &[u8], dir: Option<&Path>) -> bool {
    // Small limits as well as the defaults, so the limit paths run on mutated input too.
    let small = Limits { max_tensor_bytes: 4096, max_struct_bytes: 1 << 16, ..Limits::default() };
    let r = catch_unwind(AssertUnwindSafe(|| {
        let ok = OnnxModel::from_bytes(bytes, dir).map(|m| {
            // Touch every accessor a converter would use.
            for t in m.initializers() {
                let _ = (t.to_f32_vec(), t.to_i64_vec(), t.to_f64_vec(), t.strings());
            }
            for n in m.nodes() {
                for a in n.attributes() {
                    let _ = (n.attr_int(&a.name), n.attr_ints(&a.name), n.attr_float(&a.name));
                    let _ = (n.attr_floats(&a.name), n.attr_string(&a.name), n.attr_strings(&a.name));
                    let _ = n.attr_tensor(&a.name).map(|t| t.map(|t| (t.to_f32_vec(), t.to_i64_vec())));
                }
            }
            let _ = (m.inputs(), m.outputs(), m.data_inputs().count(), m.opset(""));
        });
        let _ = OnnxModel::from_bytes_with(bytes, dir, &small);
        ok.is_ok()
    }));
    match r {
        Ok(ok) => ok,
        Err(_) => {
            panic!("{what}: the reader panicked on {} bytes: {:02x?}", bytes.len(), &bytes[..bytes.len().min(64)])
        }
    }
}

fn dir_of(name: &str) -> Option<std::path::PathBuf> {
    Path::new(name).parent().map(|p| fixtures().join(p))
}

#[test]
fn every_prefix_is_ok_or_an_error() {
    for name in FIXTURES {
        let bytes = fixture_bytes(name);
        let dir = dir_of(name);
        // All prefixes up to 512 bytes, then a stride (the fixtures are small,
        // so in practice this is every prefix).
        let mut cut = 0;
        let mut accepted = 0;
        while cut <= bytes.len() {
            accepted += usize::from(must_not_panic(&format!("{name}[..{cut}]"), &bytes[..cut], dir.as_deref()));
            cut += if cut < 512 { 1 } else { 1 + bytes.len() / 4096 };
        }
        assert!(must_not_panic(name, &bytes, dir.as_deref()), "{name}: the whole file must read");
        // Protobuf has no end marker, so a prefix cut at a field boundary is a
        // valid (smaller) message; but most prefixes are not.
        assert!(accepted < bytes.len() / 2, "{name}: {accepted} prefixes accepted");
    }
}

#[test]
fn random_mutations_never_panic() {
    let mut rng = XorShift(0x6f6e_6e78_2026);
    let mut accepted = 0;
    let mut total = 0;
    for name in FIXTURES {
        let original = fixture_bytes(name);
        let dir = dir_of(name);
        for _ in 0..1500 {
            let mut b = original.clone();
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(b.len());
                match rng.below(6) {
                    0 => b[i] ^= 1 << rng.below(8),
                    1 => b[i] = rng.next() as u8,
                    // Length prefixes and varints: the interesting bytes.
                    2 => b[i] = [0x00, 0x7f, 0x80, 0xff, 0x01][rng.below(5)],
                    3 => {
                        let n = rng.below(16).min(b.len() - i);
                        b.drain(i..i + n);
                    }
                    4 => {
                        let v = rng.next().to_le_bytes();
                        let at = i.min(b.len());
                        b.splice(at..at, v[..1 + rng.below(8)].iter().copied());
                    }
                    _ => {
                        let j = rng.below(b.len());
                        let (lo, hi) = (i.min(j), i.max(j));
                        let chunk: Vec<u8> = b[lo..hi.min(lo + 32)].to_vec();
                        b.splice(hi..hi, chunk);
                    }
                }
                if b.is_empty() {
                    break;
                }
            }
            total += 1;
            accepted += usize::from(must_not_panic(&format!("mutated {name}"), &b, dir.as_deref()));
        }
    }
    eprintln!("{accepted} of {total} mutations accepted");
    assert!(accepted < total, "no mutation was rejected");
}
