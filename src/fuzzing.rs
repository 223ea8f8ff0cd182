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

/// The machine-readable zone of an identity document, as OCR gives it.
pub fn mrz(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::recognize::mrz::parse(text);
    }
}

/// The typed configuration built from a map of known variables: each line
/// is one byte choosing the variable and its value, so the fuzzer reaches
/// every variable's check instead of guessing names.
pub fn config(data: &[u8]) {
    let vars = crate::config::vars::VARS;
    let mut map = Vec::new();
    for line in data.split(|&b| b == b'\n') {
        let Some((&pick, value)) = line.split_first() else {
            continue;
        };
        let name = vars[usize::from(pick) % vars.len()].name;
        // A test configuration must not point anywhere real.
        if name.ends_with("_DIR") || name.ends_with("_PATH") || name.ends_with("_FILE") {
            continue;
        }
        map.push((
            name.to_string(),
            String::from_utf8_lossy(value).into_owned(),
        ));
    }
    let _ = crate::config::Config::load(None, map);
}

/// The tus headers of an upload's creation and of a chunk (`Name: value`
/// lines), then the offset/length decision and the size checks of the
/// chunk path on numbers taken from the input.
pub fn tus(data: &[u8]) {
    let mut headers = http::HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(&line[..colon]),
            http::HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) {
            headers.append(name, value);
        }
    }
    let _ = crate::web::api::uploads::creation_headers(&headers);
    let _ = crate::web::api::uploads::chunk_headers(&headers);
    // Eight little-endian u64 from the end of the input drive the decision.
    let mut numbers = data.rchunks_exact(8).map(|c| {
        let mut n = [0u8; 8];
        n.copy_from_slice(c);
        u64::from_le_bytes(n)
    });
    let mut next = || numbers.next().unwrap_or(0);
    let (offset, length, declared, at) = (next(), next(), next(), next());
    // A stored upload never has its offset past its length.
    let length = (length & 1 == 1).then_some(length.max(offset));
    let declared = (declared & 1 == 1).then_some(declared >> 1);
    use crate::proctoring::uploads::{check_chunk_size, settle_length};
    if let Ok(length) = settle_length(length, offset, declared)
        && at == offset
    {
        let room = length.map_or(u64::MAX, |n| n - offset);
        let max_chunk = next();
        let mut size = 0u64;
        for _ in 0..4 {
            size = size.saturating_add(next() >> 32);
            if check_chunk_size(size, max_chunk, room, length, offset).is_err() {
                break;
            }
        }
    }
}

/// The JSON bodies of the main creation endpoints and of the hub, through
/// deserialization and the same create functions as the API, against an
/// in-memory store. The first byte picks the body.
pub fn json_body(data: &[u8]) {
    use crate::auth::{Principal, Role};
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let store = crate::store::MemoryStore::new();
    let admin = Principal::User {
        host_id: "h".into(),
        username: "admin".into(),
        role: Role::Administrator,
    };
    let manager = Principal::Manager {
        username: "manager".into(),
    };
    match pick % 5 {
        0 => {
            if let Ok(input) = serde_json::from_slice(body) {
                let _ =
                    crate::proctoring::sessions::create(&store, "h", "fuzz", &input, 1_800_000_000);
            }
        }
        1 => {
            if let Ok(input) = serde_json::from_slice(body) {
                let _ = crate::proctoring::templates::save(&store, "h", "fuzz", &input);
            }
        }
        2 => {
            if let Ok(input) = serde_json::from_slice::<crate::auth::users::UserInput>(body) {
                // Hashing a password costs a fuzzer thousands of runs; the
                // password rule and hashing have their own tests.
                let input = crate::auth::users::UserInput {
                    password: None,
                    ..input
                };
                let rule = crate::config::PasswordRule::compile(".{8,}").expect("a valid rule");
                let _ = crate::auth::users::create(&store, &admin, "h", &input, &rule, "fuzz");
            }
        }
        3 => {
            if let Ok(input) = serde_json::from_slice(body) {
                let _ = crate::auth::hosts::create(&store, &manager, &input, "fuzz");
            }
        }
        _ => {
            if let Ok(text) = std::str::from_utf8(body) {
                let _ = crate::realtime::frames::parse(text);
            }
        }
    }
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
    ("mrz", mrz),
    ("config", config),
    ("tus", tus),
    ("json_body", json_body),
];
