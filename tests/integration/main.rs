//! attnmap's one integration test binary. Fixtures live in tests/fixtures
//! (made by scripts/make_fixtures.py); the real models in .models (fetched by
//! scripts/fetch-models.sh, which scripts/test.sh runs first).

mod arch_gpt;
mod arch_llama;
mod cli;
mod corpus;
mod diff;
mod faithfulness;
mod find;
mod heads;
mod helpers;
mod hostile;
mod hooks;
mod render;
mod source;
mod speed;
mod stream;
mod terminal;
mod viewers;
mod views;
