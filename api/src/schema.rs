//! Small builders of the OpenAPI document's JSON Schemas, shared by `rest` and `economics`.

use serde_json::{json, Value};

/// A closed object tagged by `"mode": <mode>`: the `required` keys besides `mode` and the
/// schemas of its other properties (`props`, an object).
pub(crate) fn mode_variant(mode: &str, required: &[&str], props: Value) -> Value {
    let mut p = json!({ "mode": { "const": mode } });
    if let (Value::Object(o), Value::Object(extra)) = (&mut p, props) {
        o.extend(extra);
    }
    let mut req = vec!["mode".to_owned()];
    req.extend(required.iter().map(|r| (*r).to_owned()));
    json!({ "type": "object", "additionalProperties": false, "required": req, "properties": p })
}
