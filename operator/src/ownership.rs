//! Whose object is it? Pure decisions about objects that already exist under a name a HostRole
//! needs. The operator writes only to objects it made for that HostRole; anything else under
//! one of its names is a conflict, reported and left untouched (no apply, no owner reference,
//! no delete). The thin layer in `reconcile` fetches the objects and acts on these answers.
//!
//! Two rules, after how an object was made:
//! - the objects of one HostRole (StatefulSet, Services, ConfigMap, ServiceAccount, RoleBinding,
//!   NetworkPolicy) are its own when they carry an owner reference with its UID;
//! - the objects a peer network's HostRoles share (`peers-<network>` Service and Secret) are the
//!   network's when they carry the operator's managed-by label and the network's label, both set
//!   when the operator created them. The operator never reads Secrets, so for the Secret the
//!   same test is made by the API server (a JSON patch whose `test` operations must pass).
//!
//! A Secret `peers-<network>` that a user made and labelled `hostrole.dev/network: <network>`
//! (without the managed-by label) is the network's secret *by consent*: mounted by the peers and
//! the index, never changed, never owned, so never garbage-collected.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Value, json};

use crate::desired::{FIELD_MANAGER, NETWORK_LABEL};

/// The label every object the operator creates carries (value [`FIELD_MANAGER`]).
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";

/// Whose an existing object must be for the operator to write to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner<'a> {
    /// An object of one HostRole: owned by the HostRole with this UID.
    HostRole { uid: &'a str },
    /// An object shared by the HostRoles of a peer network.
    Network { network: &'a str },
}

/// What an existing name means for the operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Nothing has the name: the operator may create the object.
    Free,
    /// The operator made it for this owner: it may apply to it (and delete it).
    Ours,
    /// Someone else's: leave it alone and report a conflict.
    Foreign,
}

/// Whether the operator may write to the object `existing` (its metadata) for `owner`.
pub fn claim(existing: Option<&ObjectMeta>, owner: Owner<'_>) -> Claim {
    let Some(meta) = existing else {
        return Claim::Free;
    };
    let ours = match owner {
        Owner::HostRole { uid } => meta.owner_references.iter().flatten().any(|o| o.uid == uid),
        Owner::Network { network } => {
            label(meta, MANAGED_BY_LABEL) == Some(FIELD_MANAGER)
                && label(meta, NETWORK_LABEL) == Some(network)
        }
    };
    if ours { Claim::Ours } else { Claim::Foreign }
}

fn label<'m>(meta: &'m ObjectMeta, key: &str) -> Option<&'m str> {
    meta.labels.as_ref()?.get(key).map(String::as_str)
}

/// A name a HostRole needs is taken by an object the operator did not make for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    /// What to rename (or do) so that the HostRole can be realised.
    pub fix: String,
}

impl Conflict {
    /// The conflict of the object `kind/name` needed by HostRole `hostrole` for `owner`.
    pub fn new(
        (api_version, kind): (&'static str, &'static str),
        namespace: &str,
        name: &str,
        hostrole: &str,
        owner: Owner<'_>,
    ) -> Conflict {
        let fix = match owner {
            Owner::HostRole { .. } if name == hostrole => format!(
                "rename the HostRole (its {kind} takes the HostRole's name) or the existing {kind}"
            ),
            Owner::HostRole { .. } => format!(
                "rename the HostRole (its {kind} is named {name}, after it) or the existing {kind}"
            ),
            Owner::Network { network } if kind == "Secret" => format!(
                "rename the network (spec.peer.network), or label that Secret \
                 {NETWORK_LABEL}={network} to use it as the network's secret (key `secret`; \
                 the operator never changes or deletes a Secret it did not create)"
            ),
            Owner::Network { .. } => {
                format!("rename the network (spec.peer.network) or the existing {kind}")
            }
        };
        Conflict {
            api_version,
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
            fix,
        }
    }

    /// The message of the condition and of the event.
    pub fn message(&self) -> String {
        format!(
            "{} {} already exists and was not made by hostrole for this HostRole; it is left untouched: {}",
            self.kind, self.name, self.fix
        )
    }
}

/// The condition reason of a conflict.
pub const NAME_CONFLICT: &str = "NameConflict";

/// One line for the Degraded condition: every conflict, in order.
pub fn conflicts_message(conflicts: &[Conflict]) -> String {
    conflicts
        .iter()
        .map(Conflict::message)
        .collect::<Vec<_>>()
        .join("; ")
}

// ----------------------------------------------------------------------------------------------
// The network Secret: decided by the API server's answers, since the operator never reads it.

/// An API server answer to one of the requests on the network Secret, by HTTP status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// 2xx.
    Ok,
    /// 400: the opt-in probe passed its test and then hit the deliberate name mismatch.
    BadRequest,
    /// 404: the Secret went away meanwhile.
    NotFound,
    /// 409: a create found the name taken.
    AlreadyExists,
    /// 422: a JSON patch `test` operation failed.
    TestFailed,
    /// Anything else (an error to report and retry).
    Other(u16),
}

impl Answer {
    pub fn from_status(code: u16) -> Answer {
        match code {
            200..=299 => Answer::Ok,
            400 => Answer::BadRequest,
            404 => Answer::NotFound,
            409 => Answer::AlreadyExists,
            422 => Answer::TestFailed,
            other => Answer::Other(other),
        }
    }
}

/// A request on the network Secret, in the order they are made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// Check, without writing, that a Secret the operator made a while ago is still there and
    /// still its own (first request when it has made it before).
    ProbeOurs,
    /// Create it with a random secret (first request otherwise).
    Create,
    /// Set its owners and labels, only if it carries the operator's labels for this network.
    PatchIfOurs,
    /// Ask whether a user labelled it for this network, without reading or changing it.
    ProbeConsent,
}

/// What the network Secret turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Still the operator's, with nothing to change.
    StillOurs,
    /// Created now.
    Created,
    /// The operator's; now with the network's owners and labels.
    Updated,
    /// A user's Secret labelled for this network: used as it is, never written.
    Consented,
    /// Someone else's: a conflict.
    Foreign,
    /// It went away meanwhile: try again.
    Retry,
    /// The API server answered the request with an error (HTTP status).
    Failed(u16),
}

/// After a request: the next one, or the verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    Ask(Request),
    Done(Verdict),
}

/// What follows the answer to `request`. Each request leads only to a later one, so at most
/// four requests are made (three when the operator did not make the Secret before).
pub fn next_secret_step(request: Request, answer: Answer) -> Next {
    use Request::*;
    use Verdict::*;
    match (request, answer) {
        (ProbeOurs, Answer::BadRequest) => Next::Done(StillOurs),
        // Deleted by hand: make it again (the peers cannot start without it).
        (ProbeOurs, Answer::NotFound) => Next::Ask(Create),
        // Replaced by a Secret without the operator's labels: a user's, or someone else's.
        (ProbeOurs, Answer::TestFailed) => Next::Ask(ProbeConsent),
        (Create, Answer::Ok) => Next::Done(Created),
        (Create, Answer::AlreadyExists) => Next::Ask(PatchIfOurs),
        (PatchIfOurs, Answer::Ok) => Next::Done(Updated),
        (PatchIfOurs, Answer::TestFailed) => Next::Ask(ProbeConsent),
        // The probe's test passed, then its name mismatch stopped it: labelled for us.
        (ProbeConsent, Answer::BadRequest) => Next::Done(Consented),
        (ProbeConsent, Answer::TestFailed) => Next::Done(Foreign),
        (PatchIfOurs | ProbeConsent, Answer::NotFound) => Next::Done(Retry),
        (_, Answer::Other(code)) => Next::Done(Failed(code)),
        (_, Answer::BadRequest) => Next::Done(Failed(400)),
        (_, Answer::NotFound) => Next::Done(Failed(404)),
        (_, Answer::AlreadyExists) => Next::Done(Failed(409)),
        (_, Answer::TestFailed) => Next::Done(Failed(422)),
        // Only a probe gets here: it must never be accepted.
        (_, Answer::Ok) => Next::Done(Failed(200)),
    }
}

/// JSON pointer escaping of one path segment (RFC 6901): `~` → `~0`, `/` → `~1`.
fn pointer(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// A JSON patch that sets the Secret's owners and labels, and fails (422, nothing written) unless
/// the Secret already carries the operator's managed-by label and this network's label.
pub fn patch_if_ours(network: &str, labels: &[(&str, &str)], owners: &Value) -> Value {
    let mut ops = vec![
        json!({"op": "test", "path": format!("/metadata/labels/{}", pointer(MANAGED_BY_LABEL)), "value": FIELD_MANAGER}),
        json!({"op": "test", "path": format!("/metadata/labels/{}", pointer(NETWORK_LABEL)), "value": network}),
    ];
    ops.extend(labels.iter().map(|(k, v)| {
        json!({"op": "add", "path": format!("/metadata/labels/{}", pointer(k)), "value": v})
    }));
    ops.push(json!({"op": "add", "path": "/metadata/ownerReferences", "value": owners}));
    Value::Array(ops)
}

/// A JSON patch that can never be written, to learn whether a Secret carries the label
/// `key=value` without reading it: the `test` fails (422) unless it does, and if it passes,
/// renaming the object makes the API server refuse the patch (400) before admission and
/// storage. Nothing is read or changed either way; a missing Secret answers 404. (For item 4's
/// rule too: a Secret is usable by HostRoles only when its owner labelled it.)
pub fn probe_label(key: &str, value: &str, name: &str) -> Value {
    json!([
        {"op": "test", "path": format!("/metadata/labels/{}", pointer(key)), "value": value},
        {"op": "replace", "path": "/metadata/name", "value": format!("{name}.probe")},
    ])
}

/// A never-written probe that passes its test (400) only while the object carries annotation
/// `key` with `value` (422 otherwise, 404 when it does not exist).
pub fn probe_annotation(key: &str, value: &str, name: &str) -> Value {
    json!([
        {"op": "test", "path": format!("/metadata/annotations/{}", pointer(key)), "value": value},
        {"op": "replace", "path": "/metadata/name", "value": format!("{name}.probe")},
    ])
}

/// [`probe_label`] for a Secret labelled for a peer network.
pub fn probe_consent(network: &str, name: &str) -> Value {
    probe_label(NETWORK_LABEL, network, name)
}

/// A never-written probe that passes its tests (400) only while the Secret carries the
/// operator's labels for the network.
pub fn probe_ours(network: &str, name: &str) -> Value {
    json!([
        {"op": "test", "path": format!("/metadata/labels/{}", pointer(MANAGED_BY_LABEL)), "value": FIELD_MANAGER},
        {"op": "test", "path": format!("/metadata/labels/{}", pointer(NETWORK_LABEL)), "value": network},
        {"op": "replace", "path": "/metadata/name", "value": format!("{name}.probe")},
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use std::collections::BTreeMap;

    fn meta(labels: &[(&str, &str)], owner_uids: &[&str]) -> ObjectMeta {
        ObjectMeta {
            name: Some("x".into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<BTreeMap<_, _>>(),
            ),
            owner_references: Some(
                owner_uids
                    .iter()
                    .map(|uid| OwnerReference {
                        api_version: "hostrole.dev/v1alpha1".into(),
                        kind: "HostRole".into(),
                        name: "web".into(),
                        uid: uid.to_string(),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }
    }

    const MINE: Owner<'static> = Owner::HostRole { uid: "uid-web" };

    #[test]
    fn a_missing_object_is_free() {
        assert_eq!(claim(None, MINE), Claim::Free);
        assert_eq!(
            claim(None, Owner::Network { network: "family" }),
            Claim::Free
        );
    }

    #[test]
    fn a_hostrole_object_is_ours_only_with_an_owner_reference_to_its_uid() {
        assert_eq!(claim(Some(&meta(&[], &["uid-web"])), MINE), Claim::Ours);
        assert_eq!(
            claim(Some(&meta(&[], &["uid-other", "uid-web"])), MINE),
            Claim::Ours
        );
        // A user's object, even one wearing our labels, is not ours.
        let labels = [
            (MANAGED_BY_LABEL, FIELD_MANAGER),
            ("app.kubernetes.io/instance", "web"),
        ];
        assert_eq!(claim(Some(&meta(&labels, &[])), MINE), Claim::Foreign);
        // Another HostRole's object (e.g. `x-hosts` of HostRole `x` against HostRole `x-hosts`),
        // or one left by an earlier HostRole of the same name (another UID), is not ours either.
        assert_eq!(
            claim(Some(&meta(&labels, &["uid-other"])), MINE),
            Claim::Foreign
        );
        assert_eq!(claim(Some(&ObjectMeta::default()), MINE), Claim::Foreign);
    }

    #[test]
    fn a_network_object_is_ours_with_the_managed_by_and_network_labels() {
        let family = Owner::Network { network: "family" };
        let ours = [(MANAGED_BY_LABEL, FIELD_MANAGER), (NETWORK_LABEL, "family")];
        assert_eq!(claim(Some(&meta(&ours, &[])), family), Claim::Ours);
        assert_eq!(
            claim(Some(&meta(&ours, &["uid-a"])), family),
            Claim::Ours,
            "owned by members that may have left the network: still the network's"
        );
        let other_network = [
            (MANAGED_BY_LABEL, FIELD_MANAGER),
            (NETWORK_LABEL, "friends"),
        ];
        assert_eq!(
            claim(Some(&meta(&other_network, &[])), family),
            Claim::Foreign
        );
        let users = [(NETWORK_LABEL, "family")];
        assert_eq!(claim(Some(&meta(&users, &[])), family), Claim::Foreign);
        let helm = [(MANAGED_BY_LABEL, "Helm"), (NETWORK_LABEL, "family")];
        assert_eq!(claim(Some(&meta(&helm, &[])), family), Claim::Foreign);
        assert_eq!(claim(Some(&ObjectMeta::default()), family), Claim::Foreign);
    }

    #[test]
    fn conflicts_say_what_to_rename() {
        let c = Conflict::new(("v1", "Service"), "lan", "web", "web", MINE);
        assert_eq!(
            c.message(),
            "Service web already exists and was not made by hostrole for this HostRole; it is left untouched: rename the HostRole (its Service takes the HostRole's name) or the existing Service"
        );
        let c = Conflict::new(("v1", "ConfigMap"), "lan", "web-host", "web", MINE);
        assert!(
            c.message()
                .ends_with("rename the HostRole (its ConfigMap is named web-host, after it) or the existing ConfigMap"),
            "{}",
            c.message()
        );
        let family = Owner::Network { network: "family" };
        let c = Conflict::new(("v1", "Secret"), "lan", "peers-family", "web", family);
        assert!(
            c.message()
                .contains("rename the network (spec.peer.network)")
        );
        assert!(
            c.message()
                .contains("label that Secret hostrole.dev/network=family")
        );
        let c = Conflict::new(("v1", "Service"), "lan", "peers-family", "web", family);
        assert!(
            c.message()
                .ends_with("rename the network (spec.peer.network) or the existing Service")
        );
        let two = conflicts_message(&[c.clone(), c]);
        assert_eq!(two.matches("peers-family already exists").count(), 2);
    }

    #[test]
    fn the_network_secret_steps() {
        use Request::*;
        use Verdict::*;
        let code = Answer::from_status;
        assert_eq!(next_secret_step(Create, code(201)), Next::Done(Created));
        assert_eq!(next_secret_step(Create, code(409)), Next::Ask(PatchIfOurs));
        assert_eq!(
            next_secret_step(PatchIfOurs, code(200)),
            Next::Done(Updated)
        );
        assert_eq!(
            next_secret_step(PatchIfOurs, code(422)),
            Next::Ask(ProbeConsent)
        );
        assert_eq!(
            next_secret_step(ProbeConsent, code(400)),
            Next::Done(Consented)
        );
        assert_eq!(
            next_secret_step(ProbeConsent, code(422)),
            Next::Done(Foreign)
        );
        assert_eq!(next_secret_step(PatchIfOurs, code(404)), Next::Done(Retry));
        assert_eq!(next_secret_step(ProbeConsent, code(404)), Next::Done(Retry));
        // Forbidden (RBAC, or the chart's admission policy) and the rest are errors.
        assert_eq!(next_secret_step(Create, code(403)), Next::Done(Failed(403)));
        assert_eq!(
            next_secret_step(PatchIfOurs, code(403)),
            Next::Done(Failed(403))
        );
        assert_eq!(next_secret_step(Create, code(422)), Next::Done(Failed(422)));
        assert_eq!(
            next_secret_step(PatchIfOurs, code(400)),
            Next::Done(Failed(400))
        );
        assert_eq!(next_secret_step(Create, code(404)), Next::Done(Failed(404)));
        // Looking again at a Secret made before: no write unless it went or changed hands.
        assert_eq!(
            next_secret_step(ProbeOurs, code(400)),
            Next::Done(StillOurs)
        );
        assert_eq!(next_secret_step(ProbeOurs, code(404)), Next::Ask(Create));
        assert_eq!(
            next_secret_step(ProbeOurs, code(422)),
            Next::Ask(ProbeConsent)
        );
        assert_eq!(
            next_secret_step(ProbeOurs, code(403)),
            Next::Done(Failed(403))
        );
        assert_eq!(
            next_secret_step(ProbeOurs, code(200)),
            Next::Done(Failed(200))
        );
        // A probe must never be accepted: if the API server ever did, stop rather than go on.
        assert_eq!(
            next_secret_step(ProbeConsent, code(200)),
            Next::Done(Failed(200))
        );
    }

    #[test]
    fn the_network_secret_takes_at_most_four_requests() {
        let answers = [200, 201, 400, 403, 404, 409, 422, 500, 503].map(Answer::from_status);
        // Every sequence of answers ends in a verdict within `limit` requests.
        fn walk(request: Request, depth: usize, limit: usize, answers: &[Answer]) {
            assert!(depth <= limit, "more than {limit} requests");
            for &a in answers {
                if let Next::Ask(next) = next_secret_step(request, a) {
                    walk(next, depth + 1, limit, answers);
                }
            }
        }
        walk(Request::Create, 1, 3, &answers);
        walk(Request::ProbeOurs, 1, 4, &answers);
    }

    #[test]
    fn the_secret_patches_test_before_they_write() {
        let owners = json!([{"uid": "u"}]);
        let patch = patch_if_ours("family", &[(NETWORK_LABEL, "family")], &owners);
        let ops = patch.as_array().expect("a list of operations");
        assert_eq!(ops[0]["op"], "test");
        assert_eq!(
            ops[0]["path"],
            "/metadata/labels/app.kubernetes.io~1managed-by"
        );
        assert_eq!(ops[0]["value"], "hostrole-operator");
        assert_eq!(ops[1]["op"], "test");
        assert_eq!(ops[1]["path"], "/metadata/labels/hostrole.dev~1network");
        assert_eq!(ops[1]["value"], "family");
        assert_eq!(ops[2]["op"], "add");
        assert_eq!(
            ops.last().expect("ops")["path"],
            "/metadata/ownerReferences"
        );

        let probe = probe_ours("family", "peers-family");
        let ops = probe.as_array().expect("a list of operations");
        assert_eq!(ops.len(), 3);
        assert_eq!(
            ops[0]["path"],
            "/metadata/labels/app.kubernetes.io~1managed-by"
        );
        assert_eq!(ops[1]["path"], "/metadata/labels/hostrole.dev~1network");
        assert_eq!(ops[2]["path"], "/metadata/name");

        let probe = probe_consent("family", "peers-family");
        let ops = probe.as_array().expect("a list of operations");
        assert_eq!(ops.len(), 2);
        assert_eq!(ops[0]["op"], "test");
        assert_eq!(ops[0]["path"], "/metadata/labels/hostrole.dev~1network");
        assert_eq!(ops[1]["path"], "/metadata/name");
        assert_ne!(ops[1]["value"], "peers-family");
        assert_eq!(pointer("a~b/c"), "a~0b~1c");
    }
}
