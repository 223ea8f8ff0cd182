//! `invigil bench turn`.
