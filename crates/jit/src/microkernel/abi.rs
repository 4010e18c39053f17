//! The typed ABI between JIT-generated code and the micro-kernels.
//!
//! Each kernel family has one `#[repr(C)]` argument record. The code
//! generator builds records as these structs (never as loose `i64` arrays),
//! keeps them alive next to the code, and passes their address as an
//! immediate; where generated code reads a field itself it uses the field's
//! `offset_of!`. Every record is a whole number of 8-byte fields, asserted at
//! compile time, so a field added on one side and not the other is a build
//! error rather than a misread. Function-pointer types name the signature of
//! each family; [`super::table`] hands out pointers of these types.

use std::mem::{offset_of, size_of};

/// Constant arguments of a channel tile (one record per tap class, variant
/// and input layout).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct TileArgs {
    /// `nt` pairs `(input byte offset, weight byte offset)`, one per tap.
    pub taps: *const i64,
    /// Number of taps.
    pub nt: i64,
    /// Input channels reduced.
    pub cig: i64,
    /// Input byte stride between input channels.
    pub x_ci: i64,
    /// Weight byte stride between input channels.
    pub a_ci: i64,
    /// Output byte stride between output channels.
    pub oc: i64,
    /// Valid channels of the panel (lanes beyond are not stored).
    pub nc: i64,
    /// Panel width in channels (16 or 32); weight rows are this many floats.
    pub pw: i64,
    /// Activation code (see [`super::act_code`]).
    pub act: i64,
    /// LeakyReLU slope as `f32` bits.
    pub alpha: i64,
    /// Byte offset added to the input base (the first channel of this
    /// record's block of input channels, see [`crate::tiling::CvPlan::kblocks`]).
    pub x_off: i64,
    /// Nonzero: a later block of input channels: the accumulators start
    /// from zero instead of the bias, and the stores add the output's
    /// current values (the earlier blocks' partial sums).
    pub acc: i64,
}

/// Constant arguments of a pixel tile (one record per phase-row segment).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct PvArgs {
    /// `nt` triples `(input float offset from the row, horizontal input offset
    /// in floats for masking, weight byte offset)`.
    pub taps: *const i64,
    /// Number of taps.
    pub nt: i64,
    /// Input channels reduced.
    pub cig: i64,
    /// Input byte stride between input channels.
    pub x_ci: i64,
    /// Weight byte stride between input channels.
    pub a_ci: i64,
    /// Output byte stride between output channels.
    pub oc: i64,
    /// Output byte stride between consecutive pixels of the row.
    pub osw: i64,
    /// Pixels in the row (lanes at or beyond are not stored).
    pub nq: i64,
    /// Input row length (lanes reading outside `0..in_w` are masked).
    pub in_w: i64,
    /// Valid output channels (≤ the tile's `C`).
    pub nc: i64,
    /// Activation code.
    pub act: i64,
    /// LeakyReLU slope as `f32` bits.
    pub alpha: i64,
    /// Horizontal taps per vertical tap (taps are listed vertical-major).
    pub ntw: i64,
    /// Input byte stride between consecutive phase rows (two-row tiles).
    pub row_in: i64,
    /// Output byte stride between consecutive phase rows (two-row tiles).
    pub row_out: i64,
}

/// Arguments of the input packer (one record per packed group of tiles).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PackArgs {
    /// Source byte offset from the group's input base.
    pub off: i64,
    /// Floats copied per channel.
    pub span: i64,
    /// Channels copied.
    pub channels: i64,
    /// Source byte stride between channels.
    pub src_stride: i64,
    /// Destination byte stride between channels.
    pub dst_stride: i64,
}

/// Arguments of a hole fill (one record per panel variant and chunk).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FillArgs {
    /// Rows in the entry's row list (`(row start byte offset, first mask
    /// index)` pairs).
    pub rows: i64,
    /// 16-column masks per row.
    pub blocks: i64,
    /// The masks (low 16 bits of each `i64`).
    pub masks: *const i64,
    /// Valid channels of the panel.
    pub nc: i64,
    /// Output byte stride between output channels.
    pub oc: i64,
    /// Activation code.
    pub act: i64,
    /// LeakyReLU slope as `f32` bits.
    pub alpha: i64,
}

/// Arguments of the depthwise 2x upsampler.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Dw2xArgs {
    /// Input rows.
    pub in_h: i64,
    /// Input columns (a multiple of 16).
    pub in_w: i64,
    /// Activation code.
    pub act: i64,
    /// LeakyReLU slope as `f32` bits.
    pub alpha: i64,
}

/// Arguments of the single-output-channel stride-3 kernel (one per group:
/// the bias differs).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct S3k9Args {
    /// Input rows.
    pub in_h: i64,
    /// Input columns (a multiple of 32).
    pub in_w: i64,
    /// Input channels per group.
    pub cig: i64,
    /// Activation code.
    pub act: i64,
    /// LeakyReLU slope as `f32` bits.
    pub alpha: i64,
    /// Input rows per work item.
    pub rows_per_item: i64,
    /// The group's bias as `f32` bits.
    pub bias: i64,
}

/// One entry of a channel-tile kernel's call list, read by generated code
/// (through the `*_OFFSET` constants below).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CallEntry {
    /// Address of a [`TileFn`] or [`FillFn`] or, with [`CallEntry::PACK`], a [`PackFn`].
    pub func: i64,
    /// Byte offset of the tile's weight record from the panel's weights.
    pub weight_off: i64,
    /// Address of the tile's pixel table (`p` input then `p` output byte
    /// offsets), or of a fill's row list.
    pub table: i64,
    /// Address of the [`TileArgs`] (or [`FillArgs`], [`PackArgs`]) record.
    pub args: i64,
    /// [`CallEntry::X_PACKED`] and [`CallEntry::PACK`] bits.
    pub flags: i64,
}

impl CallEntry {
    /// The tile reads the frame's packed input buffer instead of the input.
    pub const X_PACKED: i64 = 1;
    /// The entry calls the input packer, whose destination is the packed buffer.
    pub const PACK: i64 = 2;
    /// Field offsets, for the generated loads.
    pub const FUNC_OFFSET: i32 = offset_of!(CallEntry, func) as i32;
    /// See [`CallEntry::FUNC_OFFSET`].
    pub const WEIGHT_OFFSET: i32 = offset_of!(CallEntry, weight_off) as i32;
    /// See [`CallEntry::FUNC_OFFSET`].
    pub const TABLE_OFFSET: i32 = offset_of!(CallEntry, table) as i32;
    /// See [`CallEntry::FUNC_OFFSET`].
    pub const ARGS_OFFSET: i32 = offset_of!(CallEntry, args) as i32;
    /// See [`CallEntry::FUNC_OFFSET`].
    pub const FLAGS_OFFSET: i32 = offset_of!(CallEntry, flags) as i32;
}

// Every record is a whole number of 8-byte fields (the generated code and
// the micro-kernels agree on nothing else), and the sizes are the ones the
// field lists above give.
const _: () = {
    assert!(size_of::<TileArgs>() == 12 * 8);
    assert!(size_of::<PvArgs>() == 15 * 8);
    assert!(size_of::<PackArgs>() == 5 * 8);
    assert!(size_of::<FillArgs>() == 7 * 8);
    assert!(size_of::<Dw2xArgs>() == 4 * 8);
    assert!(size_of::<S3k9Args>() == 7 * 8);
    assert!(size_of::<CallEntry>() == 5 * 8);
    assert!(size_of::<*const i64>() == 8);
};

/// A channel tile: `(weights, input base, pixel table, output base, bias, args)`.
pub(crate) type TileFn = unsafe extern "C" fn(*const f32, *const u8, *const i64, *mut u8, *const f32, *const TileArgs);

/// A pixel tile: `(weights, input row, first pixel q0, output row, bias, args)`.
pub(crate) type PvFn = unsafe extern "C" fn(*const f32, *const u8, usize, *mut u8, *const f32, *const PvArgs);

/// A hole fill, called like a [`TileFn`] from a channel-tile call list:
/// `(unused, unused, row list, output base, bias, args)`.
pub(crate) type FillFn = unsafe extern "C" fn(*const f32, *const u8, *const i64, *mut u8, *const f32, *const FillArgs);

/// The input packer: `(packed buffer, input base, args)`.
pub(crate) type PackFn = unsafe extern "C" fn(*mut f32, *const u8, *const PackArgs);

/// The depthwise 2x upsampler: `(weight record, input plane, output plane, args)`.
pub(crate) type Dw2xFn = unsafe extern "C" fn(*const f32, *const u8, *mut u8, *const Dw2xArgs);

/// The stride-3 kernel: `(weight record, input, row block, output, args)`.
pub(crate) type S3k9Fn = unsafe extern "C" fn(*const f32, *const u8, usize, *mut u8, *const S3k9Args);
