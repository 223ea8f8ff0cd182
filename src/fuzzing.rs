//! Entry points for the fuzz targets under `fuzz/` and for the test that
//! replays their corpora on every `tests/run`: each takes arbitrary bytes to
//! one parser that meets untrusted input and must never panic.
//!
//! Kept in the library (hidden from the docs) so the fuzzers and the replay
//! test run exactly the same code.

use crate::auth::hosts::{Host, JwtSecret};

/// STUN/TURN framing and parsing, as a UDP datagram and as a TCP stream.
pub fn stun(data: &[u8]) {
    use crate::turn::message;
    let _ = message::frame(data, false);
    let _ = message::frame(data, true);
    let _ = message::channel_data(data);
    if let Ok(m) = message::parse(data) {
        let _ = message::unknown_required(&m);
        let _ = message::peer_addrs(&m);
        let _ = message::error_code(&m);
        let _ = message::verify(&m, b"fuzzing key");
    }
}

/// The vendor's `.env` format, then the whole configuration check on what it
/// yields (a file an administrator edits by hand).
pub fn env_file(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (entries, _) = crate::config::envfile::parse(&text);
    let vars = entries
        .into_iter()
        .map(|e| (e.key, e.value))
        // A test configuration must not point anywhere real.
        .filter(|(k, _)| !k.ends_with("_DIR") && !k.ends_with("_PATH") && !k.ends_with("_FILE"));
    let _ = crate::config::Config::load(None, vars);
}

/// A WebSocket text frame from a client of the live hub.
pub fn hub_frame(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::realtime::frames::parse(text);
    }
}

/// An uploaded photo, with small limits so a fuzzer's pixel bombs are cheap.
pub fn image(data: &[u8]) {
    let limits = crate::recognize::DecodeLimits {
        max_side: 2048,
        max_pixels: 1 << 20,
        max_alloc: 16 << 20,
    };
    let _ = crate::recognize::decode(data, &limits);
}

/// A JWT link token against a host with a known secret.
pub fn jwt(data: &[u8]) {
    if let Ok(token) = std::str::from_utf8(data) {
        let _ = crate::auth::jwt::verify(&fuzz_host(), token, 1_800_000_000);
    }
}

fn fuzz_host() -> Host {
    Host {
        id: "h".into(),
        domains: vec!["fuzz.test".into()],
        title: "fuzz".into(),
        valid_until: None,
        volume: None,
        sessions_used: 0,
        retention_days: None,
        disabled: false,
        jwt_roles: Vec::new(),
        jwt_secrets: vec![JwtSecret {
            id: "s".into(),
            secret: "fuzzing secret".into(),
            created_at: 0,
        }],
        created_at: 0,
        webhook_url: None,
        webhook_secret: None,
        webhook_allow_private: false,
    }
}

/// A fuzz target's entry point.
pub type Entry = fn(&[u8]);

/// Every target by the name of its directory under `fuzz/corpus`.
pub const TARGETS: &[(&str, Entry)] = &[
    ("stun", stun),
    ("env_file", env_file),
    ("hub_frame", hub_frame),
    ("image", image),
    ("jwt", jwt),
];
