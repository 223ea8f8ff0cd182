//! All integration tests of invigil, in one test binary.

mod accounts;
mod blackbox;
mod daemon;
mod harness;
mod objects;
mod turn;
