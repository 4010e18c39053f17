//! External data stays inside the model directory and is size-checked before
//! anything is allocated, as `onnx.checker` requires.

mod common;

use std::path::Path;

use common::{encode, external_tensor, graph, model, temp_dir};
use kiln_onnx::{read_model, OnnxError};

/// Writes `model.onnx` with one external tensor `w` of `dims` into `dir`.
fn write_model(dir: &Path, dims: &[i64], entries: &[(&str, &str)]) -> std::path::PathBuf {
    let path = dir.join("model.onnx");
    std::fs::write(&path, encode(&model(graph(vec![external_tensor("w", dims, entries)])))).expect("write");
    path
}

fn floats(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The model in `dir` must be refused with an external-data error whose
/// message contains `needle`.
fn refused(path: &Path, needle: &str) {
    match read_model(path) {
        Err(e @ OnnxError::ExternalData { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(needle), "expected {needle:?} in: {msg}");
            assert!(msg.contains("tensor `w`"), "the tensor is named: {msg}");
        }
        Err(e) => panic!("wrong error for {needle:?}: {e:?}"),
        Ok(_) => panic!("accepted, expected an error containing {needle:?}"),
    }
}

#[test]
fn data_inside_the_directory_reads() {
    let dir = temp_dir("ok");
    std::fs::create_dir(dir.join("sub")).expect("mkdir");
    std::fs::write(dir.join("sub/w.bin"), [vec![0xee; 8], floats(&[1.0, -2.0, 3.5])].concat()).expect("write");
    let path =
        write_model(&dir, &[3], &[("location", "sub/w.bin"), ("offset", "8"), ("length", "12"), ("checksum", "x")]);
    let m = read_model(&path).expect("reads");
    assert_eq!(m.initializer("w").expect("w").to_f32_vec().expect("f32"), [1.0, -2.0, 3.5]);
    // Without `length`: the rest of the file after `offset`.
    write_model(&dir, &[3], &[("location", "./sub/w.bin"), ("offset", "8")]);
    assert_eq!(read_model(&path).expect("reads").initializer("w").expect("w").dims(), &[3]);
    // A symlink that stays inside the directory is fine.
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(dir.join("sub/w.bin"), dir.join("link.bin")).expect("symlink");
        write_model(&dir, &[3], &[("location", "link.bin"), ("offset", "8")]);
        read_model(&path).expect("an inside symlink reads");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn paths_that_leave_the_directory_are_refused() {
    let root = temp_dir("escape");
    let dir = root.join("model");
    std::fs::create_dir(&dir).expect("mkdir");
    // A real file outside, so a refusal is the path rule, not a missing file.
    let secret = root.join("secret.bin");
    std::fs::write(&secret, floats(&[7.0; 4])).expect("write");
    let abs = secret.to_str().expect("utf-8 temp path");

    let path = write_model(&dir, &[4], &[("location", abs)]);
    refused(&path, "absolute paths are not allowed");
    write_model(&dir, &[4], &[("location", "../secret.bin")]);
    refused(&path, "`..` components are not allowed");
    write_model(&dir, &[4], &[("location", "sub/../../secret.bin")]);
    refused(&path, "`..` components are not allowed");
    write_model(&dir, &[4], &[("location", "..\\secret.bin")]);
    refused(&path, "`..` components are not allowed");
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(&secret, dir.join("escape.bin")).expect("symlink");
        write_model(&dir, &[4], &[("location", "escape.bin")]);
        refused(&path, "outside the model directory");
        std::os::unix::fs::symlink(&root, dir.join("up")).expect("symlink");
        write_model(&dir, &[4], &[("location", "up/secret.bin")]);
        refused(&path, "outside the model directory");
    }
    write_model(&dir, &[4], &[("location", "missing.bin")]);
    refused(&path, "cannot open");
    write_model(&dir, &[4], &[("offset", "0")]);
    refused(&path, "no `location` entry");
    std::fs::create_dir(dir.join("adir")).expect("mkdir");
    write_model(&dir, &[0], &[("location", "adir")]);
    refused(&path, "not a regular file");
    // A FIFO would block the reader on open; it is refused before that.
    #[cfg(unix)]
    if std::process::Command::new("mkfifo").arg(dir.join("fifo")).status().is_ok_and(|s| s.success()) {
        write_model(&dir, &[4], &[("location", "fifo")]);
        refused(&path, "not a regular file");
    }
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn offsets_and_lengths_are_checked_against_the_file_before_allocating() {
    let dir = temp_dir("sizes");
    std::fs::write(dir.join("w.bin"), floats(&[1.0, 2.0, 3.0, 4.0])).expect("write"); // 16 bytes
    let path = write_model(&dir, &[4], &[("location", "w.bin"), ("length", &u64::MAX.to_string())]);
    // A length of 2^64 - 1 would abort on allocation if it were trusted.
    refused(&path, "beyond the end of the file");
    write_model(&dir, &[4], &[("location", "w.bin"), ("offset", &u64::MAX.to_string()), ("length", "2")]);
    refused(&path, "overflows 64 bits");
    write_model(&dir, &[4], &[("location", "w.bin"), ("offset", "17")]);
    refused(&path, "beyond the end of the file");
    write_model(&dir, &[4], &[("location", "w.bin"), ("offset", "4"), ("length", "16")]);
    refused(&path, "beyond the end of the file");
    // In the file, but not the tensor's size.
    write_model(&dir, &[4], &[("location", "w.bin"), ("length", "12")]);
    refused(&path, "need 16");
    // No length: the rest of the file must be exactly the tensor.
    write_model(&dir, &[3], &[("location", "w.bin")]);
    refused(&path, "need 12");
    write_model(&dir, &[4], &[("location", "w.bin"), ("offset", "-1")]);
    refused(&path, "not a non-negative integer");
    write_model(&dir, &[4], &[("location", "w.bin"), ("location", "w.bin")]);
    refused(&path, "more than once");
    // A shape whose byte size is over the tensor limit is refused before the file is looked at.
    write_model(&dir, &[1 << 30, 4], &[("location", "w.bin")]);
    let err = read_model(&path).expect_err("too large");
    assert!(matches!(err, OnnxError::Limit { .. }), "{err:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
