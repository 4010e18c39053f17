//! `kiln run`'s image files: `--input NAME=photo.png` becomes a tensor like an
//! `.npy` file does, and `--output y.png` writes an image-shaped output as a
//! PNG (a grid for a batch), with the value range taken from `--output-range`,
//! the model's last activation, or the values themselves.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kiln::image::{self, ValueRange};
use kiln::runtime::npy;
use kiln::{Graph, Op, Tensor};

/// Reads one `--input` file: an image (by extension, see
/// [`image::is_image_path`]) as `[1, C, H, W]` with its levels mapped onto
/// `range` and `C` converted to `channels` if the model declares it; anything
/// else as `.npy`. Both are refused before decoding if they would not fit in
/// `limit` bytes.
pub fn read_input(path: &Path, range: ValueRange, channels: Option<usize>, limit: u128) -> Result<Tensor, kiln::Error> {
    super::common::check_file_size(path, limit)?;
    if !image::is_image_path(path) {
        return Ok(npy::read(path)?);
    }
    // A PNG compresses well (a flat 50 000² image is a few KiB), so the file
    // size says little: check what the header says it decodes to.
    let info = image::image_info(path)?;
    let c = channels.unwrap_or(info.default_channels());
    let bytes = u128::from(info.width) * u128::from(info.height) * c as u128 * 4;
    if bytes > limit {
        return Err(kiln::Error::Image {
            path: path.display().to_string(),
            message: format!(
                "decodes to a [1, {c}, {}, {}] float32 tensor of {} MiB, over the memory limit of {} MiB (raise it \
                 with --max-memory-mib)",
                info.height,
                info.width,
                bytes >> 20,
                limit >> 20
            ),
        });
    }
    image::read_image(path, range, channels)
}

/// The channel count an image read for graph input `id` is converted to: dim
/// 1 of its declared `[N, C, H, W]` shape when that is an image's (1, 3 or 4),
/// whether or not the other dims are known. Otherwise the image keeps its own
/// channels, and a mismatch is reported with both shapes like any input's.
pub fn declared_channels(graph: &Graph, id: kiln::ir::NodeId) -> Option<usize> {
    match graph.node(id).shape().dims()? {
        [_, c, _, _] => c.known().filter(|c| [1, 3, 4].contains(c)),
        _ => None,
    }
}

/// The channel counts a model's inputs declare (dim 1 of a rank-4 input,
/// when fixed at 1, 3 or 4), by name, for the image `--input` files, which
/// are read before the model because they give its open (JSON `null`, ONNX
/// symbolic) dims. Empty when no input is an image: finding them reads the
/// model once more.
pub fn model_declared_channels(
    model: &Path,
    given: &[String],
    limit: u128,
) -> Result<BTreeMap<String, usize>, kiln::Error> {
    let any_image = given.iter().filter_map(|a| a.split_once('=')).any(|(_, p)| image::is_image_path(Path::new(p)));
    if !any_image {
        return Ok(BTreeMap::new());
    }
    super::common::check_file_size(model, limit)?;
    if !kiln::is_onnx(model) {
        let graph = kiln::load_model(model)?;
        return Ok(graph
            .inputs()
            .iter()
            .filter_map(|&i| declared_channels(&graph, i).map(|c| (graph.node(i).name().to_string(), c)))
            .collect());
    }
    let onnx = kiln::onnx::read_model(model)?;
    Ok(kiln::onnx::convert::declared_inputs(&onnx)
        .into_iter()
        .filter_map(|(name, dims)| match dims[..] {
            [_, kiln::onnx::Dim::Known(c), _, _] if [1, 3, 4].contains(&c) => Some((name, c as usize)),
            _ => None,
        })
        .collect())
}

/// The file output `index` of `count` goes to: `path` itself for one
/// output, else `FILE.<index>.npy` (`FILE.<index>.png` for an image path).
pub fn output_path(path: &Path, index: usize, count: usize) -> PathBuf {
    if count == 1 {
        return path.to_path_buf();
    }
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let ext = match path.extension().and_then(|e| e.to_str()) {
        Some(e) if image::is_image_path(path) => e,
        _ => "npy",
    };
    path.with_file_name(format!("{stem}.{index}.{ext}"))
}

/// Checks, before anything runs, that every output `--output` would write as
/// an image can be one: a `.png` path and an image-shaped output of a
/// writable size. `.npy` outputs need no check.
pub fn check_outputs(graph: &Graph, output: Option<&Path>) -> Result<(), kiln::Error> {
    let Some(path) = output else { return Ok(()) };
    let values = graph.output_values();
    for (i, &id) in values.iter().enumerate() {
        let file = output_path(path, i, values.len());
        if !image::is_image_path(&file) {
            continue;
        }
        let node = graph.node(id);
        let is_png = file.extension().is_some_and(|e| e.eq_ignore_ascii_case("png"));
        if !is_png {
            return Err(kiln::Error::Image {
                path: file.display().to_string(),
                message: "Kiln writes PNG images only: name the output FILE.png (or FILE.npy for the raw values)"
                    .into(),
            });
        }
        let shape = node.shape().as_known().unwrap_or_default();
        image::grid_size(&file, &shape).map_err(|e| match e {
            kiln::Error::Image { path, message } => kiln::Error::Image {
                path,
                message: format!("output `{}`: {message}; write it as .npy instead", node.name()),
            },
            e => e,
        })?;
    }
    Ok(())
}

/// Writes output value `id` to `file`: a PNG for an image path, else `.npy`.
/// An image's value range is `range` (`--output-range`), else the one the
/// model's last activation fixes, else the output's own min..max, which a
/// note on stderr states (so that an image made from an unbounded output is
/// not mistaken for the model's own scale).
pub fn write_output(
    file: &Path,
    tensor: &Tensor,
    graph: &Graph,
    id: kiln::ir::NodeId,
    range: Option<ValueRange>,
) -> Result<(), kiln::Error> {
    if !image::is_image_path(file) {
        return Ok(npy::write(file, tensor)?);
    }
    let range = match range.or_else(|| activation_range(graph, id)) {
        Some(r) => r,
        None => {
            let r = observed_range(tensor);
            eprintln!(
                "note: {}: output `{}` does not end in an activation that bounds it (Tanh, Sigmoid, Hardsigmoid, \
                 Hardtanh); mapping its observed range {} to 0..255 (pass --output-range LO,HI to choose)",
                file.display(),
                graph.node(id).name(),
                r
            );
            r
        }
    };
    image::write_image_grid(file, tensor, range)
}

/// The range the op producing value `id` confines it to, looking through ops
/// that only move or copy values (Identity, Dropout, reshapes, pixel
/// shuffles, crops): `Tanh` → -1,1; `Sigmoid` and `Hardsigmoid` → 0,1;
/// `Hardtanh(min, max)` → min,max.
pub fn activation_range(graph: &Graph, mut id: kiln::ir::NodeId) -> Option<ValueRange> {
    loop {
        match graph.node(id).op() {
            Op::Tanh => return Some(ValueRange::SIGNED),
            Op::Sigmoid | Op::Pointwise { f: kiln::ir::Pointwise::Hardsigmoid } => return Some(ValueRange::UNIT),
            Op::Pointwise { f: kiln::ir::Pointwise::Hardtanh { min_val, max_val } } => {
                return ValueRange::new(*min_val, *max_val).ok()
            }
            Op::Identity
            | Op::Dropout { .. }
            | Op::Dropout2d { .. }
            | Op::Flatten { .. }
            | Op::Unflatten { .. }
            | Op::Reshape { .. }
            | Op::PixelShuffle { .. }
            | Op::Narrow { .. }
            | Op::Output => match graph.operands(id)[..] {
                [operand] => id = operand,
                _ => return None,
            },
            _ => return None,
        }
    }
}

/// The finite values' min..max, widened to one unit around a constant output
/// (which then maps to mid-gray) and `0,1` when no value is finite.
fn observed_range(tensor: &Tensor) -> ValueRange {
    let (lo, hi) = tensor
        .iter()
        .filter(|v| v.is_finite())
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    ValueRange::new(lo, hi).or_else(|_| ValueRange::new(lo - 0.5, lo + 0.5)).unwrap_or(ValueRange::UNIT)
}
