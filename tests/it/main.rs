//! All integration tests of invigil, in one test binary.

mod blackbox;
mod daemon;
mod harness;
mod objects;
mod turn;
