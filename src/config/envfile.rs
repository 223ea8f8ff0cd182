//! The vendor's `.env` format: `KEY=VALUE` lines, `#` comments, optional quotes.
//!
//! Kept compatible with what docker compose reads, so an institution's existing
//! file carries over: `export ` prefixes are tolerated, double quotes understand
//! `\n`, `\"` and `\\`, single quotes are literal, and an unquoted value ends at
//! ` #`.

use std::path::Path;

/// One `KEY=VALUE` assignment and the line it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub line: usize,
    pub key: String,
    pub value: String,
}

/// A line that could not be read, with its 1-based number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub line: usize,
    pub message: String,
}

/// Reads and parses an env file; I/O errors are returned as a message.
pub fn read(path: &Path) -> Result<(Vec<Entry>, Vec<LineError>), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let text = String::from_utf8(bytes)
        .map_err(|e| format!("{} is not UTF-8 text: {e}", path.display()))?;
    Ok(parse(&text))
}

/// Parses env-file text, collecting every bad line instead of stopping at the first.
pub fn parse(text: &str) -> (Vec<Entry>, Vec<LineError>) {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut entries = Vec::new();
    let mut errors = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        match parse_line(raw) {
            Ok(Some((key, value))) => entries.push(Entry { line, key, value }),
            Ok(None) => {}
            Err(message) => errors.push(LineError { line, message }),
        }
    }
    (entries, errors)
}

fn parse_line(raw: &str) -> Result<Option<(String, String)>, String> {
    let trimmed = raw.trim();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return Ok(None);
    }
    let body = trimmed.strip_prefix("export ").unwrap_or(trimmed);
    let Some((key, rest)) = body.split_once('=') else {
        return Err(format!("expected KEY=VALUE, found {:?}", shorten(trimmed)));
    };
    let key = key.trim();
    if key.is_empty() {
        return Err("the name before '=' is empty".into());
    }
    if !key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
        || key.starts_with(|c: char| c.is_ascii_digit())
    {
        return Err(format!("{key:?} is not a valid variable name"));
    }
    let value = parse_value(rest.trim_start()).map_err(|m| format!("{key}: {m}"))?;
    Ok(Some((key.to_string(), value)))
}

fn parse_value(rest: &str) -> Result<String, String> {
    if let Some(inner) = rest.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => return trailing_ok(chars.as_str()).map(|()| out),
                '\\' => match chars.next() {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some('r') => out.push('\r'),
                    Some(other @ ('"' | '\\' | '$')) => out.push(other),
                    Some(other) => {
                        out.push('\\');
                        out.push(other);
                    }
                    None => return Err("unterminated double quote".into()),
                },
                c => out.push(c),
            }
        }
        Err("unterminated double quote".into())
    } else if let Some(inner) = rest.strip_prefix('\'') {
        let Some(end) = inner.find('\'') else {
            return Err("unterminated single quote".into());
        };
        trailing_ok(&inner[end + 1..])?;
        Ok(inner[..end].to_string())
    } else {
        let value = match rest.find(" #").or_else(|| rest.find("\t#")) {
            Some(at) => &rest[..at],
            None => rest,
        };
        Ok(value.trim_end().to_string())
    }
}

/// After a closing quote only spaces and a comment may follow.
fn trailing_ok(after: &str) -> Result<(), String> {
    let after = after.trim_start();
    if after.is_empty() || after.starts_with('#') {
        Ok(())
    } else {
        Err(format!(
            "unexpected text after the closing quote: {:?}",
            shorten(after)
        ))
    }
}

fn shorten(s: &str) -> String {
    s.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> (String, String) {
        let (entries, errors) = parse(text);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(entries.len(), 1, "{entries:?}");
        (entries[0].key.clone(), entries[0].value.clone())
    }

    #[test]
    fn plain_quoted_and_commented_values() {
        assert_eq!(one("PORT=443").1, "443");
        assert_eq!(one("export PORT=443").1, "443");
        assert_eq!(one("  HOST = 0.0.0.0  ").1, "0.0.0.0");
        assert_eq!(one("A=x # comment").1, "x");
        assert_eq!(one("A=x#y").1, "x#y");
        assert_eq!(one("A=\"a b # c\" # comment").1, "a b # c");
        assert_eq!(one("A='$literal\\n'").1, "$literal\\n");
        assert_eq!(one("A=\"line1\\nline2\"").1, "line1\nline2");
        assert_eq!(one("A=").1, "");
        assert_eq!(
            one("PASSWORD_RULE=^(?=.[0-9])(?=.*[A-Z]).{12,}$").1,
            "^(?=.[0-9])(?=.*[A-Z]).{12,}$"
        );
        assert_eq!(
            one("MINIO_URI=http://minioadmin:minioadmin@127.0.0.1:9000/proctoring").1,
            "http://minioadmin:minioadmin@127.0.0.1:9000/proctoring"
        );
    }

    #[test]
    fn comments_blank_lines_and_bom_are_skipped() {
        let (entries, errors) = parse("\u{feff}# head\n\nA=1\n   # indented\nB=2\n");
        assert!(errors.is_empty());
        let keys: Vec<_> = entries.iter().map(|e| (e.key.as_str(), e.line)).collect();
        assert_eq!(keys, [("A", 3), ("B", 5)]);
    }

    #[test]
    fn every_bad_line_is_reported_with_its_number() {
        let (entries, errors) = parse("GOOD=1\nno equals sign\n=x\nQ=\"open\n1BAD=2\nR='x' y\n");
        assert_eq!(entries.len(), 1);
        let lines: Vec<_> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [2, 3, 4, 5, 6]);
        assert!(errors[2].message.contains("unterminated"), "{errors:?}");
    }
}
