//! `PASSWORD_RULE`: a regular expression with look-ahead, compiled with fancy-regex.

use std::fmt;

/// The seed's intent (12+ characters, a digit, a lower- and an upper-case letter),
/// with its look-ahead slip corrected.
pub const DEFAULT_RULE: &str = "^(?=.*[0-9])(?=.*[a-z])(?=.*[A-Z]).{12,}$";

/// A compiled password rule and its source text.
#[derive(Clone)]
pub struct PasswordRule {
    source: String,
    regex: fancy_regex::Regex,
}

impl PasswordRule {
    /// Compiles a rule; the error text says where the expression is wrong.
    pub fn compile(source: &str) -> Result<Self, String> {
        let regex = fancy_regex::Regex::new(source).map_err(|e| e.to_string())?;
        Ok(Self {
            source: source.to_string(),
            regex,
        })
    }

    /// The rule as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether a password satisfies the rule. A rule that exhausts the matcher's
    /// backtracking limit counts as not matched rather than silently passing.
    pub fn is_satisfied_by(&self, password: &str) -> bool {
        self.regex.is_match(password).unwrap_or(false)
    }
}

impl Default for PasswordRule {
    fn default() -> Self {
        Self::compile(DEFAULT_RULE).expect("the default password rule compiles")
    }
}

impl fmt::Debug for PasswordRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PasswordRule").field(&self.source).finish()
    }
}

/// Finds look-aheads of the form `(?=.X` that test only the one position right
/// after the anchor (the seed's own example has `(?=.[0-9])`, which accepts a
/// digit only as the second character). Returns the corrected rule, or `None`
/// when the rule has no such slip.
pub fn lint(source: &str) -> Option<String> {
    let bytes = source.as_bytes();
    let mut fixed = String::with_capacity(source.len() + 4);
    let mut changed = false;
    let mut i = 0;
    while i < bytes.len() {
        let lookaround = source[i..].starts_with("(?=.") || source[i..].starts_with("(?!.");
        // An escaped parenthesis is a literal, not a group.
        let escaped = i > 0 && bytes[i - 1] == b'\\';
        if lookaround && !escaped {
            fixed.push_str(&source[i..i + 4]);
            i += 4;
            match bytes.get(i) {
                Some(b'*' | b'+' | b'?' | b'{' | b')') | None => {}
                Some(_) => {
                    fixed.push('*');
                    changed = true;
                }
            }
            continue;
        }
        let ch = source[i..].chars().next().unwrap_or('\0');
        fixed.push(ch);
        i += ch.len_utf8();
    }
    changed.then_some(fixed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_rule_is_linted_and_corrected() {
        let seed = "^(?=.[0-9])(?=.[a-z])(?=.*[A-Z]).{12,}$";
        let fixed = lint(seed).expect("slip found");
        assert_eq!(fixed, DEFAULT_RULE);
        // The slip is real: the seed rule refuses a good password whose digit is last.
        let good = "Abcdefghijk1";
        assert!(!PasswordRule::compile(seed).unwrap().is_satisfied_by(good));
        assert!(PasswordRule::compile(&fixed).unwrap().is_satisfied_by(good));
    }

    #[test]
    fn correct_rules_are_left_alone() {
        assert_eq!(lint(DEFAULT_RULE), None);
        assert_eq!(lint("^(?=.{8,})\\(?=.x"), None);
        assert_eq!(lint("^.{8,}$"), None);
        assert_eq!(lint("(?!.*password)"), None);
    }

    #[test]
    fn negative_lookahead_slip_is_found_too() {
        assert_eq!(lint("^(?!.x).*$").as_deref(), Some("^(?!.*x).*$"));
    }

    #[test]
    fn default_rule_checks_all_classes() {
        let rule = PasswordRule::default();
        assert!(rule.is_satisfied_by("Correct horse 9"));
        assert!(!rule.is_satisfied_by("correct horse 9"));
        assert!(!rule.is_satisfied_by("Short1a"));
        assert!(PasswordRule::compile("(?=unclosed").is_err());
    }
}
