//! The generated CRD follows the Kubernetes API conventions a user meets in `kubectl explain`
//! and a tool meets in server-side apply: every field described, every list typed, every CEL
//! rule with a reason, conditions as `metav1.Condition` declares them, timestamps as
//! `date-time`, enum values CamelCase. Each test walks the whole schema, so a field added
//! later without these is caught here.

use hostrole_api::HostRole;
use kube::CustomResourceExt;
use serde_json::Value;

/// The `openAPIV3Schema` of the (only) served version.
fn schema() -> Value {
    let crd = HostRole::crd();
    let version = crd.spec.versions.first().expect("a version");
    let schema = version
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("a schema");
    serde_json::to_value(schema).expect("the schema serializes")
}

/// A schema node's `properties`, by name (none when it has none).
fn properties(node: &Value) -> impl Iterator<Item = (&String, &Value)> {
    node.get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
}

/// Calls `visit(path, node)` for every schema node, `path` as `kubectl explain` spells it
/// (`spec.servers.mail.domains[]`, `spec.expose.nodePorts{}`).
fn walk(node: &Value, path: &str, visit: &mut dyn FnMut(&str, &Value)) {
    visit(path, node);
    for (name, child) in properties(node) {
        let child_path = if path.is_empty() {
            name.clone()
        } else {
            format!("{path}.{name}")
        };
        walk(child, &child_path, visit);
    }
    if let Some(items) = node.get("items") {
        walk(items, &format!("{path}[]"), visit);
    }
    if let Some(values) = node.get("additionalProperties").filter(|v| v.is_object()) {
        walk(values, &format!("{path}{{}}"), visit);
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        for (i, alt) in node
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            walk(alt, &format!("{path}<{key}{i}>"), visit);
        }
    }
}

fn violations(check: impl Fn(&str, &Value, &mut Vec<String>)) -> Vec<String> {
    let schema = schema();
    let mut found = Vec::new();
    walk(&schema, "", &mut |path, node| check(path, node, &mut found));
    found
}

fn assert_none(what: &str, found: Vec<String>) {
    let found: Vec<String> = found
        .into_iter()
        .map(|f| {
            if f.starts_with(':') {
                format!("(root){f}")
            } else {
                f
            }
        })
        .collect();
    assert!(found.is_empty(), "{what}:\n  {}", found.join("\n  "));
}

#[test]
fn the_kind_has_a_description_of_its_own() {
    let schema = schema();
    let description = schema
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or_default();
    assert!(
        description.starts_with("A HostRole") && !description.contains("Auto-generated"),
        "kubectl explain hostrole shows: {description:?}"
    );
    for part in ["spec", "status"] {
        let d = schema["properties"][part]["description"]
            .as_str()
            .unwrap_or_default();
        assert!(!d.is_empty(), "{part} has no description");
    }
}

#[test]
fn every_field_has_a_description_in_plain_words() {
    assert_none(
        "fields without a description (a /// comment on the Rust field)",
        violations(|path, node, found| {
            for (name, child) in properties(node) {
                let d = child
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if d.trim().is_empty() {
                    found.push(format!("{path}.{name}"));
                }
            }
            if let Some(d) = node.get("description").and_then(Value::as_str) {
                for jargon in [
                    "Auto-generated",
                    "Option<",
                    "Vec<",
                    "BTreeMap",
                    "serde",
                    "`Self`",
                ] {
                    if d.contains(jargon) {
                        found.push(format!("{path}: description says {jargon:?}: {d}"));
                    }
                }
                // `kubectl explain` wraps descriptions itself: a line break inside a paragraph
                // (a wrapped doc comment) shows as a ragged line.
                if d.replace("\n\n", "").contains('\n') {
                    found.push(format!("{path}: a line break inside a paragraph: {d:?}"));
                }
                // A Rust path (`kube::core`), not the `::=` of a grammar.
                if d.match_indices("::").any(|(i, _)| {
                    d[i + 2..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
                }) {
                    found.push(format!("{path}: description names a Rust path: {d}"));
                }
            }
        }),
    );
}

#[test]
fn every_list_has_a_list_type() {
    assert_none(
        "lists without a valid x-kubernetes-list-type (atomic, set, or map with keys its items require)",
        violations(|path, node, found| {
            if node.get("type").and_then(Value::as_str) != Some("array") {
                return;
            }
            let items = &node["items"];
            match node.get("x-kubernetes-list-type").and_then(Value::as_str) {
                Some("atomic") => {}
                Some("set") => {
                    if items.get("type").and_then(Value::as_str) == Some("object") {
                        found.push(format!("{path}: a set of objects (use map or atomic)"));
                    }
                }
                Some("map") => {
                    let keys = node
                        .get("x-kubernetes-list-map-keys")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    if keys.is_empty() {
                        found.push(format!("{path}: map without x-kubernetes-list-map-keys"));
                    }
                    let required = items
                        .get("required")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    for key in keys {
                        let defaulted = key
                            .as_str()
                            .is_some_and(|k| items["properties"][k].get("default").is_some());
                        if !required.contains(&key) && !defaulted {
                            found.push(format!(
                                "{path}: map key {key} is neither required nor defaulted"
                            ));
                        }
                    }
                }
                other => found.push(format!("{path}: {other:?}")),
            }
        }),
    );
}

/// Resolves a rule's `fieldPath` (`.a.b`, relative to the node the rule sits on) in the
/// schema, as the API server does before it accepts the CRD.
fn resolves(node: &Value, field_path: &str) -> bool {
    let Some(rest) = field_path.strip_prefix('.') else {
        return false;
    };
    let mut at = node;
    for segment in rest.split('.') {
        match at.get("properties").and_then(|p| p.get(segment)) {
            Some(next) => at = next,
            None => return false,
        }
    }
    true
}

#[test]
fn every_cel_rule_has_a_reason_and_a_field_path_the_schema_has() {
    const REASONS: [&str; 4] = [
        "FieldValueInvalid",
        "FieldValueRequired",
        "FieldValueForbidden",
        "FieldValueDuplicate",
    ];
    assert_none(
        "CEL rules without a reason, or with a fieldPath the schema does not have",
        violations(|path, node, found| {
            for rule in node
                .get("x-kubernetes-validations")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let text = rule["rule"].as_str().unwrap_or_default();
                let short: String = text.chars().take(60).collect();
                match rule.get("reason").and_then(Value::as_str) {
                    Some(r) if REASONS.contains(&r) => {}
                    other => found.push(format!("{path}: reason {other:?} for `{short}`")),
                }
                if let Some(fp) = rule.get("fieldPath").and_then(Value::as_str)
                    && !resolves(node, fp)
                {
                    found.push(format!("{path}: fieldPath {fp} is not in the schema"));
                }
                if rule.get("message").is_none() && rule.get("messageExpression").is_none() {
                    found.push(format!("{path}: no message for `{short}`"));
                }
            }
        }),
    );
}

#[test]
fn conditions_are_typed_as_metav1_condition_declares_them() {
    let schema = schema();
    let conditions = &schema["properties"]["status"]["properties"]["conditions"];
    assert_eq!(conditions["x-kubernetes-list-type"], "map");
    assert_eq!(
        conditions["x-kubernetes-list-map-keys"],
        serde_json::json!(["type"])
    );
    let item = &conditions["items"]["properties"];
    assert_eq!(
        item["status"]["enum"],
        serde_json::json!(["True", "False", "Unknown"]),
        "status.conditions[].status"
    );
    assert_eq!(item["lastTransitionTime"]["format"], "date-time");
    assert_eq!(item["observedGeneration"]["minimum"].as_f64(), Some(0.0));
    assert_eq!(
        item["reason"]["pattern"],
        "^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
    );
    assert!(
        item["type"]["pattern"].as_str().is_some(),
        "status.conditions[].type has a pattern"
    );
    let mut required: Vec<&str> = conditions["items"]["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    required.sort_unstable();
    assert_eq!(
        required,
        ["lastTransitionTime", "message", "reason", "status", "type"]
    );
}

#[test]
fn timestamps_are_date_time_strings() {
    assert_none(
        "timestamps without format: date-time",
        violations(|path, node, found| {
            for (name, child) in properties(node) {
                let timestamp = name.ends_with("Time")
                    || name.ends_with("Timestamp")
                    || (name.starts_with("last") && name != "lastError");
                if timestamp && child.get("format").and_then(Value::as_str) != Some("date-time") {
                    found.push(format!("{path}.{name}"));
                }
            }
        }),
    );
}

/// Role names are the one exception to CamelCase enum values: `web`, `file`, `mail`, `index`
/// name the fields `spec.servers.<role>` (docs/versioning.md says why).
const ROLE_NAMES: [&str; 7] = ["web", "file", "mail", "index", "chat", "radio", "print"];

#[test]
fn enum_values_are_camel_case_but_role_names() {
    assert_none(
        "enum values that are not CamelCase",
        violations(|path, node, found| {
            for value in node
                .get("enum")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let Some(v) = value.as_str() else { continue };
                let camel = v.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                    && v.chars().all(|c| c.is_ascii_alphanumeric());
                if !camel && !ROLE_NAMES.contains(&v) {
                    found.push(format!("{path}: {v}"));
                }
            }
        }),
    );
}
