//! The CI smoke of the fuzz harness: every target runs in-process for a
//! short, bounded number of iterations and must report nothing; every saved
//! reproducer in `regressions/` is replayed and must no longer be a finding
//! (unless it is on the documented known-issue list); and the harness itself
//! is checked to notice a panic, a mismatch and a crashing worker.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use kiln_fuzz::{
    fuzz, fuzz_custom, read_dir_files, replay, run_one, target_of_file, FindingKind, FuzzConfig, Outcome, Target,
};

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Reproducers that are still findings, by file name, with the reason. Each
/// is a bug in `kiln-jit`, reported to its owner; remove the entry once fixed.
/// (The older `jit-graph-json-*` inputs, found against the JIT of 8cbd994,
/// are refused cleanly since f8242b0 and are not listed.) Inputs in
/// `regressions/slow/` are not replayed here: they take minutes.
const KNOWN_ISSUES: &[(&str, &str)] = &[];

/// Iterations per target: enough to exercise every mutator and generator
/// path, small enough that the whole smoke takes well under 30 s in release.
fn budget(t: Target) -> u64 {
    match t {
        Target::ModelJson => 3000,
        Target::GraphJson => 3000,
        Target::Safetensors => 50000,
        Target::Npy => 50000,
        Target::Onnx => 50000,
        Target::Graphs => 150,
    }
}

fn smoke(target: Target) {
    let started = Instant::now();
    let config = FuzzConfig {
        seed: 12,
        start: 0,
        end: budget(target),
        // A safety net for slow machines: the counts above are the real bound.
        time_limit: Some(Duration::from_secs(20)),
        corpus: read_dir_files(&crate_dir().join("corpus").join(target.name())),
        max_per_signature: 3,
    };
    let report = fuzz(target, &config);
    let s = &report.stats;
    eprintln!(
        "{}: {} iterations ({} accepted, {} rejected) in {:.2?}; notes {:?}",
        target.name(),
        s.iterations,
        s.accepted,
        s.rejected,
        started.elapsed(),
        s.notes
    );
    for f in &report.findings {
        eprintln!("  finding at iteration {}: {}: {}", f.iteration, f.kind.label(), f.kind.message());
        eprintln!("  input: {}", String::from_utf8_lossy(&f.input[..f.input.len().min(2000)]));
    }
    assert!(s.iterations > 0, "{}: nothing ran", target.name());
    assert!(s.accepted > 0, "{}: no input was accepted; the corpus or generator is broken", target.name());
    assert!(s.rejected > 0, "{}: no input was rejected; the mutator does nothing", target.name());
    assert!(report.findings.is_empty(), "{}: {} findings", target.name(), report.findings.len());
}

#[test]
fn model_json_smoke() {
    smoke(Target::ModelJson);
}

#[test]
fn graph_json_smoke() {
    smoke(Target::GraphJson);
}

#[test]
fn safetensors_smoke() {
    smoke(Target::Safetensors);
}

#[test]
fn npy_smoke() {
    smoke(Target::Npy);
}

#[test]
fn onnx_smoke() {
    smoke(Target::Onnx);
}

#[test]
fn graphs_smoke() {
    smoke(Target::Graphs);
}

#[test]
fn every_regression_replays_clean() {
    let dir = crate_dir().join("regressions");
    let mut entries: Vec<PathBuf> =
        std::fs::read_dir(&dir).expect("regressions/").filter_map(|e| e.ok()).map(|e| e.path()).collect();
    entries.sort();
    let mut replayed = 0;
    let mut failures = Vec::new();
    for path in entries {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        if !path.is_file() || name.ends_with(".md") || name.ends_with(".txt") {
            continue;
        }
        let target = target_of_file(&name).unwrap_or_else(|| panic!("{name}: no target prefix"));
        let bytes = std::fs::read(&path).expect("readable");
        replayed += 1;
        match replay(target, &bytes) {
            Ok(_) => {}
            Err(_) if KNOWN_ISSUES.iter().any(|(n, _)| *n == name) => eprintln!("{name}: known issue"),
            Err(k) => failures.push(format!("{name}: {}: {}", k.label(), k.message())),
        }
    }
    assert!(replayed > 0, "no regression inputs found");
    assert!(failures.is_empty(), "regressions that are findings again:\n{}", failures.join("\n"));
}

#[test]
fn the_harness_reports_panics_with_message_and_input() {
    let found = run_one(|b| if b.len() > 3 { panic!("boom at {}", b.len()) } else { Outcome::Ok }, b"abcdef");
    match found {
        Err(FindingKind::Panic(m)) => assert!(m.contains("boom at 6") && m.contains("smoke.rs"), "{m}"),
        other => panic!("not reported as a panic: {other:?}"),
    }
    // And in the loop, with the input kept.
    let config = FuzzConfig { end: 400, ..Default::default() };
    let report = fuzz_custom(
        Target::Npy,
        |b| if b.first() == Some(&0x93) && b.len() % 7 == 0 { panic!("seven") } else { Outcome::Ok },
        &config,
        |_, _, _| {},
        |_| {},
    );
    assert!(!report.findings.is_empty(), "the deliberately panicking target was not caught");
    for f in &report.findings {
        assert!(f.input.len() % 7 == 0 && matches!(&f.kind, FindingKind::Panic(m) if m.contains("seven")));
    }
    assert!(report.findings.len() <= config.max_per_signature, "findings are not deduplicated");
    assert_eq!(report.stats.findings as usize, report.stats.iterations as usize - report.stats.accepted as usize);
}

#[test]
fn the_harness_reports_mismatches() {
    let config = FuzzConfig { end: 50, max_per_signature: 100, ..Default::default() };
    let report = fuzz_custom(
        Target::ModelJson,
        |_| Outcome::Mismatch("jit says 1, interpreter 2".into()),
        &config,
        |_, _, _| {},
        |_| {},
    );
    assert_eq!(report.findings.len(), 50);
    assert!(report.findings.iter().all(|f| f.kind == FindingKind::Mismatch("jit says 1, interpreter 2".into())));
    // Rejections are not findings.
    let report = fuzz_custom(Target::ModelJson, |_| Outcome::Rejected("bad".into()), &config, |_, _, _| {}, |_| {});
    assert!(report.findings.is_empty());
    assert_eq!(report.stats.rejected, 50);
}

#[test]
fn inputs_are_reproducible_from_seed_and_iteration() {
    let pool = Target::Npy.builtin_seeds();
    for i in 0..200 {
        let a = kiln_fuzz::input_for(Target::Npy, 5, i, &pool, pool.len());
        let b = kiln_fuzz::input_for(Target::Npy, 5, i, &pool, pool.len());
        assert_eq!(a, b);
    }
    let g = kiln_fuzz::input_for(Target::Graphs, 5, 7, &[], 0);
    assert_eq!(g, kiln_fuzz::input_for(Target::Graphs, 5, 7, &[], 0));
}

#[test]
fn the_supervisor_saves_the_input_of_a_crashing_worker() {
    let out = std::env::temp_dir().join(format!("kiln-fuzz-smoke-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_kiln-fuzz"))
        .args(["--target", "npy", "--iterations", "30", "--out"])
        .arg(&out)
        .env("KILN_FUZZ_SELFTEST_ABORT", "17")
        .output()
        .expect("runs kiln-fuzz");
    let stdout = String::from_utf8_lossy(&status.stdout);
    assert_eq!(status.status.code(), Some(1), "a finding must fail the run:\n{stdout}");
    assert!(stdout.contains("iterations       30"), "the run continues after the crash:\n{stdout}");
    assert!(stdout.contains("findings 1") && stdout.contains("signal 6"), "{stdout}");
    let saved = out.join("crashes").join("npy-crash-17.npy");
    let bytes = std::fs::read(&saved).unwrap_or_else(|e| panic!("{}: {e}\n{stdout}", saved.display()));
    let pool: Vec<Vec<u8>> = Target::Npy
        .builtin_seeds()
        .into_iter()
        .chain(read_dir_files(&crate_dir().join("corpus").join("npy")))
        .collect();
    // The pool grows while fuzzing, so compare with a fresh run of iterations 0..=17.
    let mut seen = None;
    let config =
        FuzzConfig { end: 18, corpus: pool[Target::Npy.builtin_seeds().len()..].to_vec(), ..Default::default() };
    kiln_fuzz::fuzz_with(
        Target::Npy,
        &config,
        |i, b, _| {
            if i == 17 {
                seen = Some(b.to_vec())
            }
        },
        |_| {},
    );
    assert_eq!(Some(bytes), seen, "the saved input is not iteration 17's");
    let _ = std::fs::remove_dir_all(&out);
}
