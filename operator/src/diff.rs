//! Deciding whether an owned object needs a write: nothing is written when nothing changed.

use hostrole_api::quantity::same_value;
use serde_json::Value;

/// True when every field of `desired` is present in `actual` with the same value. Fields the
/// API server or other controllers add to `actual` (defaults, status, managedFields) are ignored.
/// Lists must have the same length and match element by element. Quantities (in `requests`,
/// `limits`, `sizeLimit`) compare by value: the API server stores `1024Mi` as `1Gi`, which is no
/// difference (else every reconcile would write again).
pub fn is_subset(desired: &Value, actual: &Value) -> bool {
    subset(desired, actual, false)
}

/// Keys whose values (or whose map's values) are quantities.
fn holds_quantities(key: &str) -> bool {
    matches!(key, "requests" | "limits" | "sizeLimit" | "capacity")
}

fn subset(desired: &Value, actual: &Value, quantities: bool) -> bool {
    match (desired, actual) {
        (Value::Object(d), Value::Object(a)) => d.iter().all(|(k, dv)| {
            a.get(k)
                .is_some_and(|av| subset(dv, av, quantities || holds_quantities(k)))
                || is_empty(dv) && a.get(k).is_none()
        }),
        (Value::Array(d), Value::Array(a)) => {
            d.len() == a.len() && d.iter().zip(a).all(|(dv, av)| subset(dv, av, quantities))
        }
        (Value::String(d), Value::String(a)) if quantities => d == a || same_value(d, a),
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
    fn quantities_compare_by_value() {
        let desired = json!({"spec": {"resources": {"requests": {"storage": "1024Mi"}, "limits": {"memory": "1048576"}}}, "volumes": [{"emptyDir": {"sizeLimit": "2048Mi"}}]});
        let actual = json!({"spec": {"resources": {"requests": {"storage": "1Gi"}, "limits": {"memory": "1Mi"}}}, "volumes": [{"emptyDir": {"sizeLimit": "2Gi"}}]});
        assert!(is_subset(&desired, &actual));
        let bigger = json!({"spec": {"resources": {"requests": {"storage": "2Gi"}, "limits": {"memory": "1Mi"}}}, "volumes": [{"emptyDir": {"sizeLimit": "2Gi"}}]});
        assert!(!is_subset(&desired, &bigger));
        // Elsewhere a string is a string: a label "1k" is not the label "1000".
        assert!(!is_subset(
            &json!({"metadata": {"labels": {"size": "1000"}}}),
            &json!({"metadata": {"labels": {"size": "1k"}}})
        ));
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
