//! The S3 client: deletes objects with DeleteObjects (`POST /{bucket}?delete`, up to 1,000 keys a
//! request, every key's result read), and on a bucket that keeps versions lists each key's
//! versions and delete markers first (ListObjectVersions) so that every one of them goes.
//! Signed with AWS Signature Version 4 by AWS's own `aws-sigv4`. No pgrx: this runs on helper
//! threads that must never touch Postgres.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::Engine as _;

pub use credentials::Credentials;
use xml::ObjectId;

use crate::twilio::RetryPolicy;

/// Keys a DeleteObjects request names at most (S3's limit).
pub const KEYS_PER_REQUEST: usize = 1000;

/// How the bucket is addressed: `https://host/bucket/...` or `https://bucket.host/...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addressing {
    Path,
    Virtual,
}

impl std::str::FromStr for Addressing {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "path" => Ok(Addressing::Path),
            "virtual" => Ok(Addressing::Virtual),
            other => Err(format!("addressing must be 'path' or 'virtual', not '{other}'")),
        }
    }
}

/// On a bucket that keeps versions: delete every version of a key, or only add a delete marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Versions {
    All,
    Markers,
}

impl std::str::FromStr for Versions {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "all" => Ok(Versions::All),
            "markers" => Ok(Versions::Markers),
            other => Err(format!("s3_versions must be 'all' or 'markers', not '{other}'")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// `https://s3.{region}.amazonaws.com`, or a loopback server's `http://127.0.0.1:port`.
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub addressing: Addressing,
    pub credentials: Credentials,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub concurrency: usize,
    /// 503 SlowDown (and 429) are waited out and asked again, as Twilio's 429.
    pub retry: RetryPolicy,
    pub versions: Versions,
}

/// What became of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyAnswer {
    /// S3 deleted it (on a bucket without versions S3 says so of a key that was not there
    /// too): the versions deleted, none on such a bucket or with `Versions::Markers`.
    Deleted(Vec<String>),
    /// A bucket that keeps versions holds no version of it: nothing was there to delete.
    Absent,
    /// S3's own error for this key (`AccessDenied` under an object lock, ...), or a version of
    /// it that was not deleted.
    KeyError { code: String, message: String },
    /// The request failed as a whole: its status if it had one, and why.
    Failed(Option<u16>, String),
    /// 401/403 to the request: the run stops.
    Refused(u16, String),
}

impl KeyAnswer {
    pub fn confirms_deletion(&self) -> bool {
        matches!(self, KeyAnswer::Deleted(_) | KeyAnswer::Absent)
    }
}

/// One key's answer, with S3's id of the request that decided it (`x-amz-request-id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyReply {
    pub key: String,
    pub answer: KeyAnswer,
    pub status: Option<u16>,
    pub request_id: Option<String>,
}

pub struct Client {
    agent: ureq::Agent,
    config: Config,
    /// Whether the bucket keeps versions: asked once, at the first need.
    keeps_versions: OnceLock<Result<bool, (Option<u16>, String)>>,
}

/// An HTTP answer read whole.
struct Http {
    status: u16,
    body: String,
    request_id: Option<String>,
}

impl Client {
    pub fn new(config: Config) -> Client {
        let agent = crate::twilio::agent(config.connect_timeout, config.timeout);
        Client { agent, config, keeps_versions: OnceLock::new() }
    }

    /// The URL of a bucket-level request with this query (already encoded).
    fn url(&self, query: &str) -> String {
        let endpoint = self.config.endpoint.trim_end_matches('/');
        match self.config.addressing {
            Addressing::Path => format!("{endpoint}/{}?{query}", self.config.bucket),
            Addressing::Virtual => {
                let (scheme, host) = endpoint.split_once("://").unwrap_or(("https", endpoint));
                format!("{scheme}://{}.{host}/?{query}", self.config.bucket)
            }
        }
    }

    /// One signed request, 503 SlowDown and 429 waited out and retried as the retry policy
    /// allows. Err: no HTTP answer (a timeout, a broken connection), or still throttled.
    fn exchange(&self, method: &str, query: &str, body: &[u8]) -> Result<Http, (Option<u16>, String)> {
        let url = self.url(query);
        let mut attempt = 1;
        loop {
            let headers = sign::headers(&self.config, method, &url, body).map_err(|e| (None, e))?;
            let mut request = ureq::http::Request::builder().method(method).uri(&url);
            for (name, value) in &headers {
                request = request.header(name.as_str(), value.as_str());
            }
            let request = request.body(body.to_vec()).map_err(|e| (None, format!("the request could not be made: {e}")))?;
            let mut response = match self.agent.run(request) {
                Ok(response) => response,
                Err(ureq::Error::Timeout(_)) => return Err((None, "timeout".into())),
                Err(e) => return Err((None, format!("connection_error: {e}"))),
            };
            let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
            // S3's own header; some S3 servers send AWS's other spelling.
            let request_id = header("x-amz-request-id").or_else(|| header("x-amzn-requestid")).map(|v| v.chars().take(64).collect::<String>());
            let retry_after = header("Retry-After");
            let status = response.status().as_u16();
            let body = response.body_mut().read_to_string().unwrap_or_default();
            if status == 503 || status == 429 {
                if attempt >= self.config.retry.attempts {
                    return Err((Some(status), format!("slow_down: still HTTP {status} after {attempt} attempts")));
                }
                let backoff = self.config.retry.default_backoff.saturating_mul(1 << attempt.min(16));
                std::thread::sleep(self.config.retry.wait(retry_after.as_deref(), backoff));
                attempt += 1;
                continue;
            }
            return Ok(Http { status, body, request_id });
        }
    }

    /// Whether the bucket keeps versions (GetBucketVersioning), asked once.
    fn keeps_versions(&self) -> Result<bool, (Option<u16>, String)> {
        self.keeps_versions
            .get_or_init(|| {
                let http = self.exchange("GET", "versioning", &[])?;
                match http.status {
                    200 => xml::keeps_versions(&http.body).map_err(|e| (Some(200), e)),
                    // A server without versioning at all (s3s-fs): nothing but the current object.
                    501 => Ok(false),
                    status => Err((Some(status), format!("GetBucketVersioning answered HTTP {status} {}", xml::error_code(&http.body).unwrap_or_default()))),
                }
            })
            .clone()
    }

    /// Every version and delete marker of exactly `key`.
    fn versions_of(&self, key: &str) -> Result<Vec<String>, (Option<u16>, String)> {
        let mut versions = Vec::new();
        let mut marker: Option<(String, String)> = None;
        for _ in 0..MAX_VERSION_PAGES {
            let mut query = format!("prefix={}&versions=", encode(key));
            if let Some((next_key, next_version)) = &marker {
                query = format!("key-marker={}&{query}&version-id-marker={}", encode(next_key), encode(next_version));
            }
            let http = self.exchange("GET", &query, &[])?;
            if http.status != 200 {
                return Err((Some(http.status), format!("ListObjectVersions answered HTTP {} {}", http.status, xml::error_code(&http.body).unwrap_or_default())));
            }
            let (page, next) = xml::versions_page(&http.body, key).map_err(|e| (Some(200), e))?;
            versions.extend(page);
            // Past this key's versions, the listing goes on with longer keys that share its prefix.
            match next {
                Some((next_key, next_version)) if next_key == key => marker = Some((next_key, next_version)),
                _ => return Ok(versions),
            }
        }
        Err((None, format!("the versions of a key did not end within {MAX_VERSION_PAGES} pages")))
    }

    /// Deletes these keys (a few thousand at most, one batch of a run) on at most `concurrency`
    /// threads; answers come back in input order. Stops starting requests once S3 refuses the
    /// credentials, or when `should_stop` says so (then `Err(Stopped)` at once).
    pub fn delete_keys(self: &Arc<Self>, keys: Vec<String>, should_stop: &dyn Fn() -> bool) -> Result<Vec<KeyReply>, crate::helper_threads::Stopped> {
        // A key two rows (or two columns) name is sent once; each gets its answer.
        let mut unique: Vec<String> = Vec::with_capacity(keys.len());
        let mut seen = std::collections::HashMap::with_capacity(keys.len());
        let positions: Vec<usize> = keys.into_iter().map(|key| *seen.entry(key.clone()).or_insert_with(|| { unique.push(key); unique.len() - 1 })).collect();
        let replies = self.delete_unique(unique, should_stop)?;
        Ok(positions.into_iter().map(|i| replies[i].clone()).collect())
    }

    fn delete_unique(self: &Arc<Self>, keys: Vec<String>, should_stop: &dyn Fn() -> bool) -> Result<Vec<KeyReply>, crate::helper_threads::Stopped> {
        let versioned = match self.config.versions {
            Versions::Markers => Ok(false),
            Versions::All if keys.is_empty() => Ok(false),
            Versions::All => self.keeps_versions(),
        };
        let replies: Vec<Mutex<Option<KeyReply>>> = keys.iter().map(|_| Mutex::new(None)).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let work = Arc::new(Work { keys, replies, versioned, next: AtomicUsize::new(0), stop: stop.clone() });
        let threads = self.config.concurrency.clamp(1, work.keys.len().div_ceil(KEYS_PER_REQUEST).max(1));
        let (client, shared) = (self.clone(), work.clone());
        crate::helper_threads::run(threads, move || client.delete_some(&shared), stop, should_stop)?;
        let not_sent = |key: &String| KeyReply { key: key.clone(), answer: KeyAnswer::Failed(None, "not sent".into()), status: None, request_id: None };
        Ok(work.keys.iter().zip(&work.replies).map(|(key, reply)| reply.lock().unwrap_or_else(|p| p.into_inner()).take().unwrap_or_else(|| not_sent(key))).collect())
    }

    /// One helper thread's share of `delete_unique`: the next 1,000 keys not taken, until none
    /// is left or a stop (S3 refusing the credentials stops every thread).
    fn delete_some(&self, work: &Work) {
        while !work.stop.load(Ordering::Relaxed) {
            let start = work.next.fetch_add(KEYS_PER_REQUEST, Ordering::Relaxed);
            if start >= work.keys.len() {
                break;
            }
            let end = (start + KEYS_PER_REQUEST).min(work.keys.len());
            for (offset, reply) in self.delete_chunk(&work.keys[start..end], &work.versioned).into_iter().enumerate() {
                if matches!(reply.answer, KeyAnswer::Refused(..)) {
                    work.stop.store(true, Ordering::Relaxed);
                }
                *work.replies[start + offset].lock().unwrap_or_else(|p| p.into_inner()) = Some(reply);
            }
        }
    }

    /// Up to 1,000 keys: their versions listed first on a bucket that keeps them, then one
    /// DeleteObjects per 1,000 objects.
    fn delete_chunk(&self, keys: &[String], versioned: &Result<bool, (Option<u16>, String)>) -> Vec<KeyReply> {
        let reply = |key: &String, answer: KeyAnswer, status: Option<u16>, request_id: Option<String>| KeyReply { key: key.clone(), answer, status, request_id };
        let versioned = match versioned {
            Ok(versioned) => *versioned,
            Err((status, why)) => return keys.iter().map(|key| reply(key, failure(*status, why.clone()), *status, None)).collect(),
        };
        let mut answers: Vec<Option<KeyReply>> = vec![None; keys.len()];
        let mut objects: Vec<(usize, ObjectId)> = Vec::new();
        for (i, key) in keys.iter().enumerate() {
            if !xml::xml_can_carry(key) {
                answers[i] = Some(reply(key, KeyAnswer::Failed(None, "the key has a character XML cannot carry, so DeleteObjects cannot name it".into()), None, None));
            } else if !versioned {
                objects.push((i, ObjectId { key: key.clone(), version: None }));
            } else {
                match self.versions_of(key) {
                    Ok(versions) if versions.is_empty() => answers[i] = Some(reply(key, KeyAnswer::Absent, Some(200), None)),
                    Ok(versions) => objects.extend(versions.into_iter().map(|v| (i, ObjectId { key: key.clone(), version: Some(v) }))),
                    Err((status, why)) => answers[i] = Some(reply(key, failure(status, why), status, None)),
                }
            }
        }
        let mut deleted: Vec<Vec<String>> = vec![Vec::new(); keys.len()];
        let mut wanted = vec![0usize; keys.len()];
        objects.iter().for_each(|(i, _)| wanted[*i] += 1);
        for request in objects.chunks(KEYS_PER_REQUEST) {
            let ids: Vec<ObjectId> = request.iter().map(|(_, id)| id.clone()).collect();
            let body = xml::delete_body(&ids);
            let http = match self.exchange("POST", "delete=", body.as_bytes()) {
                Ok(http) if http.status == 200 => http,
                Ok(http) => {
                    let why = format!("DeleteObjects answered HTTP {} {}", http.status, xml::error_code(&http.body).unwrap_or_default());
                    let answer = failure(Some(http.status), why);
                    request.iter().for_each(|(i, _)| answers[*i] = Some(reply(&keys[*i], answer.clone(), Some(http.status), http.request_id.clone())));
                    continue;
                }
                Err((status, why)) => {
                    request.iter().for_each(|(i, _)| answers[*i] = Some(reply(&keys[*i], failure(status, why.clone()), status, None)));
                    continue;
                }
            };
            let results = match xml::delete_result(&http.body) {
                Ok(results) => results,
                Err(why) => {
                    request.iter().for_each(|(i, _)| answers[*i] = Some(reply(&keys[*i], KeyAnswer::Failed(Some(200), why.clone()), Some(200), http.request_id.clone())));
                    continue;
                }
            };
            for result in results {
                let (key, version, error) = match result {
                    xml::KeyResult::Deleted { key, version } => (key, version, None),
                    xml::KeyResult::Error { key, version, code, message } => (key, version, Some((code, message))),
                };
                // Matched to what this request named: a deletion proves only the exact version it
                // names; an error without a version (some servers omit it) fails the whole key.
                let matches = |id: &ObjectId| id.key == key && (!versioned || id.version == version || (error.is_some() && version.is_none()));
                let Some((i, _)) = request.iter().find(|(_, id)| matches(id)) else { continue };
                match error {
                    None => deleted[*i].extend(version.filter(|_| versioned)),
                    Some((code, message)) => answers[*i] = Some(reply(&key, KeyAnswer::KeyError { code, message }, Some(200), http.request_id.clone())),
                }
                if answers[*i].is_none() && (deleted[*i].len() == wanted[*i] || !versioned) {
                    answers[*i] = Some(reply(&key, KeyAnswer::Deleted(std::mem::take(&mut deleted[*i])), Some(200), http.request_id.clone()));
                }
            }
        }
        keys.iter()
            .zip(answers)
            .map(|(key, answer)| answer.unwrap_or_else(|| reply(key, KeyAnswer::KeyError { code: "NotInAnswer".into(), message: "S3's answer did not name every version of the key".into() }, Some(200), None)))
            .collect()
    }
}

fn failure(status: Option<u16>, why: String) -> KeyAnswer {
    match status {
        Some(status @ (401 | 403)) => KeyAnswer::Refused(status, why),
        _ => KeyAnswer::Failed(status, why),
    }
}

/// Pages of one key's versions followed at most.
const MAX_VERSION_PAGES: usize = 100;

/// A query parameter's value as SigV4 wants it: every byte but `A-Z a-z 0-9 - _ . ~` percent-encoded.
pub fn encode(value: &str) -> String {
    const UNRESERVED: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
    percent_encoding::utf8_percent_encode(value, UNRESERVED).to_string()
}

/// `Content-MD5` of a body: DeleteObjects requires it.
fn content_md5(body: &[u8]) -> String {
    use md5::Digest as _;
    base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(body))
}

/// The keys of one `delete_keys`, shared with its threads.
struct Work {
    keys: Vec<String>,
    replies: Vec<Mutex<Option<KeyReply>>>,
    versioned: Result<bool, (Option<u16>, String)>,
    next: AtomicUsize,
    stop: Arc<AtomicBool>,
}

mod sign {
    //! The SigV4 headers of one request, by `aws-sigv4`.
    use aws_sigv4::http_request::{sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings, UriPathNormalizationMode};

    pub(super) fn headers(config: &super::Config, method: &str, url: &str, body: &[u8]) -> Result<Vec<(String, String)>, String> {
        let host = url.split_once("://").map(|(_, rest)| rest.split(['/', '?']).next().unwrap_or("")).unwrap_or("").to_string();
        let mut headers = vec![("host".to_string(), host)];
        if method == "POST" {
            headers.push(("content-md5".into(), super::content_md5(body)));
            headers.push(("content-type".into(), "application/xml".into()));
        }
        let mut settings = SigningSettings::default();
        // S3 takes the path as sent: encoded once, never normalised.
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        let credentials = &config.credentials;
        let identity = aws_credential_types::Credentials::new(
            &credentials.access_key_id,
            &credentials.secret_access_key,
            credentials.session_token.clone(),
            None,
            "pg_retention store",
        )
        .into();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(&config.region)
            .name("s3")
            .time(std::time::SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| format!("signing: {e}"))?
            .into();
        let request = SignableRequest::new(method, url, headers.iter().map(|(n, v)| (n.as_str(), v.as_str())), SignableBody::Bytes(body))
            .map_err(|e| format!("signing: {e}"))?;
        let (instructions, _) = sign(request, &params).map_err(|e| format!("signing: {e}"))?.into_parts();
        headers.retain(|(name, _)| name != "host"); // ureq sends its own, the same
        headers.extend(instructions.headers().map(|(n, v)| (n.to_string(), v.to_string())));
        Ok(headers)
    }
}

pub mod credentials;
pub mod xml;

#[cfg(test)]
mod tests;
