//! One request against a target: dynamo's `/kv/{key}` API or etcd's v3
//! HTTP/JSON gateway. A request either succeeds or fails with a short error
//! kind (`timeout`, `connect`, `http_503`, ...) that the report counts.

use std::collections::HashMap;
use std::time::Duration;

use awc::error::SendRequestError;
use awc::http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use awc::http::StatusCode;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use crate::{Op, Target};

/// Every request (sending, the response head and its body) is abandoned after this.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Response bodies are read (so the connection can be reused) up to this size.
const MAX_BODY: usize = 16 << 20;

const X_CONTEXT: HeaderName = HeaderName::from_static("x-context");

/// What every client of every thread shares (read-only).
#[derive(Debug)]
pub struct Workload {
    pub target: Target,
    pub op: Op,
    pub clients: usize,
    pub keys: u64,
    pub endpoints: Vec<String>,
    /// The value written by every PUT (dynamo: raw body).
    pub value: &'static [u8],
    /// The same value, base64 (etcd's JSON gateway).
    pub value_b64: String,
    /// `/v3` (etcd >= 3.4) or `/v3beta` (3.3).
    pub etcd_prefix: String,
    /// `?w=..` for dynamo PUTs, or empty.
    pub put_query: String,
    /// `?r=..` for dynamo GETs, or empty.
    pub get_query: String,
    /// Added to every key index (so two runs can use disjoint key sets).
    pub key_offset: u64,
}

/// Why a request failed, as counted in the report.
pub type ErrorKind = String;

/// One logical client: it keeps the `X-Context` of its last write of each key
/// (dynamo), so that its next write of that key supersedes it instead of
/// creating a sibling.
pub struct Client {
    pub http: awc::Client,
    pub endpoint: String,
    pub contexts: HashMap<u64, HeaderValue>,
}

impl Client {
    pub async fn put(&mut self, w: &Workload, key: u64) -> Result<(), ErrorKind> {
        match w.target {
            Target::Dynamo => self.dynamo_put(w, key).await,
            Target::Etcd => {
                let body = format!(
                    r#"{{"key":"{}","value":"{}"}}"#,
                    B64.encode(key_name(key + w.key_offset)),
                    w.value_b64
                );
                self.etcd_post(w, "put", body).await
            }
        }
    }

    pub async fn get(&mut self, w: &Workload, key: u64) -> Result<(), ErrorKind> {
        match w.target {
            Target::Dynamo => self.dynamo_get(w, key).await,
            Target::Etcd => {
                let body = format!(r#"{{"key":"{}"}}"#, B64.encode(key_name(key + w.key_offset)));
                self.etcd_post(w, "range", body).await
            }
        }
    }

    /// Preload: learns the key's current context (dynamo; a no-op for etcd),
    /// so that writing a key that already exists supersedes it instead of
    /// adding a sibling.
    pub async fn learn_context(&mut self, w: &Workload, key: u64) -> Result<(), ErrorKind> {
        if w.target != Target::Dynamo {
            return Ok(());
        }
        let url = format!("{}/kv/{}{}", self.endpoint, key_name(key + w.key_offset), w.get_query);
        let mut resp = self.http.get(url).send().await.map_err(send_error)?;
        let status = resp.status();
        let context = resp.headers().get(&X_CONTEXT).cloned();
        resp.body().limit(MAX_BODY).await.map_err(|_| "body".to_string())?;
        if !matches!(status.as_u16(), 200 | 300 | 404) {
            return Err(http_error(status));
        }
        match context {
            Some(ctx) if !ctx.is_empty() => {
                self.contexts.insert(key, ctx);
            }
            _ => {
                self.contexts.remove(&key);
            }
        }
        Ok(())
    }

    async fn dynamo_put(&mut self, w: &Workload, key: u64) -> Result<(), ErrorKind> {
        let url = format!("{}/kv/{}{}", self.endpoint, key_name(key + w.key_offset), w.put_query);
        let mut req = self
            .http
            .put(url)
            .insert_header((CONTENT_TYPE, "application/octet-stream"));
        if let Some(ctx) = self.contexts.get(&key) {
            req = req.insert_header((X_CONTEXT, ctx.clone()));
        }
        let mut resp = req.send_body(w.value).await.map_err(send_error)?;
        let status = resp.status();
        let context = resp.headers().get(&X_CONTEXT).cloned();
        resp.body().limit(MAX_BODY).await.map_err(|_| "body".to_string())?;
        if status != StatusCode::NO_CONTENT {
            return Err(http_error(status));
        }
        match context {
            Some(ctx) if !ctx.is_empty() => {
                self.contexts.insert(key, ctx);
            }
            _ => {
                self.contexts.remove(&key);
            }
        }
        Ok(())
    }

    async fn dynamo_get(&mut self, w: &Workload, key: u64) -> Result<(), ErrorKind> {
        let url = format!("{}/kv/{}{}", self.endpoint, key_name(key + w.key_offset), w.get_query);
        let mut resp = self.http.get(url).send().await.map_err(send_error)?;
        let status = resp.status();
        resp.body().limit(MAX_BODY).await.map_err(|_| "body".to_string())?;
        if status == StatusCode::OK || status == StatusCode::MULTIPLE_CHOICES {
            Ok(())
        } else {
            Err(http_error(status))
        }
    }

    async fn etcd_post(&mut self, w: &Workload, what: &str, body: String) -> Result<(), ErrorKind> {
        let url = format!("{}{}/kv/{}", self.endpoint, w.etcd_prefix, what);
        let mut resp = self
            .http
            .post(url)
            .insert_header((CONTENT_TYPE, "application/json"))
            .send_body(body)
            .await
            .map_err(send_error)?;
        let status = resp.status();
        resp.body().limit(MAX_BODY).await.map_err(|_| "body".to_string())?;
        if status == StatusCode::OK {
            Ok(())
        } else {
            Err(http_error(status))
        }
    }
}

/// The key's name on the wire: `bench-{i}`.
pub fn key_name(i: u64) -> String {
    format!("bench-{i}")
}

fn http_error(status: StatusCode) -> ErrorKind {
    format!("http_{}", status.as_u16())
}

fn send_error(e: SendRequestError) -> ErrorKind {
    match e {
        SendRequestError::Timeout => "timeout",
        SendRequestError::Connect(_) => "connect",
        SendRequestError::Send(_) => "send_io",
        SendRequestError::Response(_) => "response_parse",
        SendRequestError::Url(_) => "url",
        _ => "send_other",
    }
    .to_string()
}
