//! The typed table of instantiated micro-kernels.
//!
//! The code generator asks for a kernel by its parameters and gets a
//! function pointer of the family's type ([`super::abi`]) or `None` when no
//! such instantiation exists (so a planner and this table that disagree give
//! an error, never a call through a wrong pointer). Const generics are
//! instantiated here, once, for exactly the parameter sets the planners use.

use super::abi::{Dw2xFn, FillFn, PackFn, PvFn, S3k9Fn, TileFn};
use super::NativeIsa;

/// The input packer (portable code: it only copies).
pub(crate) fn pack() -> PackFn {
    #[cfg(target_arch = "x86_64")]
    {
        super::channel_tile::pack_input
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        portable_pack
    }
}

/// Portable packer for hosts without the x86 kernels (never called there:
/// no native plan exists without them; present so the table is total).
#[cfg(not(target_arch = "x86_64"))]
unsafe extern "C" fn portable_pack(_dst: *mut f32, _x: *const u8, _args: *const super::abi::PackArgs) {}

/// The hole fill of `isa` (`None` off x86-64, where no native plan exists).
pub(crate) fn fill(isa: NativeIsa) -> Option<FillFn> {
    #[cfg(target_arch = "x86_64")]
    {
        match isa {
            NativeIsa::Avx512 => Some(super::fill::fill512),
            NativeIsa::Avx2 => Some(super::fill::fill256),
            NativeIsa::Best => None,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = isa;
        None
    }
}

/// Channel tile of `isa` for a `pw`-channel panel and `p` pixels;
/// `contig`: the pixels' inputs are consecutive floats; `channel_major`:
/// the variant that stores channel by channel.
pub(crate) fn cv(isa: NativeIsa, pw: usize, p: usize, contig: bool, channel_major: bool) -> Option<TileFn> {
    #[cfg(target_arch = "x86_64")]
    {
        use super::channel_tile::{cv256, cv512};
        // `$g` is the generic-argument prefix before the pixel count.
        macro_rules! pick {
            ($f:ident :: < $($g:literal ,)* >; $($p:literal)*) => {
                pick!(@each $f [$($g),*] $($p)*)
            };
            (@each $f:ident $g:tt $($p:literal)*) => {$(
                pick!(@one $f $g $p);
            )*};
            (@one $f:ident [$($g:literal),*] $p:literal) => {
                if p == $p {
                    return Some(match (contig, channel_major) {
                        (false, false) => $f::<$($g,)* $p, false, false> as TileFn,
                        (false, true) => $f::<$($g,)* $p, false, true> as TileFn,
                        (true, false) => $f::<$($g,)* $p, true, false> as TileFn,
                        (true, true) => $f::<$($g,)* $p, true, true> as TileFn,
                    });
                }
            };
        }
        match (isa, pw) {
            (NativeIsa::Avx512, 16) => {
                pick!(cv512::<1,>; 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24);
            }
            (NativeIsa::Avx512, 32) => {
                pick!(cv512::<2,>; 1 2 3 4 5 6 7 8 9 10 11 12);
            }
            (NativeIsa::Avx2, 16 | 32) => {
                pick!(cv256::<>; 1 2 3 4 5 6);
            }
            (NativeIsa::Avx512 | NativeIsa::Avx2 | NativeIsa::Best, _) => {}
        }
    }
    let _ = (isa, pw, p, contig, channel_major);
    None
}

/// Pixel tile of `isa` with `nv` vectors × `c` channels over `rows` phase rows.
pub(crate) fn pv(isa: NativeIsa, nv: usize, c: usize, rows: usize) -> Option<PvFn> {
    #[cfg(target_arch = "x86_64")]
    {
        use super::pixel_tile::{pv256, pv512, pv512rows};
        // `$r` is the row count of multi-row tiles (absent for single rows).
        macro_rules! pick {
            ($f:ident :: < $($r:literal)? >; $($nv:literal)*) => {
                pick!(@each $f [$($r)?] $($nv)*)
            };
            (@each $f:ident $r:tt $($nv:literal)*) => {$(
                pick!(@one $f $r $nv);
            )*};
            (@one $f:ident [$($r:literal)?] $nv:literal) => {
                if nv == $nv {
                    return match c {
                        1 => Some($f::<$nv, 1 $(, $r)?> as PvFn),
                        2 => Some($f::<$nv, 2 $(, $r)?> as PvFn),
                        3 => Some($f::<$nv, 3 $(, $r)?> as PvFn),
                        4 => Some($f::<$nv, 4 $(, $r)?> as PvFn),
                        _ => None,
                    };
                }
            };
        }
        match (isa, rows) {
            (NativeIsa::Avx512, 1) => {
                pick!(pv512::<>; 1 2 4 8);
            }
            (NativeIsa::Avx512, 2) => {
                pick!(pv512rows::<2>; 1 2 4);
            }
            (NativeIsa::Avx2, 1) => {
                pick!(pv256::<>; 1 2 4 8);
            }
            (NativeIsa::Avx512 | NativeIsa::Avx2 | NativeIsa::Best, _) => {}
        }
    }
    let _ = (isa, nv, c, rows);
    None
}

/// The AVX-512 depthwise 2x upsampler.
pub(crate) fn dw2x() -> Option<Dw2xFn> {
    #[cfg(target_arch = "x86_64")]
    {
        Some(super::special::dw2x512)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        None
    }
}

/// The AVX-512 single-output-channel stride-3 kernel.
pub(crate) fn s3k9() -> Option<S3k9Fn> {
    #[cfg(target_arch = "x86_64")]
    {
        Some(super::special::s3k9_512)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::microkernel::{cv_all_pixels, PV_ROWS, PV_VECTORS};

    /// Every parameter set the planners can produce has an instantiation.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn table_covers_every_planned_tile() {
        for (isa, pw) in
            [(NativeIsa::Avx512, 16), (NativeIsa::Avx512, 32), (NativeIsa::Avx2, 16), (NativeIsa::Avx2, 32)]
        {
            for p in cv_all_pixels(isa, pw) {
                for (contig, cm) in [(false, false), (false, true), (true, false), (true, true)] {
                    assert!(cv(isa, pw, p, contig, cm).is_some(), "{isa:?} pw {pw} p {p}");
                }
            }
            assert!(cv(isa, pw, *cv_all_pixels(isa, pw).end() + 1, false, false).is_none());
        }
        for nv in PV_VECTORS {
            for c in 1..=4 {
                assert!(pv(NativeIsa::Avx512, nv, c, 1).is_some() && pv(NativeIsa::Avx2, nv, c, 1).is_some());
                for r in PV_ROWS {
                    // Multi-row tiles exist up to the planner's accumulator budget (8).
                    assert_eq!(pv(NativeIsa::Avx512, nv, c, r).is_some(), nv <= 4, "nv {nv} c {c}");
                }
            }
        }
        assert!(pv(NativeIsa::Avx512, 1, 5, 1).is_none() && pv(NativeIsa::Avx2, 1, 1, 2).is_none());
    }
}
