//! One typed configuration, read from defaults, an optional `.env` file and the
//! process environment (later wins), validated as a whole before any socket
//! opens so that every mistake is reported at once.

mod check;
pub mod envfile;
pub mod package_env;
pub mod password_rule;
pub mod vars;

pub use check::{MultiHostUri, parse_multi_host};
/// A CIDR network (the `ipnet` crate's), as TURN_ALLOWED_PEERS gives them.
pub use ipnet::IpNet;
pub use password_rule::PasswordRule;

use check::Checker;
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;
use vars::Use;

/// Where the cold tier is (`COLD_DIR` or `COLD_URI`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ColdTier {
    Dir(PathBuf),
    Uri(Secret),
}

/// A value that is never printed: `Debug` and `Display` show `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where a value came from, shown by `check-config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    EnvFile,
    Environment,
}

/// One configuration mistake, naming the variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub var: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.var, self.message)
    }
}

/// Every mistake found in one pass.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(
            f,
            "{n} configuration error{}:",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            writeln!(f, "  {e}")?;
        }
        Ok(())
    }
}

/// Something that works but deserves attention (unused or unknown variables,
/// a password rule with a slip).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    pub var: String,
    pub message: String,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.var, self.message)
    }
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    pub host: IpAddr,
    pub port: u16,
    /// `None` when the redirecting HTTP listener is off.
    pub http_port: Option<u16>,
    pub http_timeout: Duration,
    pub threads: usize,
    pub domain_name: Option<String>,
    pub session_key: Option<Secret>,
    pub session_expires: Duration,
    pub upload_limit_bytes: u64,
    pub upload_expires: Duration,
    pub static_expires: Duration,
    pub static_dir: Option<PathBuf>,
    pub manager_username: String,
    pub manager_password: Option<Secret>,
    pub manager_host: String,
    pub password_rule: PasswordRule,
    pub password_attempts: u32,
    pub password_holdoff: Duration,
    pub password_history: u32,
    pub ssl_cert: Option<String>,
    pub ssl_key: Option<Secret>,
    pub ssl_ca: Option<String>,
    pub acme_email: Option<String>,
    pub acme_days: u32,
    /// How long before expiry an ACME certificate is renewed (`ACME_DAYS`).
    pub acme_renew_before: Duration,
    pub acme_directory: String,
    /// Whether `ACME_DIRECTORY` was given, which enables ACME for any name.
    pub acme_directory_set: bool,
    pub acme_ca_root: Option<String>,
    /// First retry delay after a failed ACME attempt (doubles up to an hour).
    /// Not a variable: a minute keeps well inside public CAs' failure limits.
    pub acme_retry_after: Duration,
    /// First retry delay after a failed webhook delivery (then four times
    /// longer each time, up to ten hours). Not a variable.
    pub webhook_retry_after: Duration,
    pub acme_challenge: AcmeChallenge,
    /// `None`: own certificate files are reloaded on SIGHUP only.
    pub ssl_reload: Option<Duration>,
    pub reverse_proxy: bool,
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub minio_uri: Option<Secret>,
    /// Where `invigil backup` writes by default.
    pub backup_to: Option<Secret>,
    /// The cold tier, if one is configured.
    pub cold: Option<ColdTier>,
    /// How long after a session stops its objects stay hot.
    pub cold_after: Duration,
    /// Bytes per second the tier mover may move.
    pub cold_rate: u64,
    pub recognizer_uri: Option<MultiHostUri>,
    pub api_key: Option<Secret>,
    /// Which engine runs the recognition models.
    pub recognizer_backend: crate::recognize::Backend,
    /// ONNX Runtime library (`ORT_DYLIB_PATH`); else the packaged one.
    pub ort_library: Option<PathBuf>,
    /// Recognition jobs running or waiting before `/recognize` answers 429.
    pub recognizer_queue: usize,
    pub turn_uri: Option<MultiHostUri>,
    pub turn_port: u16,
    pub turn_user: Option<(String, Secret)>,
    pub turn_external_ip: Option<(IpAddr, Option<IpAddr>)>,
    pub turn_min_port: u16,
    pub turn_max_port: u16,
    pub turn_auth_secret: Option<Secret>,
    pub turn_allowed_peers: Vec<IpNet>,
    pub turn_max_allocations_per_user: u64,
    pub turn_max_allocations_per_ip: u64,
    /// Bytes per second; 0 is unlimited.
    pub turn_bps_per_allocation: u64,
    pub turn_total_bps: u64,
    pub log_format: LogFormat,
}

/// The ACME challenge invigil answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcmeChallenge {
    Http01,
    TlsAlpn01,
}

/// Let's Encrypt's production directory, the default ACME CA.
pub const LETS_ENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// A loaded configuration with what `check-config` shows besides it.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub warnings: Vec<ConfigWarning>,
    /// Every known variable with its effective value (secrets redacted) and origin.
    pub effective: Vec<(&'static str, String, &'static str)>,
}

impl Config {
    /// Loads from an optional env file and the given process environment.
    pub fn load(
        env_file: Option<&Path>,
        environment: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Loaded, ConfigErrors> {
        let mut values: BTreeMap<String, (String, Source)> = BTreeMap::new();
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        if let Some(path) = env_file {
            match envfile::read(path) {
                Err(message) => errors.push(ConfigError {
                    var: "--env-file".into(),
                    message,
                }),
                Ok((entries, bad_lines)) => {
                    for bad in bad_lines {
                        errors.push(ConfigError {
                            var: format!("{}:{}", path.display(), bad.line),
                            message: bad.message,
                        });
                    }
                    for entry in entries {
                        if vars::find(&entry.key).is_none() {
                            let hint = vars::nearest(&entry.key)
                                .map(|n| format!("; did you mean {n}?"))
                                .unwrap_or_default();
                            warnings.push(ConfigWarning {
                                var: entry.key.clone(),
                                message: format!(
                                    "unknown variable at {}:{}, ignored{hint}",
                                    path.display(),
                                    entry.line
                                ),
                            });
                        }
                        values.insert(entry.key, (entry.value, Source::EnvFile));
                    }
                }
            }
        }
        // The process environment carries many unrelated variables: only known
        // names are taken from it.
        for (key, value) in environment {
            if vars::find(&key).is_some() {
                values.insert(key, (value, Source::Environment));
            }
        }
        for var in vars::VARS {
            if let (Use::Unused(why), Some((v, _))) = (var.usage, values.get(var.name))
                && !v.trim().is_empty()
            {
                warnings.push(ConfigWarning {
                    var: var.name.into(),
                    message: format!("set but unused: {why}"),
                });
            }
        }

        let mut c = Checker::new(&values);
        let config = read_config(&mut c, &mut warnings);
        errors.extend(c.errors);
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        let effective = effective_values(&values);
        Ok(Loaded {
            config,
            warnings,
            effective,
        })
    }

    /// The address clients use for the front page, as printed on the console.
    pub fn public_url(&self) -> String {
        let host = self.domain_name.as_deref().unwrap_or("localhost");
        if self.port == 443 {
            format!("https://{host}")
        } else {
            format!("https://{host}:{}", self.port)
        }
    }
}

fn read_config(c: &mut Checker<'_>, warnings: &mut Vec<ConfigWarning>) -> Config {
    let data_dir = c
        .path("DATA_DIR")
        .unwrap_or_else(|| PathBuf::from("./data"));
    // Behind a reverse proxy the plain HTTP port must not be reachable from
    // the network unless the operator says so.
    let default_host = if c.switch("REVERSE_PROXY", false) {
        Ipv4Addr::LOCALHOST
    } else {
        Ipv4Addr::UNSPECIFIED
    };
    let host = c.ip("HOST", IpAddr::V4(default_host));
    let port = c.port("PORT", 8443);
    let http_port = match c.raw("HTTP_PORT").map(str::trim) {
        Some(v) if v.eq_ignore_ascii_case("off") => None,
        _ => Some(c.port("HTTP_PORT", 8080)),
    };
    if port != 0 && http_port == Some(port) {
        c.error(
            "HTTP_PORT",
            format!("{port} is already PORT; use another port or `off`"),
        );
    }
    let http_timeout = Duration::from_secs(c.number("HTTP_TIMEOUT", 60, 1, 3600));
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let threads = c.number("THREADS", cpus as u64, 1, 1024) as usize;

    let domain_name = c.opt_string("DOMAIN_NAME").map(|d| d.to_ascii_lowercase());
    if let Some(d) = &domain_name
        && !is_dns_name(d)
    {
        c.error("DOMAIN_NAME", format!("{d:?} is not a domain name"));
    }

    let session_key = c.secret("SESSION_KEY");
    if let Some(key) = &session_key {
        if key.expose().eq_ignore_ascii_case("secret") {
            c.error(
                "SESSION_KEY",
                "the literal `secret` from the vendor's example is refused; remove the \
                 variable to have a random key generated and kept in DATA_DIR",
            );
        } else if key.expose().len() < 32 {
            c.error(
                "SESSION_KEY",
                format!(
                    "too short ({} characters); use at least 32 random characters, or remove \
                     it to have one generated",
                    key.expose().len()
                ),
            );
        }
    }
    let session_expires = c.minutes("SESSION_EXPIRES", 180, 60 * 24 * 365);
    let upload_limit_bytes = c.number("UPLOAD_LIMIT", 100, 1, 1024 * 1024) * 1024 * 1024;
    let upload_expires = c.minutes("UPLOAD_EXPIRES", 60, 60 * 24 * 30);
    let static_expires = c.minutes("STATIC_EXPIRES", 60, 60 * 24 * 365);
    let static_dir = c.path("STATIC_DIR");
    if let Some(dir) = &static_dir
        && !dir.is_dir()
    {
        c.error(
            "STATIC_DIR",
            format!("{} is not a directory", dir.display()),
        );
    }

    let manager_username = c.string("MANAGER_USERNAME", "manager");
    if manager_username.is_empty() || manager_username.len() > 64 {
        c.error("MANAGER_USERNAME", "must be 1 to 64 characters");
    }
    let manager_password = c.secret("MANAGER_PASSWORD");
    let default_manager_host = match (&domain_name, port) {
        (Some(d), 443) => d.clone(),
        (Some(d), p) => format!("{d}:{p}"),
        (None, 443) => "localhost".to_string(),
        (None, p) => format!("localhost:{p}"),
    };
    let manager_host = c
        .opt_string("MANAGER_HOST")
        .map(|h| h.to_ascii_lowercase())
        .unwrap_or(default_manager_host);

    let password_rule = match c.raw("PASSWORD_RULE") {
        None => PasswordRule::default(),
        Some(raw) => match PasswordRule::compile(raw.trim()) {
            Ok(rule) => {
                if let Some(fixed) = password_rule::lint(rule.source()) {
                    warnings.push(ConfigWarning {
                        var: "PASSWORD_RULE".into(),
                        message: format!(
                            "a look-ahead like `(?=.[0-9])` tests one position only; \
                             you probably mean {fixed}"
                        ),
                    });
                }
                rule
            }
            Err(e) => {
                c.error(
                    "PASSWORD_RULE",
                    format!("not a valid regular expression: {e}"),
                );
                PasswordRule::default()
            }
        },
    };
    if let Some(p) = &manager_password
        && !password_rule.is_satisfied_by(p.expose())
    {
        warnings.push(ConfigWarning {
            var: "MANAGER_PASSWORD".into(),
            message: "does not satisfy PASSWORD_RULE; the manager must change it at first \
                      sign-in"
                .into(),
        });
    }
    let password_attempts = c.number("PASSWORD_ATTEMPTS", 5, 1, 1000) as u32;
    let password_holdoff = c.minutes("PASSWORD_HOLDOFF", 5, 60 * 24 * 30);
    let password_history = c.number("PASSWORD_HISTORY", 5, 0, 100) as u32;

    let ssl_cert = c.opt_string("SSL_CERT");
    let ssl_key = c.secret("SSL_KEY");
    let ssl_ca = c.opt_string("SSL_CA");
    match (&ssl_cert, &ssl_key) {
        (Some(_), None) => c.error("SSL_KEY", "SSL_CERT is set but SSL_KEY is not"),
        (None, Some(_)) => c.error("SSL_CERT", "SSL_KEY is set but SSL_CERT is not"),
        _ => {}
    }
    if ssl_ca.is_some() && ssl_cert.is_none() {
        c.error("SSL_CA", "SSL_CA is set but SSL_CERT is not");
    }
    let acme_email = c.opt_string("ACME_EMAIL");
    if let Some(mail) = &acme_email
        && !mail.contains('@')
    {
        c.error("ACME_EMAIL", format!("{mail:?} is not an e-mail address"));
    }
    let acme_days = c.number("ACME_DAYS", 15, 1, 89) as u32;
    let acme_renew_before = Duration::from_secs(u64::from(acme_days) * 24 * 60 * 60);
    let acme_directory_set = c.raw("ACME_DIRECTORY").is_some();
    let acme_directory = c.string("ACME_DIRECTORY", LETS_ENCRYPT);
    match url::Url::parse(&acme_directory) {
        Ok(u) if u.scheme() == "https" => {}
        _ => c.error(
            "ACME_DIRECTORY",
            format!("{acme_directory:?} is not an https:// URL"),
        ),
    }
    let acme_ca_root = c.opt_string("ACME_CA_ROOT");
    let acme_challenge = match c
        .raw("ACME_CHALLENGE")
        .map(|v| v.trim().to_ascii_lowercase())
    {
        None if http_port.is_none() => AcmeChallenge::TlsAlpn01,
        None => AcmeChallenge::Http01,
        Some(v) if v == "http-01" => {
            if http_port.is_none() {
                c.error("ACME_CHALLENGE", "http-01 needs HTTP_PORT, which is off");
            }
            AcmeChallenge::Http01
        }
        Some(v) if v == "tls-alpn-01" => AcmeChallenge::TlsAlpn01,
        Some(v) => {
            c.error(
                "ACME_CHALLENGE",
                format!("{v:?} is neither `http-01` nor `tls-alpn-01`"),
            );
            AcmeChallenge::Http01
        }
    };
    let ssl_reload = match c.raw("SSL_RELOAD").map(str::trim) {
        Some(v) if v.eq_ignore_ascii_case("off") => None,
        _ => Some(Duration::from_secs(c.number("SSL_RELOAD", 5, 1, 86400))),
    };
    let reverse_proxy = c.switch("REVERSE_PROXY", false);
    if reverse_proxy && (ssl_cert.is_some() || acme_directory_set) {
        c.error(
            "REVERSE_PROXY",
            "the proxy terminates TLS; remove SSL_CERT/ACME_DIRECTORY or REVERSE_PROXY",
        );
    }
    let trusted_proxies = match c.raw("TRUSTED_PROXIES") {
        None if reverse_proxy => vec![
            ipnet::IpNet::from(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            ipnet::IpNet::from(IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)),
        ],
        None => Vec::new(),
        Some(raw) => parse_cidrs(raw).unwrap_or_else(|e| {
            c.error("TRUSTED_PROXIES", e);
            Vec::new()
        }),
    };

    // Its form is checked by the object storage module, which owns it.
    let minio_uri = c.secret("MINIO_URI");
    let backup_to = c.secret("BACKUP_TO");
    let cold = match (c.path("COLD_DIR"), c.secret("COLD_URI")) {
        (Some(_), Some(_)) => {
            c.error(
                "COLD_URI",
                "set COLD_DIR or COLD_URI, not both: the cold tier is one place",
            );
            None
        }
        (Some(dir), None) if dir.as_os_str().is_empty() => {
            c.error("COLD_DIR", "is empty; give the cold tier's directory");
            None
        }
        (Some(dir), None) => Some(ColdTier::Dir(dir)),
        (None, Some(uri)) => Some(ColdTier::Uri(uri)),
        (None, None) => None,
    };
    let cold_after = Duration::from_secs(c.number("COLD_AFTER", 30, 0, 36_500) * 24 * 60 * 60);
    let cold_rate = c.number("COLD_RATE", 8, 1, 100_000) * 1024 * 1024;
    let recognizer_uri = c.raw("RECOGNIZER_URI").and_then(|raw| {
        crate::recognize::parse_uri_list(raw)
            .map_err(|e| c.error("RECOGNIZER_URI", e))
            .ok()
    });
    let api_key = c.secret("API_KEY");
    let recognizer_backend = c
        .raw("RECOGNIZER_BACKEND")
        .map(|raw| {
            raw.parse().unwrap_or_else(|e: String| {
                c.error("RECOGNIZER_BACKEND", e);
                crate::recognize::Backend::Auto
            })
        })
        .unwrap_or_default();
    let recognizer_queue = c.number("RECOGNIZER_QUEUE", threads as u64 * 4, 1, 100_000) as usize;
    let ort_library = c
        .path("ORT_DYLIB_PATH")
        .filter(|p| !p.as_os_str().is_empty());
    if let Some(p) = &ort_library
        && !p.is_file()
    {
        c.error("ORT_DYLIB_PATH", format!("{} is not a file", p.display()));
    }
    if api_key
        .as_ref()
        .is_some_and(|k| k.expose().eq_ignore_ascii_case("secret"))
    {
        c.error(
            "API_KEY",
            "the literal `secret` from the vendor's example is refused",
        );
    }
    let turn_uri = c.raw("TURN_URI").and_then(|raw| {
        parse_multi_host(raw, &["turn", "turns"], 3478)
            .map_err(|e| c.error("TURN_URI", e))
            .ok()
    });
    let turn_port = c.port("TURN_PORT", 3478);
    let turn_user = c
        .raw("TURN_USER")
        .and_then(|raw| match raw.trim().split_once(':') {
            Some((user, pass)) if !user.is_empty() && !pass.is_empty() => {
                Some((user.to_string(), Secret::new(pass)))
            }
            _ => {
                c.error("TURN_USER", "expected user:password");
                None
            }
        });
    let turn_external_ip = c.raw("TURN_EXTERNAL_IP").and_then(|raw| {
        let raw = raw.trim();
        let (public, private) = match raw.split_once('/') {
            Some((p, q)) => (p, Some(q)),
            None => (raw, None),
        };
        let public = public.parse::<IpAddr>();
        let private = private.map(str::parse::<IpAddr>).transpose();
        match (public, private) {
            (Ok(p), Ok(q)) => Some((p, q)),
            _ => {
                c.error(
                    "TURN_EXTERNAL_IP",
                    format!("{raw:?} is not an IP address or public/private pair"),
                );
                None
            }
        }
    });
    let turn_min_port = c.port("TURN_MIN_PORT", 49152);
    let turn_max_port = c.port("TURN_MAX_PORT", 65535);
    if turn_min_port > turn_max_port {
        c.error(
            "TURN_MIN_PORT",
            format!("{turn_min_port} is above TURN_MAX_PORT {turn_max_port}"),
        );
    }
    let turn_auth_secret = c.secret("TURN_AUTH_SECRET");
    if turn_auth_secret
        .as_ref()
        .is_some_and(|s| s.expose().len() < 16)
    {
        c.error("TURN_AUTH_SECRET", "must be at least 16 characters");
    }
    let turn_allowed_peers = c
        .raw("TURN_ALLOWED_PEERS")
        .and_then(|raw| {
            parse_cidrs(raw)
                .map_err(|e| c.error("TURN_ALLOWED_PEERS", e))
                .ok()
        })
        .unwrap_or_default();
    let turn_max_allocations_per_user = c.number("TURN_MAX_ALLOCATIONS_PER_USER", 64, 1, 1_000_000);
    let turn_max_allocations_per_ip = c.number("TURN_MAX_ALLOCATIONS_PER_IP", 1024, 1, 1_000_000);
    // Anything below one full-size datagram per second would relay nothing.
    let bps = |c: &mut Checker<'_>, var: &str| {
        let n = c.number(var, 0, 0, u64::MAX);
        if (1..1500).contains(&n) {
            c.error(
                var,
                format!("{n} is below 1500 bytes/s (one packet); 0 is unlimited"),
            );
        }
        n
    };
    let turn_bps_per_allocation = bps(c, "TURN_BPS_PER_ALLOCATION");
    let turn_total_bps = bps(c, "TURN_TOTAL_BPS");
    let log_format = match c.string("LOG_FORMAT", "text").to_ascii_lowercase().as_str() {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => {
            c.error(
                "LOG_FORMAT",
                format!("{other:?} is neither `text` nor `json`"),
            );
            LogFormat::Text
        }
    };

    Config {
        data_dir,
        host,
        port,
        http_port,
        http_timeout,
        threads,
        domain_name,
        session_key,
        session_expires,
        upload_limit_bytes,
        upload_expires,
        static_expires,
        static_dir,
        manager_username,
        manager_password,
        manager_host,
        password_rule,
        password_attempts,
        password_holdoff,
        password_history,
        ssl_cert,
        ssl_key,
        ssl_ca,
        acme_email,
        acme_days,
        acme_renew_before,
        acme_directory,
        acme_directory_set,
        acme_ca_root,
        acme_retry_after: Duration::from_secs(60),
        webhook_retry_after: Duration::from_secs(5),
        acme_challenge,
        ssl_reload,
        reverse_proxy,
        trusted_proxies,
        minio_uri,
        backup_to,
        cold,
        cold_after,
        cold_rate,
        recognizer_uri,
        api_key,
        recognizer_backend,
        ort_library,
        recognizer_queue,
        turn_uri,
        turn_port,
        turn_user,
        turn_external_ip,
        turn_min_port,
        turn_max_port,
        turn_auth_secret,
        turn_allowed_peers,
        turn_max_allocations_per_user,
        turn_max_allocations_per_ip,
        turn_bps_per_allocation,
        turn_total_bps,
        log_format,
    }
}

/// `10.0.0.0/8, 192.0.2.1` → networks; a bare address is a single host.
fn parse_cidrs(raw: &str) -> Result<Vec<ipnet::IpNet>, String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<ipnet::IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(ipnet::IpNet::from))
                .map(|n| n.trunc())
                .map_err(|_| format!("{s:?} is not an IP address or CIDR network"))
        })
        .collect()
}

fn is_dns_name(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

fn effective_values(
    values: &BTreeMap<String, (String, Source)>,
) -> Vec<(&'static str, String, &'static str)> {
    vars::VARS
        .iter()
        .filter(|v| v.usage == Use::Used)
        .map(
            |v| match values.get(v.name).filter(|(x, _)| !x.trim().is_empty()) {
                Some((value, source)) => {
                    let shown = if v.secret {
                        "*** (set)".to_string()
                    } else {
                        value.clone()
                    };
                    let origin = match source {
                        Source::EnvFile => "env file",
                        Source::Environment => "environment",
                    };
                    (v.name, shown, origin)
                }
                None => (
                    v.name,
                    v.default.unwrap_or("(unset)").to_string(),
                    "default",
                ),
            },
        )
        .collect()
}

#[cfg(test)]
mod tests;
