//! The JSON frames of the hub. Every frame is a text message with a `type`;
//! a client may add `ref` (a string or number) to any frame, and the answer
//! to it (`ack` or `error`) carries the same `ref`.

use super::RealtimeError;
use crate::proctoring::metrics::Metric;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The client frame types, for the unknown-type answer.
pub const KNOWN: &[&str] = &[
    "join", "leave", "chat", "signal", "samples", "action", "ping",
];

/// Longest `ref` a client may attach, in bytes of JSON.
const REF_MAX: usize = 64;

/// What a proctor can do to a session live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LiveAction {
    Warn,
    Lock,
    Unlock,
    Pause,
    Resume,
    Stop,
    Conclude,
}

/// A client frame.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Incoming {
    /// Enter a session's room; `after_seq` asks for the protocol entries missed since.
    Join {
        session: String,
        after_seq: Option<u64>,
    },
    Leave {
        session: String,
    },
    /// `attachments` are ids from `POST /api/v1/sessions/{id}/attachments`.
    Chat {
        session: String,
        #[serde(default)]
        text: String,
        #[serde(default)]
        attachments: Vec<String>,
    },
    /// WebRTC signaling for one participant (`to` is a username in the room).
    Signal {
        session: String,
        to: String,
        payload: Value,
    },
    /// The student's metric values (0–100) for the period just ended.
    Samples {
        session: String,
        values: BTreeMap<Metric, f64>,
    },
    Action {
        session: String,
        action: LiveAction,
        positive: Option<bool>,
        comment: Option<String>,
    },
    Ping,
}

/// Parses a text frame into the frame and its `ref`. On error the `ref` is
/// still returned when it could be read, so the error frame can carry it.
pub fn parse(text: &str) -> (Option<Value>, Result<Incoming, RealtimeError>) {
    let mut value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return (None, Err(RealtimeError::Json(e.to_string()))),
    };
    let Some(object) = value.as_object_mut() else {
        return (
            None,
            Err(RealtimeError::Json("a frame is a JSON object".into())),
        );
    };
    let reference = object.remove("ref");
    let reference = match reference {
        None | Some(Value::Null) => None,
        Some(r @ (Value::String(_) | Value::Number(_))) if r.to_string().len() <= REF_MAX => {
            Some(r)
        }
        Some(_) => {
            return (
                None,
                Err(RealtimeError::invalid(
                    "ref",
                    format!("a string or number of at most {REF_MAX} bytes"),
                )),
            );
        }
    };
    let kind = match object.get("type") {
        Some(Value::String(t)) => t.clone(),
        Some(_) => {
            return (
                reference,
                Err(RealtimeError::invalid("type", "must be a string")),
            );
        }
        None => {
            return (
                reference,
                Err(RealtimeError::invalid("type", "every frame needs a type")),
            );
        }
    };
    if !KNOWN.contains(&kind.as_str()) {
        return (reference, Err(RealtimeError::UnknownType(kind)));
    }
    let parsed = serde_json::from_value::<Incoming>(value)
        .map_err(|e| RealtimeError::invalid(&kind, e.to_string()));
    (reference, parsed)
}

/// The session a frame is about, if any.
pub fn session_of(frame: &Incoming) -> Option<&str> {
    match frame {
        Incoming::Join { session, .. }
        | Incoming::Leave { session }
        | Incoming::Chat { session, .. }
        | Incoming::Signal { session, .. }
        | Incoming::Samples { session, .. }
        | Incoming::Action { session, .. } => Some(session),
        Incoming::Ping => None,
    }
}

/// `{"type":"error",…}`, with the frame's `ref` when there was one.
pub fn error(reference: Option<&Value>, session: Option<&str>, e: &RealtimeError) -> Value {
    let mut v = json!({ "type": "error", "code": e.code(), "message": e.message() });
    if let Some(r) = reference {
        v["ref"] = r.clone();
    }
    if let Some(s) = session {
        v["session"] = s.into();
    }
    v
}

/// `{"type":"ack",…}`: the frame was done (persisted where it persists).
pub fn ack(reference: Option<&Value>, session: &str, seq: Option<u64>) -> Value {
    let mut v = json!({ "type": "ack", "session": session });
    if let Some(r) = reference {
        v["ref"] = r.clone();
    }
    if let Some(seq) = seq {
        v["seq"] = seq.into();
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_parse_with_their_ref() {
        let (r, f) = parse(r#"{"type":"chat","session":"s1","text":"hi","ref":7}"#);
        assert_eq!(r, Some(json!(7)));
        assert_eq!(
            f.unwrap(),
            Incoming::Chat {
                session: "s1".into(),
                text: "hi".into(),
                attachments: Vec::new(),
            }
        );
        let (_, f) = parse(r#"{"type":"samples","session":"s1","values":{"b2":50}}"#);
        assert!(matches!(f, Ok(Incoming::Samples { values, .. }) if values[&Metric::B2] == 50.0));
        assert_eq!(parse(r#"{"type":"ping"}"#).1.unwrap(), Incoming::Ping);
        let (_, f) = parse(r#"{"type":"action","session":"s","action":"warn"}"#);
        assert!(matches!(
            f,
            Ok(Incoming::Action {
                action: LiveAction::Warn,
                ..
            })
        ));
    }

    #[test]
    fn bad_frames_name_what_is_wrong() {
        let code = |text: &str| parse(text).1.unwrap_err().code();
        assert_eq!(code("{not json"), "invalid_json");
        assert_eq!(code("[1,2]"), "invalid_json");
        assert_eq!(code(r#"{"type":"dance","ref":"a"}"#), "unknown_type");
        assert_eq!(code(r#"{"session":"s"}"#), "invalid_field");
        assert_eq!(
            code(r#"{"type":"chat","session":"s","text":"x","extra":1}"#),
            "invalid_field"
        );
        assert_eq!(
            code(r#"{"type":"samples","session":"s","values":{"zz":1}}"#),
            "invalid_field"
        );
        assert_eq!(code(r#"{"type":"ping","ref":{"a":1}}"#), "invalid_field");
        let (r, e) = parse(r#"{"type":"dance","ref":"a"}"#);
        assert_eq!(r, Some(json!("a")), "the ref survives an unknown type");
        assert!(e.unwrap_err().to_string().contains("join, leave, chat"));
        let (_, e) = parse(r#"{"type":"chat","text":"hi"}"#);
        assert!(
            e.unwrap_err().to_string().contains("session"),
            "names the field"
        );
    }
}
