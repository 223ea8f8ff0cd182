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
mod rest;
mod sessions;
mod turn;
mod upload_crash;
mod uploads;
