//! In-process forward-with-capture time on the real all-MiniLM-L6-v2 at about
//! 19, 128 and 512 tokens (every head's pattern kept, as `dump` does), side by
//! side with transformers (eager, `output_attentions=True`) on the same token
//! ids and the same number of threads.
//!
//! Run: `scripts/fetch-models.sh && cargo bench --bench forward`.
//! The PyTorch side runs when `$ATTNMAP_PYTHON` (default `python3`) imports
//! torch and transformers (e.g. `ATTNMAP_PYTHON=/work/venv/bin/python`); it is
//! a child process (benches/forward_torch.py) asked for one pass at a time, so
//! the two are interleaved and a loaded machine slows both alike; each pass starts
//! after SETTLE_MS idle, so neither is timed while the other's threads spin. Threads:
//! `RAYON_NUM_THREADS` (candle and attnmap's kernels), else all cores; PyTorch
//! is given the same number. Prints medians and the ratio attnmap / PyTorch, of
//! wall-clock time and of process CPU time (each side's own process; on a
//! machine others are using, the CPU time is the steadier of the two).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use attnmap::capture::Capture;
use attnmap::model;
use attnmap::source::{self, HubEnv};
use attnmap::tokenize::Encoded;

/// transformers in a child process, answering one timed forward pass per request.
struct Torch {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Torch {
    fn start(dir: &Path, threads: usize) -> Result<Self, String> {
        let python = std::env::var("ATTNMAP_PYTHON").unwrap_or_else(|_| "python3".into());
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/forward_torch.py");
        let mut child = Command::new(&python)
            .arg(script)
            .arg(dir)
            .arg(threads.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run {python}: {e}"))?;
        let stdin = child.stdin.take().expect("piped stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        stdout.read_line(&mut line).map_err(|e| e.to_string())?;
        if line.trim() != "ready" {
            let _ = child.kill();
            return Err(if line.is_empty() { format!("{python} exited before loading the model") } else { line.trim().to_string() });
        }
        Ok(Self { child, stdin, stdout })
    }

    /// Wall-clock and CPU milliseconds of one forward pass.
    fn time(&mut self, input: &Encoded) -> (f64, f64) {
        let request = serde_json::json!({"input_ids": input.ids, "token_type_ids": input.type_ids});
        writeln!(self.stdin, "{request}").expect("write to python");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read from python");
        let parsed: Vec<f64> = line.split_whitespace().filter_map(|t| t.parse().ok()).collect();
        match parsed[..] {
            [wall, cpu] => (wall, cpu),
            _ => panic!("python answered {line:?}"),
        }
    }
}

impl Drop for Torch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// This process's CPU time so far, in milliseconds (all its threads).
fn cpu_ms() -> f64 {
    let mut time = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec into the one it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut time) };
    time.tv_sec as f64 * 1e3 + time.tv_nsec as f64 / 1e6
}

/// Idle time before each timed pass, so neither side is timed while the other's worker
/// threads still spin-wait for work (OpenMP's and rayon's both do, for up to milliseconds).
const SETTLE_MS: u64 = 20;

fn median(times: &mut [f64]) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(".models/minilm");
    if !dir.join("model.safetensors").is_file() {
        eprintln!("{} is missing: run scripts/fetch-models.sh first", dir.display());
        std::process::exit(2);
    }
    let threads = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let env = HubEnv::from_env().expect("hub env");
    let files = source::resolve(dir.to_str().expect("utf-8 path"), "main", &env).expect("model folder");
    let start = Instant::now();
    let loaded = model::load(&files).expect("load");
    println!("load (weights + tokenizer): {:.1} ms; {threads} threads each", start.elapsed().as_secs_f64() * 1e3);
    let mut torch = match Torch::start(&dir, threads) {
        Ok(torch) => Some(torch),
        Err(why) => {
            println!("PyTorch side skipped ({why}); set ATTNMAP_PYTHON to a python with torch and transformers");
            None
        }
    };
    let sentence = "The WhirlyGigs arrived broken, and the support team never answered my three emails about it. ";
    for target in [19usize, 128, 512] {
        let mut text = String::new();
        let input = loop {
            text.push_str(sentence);
            let input = loaded.tokenizer.encode(&text, None).expect("encode");
            if input.len() >= target {
                // Cut the text down word by word until it has about `target` tokens.
                let mut words: Vec<&str> = text.split_whitespace().collect();
                let mut best = input;
                while best.len() > target && words.len() > 1 {
                    words.pop();
                    best = loaded.tokenizer.encode(&words.join(" "), None).expect("encode");
                }
                break best;
            }
        };
        let run_ours = || {
            let (start, cpu) = (Instant::now(), cpu_ms());
            let run = Capture::run(loaded.model.as_ref(), &input, None, &[]).expect("forward");
            std::hint::black_box(run.capture.head(0, 0));
            (start.elapsed().as_secs_f64() * 1e3, cpu_ms() - cpu)
        };
        // Warm up both (allocator, thread pools, PyTorch's first-call setup).
        for _ in 0..2 {
            run_ours();
            if let Some(torch) = torch.as_mut() {
                torch.time(&input);
            }
        }
        let (mut ours, mut theirs): (Vec<(f64, f64)>, Vec<(f64, f64)>) = (Vec::new(), Vec::new());
        let deadline = Instant::now() + Duration::from_secs(6);
        while ours.len() < 7 || (Instant::now() < deadline && ours.len() < 200) {
            std::thread::sleep(Duration::from_millis(SETTLE_MS));
            ours.push(run_ours());
            if let Some(torch) = torch.as_mut() {
                std::thread::sleep(Duration::from_millis(SETTLE_MS));
                theirs.push(torch.time(&input));
            }
        }
        let runs = ours.len();
        let medians = |times: &[(f64, f64)]| {
            let (mut wall, mut cpu): (Vec<f64>, Vec<f64>) = times.iter().copied().unzip();
            (median(&mut wall), median(&mut cpu))
        };
        let (ours, ours_cpu) = medians(&ours);
        match theirs.is_empty() {
            true => println!("forward + capture, {:>3} tokens: attnmap median {ours:.2} ms, CPU {ours_cpu:.2} ms ({runs} runs)", input.len()),
            false => {
                let (theirs, theirs_cpu) = medians(&theirs);
                println!(
                    "forward + capture, {:>3} tokens: attnmap median {ours:.2} ms, PyTorch median {theirs:.2} ms, ratio {:.2}x; CPU time {ours_cpu:.2} against {theirs_cpu:.2} ms, ratio {:.2}x ({runs} interleaved runs each)",
                    input.len(),
                    ours / theirs,
                    ours_cpu / theirs_cpu
                );
            }
        }
    }
}
