//! The S3 requests the repository needs — put (optionally only if absent), get, exists, delete,
//! list —
//! signed with AWS Signature V4 by `rusty-s3` (presigned URLs, valid for a minute) and sent with
//! `ureq`. Blocking: callers run them on a blocking thread.

use std::time::Duration;

use rusty_s3::actions::ListObjectsV2;
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};

/// How long a signed request stays valid.
pub(super) const SIGNED_FOR: Duration = Duration::from_secs(60);
/// The longest one request may take, connect to last byte. Large objects are sent and read in
/// parts ([`super::parts`]), so this bounds one part, not a whole object.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// S3's smallest part (every part but the last).
pub const MIN_PART_SIZE: u64 = 5 << 20;

/// A bucket and prefix with the credentials to reach them.
#[derive(Clone)]
pub struct Store {
    pub(super) bucket: Bucket,
    pub(super) credentials: Credentials,
    /// Empty, or ending in `/`.
    pub prefix: String,
    pub(super) agent: ureq::Agent,
    /// Objects larger than this go up in parts of this size, and come down in ranges of it:
    /// every request stays small enough for its deadline.
    pub(super) part_size: u64,
    /// `s3://bucket/prefix`, for messages.
    pub url: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("url", &self.url).finish()
    }
}

/// What a conditional put found.
#[derive(Debug, PartialEq, Eq)]
pub enum Put {
    Written,
    /// `If-None-Match: *` and the key existed: nothing written.
    AlreadyThere,
}

/// Where the repository is and who may use it, resolved from configuration and environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// `s3://bucket/prefix`.
    pub url: String,
    /// `https://host[:port]`; path-style addressing is used with an explicit endpoint.
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Whether an `http://` endpoint is accepted.
    pub allow_http: bool,
    /// The size of the parts large objects are sent and read in.
    pub part_size: u64,
}

impl Store {
    pub fn open(settings: &Settings) -> Result<Store, String> {
        let (name, prefix) = super::parse_url(&settings.url)?;
        let (endpoint, style) = match &settings.endpoint {
            Some(endpoint) => (endpoint.clone(), UrlStyle::Path),
            None => (
                format!("https://s3.{}.amazonaws.com", settings.region),
                UrlStyle::VirtualHost,
            ),
        };
        let parsed: url::Url = endpoint
            .parse()
            .map_err(|e| format!("offsite endpoint {endpoint}: {e}"))?;
        if parsed.scheme() == "http" && !settings.allow_http {
            return Err(format!(
                "offsite endpoint {endpoint} is plain http: set allow_http (AWS_ALLOW_HTTP=true) to use it"
            ));
        }
        let bucket = Bucket::new(parsed, style, name, settings.region.clone())
            .map_err(|e| format!("offsite bucket in {}: {e}", settings.url))?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(REQUEST_TIMEOUT))
            .http_status_as_error(false)
            .build()
            .into();
        Ok(Store {
            bucket,
            credentials: Credentials::new(
                settings.access_key_id.clone(),
                settings.secret_access_key.clone(),
            ),
            prefix,
            agent,
            url: settings.url.clone(),
            part_size: settings.part_size.max(MIN_PART_SIZE),
        })
    }

    /// Writes `body` at `key`; with `only_if_absent`, only if nothing is there yet.
    pub fn put(&self, key: &str, body: &[u8], only_if_absent: bool) -> Result<Put, String> {
        let mut action = self.bucket.put_object(Some(&self.credentials), key);
        if only_if_absent {
            action.headers_mut().insert("if-none-match", "*");
        }
        let url = action.sign(SIGNED_FOR);
        let mut request = self.agent.put(url.as_str());
        if only_if_absent {
            request = request.header("If-None-Match", "*");
        }
        let response = request.send(body).map_err(|e| format!("PUT {key}: {e}"))?;
        match response.status().as_u16() {
            200..=299 => Ok(Put::Written),
            412 if only_if_absent => Ok(Put::AlreadyThere),
            status => Err(refused("PUT", key, status, response)),
        }
    }

    /// Writes the contents of `file` (from its start) at `key`, streamed; in parts when it is
    /// larger than a part.
    pub fn put_file(&self, key: &str, file: &std::fs::File) -> Result<(), String> {
        let len = file
            .metadata()
            .map_err(|e| format!("PUT {key}: {e}"))?
            .len();
        let mut reader = file;
        self.put_streamed(key, len, &mut |to| {
            std::io::copy(&mut reader, to)
                .map(|_| ())
                .map_err(|e| format!("PUT {key}: {e}"))
        })
        .map(|_| ())
    }

    /// Streams the object at `key` into `to`; false if there is none.
    pub fn get_into(&self, key: &str, to: &mut dyn std::io::Write) -> Result<bool, String> {
        self.get_with(key, &mut |body| std::io::copy(body, to).map(|_| ()))
    }

    /// Gives `read` the body of the object at `key` as it arrives, read a part at a time (one
    /// request each); false if there is none.
    pub fn get_with(
        &self,
        key: &str,
        read: &mut dyn FnMut(&mut dyn std::io::Read) -> std::io::Result<()>,
    ) -> Result<bool, String> {
        let Some(mut body) = self.open_ranges(key)? else {
            return Ok(false);
        };
        read(&mut body).map_err(|e| format!("GET {key}: {e}"))?;
        Ok(true)
    }

    /// The object at `key`, or `None` if there is none (for small objects: manifests).
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
        let mut bytes = Vec::new();
        Ok(self.get_into(key, &mut bytes)?.then_some(bytes))
    }

    /// Whether an object is at `key`.
    pub fn exists(&self, key: &str) -> Result<bool, String> {
        let url = self.bucket.head_object(Some(&self.credentials), key);
        let sent = self.agent.head(url.sign(SIGNED_FOR).as_str()).call();
        let (status, response) = answered(sent, &format!("HEAD {key}"))?;
        match status {
            200 => Ok(true),
            404 => Ok(false),
            status => Err(refused("HEAD", key, status, response)),
        }
    }

    /// Deletes the object at `key` (nothing there is no error: S3 answers 204 either way).
    pub fn delete(&self, key: &str) -> Result<(), String> {
        let url = self.bucket.delete_object(Some(&self.credentials), key);
        let sent = self.agent.delete(url.sign(SIGNED_FOR).as_str()).call();
        let (status, response) = answered(sent, &format!("DELETE {key}"))?;
        match status {
            200..=299 | 404 => Ok(()),
            status => Err(refused("DELETE", key, status, response)),
        }
    }

    /// Every key under `prefix` (relative to the bucket), in the store's (lexical) order.
    pub fn list(&self, prefix: &str) -> Result<Vec<String>, String> {
        Ok(self
            .list_objects(prefix)?
            .into_iter()
            .map(|o| o.key)
            .collect())
    }

    /// Every object under `prefix`, with the time it was last written.
    pub fn list_objects(&self, prefix: &str) -> Result<Vec<Listing>, String> {
        let mut objects = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut action = self.bucket.list_objects_v2(Some(&self.credentials));
            action.with_prefix(prefix);
            if let Some(token) = &token {
                action.with_continuation_token(token.clone());
            }
            let url = action.sign(SIGNED_FOR);
            let sent = self.agent.get(url.as_str()).call();
            let text = ok_text(sent, "list", prefix, &format!("list {prefix}"))?;
            let page = ListObjectsV2::parse_response(&text)
                .map_err(|e| format!("list {prefix}: unreadable answer: {e}"))?;
            objects.extend(page.contents.into_iter().map(|c| Listing {
                last_modified_unix: c.last_modified.as_deref().and_then(unix_time),
                key: c.key,
            }));
            match page.next_continuation_token {
                Some(next) => token = Some(next),
                None => return Ok(objects),
            }
        }
    }

    /// Deletes `keys`, up to 1,000 a request (S3's `DeleteObjects`).
    pub fn delete_many(&self, keys: &[String]) -> Result<(), String> {
        use rusty_s3::actions::{DeleteObjectsResponse, ObjectIdentifier};
        for chunk in keys.chunks(1000) {
            let objects: Vec<ObjectIdentifier> = chunk
                .iter()
                .map(|k| ObjectIdentifier::new(k.clone()))
                .collect();
            let mut action = self
                .bucket
                .delete_objects(Some(&self.credentials), objects.iter());
            action.set_quiet(true);
            let url = action.sign(SIGNED_FOR);
            let (body, md5) = action.body_with_md5();
            let what = format!("delete {} objects from {}", chunk.len(), self.url);
            let request = self.agent.post(url.as_str()).header("Content-MD5", &md5);
            let text = ok_text(
                request.send(body.as_bytes()),
                "DeleteObjects",
                &chunk[0],
                &what,
            )?;
            let answer = DeleteObjectsResponse::parse(&text)
                .map_err(|e| format!("{what}: unreadable answer: {e}"))?;
            if let Some(error) = answer.errors.first() {
                return Err(format!(
                    "{what}: {} refused: {} {}",
                    error.key, error.code, error.message
                ));
            }
        }
        Ok(())
    }
}

/// An object as a listing shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Listing {
    pub key: String,
    /// When it was last written (seconds since the Unix epoch), if the store said.
    pub last_modified_unix: Option<f64>,
}

/// `2026-12-06T09:22:54.000Z` as seconds since the Unix epoch.
fn unix_time(text: &str) -> Option<f64> {
    humantime::parse_rfc3339_weak(text)
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs_f64())
}

type Answer = ureq::http::Response<ureq::Body>;

/// The status of an answer to `what` (`HEAD key`, say), and the answer; an error if none came.
fn answered(sent: Result<Answer, ureq::Error>, what: &str) -> Result<(u16, Answer), String> {
    let response = sent.map_err(|e| format!("{what}: {e}"))?;
    Ok((response.status().as_u16(), response))
}

/// The body of a `200` answer to `method` on `key`, as text; any other status is refused (see
/// [`refused`]). `what` names the request in errors.
pub(super) fn ok_text(
    sent: Result<Answer, ureq::Error>,
    method: &str,
    key: &str,
    what: &str,
) -> Result<String, String> {
    let (status, mut response) = answered(sent, what)?;
    if status != 200 {
        return Err(refused(method, key, status, response));
    }
    response
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("{what}: {e}"))
}

/// An error answer as one line: the method, the key, the status and S3's `<Code>`.
pub(super) fn refused(
    method: &str,
    key: &str,
    status: u16,
    mut response: ureq::http::Response<ureq::Body>,
) -> String {
    let body = response.body_mut().read_to_string().unwrap_or_default();
    let code = body
        .split_once("<Code>")
        .and_then(|(_, rest)| rest.split_once("</Code>"))
        .map(|(code, _)| format!(" {code}"))
        .unwrap_or_default();
    format!("{method} {key}: HTTP {status}{code}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn listing_times_read_as_unix_seconds() {
        assert_eq!(super::unix_time("1970-01-01T00:01:00.000Z"), Some(60.0));
        assert_eq!(
            super::unix_time("2026-12-06T09:22:54Z"),
            Some(1_796_548_974.0)
        );
        assert_eq!(super::unix_time("yesterday"), None);
    }
}
