//! The table of configuration variables: the seed's names plus invigil's own.
//!
//! One table drives loading, `check-config` output, the "nearest known name"
//! hint and the README's configuration section, so they cannot drift apart.

/// How invigil treats a variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// Read and validated.
    Used,
    /// Accepted for compatibility with a vendor `.env` file, reported as unused
    /// with the reason given.
    Unused(&'static str),
}

/// One known configuration variable.
#[derive(Debug, Clone, Copy)]
pub struct Var {
    pub name: &'static str,
    /// The default as shown to people; `None` when unset by default.
    pub default: Option<&'static str>,
    /// Secret values are never printed or logged.
    pub secret: bool,
    pub usage: Use,
    pub help: &'static str,
}

const fn used(
    name: &'static str,
    default: Option<&'static str>,
    secret: bool,
    help: &'static str,
) -> Var {
    Var {
        name,
        default,
        secret,
        usage: Use::Used,
        help,
    }
}

const fn unused(name: &'static str, secret: bool, why: &'static str) -> Var {
    Var {
        name,
        default: None,
        secret,
        usage: Use::Unused(why),
        help: why,
    }
}

const EMBEDDED_DB: &str = "the database is embedded in invigil (DATA_DIR)";
const COMPOSE_ONLY: &str =
    "only used by the vendor's compose file to build a URI; set the URI itself instead";

/// Every variable invigil knows, in the order `check-config` prints them.
pub const VARS: &[Var] = &[
    used(
        "DATA_DIR",
        Some("./data"),
        false,
        "directory for all state: database, objects, keys, certificates",
    ),
    used("HOST", Some("0.0.0.0"), false, "IP address to listen on"),
    used(
        "PORT",
        Some("8443"),
        false,
        "HTTPS port (0 picks a free port)",
    ),
    used(
        "HTTP_PORT",
        Some("8080"),
        false,
        "plain HTTP port that redirects to HTTPS; `off` disables it",
    ),
    used(
        "HTTP_TIMEOUT",
        Some("60"),
        false,
        "seconds allowed for reading request headers and for idle connections",
    ),
    used(
        "THREADS",
        Some("number of CPUs"),
        false,
        "worker threads of the server runtime",
    ),
    used(
        "DOMAIN_NAME",
        None,
        false,
        "public name of this server; added to the self-signed certificate",
    ),
    used(
        "SESSION_KEY",
        Some("generated into DATA_DIR/session.key"),
        true,
        "secret for sign-in sessions, at least 32 characters",
    ),
    used(
        "SESSION_EXPIRES",
        Some("180"),
        false,
        "sign-in session lifetime in minutes (sliding)",
    ),
    used(
        "UPLOAD_LIMIT",
        Some("100"),
        false,
        "largest request body in MiB",
    ),
    used(
        "UPLOAD_EXPIRES",
        Some("60"),
        false,
        "minutes an incomplete upload is kept",
    ),
    used(
        "STATIC_EXPIRES",
        Some("60"),
        false,
        "minutes browsers may cache the web interface's files",
    ),
    used(
        "STATIC_DIR",
        None,
        false,
        "serve the web interface from this directory instead of the embedded copy",
    ),
    used(
        "MANAGER_USERNAME",
        Some("manager"),
        false,
        "the manager's username",
    ),
    used(
        "MANAGER_PASSWORD",
        Some("generated at first start and printed once"),
        true,
        "the manager's first password; must be changed at first sign-in when generated",
    ),
    used(
        "MANAGER_HOST",
        Some("DOMAIN_NAME, or localhost:PORT"),
        false,
        "host (and port, if non-standard) on which the manager signs in",
    ),
    used(
        "PASSWORD_RULE",
        Some(super::password_rule::DEFAULT_RULE),
        false,
        "regular expression every new password must match",
    ),
    used(
        "PASSWORD_ATTEMPTS",
        Some("5"),
        false,
        "failed sign-ins before an account is locked",
    ),
    used(
        "PASSWORD_HOLDOFF",
        Some("5"),
        false,
        "minutes an account stays locked",
    ),
    used(
        "PASSWORD_HISTORY",
        Some("5"),
        false,
        "number of previous passwords that cannot be reused",
    ),
    used(
        "SSL_CERT",
        None,
        false,
        "certificate chain, PEM content or file path",
    ),
    used(
        "SSL_KEY",
        None,
        true,
        "private key of SSL_CERT, PEM content or file path",
    ),
    used(
        "SSL_CA",
        None,
        false,
        "issuer bundle appended to SSL_CERT, PEM content or file path",
    ),
    used(
        "ACME_EMAIL",
        None,
        false,
        "contact address for the ACME account",
    ),
    used(
        "ACME_DAYS",
        Some("15"),
        false,
        "renew an ACME certificate this many days before it expires",
    ),
    used(
        "ACME_DIRECTORY",
        Some("https://acme-v02.api.letsencrypt.org/directory"),
        false,
        "directory URL of the ACME CA; setting it also enables ACME for a non-public DOMAIN_NAME",
    ),
    used(
        "ACME_CA_ROOT",
        None,
        false,
        "root certificate trusted for talking to ACME_DIRECTORY, PEM content or file path",
    ),
    used(
        "ACME_CHALLENGE",
        Some("http-01, or tls-alpn-01 when HTTP_PORT is off"),
        false,
        "how the ACME CA validates the name: `http-01` on HTTP_PORT or `tls-alpn-01` on PORT",
    ),
    used(
        "SSL_RELOAD",
        Some("5"),
        false,
        "seconds between checks of SSL_CERT/SSL_KEY/SSL_CA files for changes; `off` reloads on SIGHUP only",
    ),
    used(
        "REVERSE_PROXY",
        Some("off"),
        false,
        "`on`: serve plain HTTP on PORT (loopback by default) behind nginx or Apache",
    ),
    used(
        "TRUSTED_PROXIES",
        Some("127.0.0.1/32,::1/128 with REVERSE_PROXY, none otherwise"),
        false,
        "comma-separated CIDRs whose X-Forwarded-For/-Proto headers are believed",
    ),
    used(
        "MINIO_URI",
        None,
        true,
        "S3-compatible object storage, http://key:secret@host:9000/bucket; default: DATA_DIR/objects",
    ),
    used(
        "COLD_DIR",
        None,
        false,
        "cold tier on a directory (a big slow disk): objects of sessions stopped more than COLD_AFTER days ago move there",
    ),
    used(
        "COLD_URI",
        None,
        true,
        "cold tier in S3-compatible storage, in MINIO_URI's form; not together with COLD_DIR",
    ),
    used(
        "COLD_AFTER",
        Some("30"),
        false,
        "days after a session stops before its objects move to the cold tier (0: at the next pass)",
    ),
    used(
        "COLD_RATE",
        Some("8"),
        false,
        "MiB per second the tier mover may read and write, so live exams keep the disk and network",
    ),
    used(
        "BACKUP_TO",
        None,
        true,
        "where `invigil backup` writes when `--to` is not given: a directory or an S3 URI like MINIO_URI",
    ),
    used(
        "RECOGNIZER_URI",
        None,
        true,
        "`invigil recognizer` hosts, http://KEY@host1:8080,host2:8080/recognize (commas or spaces between hosts); snapshots and /recognize go there with health checks and failover, and are done here when no host can take them; default: embedded",
    ),
    used(
        "API_KEY",
        None,
        true,
        "key required by this instance's /recognize endpoint",
    ),
    used(
        "RECOGNIZER_BACKEND",
        Some("auto"),
        false,
        "engine of the face models: auto (ONNX Runtime when its library is found, else tract), tract, ort",
    ),
    used(
        "RECOGNIZER_QUEUE",
        Some("4 × THREADS"),
        false,
        "recognition jobs running or waiting before /recognize answers 429 with Retry-After",
    ),
    used(
        "ORT_DYLIB_PATH",
        None,
        false,
        "ONNX Runtime library; default: /usr/lib/invigil/libonnxruntime.so when present",
    ),
    used(
        "TURN_URI",
        None,
        true,
        "external TURN server, turn://user:pass@host:3478?transport=udp+tcp; default: embedded",
    ),
    used(
        "TURN_PORT",
        Some("3478"),
        false,
        "port of the embedded TURN/STUN listener (UDP and TCP)",
    ),
    used(
        "TURN_USER",
        None,
        true,
        "static TURN credentials, user:password",
    ),
    used(
        "TURN_EXTERNAL_IP",
        None,
        false,
        "advertised relay address, IP or public/private",
    ),
    used(
        "TURN_AUTH_SECRET",
        None,
        true,
        "shared secret for short-lived TURN credentials (coturn's static-auth-secret); default: generated into DATA_DIR/turn.secret",
    ),
    used(
        "TURN_ALLOWED_PEERS",
        None,
        false,
        "comma-separated CIDRs the relay may reach although they are private, e.g. an exam centre's LAN",
    ),
    used("TURN_MIN_PORT", Some("49152"), false, "lowest relay port"),
    used("TURN_MAX_PORT", Some("65535"), false, "highest relay port"),
    used(
        "TURN_MAX_ALLOCATIONS_PER_USER",
        Some("64"),
        false,
        "relay allocations one TURN username may hold at once",
    ),
    used(
        "TURN_MAX_ALLOCATIONS_PER_IP",
        Some("1024"),
        false,
        "relay allocations one client address may hold at once (a school's NAT puts many students behind one)",
    ),
    used(
        "TURN_BPS_PER_ALLOCATION",
        Some("0"),
        false,
        "bytes per second one allocation may relay, both directions together (coturn's max-bps); 0: unlimited",
    ),
    used(
        "TURN_TOTAL_BPS",
        Some("0"),
        false,
        "bytes per second the whole relay may relay (coturn's bps-capacity); 0: unlimited",
    ),
    used(
        "LOG_FORMAT",
        Some("text"),
        false,
        "`text` for people, `json` for log collectors",
    ),
    unused("MONGO_URI", true, EMBEDDED_DB),
    unused("MONGO_SECRET", true, COMPOSE_ONLY),
    unused("MINIO_SECRET", true, COMPOSE_ONLY),
    unused("TURN_SECRET", true, COMPOSE_ONLY),
    unused("RECOGNIZER_SECRET", true, COMPOSE_ONLY),
    unused(
        "DISTRIB_URL",
        false,
        "invigil is installed as one package; there is no distribution archive to fetch",
    ),
    unused(
        "DISTRIB_KEY",
        true,
        "invigil is installed as one package; there is no distribution archive to unpack",
    ),
    unused(
        "HTTP_WEBROOT",
        false,
        "ACME challenges are answered by invigil itself",
    ),
    unused(
        "DLIB_REBUILD",
        false,
        "recognition runs on ONNX models inside invigil; nothing is rebuilt",
    ),
];

/// Looks a variable up by its exact name.
pub fn find(name: &str) -> Option<&'static Var> {
    VARS.iter().find(|v| v.name == name)
}

/// The known name closest to `name`, for "did you mean" hints on typos.
pub fn nearest(name: &str) -> Option<&'static str> {
    let upper = name.to_ascii_uppercase();
    VARS.iter()
        .map(|v| (strsim::damerau_levenshtein(&upper, v.name), v.name))
        .filter(|(d, known)| *d <= (known.len() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = VARS.iter().map(|v| v.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), VARS.len());
    }

    #[test]
    fn nearest_finds_typos_and_not_strangers() {
        assert_eq!(nearest("SESION_KEY"), Some("SESSION_KEY"));
        assert_eq!(nearest("upload_limit"), Some("UPLOAD_LIMIT"));
        assert_eq!(nearest("TURN_PROT"), Some("TURN_PORT"));
        assert_eq!(nearest("COMPLETELY_DIFFERENT"), None);
    }
}

#[cfg(test)]
mod readme {
    /// The README's configuration table must name every variable.
    #[test]
    fn readme_documents_every_variable() {
        let readme = include_str!("../../README.md");
        for var in super::VARS {
            assert!(
                readme.contains(&format!("`{}`", var.name)),
                "README.md does not document {}",
                var.name
            );
        }
    }
}
