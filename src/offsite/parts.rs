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
/// Parts sent, or ranges read ahead, at once: a transfer of one large object uses several
/// connections, as S3 clients do; memory holds at most this many parts per transfer.
pub const IN_FLIGHT: usize = 4;

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

    /// Sends the parts, [`IN_FLIGHT`] at a time (each read from the file at its offset), and
    /// completes the upload.
    fn send_parts(
        &self,
        key: &str,
        upload_id: &str,
        file: &std::fs::File,
        part_size: u64,
    ) -> Result<(), String> {
        let len = file
            .metadata()
            .map_err(|e| format!("PUT {key}: {e}"))?
            .len();
        let count = len.div_ceil(part_size).max(1) as usize;
        let etags: Vec<std::sync::Mutex<Option<String>>> =
            (0..count).map(|_| std::sync::Mutex::new(None)).collect();
        let next = std::sync::atomic::AtomicUsize::new(0);
        let failed: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
        std::thread::scope(|scope| {
            for _ in 0..IN_FLIGHT.min(count) {
                scope.spawn(|| {
                    loop {
                        let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if index >= count || failed.lock().unwrap().is_some() {
                            return;
                        }
                        match self.send_part(key, upload_id, file, index, part_size, len) {
                            Ok(etag) => *etags[index].lock().unwrap() = Some(etag),
                            Err(e) => {
                                failed.lock().unwrap().get_or_insert(e);
                                return;
                            }
                        }
                    }
                });
            }
        });
        if let Some(e) = failed.into_inner().unwrap() {
            return Err(e);
        }
        let etags: Vec<String> = etags
            .into_iter()
            .map(|e| e.into_inner().unwrap().unwrap_or_default())
            .collect();
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

    /// Part `index` (from 0) of `file`: read at its offset, sent; its ETag.
    fn send_part(
        &self,
        key: &str,
        upload_id: &str,
        file: &std::fs::File,
        index: usize,
        part_size: u64,
        len: u64,
    ) -> Result<String, String> {
        use std::os::unix::fs::FileExt;
        let number = index as u16 + 1;
        let offset = index as u64 * part_size;
        let mut buffer = vec![0; part_size.min(len - offset) as usize];
        file.read_exact_at(&mut buffer, offset)
            .map_err(|e| format!("part {number} of {key}: {e}"))?;
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
        response
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .ok_or_else(|| format!("part {number} of {key}: no ETag in the answer"))
    }

    /// A reader of the object at `key`, fetching one range of `part_size` bytes per request,
    /// up to [`IN_FLIGHT`] ranges ahead of the reader; None if there is no such object.
    pub(super) fn open_ranges(&self, key: &str) -> Result<Option<Ranges<'_>>, String> {
        let mut ranges = Ranges {
            store: self,
            key: key.to_string(),
            next: 0,
            total: None,
            body: None,
            ahead: std::collections::VecDeque::new(),
            current: std::io::Cursor::new(Vec::new()),
        };
        match ranges.fetch() {
            Ok(()) => Ok(Some(ranges)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }
}

type Range = std::thread::JoinHandle<std::io::Result<Vec<u8>>>;

/// An object read one range at a time: the first streamed, the next ones fetched ahead.
pub struct Ranges<'a> {
    store: &'a Store,
    key: String,
    /// The first byte not yet asked for.
    next: u64,
    /// The object's length, once an answer said.
    total: Option<u64>,
    /// The streamed answer being read.
    body: Option<Box<dyn Read + Send + Sync + 'static>>,
    /// Ranges being fetched, in order.
    ahead: std::collections::VecDeque<Range>,
    /// The fetched range being read.
    current: std::io::Cursor<Vec<u8>>,
}

impl Ranges<'_> {
    /// Asks for the next range, streamed.
    fn fetch(&mut self) -> std::io::Result<()> {
        let store = self.store;
        let last = self.next + store.part_size - 1;
        let response = get_range(store, &self.key, self.next, last)?;
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
        self.read_ahead();
        Ok(())
    }

    /// Starts fetching the ranges after those asked for, up to [`IN_FLIGHT`] ahead.
    fn read_ahead(&mut self) {
        let Some(total) = self.total else {
            return;
        };
        while self.ahead.len() < IN_FLIGHT && self.next < total {
            let (first, last) = (self.next, (self.next + self.store.part_size).min(total) - 1);
            let (store, key) = (self.store.clone(), self.key.clone());
            self.ahead.push_back(std::thread::spawn(move || {
                let response = get_range(&store, &key, first, last)?;
                let status = response.status().as_u16();
                if status != 206 {
                    return Err(std::io::Error::other(refused(
                        "GET", &key, status, response,
                    )));
                }
                let mut bytes = Vec::with_capacity((last - first + 1) as usize);
                response.into_body().into_reader().read_to_end(&mut bytes)?;
                if bytes.len() as u64 != last - first + 1 {
                    return Err(std::io::Error::other(format!(
                        "GET {key}: bytes {first}-{last} came back {} long",
                        bytes.len()
                    )));
                }
                Ok(bytes)
            }));
            self.next = last + 1;
        }
    }
}

/// `GET` of bytes `first..=last` of `key`.
fn get_range(
    store: &Store,
    key: &str,
    first: u64,
    last: u64,
) -> std::io::Result<ureq::http::Response<ureq::Body>> {
    let url = store
        .bucket
        .get_object(Some(&store.credentials), key)
        .sign(SIGNED_FOR);
    store
        .agent
        .get(url.as_str())
        .header("Range", &format!("bytes={first}-{last}"))
        .call()
        .map_err(|e| std::io::Error::other(format!("GET {key}: {e}")))
}

impl Read for Ranges<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if let Some(body) = &mut self.body {
                let n = body.read(buf)?;
                if n > 0 {
                    return Ok(n);
                }
                self.body = None;
            }
            let n = self.current.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            if let Some(range) = self.ahead.pop_front() {
                let bytes = range
                    .join()
                    .map_err(|_| std::io::Error::other("a range fetch panicked"))??;
                self.current = std::io::Cursor::new(bytes);
                self.read_ahead();
                continue;
            }
            if self.total.is_some_and(|total| self.next >= total) {
                return Ok(0);
            }
            // A length no answer said: the next range, streamed, until the store says 416.
            self.fetch()?;
        }
    }
}
