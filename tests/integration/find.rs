//! find tests
