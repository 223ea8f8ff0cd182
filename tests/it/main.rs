//! All integration tests of invigil, in one test binary.

mod accounts;
mod blackbox;
mod certs;
mod daemon;
mod harness;
mod hub;
mod isolation;
mod objects;
mod openapi;
mod recognize;
mod recognize_http;
mod recognize_ort;
mod rest;
mod sessions;
mod turn;
