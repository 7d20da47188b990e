//! Proves the test environment itself works end to end, so that a failure elsewhere
//! is about the product and not the harness.

mod environment;
mod git;
