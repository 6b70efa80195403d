use std::time::Instant;
use attnmap::{capture::Capture, model, source};
fn main() {
    let t = Instant::now();
    let env = source::HubEnv::from_env().unwrap();
    let files = source::resolve(".models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", "main", &env).unwrap();
    let loaded = model::load(&files).unwrap();
    println!("load {:?}", t.elapsed());
    let text = std::fs::read_to_string("/tmp/t128.txt").unwrap();
    let t = Instant::now();
    let input = loaded.tokenizer.encode(&text, None).unwrap();
    println!("encode {:?} {} tokens", t.elapsed(), input.len());
    for _ in 0..2 {
        let t = Instant::now();
        let run = Capture::run(loaded.model.as_ref(), &input, None, &[]).unwrap();
        println!("forward {:?}", t.elapsed());
        std::hint::black_box(run);
    }
}
