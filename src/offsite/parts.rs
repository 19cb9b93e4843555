//! Large objects a part at a time, so that every request stays within its deadline whatever the
//! object's size: uploads over `part_size` use S3's multipart upload (a single PUT is also
//! limited to 5 GiB), and reads ask for one range of `part_size` bytes per request. Blocking.

use std::io::Read;

use rusty_s3::S3Action;
use rusty_s3::actions::CreateMultipartUpload;

use super::store::{SIGNED_FOR, Store, refused};

/// S3's smallest part (every part but the last).
pub const MIN_PART_SIZE: u64 = 5 << 20;
/// S3's most parts in one upload.
const MAX_PARTS: u64 = 10_000;

impl Store {
    /// Sends `file` (`len` bytes, from its start) to `key` in parts. An upload that fails is
    /// aborted, so its parts do not linger in the bucket.
    pub(super) fn put_parts(
        &self,
        key: &str,
        file: &std::fs::File,
        len: u64,
    ) -> Result<(), String> {
        let part_size = self.part_size.max(len.div_ceil(MAX_PARTS));
        let url = self
            .bucket
            .create_multipart_upload(Some(&self.credentials), key)
            .sign(SIGNED_FOR);
        let mut response = self
            .agent
            .post(url.as_str())
            .send_empty()
            .map_err(|e| format!("multipart upload of {key}: {e}"))?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(refused("CreateMultipartUpload", key, status, response));
        }
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| format!("multipart upload of {key}: {e}"))?;
        let created = CreateMultipartUpload::parse_response(&text)
            .map_err(|e| format!("multipart upload of {key}: unreadable answer: {e}"))?;
        let upload_id = created.upload_id().to_string();
        let result = self.send_parts(key, &upload_id, file, part_size);
        if result.is_err() {
            let url = self
                .bucket
                .abort_multipart_upload(Some(&self.credentials), key, &upload_id)
                .sign(SIGNED_FOR);
            let _ = self.agent.delete(url.as_str()).call();
        }
        result
    }

    fn send_parts(
        &self,
        key: &str,
        upload_id: &str,
        file: &std::fs::File,
        part_size: u64,
    ) -> Result<(), String> {
        let mut etags = Vec::new();
        let mut buffer = Vec::with_capacity(part_size as usize);
        let mut reader = file;
        for number in 1u16.. {
            buffer.clear();
            (&mut reader)
                .take(part_size)
                .read_to_end(&mut buffer)
                .map_err(|e| format!("part {number} of {key}: {e}"))?;
            if buffer.is_empty() && number > 1 {
                break;
            }
            let url = self
                .bucket
                .upload_part(Some(&self.credentials), key, number, upload_id)
                .sign(SIGNED_FOR);
            let response = self
                .agent
                .put(url.as_str())
                .send(&buffer[..])
                .map_err(|e| format!("part {number} of {key}: {e}"))?;
            let status = response.status().as_u16();
            if status != 200 {
                return Err(refused("UploadPart", key, status, response));
            }
            let etag = response
                .headers()
                .get("etag")
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| format!("part {number} of {key}: no ETag in the answer"))?;
            etags.push(etag.to_string());
            if (buffer.len() as u64) < part_size {
                break;
            }
        }
        let action = self.bucket.complete_multipart_upload(
            Some(&self.credentials),
            key,
            upload_id,
            etags.iter().map(String::as_str),
        );
        let url = action.sign(SIGNED_FOR);
        let mut response = self
            .agent
            .post(url.as_str())
            .send(action.body())
            .map_err(|e| format!("completing {key}: {e}"))?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(refused("CompleteMultipartUpload", key, status, response));
        }
        // S3 may answer 200 and still fail: the body says.
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| format!("completing {key}: {e}"))?;
        rusty_s3::actions::CompleteMultipartUploadResponse::parse(&text)
            .map_err(|_| format!("completing {key}: the store refused: {text}"))?;
        Ok(())
    }

    /// A reader of the object at `key`, fetching one range of `part_size` bytes per request;
    /// None if there is no such object.
    pub(super) fn open_ranges(&self, key: &str) -> Result<Option<Ranges<'_>>, String> {
        let mut ranges = Ranges {
            store: self,
            key: key.to_string(),
            next: 0,
            total: None,
            body: None,
        };
        match ranges.fetch() {
            Ok(()) => Ok(Some(ranges)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// An object read one range at a time.
pub struct Ranges<'a> {
    store: &'a Store,
    key: String,
    /// The first byte not yet asked for.
    next: u64,
    /// The object's length, once an answer said.
    total: Option<u64>,
    body: Option<Box<dyn Read + Send + Sync + 'static>>,
}

impl Ranges<'_> {
    /// Asks for the next range.
    fn fetch(&mut self) -> std::io::Result<()> {
        let store = self.store;
        let last = self.next + store.part_size - 1;
        let url = store
            .bucket
            .get_object(Some(&store.credentials), &self.key)
            .sign(SIGNED_FOR);
        let response = store
            .agent
            .get(url.as_str())
            .header("Range", &format!("bytes={}-{last}", self.next))
            .call()
            .map_err(|e| std::io::Error::other(format!("GET {}: {e}", self.key)))?;
        let length = |r: &ureq::http::Response<ureq::Body>, name: &str| -> Option<u64> {
            r.headers()
                .get(name)?
                .to_str()
                .ok()
                .map(str::to_string)?
                .parse()
                .ok()
        };
        match response.status().as_u16() {
            // The whole object: a store that ignores ranges, or one smaller than the range.
            200 => {
                let total = length(&response, "content-length").unwrap_or(u64::MAX);
                (self.total, self.next) = (Some(total), total);
            }
            206 => {
                // `Content-Range: bytes FIRST-LAST/TOTAL`.
                let total = response
                    .headers()
                    .get("content-range")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.rsplit_once('/'))
                    .and_then(|(_, t)| t.parse().ok());
                self.total = total;
                self.next = (last + 1).min(total.unwrap_or(u64::MAX));
            }
            // Past the end of an object whose length is a multiple of the part size.
            416 if self.next > 0 => {
                self.total = Some(self.next);
                return Ok(());
            }
            404 if self.next == 0 => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("no object {}", self.key),
                ));
            }
            status => {
                return Err(std::io::Error::other(refused(
                    "GET", &self.key, status, response,
                )));
            }
        }
        self.body = Some(Box::new(response.into_body().into_reader()));
        Ok(())
    }
}

impl Read for Ranges<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if let Some(body) = &mut self.body {
                let n = body.read(buf)?;
                if n > 0 || buf.is_empty() {
                    return Ok(n);
                }
                self.body = None;
            }
            if self.total.is_some_and(|total| self.next >= total) {
                return Ok(0);
            }
            self.fetch()?;
        }
    }
}
