//! All integration tests of invigil, in one test binary.

mod accounts;
mod blackbox;
mod certs;
mod daemon;
mod fuzz_corpus;
mod harness;
mod hub;
mod isolation;
mod objects;
mod openapi;
mod recognize;
mod rest;
mod sessions;
mod turn;
mod ui;
