//! Signed HTTP requests to the index and to other peers.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::auth::{self, ADDRESS_HEADER};

/// A request to another member of the network failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{url}: {source}")]
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
    #[error("{0} is not a valid URL")]
    Url(String),
    #[error("cannot sign the request: {0}")]
    Sign(#[from] crate::auth::AuthError),
}

/// Signs every request with the network secret and names this peer and its address.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    secret: Arc<Vec<u8>>,
    id: String,
    address: String,
}

impl Client {
    pub fn new(secret: Vec<u8>, id: String, address: String) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(8)
            .build()?;
        Ok(Self {
            http,
            secret: Arc::new(secret),
            id,
            address,
        })
    }

    async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Vec<u8>,
        timeout: Option<Duration>,
    ) -> Result<Bytes, ClientError> {
        let parsed = reqwest::Url::parse(url).map_err(|_| ClientError::Url(url.to_string()))?;
        let path_and_query = match parsed.query() {
            Some(q) => format!("{}?{q}", parsed.path()),
            None => parsed.path().to_string(),
        };
        let header = auth::sign(
            &self.secret,
            &self.id,
            method.as_str(),
            &path_and_query,
            auth::now(),
            &body,
        )?;
        let mut request = self
            .http
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
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(transport)?;
        if !status.is_success() {
            return Err(ClientError::Status {
                url: url.to_string(),
                status: status.as_u16(),
                body: String::from_utf8_lossy(&bytes).chars().take(300).collect(),
            });
        }
        Ok(bytes)
    }

    pub async fn get_json<T: DeserializeOwned>(&self, url: &str) -> Result<T, ClientError> {
        let bytes = self
            .send(
                reqwest::Method::GET,
                url,
                Vec::new(),
                Some(Duration::from_secs(10)),
            )
            .await?;
        serde_json::from_slice(&bytes).map_err(|source| ClientError::Json {
            url: url.to_string(),
            source,
        })
    }

    pub async fn get_bytes(&self, url: &str) -> Result<Bytes, ClientError> {
        self.send(reqwest::Method::GET, url, Vec::new(), None).await
    }

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
        )
        .await
        .map(|_| ())
    }

    pub async fn delete(&self, url: &str) -> Result<(), ClientError> {
        self.send(
            reqwest::Method::DELETE,
            url,
            Vec::new(),
            Some(Duration::from_secs(2)),
        )
        .await
        .map(|_| ())
    }
}

/// `http://host:port` of a peer address.
pub fn peer_url(address: &str, path: &str) -> String {
    format!("http://{address}{path}")
}
