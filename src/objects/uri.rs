//! Parsing of `MINIO_URI`, the one setting that points invigil at an S3-compatible
//! store: `http(s)://<access key>:<secret key>@<host>[:port]/<bucket>[?region=<region>]`.
//!
//! Errors say which part is wrong and never repeat the secret key, because they end up
//! in logs and in `invigil config check` output.

use std::fmt;

use super::ObjectsError;

/// Region used when the URI has no `region` parameter (what MinIO expects by default).
pub const DEFAULT_REGION: &str = "us-east-1";

/// Where an S3-compatible bucket is, and how to sign requests to it.
///
/// `Debug` and `Display` never show the secret key.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Location {
    pub(super) endpoint: String,
    pub(super) bucket: String,
    pub(super) region: String,
    pub(super) access_key_id: String,
    pub(super) secret_access_key: String,
    pub(super) allow_http: bool,
}

impl S3Location {
    /// `scheme://host[:port]`, without credentials or path.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    /// True only when the URI itself says `http://`.
    pub fn allow_http(&self) -> bool {
        self.allow_http
    }
}

impl fmt::Debug for S3Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Location")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

impl fmt::Display for S3Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} (region {})",
            self.endpoint, self.bucket, self.region
        )
    }
}

/// Parses and validates a `MINIO_URI` value.
pub fn parse_minio_uri(uri: &str) -> Result<S3Location, ObjectsError> {
    fn err(reason: impl Into<String>) -> ObjectsError {
        ObjectsError::invalid_uri(reason)
    }
    let url = url::Url::parse(uri.trim()).map_err(|e| {
        // `url::ParseError` messages never include the input, so the secret stays out.
        err(format!(
            "not a URL ({e}); expected http(s)://<access key>:<secret key>@<host>[:port]/<bucket> \
             with `/`, `@`, `:` and `%` in the keys percent-encoded"
        ))
    })?;

    let scheme = url.scheme();
    let allow_http = match scheme {
        "http" => true,
        "https" => false,
        other => {
            return Err(err(format!(
                "scheme must be `http` or `https`, got `{other}`"
            )));
        }
    };
    let host = match url.host_str() {
        Some(h) if !h.is_empty() => h,
        _ => return Err(err("missing host")),
    };
    let endpoint = match url.port() {
        Some(port) => format!("{scheme}://{host}:{port}"),
        None => format!("{scheme}://{host}"),
    };

    if url.username().is_empty() {
        return Err(err(
            "missing credentials: expected <access key>:<secret key>@ before the host",
        ));
    }
    let access_key_id = percent_decode(url.username())
        .ok_or_else(|| err("the access key is not valid percent-encoded UTF-8"))?;
    let secret_access_key = match url.password() {
        Some(p) if !p.is_empty() => percent_decode(p)
            .ok_or_else(|| err("the secret key is not valid percent-encoded UTF-8"))?,
        _ => {
            return Err(err(
                "missing secret key: expected <access key>:<secret key>@ before the host",
            ));
        }
    };

    let segments: Vec<&str> = url.path().split('/').filter(|s| !s.is_empty()).collect();
    let bucket = match segments.as_slice() {
        [] => return Err(err("missing bucket: the path must be /<bucket>")),
        [bucket] => *bucket,
        more => {
            return Err(err(format!(
                "the path must be just /<bucket>, found {} segments",
                more.len()
            )));
        }
    };
    validate_bucket(bucket)?;

    if url.fragment().is_some() {
        return Err(err("a `#fragment` is not allowed"));
    }
    let mut region = None;
    for (name, value) in url.query_pairs() {
        match name.as_ref() {
            "region" => {
                if region.is_some() {
                    return Err(err("`region` is given more than once"));
                }
                let ok = !value.is_empty()
                    && value
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
                if !ok {
                    return Err(err(format!(
                        "region `{value}` is not a region name (lowercase letters, digits, `-`)"
                    )));
                }
                region = Some(value.into_owned());
            }
            other => {
                return Err(err(format!(
                    "unknown query parameter `{other}` (only `region` is supported)"
                )));
            }
        }
    }

    Ok(S3Location {
        endpoint,
        bucket: bucket.to_string(),
        region: region.unwrap_or_else(|| DEFAULT_REGION.to_string()),
        access_key_id,
        secret_access_key,
        allow_http,
    })
}

/// S3 bucket naming rules, checked here so a typo fails at startup, not at first upload.
fn validate_bucket(bucket: &str) -> Result<(), ObjectsError> {
    let chars_ok = bucket
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-');
    let ends_ok = bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
        && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
    if (3..=63).contains(&bucket.len()) && chars_ok && ends_ok {
        Ok(())
    } else {
        Err(ObjectsError::invalid_uri(format!(
            "bucket `{bucket}` is not a valid bucket name (3-63 lowercase letters, digits, \
             `.` or `-`, starting and ending with a letter or digit)"
        )))
    }
}

/// Decodes `%XX` escapes; `None` on a malformed escape or non-UTF-8 result.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(uri: &str) -> String {
        match parse_minio_uri(uri) {
            Err(ObjectsError::InvalidUri { reason }) => reason,
            other => panic!("{uri}: expected InvalidUri, got {other:?}"),
        }
    }

    #[test]
    fn parses_minio_form() {
        let loc = parse_minio_uri("http://minio:minio123@127.0.0.1:9000/evidence").expect("ok");
        assert_eq!(loc.endpoint(), "http://127.0.0.1:9000");
        assert_eq!(loc.bucket(), "evidence");
        assert_eq!(loc.region(), "us-east-1");
        assert_eq!(loc.access_key_id(), "minio");
        assert_eq!(loc.secret_access_key, "minio123");
        assert!(loc.allow_http());
    }

    #[test]
    fn parses_aws_form_with_region_and_encoded_secret() {
        let loc = parse_minio_uri(
            "https://AKIA%2BX:wJal%2FrX%40Ut%3Ax%25@s3.eu-west-1.amazonaws.com/my-bucket/?region=eu-west-1",
        )
        .expect("ok");
        assert_eq!(loc.endpoint(), "https://s3.eu-west-1.amazonaws.com");
        assert_eq!(loc.bucket(), "my-bucket");
        assert_eq!(loc.region(), "eu-west-1");
        assert_eq!(loc.access_key_id(), "AKIA+X");
        assert_eq!(loc.secret_access_key, "wJal/rX@Ut:x%");
        assert!(!loc.allow_http());
    }

    #[test]
    fn errors_name_the_problem() {
        let cases = [
            (
                "ftp://k:s@host/bucket",
                "scheme must be `http` or `https`, got `ftp`",
            ),
            ("http://k:s@host:9000", "missing bucket"),
            ("http://k:s@host:9000/", "missing bucket"),
            ("http://host:9000/bucket", "missing credentials"),
            ("http://k@host:9000/bucket", "missing secret key"),
            ("http://k:@host:9000/bucket", "missing secret key"),
            ("http://k:s@host/bucket/prefix", "just /<bucket>"),
            ("http://k:s@host/Bad_Bucket", "bucket `Bad_Bucket`"),
            (
                "http://k:s@host/bucket?foo=1",
                "unknown query parameter `foo`",
            ),
            ("http://k:s@host/bucket?region=", "region ``"),
            ("http://k:s@host/bucket?region=a&region=b", "more than once"),
            ("http://k:s@host/bucket#x", "fragment"),
            ("not a url", "not a URL"),
            ("http://k:s%zz@host/bucket", "secret key is not valid"),
        ];
        for (uri, needle) in cases {
            let reason = reason(uri);
            assert!(
                reason.contains(needle),
                "{uri}: `{reason}` lacks `{needle}`"
            );
        }
    }

    #[test]
    fn secret_never_appears_in_errors_or_debug() {
        let secret = "Sup3rSecretValue";
        let uris = [
            format!("ftp://key:{secret}@host/bucket"),
            format!("http://key:{secret}@host/"),
            format!("http://key:{secret}@host/a/b"),
            format!("http://key:{secret}@host/B"),
            format!("http://key:{secret}@host/bucket?x=1"),
            format!("http://key:{secret}@host:99999/bucket"),
            format!("http://key:{secret}/x@host/bucket"),
        ];
        for uri in &uris {
            let shown = reason(uri);
            assert!(!shown.contains(secret), "{shown}");
        }
        let loc = parse_minio_uri(&format!("http://key:{secret}@host/bucket")).expect("ok");
        assert!(!format!("{loc:?}").contains(secret));
        assert!(!loc.to_string().contains(secret));
    }
}
