//! The index and peer roles standalone.
//!
//! A network's secret comes from a Secret `peers-<network>` (key `secret`) in the same manifest,
//! as the operator names it in a cluster; without one, a random secret is generated once and
//! kept owner-only in `<data-dir>/networks/<network>`. Peers on several machines (or agents with
//! different data directories) need the same secret: add the Secret to the manifest.
//! `peer.index: NAME` is the HostRole NAME of the same manifest, on this machine
//! (`http://127.0.0.1:<its index port>`). A decentralized peer's seeds are the peers of its
//! network in the manifest (on this machine, at their ports) plus `--seed` addresses.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use hostrole_api::agent::{IndexRoleConfig, NETWORK_SECRET_KEY, PeerRoleConfig};
use hostrole_api::{HostRole, IndexServer};

use super::{Manifest, StandaloneError, UpOptions, size, write_private};

/// Name of the Secret that holds a network's shared secret.
pub fn network_secret_name(network: &str) -> String {
    format!("peers-{network}")
}

/// The index role on this machine: `<data-dir>/networks/` holds the secret of every network
/// whose peers in the manifest name this index.
pub fn index_role(
    hostrole: &HostRole,
    m: &Manifest,
    options: &UpOptions,
    data_dir: &Path,
) -> Result<Option<IndexRoleConfig>, StandaloneError> {
    let Some(index) = &hostrole.spec.servers.index else {
        return Ok(None);
    };
    let name = hostrole.metadata.name.clone().unwrap_or_default();
    let networks_dir = data_dir.join("networks");
    for other in &m.hostroles {
        if let Some(peer) = &other.spec.peer
            && peer.index.as_deref() == Some(name.as_str())
        {
            network_secret(m, data_dir, &peer.network)?;
        }
    }
    std::fs::create_dir_all(&networks_dir).map_err(|source| StandaloneError::WriteSite {
        path: networks_dir.clone(),
        source,
    })?;
    Ok(Some(IndexRoleConfig {
        port: offset(index.port, options),
        ttl_seconds: index.ttl_seconds(),
        networks_dir,
    }))
}

/// The peer role on this machine: the share is `<data-dir>/share`.
pub fn peer_role(
    hostrole: &HostRole,
    m: &Manifest,
    options: &UpOptions,
    data_dir: &Path,
) -> Result<Option<PeerRoleConfig>, StandaloneError> {
    let Some(peer) = &hostrole.spec.peer else {
        return Ok(None);
    };
    let secret_file = network_secret(m, data_dir, &peer.network)?;
    let index = match &peer.index {
        None => None,
        Some(name) => Some(
            m.hostroles
                .iter()
                .find(|h| h.metadata.name.as_deref() == Some(name.as_str()))
                .and_then(|h| h.spec.servers.index.as_ref())
                .ok_or(StandaloneError::NeedsCluster {
                    field: "spec.peer.index",
                    instead: "a HostRole with spec.servers.index in the same manifest",
                })?,
        ),
    };
    // The offset moves this agent's own ports, not the index it uses.
    let index_url = index.map(|i| format!("http://127.0.0.1:{}", i.port));
    let port = offset(peer.port, options);
    let own = SocketAddr::new(options.bind, port).to_string();
    let mut seeds: Vec<String> = Vec::new();
    if index_url.is_none() {
        for other in &m.hostroles {
            if let Some(p) = &other.spec.peer
                && p.network == peer.network
                && p.index.is_none()
            {
                seeds.push(format!("127.0.0.1:{}", p.port));
            }
        }
        seeds.extend(options.seeds.iter().cloned());
        seeds.retain(|s| *s != own);
        seeds.sort();
        seeds.dedup();
        if seeds.is_empty() {
            // The first peer: nobody to ask yet; it is found by those that seed it.
            seeds.push(own);
        }
    }
    Ok(Some(PeerRoleConfig {
        network: peer.network.clone(),
        port,
        ui_port: offset(peer.ui.port, options),
        ui_bind: None,
        root: data_dir.join("share"),
        quota_bytes: size(
            "spec.peer.share.storage",
            peer.share.as_ref().and_then(|s| s.storage.as_ref()),
        )?,
        secret_file,
        index_url,
        discovery_dns: None,
        seeds,
        advertise: None,
        heartbeat_seconds: index.map_or(
            IndexServer::default_heartbeat_seconds(),
            IndexServer::heartbeat_seconds,
        ),
        fetch: peer.fetch.clone(),
        mirror: peer.mirror,
    }))
}

fn offset(port: i32, options: &UpOptions) -> u16 {
    (port as u16).saturating_add(options.port_offset)
}

/// `<data-dir>/networks/<network>`: from the manifest's `peers-<network>` Secret, else the
/// secret generated earlier, else a new random one.
fn network_secret(
    m: &Manifest,
    data_dir: &Path,
    network: &str,
) -> Result<PathBuf, StandaloneError> {
    let dir = data_dir.join("networks");
    let path = dir.join(network);
    if let Some(secret) = m
        .secrets
        .get(&network_secret_name(network))
        .and_then(|keys| keys.get(NETWORK_SECRET_KEY))
    {
        return write_private(&dir, network, secret);
    }
    if path.exists() {
        return Ok(path);
    }
    let mut random = [0u8; 32];
    getrandom::fill(&mut random).map_err(|e| StandaloneError::WriteSite {
        path: path.clone(),
        source: std::io::Error::other(e),
    })?;
    tracing::warn!(
        network,
        file = %path.display(),
        "no Secret {} in the manifest: generated a network secret; peers on other machines need the same one (add the Secret)",
        network_secret_name(network)
    );
    write_private(&dir, network, hex::encode(random).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::standalone::prepare;

    const HYBRID: &str = "apiVersion: v1\nkind: Secret\nmetadata: {name: peers-family}\nstringData: {secret: \"s3cret \\n\"}\n---\n\
        apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {name: tracker}\nspec:\n  servers:\n    index: {port: 7100, ttl: 1m}\n---\n\
        apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {name: family}\nspec:\n  replicas: 3\n  peer: {network: family, index: tracker, port: 7101, share: {storage: 1Mi}, ui: {port: 8190}}\n";

    fn options(dir: &Path, text: &str, name: &str) -> UpOptions {
        let manifest = dir.join("m.yaml");
        std::fs::write(&manifest, text).expect("manifest");
        UpOptions {
            manifest,
            name: Some(name.into()),
            bind: "127.0.0.1".parse().expect("ip"),
            admin_port: 9901,
            data_dir: Some(dir.join(name)),
            port_offset: 0,
            seeds: Vec::new(),
        }
    }

    #[test]
    fn a_hybrid_manifest_gives_the_index_and_its_peers_the_manifest_secret() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let index = prepare(&options(dir.path(), HYBRID, "tracker"))
            .expect("tracker")
            .index
            .expect("index role");
        assert_eq!((index.port, index.ttl_seconds), (7100, 60));
        let secret = index.networks_dir.join("family");
        assert_eq!(std::fs::read(&secret).expect("secret"), b"s3cret \n");
        let mode = std::fs::metadata(&secret)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "owner-only");

        let mut up = options(dir.path(), HYBRID, "family");
        up.port_offset = 10;
        let peer = prepare(&up).expect("family").peer.expect("peer role");
        assert_eq!(peer.index_url.as_deref(), Some("http://127.0.0.1:7100"));
        assert_eq!((peer.port, peer.ui_port), (7111, 8200));
        assert_eq!(peer.root, dir.path().join("family/share"));
        assert_eq!(peer.quota_bytes, Some(1 << 20));
        assert_eq!(
            crate::p2p::auth::read_secret(&peer.secret_file).expect("secret"),
            b"s3cret"
        );
    }

    #[test]
    fn an_index_outside_the_manifest_needs_a_cluster() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = HYBRID.replace("index: tracker", "index: elsewhere");
        let err = prepare(&options(dir.path(), &text, "family")).expect_err("refused");
        assert!(err.to_string().contains("spec.peer.index"), "{err}");
    }

    #[test]
    fn without_a_secret_one_is_generated_once_and_decentralized_peers_seed_each_other() {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = "apiVersion: hostrole.dev/v1alpha1\nkind: HostRole\nmetadata: {name: friends}\nspec:\n  peer: {network: friends, port: 7201}\n";
        let mut up = options(dir.path(), text, "friends");
        up.port_offset = 10;
        up.seeds = vec!["192.0.2.1:7201".into()];
        let first = prepare(&up).expect("first").peer.expect("peer");
        let secret = std::fs::read(&first.secret_file).expect("generated");
        assert_eq!(secret.len(), 64);
        let again = prepare(&up).expect("again").peer.expect("peer");
        assert_eq!(std::fs::read(&again.secret_file).expect("kept"), secret);
        assert_eq!(again.seeds, ["127.0.0.1:7201", "192.0.2.1:7201"]);
        assert!(again.index_url.is_none());
    }
}
