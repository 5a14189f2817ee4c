//! Reading a HostRole manifest without a cluster, judged the way the API server judges it:
//! unknown fields, the OpenAPI schema (ranges, patterns, lengths), the list types (no duplicate
//! in a `set`, no duplicate key in a `map`) and the CEL rules.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use kube::CustomResourceExt;
use serde::Deserialize;
use serde_json::Value;

use crate::access::{ObjectKind, USE_LABEL, USE_LABEL_VALUE};
use crate::hostrole::HostRole;
use crate::{GROUP, VERSION};

/// Why a manifest was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The text is not YAML of the right shape.
    #[error("{origin}: not a valid HostRole: {source}")]
    Yaml {
        origin: String,
        source: serde_yaml::Error,
    },
    /// The document is some other kind of object.
    #[error("{origin}: expected apiVersion: {GROUP}/{VERSION} and kind: HostRole, found {found}")]
    WrongKind { origin: String, found: String },
    /// Fields break the schema or its rules; one line per field.
    #[error("{origin}: the HostRole is invalid:\n{}", .problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        origin: String,
        problems: Vec<String>,
    },
}

/// Reads a manifest file and returns its HostRoles, each validated. Documents of other kinds
/// (a ConfigMap beside the HostRole, say) are skipped.
pub fn load(path: &Path) -> Result<Vec<HostRole>, ManifestError> {
    let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_all(&text, &path.display().to_string())
}

/// Parses every YAML document of `text` and validates the HostRoles among them; `origin` names
/// the text in errors.
pub fn parse_all(text: &str, origin: &str) -> Result<Vec<HostRole>, ManifestError> {
    let mut hostroles = Vec::new();
    for (i, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let doc_origin = format!("{origin} (document {})", i + 1);
        let value = Value::deserialize(document).map_err(|source| ManifestError::Yaml {
            origin: doc_origin.clone(),
            source,
        })?;
        if value.is_null() {
            continue; // an empty document, e.g. after a trailing `---`
        }
        let api_version = value
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("");
        let kind = value.get("kind").and_then(Value::as_str).unwrap_or("");
        let ours = api_version.split('/').next() == Some(GROUP) || kind == "HostRole";
        if !ours {
            continue;
        }
        if api_version != format!("{GROUP}/{VERSION}") || kind != "HostRole" {
            return Err(ManifestError::WrongKind {
                origin: doc_origin,
                found: format!("apiVersion: {api_version:?}, kind: {kind:?}"),
            });
        }
        hostroles.push(from_value(value, &doc_origin)?);
    }
    Ok(hostroles)
}

/// The Secrets and ConfigMaps of a multi-document manifest whose owner labelled them
/// `hostrole.dev/use: "true"`, by kind and name: those its HostRoles may use standalone, as in a
/// cluster (docs/security.md, item 4). Documents that are not YAML objects are skipped.
pub fn labelled_for_use(text: &str) -> BTreeSet<(ObjectKind, String)> {
    let mut labelled = BTreeSet::new();
    for document in serde_yaml::Deserializer::from_str(text) {
        let Ok(value) = Value::deserialize(document) else {
            continue;
        };
        let kind = match value.get("kind").and_then(Value::as_str) {
            Some("Secret") => ObjectKind::Secret,
            Some("ConfigMap") => ObjectKind::ConfigMap,
            _ => continue,
        };
        let metadata = value.get("metadata");
        let Some(name) = metadata.and_then(|m| m.get("name")).and_then(Value::as_str) else {
            continue;
        };
        let label = metadata
            .and_then(|m| m.get("labels"))
            .and_then(|l| l.get(USE_LABEL))
            .and_then(Value::as_str);
        if label == Some(USE_LABEL_VALUE) {
            labelled.insert((kind, name.to_string()));
        }
    }
    labelled
}

/// Parses one HostRole document and validates it.
pub fn parse(text: &str, origin: &str) -> Result<HostRole, ManifestError> {
    let mut all = parse_all(text, origin)?;
    match all.len() {
        1 => Ok(all.remove(0)),
        n => Err(ManifestError::Invalid {
            origin: origin.to_string(),
            problems: vec![format!("expected one HostRole, found {n}")],
        }),
    }
}

fn from_value(value: Value, origin: &str) -> Result<HostRole, ManifestError> {
    let mut problems = Vec::new();
    let mut unknown = |path: serde_ignored::Path| {
        let path = path.to_string();
        // Metadata is free-form (labels, annotations); status is the operator's to write.
        if !(path.starts_with("metadata.")
            || path.starts_with("status")
            || path == "apiVersion"
            || path == "kind")
        {
            problems.push(format!(
                "{path}: unknown field; check its spelling (kubectl explain hostrole.spec lists the fields)"
            ));
        }
    };
    let parsed: Result<HostRole, _> =
        serde_path_to_error::deserialize(serde_ignored::Deserializer::new(value, &mut unknown));
    let invalid = |problems| ManifestError::Invalid {
        origin: origin.to_string(),
        problems,
    };
    let hostrole = match parsed {
        Ok(h) => h,
        Err(e) => {
            problems.push(format!("{}: {}", e.path(), e.inner()));
            return Err(invalid(problems));
        }
    };
    problems.extend(validate(&hostrole));
    if problems.is_empty() {
        Ok(hostrole)
    } else {
        Err(invalid(problems))
    }
}

/// Checks a HostRole (with defaults applied) against the CRD's OpenAPI schema and CEL rules.
/// Returns one line per problem, each starting with the field's path.
pub fn validate(hostrole: &HostRole) -> Vec<String> {
    let mut problems = Vec::new();
    match serde_json::to_value(hostrole) {
        Ok(value) => {
            problems.extend(schema_problems(&value));
            if let Some(schema) = open_api_schema() {
                list_type_problems(schema, &value, "", &mut problems);
            }
        }
        Err(e) => problems.push(format!("cannot serialize the HostRole: {e}")),
    }
    if let Err(errors) = hostrole.validate_cel() {
        problems.extend(errors.as_slice().iter().map(|e| e.to_string()));
    }
    problems
}

fn schema_problems(value: &Value) -> Vec<String> {
    match validator() {
        Ok(v) => v
            .iter_errors(value)
            .map(|e| {
                let path = kubernetes_path(&e.instance_path().to_string());
                let field = if path.is_empty() {
                    "(root)".to_string()
                } else {
                    path
                };
                format!("{field}: {}", e)
            })
            .collect(),
        Err(e) => vec![e.clone()],
    }
}

/// The CRD's `openAPIV3Schema` as JSON (generated once).
fn open_api_schema() -> Option<&'static Value> {
    static SCHEMA: OnceLock<Option<Value>> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let crd = HostRole::crd();
            let schema = crd
                .spec
                .versions
                .first()
                .and_then(|v| v.schema.as_ref())
                .and_then(|s| s.open_api_v3_schema.as_ref())?;
            serde_json::to_value(schema).ok()
        })
        .as_ref()
}

/// What JSON Schema leaves to the API server: `x-kubernetes-list-type: set` lists hold each
/// value once, `map` lists each key once. Reported as the API server does:
/// `spec.servers.mail.domains[1]: Duplicate value: "office.lan"`.
fn list_type_problems(schema: &Value, value: &Value, path: &str, problems: &mut Vec<String>) {
    match value {
        Value::Object(fields) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            for (name, field) in fields {
                let child = properties
                    .and_then(|p| p.get(name))
                    .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()));
                if let Some(child) = child {
                    let child_path = if path.is_empty() {
                        name.clone()
                    } else {
                        format!("{path}.{name}")
                    };
                    list_type_problems(child, field, &child_path, problems);
                }
            }
        }
        Value::Array(items) => {
            let keys: Option<Vec<&str>> =
                match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
                    Some("set") => Some(Vec::new()),
                    Some("map") => Some(
                        schema
                            .get("x-kubernetes-list-map-keys")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                            .filter_map(Value::as_str)
                            .collect(),
                    ),
                    _ => None,
                };
            let mut seen = Vec::new();
            for (i, item) in items.iter().enumerate() {
                if let Some(keys) = &keys {
                    let key = if keys.is_empty() {
                        item.clone()
                    } else {
                        Value::Object(
                            keys.iter()
                                .map(|k| (k.to_string(), item.get(*k).cloned().unwrap_or_default()))
                                .collect(),
                        )
                    };
                    if seen.contains(&key) {
                        problems.push(format!("{path}[{i}]: Duplicate value: {key}"));
                    } else {
                        seen.push(key);
                    }
                }
                if let Some(item_schema) = schema.get("items") {
                    list_type_problems(item_schema, item, &format!("{path}[{i}]"), problems);
                }
            }
        }
        _ => {}
    }
}

/// `/spec/servers/mail/domains/0` as the API server writes it: `spec.servers.mail.domains[0]`.
fn kubernetes_path(pointer: &str) -> String {
    let mut path = String::new();
    for segment in pointer.split('/').filter(|s| !s.is_empty()) {
        if segment.chars().all(|c| c.is_ascii_digit()) {
            path.push_str(&format!("[{segment}]"));
        } else {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(&segment.replace("~1", "/").replace("~0", "~"));
        }
    }
    path
}

fn validator() -> Result<&'static jsonschema::Validator, &'static String> {
    static VALIDATOR: OnceLock<Result<jsonschema::Validator, String>> = OnceLock::new();
    VALIDATOR
        .get_or_init(|| {
            let crd = HostRole::crd();
            let schema = crd
                .spec
                .versions
                .first()
                .and_then(|v| v.schema.as_ref())
                .and_then(|s| s.open_api_v3_schema.as_ref())
                .ok_or_else(|| "the HostRole CRD has no schema".to_string())?;
            let schema = serde_json::to_value(schema).map_err(|e| e.to_string())?;
            jsonschema::draft4::new(&schema)
                .map_err(|e| format!("the HostRole schema does not compile: {e}"))
        })
        .as_ref()
}
