//! External tensor data: files next to the model, named by a tensor's
//! `external_data` entries (`location`, `offset`, `length`; `checksum` ignored).
//!
//! A model file is untrusted, so its `location` must not reach outside the
//! directory the model was loaded from, the rule `onnx.checker` applies: no
//! absolute path, no `..` component, and no symlink that resolves elsewhere
//! (the canonical file path must lie under the canonical model directory).
//! Every size is checked with checked arithmetic against the file's real size
//! and the tensor's expected byte size *before* the buffer is allocated.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

use crate::error::{OnnxError, Result};
use crate::proto::StringStringEntryProto;

/// Reads external data for the tensors of one model, resolving locations
/// against its directory and charging every read to one byte budget.
pub(crate) struct ExternalReader {
    /// The directory as given; `None` when the model came from bytes alone.
    dir: Option<PathBuf>,
    /// `dir` canonicalized on first use (so a model without external data
    /// never touches the file system).
    canonical: Option<PathBuf>,
    /// Bytes still allowed (`Limits::max_external_bytes` minus what was read).
    remaining: u64,
}

/// The parsed `external_data` entries of one tensor.
struct Entries<'a> {
    location: &'a str,
    offset: Option<u64>,
    length: Option<u64>,
}

fn parse_entries<'a>(tensor: &str, entries: &'a [StringStringEntryProto]) -> Result<Entries<'a>> {
    let mut location = None;
    let mut offset = None;
    let mut length = None;
    let err = |loc: &str, reason: String| OnnxError::ExternalData {
        tensor: tensor.to_string(),
        location: loc.to_string(),
        reason,
    };
    for e in entries {
        let loc = location.unwrap_or("");
        match e.key.as_str() {
            "location" | "offset" | "length" if entries.iter().filter(|o| o.key == e.key).count() > 1 => {
                return Err(err(loc, format!("`{}` is given more than once", e.key)));
            }
            "location" => location = Some(e.value.as_str()),
            "offset" | "length" => {
                let v: u64 = e
                    .value
                    .parse()
                    .map_err(|_| err(loc, format!("`{}` is {:?}, not a non-negative integer", e.key, e.value)))?;
                if e.key == "offset" {
                    offset = Some(v);
                } else {
                    length = Some(v);
                }
            }
            // `checksum` and keys of later ONNX versions: not needed to read the data.
            _ => {}
        }
    }
    let location = location.ok_or_else(|| err("", "no `location` entry".to_string()))?;
    Ok(Entries { location, offset, length })
}

/// Why `location` may not be used, if it names something outside the model
/// directory by its spelling alone. Both separators count, so a path written
/// on Windows (`..\weights.bin`, `C:\w.bin`) is refused here as well.
fn refuse_spelling(location: &str) -> Option<&'static str> {
    if location.is_empty() {
        return Some("the location is empty");
    }
    if location.contains('\0') {
        return Some("the location contains a NUL byte");
    }
    let bytes = location.as_bytes();
    let drive = bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':';
    if location.starts_with('/') || location.starts_with('\\') || drive || Path::new(location).has_root() {
        return Some("absolute paths are not allowed; the location must be relative to the model directory");
    }
    if location.split(['/', '\\']).any(|c| c == "..") {
        return Some("`..` components are not allowed; the location must stay inside the model directory");
    }
    if Path::new(location).components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir)) {
        return Some("the location must be a plain relative path");
    }
    None
}

impl ExternalReader {
    /// A reader for a model in `dir` (`None`: loaded from bytes, so any
    /// external data is an error).
    pub(crate) fn new(dir: Option<&Path>, max_bytes: u64) -> Self {
        ExternalReader { dir: dir.map(Path::to_path_buf), canonical: None, remaining: max_bytes }
    }

    /// Reads the `expected` bytes of tensor `tensor` described by `entries`.
    pub(crate) fn read(&mut self, tensor: &str, entries: &[StringStringEntryProto], expected: u64) -> Result<Vec<u8>> {
        let e = parse_entries(tensor, entries)?;
        let err = |reason: String| OnnxError::ExternalData {
            tensor: tensor.to_string(),
            location: e.location.to_string(),
            reason,
        };
        let Some(dir) = &self.dir else {
            return Err(OnnxError::ExternalDataWithoutDirectory { tensor: tensor.to_string() });
        };
        if let Some(reason) = refuse_spelling(e.location) {
            return Err(err(reason.to_string()));
        }
        let canonical_dir = match &self.canonical {
            Some(c) => c.clone(),
            None => {
                let c = dir
                    .canonicalize()
                    .map_err(|io| err(format!("cannot resolve the model directory {}: {io}", dir.display())))?;
                self.canonical = Some(c.clone());
                c
            }
        };
        let joined = canonical_dir.join(e.location);
        let path = joined.canonicalize().map_err(|io| err(format!("cannot open {}: {io}", joined.display())))?;
        if !path.starts_with(&canonical_dir) {
            return Err(err(format!(
                "resolves to {}, outside the model directory {} (a symlink?)",
                path.display(),
                canonical_dir.display()
            )));
        }
        // Refuse devices, FIFOs and directories before opening: opening a FIFO
        // for reading blocks until a writer appears.
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => {}
            Ok(_) => return Err(err(format!("{} is not a regular file", path.display()))),
            Err(io) => return Err(err(format!("cannot stat {}: {io}", path.display()))),
        }
        // Open the canonical path and size it through the handle, so the size
        // checked is the size of the file that is read.
        let mut file = File::open(&path).map_err(|io| err(format!("cannot open {}: {io}", path.display())))?;
        let meta = file.metadata().map_err(|io| err(format!("cannot stat {}: {io}", path.display())))?;
        if !meta.is_file() {
            return Err(err(format!("{} is not a regular file", path.display())));
        }
        let file_len = meta.len();
        let offset = e.offset.unwrap_or(0);
        let length = match e.length {
            Some(l) => l,
            None => file_len
                .checked_sub(offset)
                .ok_or_else(|| err(format!("offset {offset} is beyond the end of the file ({file_len} bytes)")))?,
        };
        let end = offset
            .checked_add(length)
            .ok_or_else(|| err(format!("offset {offset} + length {length} overflows 64 bits")))?;
        if end > file_len {
            return Err(err(format!(
                "offset {offset} + length {length} = {end} is beyond the end of the file ({file_len} bytes)"
            )));
        }
        if length != expected {
            return Err(err(format!("length is {length} bytes, but the tensor's shape and type need {expected}")));
        }
        if length > self.remaining {
            return Err(OnnxError::limit(
                format!("external data read for tensor `{tensor}` (after earlier tensors)"),
                length,
                self.remaining,
            ));
        }
        let len = usize::try_from(length).map_err(|_| err(format!("length {length} does not fit in memory")))?;
        file.seek(SeekFrom::Start(offset)).map_err(|io| err(format!("cannot seek to {offset}: {io}")))?;
        let mut buf = vec![0u8; len];
        file.read_exact(&mut buf).map_err(|io| err(format!("cannot read {length} bytes at {offset}: {io}")))?;
        self.remaining -= length;
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::refuse_spelling;

    #[test]
    fn spellings_that_leave_the_directory_are_refused() {
        for bad in ["", "/etc/passwd", "\\x", "C:\\w.bin", "c:w", "../w", "a/../../w", "a\\..\\w", "..", "a/..", "x\0"]
        {
            assert!(refuse_spelling(bad).is_some(), "{bad:?} accepted");
        }
        for good in ["weights.bin", "./weights.bin", "sub/w.bin", "..w", "w..", "a/.../b"] {
            assert_eq!(refuse_spelling(good), None, "{good:?}");
        }
    }
}
