//! Images in and out: PNG files as float32 `[N, C, H, W]` tensors.
//!
//! [`read_image`] decodes a PNG into `[1, C, H, W]` with its 8- or 16-bit
//! levels mapped linearly onto a [`ValueRange`] (`0,1` is torchvision's
//! `ToTensor`; `-1,1` is `ToTensor` followed by `Normalize(0.5, 0.5)`, what
//! GANs are usually trained on). [`write_image_grid`] does the inverse for a
//! model's output: one image, or for a batch a grid laid out as torchvision's
//! `make_grid(nrow=ceil(sqrt(N)), padding=2)` followed by `save_image` (values
//! clamped to the range, scaled to `0..=255`, rounded half up).
//!
//! Only PNG is decoded: the codec is image-rs's `png` crate, the one the
//! `image` crate uses, without `image`'s color-management dependencies (they
//! would triple Kiln's build time for nothing a model needs). Other formats are
//! recognized by their signature and refused with a hint to convert them.
//!
//! ```
//! use kiln::image::{read_image, write_image_grid, ValueRange};
//!
//! // Two 1x2 RGB images: a batch of 2 becomes a 2x1 grid with 2-pixel padding.
//! let t = kiln::tensor::from_vec(&[2, 3, 1, 2], vec![0.5; 12])?;
//! let path = std::env::temp_dir().join("kiln-doc-grid.png");
//! write_image_grid(&path, &t, ValueRange::UNIT)?;
//! let back = read_image(&path, ValueRange::UNIT, None)?;
//! assert_eq!(back.shape(), [1, 3, 2 + 1 + 2, 2 + 2 * (2 + 2)]);  // padding 2 around every tile
//! assert_eq!(back[[0, 0, 2, 2]], 128.0 / 255.0);                   // 0.5 → level 128
//! assert_eq!(back[[0, 0, 0, 0]], 0.0);                             // black padding
//! # Ok::<(), kiln::Error>(())
//! ```

use std::fs::File;
use std::io::{BufReader, BufWriter, Read};
use std::path::Path;

use crate::{Error, Tensor};

/// The largest image, in pixels, that [`read_image`] decodes and
/// [`write_image_grid`] writes (2³¹, e.g. 46 340 × 46 340): beyond it the
/// tensor alone would take tens of GiB, so a larger size is taken as a
/// corrupt header or a mistaken shape rather than allocated.
pub const MAX_PIXELS: u64 = 1 << 31;

/// The padding between (and around) a grid's tiles, in pixels: torchvision's
/// `make_grid` default.
pub const GRID_PADDING: usize = 2;

/// The real values that the darkest and brightest levels (0 and 255 for an
/// 8-bit image) stand for: how the model's data was normalized.
///
/// ```
/// use kiln::image::ValueRange;
/// let r: ValueRange = "-1,1".parse()?;
/// assert_eq!(r, ValueRange::SIGNED);
/// assert!("1,0".parse::<ValueRange>().is_err());   // lo must be below hi
/// assert!(ValueRange::new(0.0, f32::INFINITY).is_err());
/// # Ok::<(), kiln::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ValueRange {
    lo: f32,
    hi: f32,
}

impl ValueRange {
    /// `0,1`: torchvision's `ToTensor()`.
    pub const UNIT: ValueRange = ValueRange { lo: 0.0, hi: 1.0 };
    /// `-1,1`: `ToTensor()` then `Normalize(0.5, 0.5)`; what a `Tanh` produces.
    pub const SIGNED: ValueRange = ValueRange { lo: -1.0, hi: 1.0 };

    /// A range with finite `lo < hi` (and a finite width `hi - lo`, so that
    /// mapping never divides by infinity).
    pub fn new(lo: f32, hi: f32) -> Result<ValueRange, Error> {
        let invalid = |reason: &str| Error::ValueRange { range: format!("{lo},{hi}"), reason: reason.into() };
        if !lo.is_finite() || !hi.is_finite() {
            return Err(invalid("both bounds must be finite numbers"));
        }
        if lo >= hi {
            return Err(invalid("the low bound must be below the high bound"));
        }
        if !(hi - lo).is_finite() {
            return Err(invalid("the width hi - lo overflows float32"));
        }
        Ok(ValueRange { lo, hi })
    }

    /// The value of level 0 (black).
    pub fn lo(self) -> f32 {
        self.lo
    }

    /// The value of the top level (255 for 8 bits: white).
    pub fn hi(self) -> f32 {
        self.hi
    }

    /// The value a level in `0..=max` stands for, computed in float32 as
    /// `lo + (hi - lo) * (level / max)`: for `0,1` exactly `ToTensor`'s
    /// `level / 255`, and for `-1,1` exactly `Normalize(0.5, 0.5)` of it
    /// (scaling by 2 commutes with rounding).
    fn value(self, level: u16, max: f32) -> f32 {
        self.lo + (self.hi - self.lo) * (f32::from(level) / max)
    }

    /// The 8-bit level of a value: clamped to the range, scaled to 0..=255 and
    /// rounded half up, in the order torchvision's `make_grid(normalize=True,
    /// value_range=...)` and `save_image` compute it. NaN is black: it has no
    /// level, and the clamp would otherwise keep it NaN.
    fn level(self, v: f32) -> u8 {
        if v.is_nan() {
            return 0;
        }
        let unit = (v.clamp(self.lo, self.hi) - self.lo) / (self.hi - self.lo);
        // In 0..=255.5 after the clamp; the cast cannot wrap.
        (unit * 255.0 + 0.5).floor().min(255.0) as u8
    }
}

impl std::fmt::Display for ValueRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{},{}", self.lo, self.hi)
    }
}

impl std::str::FromStr for ValueRange {
    type Err = Error;

    /// Parses `LO,HI` (e.g. `0,1`, `-1,1`, `0,255`).
    fn from_str(s: &str) -> Result<ValueRange, Error> {
        let invalid = |reason: &str| Error::ValueRange { range: s.into(), reason: reason.into() };
        let (lo, hi) = s.split_once(',').ok_or_else(|| invalid("expected LO,HI, e.g. 0,1 or -1,1"))?;
        let number = |t: &str| t.trim().parse::<f32>().map_err(|_| invalid(&format!("`{}` is not a number", t.trim())));
        // The error names the range as written, not as the floats print.
        ValueRange::new(number(lo)?, number(hi)?).map_err(|e| match e {
            Error::ValueRange { reason, .. } => Error::ValueRange { range: s.into(), reason },
            e => e,
        })
    }
}

/// What [`image_info`] reads from a PNG's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageInfo {
    /// Pixels per row.
    pub width: u32,
    /// Rows.
    pub height: u32,
    /// The file's own channels after expanding palettes and transparency
    /// chunks: 1 gray, 2 gray + alpha, 3 RGB, 4 RGBA.
    pub channels: usize,
}

impl ImageInfo {
    /// The channel count [`read_image`] gives without a `channels` request:
    /// the file's own with any alpha dropped (1 or 3).
    pub fn default_channels(&self) -> usize {
        match self.channels {
            1 | 2 => 1,
            _ => 3,
        }
    }
}

/// Whether `path` has the extension of an image format (`.png`, `.jpg`, ...,
/// case-insensitive): how the command line tells images from `.npy` files.
/// Only PNG decodes; [`read_image`] explains for the others.
pub fn is_image_path(path: &Path) -> bool {
    const EXTENSIONS: [&str; 9] = ["png", "apng", "jpg", "jpeg", "gif", "bmp", "webp", "tif", "tiff"];
    path.extension().and_then(|e| e.to_str()).is_some_and(|e| EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// Reads a PNG's header (size and channels) without decoding its pixels, e.g.
/// to check the tensor it decodes to against a memory limit first.
pub fn image_info(path: impl AsRef<Path>) -> Result<ImageInfo, Error> {
    let path = path.as_ref();
    let reader = open_png(path)?;
    let info = reader.info();
    Ok(ImageInfo { width: info.width, height: info.height, channels: output_channels(&reader) })
}

/// Reads a PNG into a float32 tensor `[1, C, H, W]`, each level mapped onto
/// `range` (`0..=255`, or `0..=65535` for a 16-bit file, to `lo..=hi`).
///
/// `C` is `channels` when given (1, 3 or 4), converting as PIL's `convert`
/// does: gray is copied into R, G and B; RGB becomes gray by ITU-R 601 luma
/// `0.299 R + 0.587 G + 0.114 B` (PIL's `"L"` and torchvision's
/// `rgb_to_grayscale` weights, without PIL's rounding to a level); alpha is
/// dropped (not composited), and a missing one is opaque. Without `channels`,
/// `C` is the file's own with alpha dropped: 1 for gray, 3 for color.
///
/// Errors ([`Error::Image`]) for a file that is not a PNG (a JPEG, GIF, ... is
/// named as such), is truncated or corrupt, or is over [`MAX_PIXELS`]; a
/// `channels` other than 1, 3 or 4 is refused too.
pub fn read_image(path: impl AsRef<Path>, range: ValueRange, channels: Option<usize>) -> Result<Tensor, Error> {
    let path = path.as_ref();
    let err = |message: String| Error::Image { path: path.display().to_string(), message };
    if let Some(c) = channels.filter(|c| ![1, 3, 4].contains(c)) {
        return Err(err(format!("cannot read as {c} channels: an image has 1 (gray), 3 (RGB) or 4 (RGBA)")));
    }
    let mut reader = open_png(path)?;
    let (width, height) = (reader.info().width, reader.info().height);
    let from = output_channels(&reader);
    let to = channels.unwrap_or(if from <= 2 { 1 } else { 3 });
    let (_, depth) = reader.output_color_type();
    let wide = depth == png::BitDepth::Sixteen;
    let len = reader.output_buffer_size().ok_or_else(|| err(format!("a {width}x{height} image is too large")))?;
    let mut buf = zeroed::<u8>(path, len)?;
    let frame = reader.next_frame(&mut buf).map_err(|e| decoding_error(path, e))?;
    // The frame's own size: an animated PNG's first frame is the image.
    let (w, h) = (frame.width as usize, frame.height as usize);
    let line = frame.line_size;
    let max = if wide { 65535.0 } else { 255.0 };
    let level = |row: &[u8], i: usize| -> u16 {
        if wide {
            u16::from_be_bytes([row[2 * i], row[2 * i + 1]])
        } else {
            u16::from(row[i])
        }
    };
    let plane = w * h;
    let mut data = zeroed::<f32>(path, to * plane)?;
    for y in 0..h {
        let row = &buf[y * line..(y + 1) * line];
        for x in 0..w {
            let px = |c: usize| level(row, x * from + c);
            let out = y * w + x;
            match (from, to) {
                (1 | 2, 1 | 3 | 4) => {
                    let g = range.value(px(0), max);
                    for c in 0..to.min(3) {
                        data[c * plane + out] = g;
                    }
                }
                (_, 1) => {
                    let luma = 0.299 * f32::from(px(0)) + 0.587 * f32::from(px(1)) + 0.114 * f32::from(px(2));
                    data[out] = range.lo + (range.hi - range.lo) * (luma / max);
                }
                (_, _) => {
                    for c in 0..3 {
                        data[c * plane + out] = range.value(px(c), max);
                    }
                }
            }
            if to == 4 {
                // Alpha is the file's last channel (gray + alpha, RGBA), else opaque.
                let a = if from == 2 || from == 4 { px(from - 1) } else { max as u16 };
                data[3 * plane + out] = range.value(a, max);
            }
        }
    }
    Tensor::from_shape_vec(vec![1, to, h, w], data).map_err(|e| err(format!("internal shape error: {e}")))
}

/// The size of the PNG that [`write_image_grid`] writes for a tensor of
/// `shape`, or why it cannot be written (`path` only names the file in the
/// error): the check a caller can make before computing the tensor.
///
/// ```
/// use kiln::image::{grid_size, GridSize};
/// // 3 tiles of 4x5: 2 columns, 2 rows, padding 2 around each.
/// assert_eq!(grid_size("y.png", &[3, 1, 4, 5])?, GridSize { width: 2 * (5 + 2) + 2, height: 2 * (4 + 2) + 2, channels: 1, columns: 2 });
/// let e = grid_size("y.png", &[2, 64, 8, 8]).unwrap_err();
/// assert!(e.to_string().contains("64 channels"), "{e}");
/// # Ok::<(), kiln::Error>(())
/// ```
pub fn grid_size(path: impl AsRef<Path>, shape: &[usize]) -> Result<GridSize, Error> {
    let err = |message: String| Error::Image { path: path.as_ref().display().to_string(), message };
    let (n, c, h, w) = match *shape {
        [n, c, h, w] => (n, c, h, w),
        [c, h, w] => (1, c, h, w),
        _ => {
            return Err(err(format!(
                "a tensor of shape {shape:?} is not an image: an image is [N, C, H, W] or [C, H, W], this has rank {}",
                shape.len()
            )))
        }
    };
    if ![1, 3, 4].contains(&c) {
        return Err(err(format!(
            "a tensor of shape {shape:?} is not an image: it has {c} channels (dim {}), an image has 1 (gray), \
             3 (RGB) or 4 (RGBA)",
            shape.len() - 3
        )));
    }
    if n == 0 || h == 0 || w == 0 {
        return Err(err(format!("a tensor of shape {shape:?} is empty: there is no image to write")));
    }
    let columns = ceil_sqrt(n as u64);
    let (width, height) = if n == 1 {
        // torchvision's make_grid returns a single image unpadded.
        (Some(w as u64), Some(h as u64))
    } else {
        let rows = (n as u64).div_ceil(columns);
        let pad = GRID_PADDING as u64;
        let side = |count: u64, size: usize| (size as u64).checked_add(pad)?.checked_mul(count)?.checked_add(pad);
        (side(columns, w), side(rows, h))
    };
    let too_large = || {
        err(format!(
            "a tensor of shape {shape:?} makes an image of over {MAX_PIXELS} pixels (the limit): write it as .npy instead"
        ))
    };
    let (Some(width), Some(height)) = (width, height) else { return Err(too_large()) };
    if width.checked_mul(height).is_none_or(|p| p > MAX_PIXELS) {
        return Err(too_large());
    }
    // Both are at most MAX_PIXELS = 2^31, so they fit PNG's u32 sizes.
    Ok(GridSize {
        width: u32::try_from(width).map_err(|_| too_large())?,
        height: u32::try_from(height).map_err(|_| too_large())?,
        channels: c,
        columns: columns as usize,
    })
}

/// The layout [`grid_size`] computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GridSize {
    /// The PNG's width in pixels.
    pub width: u32,
    /// Its height.
    pub height: u32,
    /// Its channels: 1 gray, 3 RGB, 4 RGBA.
    pub channels: usize,
    /// Tiles per row: `ceil(sqrt(N))` (1 for a single image).
    pub columns: usize,
}

/// Writes a `[N, C, H, W]` or `[C, H, W]` tensor (`C` = 1 gray, 3 RGB, 4 RGBA)
/// as one 8-bit PNG. Values are clamped to `range` and mapped to `0..=255`,
/// rounding half up (`0.5` in `0,1` is 128); NaN is 0.
///
/// A batch of `N > 1` becomes a grid as torchvision's `make_grid(t,
/// nrow=ceil(sqrt(N)), padding=2)`: tile `k` at row `k / cols`, column `k %
/// cols`, its top-left pixel at `(2 + row·(H + 2), 2 + col·(W + 2))`; the
/// padding lines (around the tiles too) and unused tiles are 0 in every
/// channel, i.e. black (transparent for RGBA). A single image is written
/// without padding. Shapes that are not images or exceed [`MAX_PIXELS`] are
/// refused ([`grid_size`]) before the file is created.
pub fn write_image_grid(path: impl AsRef<Path>, tensor: &Tensor, range: ValueRange) -> Result<(), Error> {
    let path = path.as_ref();
    let size = grid_size(path, tensor.shape())?;
    let pixels = grid_pixels(tensor, range, size);
    let color = match size.channels {
        1 => png::ColorType::Grayscale,
        3 => png::ColorType::Rgb,
        _ => png::ColorType::Rgba,
    };
    let file = File::create(path).map_err(|source| Error::Io { path: path.display().to_string(), source })?;
    let mut encoder = png::Encoder::new(BufWriter::new(file), size.width, size.height);
    encoder.set_color(color);
    encoder.set_depth(png::BitDepth::Eight);
    let encoding = |e: png::EncodingError| match e {
        png::EncodingError::IoError(source) => Error::Io { path: path.display().to_string(), source },
        e => Error::Image { path: path.display().to_string(), message: format!("cannot encode the PNG: {e}") },
    };
    let mut writer = encoder.write_header().map_err(encoding)?;
    writer.write_image_data(&pixels).map_err(encoding)?;
    writer.finish().map_err(encoding)
}

/// The interleaved 8-bit pixels of the grid, row by row. `size` is
/// [`grid_size`] of the tensor's shape, so every index below is in bounds.
fn grid_pixels(tensor: &Tensor, range: ValueRange, size: GridSize) -> Vec<u8> {
    let shape = tensor.shape();
    let (n, c, h, w) = match *shape {
        [n, c, h, w] => (n, c, h, w),
        [c, h, w] => (1, c, h, w),
        _ => (0, 0, 0, 0),
    };
    let width = size.width as usize;
    let mut pixels = vec![0u8; width * size.height as usize * c];
    let pad = if n == 1 { 0 } else { GRID_PADDING };
    // A standard-layout view reads the values in NCHW order whatever the
    // tensor's strides; an owned copy only when they are not.
    let values = tensor.as_standard_layout();
    let Some(values) = values.as_slice() else { return pixels };
    for k in 0..n {
        let (row, col) = (k / size.columns, k % size.columns);
        let (top, left) = (pad + row * (h + pad), pad + col * (w + pad));
        for ch in 0..c {
            let plane = &values[(k * c + ch) * h * w..][..h * w];
            for y in 0..h {
                for x in 0..w {
                    pixels[((top + y) * width + left + x) * c + ch] = range.level(plane[y * w + x]);
                }
            }
        }
    }
    pixels
}

/// A zeroed buffer, or an error instead of an abort when the allocator
/// refuses it (a large image within [`MAX_PIXELS`] can still need GiBs).
fn zeroed<T: Clone + Default>(path: &Path, len: usize) -> Result<Vec<T>, Error> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| Error::Image {
        path: path.display().to_string(),
        message: format!("cannot allocate {} MiB to decode it", len.saturating_mul(std::mem::size_of::<T>()) >> 20),
    })?;
    v.resize(len, T::default());
    Ok(v)
}

/// The smallest `c` with `c·c >= n` (1 for `n <= 1`).
fn ceil_sqrt(n: u64) -> u64 {
    let r = n.isqrt();
    if r * r < n {
        r + 1
    } else {
        r.max(1)
    }
}

/// Opens a PNG up to its first image data, after checking the signature so
/// that a JPEG or an `.npy` file is named instead of reported as a bad PNG.
fn open_png(path: &Path) -> Result<png::Reader<BufReader<File>>, Error> {
    let err = |message: String| Error::Image { path: path.display().to_string(), message };
    let io = |source| Error::Io { path: path.display().to_string(), source };
    let mut head = [0u8; 12];
    let got = File::open(path).and_then(|f| f.take(12).read(&mut head)).map_err(io)?;
    let head = &head[..got];
    if !head.starts_with(b"\x89PNG\r\n\x1a\n") {
        let kind = if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some("a JPEG")
        } else if head.starts_with(b"GIF8") {
            Some("a GIF")
        } else if head.starts_with(b"BM") {
            Some("a BMP")
        } else if head.starts_with(b"RIFF") && head.get(8..12) == Some(b"WEBP") {
            Some("a WebP")
        } else if head.starts_with(b"II*\0") || head.starts_with(b"MM\0*") {
            Some("a TIFF")
        } else if head.starts_with(b"\x93NUMPY") {
            return Err(err("is a .npy file, not an image: give it a .npy extension".into()));
        } else {
            None
        };
        return Err(match kind {
            Some(kind) => err(format!(
                "is {kind} image; Kiln reads PNG only: convert it first (e.g. `convert in.jpg out.png`, or PIL's \
                 `Image.open(p).save(\"out.png\")`)"
            )),
            None if head.is_empty() => err("is empty, not a PNG image".into()),
            None => err("is not a PNG image (its first bytes are not the PNG signature)".into()),
        });
    }
    let file = File::open(path).map_err(io)?;
    let mut decoder = png::Decoder::new(BufReader::new(file));
    // Palettes become RGB(A), low bit depths 8 bits, tRNS an alpha channel;
    // 16-bit levels are kept (the range mapping uses all of them).
    decoder.set_transformations(png::Transformations::EXPAND);
    let reader = decoder.read_info().map_err(|e| decoding_error(path, e))?;
    let info = reader.info();
    let pixels = u64::from(info.width) * u64::from(info.height);
    if pixels > MAX_PIXELS {
        return Err(err(format!("is {}x{} pixels, over the limit of {MAX_PIXELS} pixels", info.width, info.height)));
    }
    Ok(reader)
}

/// The channels the reader produces with `EXPAND`: gray, gray + alpha, RGB or RGBA.
fn output_channels<R: std::io::BufRead + std::io::Seek>(reader: &png::Reader<R>) -> usize {
    match reader.output_color_type().0 {
        png::ColorType::Grayscale => 1,
        png::ColorType::GrayscaleAlpha => 2,
        png::ColorType::Rgb => 3,
        // Indexed does not survive EXPAND; counted as RGBA, the widest, if it did.
        png::ColorType::Rgba | png::ColorType::Indexed => 4,
    }
}

/// A decoding failure as one line: a short read is a truncated file.
fn decoding_error(path: &Path, e: png::DecodingError) -> Error {
    let message = match e {
        png::DecodingError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            "is a truncated PNG (the file ends before its image data does)".to_string()
        }
        png::DecodingError::IoError(e) => return Error::Io { path: path.display().to_string(), source: e },
        png::DecodingError::LimitsExceeded => {
            "is a PNG too large to decode (its rows exceed the decoder's limit)".into()
        }
        e => format!("is not a valid PNG: {e}"),
    };
    Error::Image { path: path.display().to_string(), message }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(shape: &[usize], values: Vec<f32>) -> Tensor {
        Tensor::from_shape_vec(shape.to_vec(), values).unwrap()
    }

    fn temp(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("kiln-image-unit-{}-{name}", std::process::id()))
    }

    #[test]
    fn levels_round_half_up_and_clamp() {
        let r = ValueRange::UNIT;
        assert_eq!(r.level(0.5), 128, "127.5 rounds up");
        assert_eq!(r.level(0.0), 0);
        assert_eq!(r.level(1.0), 255);
        assert_eq!(r.level(2.0 / 255.0), 2);
        assert_eq!(r.level(-3.0), 0);
        assert_eq!(r.level(7.0), 255);
        assert_eq!(r.level(f32::INFINITY), 255);
        assert_eq!(r.level(f32::NEG_INFINITY), 0);
        assert_eq!(r.level(f32::NAN), 0);
        let s = ValueRange::SIGNED;
        assert_eq!(s.level(-1.0), 0);
        assert_eq!(s.level(0.0), 128, "(0 + 1) / 2 · 255 = 127.5 → 128");
        assert_eq!(s.level(1.0), 255);
        assert_eq!(s.level(-0.5), 64, "0.25 · 255 = 63.75 → 64");
    }

    #[test]
    fn values_match_torchvision() {
        // ToTensor: level / 255; Normalize(0.5, 0.5): 2·x − 1.
        for level in [0u16, 1, 127, 128, 200, 255] {
            let unit = f32::from(level) / 255.0;
            assert_eq!(ValueRange::UNIT.value(level, 255.0), unit);
            assert_eq!(ValueRange::SIGNED.value(level, 255.0), (unit - 0.5) / 0.5);
        }
        let r = ValueRange::new(-2.0, 6.0).unwrap();
        assert_eq!(r.value(0, 255.0), -2.0);
        assert_eq!(r.value(255, 255.0), 6.0);
    }

    #[test]
    fn invalid_ranges_are_refused() {
        for text in ["1,0", "0,0", "nan,1", "0,inf", "-3e38,3e38", "0", "a,1", "0,1,2"] {
            let e = text.parse::<ValueRange>().unwrap_err();
            assert!(matches!(e, Error::ValueRange { .. }), "{text}: {e}");
            assert_eq!(e.kind(), crate::ErrorKind::InvalidInput);
            assert!(e.to_string().contains(text), "{e}");
        }
        assert_eq!(" -1 , 1 ".parse::<ValueRange>().unwrap(), ValueRange::SIGNED);
        assert_eq!(ValueRange::new(0.0, 255.0).unwrap().to_string(), "0,255");
    }

    #[test]
    fn grid_layout_for_three_tiles() {
        // Tiles 2x3 (H x W) of constant value k+1 (levels 1, 2, 3 in range 0,255).
        let (h, w) = (2, 3);
        let mut v = Vec::new();
        for k in 0..3 {
            v.extend(std::iter::repeat_n(k as f32 + 1.0, h * w));
        }
        let t = tensor(&[3, 1, h, w], v);
        let size = grid_size("t.png", t.shape()).unwrap();
        assert_eq!((size.width, size.height, size.columns), (2 * (3 + 2) + 2, 2 * (2 + 2) + 2, 2));
        let px = grid_pixels(&t, ValueRange::new(0.0, 255.0).unwrap(), size);
        let width = size.width as usize;
        let at = |y: usize, x: usize| px[y * width + x];
        // Tile 0 at (2, 2), tile 1 at (2, 7), tile 2 at (6, 2); the fourth slot (6, 7) is empty.
        for (k, (top, left)) in [(2, 2), (2, 7), (6, 2)].into_iter().enumerate() {
            for y in 0..h {
                for x in 0..w {
                    assert_eq!(at(top + y, left + x), k as u8 + 1, "tile {k} at ({}, {})", top + y, left + x);
                }
            }
        }
        let tiles = 3 * h * w;
        assert_eq!(px.iter().filter(|&&p| p != 0).count(), tiles, "everything else is padding or empty");
        // The padding lines: the border, the column between tiles, the row between tiles.
        for y in 0..size.height as usize {
            assert_eq!((at(y, 0), at(y, 1), at(y, 5), at(y, 6), at(y, 10), at(y, 11)), (0, 0, 0, 0, 0, 0));
        }
        for x in 0..width {
            assert_eq!((at(0, x), at(1, x), at(4, x), at(5, x), at(8, x), at(9, x)), (0, 0, 0, 0, 0, 0));
        }
    }

    #[test]
    fn grid_columns_are_near_square() {
        for (n, cols) in [(1, 1), (2, 2), (4, 2), (5, 3), (9, 3), (10, 4), (64, 8), (65, 9)] {
            assert_eq!(grid_size("g.png", &[n, 3, 4, 4]).unwrap().columns, cols, "N = {n}");
        }
        // One image: unpadded, as torchvision's make_grid.
        assert_eq!(grid_size("g.png", &[3, 5, 7]).unwrap(), GridSize { width: 7, height: 5, channels: 3, columns: 1 });
    }

    #[test]
    fn non_image_shapes_and_absurd_sizes_are_refused() {
        let msg = |shape: &[usize]| grid_size("o.png", shape).unwrap_err().to_string();
        assert!(msg(&[2, 16]).contains("[2, 16] is not an image") && msg(&[2, 16]).contains("rank 2"));
        assert!(msg(&[1, 2, 8, 8]).contains("2 channels (dim 1)"), "{}", msg(&[1, 2, 8, 8]));
        assert!(msg(&[5, 8, 8]).contains("5 channels (dim 0)"));
        assert!(msg(&[0, 3, 8, 8]).contains("empty"));
        assert!(msg(&[1, 3, 65536, 65536]).contains("over 2147483648 pixels"));
        assert!(msg(&[usize::MAX, 3, usize::MAX, 2]).contains("over 2147483648 pixels"));
        assert!(msg(&[4, 1, usize::MAX / 2, 1]).contains("over"));
        let e = grid_size("o.png", &[7]).unwrap_err();
        assert!(matches!(&e, Error::Image { path, .. } if path == "o.png"));
        assert_eq!(e.kind(), crate::ErrorKind::InvalidInput);
    }

    #[test]
    fn gray_and_rgb_convert_both_ways() {
        // A 1x2 RGB image: pure red and mid gray (level 128 is 128/255).
        let p = temp("rgb.png");
        let t = tensor(&[1, 3, 1, 2], vec![1.0, 128.0 / 255.0, 0.0, 128.0 / 255.0, 0.0, 128.0 / 255.0]);
        write_image_grid(&p, &t, ValueRange::UNIT).unwrap();
        assert_eq!(read_image(&p, ValueRange::UNIT, None).unwrap(), t);
        let gray = read_image(&p, ValueRange::UNIT, Some(1)).unwrap();
        assert_eq!(gray.shape(), [1, 1, 1, 2]);
        assert!((gray[[0, 0, 0, 0]] - 0.299).abs() < 1e-6, "luma of red: {}", gray[[0, 0, 0, 0]]);
        assert!((gray[[0, 0, 0, 1]] - 128.0 / 255.0).abs() < 1e-6, "luma of gray is itself");
        let rgba = read_image(&p, ValueRange::SIGNED, Some(4)).unwrap();
        assert_eq!(rgba.shape(), [1, 4, 1, 2]);
        assert_eq!((rgba[[0, 0, 0, 0]], rgba[[0, 1, 0, 0]], rgba[[0, 3, 0, 0]]), (1.0, -1.0, 1.0), "opaque alpha");

        let p = temp("gray.png");
        let g = tensor(&[1, 1, 1, 2], vec![0.0, 51.0 / 255.0]);
        write_image_grid(&p, &g, ValueRange::UNIT).unwrap();
        let rgb = read_image(&p, ValueRange::UNIT, Some(3)).unwrap();
        assert_eq!(rgb.shape(), [1, 3, 1, 2]);
        for c in 0..3 {
            assert_eq!((rgb[[0, c, 0, 0]], rgb[[0, c, 0, 1]]), (0.0, 51.0 / 255.0));
        }
        let e = read_image(&p, ValueRange::UNIT, Some(2)).unwrap_err();
        assert!(e.to_string().contains("cannot read as 2 channels"), "{e}");
    }

    #[test]
    fn rgba_drops_alpha_unless_asked() {
        let p = temp("rgba.png");
        let t = tensor(&[4, 1, 1], vec![0.0, 1.0, 0.0, 0.2]);
        write_image_grid(&p, &t, ValueRange::UNIT).unwrap();
        assert_eq!(image_info(&p).unwrap(), ImageInfo { width: 1, height: 1, channels: 4 });
        let rgb = read_image(&p, ValueRange::UNIT, None).unwrap();
        assert_eq!(rgb.shape(), [1, 3, 1, 1]);
        assert_eq!(rgb[[0, 1, 0, 0]], 1.0);
        let rgba = read_image(&p, ValueRange::UNIT, Some(4)).unwrap();
        assert_eq!(rgba[[0, 3, 0, 0]], 51.0 / 255.0, "0.2 · 255 = 51");
    }

    #[test]
    fn sixteen_bit_levels_are_kept() {
        let p = temp("16.png");
        let mut e = png::Encoder::new(BufWriter::new(File::create(&p).unwrap()), 2, 1);
        e.set_color(png::ColorType::Grayscale);
        e.set_depth(png::BitDepth::Sixteen);
        let mut w = e.write_header().unwrap();
        w.write_image_data(&[0x00, 0x01, 0xFF, 0xFF]).unwrap();
        w.finish().unwrap();
        let t = read_image(&p, ValueRange::UNIT, None).unwrap();
        assert_eq!(t.as_slice().unwrap(), [1.0 / 65535.0, 1.0]);
    }

    #[test]
    fn non_png_files_are_named() {
        let cases: [(&str, &[u8], &str); 5] = [
            ("j.jpg", b"\xFF\xD8\xFF\xE0\0\x10JFIF", "is a JPEG image; Kiln reads PNG only"),
            ("n.png", b"\x93NUMPY\x01\0", "is a .npy file"),
            ("e.png", b"", "is empty"),
            ("t.png", b"hello, world", "is not a PNG image"),
            ("s.png", b"\x89PNG\r\n\x1a\n", "truncated"),
        ];
        for (name, bytes, want) in cases {
            let p = temp(name);
            std::fs::write(&p, bytes).unwrap();
            let e = read_image(&p, ValueRange::UNIT, None).unwrap_err();
            assert!(e.to_string().contains(want), "{name}: {e}");
            assert_eq!(e.kind(), crate::ErrorKind::InvalidInput);
        }
    }

    #[test]
    fn image_paths_by_extension() {
        assert!(is_image_path(Path::new("a/b.PNG")) && is_image_path(Path::new("x.jpeg")));
        assert!(!is_image_path(Path::new("x.npy")) && !is_image_path(Path::new("png")));
    }
}
