//! Weight and bias packing into the layout the generated kernels read.
//!
//! Packing happens once, at compile time. For every `(group, channel block)`
//! there is one slot of `block_stride` floats; inside it, phase pairs follow
//! in [`ConvSpec::phase_pairs`] order, each as `[ci][tap_h][tap_w][LANES·v]`,
//! so the innermost loop reads one contiguous, 16-byte-aligned stream of
//! weight vectors. Lanes beyond a block's valid channels are zero. This
//! module does not know about code; the code generator derives the same
//! offsets from [`phase_offset`].

use crate::schedule::{Blocking, ConvSpec, LANES};

/// A 64-byte-aligned, immutable float buffer whose address can be baked into code.
#[derive(Debug)]
pub struct AlignedBuf {
    lines: Vec<Line>,
    len: usize,
}

#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
struct Line([f32; 16]);

impl AlignedBuf {
    /// Zero-filled buffer of `len` floats.
    pub fn zeros(len: usize) -> Self {
        Self { lines: vec![Line([0.0; 16]); len.div_ceil(16).max(1)], len }
    }

    /// Mutable view of the floats.
    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        // SAFETY: `Line` is `repr(C)` around `[f32; 16]` with no padding (64 bytes), so
        // the vector is `lines.len()·16` contiguous floats and `len` is at most that.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr().cast::<f32>(), self.len) }
    }

    /// Shared view of the floats.
    pub fn as_slice(&self) -> &[f32] {
        // SAFETY: see `as_mut_slice`.
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr().cast::<f32>(), self.len) }
    }

    /// Address of the first float (stable for the buffer's lifetime: it is never resized).
    pub fn addr(&self) -> i64 {
        self.lines.as_ptr() as i64
    }
}

/// Float offset of phase pair number `k` inside a block slot, for a block of `v` vectors.
pub fn phase_offset(spec: &ConvSpec, k: usize, v: usize) -> usize {
    spec.taps_before(k) * spec.cig * LANES * v
}

/// Floats per `(group, block)` slot: every tap of every phase, for the full variant.
pub fn block_stride(spec: &ConvSpec, blocking: &Blocking) -> usize {
    phase_offset(spec, spec.phase_pairs().len(), blocking.full.v)
}

/// Packs weights. `weight(g, ci, co, kh, kw)` returns the user weight for
/// group `g`, input channel `ci` and output channel `co` within the group.
pub fn pack_weights(
    spec: &ConvSpec,
    blocking: &Blocking,
    weight: impl Fn(usize, usize, usize, usize, usize) -> f32,
) -> AlignedBuf {
    let stride = block_stride(spec, blocking);
    let nb = blocking.blocks();
    let mut buf = AlignedBuf::zeros(stride * nb * spec.groups);
    let out = buf.as_mut_slice();
    let pairs = spec.phase_pairs();
    for g in 0..spec.groups {
        for b in 0..nb {
            let var = blocking.variant(b);
            let c0 = b * blocking.slot_channels();
            let slot = (g * nb + b) * stride;
            let width = LANES * var.v;
            for (k, &(ph, pw)) in pairs.iter().enumerate() {
                let (th, tw) = (&spec.h.phases[ph].taps, &spec.w.phases[pw].taps);
                let mut at = slot + phase_offset(spec, k, var.v);
                for ci in 0..spec.cig {
                    for a in th {
                        for bb in tw {
                            for lane in 0..var.channels {
                                out[at + lane] = weight(g, ci, c0 + lane, a.k, bb.k);
                            }
                            at += width;
                        }
                    }
                }
            }
        }
    }
    buf
}

/// Packs the bias (zeros if `None`) as `[group][block][slot_channels]`.
pub fn pack_bias(spec: &ConvSpec, blocking: &Blocking, bias: Option<&[f32]>) -> AlignedBuf {
    let nb = blocking.blocks();
    let slot = blocking.slot_channels();
    let mut buf = AlignedBuf::zeros(spec.groups * nb * slot);
    if let Some(bias) = bias {
        let out = buf.as_mut_slice();
        for g in 0..spec.groups {
            for b in 0..nb {
                for lane in 0..blocking.variant(b).channels {
                    out[(g * nb + b) * slot + lane] = bias[g * spec.cog + b * slot + lane];
                }
            }
        }
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::ConvTranspose2dGeometry;

    #[test]
    fn every_weight_packed_once() {
        let g =
            ConvTranspose2dGeometry::from_output_padding(1, 4, [3, 3], 10, 2, [3, 2], [2, 1], [1, 0], [1, 0], [1, 2])
                .unwrap();
        let spec = ConvSpec::conv_transpose(&g).unwrap();
        let blocking = Blocking::new(spec.cog);
        let buf = pack_weights(&spec, &blocking, |g, ci, co, kh, kw| {
            (1 + (((g * 2 + ci) * 5 + co) * 3 + kh) * 2 + kw) as f32
        });
        let mut vals: Vec<f32> = buf.as_slice().iter().copied().filter(|&v| v != 0.0).collect();
        vals.sort_by(f32::total_cmp);
        let want: Vec<f32> = (1..=g.weight_len()).map(|v| v as f32).collect();
        assert_eq!(vals, want);
        assert_eq!(buf.addr() % 64, 0);
    }
}
