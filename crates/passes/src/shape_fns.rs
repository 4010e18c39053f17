//! Pure shape functions, one per op: input shapes and hyper-parameters in,
//! output shape (or a precise error) out. Arithmetic is done in `i128`, where
//! no combination of `usize` inputs can overflow, and the results are then
//! range-checked, so no input can panic or wrap.

use kiln_ir::{Conv2dParams, ConvTranspose2dParams, Pair2};

use crate::error::{PassError, Result};

/// What shape inference learns about a transposed convolution.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConvTransposeShape {
    /// The input channel count (channel dim of a 3-D or 4-D input).
    pub in_channels: usize,
    /// The output padding actually applied (from `output_size` if given).
    pub output_padding: Pair2,
    /// The output shape (same rank as the input).
    pub output: Vec<usize>,
}

/// Splits a 3-D `[C, H, W]` or 4-D `[N, C, H, W]` shape into
/// `(leading batch dims, C, [H, W])`.
pub(crate) fn split_image<'a>(
    node: &str,
    op: &'static str,
    input: &'a [usize],
) -> Result<(&'a [usize], usize, [usize; 2])> {
    match input.len() {
        3 | 4 => {
            let r = input.len();
            Ok((&input[..r - 3], input[r - 3], [input[r - 2], input[r - 1]]))
        }
        _ => Err(PassError::Rank {
            node: node.into(),
            op,
            expected: "a 3-D (unbatched [C, H, W]) or 4-D (batched [N, C, H, W])",
            shape: input.to_vec(),
        }),
    }
}

fn to_dim(node: &str, v: i128) -> Result<usize> {
    usize::try_from(v).map_err(|_| PassError::Overflow {
        node: node.into(),
        what: "output size",
        detail: format!("{v} does not fit in usize"),
    })
}

/// Checks that the shape's element count fits in memory addressing
/// (`isize::MAX` bytes of f32), so later allocations cannot overflow.
pub fn check_element_count(node: &str, shape: &[usize]) -> Result<()> {
    let limit = (isize::MAX as usize) / std::mem::size_of::<f32>();
    let count = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    match count {
        Some(n) if n <= limit => Ok(()),
        _ => Err(PassError::Overflow {
            node: node.into(),
            what: "tensor size",
            detail: format!("shape {shape:?} has more elements than can be addressed"),
        }),
    }
}

/// PyTorch's transposed-convolution output size for one spatial dim:
/// `(in - 1)*s - 2p + d(k - 1) + op + 1`.
pub fn conv_transpose_size(input: usize, k: usize, s: usize, p: usize, d: usize, op: usize) -> i128 {
    let (i, k, s, p, d, op) = (input as i128, k as i128, s as i128, p as i128, d as i128, op as i128);
    (i - 1) * s - 2 * p + d * (k - 1) + op + 1
}

/// Transposed-convolution output size for one spatial dim with per-side
/// padding: `s·(in − 1) + d·(k − 1) + 1 − begin − end + op` (ONNX's formula;
/// PyTorch's is the case `begin = end = p`). `None` if an intermediate
/// overflows `i128` (only absurd hyper-parameters do).
#[allow(clippy::too_many_arguments)]
pub fn conv_transpose_size_per_side(
    input: usize,
    k: usize,
    s: usize,
    begin: usize,
    end: usize,
    d: usize,
    op: usize,
) -> Option<i128> {
    let [i, k, s, b, e, d, op] = [input, k, s, begin, end, d, op].map(|v| v as i128);
    (i - 1)
        .checked_mul(s)?
        .checked_add(d.checked_mul(k - 1)?)?
        .checked_add(1)?
        .checked_sub(b)?
        .checked_sub(e)?
        .checked_add(op)
}

/// Output shape of `(Lazy)ConvTranspose2d` over `input`, following PyTorch's
/// checks in PyTorch's order. `in_channels` is `Some` for a concrete op, whose
/// channel count must match the input.
pub fn conv_transpose2d(
    node: &str,
    op: &'static str,
    input: &[usize],
    in_channels: Option<usize>,
    p: &ConvTranspose2dParams,
) -> Result<ConvTransposeShape> {
    let (batch, channels, hw) = split_image(node, op, input)?;
    check_in_channels(node, op, input, channels, in_channels, p.groups)?;
    let (k, s, d) = (p.kernel_size.to_array(), p.stride.to_array(), p.dilation.to_array());
    let (begin, end) = (p.padding.begin().to_array(), p.padding.end().to_array());
    let overflow = |what: String| PassError::Overflow { node: node.into(), what: "output size", detail: what };
    let size = |i: usize, op: usize| {
        conv_transpose_size_per_side(hw[i], k[i], s[i], begin[i], end[i], d[i], op).ok_or_else(|| {
            overflow(format!(
                "input {} kernel_size {} stride {} {} dilation {} output_padding {op}",
                hw[i],
                k[i],
                s[i],
                p.padding.attr(),
                d[i]
            ))
        })
    };
    let output_padding = match &p.output_size {
        None => p.output_padding,
        Some(size_arg) => {
            // Validation allows output_size with symmetric padding only, so
            // `begin = end = padding` here, as PyTorch computes it.
            let rank = input.len();
            let requested: [usize; 2] = match size_arg.len() {
                2 => [size_arg[0], size_arg[1]],
                n if n == rank => [size_arg[n - 2], size_arg[n - 1]],
                _ => return Err(PassError::OutputSizeLength { node: node.into(), rank, got: size_arg.clone() }),
            };
            let min = [size(0, 0)?, size(1, 0)?];
            let max: [i128; 2] = std::array::from_fn(|i| min[i].saturating_add(s[i] as i128 - 1));
            let fits = (0..2).all(|i| (min[i]..=max[i]).contains(&(requested[i] as i128)));
            if !fits {
                return Err(PassError::OutputSizeOutOfRange {
                    node: node.into(),
                    requested,
                    min,
                    max,
                    input: hw,
                    stride: s,
                });
            }
            Pair2 { h: to_dim(node, requested[0] as i128 - min[0])?, w: to_dim(node, requested[1] as i128 - min[1])? }
        }
    };
    let opad = output_padding.to_array();
    let out = [size(0, opad[0])?, size(1, opad[1])?];
    if out.iter().any(|&o| o < 1) {
        return Err(PassError::OutputTooSmall {
            node: node.into(),
            op,
            input: hw,
            computed: out,
            args: format!(
                "kernel_size={} stride={} {} dilation={} output_padding={}",
                p.kernel_size,
                p.stride,
                p.padding.attr(),
                p.dilation,
                output_padding
            ),
        });
    }
    let mut output = batch.to_vec();
    output.extend([p.out_channels, to_dim(node, out[0])?, to_dim(node, out[1])?]);
    check_element_count(node, &output)?;
    Ok(ConvTransposeShape { in_channels: channels, output_padding, output })
}

/// Output shape of `(Lazy)Conv2d`: `floor((in + begin + end - d(k-1) - 1)/s) + 1`
/// (`begin = end = p` for PyTorch's symmetric padding).
/// Returns `(in_channels, output shape)`.
pub fn conv2d(
    node: &str,
    op: &'static str,
    input: &[usize],
    in_channels: Option<usize>,
    p: &Conv2dParams,
) -> Result<(usize, Vec<usize>)> {
    let (batch, channels, hw) = split_image(node, op, input)?;
    check_in_channels(node, op, input, channels, in_channels, p.groups)?;
    let (k, s, d) = (p.kernel_size.to_array(), p.stride.to_array(), p.dilation.to_array());
    let (begin, end) = (p.padding.begin().to_array(), p.padding.end().to_array());
    // `in + begin + end − d·(k − 1) − 1`, checked: the operands are arbitrary usizes.
    let span_of = |i: usize| {
        let [x, b, e, d, k] = [hw[i], begin[i], end[i], d[i], k[i]].map(|v| v as i128);
        x.checked_add(b)?.checked_add(e)?.checked_sub(d.checked_mul(k - 1)?)?.checked_sub(1)
    };
    let span = [span_of(0), span_of(1)];
    let [Some(h), Some(w)] = span else {
        return Err(PassError::Overflow {
            node: node.into(),
            what: "output size",
            detail: format!("input {hw:?} kernel_size={} {} dilation={}", p.kernel_size, p.padding.attr(), p.dilation),
        });
    };
    let span = [h, w];
    if span.iter().any(|&x| x < 0) {
        return Err(PassError::OutputTooSmall {
            node: node.into(),
            op,
            input: hw,
            computed: std::array::from_fn(|i| span[i].div_euclid(s[i] as i128) + 1),
            args: format!(
                "kernel_size={} stride={} {} dilation={} (the dilated kernel is larger than the padded input)",
                p.kernel_size,
                p.stride,
                p.padding.attr(),
                p.dilation
            ),
        });
    }
    let out: [i128; 2] = std::array::from_fn(|i| span[i] / s[i] as i128 + 1);
    let mut output = batch.to_vec();
    output.extend([p.out_channels, to_dim(node, out[0])?, to_dim(node, out[1])?]);
    check_element_count(node, &output)?;
    Ok((channels, output))
}

/// `BatchNorm2d` needs a 4-D input (as PyTorch's `_check_input_dim`); returns the channel count.
pub fn batch_norm2d(node: &str, op: &'static str, input: &[usize], num_features: Option<usize>) -> Result<usize> {
    if input.len() != 4 {
        return Err(PassError::Rank { node: node.into(), op, expected: "a 4-D [N, C, H, W]", shape: input.to_vec() });
    }
    let c = input[1];
    if let Some(expected) = num_features {
        if expected != c {
            return Err(PassError::ChannelMismatch {
                node: node.into(),
                op,
                param: "num_features",
                expected,
                got: c,
                shape: input.to_vec(),
            });
        }
    }
    Ok(c)
}

/// `Linear`: any rank ≥ 1; the last dim is `in_features` (learned by the
/// lazy form). Returns `(in_features, output shape)`.
pub fn linear(
    node: &str,
    op: &'static str,
    input: &[usize],
    in_features: Option<usize>,
    out_features: usize,
) -> Result<(usize, Vec<usize>)> {
    let Some(&last) = input.last() else {
        return Err(PassError::Rank {
            node: node.into(),
            op,
            expected: "an at least 1-D [*, in_features]",
            shape: input.to_vec(),
        });
    };
    if let Some(expected) = in_features {
        if expected != last {
            // PyTorch: "mat1 and mat2 shapes cannot be multiplied (2x5 and 4x3)".
            return Err(PassError::ChannelMismatch {
                node: node.into(),
                op,
                param: "in_features",
                expected,
                got: last,
                shape: input.to_vec(),
            });
        }
    }
    let mut out = input.to_vec();
    *out.last_mut().unwrap_or(&mut 0) = out_features;
    Ok((last, out))
}

/// `InstanceNorm2d`: `[N, C, H, W]` or `[C, H, W]`; returns `C`. As in
/// PyTorch, `num_features` must match only when it sizes parameters
/// (`affine` or running statistics); otherwise PyTorch merely warns.
pub fn instance_norm2d(
    node: &str,
    op: &'static str,
    input: &[usize],
    num_features: Option<usize>,
    sized_params: bool,
) -> Result<usize> {
    if input.len() != 3 && input.len() != 4 {
        return Err(PassError::Rank {
            node: node.into(),
            op,
            expected: "a 3-D [C, H, W] or 4-D [N, C, H, W]",
            shape: input.to_vec(),
        });
    }
    let c = input[input.len() - 3];
    match num_features {
        Some(expected) if sized_params && expected != c => Err(PassError::ChannelMismatch {
            node: node.into(),
            op,
            param: "num_features",
            expected,
            got: c,
            shape: input.to_vec(),
        }),
        Some(_) | None => Ok(c),
    }
}

/// `GroupNorm`: `[N, C, *]` with `C = num_channels`.
pub fn group_norm(node: &str, op: &'static str, input: &[usize], num_channels: usize) -> Result<()> {
    if input.len() < 2 {
        return Err(PassError::Rank {
            node: node.into(),
            op,
            expected: "an at least 2-D [N, C, *]",
            shape: input.to_vec(),
        });
    }
    if input[1] != num_channels {
        return Err(PassError::ChannelMismatch {
            node: node.into(),
            op,
            param: "num_channels",
            expected: num_channels,
            got: input[1],
            shape: input.to_vec(),
        });
    }
    Ok(())
}

/// `BatchNorm1d`: `[N, C]` or `[N, C, L]`; returns `C`.
pub fn batch_norm1d(node: &str, op: &'static str, input: &[usize], num_features: Option<usize>) -> Result<usize> {
    if input.len() != 2 && input.len() != 3 {
        return Err(PassError::Rank {
            node: node.into(),
            op,
            expected: "a 2-D [N, C] or 3-D [N, C, L]",
            shape: input.to_vec(),
        });
    }
    let c = input[1];
    if let Some(expected) = num_features {
        if expected != c {
            return Err(PassError::ChannelMismatch {
                node: node.into(),
                op,
                param: "num_features",
                expected,
                got: c,
                shape: input.to_vec(),
            });
        }
    }
    Ok(c)
}

/// `Flatten`, `Unflatten`, `Reshape`: `kiln_ir::reshape`'s rules.
pub fn reshaped(
    node: &str,
    op: &'static str,
    r: std::result::Result<Vec<usize>, String>,
    input: &[usize],
) -> Result<Vec<usize>> {
    r.map_err(|m| PassError::ShapeMismatch { node: node.into(), op, message: format!("{m} (input shape {input:?})") })
}

/// `PReLU`: a single weight applies to any input of rank ≥ 1; `C` weights
/// need `C` channels in dim 1 (dim 0 counts as one channel for a 1-D input,
/// as `torch.prelu` has it).
pub fn prelu(node: &str, op: &'static str, input: &[usize], num_parameters: usize) -> Result<()> {
    if input.is_empty() {
        return Err(PassError::Rank { node: node.into(), op, expected: "at least 1-D", shape: input.to_vec() });
    }
    let channels = if input.len() >= 2 { input[1] } else { 1 };
    if num_parameters != 1 && num_parameters != channels {
        return Err(PassError::ChannelMismatch {
            node: node.into(),
            op,
            param: "num_parameters",
            expected: num_parameters,
            got: channels,
            shape: input.to_vec(),
        });
    }
    Ok(())
}

/// `Add` (PyTorch broadcasting; see [`broadcast`]).
pub fn add(node: &str, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    broadcast(node, "Add", a, b)
}

/// PyTorch's broadcasting of two shapes: aligned from the last dim, each
/// pair equal or one of them 1.
pub fn broadcast(node: &str, op: &'static str, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let r = a.len().max(b.len());
    let at = |s: &[usize], i: usize| if i + s.len() >= r { s[i + s.len() - r] } else { 1 };
    (0..r)
        .map(|i| match (at(a, i), at(b, i)) {
            (x, y) if x == y => Ok(x),
            (1, y) => Ok(y),
            (x, 1) => Ok(x),
            (x, y) => Err(PassError::ShapeMismatch {
                node: node.into(),
                op,
                // PyTorch: "The size of tensor a (4) must match the size of tensor b (3) at non-singleton dimension 1".
                message: format!(
                    "cannot broadcast {a:?} with {b:?}: size {x} and size {y} at dim {i} must match or one be 1"
                ),
            }),
        })
        .collect()
}

/// `Concat` (`torch.cat(dim=1)`) of 4-D tensors: channels add up, other dims agree.
pub fn concat(node: &str, inputs: &[&[usize]]) -> Result<Vec<usize>> {
    let first = inputs.first().ok_or_else(|| PassError::ShapeMismatch {
        node: node.into(),
        op: "Concat",
        message: "needs at least one operand".into(),
    })?;
    let mut out = first.to_vec();
    let mut channels = 0usize;
    for (i, s) in inputs.iter().enumerate() {
        if s.len() != 4 {
            return Err(PassError::Rank {
                node: node.into(),
                op: "Concat",
                expected: "4-D [N, C, H, W]",
                shape: s.to_vec(),
            });
        }
        if s[0] != first[0] || s[2..] != first[2..] {
            return Err(PassError::ShapeMismatch {
                node: node.into(),
                op: "Concat",
                message: format!(
                    "operand {i} has shape {s:?} but operand 0 has {first:?}: all dims except channels (dim 1) must agree"
                ),
            });
        }
        channels = channels.checked_add(s[1]).ok_or_else(|| PassError::Overflow {
            node: node.into(),
            what: "channel count",
            detail: format!("sum of channels of {inputs:?}"),
        })?;
    }
    out[1] = channels;
    check_element_count(node, &out)?;
    Ok(out)
}

fn check_in_channels(
    node: &str,
    op: &'static str,
    input: &[usize],
    channels: usize,
    declared: Option<usize>,
    groups: usize,
) -> Result<()> {
    if let Some(expected) = declared {
        if expected != channels {
            return Err(PassError::ChannelMismatch {
                node: node.into(),
                op,
                param: "in_channels",
                expected,
                got: channels,
                shape: input.to_vec(),
            });
        }
    }
    if groups == 0 || !channels.is_multiple_of(groups) {
        return Err(PassError::InChannelsNotDivisible {
            node: node.into(),
            op,
            in_channels: channels,
            groups,
            shape: input.to_vec(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ct(p: &ConvTranspose2dParams, input: &[usize]) -> Result<ConvTransposeShape> {
        conv_transpose2d("up", "LazyConvTranspose2d", input, None, p)
    }

    #[test]
    fn formula_matches_pytorch_examples() {
        // c01: k3 s2 p1 op1 on 6x6 -> 12x12
        let p = ConvTranspose2dParams::new(5, 3).stride(2).padding(1).output_padding(1);
        assert_eq!(ct(&p, &[1, 4, 6, 6]).unwrap().output, [1, 5, 12, 12]);
        // c02: non-square everything
        let p = ConvTranspose2dParams::new(4, (3, 2))
            .stride((2, 1))
            .padding((1, 0))
            .output_padding((1, 0))
            .dilation((1, 2));
        assert_eq!(ct(&p, &[2, 3, 5, 7]).unwrap().output, [2, 4, 10, 9]);
    }

    #[test]
    fn unbatched_input_uses_dim0_channels() {
        let p = ConvTranspose2dParams::new(2, 3).stride(2).padding(1);
        let r = ct(&p, &[3, 6, 5]).unwrap();
        assert_eq!(r.in_channels, 3);
        assert_eq!(r.output, [2, 11, 9]);
    }

    #[test]
    fn rank_must_be_3_or_4() {
        let p = ConvTranspose2dParams::new(2, 3);
        for s in [&[3usize, 4][..], &[1, 2, 3, 4, 4], &[5]] {
            assert!(matches!(ct(&p, s), Err(PassError::Rank { .. })));
        }
    }

    #[test]
    fn in_channels_divisible_by_groups() {
        let p = ConvTranspose2dParams::new(4, 3).groups(2);
        let e = ct(&p, &[1, 3, 4, 4]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "node `up`: LazyConvTranspose2d in_channels=3 (inferred from input shape [1, 3, 4, 4]) is not divisible by groups=2"
        );
    }

    #[test]
    fn concrete_channel_mismatch() {
        let p = ConvTranspose2dParams::new(6, 3);
        let e = conv_transpose2d("up", "ConvTranspose2d", &[2, 5, 5, 5], Some(4), &p).unwrap_err();
        assert!(matches!(e, PassError::ChannelMismatch { expected: 4, got: 5, .. }), "{e}");
    }

    #[test]
    fn output_size_becomes_output_padding() {
        let p = ConvTranspose2dParams::new(2, 3).stride(2).padding(1).output_size([10, 10]);
        let r = ct(&p, &[1, 3, 5, 5]).unwrap();
        assert_eq!(r.output, [1, 2, 10, 10]);
        assert_eq!(r.output_padding, Pair2::square(1));
        // Full 4-value form: leading values ignored, as in PyTorch.
        let p = ConvTranspose2dParams::new(2, 3).stride(2).padding(1).output_size([1, 3, 9, 10]);
        assert_eq!(ct(&p, &[1, 3, 5, 5]).unwrap().output, [1, 2, 9, 10]);
        // 3 values for a 4-D input is an error; for 3-D it is the full form.
        let p = ConvTranspose2dParams::new(2, 3).stride(2).padding(1).output_size([3, 9, 10]);
        assert!(matches!(ct(&p, &[1, 3, 5, 5]), Err(PassError::OutputSizeLength { rank: 4, .. })));
        assert_eq!(ct(&p, &[3, 5, 5]).unwrap().output, [2, 9, 10]);
    }

    #[test]
    fn output_size_range_is_checked() {
        let p = ConvTranspose2dParams::new(2, 3).stride(2).padding(1).output_size([12, 12]);
        let e = ct(&p, &[1, 2, 5, 5]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "node `up`: requested output size [12, 12], but for input size [5, 5] valid sizes range from [9, 9] to [10, 10] (stride [2, 2] allows output_padding 0..stride-1)"
        );
    }

    #[test]
    fn non_positive_output_is_rejected() {
        let p = ConvTranspose2dParams::new(2, 1).padding(2);
        let e = ct(&p, &[1, 2, 2, 2]).unwrap_err();
        assert!(matches!(e, PassError::OutputTooSmall { computed: [-2, -2], .. }), "{e}");
        // Exactly zero is also rejected.
        let p = ConvTranspose2dParams::new(2, 1).padding((1, 0));
        assert!(ct(&p, &[1, 2, 2, 2]).is_err());
    }

    #[test]
    fn huge_sizes_do_not_overflow() {
        let big = usize::MAX / 2;
        let p = ConvTranspose2dParams::new(2, big).stride(big).dilation(big);
        assert!(matches!(ct(&p, &[1, 1, big, big]), Err(PassError::Overflow { .. })));
        let p = ConvTranspose2dParams::new(usize::MAX, 1);
        assert!(matches!(ct(&p, &[4, 1, 4, 4]), Err(PassError::Overflow { .. })));
    }

    #[test]
    fn conv2d_shapes() {
        let p = Conv2dParams::new(8, 3).padding(1);
        assert_eq!(conv2d("c", "LazyConv2d", &[2, 16, 8, 8], None, &p).unwrap(), (16, vec![2, 8, 8, 8]));
        let p = Conv2dParams::new(8, 3).stride(2);
        assert_eq!(conv2d("c", "LazyConv2d", &[1, 3, 7, 6], None, &p).unwrap().1, [1, 8, 3, 2]);
        let p = Conv2dParams::new(8, 5);
        assert!(matches!(conv2d("c", "LazyConv2d", &[1, 3, 4, 4], None, &p), Err(PassError::OutputTooSmall { .. })));
    }

    #[test]
    fn per_side_conv_transpose_shapes() {
        // s(in-1) + d(k-1) + 1 - begin - end + op, by hand: 2·4 + 2 + 1 = 11 full.
        let ct = |b: [usize; 2], e: [usize; 2], op: usize| {
            let p = ConvTranspose2dParams::new(2, 3).stride(2).pads(b, e).output_padding(op);
            conv_transpose2d("up", "LazyConvTranspose2d", &[1, 3, 5, 6], None, &p)
        };
        assert_eq!(ct([0, 0], [0, 0], 0).unwrap().output, [1, 2, 11, 13]);
        assert_eq!(ct([0, 1], [1, 3], 0).unwrap().output, [1, 2, 10, 9]);
        // output_padding past the stride is fine in this mode.
        assert_eq!(ct([1, 1], [1, 1], 5).unwrap().output, [1, 2, 14, 16]);
        assert_eq!(ct([3, 0], [4, 0], 0).unwrap().output, [1, 2, 4, 13]);
        let e = ct([6, 0], [5, 0], 0).unwrap_err();
        assert_eq!(
            e.to_string(),
            "node `up`: LazyConvTranspose2d output size would be [0, 13] for input size [5, 6] with kernel_size=3x3 stride=2x2 pads=[6, 0, 5, 0] dilation=1x1 output_padding=0x0; it must be at least 1x1"
        );
        // Absurd values are an overflow error, not a wrap or a panic.
        let p = ConvTranspose2dParams::new(2, 3).stride(usize::MAX).dilation(usize::MAX).pads([0, 0], [0, 0]);
        let e = conv_transpose2d("up", "LazyConvTranspose2d", &[1, 3, usize::MAX, 6], None, &p).unwrap_err();
        assert!(matches!(e, PassError::Overflow { .. }), "{e}");
        assert_eq!(conv_transpose_size_per_side(5, 3, 2, 0, 1, 1, 0), Some(10));
        assert_eq!(conv_transpose_size_per_side(5, 3, 2, 1, 1, 1, 1), Some(conv_transpose_size(5, 3, 2, 1, 1, 1)));
    }

    #[test]
    fn per_side_conv2d_shapes() {
        // floor((in + b + e - d(k-1) - 1)/s) + 1, by hand.
        let c = |b: [usize; 2], e: [usize; 2], s: usize| {
            conv2d("c", "LazyConv2d", &[1, 3, 7, 6], None, &Conv2dParams::new(4, 2).stride(s).pads(b, e))
        };
        assert_eq!(c([0, 0], [1, 1], 1).unwrap().1, [1, 4, 7, 6]);
        assert_eq!(c([0, 3], [1, 0], 2).unwrap().1, [1, 4, 4, 4]);
        let p = Conv2dParams::new(4, 5).pads([0, 0], [0, 1]);
        let e = conv2d("c", "LazyConv2d", &[1, 3, 4, 4], None, &p).unwrap_err();
        assert_eq!(
            e.to_string(),
            "node `c`: LazyConv2d output size would be [0, 1] for input size [4, 4] with kernel_size=5x5 stride=1x1 pads=[0, 0, 0, 1] dilation=1x1 (the dilated kernel is larger than the padded input); it must be at least 1x1"
        );
        let p = Conv2dParams::new(4, 1).pads([usize::MAX, 0], [usize::MAX, 0]);
        assert!(conv2d("c", "LazyConv2d", &[1, 3, 4, 4], None, &p).is_err());
    }

    #[test]
    fn batch_norm_add_concat() {
        assert_eq!(batch_norm2d("bn", "LazyBatchNorm2d", &[2, 3, 4, 4], None).unwrap(), 3);
        assert!(batch_norm2d("bn", "LazyBatchNorm2d", &[3, 4, 4], None).is_err());
        assert!(batch_norm2d("bn", "BatchNorm2d", &[2, 3, 4, 4], Some(4)).is_err());
        assert!(add("a", &[1, 2], &[1, 2]).is_ok());
        // PyTorch broadcasting: [1, 2] + [2, 1] is [2, 2]; [2, 3] + [2] is not.
        assert_eq!(add("a", &[1, 2], &[2, 1]).unwrap(), [2, 2]);
        assert_eq!(add("a", &[2, 3, 4, 5], &[1, 3, 1, 1]).unwrap(), [2, 3, 4, 5]);
        assert!(add("a", &[2, 3], &[2]).is_err());
        assert_eq!(concat("c", &[&[2, 8, 8, 8], &[2, 4, 8, 8]]).unwrap(), [2, 12, 8, 8]);
        assert!(concat("c", &[&[2, 8, 8, 8], &[2, 4, 8, 7]]).is_err());
        assert!(concat("c", &[&[8, 8, 8]]).is_err());
    }
}
