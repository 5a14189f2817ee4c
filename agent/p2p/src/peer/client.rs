//! Signed HTTP requests to the index and to other peers; their answers are checked (signed for
//! this request, by the peer expected) and read only up to a size that depends on what was
//! asked.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::auth::{self, ADDRESS_HEADER, AuthError, Expect, Identity};
use hostrole_agent_core::tls::ClientConfig;
use hostrole_proto::envelope::REPLY_HEADER;

/// A request to another member of the network failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// With the causes reqwest's own message leaves out (a refused certificate, a reset).
    #[error("{url}: {}", causes(.source))]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{url}: HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("{url}: the answer is not the expected JSON: {source}")]
    Json {
        url: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{url}: the answer is larger than the {limit} bytes expected")]
    TooLarge { url: String, limit: usize },
    #[error("{0:?} is not a peer address (host:port)")]
    Address(String),
    #[error("{0} is not a valid URL")]
    Url(String),
    #[error("{url}: {source}")]
    Auth {
        url: String,
        #[source]
        source: AuthError,
    },
}

impl ClientError {
    /// The peer answered "busy" (503: its upload slots are all taken).
    pub fn busy(&self) -> bool {
        matches!(self, ClientError::Status { status: 503, .. })
    }
}

/// An error and its sources, `: `-joined.
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(e) = next {
        text.push_str(": ");
        text.push_str(&e.to_string());
        next = e.source();
    }
    text
}

/// An answer whose signature verified.
#[derive(Debug)]
pub struct Answer {
    pub bytes: Bytes,
    /// BLAKE3 of `bytes`.
    pub digest: [u8; 32],
    /// The digest the signature covers (equal to `digest` unless the sender lied or its file
    /// changed under it).
    pub signed: [u8; 32],
    /// The peer that signed it (`None`: the index).
    pub peer: Option<String>,
    /// The answer was a (signed) `304 Not Modified`.
    pub not_modified: bool,
}

/// How this peer reaches the others and the index.
#[derive(Default)]
pub struct Transport {
    /// HTTPS to other peers, accepting those certified by the network's CA; plain HTTP when
    /// absent.
    pub peers: Option<ClientConfig>,
    /// The index's CA (an `https` index URL); the system's roots when absent.
    pub index: Option<ClientConfig>,
}

/// Signs every request as this peer and names its address.
#[derive(Clone)]
pub struct Client {
    /// For the index.
    http: reqwest::Client,
    /// For other peers.
    peers: reqwest::Client,
    /// `https` when peers speak TLS.
    scheme: &'static str,
    secret: Arc<Vec<u8>>,
    identity: Arc<Identity>,
    address: String,
}

fn http_client(
    tls: Option<ClientConfig>,
    local: Option<std::net::IpAddr>,
) -> Result<reqwest::Client, reqwest::Error> {
    let builder = reqwest::Client::builder()
        .local_address(local)
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(8)
        // A redirect would take a signed request somewhere its signer did not aim it.
        .redirect(reqwest::redirect::Policy::none());
    match tls {
        Some(config) => builder.use_preconfigured_tls(config),
        None => builder,
    }
    .build()
}

impl Client {
    /// `bind`: the address the peer listens on; a specific one (not `0.0.0.0` or `::`) is also
    /// where its requests leave from, so that the index and other peers see the host by the
    /// address it serves on (on a machine with several addresses, or several hosts on one).
    pub fn new(
        secret: Arc<Vec<u8>>,
        identity: Arc<Identity>,
        address: String,
        transport: Transport,
        bind: std::net::IpAddr,
    ) -> Result<Self, reqwest::Error> {
        let local = (!bind.is_unspecified()).then_some(bind);
        let scheme = if transport.peers.is_some() {
            "https"
        } else {
            "http"
        };
        Ok(Self {
            http: http_client(transport.index, local)?,
            peers: http_client(transport.peers, local)?,
            scheme,
            secret,
            identity,
            address,
        })
    }

    /// `http(s)://host:port/path` of a peer address; only for strict `host:port` addresses.
    pub fn peer_url(&self, address: &str, path: &str) -> Result<String, ClientError> {
        if !crate::valid_address(address) {
            return Err(ClientError::Address(address.to_string()));
        }
        Ok(format!("{}://{address}{path}", self.scheme))
    }

    #[allow(clippy::too_many_arguments)]
    async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Vec<u8>,
        timeout: Option<Duration>,
        limit: usize,
        expect: Expect<'_>,
    ) -> Result<Answer, ClientError> {
        let parsed = reqwest::Url::parse(url).map_err(|_| ClientError::Url(url.to_string()))?;
        let path_and_query = match parsed.query() {
            Some(q) => format!("{}?{q}", parsed.path()),
            None => parsed.path().to_string(),
        };
        let auth_err = |source| ClientError::Auth {
            url: url.to_string(),
            source,
        };
        let nonce = auth::nonce().map_err(auth_err)?;
        let header = auth::sign_request_with(
            &self.secret,
            &self.identity,
            method.as_str(),
            &path_and_query,
            auth::now(),
            nonce,
            auth::digest(&body),
        )
        .map_err(auth_err)?;
        let http = match expect {
            Expect::Index => &self.http,
            _ => &self.peers,
        };
        let mut request = http
            .request(method, parsed)
            .header(http::header::AUTHORIZATION, header)
            .header(ADDRESS_HEADER, &self.address);
        if !body.is_empty() {
            request = request
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        if let Some(t) = timeout {
            request = request.timeout(t);
        }
        let transport = |source| ClientError::Transport {
            url: url.to_string(),
            source,
        };
        let mut response = request.send().await.map_err(transport)?;
        let status = response.status();
        let too_large = || ClientError::TooLarge {
            url: url.to_string(),
            limit,
        };
        if response.content_length().is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        let reply_header = response
            .headers()
            .get(REPLY_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut buf = BytesMut::new();
        while let Some(piece) = response.chunk().await.map_err(transport)? {
            if buf.len() + piece.len() > limit {
                return Err(too_large());
            }
            buf.extend_from_slice(&piece);
        }
        let bytes = buf.freeze();
        // 304 is an answer of its own (a catalog the caller holds), signed like a 200.
        if !status.is_success() && status != reqwest::StatusCode::NOT_MODIFIED {
            return Err(ClientError::Status {
                url: url.to_string(),
                status: status.as_u16(),
                body: String::from_utf8_lossy(&bytes).chars().take(300).collect(),
            });
        }
        let reply = auth::verify_reply(
            &self.secret,
            reply_header.as_deref(),
            status.as_u16(),
            &nonce,
            expect,
        )
        .map_err(auth_err)?;
        Ok(Answer {
            digest: auth::digest(&bytes),
            bytes,
            signed: reply.body,
            peer: reply.peer,
            not_modified: status == reqwest::StatusCode::NOT_MODIFIED,
        })
    }

    /// GETs JSON of at most `limit` bytes whose signed digest matches.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        url: &str,
        limit: usize,
        expect: Expect<'_>,
    ) -> Result<(T, Option<String>), ClientError> {
        match self.get_json_unless_unchanged(url, limit, expect).await? {
            (Some(value), peer) => Ok((value, peer)),
            // Nothing asked with a version: a 304 here is a peer answering out of turn.
            (None, _) => Err(ClientError::Status {
                url: url.to_string(),
                status: 304,
                body: String::new(),
            }),
        }
    }

    /// GETs JSON like [`Client::get_json`], with `None` for a signed `304 Not Modified` (the
    /// caller asked with a version it holds and it is still current).
    pub async fn get_json_unless_unchanged<T: DeserializeOwned>(
        &self,
        url: &str,
        limit: usize,
        expect: Expect<'_>,
    ) -> Result<(Option<T>, Option<String>), ClientError> {
        let answer = self
            .send(
                reqwest::Method::GET,
                url,
                Vec::new(),
                Some(Duration::from_secs(10)),
                limit,
                expect,
            )
            .await?;
        if answer.digest != answer.signed {
            return Err(ClientError::Auth {
                url: url.to_string(),
                source: AuthError::BodyMismatch,
            });
        }
        if answer.not_modified {
            return Ok((None, answer.peer));
        }
        let value = serde_json::from_slice(&answer.bytes).map_err(|source| ClientError::Json {
            url: url.to_string(),
            source,
        })?;
        Ok((Some(value), answer.peer))
    }

    /// GETs a chunk of exactly `len` bytes at most from peer `peer`; the caller checks its hash.
    pub async fn get_chunk(&self, url: &str, len: u64, peer: &str) -> Result<Answer, ClientError> {
        let limit = usize::try_from(len).unwrap_or(usize::MAX);
        let answer = self
            .send(
                reqwest::Method::GET,
                url,
                Vec::new(),
                None,
                limit,
                Expect::Peer(peer),
            )
            .await?;
        if answer.not_modified {
            return Err(ClientError::Status {
                url: url.to_string(),
                status: 304,
                body: String::new(),
            });
        }
        Ok(answer)
    }

    /// PUTs JSON to the index.
    pub async fn put_json(&self, url: &str, body: &impl Serialize) -> Result<(), ClientError> {
        let body = serde_json::to_vec(body).map_err(|source| ClientError::Json {
            url: url.to_string(),
            source,
        })?;
        self.send(
            reqwest::Method::PUT,
            url,
            body,
            Some(Duration::from_secs(10)),
            64 << 10,
            Expect::Index,
        )
        .await
        .map(|_| ())
    }

    /// DELETEs at the index.
    pub async fn delete(&self, url: &str) -> Result<(), ClientError> {
        self.send(
            reqwest::Method::DELETE,
            url,
            Vec::new(),
            Some(Duration::from_secs(2)),
            64 << 10,
            Expect::Index,
        )
        .await
        .map(|_| ())
    }
}
