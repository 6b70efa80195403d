//! Writes the scale test's model (a random BERT of 96 layers x 96 heads, 62 MB) into a
//! folder, for benches/scale.sh; tests/integration/scale.rs makes the same one.
//!
//!     cargo run --release --example scale_model -- DIR
//!
//! DIR gets config.json, tokenizer.json and model.safetensors; the text the test dumps
//! (128 tokens) is printed on stdout.

#[path = "../tests/integration/scale_model.rs"]
mod scale_model;

fn main() {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: scale_model DIR");
        std::process::exit(2);
    };
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    scale_model::write(&dir);
    println!("{}", scale_model::text());
}
