//! Activation requests: how an app without network asks for its machine file. The app shows
//! (or saves as a `.req` file) the text
//!
//! ```text
//! -----BEGIN ACTIVATION REQUEST-----
//! base64 of the UTF-8 JSON {"v":1,"key":"…","fingerprint":"…","name":"…"}, 60-character lines
//! -----END ACTIVATION REQUEST-----
//! ```
//!
//! The bare base64 (no armour) is accepted too; whitespace anywhere in the body is ignored.
//! `v` is 1; `key` is the license key (1-100 characters), `fingerprint` the machine's
//! fingerprint or HWID (1-255), `name` the machine's name (optional, at most 255). The whole
//! text is at most [`MAX_REQUEST_CHARS`]. Someone carries the text across the gap, the server
//! activates the machine and answers a machine file (`-----BEGIN MACHINE FILE-----`), which the
//! app decrypts with the key and its fingerprint: nothing else crosses.

use serde_json::{Value, json};

use crate::crypto;
use crate::error::{Error, Result};

/// The longest activation request accepted, armour and whitespace included.
pub const MAX_REQUEST_CHARS: usize = 4096;
/// The format's only version.
pub const VERSION: i64 = 1;
const KEY_MAX: usize = 100;
const FINGERPRINT_MAX: usize = 255;
const NAME_MAX: usize = 255;
const BEGIN: &str = "-----BEGIN ACTIVATION REQUEST-----";
const END: &str = "-----END ACTIVATION REQUEST-----";

/// What an air-gapped app asks: activate `fingerprint` (called `name`) on `key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivationRequest {
    pub key: String,
    pub fingerprint: String,
    pub name: Option<String>,
}

fn invalid(why: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("activation request: {why}"))
}

impl ActivationRequest {
    /// Reads an activation request, armoured or bare, naming what is wrong with it.
    pub fn parse(text: &str) -> Result<Self> {
        let chars = text.chars().count();
        if chars > MAX_REQUEST_CHARS {
            return Err(invalid(format_args!(
                "at most {MAX_REQUEST_CHARS} characters, got {chars}"
            )));
        }
        let text = text.trim();
        if text.is_empty() {
            return Err(invalid(
                "empty: paste the text the app shows, or its .req file",
            ));
        }
        let body = match text.strip_prefix(BEGIN) {
            Some(rest) => rest
                .trim_end()
                .strip_suffix(END)
                .ok_or_else(|| invalid(format_args!("no `{END}` line")))?,
            None if text.starts_with("-----") => {
                return Err(invalid(format_args!(
                    "the first line must be `{BEGIN}` (or send the bare base64)"
                )));
            }
            None => text,
        };
        let body: String = body.split_whitespace().collect();
        let bytes = crypto::from_base64(&body).ok_or_else(|| invalid("the body is not base64"))?;
        let json: Value =
            serde_json::from_slice(&bytes).map_err(|_| invalid("the body is not a JSON object"))?;
        let Value::Object(fields) = json else {
            return Err(invalid("the body is not a JSON object"));
        };
        match fields.get("v") {
            None => return Err(invalid("field `v` is missing (must be 1)")),
            Some(v) if v.as_i64() == Some(VERSION) => {}
            Some(v) => {
                return Err(invalid(format_args!(
                    "unsupported version `v`: {v} (this server reads version {VERSION})"
                )));
            }
        }
        let text_field = |name: &str, max: usize, required: bool| -> Result<Option<String>> {
            let value = match fields.get(name) {
                None | Some(Value::Null) if required => {
                    return Err(invalid(format_args!("field `{name}` is missing")));
                }
                None | Some(Value::Null) => return Ok(None),
                Some(Value::String(s)) => s.trim(),
                Some(_) => return Err(invalid(format_args!("field `{name}` must be a string"))),
            };
            if value.is_empty() {
                return if required {
                    Err(invalid(format_args!("field `{name}` is empty")))
                } else {
                    Ok(None)
                };
            }
            let n = value.chars().count();
            if n > max {
                return Err(invalid(format_args!(
                    "field `{name}` is at most {max} characters, got {n}"
                )));
            }
            Ok(Some(value.to_owned()))
        };
        let key = text_field("key", KEY_MAX, true)?.unwrap_or_default();
        let fingerprint = text_field("fingerprint", FINGERPRINT_MAX, true)?.unwrap_or_default();
        let name = text_field("name", NAME_MAX, false)?;
        Ok(Self {
            key,
            fingerprint,
            name,
        })
    }

    /// The request as an app shows it: armoured base64 in 60-character lines.
    pub fn armoured(&self) -> String {
        let body = json!({"v": VERSION, "key": self.key, "fingerprint": self.fingerprint, "name": self.name});
        let encoded = crypto::base64(body.to_string().as_bytes());
        let mut out = format!("{BEGIN}\n");
        for chunk in encoded.as_bytes().chunks(60) {
            out.push_str(&String::from_utf8_lossy(chunk));
            out.push('\n');
        }
        out.push_str(END);
        out.push('\n');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bare(json: &str) -> String {
        crypto::base64(json.as_bytes())
    }

    #[test]
    fn reads_armoured_and_bare_requests() {
        let req = ActivationRequest {
            key: "ABCD-EFGH".into(),
            fingerprint: "fp-1".into(),
            name: Some("Lab PC".into()),
        };
        assert_eq!(
            ActivationRequest::parse(&req.armoured()).ok(),
            Some(req.clone())
        );
        let plain = bare(r#"{"v":1,"key":"ABCD-EFGH","fingerprint":"fp-1","name":"Lab PC"}"#);
        let spaced = format!("  {}\n{} ", &plain[..10], &plain[10..]);
        assert_eq!(ActivationRequest::parse(&spaced).ok(), Some(req));
    }

    #[test]
    fn names_what_is_wrong() {
        let cases = [
            ("not base64 !!", "not base64"),
            (&bare("[1,2]"), "not a JSON object"),
            (&bare("hello"), "not a JSON object"),
            (&bare(r#"{"key":"K","fingerprint":"F"}"#), "`v` is missing"),
            (
                &bare(r#"{"v":2,"key":"K","fingerprint":"F"}"#),
                "unsupported version",
            ),
            (&bare(r#"{"v":1,"fingerprint":"F"}"#), "`key` is missing"),
            (&bare(r#"{"v":1,"key":"K"}"#), "`fingerprint` is missing"),
            (
                &bare(r#"{"v":1,"key":"K","fingerprint":7}"#),
                "must be a string",
            ),
            (
                &bare(r#"{"v":1,"key":" ","fingerprint":"F"}"#),
                "`key` is empty",
            ),
            ("-----BEGIN ACTIVATION REQUEST-----\nAAAA", "no `-----END"),
            ("-----BEGIN MACHINE FILE-----", "first line"),
            ("", "empty"),
        ];
        for (text, needle) in cases {
            let err = ActivationRequest::parse(text).expect_err(text).to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
        let long = format!(r#"{{"v":1,"key":"K","fingerprint":"{}"}}"#, "f".repeat(256));
        let err = ActivationRequest::parse(&bare(&long))
            .expect_err("long")
            .to_string();
        assert!(err.contains("at most 255"), "{err}");
        let err = ActivationRequest::parse(&"A".repeat(5000))
            .expect_err("oversize")
            .to_string();
        assert!(err.contains("at most 4096 characters"), "{err}");
    }
}
