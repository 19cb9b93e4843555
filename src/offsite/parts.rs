//! Large objects a part at a time, so that every request stays within its deadline whatever the
//! object's size: uploads over `part_size` use S3's multipart upload (a single PUT is also
//! limited to 5 GiB), and reads ask for one range of `part_size` bytes per request. Blocking.

use std::io::{Read, Write};

use rusty_s3::S3Action;
use rusty_s3::actions::CreateMultipartUpload;

use super::store::{SIGNED_FOR, Store, ok_text, refused};

pub use super::store::MIN_PART_SIZE;
/// S3's most parts in one upload.
const MAX_PARTS: u64 = 10_000;
/// Parts sent, or ranges read ahead, at once: a transfer of one large object uses several
/// connections, as S3 clients do; memory holds at most this many parts per transfer.
pub const IN_FLIGHT: usize = 4;

impl Store {
    /// Writes at `key` what `produce` writes, streamed: up to a part, one PUT once `produce` has
    /// succeeded; beyond, a multipart upload whose parts go out [`IN_FLIGHT`] at a time while
    /// `produce` still writes, completed only once it has succeeded (else aborted: nothing is
    /// left at `key`, and no part lingers). `size_hint` (an upper bound of the length, if
    /// known) keeps the parts within S3's 10,000. Returns the bytes written.
    pub fn put_streamed(
        &self,
        key: &str,
        size_hint: u64,
        produce: &mut dyn FnMut(&mut dyn Write) -> Result<(), String>,
    ) -> Result<u64, String> {
        let part_size = self.part_size.max(size_hint.div_ceil(MAX_PARTS));
        let upload = Upload {
            store: self,
            key,
            id: std::sync::OnceLock::new(),
            etags: std::sync::Mutex::new(std::collections::BTreeMap::new()),
            failed: std::sync::Mutex::new(None),
        };
        // A part is handed over only to a free sender: memory holds at most IN_FLIGHT + 1 parts.
        let (sender, receiver) = std::sync::mpsc::sync_channel::<(u16, Vec<u8>)>(0);
        let receiver = std::sync::Mutex::new(receiver);
        let produced = std::thread::scope(|scope| {
            for _ in 0..IN_FLIGHT {
                scope.spawn(|| {
                    loop {
                        let next = receiver.lock().unwrap().recv();
                        let Ok((number, bytes)) = next else {
                            return;
                        };
                        if upload.failed.lock().unwrap().is_some() {
                            continue;
                        }
                        match upload.send_part(number, &bytes) {
                            Ok(etag) => {
                                upload.etags.lock().unwrap().insert(number, etag);
                            }
                            Err(e) => {
                                upload.failed.lock().unwrap().get_or_insert(e);
                            }
                        }
                    }
                });
            }
            let mut sink = PartSink {
                upload: &upload,
                part_size: part_size as usize,
                buffer: Vec::new(),
                sent: 0,
                next: 1,
                sender,
            };
            let result = produce(&mut sink).and_then(|()| sink.last_part());
            (result, sink.sent + sink.buffer.len() as u64, sink.buffer)
        });
        let (result, written, buffer) = produced;
        let result = result.and_then(|started| match started {
            // Everything fitted in one part: a plain PUT.
            false => self.put(key, &buffer, false).map(|_| ()),
            true => upload.complete(),
        });
        if result.is_err() {
            upload.abort();
        }
        result.map(|()| written)
    }
}

/// A multipart upload, created when the first part is full.
struct Upload<'a> {
    store: &'a Store,
    key: &'a str,
    id: std::sync::OnceLock<String>,
    etags: std::sync::Mutex<std::collections::BTreeMap<u16, String>>,
    failed: std::sync::Mutex<Option<String>>,
}

impl Upload<'_> {
    fn create(&self) -> Result<&str, String> {
        if let Some(id) = self.id.get() {
            return Ok(id);
        }
        let (store, key) = (self.store, self.key);
        let url = store
            .bucket
            .create_multipart_upload(Some(&store.credentials), key)
            .sign(SIGNED_FOR);
        let sent = store.agent.post(url.as_str()).send_empty();
        let what = format!("multipart upload of {key}");
        let text = ok_text(sent, "CreateMultipartUpload", key, &what)?;
        let created = CreateMultipartUpload::parse_response(&text)
            .map_err(|e| format!("multipart upload of {key}: unreadable answer: {e}"))?;
        Ok(self.id.get_or_init(|| created.upload_id().to_string()))
    }

    /// Sends part `number`; its ETag.
    fn send_part(&self, number: u16, bytes: &[u8]) -> Result<String, String> {
        let (store, key) = (self.store, self.key);
        let id = self.id.get().ok_or("no multipart upload")?;
        let url = store
            .bucket
            .upload_part(Some(&store.credentials), key, number, id)
            .sign(SIGNED_FOR);
        let response = store
            .agent
            .put(url.as_str())
            .send(bytes)
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

    fn complete(&self) -> Result<(), String> {
        if let Some(e) = self.failed.lock().unwrap().take() {
            return Err(e);
        }
        let (store, key) = (self.store, self.key);
        let id = self.id.get().ok_or("no multipart upload")?;
        let etags = self.etags.lock().unwrap();
        let action = store.bucket.complete_multipart_upload(
            Some(&store.credentials),
            key,
            id,
            etags.values().map(String::as_str),
        );
        let url = action.sign(SIGNED_FOR);
        let sent = store.agent.post(url.as_str()).send(action.body());
        // S3 may answer 200 and still fail: the body says.
        let what = format!("completing {key}");
        let text = ok_text(sent, "CompleteMultipartUpload", key, &what)?;
        rusty_s3::actions::CompleteMultipartUploadResponse::parse(&text)
            .map_err(|_| format!("completing {key}: the store refused: {text}"))?;
        Ok(())
    }

    /// Drops a started upload's parts (best effort).
    fn abort(&self) {
        if let Some(id) = self.id.get() {
            let store = self.store;
            let url = store
                .bucket
                .abort_multipart_upload(Some(&store.credentials), self.key, id)
                .sign(SIGNED_FOR);
            let _ = store.agent.delete(url.as_str()).call();
        }
    }
}

/// Collects what is written into parts and hands each full one to the senders.
struct PartSink<'a, 'b> {
    upload: &'b Upload<'a>,
    part_size: usize,
    buffer: Vec<u8>,
    /// Bytes handed to the senders.
    sent: u64,
    next: u16,
    sender: std::sync::mpsc::SyncSender<(u16, Vec<u8>)>,
}

impl PartSink<'_, '_> {
    fn dispatch(&mut self) -> Result<(), String> {
        if let Some(e) = self.upload.failed.lock().unwrap().clone() {
            return Err(e);
        }
        self.upload.create()?;
        let part = std::mem::take(&mut self.buffer);
        self.sent += part.len() as u64;
        self.sender
            .send((self.next, part))
            .map_err(|_| "the part senders stopped".to_string())?;
        self.next += 1;
        Ok(())
    }

    /// Hands over the last part if an upload was started; whether one was.
    fn last_part(&mut self) -> Result<bool, String> {
        if self.upload.id.get().is_none() {
            return Ok(false);
        }
        if !self.buffer.is_empty() {
            self.dispatch()?;
        }
        Ok(true)
    }
}

impl Write for PartSink<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let room = self.part_size - self.buffer.len();
        let n = buf.len().min(room);
        self.buffer.extend_from_slice(&buf[..n]);
        if self.buffer.len() == self.part_size {
            self.dispatch().map_err(std::io::Error::other)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Store {
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
