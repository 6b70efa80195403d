//! attnmap as a library: run a model once, keep every head's pattern, and list
//! the heads that put most of their weight on the first token (the [CLS] /
//! BOS "sink" many heads fall back to, which says little about the text).
//!
//!     cargo run --release --example first_token_heads -- [MODEL] [TEXT]
//!
//! MODEL is a Hub id or a folder (default: the default model).

use attnmap::capture::Capture;
use attnmap::{model, source};

fn main() -> Result<(), attnmap::Error> {
    let mut args = std::env::args().skip(1);
    let model_id = args.next().unwrap_or_else(|| source::DEFAULT_MODEL.to_string());
    let text = args.next().unwrap_or_else(|| "The WhirlyGigs arrived broken, and support never answered.".to_string());

    let env = source::HubEnv::from_env()?;
    let files = source::resolve(&model_id, "main", &env)?;
    let loaded = model::load(&files)?;
    let input = loaded.tokenizer.encode(&text, None)?;
    let capture = Capture::run(loaded.model.as_ref(), &input, None, &[])?.capture;

    let seq = capture.seq;
    let mut sinks = Vec::new();
    for layer in 0..capture.layers {
        for head in 0..capture.heads {
            let Some(map) = capture.head(layer, head) else { continue };
            // Mean over query rows of the weight on key 0.
            let on_first = (0..seq).map(|query| map[query * seq]).sum::<f32>() / seq as f32;
            if on_first > 0.5 {
                sinks.push((layer, head, on_first));
            }
        }
    }
    println!("{} tokens; {} of {} heads put over half their weight on {:?}:", seq, sinks.len(), capture.layers * capture.heads, capture.tokens()[0]);
    for (layer, head, share) in sinks {
        println!("  layer {layer:>2} head {head:>2}  {:.0}%", share * 100.0);
    }
    Ok(())
}
