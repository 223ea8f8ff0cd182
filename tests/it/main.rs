//! All integration tests of invigil, in one test binary.

mod blackbox;
mod certs;
mod daemon;
mod harness;
mod objects;
