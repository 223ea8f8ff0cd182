//! Finding the machine-readable zone among the text lines OCR read from a
//! document, and undoing the usual misreads before its check digits are
//! verified: `<` read as a look-alike, filler runs one character off, `0`
//! and `O` (and similar pairs) swapped where the layout says which it is.

use crate::recognize::mrz::{self, Format, Mrz};

/// What was made of the zone.
#[derive(Debug, Clone, PartialEq)]
pub enum Found {
    /// No two or three lines that look like an MRZ.
    None,
    /// Lines that look like an MRZ; `parsed` is the verified zone, or the
    /// error of the best attempt.
    Zone { lines: Vec<String>, parsed: Parsed },
}

/// The verified zone, or why it does not verify.
pub type Parsed = std::result::Result<Box<Mrz>, String>;

/// Shortest OCR line taken for an MRZ line (a TD1 line of 30 may lose a
/// filler or two).
const MIN_LINE: usize = 26;

/// The MRZ among `lines` (in reading order), repaired and parsed.
pub fn find(lines: &[&str]) -> Found {
    let candidates: Vec<String> = lines
        .iter()
        .map(|l| normalise(l))
        .filter(|l| looks_like_mrz(l))
        .collect();
    // The zone is the last two or three such lines of the document.
    let mut best: Option<(Vec<String>, Parsed)> = None;
    for (format, count, width) in [
        (Format::TD3, 2, 44),
        (Format::TD2, 2, 36),
        (Format::TD1, 3, 30),
    ] {
        if candidates.len() < count {
            continue;
        }
        let group = &candidates[candidates.len() - count..];
        // A layout fits when every line is within a few characters of its width.
        if group.iter().any(|l| l.len().abs_diff(width) > 4) {
            continue;
        }
        let repaired: Vec<String> = group
            .iter()
            .enumerate()
            .map(|(i, l)| repair(&fit(l, width), format, i))
            .collect();
        let parsed = mrz::parse(&repaired.join("\n"))
            .map(Box::new)
            .map_err(|e| e.to_string());
        let better = match &best {
            None => true,
            Some((_, Err(_))) => parsed.is_ok(),
            Some((_, Ok(_))) => false,
        };
        if better {
            best = Some((repaired, parsed));
        }
    }
    match best {
        Some((lines, parsed)) => Found::Zone { lines, parsed },
        None => match candidates.len() {
            0 | 1 => Found::None,
            _ => {
                let lines = candidates[candidates.len().saturating_sub(3)..].to_vec();
                let lengths: Vec<usize> = lines.iter().map(String::len).collect();
                Found::Zone {
                    lines,
                    parsed: Err(format!(
                        "lines of {lengths:?} characters; an MRZ has 3 × 30 (TD1), 2 × 36 (TD2) or 2 × 44 (TD3)"
                    )),
                }
            }
        },
    }
}

/// Upper case, spaces dropped, look-alikes of `<` (which OCR trained on
/// Chinese text reads as CJK brackets or kana) mapped to it.
fn normalise(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    for c in line.chars() {
        match c {
            '«' | '《' => out.push_str("<<"),
            '<' | '‹' | '〈' | '＜' | 'く' | '〔' | '(' | '{' | '[' => out.push('<'),
            c if c.is_ascii_alphanumeric() => out.push(c.to_ascii_uppercase()),
            c if c.is_whitespace() => {}
            // Anything else is a misread character: keep its place.
            _ => out.push('<'),
        }
    }
    out
}

/// Long, and a filler somewhere: printed text is neither.
fn looks_like_mrz(line: &str) -> bool {
    line.len() >= MIN_LINE && line.contains('<')
}

/// `line` made exactly `width` long by growing or shrinking its longest run
/// of fillers (OCR miscounts long runs of the same character).
fn fit(line: &str, width: usize) -> String {
    let mut bytes = line.as_bytes().to_vec();
    while bytes.len() != width {
        let Some((start, len)) = longest_filler_run(&bytes) else {
            break;
        };
        if bytes.len() < width {
            bytes.insert(start, b'<');
        } else if len > 1 {
            bytes.remove(start);
        } else {
            break;
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn longest_filler_run(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut best: Option<(usize, usize)> = None;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'<' {
            let start = i;
            while i < bytes.len() && bytes[i] == b'<' {
                i += 1;
            }
            if best.is_none_or(|(_, len)| i - start >= len) {
                best = Some((start, i - start));
            }
        } else {
            i += 1;
        }
    }
    best
}

/// What a position holds: letters, digits, or either.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Alpha,
    Digit,
    Any,
}

/// The kinds of the positions of line `index` of `format`.
fn layout(format: Format, index: usize, width: usize) -> Vec<Kind> {
    use Kind::{Alpha as A, Any as X, Digit as D};
    let mut kinds = vec![X; width];
    let mut set = |range: std::ops::Range<usize>, k: Kind| {
        for i in range.filter(|&i| i < width) {
            kinds[i] = k;
        }
    };
    match (format, index) {
        (Format::TD3 | Format::TD2, 0) => set(0..width, A),
        (Format::TD3 | Format::TD2, _) => {
            set(9..10, D);
            set(10..13, A);
            set(13..20, D);
            set(20..21, A);
            set(21..28, D);
            if format == Format::TD3 {
                set(42..44, D);
            } else {
                set(35..36, D);
            }
        }
        (Format::TD1, 0) => set(0..5, A),
        (Format::TD1, 1) => {
            set(0..7, D);
            set(7..8, A);
            set(8..15, D);
            set(15..18, A);
            set(29..30, D);
        }
        (Format::TD1, _) => set(0..width, A),
    }
    kinds
}

/// Letters misread as digits in letter positions and the reverse.
fn repair(line: &str, format: Format, index: usize) -> String {
    let kinds = layout(format, index, line.len());
    line.bytes()
        .zip(kinds)
        .map(|(c, kind)| {
            char::from(match kind {
                Kind::Alpha => match c {
                    b'0' => b'O',
                    b'1' => b'I',
                    b'2' => b'Z',
                    b'5' => b'S',
                    b'6' => b'G',
                    b'8' => b'B',
                    c => c,
                },
                Kind::Digit => match c {
                    b'O' | b'Q' | b'D' => b'0',
                    b'I' | b'L' => b'1',
                    b'Z' => b'2',
                    b'S' => b'5',
                    b'G' => b'6',
                    b'B' => b'8',
                    c => c,
                },
                Kind::Any => c,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(lines: &[&str]) -> (Vec<String>, Box<Mrz>) {
        match find(lines) {
            Found::Zone {
                lines,
                parsed: Ok(m),
            } => (lines, m),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_passport_zone_with_o_and_0_swapped_is_repaired() {
        let (lines, mrz) = zone(&[
            "UTOPIA PASSPORT",
            "ERIKSSON",
            "P<UTOERIKSS0N<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<",
            "L898902C36UT07408122F1204159ZE184226B<<<<<10",
        ]);
        assert_eq!(lines[0], "P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<");
        assert_eq!(lines[1], "L898902C36UTO7408122F1204159ZE184226B<<<<<10");
        assert_eq!(mrz.format, Format::TD3);
        assert_eq!(mrz.surname, "ERIKSSON");
        assert_eq!(mrz.document_number, "L898902C3");
    }

    #[test]
    fn an_id_card_zone_with_a_filler_missing_and_lookalikes_is_repaired() {
        let (lines, mrz) = zone(&[
            "I<UT0D231458907<<<<<<<<<<<<<<",
            "7408122F1204159UT0《<<<<<<<<<6",
            "ERIKSSON<<ANNA<MARIA<<<<<<<<<<",
        ]);
        assert_eq!(lines[0], "I<UTOD231458907<<<<<<<<<<<<<<<");
        assert_eq!(mrz.format, Format::TD1);
        assert_eq!(mrz.given_names, "ANNA MARIA");
    }

    #[test]
    fn printed_text_is_no_zone() {
        assert_eq!(
            find(&["UTOPIA PASSPORT", "Surname", "ERIKSSON"]),
            Found::None
        );
        assert_eq!(find(&[]), Found::None);
    }

    #[test]
    fn a_zone_that_does_not_verify_says_why() {
        match find(&[
            "P<UTOERIKSSON<<ANNA<MARIA<<<<<<<<<<<<<<<<<<<",
            "L898902C37UTO7408122F1204159ZE184226B<<<<<10",
        ]) {
            Found::Zone { parsed: Err(e), .. } => assert!(e.contains("document number"), "{e}"),
            other => panic!("{other:?}"),
        }
    }
}
