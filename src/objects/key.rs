//! Object keys: `/`-separated relative paths, checked before any backend sees them.
//!
//! The rules are deliberately narrow so that a key means the same file on disk as it
//! does in a bucket: no `.`/`..` segments (no escaping the root), no empty segments
//! (`a//b` and a trailing `/` would collapse on one backend but not the other), and a
//! small character set with no `#` (the local backend names its staging files
//! `<name>#<digits>`), no `%` (no double decoding) and nothing a shell or URL would mangle.

use super::ObjectsError;

/// Longest key, in bytes (S3's own limit).
pub const MAX_KEY_LEN: usize = 1024;

/// Longest segment, in bytes: a file name must fit in 255 bytes together with the
/// `#<digits>` suffix of a staging file.
pub const MAX_SEGMENT_LEN: usize = 200;

fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '=' | '@')
}

/// Checks that `key` is a valid object key, with an error naming the key and the rule.
pub fn validate_key(key: &str) -> Result<(), ObjectsError> {
    let fail = |reason: String| {
        Err(ObjectsError::InvalidKey {
            key: key.to_string(),
            reason,
        })
    };
    if key.is_empty() {
        return fail("the key is empty".into());
    }
    if key.len() > MAX_KEY_LEN {
        return fail(format!(
            "the key is {} bytes, the limit is {MAX_KEY_LEN}",
            key.len()
        ));
    }
    if key.starts_with('/') {
        return fail("keys are relative: no leading `/`".into());
    }
    for segment in key.split('/') {
        if segment.is_empty() {
            return fail("empty path segment (`//` or a trailing `/`)".into());
        }
        if segment == "." || segment == ".." {
            return fail(format!("`{segment}` segments are not allowed"));
        }
        if segment.len() > MAX_SEGMENT_LEN {
            return fail(format!(
                "a segment is {} bytes, the limit is {MAX_SEGMENT_LEN}",
                segment.len()
            ));
        }
        if let Some(c) = segment.chars().find(|c| !allowed(*c)) {
            return fail(format!(
                "character {c:?} is not allowed (use ASCII letters, digits, `-`, `_`, `.`, `=`, `@`)"
            ));
        }
    }
    Ok(())
}

/// Checks a listing prefix: empty (everything) or a valid key.
pub(crate) fn validate_prefix(prefix: &str) -> Result<(), ObjectsError> {
    if prefix.is_empty() {
        Ok(())
    } else {
        validate_key(prefix)
    }
}

/// The `object_store` path of a key that passed [`validate_key`].
pub(crate) fn store_path(key: &str) -> Result<object_store::path::Path, ObjectsError> {
    validate_key(key)?;
    // Our character set is a subset of what `Path::parse` accepts, so this only fails
    // if the two rule sets drift apart; report it as an invalid key rather than panic.
    object_store::path::Path::parse(key).map_err(|e| ObjectsError::InvalidKey {
        key: key.to_string(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_keys() {
        for key in [
            "a",
            "exam-1/session_2/rec.webm",
            "x/y/z/0001.jpg",
            "user@example/a=b",
            ".hidden/file",
        ] {
            assert!(validate_key(key).is_ok(), "{key} should be valid");
        }
        let long = format!("{}/{}", "a".repeat(200), "b".repeat(200));
        assert!(validate_key(&long).is_ok());
    }

    #[test]
    fn rejects_bad_keys_naming_the_key() {
        let cases = [
            ("", "empty"),
            ("/abs", "leading"),
            ("a//b", "empty path segment"),
            ("a/", "empty path segment"),
            ("a/../b", "`..`"),
            ("./a", "`.`"),
            ("a#1", "'#'"),
            ("a b", "' '"),
            ("a%2Fb", "'%'"),
            ("caf\u{e9}", "'é'"),
            ("a\\b", "'\\\\'"),
        ];
        for (key, needle) in cases {
            let err = validate_key(key).expect_err(key).to_string();
            assert!(err.contains(&format!("`{key}`")), "{err}");
            assert!(err.contains(needle), "{err} should mention {needle}");
        }
        let too_long = "a/".repeat(600) + "a";
        assert!(
            validate_key(&too_long)
                .unwrap_err()
                .to_string()
                .contains("limit is 1024")
        );
        let long_segment = "a".repeat(201);
        assert!(
            validate_key(&long_segment)
                .unwrap_err()
                .to_string()
                .contains("limit is 200")
        );
    }

    #[test]
    fn store_path_matches_key() {
        let path = store_path("a/b/c.bin").expect("valid");
        assert_eq!(path.as_ref(), "a/b/c.bin");
    }
}
