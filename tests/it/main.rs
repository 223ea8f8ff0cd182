//! All integration tests of invigil, in one test binary.

mod accounts;
mod backup;
mod blackbox;
mod certs;
mod daemon;
mod doctor;
mod evidence;
mod fuzz_corpus;
mod harness;
mod hub;
mod ice;
mod isolation;
mod notify;
mod objects;
mod openapi;
mod package;
mod recognize;
mod recognize_http;
mod recognize_ort;
mod rest;
mod sessions;
mod turn;
mod ui;
mod upgrade;
mod upload_crash;
mod uploads;
