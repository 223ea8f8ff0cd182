//! Reading typed values out of the merged variables, collecting every error.

use super::{ConfigError, Secret, Source};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The merged raw values and the errors found while reading them.
pub(super) struct Checker<'a> {
    pub values: &'a BTreeMap<String, (String, Source)>,
    pub errors: Vec<ConfigError>,
}

impl<'a> Checker<'a> {
    pub fn new(values: &'a BTreeMap<String, (String, Source)>) -> Self {
        Self {
            values,
            errors: Vec::new(),
        }
    }

    pub fn error(&mut self, var: &str, message: impl Into<String>) {
        self.errors.push(ConfigError {
            var: var.to_string(),
            message: message.into(),
        });
    }

    /// The raw value, with empty strings treated as unset (compose writes `X=`
    /// for a variable it has no value for).
    pub fn raw(&self, var: &str) -> Option<&'a str> {
        self.values
            .get(var)
            .map(|(v, _)| v.as_str())
            .filter(|v| !v.trim().is_empty())
    }

    pub fn string(&self, var: &str, default: &str) -> String {
        self.raw(var).unwrap_or(default).trim().to_string()
    }

    pub fn opt_string(&self, var: &str) -> Option<String> {
        self.raw(var).map(|v| v.trim().to_string())
    }

    pub fn secret(&self, var: &str) -> Option<Secret> {
        self.raw(var).map(|v| Secret::new(v.trim()))
    }

    /// An unsigned integer within `min..=max`; on error the default is kept so
    /// that checking can go on and report the other variables too.
    pub fn number(&mut self, var: &str, default: u64, min: u64, max: u64) -> u64 {
        let Some(raw) = self.raw(var) else {
            return default;
        };
        match raw.trim().parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => n,
            Ok(n) => {
                self.error(var, format!("{n} is out of range {min}..={max}"));
                default
            }
            Err(_) => {
                self.error(var, format!("{raw:?} is not a whole number"));
                default
            }
        }
    }

    /// `on`/`off` (also `1`/`0`, `true`/`false`, `yes`/`no`).
    pub fn switch(&mut self, var: &str, default: bool) -> bool {
        let Some(raw) = self.raw(var) else {
            return default;
        };
        match raw.trim().to_ascii_lowercase().as_str() {
            "on" | "1" | "true" | "yes" => true,
            "off" | "0" | "false" | "no" => false,
            _ => {
                // Reported once even when read twice.
                if !self.errors.iter().any(|e| e.var == var) {
                    self.error(var, format!("{raw:?} is neither `on` nor `off`"));
                }
                default
            }
        }
    }

    pub fn port(&mut self, var: &str, default: u16) -> u16 {
        self.number(var, u64::from(default), 0, 65535) as u16
    }

    pub fn minutes(&mut self, var: &str, default: u64, max: u64) -> Duration {
        Duration::from_secs(self.number(var, default, 1, max) * 60)
    }

    pub fn ip(&mut self, var: &str, default: IpAddr) -> IpAddr {
        let Some(raw) = self.raw(var) else {
            return default;
        };
        raw.trim().parse().unwrap_or_else(|_| {
            self.error(var, format!("{raw:?} is not an IP address"));
            default
        })
    }

    pub fn path(&self, var: &str) -> Option<PathBuf> {
        self.raw(var).map(|v| PathBuf::from(v.trim()))
    }
}

/// A `scheme://[credentials@]host:port[,host:port…]/path[?query]` URI as the seed
/// writes `RECOGNIZER_URI` and `TURN_URI`: several hosts share one credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultiHostUri {
    pub scheme: String,
    pub credentials: Option<Secret>,
    pub hosts: Vec<(String, u16)>,
    pub path: String,
    pub query: Option<String>,
}

/// Parses a multi-host URI; errors never contain the credentials.
pub fn parse_multi_host(
    raw: &str,
    schemes: &[&str],
    default_port: u16,
) -> Result<MultiHostUri, String> {
    let raw = raw.trim();
    let Some((scheme, rest)) = raw.split_once("://").or_else(|| {
        // `turn:host:port` (RFC 7065) has no slashes.
        raw.split_once(':')
            .filter(|(s, _)| s.eq_ignore_ascii_case("turn") || s.eq_ignore_ascii_case("turns"))
    }) else {
        return Err(format!("expected {}://…", schemes.join("|")));
    };
    let scheme = scheme.to_ascii_lowercase();
    if !schemes.contains(&scheme.as_str()) {
        return Err(format!(
            "scheme {scheme:?} is not one of {}",
            schemes.join(", ")
        ));
    }
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q.to_string())),
        None => (rest, None),
    };
    let (authority, path) = match rest.find('/') {
        Some(at) => (&rest[..at], rest[at..].to_string()),
        None => (rest, String::new()),
    };
    let (credentials, hostlist) = match authority.rsplit_once('@') {
        Some(("", h)) => return Err(format!("empty credentials before '@{h}'")),
        Some((c, h)) => (Some(Secret::new(c)), h),
        None => (None, authority),
    };
    let mut hosts = Vec::new();
    for part in hostlist.split(',') {
        hosts.push(parse_host_port(part.trim(), default_port)?);
    }
    Ok(MultiHostUri {
        scheme,
        credentials,
        hosts,
        path,
        query,
    })
}

fn parse_host_port(part: &str, default_port: u16) -> Result<(String, u16), String> {
    if part.is_empty() {
        return Err("a host name is missing".into());
    }
    let (host, port) = if let Some(v6) = part.strip_prefix('[') {
        let Some((h, after)) = v6.split_once(']') else {
            return Err(format!("{part:?}: unclosed '['"));
        };
        (h, after.strip_prefix(':'))
    } else {
        match part.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (part, None),
        }
    };
    let valid_name = host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'));
    if host.is_empty() || !valid_name {
        return Err(format!("{host:?} is not a host name or address"));
    }
    let port = match port {
        None => default_port,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("{p:?} is not a port number (1-65535) for host {host}"))?,
    };
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognizer_uri_with_several_hosts() {
        let uri = parse_multi_host(
            "http://KEY@host1:8080,host2:8081/recognize",
            &["http", "https"],
            80,
        )
        .unwrap();
        assert_eq!(uri.credentials.unwrap().expose(), "KEY");
        assert_eq!(
            uri.hosts,
            [("host1".to_string(), 8080), ("host2".to_string(), 8081)]
        );
        assert_eq!(uri.path, "/recognize");
    }

    #[test]
    fn turn_uri_forms() {
        let uri = parse_multi_host(
            "turn://webrtc:webrtc@127.0.0.1:3478?transport=tcp+udp",
            &["turn", "turns"],
            3478,
        )
        .unwrap();
        assert_eq!(uri.query.as_deref(), Some("transport=tcp+udp"));
        assert_eq!(uri.hosts, [("127.0.0.1".to_string(), 3478)]);
        let bare = parse_multi_host("turn:[::1]:3479", &["turn"], 3478).unwrap();
        assert_eq!(bare.hosts, [("::1".to_string(), 3479)]);
    }

    #[test]
    fn errors_name_the_part_and_hide_secrets() {
        let err = parse_multi_host("ftp://s3cret@h/x", &["http"], 80).unwrap_err();
        assert!(err.contains("ftp") && !err.contains("s3cret"), "{err}");
        let err = parse_multi_host("http://s3cret@h:99999/x", &["http"], 80).unwrap_err();
        assert!(err.contains("99999") && !err.contains("s3cret"), "{err}");
        assert!(parse_multi_host("http://k@/x", &["http"], 80).is_err());
        assert!(parse_multi_host("http://k@a,,b/x", &["http"], 80).is_err());
    }
}
