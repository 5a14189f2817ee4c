//! Deciding whether an owned object needs a write: nothing is written when nothing changed.

use serde_json::Value;

/// True when every field of `desired` is present in `actual` with the same value. Fields the
/// API server or other controllers add to `actual` (defaults, status, managedFields) are ignored.
/// Lists must have the same length and match element by element.
pub fn is_subset(desired: &Value, actual: &Value) -> bool {
    match (desired, actual) {
        (Value::Object(d), Value::Object(a)) => d.iter().all(|(k, dv)| {
            a.get(k).is_some_and(|av| is_subset(dv, av)) || is_empty(dv) && a.get(k).is_none()
        }),
        (Value::Array(d), Value::Array(a)) => {
            d.len() == a.len() && d.iter().zip(a).all(|(dv, av)| is_subset(dv, av))
        }
        (d, a) => d == a,
    }
}

/// Null, an empty object or an empty list: the API server drops these, so their absence in the
/// live object is no difference.
fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(o) => o.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn extra_fields_in_actual_are_ignored() {
        let desired = json!({"spec": {"replicas": 2, "ports": [{"port": 80}]}});
        let actual = json!({"spec": {"replicas": 2, "ports": [{"port": 80, "protocol": "TCP"}], "x": 1}, "status": {}});
        assert!(is_subset(&desired, &actual));
    }

    #[test]
    fn changed_value_or_missing_field_is_a_difference() {
        let desired = json!({"spec": {"replicas": 2}});
        assert!(!is_subset(&desired, &json!({"spec": {"replicas": 3}})));
        assert!(!is_subset(&desired, &json!({"spec": {}})));
        assert!(!is_subset(&desired, &json!({})));
    }

    #[test]
    fn list_length_matters() {
        let desired = json!({"ports": [{"port": 80}]});
        assert!(!is_subset(
            &desired,
            &json!({"ports": [{"port": 80}, {"port": 81}]})
        ));
        assert!(!is_subset(&desired, &json!({"ports": []})));
    }

    #[test]
    fn empty_values_match_absent_fields() {
        let desired = json!({"metadata": {"annotations": {}}, "spec": {"x": null, "l": []}});
        assert!(is_subset(&desired, &json!({"metadata": {}, "spec": {}})));
    }
}
