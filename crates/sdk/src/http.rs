//! The three server calls the SDK makes, over one HTTP client.

use std::time::Duration;

use reqwest::{StatusCode, Url, header};

/// What went wrong talking to the server.
#[derive(Debug)]
pub(crate) enum CallError {
    /// 401 or 403: the key is not (or no longer) accepted. Permanent.
    Unauthorized(String),
    /// 429 or 5xx: try again, after `retry_after` when the server said.
    Retry {
        message: String,
        retry_after: Option<Duration>,
    },
    /// Another 4xx: the request itself is wrong; sending it again won't help.
    Refused(String),
    /// The connection failed or timed out.
    Network(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Unauthorized(m)
            | CallError::Retry { message: m, .. }
            | CallError::Refused(m)
            | CallError::Network(m) => f.write_str(m),
        }
    }
}

/// A config download: a new document, or `304 Not Modified`.
#[derive(Debug)]
pub(crate) enum Download {
    Changed {
        document: String,
        etag: Option<String>,
    },
    NotModified,
}

/// `Debug` leaves the key out.
#[derive(Clone)]
pub(crate) struct Http {
    client: reqwest::Client,
    base: Url,
    authorization: header::HeaderValue,
    request_timeout: Duration,
    document_limit: usize,
}

impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

/// The most of an events answer or an error answer the SDK reads.
const ANSWER_LIMIT: usize = 1 << 20;

impl Http {
    pub fn new(
        base: Url,
        key: &str,
        connect_timeout: Duration,
        request_timeout: Duration,
        document_limit: usize,
    ) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .user_agent(concat!("switchyard-rust-sdk/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Http {
            client,
            base,
            authorization: {
                let mut value = header::HeaderValue::from_str(&format!("Bearer {key}"))
                    .map_err(|_| "the SDK key holds characters a header cannot".to_string())?;
                // Left out of any `Debug` of the request (middleware, traces).
                value.set_sensitive(true);
                value
            },
            request_timeout,
            document_limit,
        })
    }

    fn url(&self, path: &str) -> Url {
        // `base` was checked to be a base URL; a path with a prefix
        // (`https://host/switchyard/`) keeps its prefix.
        let mut url = self.base.clone();
        let joined = format!("{}{}", url.path().trim_end_matches('/'), path);
        url.set_path(&joined);
        url
    }

    /// `GET /sdk/v1/config`, conditional on `etag`.
    pub async fn config(&self, etag: Option<&str>) -> Result<Download, CallError> {
        let mut request = self
            .client
            .get(self.url("/sdk/v1/config"))
            .timeout(self.request_timeout)
            .header(header::AUTHORIZATION, self.authorization.clone());
        if let Some(etag) = etag {
            request = request.header(header::IF_NONE_MATCH, etag);
        }
        let response = request.send().await.map_err(network)?;
        if response.status() == StatusCode::NOT_MODIFIED {
            return Ok(Download::NotModified);
        }
        let response = check(response).await?;
        let etag = response
            .headers()
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let document = read_text(response, self.document_limit).await?;
        Ok(Download::Changed { document, etag })
    }

    /// `GET /sdk/v1/stream`: the open response, to read as it arrives.
    pub async fn stream(&self) -> Result<reqwest::Response, CallError> {
        let response = self
            .client
            .get(self.url("/sdk/v1/stream"))
            .header(header::AUTHORIZATION, self.authorization.clone())
            .header(header::ACCEPT, "text/event-stream")
            .send()
            .await
            .map_err(network)?;
        check(response).await
    }

    /// `POST /api/v1/events` with a ready JSON body; the answer's body.
    pub async fn events(&self, body: String) -> Result<String, CallError> {
        let response = self
            .client
            .post(self.url("/api/v1/events"))
            .timeout(self.request_timeout)
            .header(header::AUTHORIZATION, self.authorization.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(network)?;
        let response = check(response).await?;
        read_text(response, ANSWER_LIMIT).await
    }
}

fn network(e: reqwest::Error) -> CallError {
    // reqwest's message names the URL but never the headers, so the key
    // stays out of logs.
    CallError::Network(format!("cannot reach the server: {e}"))
}

/// Turns an error status into a [`CallError`], with the server's message.
async fn check(response: reqwest::Response) -> Result<reqwest::Response, CallError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let retry_after = response
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    // The server's errors are small JSON objects with a `message`; read at
    // most a little of whatever came.
    let body = read_text(response, ANSWER_LIMIT).await.unwrap_or_default();
    let detail = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| {
            v.get("message")
                .and_then(|m| m.as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| body.chars().take(200).collect());
    let message = if detail.is_empty() {
        format!("the server answered {status}")
    } else {
        format!("the server answered {status}: {detail}")
    };
    Err(match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => CallError::Unauthorized(message),
        StatusCode::TOO_MANY_REQUESTS | StatusCode::REQUEST_TIMEOUT => CallError::Retry {
            message,
            retry_after,
        },
        s if s.is_server_error() => CallError::Retry {
            message,
            retry_after,
        },
        _ => CallError::Refused(message),
    })
}

/// Reads a body as text, refusing one over `limit` bytes (a server, or
/// something posing as one, cannot make the SDK buffer without bound).
async fn read_text(mut response: reqwest::Response, limit: usize) -> Result<String, CallError> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(CallError::Refused(format!(
            "the server's answer exceeds {limit} bytes"
        )));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(network)? {
        if body.len() + chunk.len() > limit {
            return Err(CallError::Refused(format!(
                "the server's answer exceeds {limit} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body)
        .map_err(|_| CallError::Refused("the server's answer is not UTF-8".into()))
}
