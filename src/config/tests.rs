use super::*;
use std::io::Write;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn load_env(pairs: &[(&str, &str)]) -> Result<Loaded, ConfigErrors> {
    Config::load(None, env(pairs))
}

fn vars_of(errors: &ConfigErrors) -> Vec<&str> {
    errors.0.iter().map(|e| e.var.as_str()).collect()
}

#[test]
fn defaults_suit_a_checkout() {
    let loaded = load_env(&[]).expect("defaults are valid");
    let c = loaded.config;
    assert_eq!(c.port, 8443);
    assert_eq!(c.http_port, Some(8080));
    assert_eq!(c.data_dir, PathBuf::from("./data"));
    assert_eq!(c.manager_host, "localhost:8443");
    assert_eq!(c.upload_limit_bytes, 100 * 1024 * 1024);
    assert!(c.session_key.is_none() && c.manager_password.is_none());
    assert_eq!(c.public_url(), "https://localhost:8443");
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

#[test]
fn every_error_is_reported_at_once() {
    let errors = load_env(&[
        ("PORT", "70000"),
        ("HTTP_PORT", "http"),
        ("HTTP_TIMEOUT", "0"),
        ("UPLOAD_LIMIT", "-5"),
        ("SESSION_KEY", "secret"),
        ("PASSWORD_RULE", "^(?=[a-z]"),
        ("TURN_URI", "ftp://user:hunter2@host:3478"),
        ("RECOGNIZER_URI", "http://KEY@host1:8080,:80/recognize"),
        ("TURN_USER", "nopassword"),
        ("TURN_MIN_PORT", "60000"),
        ("TURN_MAX_PORT", "50000"),
        ("HOST", "not-an-ip"),
        ("LOG_FORMAT", "xml"),
        ("SSL_CERT", "/nonexistent/cert.pem"),
        ("DOMAIN_NAME", "bad_name!"),
    ])
    .unwrap_err();
    let mut vars = vars_of(&errors);
    vars.sort_unstable();
    assert_eq!(
        vars,
        [
            "DOMAIN_NAME",
            "HOST",
            "HTTP_PORT",
            "HTTP_TIMEOUT",
            "LOG_FORMAT",
            "PASSWORD_RULE",
            "PORT",
            "RECOGNIZER_URI",
            "SESSION_KEY",
            "SSL_KEY",
            "TURN_MIN_PORT",
            "TURN_URI",
            "TURN_USER",
            "UPLOAD_LIMIT",
        ]
    );
    let text = errors.to_string();
    assert!(text.starts_with("14 configuration errors:"), "{text}");
    assert!(!text.contains("hunter2"), "a secret leaked: {text}");
}

#[test]
fn vendor_env_file_is_accepted_with_unused_variables_named() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    write!(
        file,
        "# vendor .env\nDISTRIB_URL=https://files.example/dist.zip\nDISTRIB_KEY=abc\n\
         DOMAIN_NAME=exam.example.org\nMONGO_SECRET=abc\nMINIO_SECRET=abc\n\
         TURN_SECRET=abc\nRECOGNIZER_SECRET=abc\n\
         MONGO_URI=mongodb://admin:abc@127.0.0.1:27017/proctoring?authSource=admin\n\
         MINIO_URI=http://minioadmin:minioadmin@127.0.0.1:9000/proctoring\n\
         RECOGNIZER_URI=http://abc@127.0.0.1:8080/recognize\n\
         TURN_URI=turn://webrtc:webrtc@127.0.0.1:3478?transport=tcp+udp\n\
         SESSION_EXPIRES=180\nUPLOAD_LIMIT=100\nMANAGER_USERNAME=manager\n\
         MANAGER_PASSWORD=changeme\nMANAGER_HOST=localhost:3000\n\
         PASSWORD_RULE=^(?=.[0-9])(?=.[a-z])(?=.*[A-Z]).{{12,}}$\n\
         PASSWORD_ATTEMPTS=5\nPASSWORD_HOLDOFF=5\nPASSWORD_HISTORY=5\n\
         HTTP_WEBROOT=/etc/acme/webroot\nSESION_EXPIRES=10\n"
    )
    .unwrap();
    let loaded = Config::load(Some(file.path()), env(&[])).expect("vendor file loads");
    let warned: Vec<_> = loaded.warnings.iter().map(|w| w.var.as_str()).collect();
    for unused in [
        "MONGO_URI",
        "DISTRIB_URL",
        "DISTRIB_KEY",
        "MONGO_SECRET",
        "HTTP_WEBROOT",
    ] {
        assert!(
            warned.contains(&unused),
            "{unused} not reported: {warned:?}"
        );
    }
    let typo = loaded
        .warnings
        .iter()
        .find(|w| w.var == "SESION_EXPIRES")
        .expect("unknown key warned");
    assert!(
        typo.message.contains("did you mean SESSION_EXPIRES"),
        "{typo}"
    );
    let rule = loaded
        .warnings
        .iter()
        .find(|w| w.var == "PASSWORD_RULE")
        .expect("rule slip warned");
    assert!(rule.message.contains(password_rule::DEFAULT_RULE), "{rule}");
    assert!(warned.contains(&"MANAGER_PASSWORD"), "weak password warned");
    assert_eq!(loaded.config.manager_host, "localhost:3000");
    assert_eq!(loaded.config.recognizer_uri.unwrap().hosts.len(), 1);
}

#[test]
fn environment_overrides_env_file() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(file, "PORT=9443\nHTTP_PORT=9080").unwrap();
    let loaded = Config::load(Some(file.path()), env(&[("PORT", "10443")])).unwrap();
    assert_eq!(loaded.config.port, 10443);
    assert_eq!(loaded.config.http_port, Some(9080));
    let port = loaded.effective.iter().find(|e| e.0 == "PORT").unwrap();
    assert_eq!((port.1.as_str(), port.2), ("10443", "environment"));
}

#[test]
fn bad_env_file_lines_are_errors_with_line_numbers() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(file, "PORT=1\nthis is not an assignment\nQ=\"open").unwrap();
    let errors = Config::load(Some(file.path()), env(&[])).unwrap_err();
    let vars = vars_of(&errors);
    assert_eq!(vars.len(), 2);
    assert!(
        vars[0].ends_with(":2") && vars[1].ends_with(":3"),
        "{vars:?}"
    );
    let missing = Config::load(Some(Path::new("/nonexistent/.env")), env(&[])).unwrap_err();
    assert_eq!(vars_of(&missing), ["--env-file"]);
}

#[test]
fn secrets_are_redacted_everywhere() {
    let key = "k".repeat(40);
    let loaded = load_env(&[
        ("SESSION_KEY", &key),
        ("MANAGER_PASSWORD", "Sup3r-secret-password"),
        ("MINIO_URI", "http://key:hunter2@127.0.0.1:9000/bucket"),
        ("TURN_USER", "webrtc:hunter3"),
    ])
    .unwrap();
    let debug = format!("{:?}", loaded.config);
    let shown = format!("{:?}", loaded.effective);
    for text in [&debug, &shown] {
        for secret in [key.as_str(), "Sup3r-secret-password", "hunter2", "hunter3"] {
            assert!(!text.contains(secret), "{secret} leaked");
        }
    }
}

#[test]
fn http_port_can_be_turned_off_and_must_differ() {
    assert_eq!(
        load_env(&[("HTTP_PORT", "off")]).unwrap().config.http_port,
        None
    );
    let errors = load_env(&[("PORT", "9000"), ("HTTP_PORT", "9000")]).unwrap_err();
    assert_eq!(vars_of(&errors), ["HTTP_PORT"]);
}

#[test]
fn turn_external_ip_takes_coturn_form() {
    let c = load_env(&[("TURN_EXTERNAL_IP", "203.0.113.7/10.0.0.7")])
        .unwrap()
        .config;
    let (public, private) = c.turn_external_ip.unwrap();
    assert_eq!(public.to_string(), "203.0.113.7");
    assert_eq!(private.unwrap().to_string(), "10.0.0.7");
}

#[test]
fn manager_host_follows_domain_and_port() {
    let c = load_env(&[("DOMAIN_NAME", "Exam.Example.org"), ("PORT", "443")])
        .unwrap()
        .config;
    assert_eq!(c.manager_host, "exam.example.org");
    assert_eq!(c.public_url(), "https://exam.example.org");
}

#[test]
fn turn_quotas_are_read_and_validated() {
    let c = load_env(&[
        ("TURN_MAX_ALLOCATIONS_PER_USER", "3"),
        ("TURN_BPS_PER_ALLOCATION", "250000"),
    ])
    .unwrap()
    .config;
    assert_eq!(c.turn_max_allocations_per_user, 3);
    assert_eq!(c.turn_max_allocations_per_ip, 1024);
    assert_eq!((c.turn_bps_per_allocation, c.turn_total_bps), (250_000, 0));
    let errors = load_env(&[
        ("TURN_MAX_ALLOCATIONS_PER_USER", "-1"),
        ("TURN_MAX_ALLOCATIONS_PER_IP", "0"),
        ("TURN_BPS_PER_ALLOCATION", "fast"),
        ("TURN_TOTAL_BPS", "100"),
    ])
    .unwrap_err();
    let mut vars = vars_of(&errors);
    vars.sort_unstable();
    assert_eq!(
        vars,
        [
            "TURN_BPS_PER_ALLOCATION",
            "TURN_MAX_ALLOCATIONS_PER_IP",
            "TURN_MAX_ALLOCATIONS_PER_USER",
            "TURN_TOTAL_BPS",
        ]
    );
    assert!(
        errors.to_string().contains("below 1500 bytes/s"),
        "{errors}"
    );
}

#[test]
fn cold_tier_is_one_place_with_days_and_a_rate() {
    let c = load_env(&[]).unwrap().config;
    assert_eq!(c.cold, None);
    assert_eq!(c.cold_after, std::time::Duration::from_secs(30 * 86_400));
    assert_eq!(c.cold_rate, 8 << 20);
    let c = load_env(&[("COLD_DIR", "/mnt/archive"), ("COLD_AFTER", "0")])
        .unwrap()
        .config;
    assert_eq!(c.cold, Some(ColdTier::Dir("/mnt/archive".into())));
    assert_eq!(c.cold_after, std::time::Duration::ZERO);
    let both = load_env(&[
        ("COLD_DIR", "/mnt/archive"),
        ("COLD_URI", "http://k:hunter2@127.0.0.1:9000/cold"),
    ])
    .unwrap_err();
    assert_eq!(vars_of(&both), ["COLD_URI"]);
    assert!(!format!("{both:?}").contains("hunter2"));
    let bad = load_env(&[("COLD_AFTER", "soon"), ("COLD_RATE", "0")]).unwrap_err();
    assert_eq!(vars_of(&bad), ["COLD_AFTER", "COLD_RATE"]);
}
