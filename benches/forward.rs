//! In-process forward-with-capture time on the real all-MiniLM-L6-v2 at about
//! 19, 128 and 512 tokens (every head's pattern kept, as `dump` does).
//!
//! Run: `scripts/fetch-models.sh && cargo bench --bench forward`.
//! Reference points measured on the project's 2-core machine: transformers
//! (eager, output_attentions) about 7, 20 and 104 ms; a straight candle port
//! about 12, 42 and 236 ms.

use std::path::Path;
use std::time::{Duration, Instant};

use attnmap::capture::Capture;
use attnmap::model;
use attnmap::source::{self, HubEnv};

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(".models/minilm");
    if !dir.join("model.safetensors").is_file() {
        eprintln!("{} is missing: run scripts/fetch-models.sh first", dir.display());
        std::process::exit(2);
    }
    let env = HubEnv::from_env().expect("hub env");
    let files = source::resolve(dir.to_str().expect("utf-8 path"), "main", &env).expect("model folder");
    let start = Instant::now();
    let loaded = model::load(&files).expect("load");
    println!("load (weights + tokenizer): {:.1} ms", start.elapsed().as_secs_f64() * 1e3);
    let sentence = "The WhirlyGigs arrived broken, and the support team never answered my three emails about it. ";
    for target in [19usize, 128, 512] {
        let mut text = String::new();
        let input = loop {
            text.push_str(sentence);
            let input = loaded.tokenizer.encode(&text, None).expect("encode");
            if input.len() >= target {
                let ids_wanted = target.min(input.len());
                // Cut the text down word by word until it has about `target` tokens.
                let mut words: Vec<&str> = text.split_whitespace().collect();
                let mut best = input;
                while best.len() > ids_wanted && words.len() > 1 {
                    words.pop();
                    best = loaded.tokenizer.encode(&words.join(" "), None).expect("encode");
                }
                break best;
            }
        };
        let mut times = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(3);
        while times.len() < 5 || (Instant::now() < deadline && times.len() < 200) {
            let start = Instant::now();
            let run = Capture::run(loaded.model.as_ref(), &input, None, &[]).expect("forward");
            std::hint::black_box(run.capture.dense());
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "forward + capture, {:>3} tokens: median {:.1} ms, min {:.1} ms ({} runs)",
            input.len(),
            times[times.len() / 2],
            times[0],
            times.len()
        );
    }
}
