//! The mutator: byte-level, integer-level and JSON-aware mutations, stacked
//! one to four at a time, all driven by a seeded [`SplitMix64`].
//!
//! Byte level: bit flips, random bytes, insert / delete / duplicate a range,
//! truncation, splicing with another corpus entry. Integer level: overwrite
//! 1, 2, 4 or 8 bytes with an "interesting" integer (0, -1, 2^31, 2^63, ...)
//! in either byte order, which hits length prefixes such as safetensors'
//! header size. JSON level (also useful inside the JSON header of safetensors
//! and the dict of `.npy`): replace a number token with an extreme value,
//! insert a dictionary token, duplicate or drop a `"key": value` member, and
//! on inputs that parse as JSON, structural edits of the value tree (replace
//! a subtree by an extreme value or by a subtree of another corpus entry,
//! drop or duplicate object members and array items, add known argument names).

use serde_json::{Map, Value};

use crate::SplitMix64;

/// Inputs never grow beyond this many bytes.
pub const MAX_LEN: usize = 1 << 16;

/// Uniform in `0..n` (`n > 0`).
pub fn below(rng: &mut SplitMix64, n: usize) -> usize {
    (rng.next_u64() % n.max(1) as u64) as usize
}

fn chance(rng: &mut SplitMix64, one_in: u64) -> bool {
    rng.next_u64().is_multiple_of(one_in)
}

fn pick<'a, T>(rng: &mut SplitMix64, xs: &'a [T]) -> &'a T {
    &xs[below(rng, xs.len())]
}

/// Integers that tend to find bugs (boundaries of the usual widths).
pub const INTERESTING: &[i128] = &[
    0,
    1,
    -1,
    2,
    3,
    7,
    8,
    16,
    64,
    127,
    128,
    255,
    256,
    1023,
    4096,
    32767,
    32768,
    65535,
    65536,
    1 << 20,
    i32::MAX as i128,
    1 << 31,
    (1 << 32) - 1,
    1 << 32,
    1 << 40,
    i64::MAX as i128,
    1 << 63,
    u64::MAX as i128,
    -(1 << 31),
    i64::MIN as i128,
];

/// Number tokens to put in JSON text.
pub const EXTREME_NUMBERS: &[&str] = &[
    "0",
    "-0",
    "1",
    "-1",
    "2",
    "3",
    "4",
    "5",
    "8",
    "17",
    "100",
    "1000",
    "65536",
    "1048576",
    "2147483647",
    "2147483648",
    "-2147483649",
    "4294967296",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "340282366920938463463374607431768211456",
    "0.5",
    "1.5",
    "-0.0",
    "1e-45",
    "1e-320",
    "3.4028235e38",
    "3.5e38",
    "1e308",
    "-1e308",
    "1e400",
    "1e",
    "NaN",
    "Infinity",
];

/// Tokens inserted into JSON text.
const JSON_TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"",
    "null",
    "true",
    "false",
    "\"\"",
    "[]",
    "{}",
    "\\u0000",
    "\\ud800",
    "\"x\"",
    "\"op\"",
    "\"args\"",
    "\"inputs\"",
    "\"nodes\"",
    "\"outputs\"",
    "\"name\"",
    "\"shape\"",
    "\"dtype\"",
    "\"data_offsets\"",
    "\"F32\"",
    "\"F16\"",
    "\"BF16\"",
    "\"F64\"",
    "\"I64\"",
    "'<f4'",
    "'>f4'",
    "'<f8'",
    "True",
    "False",
    "()",
    "(1,)",
    "(0,)",
    "__metadata__",
    "\"__kiln",
];

/// Object keys the structural mutator adds (argument and field names of Kiln's formats).
const KEYS: &[&str] = &[
    "out_channels",
    "in_channels",
    "num_features",
    "kernel_size",
    "stride",
    "padding",
    "output_padding",
    "pads",
    "dilation",
    "groups",
    "bias",
    "padding_mode",
    "output_size",
    "eps",
    "momentum",
    "affine",
    "track_running_stats",
    "negative_slope",
    "alpha",
    "approximate",
    "min_val",
    "max_val",
    "beta",
    "threshold",
    "num_parameters",
    "init",
    "p",
    "inplace",
    "dim",
    "name",
    "op",
    "args",
    "inputs",
    "outputs",
    "nodes",
    "shape",
    "params",
    "dtype",
    "data_offsets",
    "__metadata__",
];

/// Op names the structural mutator tries besides the model format's own
/// ([`kiln_ir::model::SUPPORTED_OPS`], so a new op is fuzzed as soon as the
/// format accepts it): the graph-JSON-only markers.
const EXTRA_OPS: &[&str] = &["Input", "Output"];

/// A random op name: one the model format accepts, or an [`EXTRA_OPS`] marker.
fn op_name(rng: &mut SplitMix64) -> &'static str {
    let known = kiln_ir::model::SUPPORTED_OPS;
    let i = below(rng, known.len() + EXTRA_OPS.len());
    known.get(i).copied().unwrap_or_else(|| EXTRA_OPS[i - known.len()])
}

/// Applies one to four stacked mutations to `input` (drawing splice
/// partners from `pool`) and returns the result, at most [`MAX_LEN`] bytes.
pub fn mutate(rng: &mut SplitMix64, mut input: Vec<u8>, pool: &[Vec<u8>]) -> Vec<u8> {
    let rounds = if chance(rng, 2) { 1 } else { 1 + below(rng, 4) };
    for _ in 0..rounds {
        let op = below(rng, 16);
        match op {
            0 => bit_flip(rng, &mut input),
            1 => random_byte(rng, &mut input),
            2 => insert_bytes(rng, &mut input),
            3 => delete_range(rng, &mut input),
            4 => duplicate_range(rng, &mut input),
            5 => interesting_int(rng, &mut input),
            6 | 7 => replace_number(rng, &mut input),
            8 => insert_token(rng, &mut input),
            9 => duplicate_member(rng, &mut input),
            10 => drop_member(rng, &mut input),
            11 => truncate(rng, &mut input),
            12 => splice(rng, &mut input, pool),
            _ => {
                if !structural(rng, &mut input, pool) {
                    replace_number(rng, &mut input);
                }
            }
        }
    }
    input.truncate(MAX_LEN);
    input
}

fn bit_flip(rng: &mut SplitMix64, b: &mut [u8]) {
    if !b.is_empty() {
        let i = below(rng, b.len());
        b[i] ^= 1 << below(rng, 8);
    }
}

fn random_byte(rng: &mut SplitMix64, b: &mut [u8]) {
    if !b.is_empty() {
        let i = below(rng, b.len());
        b[i] = rng.next_u64() as u8;
    }
}

fn insert_bytes(rng: &mut SplitMix64, b: &mut Vec<u8>) {
    let at = below(rng, b.len() + 1);
    let n = 1 + below(rng, 8);
    let fill: Vec<u8> =
        if chance(rng, 2) { vec![rng.next_u64() as u8; n] } else { (0..n).map(|_| rng.next_u64() as u8).collect() };
    b.splice(at..at, fill);
}

fn range(rng: &mut SplitMix64, len: usize) -> (usize, usize) {
    let start = below(rng, len + 1);
    let max = (len - start).min(if chance(rng, 4) { 4096 } else { 32 });
    (start, start + below(rng, max + 1))
}

fn delete_range(rng: &mut SplitMix64, b: &mut Vec<u8>) {
    let (s, e) = range(rng, b.len());
    b.drain(s..e);
}

fn duplicate_range(rng: &mut SplitMix64, b: &mut Vec<u8>) {
    let (s, e) = range(rng, b.len());
    let copy = b[s..e].to_vec();
    let at = below(rng, b.len() + 1);
    b.splice(at..at, copy);
}

fn truncate(rng: &mut SplitMix64, b: &mut Vec<u8>) {
    let n = below(rng, b.len() + 1);
    b.truncate(n);
}

fn interesting_int(rng: &mut SplitMix64, b: &mut [u8]) {
    let v = *pick(rng, INTERESTING);
    let width = *pick(rng, &[1usize, 2, 4, 8]);
    if b.len() < width {
        return;
    }
    // Length prefixes live at the start: favour offset 0.
    let at = if chance(rng, 3) { 0 } else { below(rng, b.len() - width + 1) };
    let le = (v as u128).to_le_bytes();
    let bytes: Vec<u8> =
        if chance(rng, 2) { le[..width].to_vec() } else { le[..width].iter().rev().copied().collect() };
    b[at..at + width].copy_from_slice(&bytes);
}

/// Byte ranges of the number-like tokens of `b` (digits, sign, dot, exponent).
fn number_tokens(b: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() || (b[i] == b'-' && b.get(i + 1).is_some_and(u8::is_ascii_digit)) {
            let s = i;
            i += 1;
            while i < b.len() && (b[i].is_ascii_digit() || matches!(b[i], b'.' | b'e' | b'E' | b'+' | b'-')) {
                i += 1;
            }
            out.push((s, i));
        } else {
            i += 1;
        }
    }
    out
}

fn replace_number(rng: &mut SplitMix64, b: &mut Vec<u8>) {
    let toks = number_tokens(b);
    if toks.is_empty() {
        return insert_token(rng, b);
    }
    let (s, e) = *pick(rng, &toks);
    let new = if chance(rng, 4) {
        // Nearby value: off by one, doubled or halved.
        let old: i128 = std::str::from_utf8(&b[s..e]).ok().and_then(|t| t.parse().ok()).unwrap_or(1);
        let v = match below(rng, 4) {
            0 => old.saturating_add(1),
            1 => old.saturating_sub(1),
            2 => old.saturating_mul(2),
            _ => old / 2,
        };
        v.to_string()
    } else {
        pick(rng, EXTREME_NUMBERS).to_string()
    };
    b.splice(s..e, new.into_bytes());
}

fn insert_token(rng: &mut SplitMix64, b: &mut Vec<u8>) {
    let at = below(rng, b.len() + 1);
    let tok = pick(rng, JSON_TOKENS).as_bytes().to_vec();
    b.splice(at..at, tok);
}

/// Byte ranges of `"key": value` members, approximated textually: from a
/// quote that follows `{` or `,` (skipping whitespace) to the next `,` or `}`
/// at the same nesting depth.
fn members(b: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    for i in 0..b.len() {
        if b[i] != b'"' {
            continue;
        }
        let mut j = i;
        while j > 0 && b[j - 1].is_ascii_whitespace() {
            j -= 1;
        }
        if j == 0 || !matches!(b[j - 1], b'{' | b',') {
            continue;
        }
        let mut depth = 0i32;
        let mut in_str = false;
        let mut k = i;
        while k < b.len() {
            let c = b[k];
            if in_str {
                if c == b'\\' {
                    k += 1;
                } else if c == b'"' {
                    in_str = false;
                }
            } else {
                match c {
                    b'"' => in_str = true,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' if depth == 0 => break,
                    b'}' | b']' => depth -= 1,
                    b',' if depth == 0 => break,
                    _ => {}
                }
            }
            k += 1;
        }
        out.push((i, k.min(b.len())));
        if out.len() >= 4096 {
            break;
        }
    }
    out
}

fn duplicate_member(rng: &mut SplitMix64, b: &mut Vec<u8>) {
    let ms = members(b);
    if ms.is_empty() {
        return duplicate_range(rng, b);
    }
    let (s, e) = *pick(rng, &ms);
    let mut copy = b[s..e].to_vec();
    copy.push(b',');
    b.splice(s..s, copy);
}

fn drop_member(rng: &mut SplitMix64, b: &mut Vec<u8>) {
    let ms = members(b);
    if ms.is_empty() {
        return delete_range(rng, b);
    }
    let (s, mut e) = *pick(rng, &ms);
    if b.get(e) == Some(&b',') {
        e += 1;
    }
    b.drain(s..e);
}

fn splice(rng: &mut SplitMix64, b: &mut Vec<u8>, pool: &[Vec<u8>]) {
    if pool.is_empty() {
        return;
    }
    let other = pick(rng, pool);
    let cut = below(rng, b.len() + 1);
    let from = below(rng, other.len() + 1);
    b.truncate(cut);
    b.extend_from_slice(&other[from..]);
}

/// A random extreme JSON value.
pub fn extreme_value(rng: &mut SplitMix64) -> Value {
    match below(rng, 12) {
        0 => Value::Null,
        1 => Value::Bool(chance(rng, 2)),
        2 => Value::String(String::new()),
        3 => Value::String(op_name(rng).to_string()),
        4 => Value::Array(Vec::new()),
        5 => Value::Object(Map::new()),
        6 => Value::from(-1),
        7 => Value::from(0),
        8 => Value::from(u64::MAX),
        9 => Value::from(1u64 << (below(rng, 63) + 1)),
        10 => serde_json::json!([0, 1]),
        _ => Value::from(1 + below(rng, 40) as u64),
    }
}

/// An interesting integer as a JSON number (clamped to what JSON numbers hold).
fn interesting_value(v: i128) -> Value {
    if v >= 0 {
        Value::from(v.min(u64::MAX as i128) as u64)
    } else {
        Value::from(v.max(i64::MIN as i128) as i64)
    }
}

/// Every subtree path of `v` (object keys / array indices), at most 4096.
fn paths(v: &Value, prefix: &mut Vec<PathStep>, out: &mut Vec<Vec<PathStep>>) {
    if out.len() >= 4096 {
        return;
    }
    out.push(prefix.clone());
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                prefix.push(PathStep::Key(k.clone()));
                paths(c, prefix, out);
                prefix.pop();
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                prefix.push(PathStep::Index(i));
                paths(c, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

#[derive(Clone, Debug)]
enum PathStep {
    Key(String),
    Index(usize),
}

fn at_mut<'a>(v: &'a mut Value, path: &[PathStep]) -> Option<&'a mut Value> {
    let mut cur = v;
    for step in path {
        cur = match (step, cur) {
            (PathStep::Key(k), Value::Object(m)) => m.get_mut(k)?,
            (PathStep::Index(i), Value::Array(a)) => a.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(cur)
}

fn random_subtree(rng: &mut SplitMix64, v: &Value) -> Value {
    let mut ps = Vec::new();
    paths(v, &mut Vec::new(), &mut ps);
    let p = pick(rng, &ps).clone();
    let mut copy = v.clone();
    at_mut(&mut copy, &p).cloned().unwrap_or(Value::Null)
}

/// A structural edit of the JSON value tree; `false` if `b` is not JSON.
fn structural(rng: &mut SplitMix64, b: &mut Vec<u8>, pool: &[Vec<u8>]) -> bool {
    // Only JSON inputs (not the binary formats) are parsed as a whole.
    let Ok(mut v) = serde_json::from_slice::<Value>(b) else { return false };
    let mut ps = Vec::new();
    paths(&v, &mut Vec::new(), &mut ps);
    let p = pick(rng, &ps).clone();
    let donor = if !pool.is_empty() && chance(rng, 3) {
        serde_json::from_slice::<Value>(pick(rng, pool).as_slice()).ok().map(|d| random_subtree(rng, &d))
    } else {
        None
    };
    let own = random_subtree(rng, &v);
    let Some(target) = at_mut(&mut v, &p) else { return false };
    match below(rng, 7) {
        0 => *target = extreme_value(rng),
        1 => *target = donor.unwrap_or(own),
        2 => match target {
            Value::Object(m) if !m.is_empty() => {
                let k = m.keys().nth(below(rng, m.len())).cloned().unwrap_or_default();
                m.remove(&k);
            }
            Value::Array(a) if !a.is_empty() => {
                let i = below(rng, a.len());
                a.remove(i);
            }
            _ => *target = extreme_value(rng),
        },
        3 => match target {
            Value::Array(a) if !a.is_empty() => {
                let i = below(rng, a.len());
                let item = a[i].clone();
                a.insert(below(rng, a.len() + 1), item);
            }
            Value::Object(m) => {
                m.insert(pick(rng, KEYS).to_string(), extreme_value(rng));
            }
            _ => *target = own,
        },
        4 => match target {
            Value::Object(m) => {
                m.insert(pick(rng, KEYS).to_string(), own);
            }
            Value::Array(a) => a.push(own),
            _ => *target = extreme_value(rng),
        },
        5 => match target {
            Value::Number(_) => *target = interesting_value(*pick(rng, INTERESTING)),
            Value::String(_) => *target = Value::String(op_name(rng).to_string()),
            _ => *target = extreme_value(rng),
        },
        _ => match target {
            Value::Number(n) => {
                let x = n.as_i64().unwrap_or(1);
                *target = Value::from(
                    x.saturating_mul(if chance(rng, 2) { 2 } else { -1 }).saturating_add(below(rng, 3) as i64 - 1),
                );
            }
            _ => *target = extreme_value(rng),
        },
    }
    *b = if chance(rng, 2) { serde_json::to_vec(&v) } else { serde_json::to_vec_pretty(&v) }.unwrap_or_default();
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutation_is_deterministic_and_bounded() {
        let seed = br#"{"a": [1, 2, {"b": -3.5e2}], "c": "d"}"#.to_vec();
        let pool = vec![seed.clone()];
        for s in 0..500 {
            let a = mutate(&mut SplitMix64::new(s), seed.clone(), &pool);
            let b = mutate(&mut SplitMix64::new(s), seed.clone(), &pool);
            assert_eq!(a, b);
            assert!(a.len() <= MAX_LEN);
        }
    }

    #[test]
    fn members_of_a_trailing_escape_stay_in_bounds() {
        // A backslash as the last byte once pushed the end past the input.
        let t = br#"{"a":"\"#;
        for (s, e) in members(t) {
            assert!(s <= e && e <= t.len());
        }
        let mut b = t.to_vec();
        duplicate_member(&mut SplitMix64::new(1), &mut b);
    }

    #[test]
    fn finds_numbers_and_members() {
        let t = br#"{"x": [1, -2], "y": 3e5}"#;
        let nums: Vec<&[u8]> = number_tokens(t).iter().map(|&(s, e)| &t[s..e]).collect();
        assert_eq!(nums, vec![&b"1"[..], b"-2", b"3e5"]);
        let ms: Vec<&[u8]> = members(t).iter().map(|&(s, e)| &t[s..e]).collect();
        assert_eq!(ms, vec![&br#""x": [1, -2]"#[..], br#""y": 3e5"#]);
    }
}
