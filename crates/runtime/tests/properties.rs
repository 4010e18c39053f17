//! Property tests: random byte strings and random (often inconsistent) op
//! configurations must give errors, never panics; random valid transposed
//! convolutions must agree with an independently written gather formula.

use kiln_ir::ConvTranspose2dParams;
use kiln_runtime::tensor::random;
use kiln_runtime::{npy, ops, WeightStore};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic_the_readers(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = WeightStore::from_bytes(&bytes);
        let _ = npy::from_bytes(&bytes);
        // The same bytes behind a plausible prefix reach the deeper parsers.
        let mut st = (bytes.len() as u64).to_le_bytes().to_vec();
        st.extend_from_slice(&bytes);
        let _ = WeightStore::from_bytes(&st);
        let mut np = b"\x93NUMPY\x01\x00".to_vec();
        np.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
        np.extend_from_slice(&bytes);
        let _ = npy::from_bytes(&np);
    }

    #[test]
    fn random_headers_never_panic(
        dtype in prop::sample::select(vec!["F32", "F16", "BF16", "F64", "I8", "F4", "X"]),
        shape in proptest::collection::vec(0u64..6, 0..4),
        start in 0u64..40,
        len in 0u64..40,
        data in 0usize..64,
    ) {
        let header = format!(
            r#"{{"t":{{"dtype":"{dtype}","shape":{shape:?},"data_offsets":[{start},{}]}}}}"#,
            start + len
        );
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.extend(std::iter::repeat_n(0u8, data));
        if let Ok(s) = WeightStore::from_bytes(&bytes) {
            let t = s.get("t").unwrap();
            prop_assert_eq!(t.shape().iter().map(|&d| d as u64).collect::<Vec<_>>(), shape);
        }
    }

    #[test]
    fn inconsistent_conv_transpose_operands_error_instead_of_panicking(
        x_shape in proptest::collection::vec(1usize..4, 2..6),
        w_shape in proptest::collection::vec(1usize..4, 3..5),
        b_len in proptest::option::of(1usize..5),
        in_channels in 1usize..4,
        out_channels in 1usize..4,
        groups in 1usize..3,
        k in 1usize..3, s in 1usize..3, p in 0usize..3, d in 1usize..3, op in 0usize..2,
    ) {
        let params = ConvTranspose2dParams::new(out_channels, k).stride(s).padding(p).dilation(d)
            .output_padding(op).groups(groups).bias(b_len.is_some());
        let x = random(&x_shape, 1);
        let w = random(&w_shape, 2);
        let b = b_len.map(|n| random(&[n], 3));
        if let Ok(y) = ops::conv_transpose2d("up", &x, &w, b.as_ref(), in_channels, &params) {
            prop_assert_eq!(y.ndim(), x.ndim());
        }
    }

    #[test]
    fn conv_transpose_equals_its_gather_form(
        groups in 1usize..3, cig in 1usize..3, cog in 1usize..3,
        kh in 1usize..4, kw in 1usize..4, sh in 1usize..4, sw in 1usize..4,
        dh in 1usize..3, dw in 1usize..3, ph in 0usize..3, pw in 0usize..3,
        oph in 0usize..3, opw in 0usize..3, ih in 1usize..4, iw in 1usize..4, batched in any::<bool>(),
        seed in any::<u64>(),
    ) {
        prop_assume!((oph < sh || oph < dh) && (opw < sw || opw < dw));
        let (cin, cout) = (groups * cig, groups * cog);
        let params = ConvTranspose2dParams::new(cout, (kh, kw)).stride((sh, sw)).dilation((dh, dw))
            .padding((ph, pw)).output_padding((oph, opw)).groups(groups);
        let Ok([oh, ow]) = ops::conv_transpose2d_output_hw("t", [ih, iw], &params) else { return Ok(()) };
        let x4 = random(&[1, cin, ih, iw], seed);
        let w = random(&[cin, cog, kh, kw], seed ^ 1);
        let b = random(&[cout], seed ^ 2);
        let x = if batched { x4.clone() } else { x4.index_axis(ndarray::Axis(0), 0).to_owned() };
        let y = ops::conv_transpose2d("t", &x, &w, Some(&b), cin, &params).unwrap();
        let y = if batched { y } else { y.insert_axis(ndarray::Axis(0)) };
        prop_assert_eq!(y.shape(), &[1, cout, oh, ow]);
        for co in 0..cout {
            let g = co / cog;
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = f64::from(b[[co]]);
                    for ci in g * cig..(g + 1) * cig {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let ty = (oy + ph) as i64 - (ky * dh) as i64;
                                let tx = (ox + pw) as i64 - (kx * dw) as i64;
                                if ty < 0 || tx < 0 || ty % sh as i64 != 0 || tx % sw as i64 != 0 {
                                    continue;
                                }
                                let (iy, ix) = ((ty / sh as i64) as usize, (tx / sw as i64) as usize);
                                if iy < ih && ix < iw {
                                    acc += f64::from(x4[[0, ci, iy, ix]]) * f64::from(w[[ci, co % cog, ky, kx]]);
                                }
                            }
                        }
                    }
                    prop_assert!((y[[0, co, oy, ox]] - acc as f32).abs() <= 1e-6);
                }
            }
        }
    }
}
