//! Shape arithmetic of the ops that only reinterpret a contiguous tensor:
//! `nn.Flatten`, `nn.Unflatten` and `torch.reshape`/`view`. The passes, the
//! interpreter and the JIT all call these, so the three agree on which
//! shapes are valid; errors are PyTorch's, naming the values.

/// `dim` (possibly negative) as an index into a rank-`rank` shape.
pub fn wrap_dim(dim: i64, rank: usize) -> Result<usize, String> {
    let r = rank.max(1) as i64;
    let d = if dim < 0 { dim + r } else { dim };
    if (0..r).contains(&d) {
        Ok(d as usize)
    } else {
        Err(format!("dimension out of range (expected to be in range of [{}, {}], but got {dim})", -r, r - 1))
    }
}

/// `torch.flatten(x, start_dim, end_dim)`.
pub fn flatten(input: &[usize], start_dim: i64, end_dim: i64) -> Result<Vec<usize>, String> {
    if input.is_empty() {
        return Ok(vec![1]);
    }
    let (s, e) = (wrap_dim(start_dim, input.len())?, wrap_dim(end_dim, input.len())?);
    if s > e {
        return Err(format!(
            "start_dim={start_dim} cannot come after end_dim={end_dim} for a rank-{} input",
            input.len()
        ));
    }
    let merged =
        input[s..=e].iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or("the flattened size overflows")?;
    Ok(input[..s].iter().copied().chain([merged]).chain(input[e + 1..].iter().copied()).collect())
}

/// Resolves one `-1` in `sizes` so that their product is `total`.
fn infer(sizes: &[i64], total: usize, what: &dyn Fn() -> String) -> Result<Vec<usize>, String> {
    let mut unknown = None;
    let mut known = 1usize;
    for (i, &s) in sizes.iter().enumerate() {
        match s {
            -1 if unknown.is_none() => unknown = Some(i),
            -1 => return Err("only one dimension can be inferred (-1)".into()),
            s if s >= 1 => {
                known = known.checked_mul(s as usize).ok_or_else(|| format!("{} overflows", what()))?;
            }
            s => return Err(format!("invalid size {s} in {}: sizes must be positive or -1", what())),
        }
    }
    let mut out: Vec<usize> = sizes.iter().map(|&s| s.max(0) as usize).collect();
    match unknown {
        Some(i) if known > 0 && total.is_multiple_of(known) => out[i] = total / known,
        None if known == total => {}
        _ => return Err(format!("{} is invalid for input of size {total}", what())),
    }
    Ok(out)
}

/// `nn.Unflatten(dim, unflattened_size)`: dim `dim` becomes `sizes`.
pub fn unflatten(input: &[usize], dim: i64, sizes: &[i64]) -> Result<Vec<usize>, String> {
    let d = wrap_dim(dim, input.len())?;
    if sizes.is_empty() {
        return Err("unflattened_size must be non-empty".into());
    }
    let what = || format!("unflattened_size {sizes:?} for dim {dim} of size {}", input[d]);
    let middle = infer(sizes, input[d], &what)?;
    Ok(input[..d].iter().copied().chain(middle).chain(input[d + 1..].iter().copied()).collect())
}

/// `torch.reshape(x, shape)`: one `-1` is inferred.
pub fn reshape(input: &[usize], shape: &[i64]) -> Result<Vec<usize>, String> {
    let total = input.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or("the input size overflows")?;
    let what = || format!("shape {shape:?}");
    infer(shape, total, &what)
}

/// `torch.cat(xs, dim)`: equal ranks, equal sizes except along `dim`.
pub fn cat(shapes: &[&[usize]], dim: i64) -> Result<Vec<usize>, String> {
    let first = shapes.first().ok_or("needs at least one tensor")?;
    let d = wrap_dim(dim, first.len())?;
    let mut out = first.to_vec();
    out[d] = 0;
    for (i, s) in shapes.iter().enumerate() {
        if s.len() != first.len() {
            return Err(format!("tensors must have the same rank, got {first:?} and {s:?} (tensor {i})"));
        }
        if let Some(k) = (0..s.len()).find(|&k| k != d && s[k] != first[k]) {
            return Err(format!(
                "sizes of tensors must match except in dimension {d}: expected size {} but got size {} for tensor {i} in the list",
                first[k], s[k]
            ));
        }
        out[d] = out[d].checked_add(s[d]).ok_or("the concatenated size overflows")?;
    }
    Ok(out)
}

/// `torch.narrow(x, dim, start, length)`.
pub fn narrow(input: &[usize], dim: i64, start: usize, length: usize) -> Result<Vec<usize>, String> {
    let d = wrap_dim(dim, input.len())?;
    if input.is_empty() || length == 0 || start.checked_add(length).is_none_or(|e| e > input[d]) {
        return Err(format!(
            "start ({start}) + length ({length}) exceeds dimension size ({})",
            input.get(d).copied().unwrap_or(0)
        ));
    }
    let mut out = input.to_vec();
    out[d] = length;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pytorch_rules() {
        assert_eq!(flatten(&[2, 3, 4, 5], 1, -1).unwrap(), [2, 60]);
        assert_eq!(flatten(&[2, 3, 4, 5], 0, 1).unwrap(), [6, 4, 5]);
        assert!(flatten(&[2, 3], 1, 0).is_err());
        assert!(flatten(&[2, 3], 2, -1).is_err());
        assert_eq!(unflatten(&[2, 512], 1, &[32, 4, 4]).unwrap(), [2, 32, 4, 4]);
        assert_eq!(unflatten(&[2, 512], -1, &[-1, 4, 4]).unwrap(), [2, 32, 4, 4]);
        assert!(unflatten(&[2, 10], 1, &[3, -1]).is_err());
        assert_eq!(reshape(&[2, 512], &[-1, 32, 4, 4]).unwrap(), [2, 32, 4, 4]);
        assert!(reshape(&[2, 6], &[-1, -1]).is_err());
        assert!(reshape(&[2, 6], &[5, 2]).is_err());
        assert!(reshape(&[2, 6], &[0, 12]).is_err());
        assert_eq!(cat(&[&[2, 3], &[4, 3]], 0).unwrap(), [6, 3]);
        assert_eq!(cat(&[&[2, 3, 4], &[2, 3, 1]], -1).unwrap(), [2, 3, 5]);
        assert!(cat(&[&[2, 3], &[2, 4]], 0).is_err());
        assert_eq!(narrow(&[1, 3, 10, 10], 2, 2, 5).unwrap(), [1, 3, 5, 10]);
        assert!(narrow(&[1, 3, 10, 10], 2, 6, 5).is_err());
    }
}
