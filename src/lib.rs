//! attnmap: capture and draw transformer attention maps, faithfully.
//!
//! The library is laid out in rooms that only talk through plain data:
//!
//! - [`source`]: where a model comes from (Hub id, cache, folder, mirror, `.gguf` file).
//! - [`model`]: architectures on candle (BERT; llama, mistral, qwen2 from folders or
//!   GGUF files), pushing named [`hooks`] as they run.
//! - [`capture`]: the captured `[layers, heads, query, key]` maps and tokens.
//! - [`render`]: pure pictures, slices and labels in, PNG bytes out.
//! - [`output`]: where bytes go (atomic files, stdout, .npy).
//! - [`commands`]: one file per subcommand, wiring the rooms together.
//!
//! ```no_run
//! use attnmap::{capture::Capture, model, source};
//! let env = source::HubEnv::from_env()?;
//! let files = source::resolve(source::DEFAULT_MODEL, "main", &env)?;
//! let loaded = model::load(&files)?;
//! let input = loaded.tokenizer.encode("The cat sat on the mat", None)?;
//! let run = Capture::run(loaded.model.as_ref(), &input, None, &[])?;
//! if let Some(map) = run.capture.head(5, 3) {
//!     println!("{} tokens, row 0: {:?}", run.capture.seq, &map[..run.capture.seq]); // [query, key], row-major
//! }
//! # Ok::<(), attnmap::Error>(())
//! ```

pub mod analysis;
pub mod capture;
pub mod cli;
pub mod commands;
pub mod error;
pub mod hooks;
pub mod model;
pub mod output;
pub mod render;
pub mod source;
pub mod tokenize;
pub mod ui;

pub use capture::Capture;
pub use error::{Error, Result};
