//! Pure functions over captures: statistics, rollout, norms, diffs.
//! Each analysis is its own file; none of them knows about models or files.

pub mod diff;
pub mod views;
pub mod words;
pub mod patterns;
pub mod find;
pub mod stats;
