//! Reaching hosts from outside, on a real API server: `tls.issuerRef` with cert-manager itself
//! (its controllers built from the pinned Go module, `e2e/cluster/build-cert-manager.sh`),
//! `spec.expose` Services, Gateway API routes with the pinned CRDs
//! (`e2e/cluster/gateway-api-crds.sh`) and `status.endpoints`.
//!
//! One test, in order, because it installs cluster-wide CRDs: first the HostRole is seen on a
//! cluster without cert-manager and the Gateway API (status says so, nothing crashes), then
//! both are installed and the operator finds them without a restart.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use hostrole_api::HostRole;
use hostrole_e2e::{Env, TempManifest, eventually, repo_root, tempdir};
use hostrole_testkit::Proc;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind};
use kube::{Api, Client};

const CONVERGE: Duration = Duration::from_secs(120);

/// Runs a script of e2e/cluster that prints `KEY=value`; the value.
fn script_value(script: &str, key: &str) -> PathBuf {
    let out = Command::new("bash")
        .arg(repo_root().join("e2e/cluster").join(script))
        .output()
        .expect("run script");
    assert!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{script} printed no {key}=: {text}"));
    PathBuf::from(line)
}

fn dynamic(
    client: &Client,
    ns: &str,
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk(group, version, kind);
    Api::namespaced_with(
        client.clone(),
        ns,
        &ApiResource::from_gvk_with_plural(&gvk, plural),
    )
}

async fn reason_of(client: &Client, ns: &str, name: &str) -> Option<(String, String)> {
    let hr = Api::<HostRole>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .ok()?;
    let c = hr
        .status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Degraded" && c.status == "True")?;
    Some((c.reason, c.message))
}

/// Removes the CRDs of `group` (a cluster left by an earlier run), so the test starts without.
async fn remove_crds(client: &Client, group: &str) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let list = crds.list(&Default::default()).await.expect("list CRDs");
    let names: Vec<String> = list
        .items
        .into_iter()
        .filter(|c| c.spec.group == group)
        .filter_map(|c| c.metadata.name)
        .collect();
    for name in &names {
        let _ = crds.delete(name, &DeleteParams::default()).await;
    }
    for name in names {
        eventually(&format!("CRD {name} is gone"), CONVERGE, || async {
            crds.get_opt(&name).await.ok()?.is_none().then_some(())
        })
        .await;
    }
}

const OFFICE: &str = "apiVersion: hostrole.dev/v1alpha1
kind: HostRole
metadata: {name: office}
spec:
  servers:
    web:
      port: 8443
      tls: {issuerRef: {name: selfsigned}}
    file: {port: 8444}
    mail: {domains: [office.lan]}
  expose:
    type: NodePort
    roles: [web, mail]
    nodePorts: {web: 30943}
    externalTrafficPolicy: Local
    hostnames: [www.office.lan]
    gateway:
      parentRefs: [{name: lan-gw, sectionName: https}]
";

#[tokio::test]
async fn cert_manager_issues_the_host_certificate_and_routes_and_exposure_follow_the_apis() {
    let env = Env::new().await;
    let cert_manager = script_value("build-cert-manager.sh", "CERT_MANAGER_DIR");
    let gateway_crds = script_value("gateway-api-crds.sh", "GATEWAY_API_CRDS");
    remove_crds(&env.client, "cert-manager.io").await;
    remove_crds(&env.client, "gateway.networking.k8s.io").await;

    let ns = env.namespace("reach").await;
    let _operator = env.operator(&ns, &[]);
    let manifest = TempManifest::new("office.yaml", OFFICE);
    env.kubectl_ok(&["apply", "-n", &ns, "-f", manifest.arg()]);

    // 1. Neither API is installed: status says so, the rest is made.
    let (reason, message) = eventually(
        "office reports that cert-manager is missing",
        CONVERGE,
        || async {
            reason_of(&env.client, &ns, "office")
                .await
                .filter(|(r, _)| r == "CertManagerMissing")
        },
    )
    .await;
    assert!(
        message.contains("spec.servers.web.tls.issuerRef: cert-manager is not installed"),
        "{reason}: {message}"
    );
    assert!(
        message.contains("spec.expose.gateway: the Gateway API is not installed"),
        "{message}"
    );
    let services = Api::<Service>::namespaced(env.client.clone(), &ns);
    let external = eventually("the NodePort Service", CONVERGE, || async {
        services.get_opt("office-external").await.ok().flatten()
    })
    .await;
    let spec = external.spec.expect("spec");
    assert_eq!(spec.type_.as_deref(), Some("NodePort"));
    assert_eq!(spec.external_traffic_policy.as_deref(), Some("Local"));
    let ports = spec.ports.expect("ports");
    let names: Vec<&str> = ports.iter().filter_map(|p| p.name.as_deref()).collect();
    // File stays internal; web is not served (so not exposed) until its certificate is issued.
    assert_eq!(names, ["smtp", "submission", "imap", "pop3"]);
    assert!(ports[0].node_port.is_some(), "node ports allocated");
    // Endpoints: pasteable URLs, the main one first, printed by kubectl get.
    let hr = eventually("status.endpoints", CONVERGE, || async {
        let hr = Api::<HostRole>::namespaced(env.client.clone(), &ns)
            .get("office")
            .await
            .ok()?;
        (!hr.status.as_ref()?.endpoints.is_empty()).then_some(hr)
    })
    .await;
    let endpoints = hr.status.expect("status").endpoints;
    assert_eq!(endpoints[0].url, "https://www.office.lan/", "{endpoints:?}");
    assert!(
        endpoints
            .iter()
            .any(|e| e.url == format!("https://office.{ns}.svc:8443/")),
        "{endpoints:?}"
    );
    assert!(
        endpoints
            .iter()
            .any(|e| e.url == format!("http://office.{ns}.svc:8444/") && e.scope == "Cluster"),
        "{endpoints:?}"
    );
    let table = env.kubectl_ok(&["get", "hrole", "office", "-n", &ns]);
    assert!(
        table.contains("URL") && table.contains("https://www.office.lan/"),
        "{table}"
    );
    // Nothing is served over plain text meanwhile: the web role is left out of the host.
    let sts = Api::<StatefulSet>::namespaced(env.client.clone(), &ns)
        .get("office")
        .await
        .expect("sts");
    let volumes = sts
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .volumes
        .unwrap_or_default();
    assert!(volumes.iter().all(|v| v.name != "web-tls"));

    // 2. Install cert-manager's CRDs and the Gateway API's; run cert-manager's controllers.
    env.kubectl_ok(&[
        "apply",
        "--server-side",
        "-f",
        cert_manager.join("crds").to_str().unwrap(),
    ]);
    env.kubectl_ok(&[
        "apply",
        "--server-side",
        "-f",
        gateway_crds.to_str().unwrap(),
    ]);
    let logs = tempdir().expect("tempdir");
    let kubeconfig = std::env::var("KUBECONFIG").expect("KUBECONFIG");
    let mut cm = Proc::spawn(
        "cert-manager",
        Command::new(cert_manager.join("bin/controller")).args([
            "--kubeconfig",
            &kubeconfig,
            "--namespace",
            &ns,
        ]),
        logs.path(),
    );
    let issuer = TempManifest::new(
        "issuer.yaml",
        "apiVersion: cert-manager.io/v1\nkind: Issuer\nmetadata: {name: selfsigned}\nspec: {selfSigned: {}}\n",
    );
    eventually("the Issuer applies (CRD established)", CONVERGE, || async {
        env.kubectl(&["apply", "-n", &ns, "-f", issuer.arg()])
            .status
            .success()
            .then_some(())
    })
    .await;

    // 3. The operator finds both APIs without a restart: the Certificate, issued; the Secret,
    // labelled by its template and mounted; the routes.
    let certs = dynamic(
        &env.client,
        &ns,
        "cert-manager.io",
        "v1",
        "Certificate",
        "certificates",
    );
    let cert = eventually("Certificate office-web is Ready", CONVERGE, || async {
        let c = certs.get_opt("office-web").await.ok().flatten()?;
        let ready = c.data["status"]["conditions"]
            .as_array()?
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        ready.then_some(c)
    })
    .await;
    assert!(cm.running(), "cert-manager exited: {}", cm.stderr());
    assert_eq!(cert.data["spec"]["secretName"], "office-web-tls");
    let dns: Vec<String> =
        serde_json::from_value(cert.data["spec"]["dnsNames"].clone()).expect("dnsNames");
    assert!(
        dns.contains(&format!("office.{ns}.svc")) && dns.contains(&"www.office.lan".to_string()),
        "{dns:?}"
    );
    assert!(
        dns.contains(&format!("*.office-hosts.{ns}.svc.cluster.local")),
        "{dns:?}"
    );
    let owner = &cert.metadata.owner_references.as_ref().expect("owner")[0];
    assert_eq!(owner.kind, "HostRole");
    let secret = Api::<Secret>::namespaced(env.client.clone(), &ns)
        .get("office-web-tls")
        .await
        .expect("issued Secret");
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    assert_eq!(
        secret.metadata.labels.as_ref().expect("labels")["hostrole.dev/use"],
        "true"
    );
    assert!(secret.data.as_ref().expect("data").contains_key("tls.crt"));
    eventually(
        "the issued Secret is mounted in the host pod",
        CONVERGE,
        || async {
            let sts = Api::<StatefulSet>::namespaced(env.client.clone(), &ns)
                .get("office")
                .await
                .ok()?;
            let volumes = sts.spec?.template.spec?.volumes?;
            volumes
                .iter()
                .any(|v| {
                    v.name == "web-tls"
                        && v.secret.as_ref().and_then(|s| s.secret_name.as_deref())
                            == Some("office-web-tls")
                })
                .then_some(())
        },
    )
    .await;
    let web_port = eventually(
        "web is exposed on its fixed node port",
        CONVERGE,
        || async {
            let svc = services.get_opt("office-external").await.ok()??;
            svc.spec?
                .ports?
                .into_iter()
                .find(|p| p.name.as_deref() == Some("web"))
        },
    )
    .await;
    assert_eq!(web_port.node_port, Some(30943));
    let routes = dynamic(
        &env.client,
        &ns,
        "gateway.networking.k8s.io",
        "v1",
        "HTTPRoute",
        "httproutes",
    );
    let route = eventually("HTTPRoute office-web", CONVERGE, || async {
        routes.get_opt("office-web").await.ok().flatten()
    })
    .await;
    assert_eq!(route.data["spec"]["hostnames"][0], "www.office.lan");
    assert_eq!(
        route.data["spec"]["rules"][0]["backendRefs"][0]["port"],
        8443
    );
    assert!(
        routes.get_opt("office-file").await.expect("get").is_none(),
        "file is not exposed"
    );
    let tcp = dynamic(
        &env.client,
        &ns,
        "gateway.networking.k8s.io",
        "v1",
        "TCPRoute",
        "tcproutes",
    );
    let smtp = tcp
        .get_opt("office-smtp")
        .await
        .expect("get")
        .expect("TCPRoute office-smtp");
    assert_eq!(smtp.data["spec"]["parentRefs"][0]["sectionName"], "smtp");
    eventually(
        "office is no longer degraded by missing APIs",
        CONVERGE,
        || async {
            match reason_of(&env.client, &ns, "office").await {
                None => Some(()),
                Some((r, _))
                    if r != "CertManagerMissing"
                        && r != "GatewayAPIMissing"
                        && r != "CertificatePending" =>
                {
                    Some(())
                }
                _ => None,
            }
        },
    )
    .await;

    // 4. A Secret already there under the name cert-manager would fill is not overwritten:
    // no Certificate, NameConflict.
    let taken = TempManifest::new(
        "taken.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: shop-web-tls}\ntype: kubernetes.io/tls\nstringData: {tls.crt: keep-me, tls.key: keep-me}\n",
    );
    env.kubectl_ok(&["apply", "-n", &ns, "-f", taken.arg()]);
    let shop = TempManifest::new(
        "shop.yaml",
        "apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {name: shop}\nspec:\n  servers:\n    web: {tls: {issuerRef: {name: selfsigned}}}\n",
    );
    env.kubectl_ok(&["apply", "-n", &ns, "-f", shop.arg()]);
    let (_, message) = eventually("shop reports the taken Secret", CONVERGE, || async {
        reason_of(&env.client, &ns, "shop")
            .await
            .filter(|(r, _)| r == "NameConflict")
    })
    .await;
    assert!(message.contains("Secret shop-web-tls"), "{message}");
    assert!(
        certs.get_opt("shop-web").await.expect("get").is_none(),
        "no Certificate made"
    );
    let kept = Api::<Secret>::namespaced(env.client.clone(), &ns)
        .get("shop-web-tls")
        .await
        .expect("kept");
    assert_eq!(kept.data.expect("data")["tls.crt"].0, b"keep-me");

    cm.terminate();
    env.delete_namespace(&ns).await;
}
