//! Growing the hosts' volumes when a role's `storage` grows.
//!
//! A StatefulSet's claim templates only shape claims it has yet to create: a host's existing
//! PersistentVolumeClaim keeps its size. The operator raises each claim's request itself (the API
//! server lets a claim grow when its StorageClass has `allowVolumeExpansion: true`, and the
//! volume's driver then resizes it); where the API server refuses, the HostRole says so in its
//! status instead of leaving the role to find out with ENOSPC. Claims never shrink.

use hostrole_api::quantity::nanos;
use hostrole_api::render::{
    FILE_VOLUME, MAIL_VOLUME, PRINT_VOLUME, Problem, ProblemReason, SHARE_VOLUME,
};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;

/// One host's claim as the StatefulSet's templates want it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WantedClaim {
    /// `<template>-<statefulset>-<ordinal>`, the name the StatefulSet controller gives it.
    pub name: String,
    /// The claim template (the role's volume).
    pub volume: String,
    /// The size the role asks for.
    pub size: String,
}

/// The claims of hosts `0 … replicas-1` with the size their template asks for now.
pub fn wanted_claims(sts: &StatefulSet) -> Vec<WantedClaim> {
    let Some(spec) = sts.spec.as_ref() else {
        return Vec::new();
    };
    let name = sts.metadata.name.clone().unwrap_or_default();
    let replicas = spec.replicas.unwrap_or(1).max(0);
    spec.volume_claim_templates
        .iter()
        .flatten()
        .filter_map(|t| {
            let volume = t.metadata.name.clone()?;
            let size = t
                .spec
                .as_ref()?
                .resources
                .as_ref()?
                .requests
                .as_ref()?
                .get("storage")?
                .0
                .clone();
            Some((volume, size))
        })
        .flat_map(|(volume, size)| {
            let name = name.clone();
            (0..replicas).map(move |i| WantedClaim {
                name: format!("{volume}-{name}-{i}"),
                volume: volume.clone(),
                size: size.clone(),
            })
        })
        .collect()
}

/// The storage a claim requests now.
pub fn requested(pvc: &PersistentVolumeClaim) -> Option<&str> {
    pvc.spec
        .as_ref()?
        .resources
        .as_ref()?
        .requests
        .as_ref()?
        .get("storage")
        .map(|q| q.0.as_str())
}

/// Whether the claim must grow to `want` (it requests less; a claim never shrinks).
pub fn must_grow(pvc: &PersistentVolumeClaim, want: &str) -> bool {
    match (requested(pvc).and_then(nanos), nanos(want)) {
        (Some(has), Some(want)) => has < want,
        _ => false,
    }
}

/// The HostRole field whose `storage` a claim template comes from.
pub fn field_of(volume: &str) -> &'static str {
    match volume {
        v if v == FILE_VOLUME => "spec.servers.file.storage",
        v if v == MAIL_VOLUME => "spec.servers.mail.storage",
        v if v == SHARE_VOLUME => "spec.peer.share.storage",
        v if v == PRINT_VOLUME => "spec.servers.print.storage",
        _ => "spec",
    }
}

/// What the status says when the API server refused to grow a claim.
pub fn not_expanded(claim: &WantedClaim, has: &str, why: &str) -> Problem {
    Problem {
        field: field_of(&claim.volume).to_string(),
        reason: ProblemReason::StorageNotExpanded,
        message: format!(
            "{field} asks for {want} but PersistentVolumeClaim {name} has {has} and cannot grow ({why}): \
             use a StorageClass with allowVolumeExpansion: true (spec.template.storageClassName, for new claims), \
             or set {field} back to {has}; until then the role's quota is larger than its volume",
            field = field_of(&claim.volume),
            want = claim.size,
            name = claim.name,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sts(replicas: i32) -> StatefulSet {
        serde_json::from_value(json!({
            "metadata": {"name": "nas"},
            "spec": {
                "replicas": replicas,
                "selector": {},
                "serviceName": "nas-hosts",
                "template": {},
                "volumeClaimTemplates": [
                    {"metadata": {"name": "file-data"}, "spec": {"resources": {"requests": {"storage": "2Gi"}}}}
                ]
            }
        }))
        .expect("statefulset")
    }

    fn pvc(size: &str) -> PersistentVolumeClaim {
        serde_json::from_value(json!({"spec": {"resources": {"requests": {"storage": size}}}}))
            .expect("pvc")
    }

    #[test]
    fn every_host_has_a_claim_per_template() {
        let claims = wanted_claims(&sts(2));
        let names: Vec<&str> = claims.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["file-data-nas-0", "file-data-nas-1"]);
        assert_eq!(claims[0].size, "2Gi");
        assert!(wanted_claims(&sts(0)).is_empty());
    }

    #[test]
    fn claims_grow_never_shrink_and_compare_by_value() {
        assert!(must_grow(&pvc("1Gi"), "2Gi"));
        assert!(
            !must_grow(&pvc("2048Mi"), "2Gi"),
            "the same size, spelt otherwise"
        );
        assert!(!must_grow(&pvc("3Gi"), "2Gi"), "never shrinks");
    }

    #[test]
    fn a_refusal_names_the_field_the_claim_and_the_fix() {
        let claim = &wanted_claims(&sts(1))[0];
        let p = not_expanded(claim, "1Gi", "forbidden");
        assert_eq!(p.field, "spec.servers.file.storage");
        assert!(
            p.message.contains("file-data-nas-0") && p.message.contains("allowVolumeExpansion")
        );
    }
}
