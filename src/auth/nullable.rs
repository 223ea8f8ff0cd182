//! Fields of a partial update where `null` means "remove" and an absent key
//! means "leave as is": `Option<Option<T>>` with
//! `#[serde(default, deserialize_with = "nullable::field")]`. Plain serde
//! reads `null` as an absent key, so without it nothing could be removed.

use serde::{Deserialize, Deserializer};

pub fn field<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    #[derive(serde::Deserialize)]
    struct Patch {
        #[serde(default, deserialize_with = "super::field")]
        volume: Option<Option<u64>>,
    }

    fn parse(json: &str) -> Option<Option<u64>> {
        serde_json::from_str::<Patch>(json).unwrap().volume
    }

    #[test]
    fn absent_null_and_a_value_are_three_different_things() {
        assert_eq!(parse("{}"), None);
        assert_eq!(parse(r#"{"volume":null}"#), Some(None));
        assert_eq!(parse(r#"{"volume":7}"#), Some(Some(7)));
    }
}
