//! CSV import of users (RFC 4180, UTF-8, a BOM tolerated): a dry run reports
//! every bad row by line and column; a real import is all-or-nothing.
//!
//! Columns (header row required, any order, case-insensitive): `username`
//! (required), `nickname`, `email`, `role`, `groups` (separated by `;`),
//! `language`, `password`.

use super::audit::{self, Event};
use super::users::{self, UserInput};
use super::{AuthError, Principal};
use crate::config::PasswordRule;
use crate::store::Store;
use serde::Serialize;
use std::collections::HashMap;

/// Most rows one import may hold.
pub const MAX_ROWS: usize = 20_000;
const COLUMNS: &[&str] = &[
    "username", "nickname", "email", "role", "groups", "language", "password",
];

/// One problem, located like a spreadsheet shows it (1-based).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowError {
    pub line: u64,
    pub column: String,
    pub message: String,
}

/// What an import did or would do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub rows: usize,
    pub created: usize,
    pub dry_run: bool,
    pub errors: Vec<RowError>,
}

fn err(line: u64, column: &str, message: impl Into<String>) -> RowError {
    RowError {
        line,
        column: column.to_string(),
        message: message.into(),
    }
}

/// Parses and checks every row; returns the users to create and the errors.
fn parse(
    store: &dyn Store,
    host_id: &str,
    bytes: &[u8],
    rule: &PasswordRule,
) -> Result<(Vec<users::User>, Vec<RowError>), AuthError> {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(bytes);
    let mut errors = Vec::new();
    let headers = match reader.headers() {
        Ok(h) => h.clone(),
        Err(e) => return Ok((Vec::new(), vec![err(1, "", e.to_string())])),
    };
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, name) in headers.iter().enumerate() {
        let name = name.trim().to_ascii_lowercase();
        match COLUMNS.iter().find(|c| **c == name) {
            Some(c) => {
                if index.insert(c, i).is_some() {
                    errors.push(err(1, c, "the column appears twice"));
                }
            }
            None => errors.push(err(
                1,
                &name,
                format!("unknown column; expected some of {}", COLUMNS.join(", ")),
            )),
        }
    }
    if !index.contains_key("username") {
        errors.push(err(1, "username", "the username column is required"));
    }
    if !errors.is_empty() {
        return Ok((Vec::new(), errors));
    }
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut out = Vec::new();
    for (n, record) in reader.records().enumerate() {
        if n >= MAX_ROWS {
            errors.push(err(n as u64 + 2, "", format!("more than {MAX_ROWS} rows")));
            break;
        }
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(n as u64 + 2, |p| p.line());
                let message = match e.kind() {
                    csv::ErrorKind::Utf8 { .. } => "the row is not UTF-8 text".to_string(),
                    csv::ErrorKind::UnequalLengths {
                        expected_len, len, ..
                    } => {
                        format!("{len} fields where the header has {expected_len}")
                    }
                    _ => e.to_string(),
                };
                errors.push(err(line, "", message));
                continue;
            }
        };
        let line = record.position().map_or(n as u64 + 2, |p| p.line());
        let field = |name: &str| index.get(name).and_then(|i| record.get(*i)).map(str::trim);
        let username = match users::normalize_username(field("username").unwrap_or_default()) {
            Ok(u) => u,
            Err(e) => {
                errors.push(err(line, "username", e.to_string()));
                continue;
            }
        };
        if let Some(first) = seen.insert(username.clone(), line) {
            errors.push(err(
                line,
                "username",
                format!("{username} already appears on line {first}"),
            ));
            continue;
        }
        let opt = |name: &str| field(name).filter(|v| !v.is_empty()).map(str::to_string);
        let input = UserInput {
            username: Some(username.clone()),
            nickname: opt("nickname"),
            email: Some(opt("email")),
            language: Some(opt("language")),
            role: opt("role"),
            groups: opt("groups").map(|g| g.split(';').map(|s| s.trim().to_string()).collect()),
            photo: None,
            disabled: None,
            password: opt("password"),
        };
        let mut user = users::blank(host_id, &username);
        match users::apply(&mut user, &input, rule) {
            Ok(()) => out.push(user),
            Err(AuthError::Invalid { field, message }) => errors.push(err(line, &field, message)),
            Err(AuthError::PasswordRejected(m)) => errors.push(err(line, "password", m)),
            Err(other) => return Err(other),
        }
    }
    // Existing accounts are checked once the file itself is read.
    store.read(|tx| {
        for user in &out {
            if users::load(tx, host_id, &user.username)?.is_some() {
                let line = seen.get(&user.username).copied().unwrap_or(0);
                errors.push(err(
                    line,
                    "username",
                    format!("{} already exists", user.username),
                ));
            }
        }
        Ok::<_, AuthError>(())
    })?;
    errors.sort_by_key(|e| e.line);
    Ok((out, errors))
}

/// Imports users into `host_id`. With `dry_run`, or when any row is bad,
/// nothing is written.
pub fn import(
    store: &dyn Store,
    by: &Principal,
    host_id: &str,
    bytes: &[u8],
    rule: &PasswordRule,
    dry_run: bool,
    client: &str,
) -> Result<Report, AuthError> {
    let (rows, errors) = parse(store, host_id, bytes, rule)?;
    let mut report = Report {
        rows: rows.len() + errors.iter().filter(|e| e.line > 1).count(),
        created: 0,
        dry_run,
        errors,
    };
    if dry_run || !report.errors.is_empty() {
        return Ok(report);
    }
    store.write(|tx| {
        for user in &rows {
            users::insert(tx, user)?;
        }
        audit::append(
            tx,
            host_id,
            Event::new(by.actor(), "users_imported", host_id)
                .client(client)
                .with("count", rows.len().to_string()),
        )?;
        Ok::<_, AuthError>(())
    })?;
    report.created = rows.len();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn by() -> Principal {
        Principal::Manager {
            username: "m".into(),
        }
    }

    #[test]
    fn good_file_with_bom_imports_everything() {
        let store = MemoryStore::new();
        let csv = "\u{feff}Username,Nickname,Email,Role,Groups\n\
                   ann,\"Smith, Ann\",ann@example.org,student,g1;g2\n\
                   bob,Bob,,proctor,\n";
        let dry = import(
            &store,
            &by(),
            "h1",
            csv.as_bytes(),
            &PasswordRule::default(),
            true,
            "",
        )
        .unwrap();
        assert_eq!((dry.rows, dry.created, dry.errors.len()), (2, 0, 0));
        assert!(
            users::get(&store, "h1", "ann").is_err(),
            "dry run writes nothing"
        );
        let real = import(
            &store,
            &by(),
            "h1",
            csv.as_bytes(),
            &PasswordRule::default(),
            false,
            "",
        )
        .unwrap();
        assert_eq!(real.created, 2);
        let ann = users::get(&store, "h1", "ann").unwrap();
        assert_eq!((ann.nickname.as_str(), ann.groups.len()), ("Smith, Ann", 2));
    }

    #[test]
    fn every_bad_row_is_reported_and_nothing_is_written() {
        let store = MemoryStore::new();
        let csv = "username,email,role,password\n\
                   ann,ann@example.org,student,\n\
                   bad name,,student,\n\
                   cy,not-an-email,student,\n\
                   ANN,,student,\n\
                   dee,,emperor,\n\
                   eve,,student,weak\n\
                   fay,\"broken,quote\n";
        let r = import(
            &store,
            &by(),
            "h1",
            csv.as_bytes(),
            &PasswordRule::default(),
            false,
            "",
        )
        .unwrap();
        let got: Vec<(u64, &str)> = r
            .errors
            .iter()
            .map(|e| (e.line, e.column.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (3, "username"),
                (4, "email"),
                (5, "username"),
                (6, "role"),
                (7, "password"),
                (8, "")
            ],
            "{:#?}",
            r.errors
        );
        assert_eq!(r.created, 0);
        assert!(users::get(&store, "h1", "ann").is_err(), "all or nothing");
    }

    #[test]
    fn header_problems_and_bad_encoding() {
        let store = MemoryStore::new();
        let r = import(
            &store,
            &by(),
            "h1",
            b"name,mail\nx,y\n",
            &PasswordRule::default(),
            true,
            "",
        )
        .unwrap();
        assert!(r.errors.iter().any(|e| e.column == "username"));
        let latin1 = b"username,nickname\nann,Jos\xe9\n";
        let r = import(
            &store,
            &by(),
            "h1",
            latin1,
            &PasswordRule::default(),
            true,
            "",
        )
        .unwrap();
        assert_eq!(r.errors.len(), 1);
        assert!(r.errors[0].message.contains("UTF-8"), "{:?}", r.errors);
    }
}
