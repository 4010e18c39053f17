//! `kiln-fuzz`: the supervisor and worker of the fuzz harness.
//!
//! ```text
//! kiln-fuzz --target all|model-json|graph-json|safetensors|npy|onnx|graphs
//!           [--iterations N] [--seconds S] [--seed X] [--corpus DIR] [--out DIR]
//!           [--hang-seconds H]
//! kiln-fuzz --replay FILE...      # run saved inputs (target from the file name)
//! kiln-fuzz --dump-seeds DIR [--target T]   # write the built-in seeds
//! ```
//!
//! The supervisor runs one worker process at a time (itself, with `--worker`)
//! over a range of iterations. Before each input the worker writes it to
//! `<out>/current-<target>.bin` and prints its iteration number, so when the
//! worker dies from a signal, exits unexpectedly or makes no progress for
//! `--hang-seconds`, the supervisor copies that file to `<out>/crashes/`,
//! reports it and starts a new worker at the next iteration. Panics and
//! mismatches are caught inside the worker and saved to `<out>/findings/`.
//! The exit status is 1 if anything was found, 2 on a usage error.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kiln_fuzz::{fuzz_with, read_dir_files, replay, target_of_file, FuzzConfig, Stats, Target};

struct Args {
    targets: Vec<Target>,
    iterations: Option<u64>,
    seconds: Option<f64>,
    seed: u64,
    corpus: PathBuf,
    out: PathBuf,
    hang_seconds: u64,
    worker: bool,
    start: u64,
    replay: Vec<PathBuf>,
    dump_seeds: Option<PathBuf>,
}

const USAGE: &str = "usage: kiln-fuzz --target all|model-json|graph-json|safetensors|npy|onnx|graphs \
[--iterations N] [--seconds S] [--seed X] [--corpus DIR] [--out DIR] [--hang-seconds H]\n       \
kiln-fuzz --replay FILE...";

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        targets: Vec::new(),
        iterations: None,
        seconds: None,
        seed: 0,
        corpus: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/corpus")),
        out: PathBuf::from("fuzz-out"),
        hang_seconds: 120,
        worker: false,
        start: 0,
        replay: Vec::new(),
        dump_seeds: None,
    };
    let mut it = std::env::args().skip(1);
    let value = |it: &mut dyn Iterator<Item = String>, flag: &str| it.next().ok_or(format!("{flag} needs a value"));
    let num = |s: String, flag: &str| s.parse::<u64>().map_err(|_| format!("{flag}: expected a number, got `{s}`"));
    let mut replaying = false;
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--target" => {
                let t = value(&mut it, "--target")?;
                a.targets = if t == "all" {
                    Target::ALL.to_vec()
                } else {
                    vec![Target::parse(&t).ok_or(format!("unknown target `{t}`"))?]
                };
            }
            "--iterations" => a.iterations = Some(num(value(&mut it, "--iterations")?, "--iterations")?),
            "--seconds" => {
                let s = value(&mut it, "--seconds")?;
                a.seconds = Some(s.parse::<f64>().ok().filter(|x| *x >= 0.0).ok_or(format!("--seconds: bad `{s}`"))?);
            }
            "--seed" => a.seed = num(value(&mut it, "--seed")?, "--seed")?,
            "--corpus" => a.corpus = PathBuf::from(value(&mut it, "--corpus")?),
            "--out" => a.out = PathBuf::from(value(&mut it, "--out")?),
            "--hang-seconds" => a.hang_seconds = num(value(&mut it, "--hang-seconds")?, "--hang-seconds")?.max(1),
            "--worker" => a.worker = true,
            "--start" => a.start = num(value(&mut it, "--start")?, "--start")?,
            "--replay" => replaying = true,
            "--dump-seeds" => a.dump_seeds = Some(PathBuf::from(value(&mut it, "--dump-seeds")?)),
            "-h" | "--help" => return Err(String::new()),
            other if replaying && !other.starts_with("--") => a.replay.push(PathBuf::from(other)),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if replaying {
        if a.replay.is_empty() {
            return Err("--replay needs files".into());
        }
        return Ok(a);
    }
    if a.targets.is_empty() && a.dump_seeds.is_none() {
        return Err("--target is required".into());
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("kiln-fuzz: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    if !args.replay.is_empty() {
        return replay_files(&args.replay);
    }
    if let Some(dir) = &args.dump_seeds {
        return dump_seeds(dir, if args.targets.is_empty() { &Target::ALL } else { &args.targets });
    }
    if args.worker {
        return worker(&args);
    }
    supervise(&args)
}

fn replay_files(files: &[PathBuf]) -> ExitCode {
    let mut bad = 0;
    for f in files {
        let name = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let Some(target) = target_of_file(&name) else {
            eprintln!("{}: name does not start with a target (`graphs-`, `jit-npy-`, ...)", f.display());
            bad += 1;
            continue;
        };
        let Ok(bytes) = std::fs::read(f) else {
            eprintln!("{}: cannot read", f.display());
            bad += 1;
            continue;
        };
        match replay(target, &bytes) {
            Ok(o) => println!("{}: {} {:?}", f.display(), target.name(), o),
            Err(k) => {
                bad += 1;
                println!("{}: {} FINDING {}: {}", f.display(), target.name(), k.label(), k.message());
            }
        }
    }
    if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Writes each target's built-in seeds to `<dir>/<target>/builtin-<k>.<ext>`.
fn dump_seeds(dir: &Path, targets: &[Target]) -> ExitCode {
    for &t in targets {
        let d = dir.join(t.name());
        if std::fs::create_dir_all(&d).is_err() {
            eprintln!("kiln-fuzz: cannot create {}", d.display());
            return ExitCode::from(3);
        }
        for (k, seed) in t.builtin_seeds().iter().enumerate() {
            let p = d.join(format!("builtin-{k}.{}", t.extension()));
            if std::fs::write(&p, seed).is_err() {
                eprintln!("kiln-fuzz: cannot write {}", p.display());
                return ExitCode::from(3);
            }
        }
    }
    ExitCode::SUCCESS
}

fn one_line(s: &str) -> String {
    s.replace('\n', " | ")
}

/// Test hook: a worker aborts (SIGABRT) right after announcing this
/// iteration, so the tests can check that the supervisor saves that input.
const SELFTEST_ABORT_ENV: &str = "KILN_FUZZ_SELFTEST_ABORT";

/// The worker: fuzz one target from `--start`, writing each input to disk
/// first and reporting progress on stdout, one line per input.
fn worker(args: &Args) -> ExitCode {
    let target = args.targets[0];
    let end = args.iterations.unwrap_or(u64::MAX);
    let current_path = args.out.join(format!("current-{}.bin", target.name()));
    let findings_dir = args.out.join("findings");
    let (Ok(mut current), Ok(())) = (std::fs::File::create(&current_path), std::fs::create_dir_all(&findings_dir))
    else {
        eprintln!("kiln-fuzz worker: cannot write in {}", args.out.display());
        return ExitCode::from(3);
    };
    let config = FuzzConfig {
        seed: args.seed,
        start: args.start,
        end,
        time_limit: args.seconds.map(Duration::from_secs_f64),
        corpus: read_dir_files(&args.corpus.join(target.name())),
        ..Default::default()
    };
    let stdout = std::io::stdout();
    let abort_at: Option<u64> = std::env::var(SELFTEST_ABORT_ENV).ok().and_then(|v| v.parse().ok());
    let report = fuzz_with(
        target,
        &config,
        |iteration, input, stats| {
            let abort_here = abort_at == Some(iteration);
            // Input first, then the progress line: the supervisor trusts the file.
            let ok = current.seek(SeekFrom::Start(0)).is_ok()
                && current.write_all(input).is_ok()
                && current.set_len(input.len() as u64).is_ok();
            if !ok {
                eprintln!("kiln-fuzz worker: cannot write {}", current_path.display());
            }
            let mut out = stdout.lock();
            let _ = writeln!(out, "I {iteration} {} {} {}", stats.accepted, stats.rejected, stats.findings);
            let _ = out.flush();
            if abort_here {
                // Self-test of crash attribution (see SELFTEST_ABORT_ENV).
                std::process::abort();
            }
        },
        |f| {
            let base = format!("{}-{}-{}", target.name(), f.kind.label(), f.iteration);
            let path = findings_dir.join(format!("{base}.{}", target.extension()));
            let _ = std::fs::write(&path, &f.input);
            let _ = std::fs::write(findings_dir.join(format!("{base}.txt")), f.kind.message());
            let mut out = stdout.lock();
            let _ =
                writeln!(out, "F {} {} {} {}", f.iteration, f.kind.label(), path.display(), one_line(f.kind.message()));
            let _ = out.flush();
        },
    );
    if !report.slow.is_empty() {
        let dir = args.out.join("slow");
        let _ = std::fs::create_dir_all(&dir);
        for (iteration, took, input) in &report.slow {
            let path = dir.join(format!("{}-{iteration}-{}ms.{}", target.name(), took.as_millis(), target.extension()));
            let _ = std::fs::write(path, input);
        }
    }
    let s = &report.stats;
    let mut out = stdout.lock();
    for (k, v) in &s.notes {
        let _ = writeln!(out, "N {v} {}", one_line(k));
    }
    let _ = writeln!(out, "D {} {} {} {}", s.iterations, s.accepted, s.rejected, s.findings);
    let _ = out.flush();
    ExitCode::SUCCESS
}

/// One reported input of the supervisor's summary.
struct Reported {
    label: String,
    path: PathBuf,
    message: String,
}

fn supervise(args: &Args) -> ExitCode {
    let Ok(exe) = std::env::current_exe() else {
        eprintln!("kiln-fuzz: cannot find my own executable");
        return ExitCode::from(3);
    };
    if std::fs::create_dir_all(args.out.join("crashes")).is_err() {
        eprintln!("kiln-fuzz: cannot create {}", args.out.display());
        return ExitCode::from(3);
    }
    let iterations = args.iterations.unwrap_or(if args.seconds.is_some() { u64::MAX } else { 1000 });
    let per_target = args.seconds.map(|s| s / args.targets.len() as f64);
    let mut any = false;
    let mut lines = Vec::new();
    for &target in &args.targets {
        let started = Instant::now();
        let (stats, reported) = supervise_target(args, &exe, target, iterations, per_target);
        let secs = started.elapsed().as_secs_f64();
        let line = format!(
            "{:<12} iterations {:>8}  seconds {:>7.1}  accepted {:>8}  rejected {:>8}  findings {}",
            target.name(),
            stats.iterations,
            secs,
            stats.accepted,
            stats.rejected,
            stats.findings
        );
        println!("{line}");
        for (k, v) in &stats.notes {
            println!("    note: {v} x {k}");
        }
        for r in &reported {
            println!("    {} {}: {}", r.label, r.path.display(), r.message);
        }
        any |= stats.findings > 0;
        lines.push(line);
    }
    if args.targets.len() > 1 {
        println!("summary:");
        for l in &lines {
            println!("  {l}");
        }
    }
    if any {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    let start = text.len().saturating_sub(n);
    let start = (start..text.len()).find(|&i| text.is_char_boundary(i)).unwrap_or(text.len());
    one_line(text[start..].trim())
}

fn supervise_target(
    args: &Args,
    exe: &Path,
    target: Target,
    iterations: u64,
    seconds: Option<f64>,
) -> (Stats, Vec<Reported>) {
    let started = Instant::now();
    let mut stats = Stats::default();
    let mut reported = Vec::new();
    let mut next = 0u64;
    let mut crash_count = 0usize;
    let stderr_path = args.out.join(format!("worker-{}.stderr", target.name()));
    let current = args.out.join(format!("current-{}.bin", target.name()));
    while next < iterations {
        let remaining = seconds.map(|s| s - started.elapsed().as_secs_f64());
        if remaining.is_some_and(|r| r <= 0.0) {
            break;
        }
        let Ok(stderr) = std::fs::File::create(&stderr_path) else { break };
        let mut cmd = Command::new(exe);
        cmd.args(["--worker", "--target", target.name(), "--seed", &args.seed.to_string()])
            .args(["--start", &next.to_string(), "--iterations", &iterations.to_string()])
            .arg("--corpus")
            .arg(&args.corpus)
            .arg("--out")
            .arg(&args.out)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        if let Some(r) = remaining {
            cmd.args(["--seconds", &format!("{r:.3}")]);
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                eprintln!("kiln-fuzz: cannot start a worker: {e}");
                break;
            }
        };
        let Some(out) = child.stdout.take() else { break };
        let (tx, rx) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut last: Option<(u64, Stats)> = None;
        let mut done: Option<Stats> = None;
        let mut notes = BTreeMap::new();
        let mut hung = false;
        loop {
            match rx.recv_timeout(Duration::from_secs(args.hang_seconds)) {
                Ok(line) => {
                    let mut parts = line.splitn(5, ' ');
                    let tag = parts.next().unwrap_or("");
                    let nums: Vec<u64> = line.split(' ').skip(1).take(4).filter_map(|x| x.parse().ok()).collect();
                    match tag {
                        "I" if nums.len() == 4 => {
                            let s = Stats {
                                iterations: nums[0] - next,
                                accepted: nums[1],
                                rejected: nums[2],
                                findings: nums[3],
                                ..Default::default()
                            };
                            last = Some((nums[0], s));
                        }
                        "F" => {
                            let _iter = parts.next();
                            let label = parts.next().unwrap_or("?").to_string();
                            let path = PathBuf::from(parts.next().unwrap_or("?"));
                            let message = parts.next().unwrap_or("").to_string();
                            reported.push(Reported { label, path, message });
                        }
                        "N" => {
                            if let Some((count, key)) = line[2..].split_once(' ') {
                                *notes.entry(key.to_string()).or_insert(0) += count.parse::<u64>().unwrap_or(0);
                            }
                        }
                        "D" if nums.len() == 4 => {
                            done = Some(Stats {
                                iterations: nums[0],
                                accepted: nums[1],
                                rejected: nums[2],
                                findings: nums[3],
                                ..Default::default()
                            });
                        }
                        _ => {}
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    hung = true;
                    // Our own child, by its handle.
                    let _ = child.kill();
                    break;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        let status = child.wait();
        let _ = reader.join();
        let clean = matches!(&status, Ok(s) if s.success());
        match (done, clean, hung) {
            (Some(mut d), true, false) => {
                d.notes = notes;
                stats.merge(&d);
                break;
            }
            _ => {
                let (k, mut s) = last.unwrap_or((next, Stats::default()));
                s.iterations += 1;
                s.findings += 1;
                s.notes = notes;
                stats.merge(&s);
                let why = if hung {
                    format!("no progress for {} s", args.hang_seconds)
                } else {
                    match &status {
                        Ok(st) => match st.signal() {
                            Some(sig) => format!(
                                "killed by signal {sig}{}",
                                if st.core_dumped() { " (core dumped)" } else { "" }
                            ),
                            None => format!("exited with {st}"),
                        },
                        Err(e) => format!("cannot wait: {e}"),
                    }
                };
                let label = if hung { "hang" } else { "crash" };
                let dest =
                    args.out.join("crashes").join(format!("{}-{label}-{k}.{}", target.name(), target.extension()));
                crash_count += 1;
                if std::fs::copy(&current, &dest).is_err() {
                    eprintln!("kiln-fuzz: cannot save {}", dest.display());
                }
                let message = format!("iteration {k}: {why}; worker stderr: {}", tail(&stderr_path, 600));
                let _ = std::fs::write(dest.with_extension("txt"), &message);
                eprintln!("kiln-fuzz: {} {label} at iteration {k}, saved {}", target.name(), dest.display());
                reported.push(Reported { label: label.into(), path: dest, message });
                if crash_count > 200 {
                    eprintln!("kiln-fuzz: {}: too many crashes, stopping this target", target.name());
                    break;
                }
                next = k + 1;
            }
        }
    }
    (stats, reported)
}
