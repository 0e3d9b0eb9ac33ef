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

/// A JSON value read by a visitor that refuses a key appearing twice in one object: serde_json
/// (like most parsers) keeps the last one silently, so `{"power": 0, "power": 5000}` would
/// mean whatever the last parser in a chain decides.
struct Strict(Value);

/// The error message prefix of a duplicate key (the key follows, JSON-quoted).
const DUPLICATE: &str = "duplicate key ";

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Strict;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Strict, E> {
        Ok(Strict(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Strict, E> {
        Ok(Strict(Value::from(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Strict, E> {
        Ok(Strict(Value::from(v)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Strict, E> {
        Ok(Strict(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Strict, E> {
        Ok(Strict(Value::String(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Strict, E> {
        Ok(Strict(Value::String(v)))
    }
    fn visit_unit<E>(self) -> Result<Strict, E> {
        Ok(Strict(Value::Null))
    }
    fn visit_none<E>(self) -> Result<Strict, E> {
        Ok(Strict(Value::Null))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Strict, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Strict(Value::Array(out)))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Strict, A::Error> {
        let mut out = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            if out.contains_key(&k) {
                return Err(serde::de::Error::custom(format!("{DUPLICATE}{}", Value::String(k))));
            }
            let Strict(v) = map.next_value()?;
            out.insert(k, v);
        }
        Ok(Strict(Value::Object(out)))
    }
}

/// Parse JSON, refusing duplicate keys at any depth.
///
/// # Errors
/// [`FieldError`] with an empty field for malformed JSON or bad UTF-8, and naming the key
/// (as `field`) for a duplicate key.
pub fn parse_strict(body: &[u8]) -> Result<Value, FieldError> {
    match serde_json::from_slice::<Strict>(body) {
        Ok(Strict(v)) => Ok(v),
        Err(e) => {
            let text = e.to_string();
            if let Some(rest) = text.strip_prefix(DUPLICATE) {
                // serde_json appends " at line L column C"; the key is the JSON string before it.
                let key_json = rest.rsplit_once(" at line ").map_or(rest, |(k, _)| k);
                let key: String = serde_json::from_str(key_json).unwrap_or_else(|_| key_json.to_owned());
                return Err(FieldError::new(
                    key.clone(),
                    format!("duplicate key {key:?} in the JSON body ({text})"),
                ));
            }
            Err(FieldError::new("", format!("malformed JSON body: {e}")))
        }
    }
}

/// Parse a request body: UTF-8 JSON whose top level is an object, without duplicate keys.
///
/// # Errors
/// [`FieldError`] with an empty field for malformed JSON, bad UTF-8 or a non-object body;
/// naming the key for a duplicate key.
pub fn parse_object(body: &[u8]) -> Result<Map<String, Value>, FieldError> {
    let v = parse_strict(body)?;
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

/// Refuse any query parameter not in `allowed`.
///
/// # Errors
/// [`FieldError`] naming the first unknown parameter.
pub fn only_keys_str(
    q: &std::collections::BTreeMap<String, String>,
    allowed: &[&str],
) -> Result<(), FieldError> {
    match q.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => {
            Err(FieldError::new(k.clone(), format!("unknown parameter (expected one of {allowed:?})")))
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

#[cfg(test)]
mod tests {
    // Test code: a failed unwrap or panic is a failed test with its message.
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        let e = parse_object(br#"{"power": 0, "power": 5000}"#).unwrap_err();
        assert_eq!(e.field, "power");
        assert!(e.message.contains("duplicate"), "{e}");
        let e = parse_object(br#"{"ess": {"mode": "A", "mode": "B"}}"#).unwrap_err();
        assert_eq!(e.field, "mode");
        let ok = parse_object(br#"{"a": [1, {"b": 2.5, "c": null}], "d": "x"}"#).unwrap();
        assert_eq!(Value::Object(ok), serde_json::json!({"a": [1, {"b": 2.5, "c": null}], "d": "x"}));
        assert_eq!(parse_object(b"[1]").unwrap_err().field, "");
        assert_eq!(parse_object(b"{").unwrap_err().field, "");
    }
}
