//! Strict reading of untrusted JSON: every refusal names the field (a dotted path such as
//! `ess.maxChargePower`) and the value it got, so a caller can fix its request.
//!
//! Requests are first parsed into a [`serde_json::Value`] and then read field by field here
//! instead of through `#[derive(Deserialize)]`: serde's messages do not reliably name the
//! field, and a number sent as a string (`"NaN"`, `"1e3"`) must be refused, not coerced.

use serde_json::{Map, Value};

/// A refused input: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// Dotted path of the field (`ess.mode`, `power`); empty for the whole body.
    pub field: String,
    /// What is wrong, with the rejected value.
    pub message: String,
}

impl FieldError {
    /// A refusal of `field`.
    #[must_use]
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// Join a parent path and a key (`"" + "ess"` → `ess`, `"ess" + "mode"` → `ess.mode`).
#[must_use]
pub fn path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// A short, bounded rendering of a rejected value for error messages.
#[must_use]
pub fn show(v: &Value) -> String {
    let mut s = v.to_string();
    if s.len() > 80 {
        let mut cut = 77;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

/// Parse a request body: UTF-8 JSON whose top level is an object.
///
/// # Errors
/// [`FieldError`] with an empty field for malformed JSON, bad UTF-8 or a non-object body.
pub fn parse_object(body: &[u8]) -> Result<Map<String, Value>, FieldError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| FieldError::new("", format!("malformed JSON body: {e}")))?;
    match v {
        Value::Object(m) => Ok(m),
        other => Err(FieldError::new("", format!("the body must be a JSON object, got {}", show(&other)))),
    }
}

/// Refuse any key of `o` not in `allowed` (a misspelt field must not be silently ignored).
///
/// # Errors
/// [`FieldError`] naming the first unknown key.
pub fn only_keys(o: &Map<String, Value>, parent: &str, allowed: &[&str]) -> Result<(), FieldError> {
    match o.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => {
            Err(FieldError::new(path(parent, k), format!("unknown field (expected one of {allowed:?})")))
        }
        None => Ok(()),
    }
}

/// A required string field.
///
/// # Errors
/// [`FieldError`] if missing or not a string.
pub fn req_str<'a>(o: &'a Map<String, Value>, parent: &str, key: &str) -> Result<&'a str, FieldError> {
    match o.get(key) {
        None | Some(Value::Null) => Err(FieldError::new(path(parent, key), "missing (a string is required)")),
        Some(Value::String(s)) => Ok(s),
        Some(other) => {
            Err(FieldError::new(path(parent, key), format!("must be a string, got {}", show(other))))
        }
    }
}

/// A required JSON number field as a finite `f64` (a string such as `"NaN"` is refused).
///
/// # Errors
/// [`FieldError`] if missing, not a number, or not finite.
pub fn req_number(o: &Map<String, Value>, parent: &str, key: &str) -> Result<f64, FieldError> {
    match o.get(key) {
        None | Some(Value::Null) => Err(FieldError::new(path(parent, key), "missing (a number is required)")),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(x) if x.is_finite() => Ok(x),
            _ => Err(FieldError::new(path(parent, key), format!("not a finite number: {n}"))),
        },
        Some(other) => {
            Err(FieldError::new(path(parent, key), format!("must be a JSON number, got {}", show(other))))
        }
    }
}

/// A required power magnitude in watts: a finite JSON number in `0 ..= max_w`.
///
/// # Errors
/// [`FieldError`] naming the field and the value.
pub fn req_power(o: &Map<String, Value>, parent: &str, key: &str, max_w: f64) -> Result<f64, FieldError> {
    let x = req_number(o, parent, key)?;
    if x < 0.0 {
        return Err(FieldError::new(path(parent, key), format!("must be >= 0 W, got {x}")));
    }
    if x > max_w {
        return Err(FieldError::new(path(parent, key), format!("must be <= {max_w} W, got {x}")));
    }
    Ok(x)
}
