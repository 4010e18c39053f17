//! Absurd argument values and resource limits on the command line (issue 12):
//! every one ends in a result or one `error:` line, never a panic, an abort
//! or a hang.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn kiln(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln")).args(args).output().expect("kiln runs")
}

fn example(name: &str) -> String {
    format!("{}/examples/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Exit 1 or 2 (never 101, the panic code, nor a signal), one `error:` line.
fn assert_clean_failure(o: &Output) -> String {
    let err = stderr(o);
    assert!(matches!(o.status.code(), Some(1 | 2)), "expected exit 1 or 2, got {:?}; stderr: {err}", o.status);
    assert!(err.contains("error"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    if o.status.code() == Some(1) {
        assert!(err.starts_with("error: "), "{err}");
        assert_eq!(err.trim_end().lines().count(), 1, "one line expected: {err}");
    }
    err
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kiln-cli-limits-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p.display().to_string()
}

#[test]
fn absurd_thread_counts_are_refused() {
    for t in ["18446744073709551615", "1025", "4294967296"] {
        let err = assert_clean_failure(&kiln(&["run", &example("decoder.json"), "--threads", t]));
        assert!(err.contains("--threads"), "{t}: {err}");
    }
    // Not a number at all: clap's usage error.
    assert_eq!(kiln(&["run", &example("decoder.json"), "--threads", "-1"]).status.code(), Some(2));
}

fn tiny_shapes(dir: &Path) -> String {
    write(
        dir,
        "shapes.json",
        r#"{"shapes": [{"name": "tiny", "input_shape": [1, 4, 3, 3], "out_channels": 2, "kernel_size": 3, "stride": 2,
            "padding": 1, "output_padding": 1, "dilation": 1, "groups": 1, "bias": false, "output_shape": [1, 2, 6, 6], "flops": 2592}]}"#,
    )
}

#[test]
fn bench_timing_arguments_are_validated() {
    let dir = temp_dir("bench");
    let shapes = tiny_shapes(&dir);
    // Zero runs and zero seconds used to index an empty list of timings.
    let o = kiln(&["bench", "--shapes", &shapes, "--threads", "1", "--min-runs", "0", "--min-seconds", "0"]);
    assert!(o.status.success(), "{}", stderr(&o));
    for secs in ["inf", "-1", "NaN", "1e300", "3601"] {
        let arg = format!("--min-seconds={secs}");
        let o = kiln(&["bench", "--shapes", &shapes, "--threads", "1", &arg]);
        let err = assert_clean_failure(&o);
        assert!(err.contains("--min-seconds"), "{secs}: {err}");
    }
    let err = assert_clean_failure(&kiln(&["bench", "--shapes", &shapes, "--min-runs", "18446744073709551615"]));
    assert!(err.contains("--min-runs"), "{err}");
}

#[test]
fn files_over_the_memory_limit_are_refused_before_reading() {
    // The model file itself.
    let err = assert_clean_failure(&kiln(&["run", &example("dcgan.json"), "--max-memory-mib", "0"]));
    assert!(err.contains("memory limit") && err.contains("dcgan.json"), "{err}");
    // A weights file larger than the limit, with a model that fits.
    let dir = temp_dir("weights");
    let big = dir.join("big.safetensors");
    let f = std::fs::File::create(&big).expect("create");
    f.set_len(3 << 20).expect("sparse file");
    let o = kiln(&["run", &example("decoder.json"), "--max-memory-mib", "2", "--weights", &big.display().to_string()]);
    let err = assert_clean_failure(&o);
    assert!(err.contains("big.safetensors") && err.contains("memory limit"), "{err}");
}

#[test]
fn huge_strides_are_refused_quickly() {
    let dir = temp_dir("stride");
    let model = write(
        &dir,
        "stride.json",
        r#"{"inputs": {"x": [1, 1, 2, 2]}, "nodes": [
            {"name": "up", "op": "LazyConvTranspose2d", "args": {"out_channels": 1, "kernel_size": 1, "stride": 16384}}]}"#,
    );
    let t = Instant::now();
    let err = assert_clean_failure(&kiln(&["run", &model, "--threads", "1"]));
    assert!(t.elapsed() < Duration::from_secs(20), "took {:?}", t.elapsed());
    assert!(err.contains("phase pairs"), "{err}");
}
