//! Machine-readable zones of travel documents (ICAO 9303): TD1 (ID cards,
//! 3 × 30), TD2 (2 × 36) and TD3 (passports, 2 × 44), with
//! every check digit verified. A document whose MRZ does not verify is not
//! read at all: a wrong digit means a misread or a forged zone.

use super::error::{RecognizeError, Result};
use serde::Serialize;

/// The three layouts of ICAO 9303.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Format {
    /// Three lines of 30 (ICAO 9303 part 5).
    TD1,
    /// Two lines of 36 (part 6).
    TD2,
    /// Two lines of 44, passports (part 4).
    TD3,
}

/// The fields of a verified MRZ. Dates are `YYMMDD` as printed (the century
/// is not in the zone); filler `<` is removed from every field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mrz {
    pub format: Format,
    pub document_code: String,
    pub issuing_state: String,
    pub surname: String,
    pub given_names: String,
    pub document_number: String,
    pub nationality: String,
    pub birth_date: String,
    /// `M`, `F`, or `X` (unspecified, `<` in the zone).
    pub sex: String,
    pub expiry_date: String,
    pub optional_data: String,
}

fn invalid(message: impl Into<String>) -> RecognizeError {
    RecognizeError::Mrz(message.into())
}

/// The value of an MRZ character for check digits: digits as themselves,
/// letters A–Z as 10–35, the filler as 0.
fn value(c: u8) -> Option<u32> {
    match c {
        b'0'..=b'9' => Some(u32::from(c - b'0')),
        b'A'..=b'Z' => Some(u32::from(c - b'A') + 10),
        b'<' => Some(0),
        _ => None,
    }
}

/// The ICAO check digit of `field`: weights 7, 3, 1 repeating, modulo 10.
pub fn check_digit(field: &[u8]) -> Option<u8> {
    let mut sum = 0u32;
    for (i, &c) in field.iter().enumerate() {
        sum += value(c)? * [7, 3, 1][i % 3];
    }
    Some(b'0' + (sum % 10) as u8)
}

/// Verifies the check digit `digit` of `field`, named `what` in the error.
/// An all-filler optional field may carry `<` as its check digit.
fn verify(what: &str, field: &[u8], digit: u8) -> Result<()> {
    let expected = check_digit(field).ok_or_else(|| invalid(format!("{what}: bad character")))?;
    if digit == expected || (digit == b'<' && field.iter().all(|&c| c == b'<')) {
        Ok(())
    } else {
        Err(invalid(format!(
            "{what} {:?}: check digit is {}, expected {}",
            text(field),
            char::from(digit),
            char::from(expected)
        )))
    }
}

/// A field without its filler.
fn text(field: &[u8]) -> String {
    String::from_utf8_lossy(field)
        .trim_end_matches('<')
        .replace('<', " ")
        .trim()
        .to_string()
}

/// `SURNAME<<GIVEN<NAMES` into surname and given names.
fn names(field: &[u8]) -> (String, String) {
    let raw = String::from_utf8_lossy(field);
    let raw = raw.trim_end_matches('<');
    let (surname, given) = raw.split_once("<<").unwrap_or((raw, ""));
    (
        surname.replace('<', " ").trim().to_string(),
        given.replace('<', " ").trim().to_string(),
    )
}

fn sex(c: u8) -> Result<String> {
    match c {
        b'M' | b'F' | b'X' => Ok(char::from(c).to_string()),
        b'<' => Ok("X".into()),
        other => Err(invalid(format!(
            "sex {:?} is not M, F, X or <",
            char::from(other)
        ))),
    }
}

/// Parses and verifies an MRZ given as its lines (blank lines and surrounding
/// spaces ignored; lower case accepted, as OCR may give it).
pub fn parse(input: &str) -> Result<Mrz> {
    let lines: Vec<Vec<u8>> = input
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| l.to_ascii_uppercase().into_bytes())
        .collect();
    for (i, line) in lines.iter().enumerate() {
        if let Some(bad) = line.iter().find(|&&c| value(c).is_none()) {
            return Err(invalid(format!(
                "line {}: {:?} is not an MRZ character (A–Z, 0–9, <)",
                i + 1,
                char::from(*bad)
            )));
        }
    }
    let lengths: Vec<usize> = lines.iter().map(Vec::len).collect();
    match lengths.as_slice() {
        [30, 30, 30] => td1(&lines[0], &lines[1], &lines[2]),
        [36, 36] => two_line(Format::TD2, &lines[0], &lines[1]),
        [44, 44] => two_line(Format::TD3, &lines[0], &lines[1]),
        other => Err(invalid(format!(
            "lines of {other:?} characters; an MRZ has 3 × 30 (TD1), 2 × 36 (TD2) or 2 × 44 (TD3)"
        ))),
    }
}

/// TD2 and TD3 share one layout; only the name and optional fields differ
/// in length.
fn two_line(format: Format, l1: &[u8], l2: &[u8]) -> Result<Mrz> {
    let n = l2.len();
    verify("document number", &l2[0..9], l2[9])?;
    verify("birth date", &l2[13..19], l2[19])?;
    verify("expiry date", &l2[21..27], l2[27])?;
    let optional = if format == Format::TD3 {
        // The personal number has its own check digit.
        verify("personal number", &l2[28..42], l2[42])?;
        &l2[28..42]
    } else {
        &l2[28..35]
    };
    let composite: Vec<u8> = [&l2[0..10], &l2[13..20], &l2[21..n - 1]].concat();
    verify("composite", &composite, l2[n - 1])?;
    let (surname, given_names) = names(&l1[5..]);
    Ok(Mrz {
        format,
        document_code: text(&l1[0..2]),
        issuing_state: text(&l1[2..5]),
        surname,
        given_names,
        document_number: text(&l2[0..9]),
        nationality: text(&l2[10..13]),
        birth_date: text(&l2[13..19]),
        sex: sex(l2[20])?,
        expiry_date: text(&l2[21..27]),
        optional_data: text(optional),
    })
}

fn td1(l1: &[u8], l2: &[u8], l3: &[u8]) -> Result<Mrz> {
    // A document number longer than 9 characters continues in the optional
    // field, ending with its check digit, and `<` stands in position 15.
    let (number, optional1) = if l1[14] == b'<' && l1[15] != b'<' {
        let rest = &l1[15..30];
        let end = rest.iter().position(|&c| c == b'<').unwrap_or(rest.len());
        if end == 0 {
            return Err(invalid("document number: missing check digit"));
        }
        let mut number = l1[5..14].to_vec();
        number.extend_from_slice(&rest[..end - 1]);
        verify("document number", &number, rest[end - 1])?;
        (number, &rest[end..])
    } else {
        verify("document number", &l1[5..14], l1[14])?;
        (l1[5..14].to_vec(), &l1[15..30])
    };
    verify("birth date", &l2[0..6], l2[6])?;
    verify("expiry date", &l2[8..14], l2[14])?;
    let composite: Vec<u8> = [&l1[5..30], &l2[0..7], &l2[8..15], &l2[18..29]].concat();
    verify("composite", &composite, l2[29])?;
    let (surname, given_names) = names(l3);
    let optional = [text(optional1), text(&l2[18..29])]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    Ok(Mrz {
        format: Format::TD1,
        document_code: text(&l1[0..2]),
        issuing_state: text(&l1[2..5]),
        surname,
        given_names,
        document_number: text(&number),
        nationality: text(&l2[15..18]),
        birth_date: text(&l2[0..6]),
        sex: sex(l2[7])?,
        expiry_date: text(&l2[8..14]),
        optional_data: optional,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // The specimens ICAO 9303 publishes (Utopia, Anna Maria Eriksson).
    const TD3: &str = "P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<\n\
                       L898902C36UTO7408122F1204159ZE184226B<<<<<10";
    const TD2: &str = "I<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<\n\
                       D231458907UTO7408122F1204159<<<<<<<6";
    const TD1: &str = "I<UTOD231458907<<<<<<<<<<<<<<<\n\
                       7408122F1204159UTO<<<<<<<<<<<6\n\
                       ERIKSSON<<ANNA<MARIA<<<<<<<<<<";

    #[test]
    fn check_digits_follow_icao() {
        assert_eq!(check_digit(b"L898902C3"), Some(b'6'));
        assert_eq!(check_digit(b"740812"), Some(b'2'));
        assert_eq!(check_digit(b"120415"), Some(b'9'));
        assert_eq!(check_digit(b"D23145890"), Some(b'7'));
        assert_eq!(check_digit(b"a"), None);
    }

    #[test]
    fn td3_specimen() {
        let m = parse(TD3).expect("valid specimen");
        assert_eq!(m.format, Format::TD3);
        assert_eq!(m.document_code, "P");
        assert_eq!(m.issuing_state, "UTO");
        assert_eq!(m.surname, "ERIKSSON");
        assert_eq!(m.given_names, "ANNA MARIA");
        assert_eq!(m.document_number, "L898902C3");
        assert_eq!(m.nationality, "UTO");
        assert_eq!(m.birth_date, "740812");
        assert_eq!(m.sex, "F");
        assert_eq!(m.expiry_date, "120415");
        assert_eq!(m.optional_data, "ZE184226B");
    }

    #[test]
    fn td2_specimen() {
        let m = parse(TD2).expect("valid specimen");
        assert_eq!(m.format, Format::TD2);
        assert_eq!(m.document_code, "I");
        assert_eq!(
            (m.surname.as_str(), m.given_names.as_str()),
            ("ERIKSSON", "ANNA MARIA")
        );
        assert_eq!(m.document_number, "D23145890");
        assert_eq!(
            (m.birth_date.as_str(), m.expiry_date.as_str()),
            ("740812", "120415")
        );
        assert_eq!(m.optional_data, "");
    }

    #[test]
    fn td1_specimen() {
        let m = parse(TD1).expect("valid specimen");
        assert_eq!(m.format, Format::TD1);
        assert_eq!(m.document_code, "I");
        assert_eq!(m.issuing_state, "UTO");
        assert_eq!(m.document_number, "D23145890");
        assert_eq!(m.nationality, "UTO");
        assert_eq!(m.sex, "F");
        assert_eq!(
            (m.surname.as_str(), m.given_names.as_str()),
            ("ERIKSSON", "ANNA MARIA")
        );
    }

    #[test]
    fn td1_long_document_number_continues_in_the_optional_field() {
        // Document number D23145890123 (12 characters): 9 in place, `<`,
        // then 123 and its check digit in the optional field.
        let number = b"D23145890123";
        let digit = char::from(check_digit(number).expect("digit"));
        let l1 = format!("I<UTOD23145890<123{digit}<<<<<<<<<<<");
        let l2_head = "7408122F1204159UTO<<<<<<<<<<<";
        let composite = [
            &l1.as_bytes()[5..30],
            &l2_head.as_bytes()[0..7],
            &l2_head.as_bytes()[8..15],
            &l2_head.as_bytes()[18..29],
        ]
        .concat();
        let c = char::from(check_digit(&composite).expect("digit"));
        let text = format!("{l1}\n{l2_head}{c}\nERIKSSON<<ANNA<MARIA<<<<<<<<<<");
        let m = parse(&text).expect("long number");
        assert_eq!(m.document_number, "D23145890123");
    }

    #[test]
    fn every_check_digit_is_verified() {
        // Change each check digit of the TD3 specimen in turn.
        let line2 = TD3.lines().nth(1).expect("line 2").trim().to_string();
        for (pos, what) in [
            (9, "document number"),
            (19, "birth date"),
            (27, "expiry date"),
            (42, "personal number"),
            (43, "composite"),
        ] {
            let mut bad = line2.clone().into_bytes();
            bad[pos] = if bad[pos] == b'5' { b'6' } else { b'5' };
            let text = format!(
                "{}\n{}",
                TD3.lines().next().expect("line 1"),
                String::from_utf8(bad).expect("ascii")
            );
            let err = parse(&text)
                .expect_err("a wrong check digit is refused")
                .to_string();
            assert!(err.contains(what), "{what}: {err}");
        }
        // A changed field breaks its own check digit.
        let err = parse(&TD3.replace("7408122", "7408132"))
            .expect_err("birth date")
            .to_string();
        assert!(err.contains("birth date"), "{err}");
    }

    #[test]
    fn wrong_shapes_are_named() {
        let err = parse("P<UTO\nL898").expect_err("short").to_string();
        assert!(err.contains("TD3"), "{err}");
        let err = parse(&TD3.replace('L', "é"))
            .expect_err("not MRZ")
            .to_string();
        assert!(err.contains("not an MRZ character"), "{err}");
        // OCR in lower case with surrounding blank lines is accepted.
        assert!(parse(&format!("\n  {}  \n", TD3.to_lowercase())).is_ok());
    }

    proptest! {
        #[test]
        fn never_panics_on_any_text(s in "\\PC{0,200}") {
            let _ = parse(&s);
        }

        #[test]
        fn never_panics_on_mrz_shaped_text(
            lines in prop::sample::select(vec![(3usize, 30usize), (2, 36), (2, 44)]),
            chars in prop::collection::vec(prop::sample::select(b"ABCXYZ0123456789<<<<".to_vec()), 132),
        ) {
            let (count, len) = lines;
            let text: Vec<String> = (0..count)
                .map(|i| String::from_utf8(chars[i * len..(i + 1) * len].to_vec()).expect("ascii"))
                .collect();
            let _ = parse(&text.join("\n"));
        }
    }
}
