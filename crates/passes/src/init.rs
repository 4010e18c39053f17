//! PyTorch's default parameter initialization, driven by a seed and made
//! deterministic per node.
//!
//! PyTorch's `reset_parameters` draws `kaiming_uniform_(a=√5)`, i.e.
//! `U(-1/√fan_in, 1/√fan_in)` with `fan_in = weight.size(1)·kH·kW`, then the
//! bias from the same bound; BatchNorm starts at weight 1, bias 0, running
//! mean 0, running variance 1. Kiln reproduces those distributions, not
//! PyTorch's bit stream (its Mersenne Twister and draw order are not part of
//! the contract). Each node draws from its own stream derived from the seed
//! and the node's name, so results do not depend on visiting order, unlike
//! PyTorch's lazy modules.

use kiln_ir::ndarray::ArrayD;
use kiln_ir::rng::SplitMix64;
use kiln_ir::Op;

/// Initial values for one node's parameters, by PyTorch name, for ops with a
/// known `in_channels`. Returns an empty list for ops without parameters.
pub fn init_params(op: &Op, node: &str, seed: u64) -> Vec<(&'static str, ArrayD<f32>)> {
    let specs = op.param_specs();
    let mut rng = SplitMix64::for_stream(seed, node);
    let mut out = Vec::with_capacity(specs.len());
    let known = |dims: &[kiln_ir::Dim]| dims.iter().map(|d| d.known()).collect::<Option<Vec<usize>>>();
    match op {
        // Linear's weight [out, in] has fan_in = weight.size(1) too.
        Op::ConvTranspose2d { .. } | Op::Conv2d { .. } | Op::Linear { .. } => {
            let mut bound = 0.0f32;
            for (name, dims) in specs {
                let Some(shape) = known(&dims) else { continue };
                if name == "weight" {
                    // fan_in = weight.size(1) * kH * kW for both layouts.
                    let fan_in: usize = shape[1..].iter().product();
                    bound = if fan_in == 0 { 0.0 } else { 1.0 / (fan_in as f32).sqrt() };
                }
                let len: usize = shape.iter().product();
                let data: Vec<f32> = (0..len).map(|_| rng.uniform(-bound, bound)).collect();
                if let Ok(a) = ArrayD::from_shape_vec(shape, data) {
                    out.push((name, a));
                }
            }
        }
        // Norms start at the identity: weight 1, bias 0, mean 0, variance 1.
        Op::BatchNorm2d { .. } | Op::BatchNorm1d { .. } | Op::InstanceNorm2d { .. } | Op::GroupNorm { .. } => {
            for (name, dims) in specs {
                let Some(shape) = known(&dims) else { continue };
                let fill = if matches!(name, "weight" | "running_var") { 1.0 } else { 0.0 };
                out.push((name, ArrayD::from_elem(shape, fill)));
            }
        }
        // `nn.PReLU(init=0.25)` fills its weight with `init`.
        Op::PRelu { init, .. } => {
            for (name, dims) in specs {
                let Some(shape) = known(&dims) else { continue };
                out.push((name, ArrayD::from_elem(shape, *init)));
            }
        }
        // No parameters (lazy ops are resolved before their init runs).
        Op::LazyConvTranspose2d { .. }
        | Op::LazyConv2d { .. }
        | Op::LazyBatchNorm2d { .. }
        | Op::LazyLinear { .. }
        | Op::LazyBatchNorm1d { .. }
        | Op::LazyInstanceNorm2d { .. }
        | Op::Flatten { .. }
        | Op::Unflatten { .. }
        | Op::Reshape { .. }
        | Op::Input
        | Op::Output
        | Op::Relu
        | Op::LeakyRelu { .. }
        | Op::Tanh
        | Op::Sigmoid
        | Op::Pointwise { .. }
        | Op::MaxPool2d { .. }
        | Op::AvgPool2d { .. }
        | Op::AdaptiveAvgPool2d { .. }
        | Op::Pad2d { .. }
        | Op::Upsample { .. }
        | Op::PixelShuffle { .. }
        | Op::Identity
        | Op::Dropout { .. }
        | Op::Dropout2d { .. }
        | Op::Add
        | Op::Sub
        | Op::Mul
        | Op::Scalar { .. }
        | Op::Cat { .. }
        | Op::Narrow { .. }
        | Op::Concat => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_ir::ConvTranspose2dParams;

    fn ct(in_channels: usize) -> Op {
        Op::ConvTranspose2d { in_channels, params: ConvTranspose2dParams::new(6, 3).groups(2) }
    }

    #[test]
    fn kaiming_bound_uses_weight_size1() {
        // fan_in = (6/2)*3*3 = 27 -> bound 1/sqrt(27)
        let p = init_params(&ct(4), "up", 7);
        let bound = 1.0 / 27f32.sqrt();
        assert_eq!(p[0].0, "weight");
        assert_eq!(p[0].1.shape(), [4, 3, 3, 3]);
        assert!(p[0].1.iter().all(|v| v.abs() <= bound));
        // Uses most of the range: max |w| over 108 draws is close to the bound.
        let max = p[0].1.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(max > 0.8 * bound, "{max} vs {bound}");
        assert_eq!(p[1].0, "bias");
        assert!(p[1].1.iter().all(|v| v.abs() <= bound));
    }

    #[test]
    fn deterministic_per_node_name_and_seed() {
        assert_eq!(init_params(&ct(4), "up", 7), init_params(&ct(4), "up", 7));
        assert_ne!(init_params(&ct(4), "up", 7)[0].1, init_params(&ct(4), "up2", 7)[0].1);
        assert_ne!(init_params(&ct(4), "up", 7)[0].1, init_params(&ct(4), "up", 8)[0].1);
    }

    #[test]
    fn batch_norm_starts_at_identity() {
        let op = Op::BatchNorm2d { num_features: 3, params: Default::default() };
        let p = init_params(&op, "bn", 1);
        let get = |n: &str| p.iter().find(|(k, _)| *k == n).map(|(_, a)| a.clone()).expect("param");
        assert!(get("weight").iter().all(|&v| v == 1.0));
        assert!(get("bias").iter().all(|&v| v == 0.0));
        assert!(get("running_mean").iter().all(|&v| v == 0.0));
        assert!(get("running_var").iter().all(|&v| v == 1.0));
    }
}
