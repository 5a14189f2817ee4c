//! `hostrole-operator self-test`: what `helm test` runs, from the operator's own image. The
//! operator's Deployment has a ready replica (its readiness probe is `/readyz`; asked of the API
//! server, so no NetworkPolicy is in the way), and a HostRole in the namespace it watches
//! becomes Ready.

use std::time::Duration;

use hostrole_api::HostRole;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client};

/// Where the operator is and where it looks.
#[derive(Clone, Debug)]
pub struct SelfTest {
    /// Namespace of the release (the operator's Deployment).
    pub release_namespace: String,
    /// The operator's Deployment.
    pub deployment: String,
    /// Namespace the test HostRole goes in: one the operator watches.
    pub namespace: String,
    /// Name of the test HostRole.
    pub name: String,
    /// How long the HostRole may take to become Ready.
    pub timeout: Duration,
}

/// Why the self-test failed.
#[derive(Debug, thiserror::Error)]
pub enum SelfTestError {
    #[error("cannot reach the API server: {0}")]
    Client(#[source] kube::Error),
    #[error("cannot read the operator's Deployment {namespace}/{name}: {source}")]
    Deployment {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "the operator's Deployment {namespace}/{name} has no ready replica (its /readyz does not answer): see kubectl -n {namespace} describe deployment {name}"
    )]
    NotReady { namespace: String, name: String },
    #[error("cannot {verb} HostRole {namespace}/{name}: {source}")]
    HostRole {
        verb: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "HostRole {namespace}/{name} was not Ready after {seconds}s (last Ready condition: {last}); is the operator watching {namespace}?"
    )]
    Timeout {
        namespace: String,
        name: String,
        seconds: u64,
        last: String,
    },
}

/// Runs the test; prints each step.
pub async fn run(test: &SelfTest) -> Result<(), SelfTestError> {
    let client = Client::try_default().await.map_err(SelfTestError::Client)?;
    let deployment = Api::<Deployment>::namespaced(client.clone(), &test.release_namespace)
        .get(&test.deployment)
        .await
        .map_err(|source| SelfTestError::Deployment {
            namespace: test.release_namespace.clone(),
            name: test.deployment.clone(),
            source,
        })?;
    let ready = deployment
        .status
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0);
    if ready < 1 {
        return Err(SelfTestError::NotReady {
            namespace: test.release_namespace.clone(),
            name: test.deployment.clone(),
        });
    }
    println!("operator ready: {ready} replica(s)");

    let hostroles: Api<HostRole> = Api::namespaced(client, &test.namespace);
    let hostrole = serde_json::json!({
        "apiVersion": "hostrole.dev/v1alpha1",
        "kind": "HostRole",
        "metadata": {"name": test.name, "labels": {"app.kubernetes.io/component": "helm-test"}},
        "spec": {"servers": {"web": {}}},
    });
    let fail = |verb: &'static str| {
        let (namespace, name) = (test.namespace.clone(), test.name.clone());
        move |source| SelfTestError::HostRole {
            verb,
            namespace,
            name,
            source,
        }
    };
    hostroles
        .patch(
            &test.name,
            &PatchParams::apply("hostrole-self-test").force(),
            &Patch::Apply(&hostrole),
        )
        .await
        .map_err(fail("apply"))?;
    println!("applied HostRole {}/{}", test.namespace, test.name);

    let start = tokio::time::Instant::now();
    let mut last = String::from("none yet");
    let outcome = loop {
        let hr = hostroles.get(&test.name).await.map_err(fail("get"))?;
        let ready = hr
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"));
        if let Some(c) = ready {
            if c.status == "True" {
                println!(
                    "HostRole {}/{} is Ready: {}",
                    test.namespace, test.name, c.message
                );
                break Ok(());
            }
            last = format!("{} {}: {}", c.status, c.reason, c.message);
        }
        if start.elapsed() >= test.timeout {
            break Err(SelfTestError::Timeout {
                namespace: test.namespace.clone(),
                name: test.name.clone(),
                seconds: test.timeout.as_secs(),
                last: last.clone(),
            });
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    hostroles
        .delete(&test.name, &DeleteParams::default())
        .await
        .map_err(fail("delete"))?;
    println!("deleted HostRole {}/{}", test.namespace, test.name);
    outcome
}
