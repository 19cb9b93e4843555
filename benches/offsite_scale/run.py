#!/usr/bin/env python3
"""How the off-site repository behaves with many entries: 100, 1,000 and 10,000 of them.

    python3 -m benches.offsite_scale.run            # N = 100, 1000, 10000 (~15-25 min on 2 cores)
    python3 -m benches.offsite_scale.run --quick    # N = 100 only (~2 min)

Standard-library Python 3 only. Needs cargo (or --sidecar-bin PATH), SeaweedFS from
scripts/ensure-seaweedfs.sh and Doltgres from scripts/ensure-doltgres.sh (both cached).

1. Starts SeaweedFS (`weed mini`, every port a free loopback one, an S3 key of its own, bucket
   `backups`) in a temp dir, and in this process a counting relay: an HTTP/1.1 proxy in front of
   SeaweedFS's S3 port that forwards every request unchanged (SigV4 signatures, presigned ones
   included, sign the Host header, which the relay passes through) and records its method, key,
   query, status and duration.
2. Shape probe: runs the real sidecar in managed mode once (it runs Doltgres), takes one copy and
   reads the entry's manifest.json: the synthetic manifests copy its `databases`, `timings` and
   `doltgres_version`, and their file paths look like its table files.
3. For each N, under a fresh prefix `scale-N/`: writes N synthetic entries with signed S3 PUTs
   (straight to SeaweedFS, 8 threads). Entry i (0 = oldest) is named like the sidecar names entries
   (`catalog::entry_id`: UTC time to the second, then `-w<window id>`), one hour apart, ending an
   hour before now; its manifest names objects 5i .. 5i+19, so it shares 15 objects with the entry
   before it and adds 5: the repository holds 5N + 15 objects. Each object is 512-2047 random
   bytes in a zstd frame (a raw block, written by hand), named by the SHA-256 of those bytes.
4. Measures, for each N:
   - `doltgres-sidecar backups list --repo s3://backups/scale-N`: wall time straight to SeaweedFS
     (median of --repeat runs) and once more through the relay, which counts its requests.
   - one upload and one retention pass of the real sidecar: `run --control managed` with
     `[backup.copy.offsite] url = s3://backups/scale-N, keep_last = N` and the relay as its
     endpoint; one copy (`backup --action copy`) makes a real entry (N + 1 in the repository), the
     sidecar uploads it and its retention deletes the oldest entry (steady state of a repository
     kept at N). Times come from the sidecar's own JSON log: the upload's `ms` field; retention =
     from the "copy entry uploaded off-site" line to the "off-site retention deleted entries ..."
     line (nothing else runs between them). Requests: the relay's records, split at the
     manifest PUT (the upload's last request). Then the same once more straight to SeaweedFS
     (no relay), for the time alone (it prunes the next oldest synthetic entry).
5. Writes <out>/offsite-scale.md and <out>/offsite-scale.json (default benches/results).

Everything started is stopped and the temp dir removed on exit (--keep-tmp keeps it).
"""

from __future__ import annotations

import sys

sys.dont_write_bytecode = True

import argparse  # noqa: E402
import atexit  # noqa: E402
import concurrent.futures  # noqa: E402
import datetime  # noqa: E402
import hashlib  # noqa: E402
import hmac  # noqa: E402
import http.client  # noqa: E402
import http.server  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import urllib.parse  # noqa: E402
import urllib.request  # noqa: E402
from pathlib import Path  # noqa: E402

from benches.copy.procs import Proc, on_signal  # noqa: E402
from benches.pgbench.procs import free_port  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

BUCKET = "backups"
REGION = "us-east-1"
PASSWORD = os.environ.get("DOLTGRES_PASSWORD", "password")
OBJECTS_PER_ENTRY = 20
NEW_PER_ENTRY = 5
OBJECT_MIN, OBJECT_MAX = 512, 2048
POPULATE_THREADS = 8
# A last run on prefixes of at most this many entries turns retention on late: keep_last = CATCH_UP_KEEP.
CATCH_UP_MAX_N = 1000
CATCH_UP_KEEP = 10
# The first sidecar run per N keeps N + NO_DELETE_MARGIN: its retention pass finds nothing to delete.
NO_DELETE_MARGIN = 10

READY_TIMEOUT = 120
STOP_TIMEOUT = 60
OFFSITE_TIMEOUT = 3600


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------
# S3 requests signed with AWS Signature V4 (header form), for populating and checking.


def connect(host: str, port: int, timeout: float) -> http.client.HTTPConnection:
    """A connection with TCP_NODELAY set."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    conn.connect()
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def _quote(text: str, safe: str = "-_.~") -> str:
    return urllib.parse.quote(text, safe=safe)


class S3:
    def __init__(self, host: str, port: int, access: str, secret: str) -> None:
        self.host, self.port, self.access, self.secret = host, port, access, secret
        self.local = threading.local()

    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = connect(self.host, self.port, timeout=60)
            self.local.conn = conn
        return conn

    def request(self, method: str, key: str, query: dict[str, str] | None = None, body: bytes = b"") -> tuple[int, bytes]:
        path = "/" + BUCKET + ("/" + _quote(key, "-_.~/") if key else "")
        query = query or {}
        canonical_query = "&".join(f"{_quote(k)}={_quote(v)}" for k, v in sorted(query.items()))
        now = datetime.datetime.now(datetime.timezone.utc)
        amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        payload = hashlib.sha256(body).hexdigest()
        host = f"{self.host}:{self.port}"
        headers = {"host": host, "x-amz-content-sha256": payload, "x-amz-date": amz_date}
        signed = ";".join(sorted(headers))
        canonical = "\n".join(
            [method, path, canonical_query, "".join(f"{k}:{headers[k]}\n" for k in sorted(headers)), signed, payload]
        )
        scope = f"{day}/{REGION}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        k = _hmac(("AWS4" + self.secret).encode(), day)
        for part in (REGION, "s3", "aws4_request"):
            k = _hmac(k, part)
        signature = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
        send = {
            "Host": host,
            "x-amz-content-sha256": payload,
            "x-amz-date": amz_date,
            "Authorization": f"AWS4-HMAC-SHA256 Credential={self.access}/{scope}, SignedHeaders={signed}, Signature={signature}",
            "Content-Length": str(len(body)),
        }
        url = path + ("?" + canonical_query if canonical_query else "")
        for attempt in range(3):
            try:
                conn = self._conn()
                conn.request(method, url, body=body if method in ("PUT", "POST") else None, headers=send)
                resp = conn.getresponse()
                data = resp.read()
                return resp.status, data
            except (OSError, http.client.HTTPException):
                if getattr(self.local, "conn", None) is not None:
                    self.local.conn.close()
                self.local.conn = None
                if attempt == 2:
                    raise
                time.sleep(0.5)
        raise AssertionError("unreachable")

    def keys(self, prefix: str) -> list[str]:
        keys: list[str] = []
        token = None
        while True:
            query = {"list-type": "2", "prefix": prefix}
            if token:
                query["continuation-token"] = token
            status, body = self.request("GET", "", query)
            if status != 200:
                raise RuntimeError(f"list {prefix}: HTTP {status}: {body[:200]!r}")
            text = body.decode()
            keys += [part.split("</Key>", 1)[0] for part in text.split("<Key>")[1:]]
            if "<NextContinuationToken>" in text:
                token = text.split("<NextContinuationToken>", 1)[1].split("</NextContinuationToken>", 1)[0]
                token = token.replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
            else:
                return keys


# ----------------------------------------------------------------------------------------------
# The counting relay


HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}


class Relay(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.records: list[dict] = []
        self.lock = threading.Lock()
        self.last_request = time.monotonic()
        super().__init__(("127.0.0.1", 0), RelayHandler)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def mark(self) -> int:
        with self.lock:
            return len(self.records)

    def since(self, mark: int) -> list[dict]:
        with self.lock:
            return list(self.records[mark:])

    def wait_idle(self, quiet: float = 1.5, limit: float = 120) -> None:
        deadline = time.monotonic() + limit
        while time.monotonic() - self.last_request < quiet and time.monotonic() < deadline:
            time.sleep(0.2)


class RelayHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Relay

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.upstream = None

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            if self.upstream is not None:
                self.upstream.close()

    def log_message(self, *_args) -> None:
        pass

    def _body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _relay(self) -> None:
        started = time.monotonic()
        self.server.last_request = started
        method = self.command
        body = self._body()
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP and k.lower() != "content-length"}
        if body or method in ("PUT", "POST"):
            headers["Content-Length"] = str(len(body))
        for attempt in range(2):
            try:
                if self.upstream is None:
                    self.upstream = connect(*self.server.upstream, timeout=300)
                self.upstream.request(method, self.path, body=body if body or method in ("PUT", "POST") else None, headers=headers)
                resp = self.upstream.getresponse()
                data = resp.read()
                break
            except (OSError, http.client.HTTPException):
                if self.upstream is not None:
                    self.upstream.close()
                self.upstream = None
                if attempt == 1:
                    self.send_error(502)
                    return
        # Recorded before the client has its answer: a client that exits on its last answer finds it counted.
        now = time.monotonic()
        self.server.last_request = now
        with self.server.lock:
            self.server.records.append(
                {"t": started, "ms": (now - started) * 1000, "method": method, "path": self.path, "status": resp.status,
                 "bytes_in": len(body), "bytes_out": len(data)}
            )  # fmt: skip
        # One write for the whole answer (status line, headers, body), with TCP_NODELAY set: split
        # small writes would meet Nagle's algorithm and the client's delayed ACK (~40 ms each).
        head = [f"HTTP/1.1 {resp.status} {resp.reason}"]
        for k, v in resp.getheaders():
            if k.lower() not in HOP_BY_HOP and k.lower() != "content-length":
                head.append(f"{k}: {v}")
        if method == "HEAD":
            length = resp.getheader("Content-Length")
            if length is not None:
                head.append(f"Content-Length: {length}")
        else:
            head.append(f"Content-Length: {len(data)}")
        answer = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(answer + (data if method != "HEAD" else b""))
        self.wfile.flush()

    do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _relay


def kind(record: dict) -> str:
    """`METHOD area`: LIST entries/, GET entries/, HEAD objects/, ..."""
    parsed = urllib.parse.urlsplit(record["path"])
    query = urllib.parse.parse_qs(parsed.query)
    key = urllib.parse.unquote(parsed.path).split("/", 2)[2] if parsed.path.count("/") >= 2 else ""
    if record["method"] == "GET" and "list-type" in query:
        prefix = query.get("prefix", [""])[0]
        area = "entries/" if "/entries/" in "/" + prefix else "objects/" if "/objects/" in "/" + prefix else prefix
        return f"LIST {area}"
    area = "entries/" if "/entries/" in "/" + key else "objects/" if "/objects/" in "/" + key else (key or "bucket")
    return f"{record['method']} {area}"


def summarize(records: list[dict]) -> dict:
    counts: dict[str, int] = {}
    for r in records:
        k = kind(r)
        counts[k] = counts.get(k, 0) + 1
    by_kind_ms: dict[str, float] = {}
    for r in records:
        by_kind_ms[kind(r)] = by_kind_ms.get(kind(r), 0.0) + r["ms"]
    errors = sum(1 for r in records if r["status"] >= 400 and not (r["method"] == "HEAD" and r["status"] == 404))
    return {
        "requests": len(records),
        "by_kind": dict(sorted(counts.items())),
        "relay_ms_by_kind": {k: round(v, 1) for k, v in sorted(by_kind_ms.items())},
        "mean_ms_by_kind": {k: round(by_kind_ms[k] / counts[k], 3) for k in sorted(counts)},
        "errors": errors,
        "bytes_out": sum(r["bytes_out"] for r in records),
    }


# ----------------------------------------------------------------------------------------------
# SeaweedFS


class SeaweedFs:
    def __init__(self, root: Path) -> None:
        binary = subprocess.run(
            ["bash", str(REPO / "scripts" / "ensure-seaweedfs.sh")], check=True, stdout=subprocess.PIPE, text=True
        ).stdout.strip()
        self.root = root
        data = root / "data"
        data.mkdir(parents=True)
        self.port = free_port()
        self.access = f"scale{os.getpid()}"
        self.secret = f"secret-{os.getpid():x}-{self.port}"
        ports = [("s3.port", self.port)] + [
            (flag, free_port())
            for flag in ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
                         "filer.port.grpc", "s3.port.grpc", "admin.port", "admin.port.grpc")
        ]  # fmt: skip
        argv = [
            binary, "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            *[f"-{flag}={port}" for flag, port in ports],
            "-admin.port.legacy=0", "-s3.port.iceberg=0", "-s3.port.lance=0", "-webdav=false", "-admin.ui=false",
            "-master.telemetry=false", f"-bucket={BUCKET}",
            f"-filer.localSocket={root / 'filer.sock'}", f"-s3.localSocket={root / 's3.sock'}",
        ]  # fmt: skip
        env = dict(os.environ, AWS_ACCESS_KEY_ID=self.access, AWS_SECRET_ACCESS_KEY=self.secret)
        self.proc = Proc("seaweedfs", argv, root / "weed.log", env=env, stop_timeout=STOP_TIMEOUT)
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.s3 = S3("127.0.0.1", self.port, self.access, self.secret)
        deadline = time.monotonic() + 90
        while True:
            try:
                status, _ = self.s3.request("HEAD", "")
                if status == 200:
                    return
            except OSError:
                pass
            if not self.proc.alive():
                raise RuntimeError(f"SeaweedFS exited at start:\n{self.proc.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"SeaweedFS did not serve bucket {BUCKET} within 90 s:\n{self.proc.log_tail()}")
            time.sleep(0.3)

    def version(self) -> str:
        try:
            out = subprocess.run([self.proc.popen.args[0], "version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=30)
            return out.stdout.strip().splitlines()[0]
        except (OSError, subprocess.TimeoutExpired, IndexError):
            return "unknown"


# ----------------------------------------------------------------------------------------------
# Synthetic entries


def zstd_raw_frame(data: bytes) -> bytes:
    """A zstd frame holding `data` in one raw (stored) block: single segment, content size given."""
    n = len(data)
    assert 256 <= n < 65536 + 256 and n < 128 * 1024
    descriptor = (1 << 6) | (1 << 5)  # Frame_Content_Size_flag = 1 (2 bytes), Single_Segment_flag
    header = (n << 3) | (0 << 1) | 1  # Block_Size, Block_Type = Raw, Last_Block
    return (
        b"\x28\xb5\x2f\xfd"
        + bytes([descriptor])
        + (n - 256).to_bytes(2, "little")
        + header.to_bytes(3, "little")
        + data
    )


def object_bytes(prefix_seed: str, index: int) -> bytes:
    rng = random.Random(f"{prefix_seed}/{index}")
    return rng.randbytes(rng.randrange(OBJECT_MIN, OBJECT_MAX))


def entry_id(unix: int, window_id: int) -> str:
    """As `catalog::entry_id`: RFC 3339 UTC to the second without '-' and ':', then `-w<window>`."""
    stamp = datetime.datetime.fromtimestamp(unix, datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-w{window_id}"


TABLE_FILE_ALPHABET = "0123456789abcdefghijklmnopqrstuv"  # Dolt's base32 table-file names


def table_file_name(sha: str) -> str:
    value = int(sha[:40], 16)
    return "".join(TABLE_FILE_ALPHABET[(value >> (5 * i)) & 31] for i in range(32))


def synthetic_manifest(template: dict, entry: str, window_id: int, created: float, objects: list[tuple[int, str, int]], new_from: int) -> dict:
    database = (template.get("databases") or [{"name": "postgres"}])[0]["name"]
    files = []
    copied = linked = 0
    for index, sha, size in objects:
        is_linked = index < new_from
        files.append({
            "path": f"data/{database}/.dolt/noms/{table_file_name(sha)}",
            "size": size,
            "sha256": sha,
            "linked": is_linked,
        })  # fmt: skip
        if is_linked:
            linked += size
        else:
            copied += size
    return {
        "id": entry,
        "window_id": window_id,
        "created_unix": created,
        "doltgres_version": template.get("doltgres_version", "1.2.0"),
        "databases": template.get("databases", []),
        "files": files,
        "bytes_copied": copied,
        "bytes_linked": linked,
        "timings": template.get("timings", {"inventory": 0.0, "gc": 0.0, "detach": 0.0, "stop": 0.0, "copy": 0.0, "start": 0.0}),
    }


def populate(s3: S3, prefix: str, n: int, template: dict) -> dict:
    """N entries under `prefix` (ending in '/'); returns what was written."""
    total_objects = NEW_PER_ENTRY * (n - 1) + OBJECTS_PER_ENTRY
    shas: list[tuple[str, int]] = [None] * total_objects  # type: ignore[list-item]
    started = time.monotonic()

    def put_object(i: int) -> None:
        raw = object_bytes(prefix, i)
        sha = hashlib.sha256(raw).hexdigest()
        status, body = s3.request("PUT", f"{prefix}objects/{sha}.zst", body=zstd_raw_frame(raw))
        if status != 200:
            raise RuntimeError(f"PUT object: HTTP {status}: {body[:200]!r}")
        shas[i] = (sha, len(raw))

    now = int(time.time())
    first = now - 3600 * (n + 1)
    manifest_bytes: list[int] = []

    def put_entry(i: int) -> None:
        created = first + 3600 * i
        eid = entry_id(created, i + 1)
        lo = NEW_PER_ENTRY * i
        objects = [(j, shas[j][0], shas[j][1]) for j in range(lo, lo + OBJECTS_PER_ENTRY)]
        new_from = lo if i == 0 else lo + OBJECTS_PER_ENTRY - NEW_PER_ENTRY
        manifest = synthetic_manifest(template, eid, i + 1, float(created), objects, new_from)
        body = json.dumps(manifest, indent=2).encode()  # the sidecar writes to_vec_pretty
        status, reply = s3.request("PUT", f"{prefix}entries/{eid}.json", body=body)
        if status != 200:
            raise RuntimeError(f"PUT manifest: HTTP {status}: {reply[:200]!r}")
        manifest_bytes.append(len(body))

    with concurrent.futures.ThreadPoolExecutor(POPULATE_THREADS) as pool:
        list(pool.map(put_object, range(total_objects)))
        list(pool.map(put_entry, range(n)))
    return {
        "entries": n,
        "objects": total_objects,
        "object_bytes_raw": sum(s for _, s in shas),
        "manifest_bytes_mean": round(statistics.mean(manifest_bytes)),
        "populate_s": round(time.monotonic() - started, 1),
        "oldest": entry_id(first, 1),
        "newest": entry_id(first + 3600 * (n - 1), n),
    }


# ----------------------------------------------------------------------------------------------
# The sidecar


def sidecar_binary(args: argparse.Namespace, tmp: Path) -> Path:
    if args.sidecar_bin is not None:
        src = args.sidecar_bin
    else:
        log("cargo build --release --bin doltgres-sidecar")
        if subprocess.run(["cargo", "build", "--release", "--bin", "doltgres-sidecar"], cwd=REPO).returncode != 0:
            raise RuntimeError("cargo build --release failed (or pass --sidecar-bin PATH)")
        src = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")) / "release" / "doltgres-sidecar"
    dst = tmp / "doltgres-sidecar"
    shutil.copy2(src, dst)  # a rebuild meanwhile cannot swap it mid-run
    return dst


def doltgres_binary() -> Path:
    out = subprocess.run(["bash", str(REPO / "scripts" / "ensure-doltgres.sh")], check=True, stdout=subprocess.PIPE, text=True)
    return Path(out.stdout.strip())


def s3_env(store: SeaweedFs, endpoint: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID=store.access,
        AWS_SECRET_ACCESS_KEY=store.secret,
        AWS_ALLOW_HTTP="true",
        AWS_REGION=REGION,
    )
    return env


def time_list(sidecar: Path, env: dict[str, str], url: str, scratch: Path) -> tuple[float, str, dict]:
    """`backups list --repo url`: wall seconds, its output, and its CPU seconds and peak RSS (wait4)."""
    out_path, err_path = scratch / "list.out", scratch / "list.err"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        started = time.monotonic()
        proc = subprocess.Popen([str(sidecar), "backups", "list", "--repo", url], env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
    text = out_path.read_text()
    if proc.returncode != 0:
        raise RuntimeError(f"backups list --repo {url}: exit {proc.returncode}: {err_path.read_text().strip()[:400]}")
    return wall, text, {"cpu_s": round(usage.ru_utime + usage.ru_stime, 3), "peak_rss_kib": usage.ru_maxrss}


def parse_ts(text: str) -> float:
    head, _, frac = text.rstrip("Z").partition(".")
    t = datetime.datetime.strptime(head, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc).timestamp()
    return t + (float("0." + frac) if frac else 0.0)


def json_lines(path: Path, offset: int = 0) -> list[dict]:
    out = []
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            for line in f.read().decode(errors="replace").splitlines():
                if line.startswith("{"):
                    try:
                        out.append(json.loads(line))
                    except json.JSONDecodeError:
                        pass
    except OSError:
        pass
    return out


def deleted_entries(field) -> list[str]:
    """The `entries` field of the retention line: `?Vec<String>`, i.e. '["a", "b"]'."""
    if isinstance(field, list):
        return field
    try:
        return json.loads(field)
    except (TypeError, json.JSONDecodeError):
        return [str(field)]


def peak_rss_kib(pid: int) -> int | None:
    """VmHWM of a running process, KiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


UPLOADED = "copy entry uploaded off-site"
PRUNED = "off-site retention deleted entries and the objects only they named"
PRUNE_FAILED = "off-site retention failed"
UPLOAD_FAILED = "off-site upload failed"


class Sidecar:
    """The sidecar in managed mode with `[backup.copy.offsite]` on `url`, reaching S3 at `endpoint`."""

    def __init__(self, root: Path, sidecar: Path, doltgres: Path, store: SeaweedFs, endpoint: str, url: str | None, keep_last: int) -> None:
        root.mkdir(parents=True)
        self.root = root
        self.bin = sidecar
        self.catalog = root / "backups"
        self.admin_url = f"http://127.0.0.1:{free_port()}"
        config = (
            "[backup]\n"
            "on_shutdown = false\n"
            "[backup.copy]\n"
            f"catalog = {json.dumps(str(self.catalog))}\n"
            "keep_last = 10\n"
            "verify_after = false\n"
        )
        if url is not None:
            config += (
                "[backup.copy.offsite]\n"
                f"url = {json.dumps(url)}\n"
                f"keep_last = {keep_last}\n"
            )
        (root / "sidecar.toml").write_text(config)
        argv = [
            str(sidecar), "run", "--config", str(root / "sidecar.toml"), "--control", "managed",
            "--doltgres", str(doltgres), "--server-dir", str(root / "doltgres"),
            "--listen", f"127.0.0.1:{free_port()}", "--admin-listen", self.admin_url.removeprefix("http://"),
            "--log-format", "json",
        ]  # fmt: skip
        env = dict(s3_env(store, endpoint), DOLTGRES_PASSWORD=PASSWORD, RUST_LOG="info")
        self.proc = Proc("sidecar", argv, root / "sidecar.log", env=env, stop_timeout=STOP_TIMEOUT)
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if not self.proc.alive():
                raise RuntimeError(f"the sidecar exited while starting:\n{self.proc.log_tail()}")
            try:
                with urllib.request.urlopen(self.admin_url + "/readyz", timeout=5) as r:
                    self.readyz = r.read().decode()
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the sidecar was not ready after {READY_TIMEOUT}s:\n{self.proc.log_tail()}")
            time.sleep(0.3)

    def copy(self) -> dict:
        out = subprocess.run(
            [str(self.bin), "backup", "--action", "copy", "--admin-url", self.admin_url, "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=600,
        )  # fmt: skip
        try:
            record = json.loads(out.stdout)
        except json.JSONDecodeError:
            raise RuntimeError(f"copy: exit {out.returncode}: {out.stdout[:300]} {out.stderr[:300]}") from None
        if record.get("result") != "ok":
            raise RuntimeError(f"copy did not succeed: {record.get('result')}: {record.get('error')}")
        return record

    def wait_for(self, messages: set[str], offset: int, timeout: float) -> list[dict]:
        """The log lines after `offset` up to the first whose message is one of `messages`."""
        deadline = time.monotonic() + timeout
        while True:
            lines = json_lines(self.proc.log_path, offset)
            for i, line in enumerate(lines):
                if (line.get("fields") or {}).get("message") in messages:
                    return lines[: i + 1]
            if not self.proc.alive():
                raise RuntimeError(f"the sidecar exited:\n{self.proc.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"none of {sorted(messages)} within {timeout:.0f}s:\n{self.proc.log_tail()}")
            time.sleep(0.1)

    def log_size(self) -> int:
        try:
            return self.proc.log_path.stat().st_size
        except OSError:
            return 0

    def stop(self) -> None:
        self.proc.stop()


def shape_probe(root: Path, sidecar: Path, doltgres: Path, store: SeaweedFs) -> dict:
    """A real entry's manifest (one copy of a fresh managed Doltgres, no off-site section)."""
    side = Sidecar(root, sidecar, doltgres, store, store.endpoint, None, 0)
    try:
        record = side.copy()
        entry = (record.get("cut") or {}).get("entry")
        manifests = sorted(side.catalog.glob("*/manifest.json"))
        if not manifests:
            raise RuntimeError(f"no manifest.json in {side.catalog} after a copy ({entry})")
        return json.loads(manifests[-1].read_text())
    finally:
        side.stop()


def retention_run(root: Path, sidecar: Path, doltgres: Path, store: SeaweedFs, endpoint: str, relay: Relay | None, url: str, keep_last: int, expect_deletion: bool = True) -> dict:
    """One copy uploaded to `url` and the retention pass after it; times from the sidecar's log (for a pass that
    deletes nothing, which logs nothing, from the relay: first to last request after the upload)."""
    side = Sidecar(root, sidecar, doltgres, store, endpoint, url, keep_last)
    try:
        if relay is not None:
            relay.wait_idle()  # the start-up probe (one listing of entries/) is over
        mark = relay.mark() if relay is not None else 0
        offset = side.log_size()
        copy = side.copy()
        upload_lines = side.wait_for({UPLOADED, UPLOAD_FAILED}, offset, OFFSITE_TIMEOUT)
        uploaded = upload_lines[-1]
        if uploaded["fields"]["message"] != UPLOADED:
            raise RuntimeError(f"upload failed: {uploaded['fields']}")
        if expect_deletion:
            lines = side.wait_for({PRUNED, PRUNE_FAILED}, offset, OFFSITE_TIMEOUT)
            pruned = lines[-1]
            if pruned["fields"]["message"] != PRUNED:
                raise RuntimeError(f"retention failed: {pruned['fields']}")
        else:
            # A pass that deletes nothing logs nothing: it is over when the relay has been quiet for 3 s.
            assert relay is not None
            relay.wait_idle(quiet=3.0, limit=OFFSITE_TIMEOUT)
            failed = [line for line in json_lines(side.proc.log_path, offset) if (line.get("fields") or {}).get("message") == PRUNE_FAILED]
            if failed:
                raise RuntimeError(f"retention failed: {failed[-1]['fields']}")
            pruned = {"timestamp": uploaded["timestamp"], "fields": {"entries": "[]", "objects": 0}}
        t_up, t_pruned = parse_ts(uploaded["timestamp"]), parse_ts(pruned["timestamp"])
        up = uploaded["fields"]
        result = {
            "entry": up.get("entry"),
            "copy_stall_ms": copy.get("stall_ms"),
            "upload_ms": up.get("ms"),
            "upload_objects": up.get("objects"),
            "upload_sent": up.get("sent"),
            "upload_bytes_sent": up.get("bytes_sent"),
            "retention_ms": round((t_pruned - t_up) * 1000, 1) if expect_deletion else None,
            "retention_deleted_entries": deleted_entries(pruned["fields"].get("entries")),
            "retention_deleted_objects": pruned["fields"].get("objects"),
            "sidecar_peak_rss_kib": peak_rss_kib(side.proc.popen.pid),
        }
        if relay is not None:
            time.sleep(0.5)
            records = relay.since(mark)
            cut = next(
                (i for i, r in enumerate(records) if r["method"] == "PUT" and "/entries/" in urllib.parse.unquote(r["path"])),
                None,
            )
            if cut is None:
                raise RuntimeError("no manifest PUT seen by the relay")
            result["upload_requests"] = summarize(records[: cut + 1])
            result["retention_requests"] = summarize(records[cut + 1 :])
            prune_records = records[cut + 1 :]
            if prune_records:
                result["retention_relay_span_ms"] = round(
                    (prune_records[-1]["t"] + prune_records[-1]["ms"] / 1000 - prune_records[0]["t"]) * 1000, 1
                )
        return result
    finally:
        side.stop()


# ----------------------------------------------------------------------------------------------
# One N


def run_n(n: int, args: argparse.Namespace, tmp: Path, store: SeaweedFs, relay: Relay, sidecar: Path, doltgres: Path, template: dict) -> dict:
    prefix = f"scale-{n}/"
    url = f"s3://{BUCKET}/scale-{n}"
    log(f"N={n}: writing {n} entries and {NEW_PER_ENTRY * (n - 1) + OBJECTS_PER_ENTRY} objects under {prefix}")
    result: dict = {"n": n, "prefix": prefix, "populate": populate(store.s3, prefix, n, template)}
    log(f"N={n}: written in {result['populate']['populate_s']} s")

    direct = s3_env(store, store.endpoint)
    walls, usages = [], []
    for _ in range(args.repeat):
        wall, text, usage = time_list(sidecar, direct, url, tmp)
        walls.append(wall)
        usages.append(usage)
    first_line = text.splitlines()[0] if text else ""
    if not first_line.startswith(f"{n} entries"):
        raise RuntimeError(f"backups list: unexpected answer: {first_line!r}")
    mark = relay.mark()
    relayed_wall, _, _ = time_list(sidecar, s3_env(store, relay.endpoint), url, tmp)
    result["list"] = {
        "wall_s_direct": [round(w, 3) for w in walls],
        "wall_s_direct_median": round(statistics.median(walls), 3),
        "wall_s_relay": round(relayed_wall, 3),
        "cpu_s_median": statistics.median(u["cpu_s"] for u in usages),
        "peak_rss_kib_max": max(u["peak_rss_kib"] for u in usages),
        "requests": summarize(relay.since(mark)),
        "first_line": first_line,
    }
    log(f"N={n}: backups list {result['list']['wall_s_direct_median']} s (median of {args.repeat}), "
        f"{result['list']['requests']['requests']} requests")  # fmt: skip

    if args.no_retention:
        return result
    log(f"N={n}: one copy uploaded with keep_last={n + NO_DELETE_MARGIN} (nothing to delete), through the relay")
    result["offsite_no_delete"] = retention_run(
        tmp / f"sidecar-{n}-no-delete", sidecar, doltgres, store, relay.endpoint, relay, url, n + NO_DELETE_MARGIN, expect_deletion=False
    )
    nd = result["offsite_no_delete"]
    log(f"N={n}: upload {nd['upload_ms']} ms, then a pass deleting nothing: {nd['retention_requests']['requests']} requests "
        f"over {nd.get('retention_relay_span_ms')} ms")  # fmt: skip
    present = len(store.s3.keys(prefix + "entries/"))  # N + 1: keep them all but the oldest after the next upload
    log(f"N={n}: one copy uploaded with keep_last={present} ({present} entries present), through the relay")
    result["offsite_relay"] = retention_run(tmp / f"sidecar-{n}-relay", sidecar, doltgres, store, relay.endpoint, relay, url, present)
    result["offsite_relay"]["present_before"] = present
    log(f"N={n}: upload {result['offsite_relay']['upload_ms']} ms, retention {result['offsite_relay']['retention_ms']} ms, "
        f"{result['offsite_relay']['retention_requests']['requests']} requests")  # fmt: skip
    log(f"N={n}: the same straight to SeaweedFS")
    present = len(store.s3.keys(prefix + "entries/"))
    result["offsite_direct"] = retention_run(tmp / f"sidecar-{n}-direct", sidecar, doltgres, store, store.endpoint, None, url, present)
    result["offsite_direct"]["present_before"] = present
    log(f"N={n}: upload {result['offsite_direct']['upload_ms']} ms, retention {result['offsite_direct']['retention_ms']} ms")
    if n <= CATCH_UP_MAX_N:
        log(f"N={n}: retention turned on late: keep_last={CATCH_UP_KEEP}, through the relay")
        present = len(store.s3.keys(prefix + "entries/"))
        result["catch_up"] = retention_run(tmp / f"sidecar-{n}-catch-up", sidecar, doltgres, store, relay.endpoint, relay, url, CATCH_UP_KEEP)
        result["catch_up"]["present_before"] = present
        log(f"N={n}: retention {result['catch_up']['retention_ms']} ms, {len(result['catch_up']['retention_deleted_entries'])} entries "
            f"and {result['catch_up']['retention_deleted_objects']} objects deleted")  # fmt: skip
    keys = store.s3.keys(prefix)
    result["after"] = {
        "entries": sum(1 for k in keys if k.startswith(prefix + "entries/")),
        "objects": sum(1 for k in keys if k.startswith(prefix + "objects/")),
    }
    return result


# ----------------------------------------------------------------------------------------------
# Report


def fmt_ms(ms) -> str:
    if ms is None:
        return "–"
    return f"{ms / 1000:.2f} s" if ms >= 1000 else f"{ms:.0f} ms"


def counts_text(summary: dict | None) -> str:
    if not summary:
        return "–"
    short = {"GET entries/": "GET manifest", "LIST entries/": "LIST entries", "LIST objects/": "LIST objects",
             "HEAD objects/": "HEAD object", "PUT objects/": "PUT object", "PUT entries/": "PUT manifest",
             "DELETE entries/": "DELETE manifest", "DELETE objects/": "DELETE object"}  # fmt: skip
    return f"**{summary['requests']:,}**: " + ", ".join(f"{v:,} {short.get(k, k)}" for k, v in summary["by_kind"].items())


def mib(kib) -> str:
    return "–" if kib is None else f"{kib / 1024:.0f} MiB"


def write_report(out: Path, report: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "offsite-scale.json").write_text(json.dumps(report, indent=2) + "\n")
    rows = report["results"]
    m, v = report["machine"], report["versions"]
    lines = [
        "# Off-site repository at scale: entries per prefix",
        "",
        "> Figures are from a **shared 2-core machine** (another engineer built and tested in the same checkout meanwhile) with "
        "SeaweedFS on loopback, where a request takes a few milliseconds. Request **counts** carry over to any S3; **times** do not "
        "(a real region adds its round trip to every request).",
        "",
        f"- Run: {report['started']} · `{report['command']}` · {report['duration_min']:.1f} min",
        f"- Machine: {m['cores']} cores ({m['cpu']}), kernel {m['kernel']}, load average {m['load_before']:.2f} before / {m['load_after']:.2f} after",
        f"- Versions: sidecar `{v['sidecar_commit']}` (release build of {v['sidecar_built']}) · {v['doltgres']} · SeaweedFS `{v['seaweedfs']}`",
        f"- Synthetic entries (`scale-N/` prefixes of one bucket): ids formed as the sidecar forms them (`catalog::entry_id`: "
        f"`YYYYMMDDTHHMMSSZ-w<window>`), an hour apart; each manifest names {OBJECTS_PER_ENTRY} objects, "
        f"{OBJECTS_PER_ENTRY - NEW_PER_ENTRY} shared with the entry before and {NEW_PER_ENTRY} new, so a prefix holds 5N + 15 objects; "
        f"each object is {OBJECT_MIN}–{OBJECT_MAX - 1} random bytes in a zstd frame, named by their SHA-256. `databases`, `timings` "
        f"and `doltgres_version` are copied from a real manifest (one copy of a fresh managed Doltgres: {report['template_files']} files, "
        f"{report['template_bytes']:,} bytes pretty-printed); manifests are pretty-printed as the sidecar writes them.",
        "- Off-site encryption (`recipients`) not configured: manifests and objects are plaintext, as in an unencrypted repository.",
        "- Requests are counted by a relay (`run.py`, standard-library Python) between the sidecar and SeaweedFS that forwards "
        "every request unchanged and records it.",
        "",
        "## Measured",
        "",
        "| N entries | objects in prefix | manifest bytes | `backups list --repo` | list requests | list CPU / peak RSS | upload of 1 new entry | upload requests | retention pass deleting nothing (keep_last > entries) | retention pass deleting 1 entry (keep_last = entries before the upload) | its requests | sidecar peak RSS |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        p, li = r["populate"], r["list"]
        rel, direct = r.get("offsite_relay") or {}, r.get("offsite_direct") or {}
        nd = r.get("offsite_no_delete") or {}
        lines.append(
            f"| {r['n']:,} | {p['objects']:,} | {p['manifest_bytes_mean']:,} | "
            f"**{li['wall_s_direct_median']:.2f} s** ({li['wall_s_relay']:.2f} s via relay) | {counts_text(li['requests'])} | "
            f"{li['cpu_s_median']:.2f} s / {mib(li['peak_rss_kib_max'])} | "
            f"**{fmt_ms(direct.get('upload_ms'))}** ({fmt_ms(rel.get('upload_ms'))} via relay): {rel.get('upload_objects', '–')} objects | "
            f"{counts_text(rel.get('upload_requests'))} | "
            f"{fmt_ms(nd.get('retention_relay_span_ms'))} via relay, {counts_text(nd.get('retention_requests'))} | "
            f"**{fmt_ms(direct.get('retention_ms'))}** ({fmt_ms(rel.get('retention_ms'))} via relay): "
            f"{len(rel.get('retention_deleted_entries') or [])} entry, {rel.get('retention_deleted_objects', '–')} objects deleted | "
            f"{counts_text(rel.get('retention_requests'))} | {mib(direct.get('sidecar_peak_rss_kib'))} |"
        )
    lines += [
        "",
        f"- *`backups list --repo`*: `doltgres-sidecar backups list --repo s3://backups/scale-N`, process start to exit, straight to "
        f"SeaweedFS, median of {report['args']['repeat']} runs (CPU = user + system of the process, peak RSS from `wait4`); then once "
        "through the relay, which counted the requests.",
        "- *upload* and *retention*: the real sidecar (`run --control managed` with `[backup.copy.offsite]` on the prefix), one "
        "`backup --action copy`, three times per N, each a fresh sidecar and catalog: (1) through the relay with `keep_last` = entries + "
        f"{NO_DELETE_MARGIN}: the retention pass finds nothing to delete and logs nothing, so its time is the relay's, first to last request "
        "after the upload; (2) through the relay with `keep_last` = the entries present before the upload (N + 1 after run 1): the pass "
        "deletes the oldest entry — the steady state of a repository kept at `keep_last` — and gives the request counts; (3) the same "
        "straight to SeaweedFS, for the bold times. *Upload* = the `ms` field of the sidecar's \"copy entry uploaded off-site\" log "
        "line (bold: run 3); *retention* = from that line to \"off-site retention deleted entries and the objects only they named\" "
        "(the same task, nothing between). The relay's requests are split at the manifest PUT, the upload's last request. "
        "*Sidecar peak RSS*: VmHWM of the sidecar after run 3 (the whole process: proxy, managed Doltgres supervision, upload, retention).",
        f"- The upload's objects are the real entry's: its {report['template_files']} files hold "
        f"{(rows[0].get('offsite_relay') or {}).get('upload_objects', '–')} distinct objects (two empty files share one). Run 1 sent all "
        f"of them; in runs 2 and 3 those identical to an earlier run's (config files, the empty file) were found by HEAD and not sent, "
        "hence 8 HEAD + 5 PUT object + 1 PUT manifest.",
        "",
    ]
    catch = [r for r in rows if r.get("catch_up")]
    if catch:
        lines += [
            "## Turning retention on late (measured)",
            "",
            "A fourth sidecar run on the same prefix, through the relay, with "
            f"`keep_last = {CATCH_UP_KEEP}`: its first retention pass deletes almost everything, manifests and objects in `DeleteObjects` batches of up to 1,000 keys (objects only once older than `prune_grace`).",
            "",
            "| N | entries before the upload | retention pass (via relay) | entries deleted | objects deleted | requests |",
            "|---|---|---|---|---|---|",
        ]
        for r in catch:
            c = r["catch_up"]
            lines.append(
                f"| {r['n']:,} | {c.get('present_before', '–'):,} | **{fmt_ms(c.get('retention_ms'))}** | {len(c.get('retention_deleted_entries') or []):,} | "
                f"{c.get('retention_deleted_objects', 0):,} | {counts_text(c.get('retention_requests'))} |"
            )
        lines.append("")
    lines += ["## Per-request costs here (measured, loopback)", ""]
    lines += [
        "| N | `backups list` per entry | relay ms per manifest GET (list) | retention per entry present | relay ms per GET manifest / LIST page of objects / DELETE (retention) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        li = r["list"]
        rel, direct = r.get("offsite_relay") or {}, r.get("offsite_direct") or {}
        mean = (rel.get("retention_requests") or {}).get("mean_ms_by_kind", {})
        ret_per = (direct.get("retention_ms") or 0) / (direct.get("present_before", r["n"]) + 1) if direct else None
        lines.append(
            f"| {r['n']:,} | {li['wall_s_direct_median'] / r['n'] * 1000:.2f} ms | {li['requests']['mean_ms_by_kind'].get('GET entries/', 0):.2f} | "
            f"{(f'{ret_per:.2f} ms' if ret_per is not None else '–')} | "
            f"{mean.get('GET entries/', 0):.2f} / {mean.get('LIST objects/', 0):.2f} / {mean.get('DELETE objects/', 0):.2f} |"
        )
    lines += ["", report["at_scale_md"], ""]
    if report.get("notes"):
        lines += ["## What still grows with N", ""] + [f"- {n}" for n in report["notes"]] + [""]
    (out / "offsite-scale.md").write_text("\n".join(lines))


def at_scale(rows: list[dict]) -> tuple[str, dict]:
    """The 1,000-server section: what is measured, what is extrapolated from it."""
    big = max(rows, key=lambda r: r["n"])
    n = big["n"]
    li = big["list"]
    rel, direct = big.get("offsite_relay") or {}, big.get("offsite_direct") or {}
    list_per_entry_s = li["wall_s_direct_median"] / n
    ret_per_entry_s = (direct["retention_ms"] / 1000 / (direct.get("present_before", n) + 1)) if direct.get("retention_ms") else None
    upload_requests = (rel.get("upload_requests") or {}).get("requests")
    servers, remote_ms = 1000, 20.0
    data = {"servers": servers, "from_n": n, "list_s_per_entry": list_per_entry_s, "retention_s_per_entry": ret_per_entry_s,
            "assumed_remote_request_ms": remote_ms}  # fmt: skip
    out = [
        "## At 1,000 servers sharing one bucket (a prefix per server)",
        "",
        "**Measured**: one prefix at a time, the request counts and loopback times above. **Extrapolated** (not run): 1,000 such "
        f"prefixes, per-entry costs taken from the N = {n:,} row and scaled linearly (the table above is linear in N from "
        f"{min(r['n'] for r in rows):,} to {n:,}); a remote request time of {remote_ms:.0f} ms (a typical same-region S3 GET; "
        "assumed, not measured) for the *remote* columns.",
        "",
        "Every request the sidecar makes names its own prefix (`ListObjectsV2 prefix=<p>entries/` or `<p>objects/`, keys "
        "`<p>entries/<id>.json`, `<p>objects/<sha256>.zst`): 1,000 servers do not read each other's keys, so one server's costs "
        "depend only on its own N. What they share is the bucket's key count and request rate.",
        "",
        "Formulas (from the code, confirmed by the counts above), K = entries in the prefix, O = objects in it (≈ 5K + 15 here):",
        "",
        "- upload of one entry: one HEAD per object of the entry + one PUT per object missing + one PUT of the manifest — "
        f"independent of K ({upload_requests} requests for the real entry at every N above).",
        "- retention pass (after every upload, when `keep_last` or `max_age` is set): ⌈(K+1)/1000⌉ LIST of entries; with "
        "`keep_last` alone and no more entries than it, nothing else. Otherwise a GET of each manifest the process has not read "
        "yet (all K+1 on its first pass, one, the new entry's, on later ones: manifests never change, so they are remembered) "
        "+ one `DeleteObjects` per 1,000 manifests and per 1,000 objects deleted + ⌈O/1000⌉ LIST of objects. The table below "
        "counts a process's first pass.",
        "- `backups list --repo`: ⌈K/1000⌉ LIST + K GET (every manifest, sequentially).",
        "",
        "| K entries kept per server | objects per server | keys in the bucket (1,000 servers) | retention pass: requests | retention here | retention, remote | `backups list`: requests | `backups list` here | `backups list`, remote | manifest GETs/s bucket-wide, hourly copies |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for kept in (24, 168, 720, 2000, 10000, 24 * 365 * 3):
        objects = NEW_PER_ENTRY * kept + OBJECTS_PER_ENTRY - NEW_PER_ENTRY
        keys = servers * (objects + kept)
        ret_requests = -(-(kept + 1) // 1000) + (kept + 1) + 1 + -(-objects // 1000) + NEW_PER_ENTRY
        list_requests = -(-kept // 1000) + kept
        ret_here = fmt_ms(ret_per_entry_s * (kept + 1) * 1000) if ret_per_entry_s else "–"
        out.append(
            f"| {kept:,} | {objects:,} | {keys / 1e6:.2f} M | {ret_requests:,} | {ret_here} | {ret_requests * remote_ms / 1000:.1f} s | "
            f"{list_requests:,} | {fmt_ms(list_per_entry_s * kept * 1000)} | {list_requests * remote_ms / 1000:.1f} s | "
            f"{servers * (kept + 1) / 3600:.0f} |"
        )
    out += [
        "",
        "What this means:",
        "",
        "- **What grows with N**: a process's first retention pass GETs every manifest of the prefix, one after the other "
        "(`src/offsite/prune.rs`, `prune` → `remembered`), later passes only the new ones; each pass that deletes lists every "
        "object key; `backups list --repo` GETs every manifest (`src/local/mod.rs`, `list_repository`). Nothing else does: the "
        "upload is constant, and so is `restore …/latest` apart from one listing of `entries/` (1 LIST page per 1,000 entries).",
        "- **Without `keep_last` / `max_age` in `[backup.copy.offsite]`** there is no retention pass, but the prefix grows by one entry "
        "and ~the changed objects per copy forever, and `backups list --repo` grows with it (hourly copies: 8,760 entries a year). "
        "With `max_age`, the first pass of a process reads every manifest it keeps.",
        "- **What to set**: `keep_last` bounds K, and with it the first pass after a start: ~K + 10 requests. Hourly "
        "copies with `keep_last = 168` (a week): ~175 requests for that pass, well under a second here and a few seconds against a "
        "remote S3; later passes a handful of requests; ~1 M keys for 1,000 servers. At 10,000 "
        f"entries the first pass is ~{10069 * remote_ms / 60000:.1f} min at {remote_ms:.0f} ms a request, holding the upload "
        "turn (`Uploads::turn`), so an entry copied meanwhile waits for it. Pick `keep_last` from how far back a restore must reach "
        "(with `max_age` for a time bound), and keep it in the hundreds to low thousands.",
        "- **Bucket-wide**: 1,000 prefixes × K entries × (1 + ~5) keys. S3 scales request rates per prefix (AWS documents ≥ 5,500 "
        "GET/s and 3,500 PUT/DELETE/s per partitioned prefix; not measured here), so per-server prefixes spread the load; the "
        "HEADs of uploads and the manifest GETs of each process's first retention pass dominate the request bill.",
    ]
    return "\n".join(out), data


def findings(rows: list[dict]) -> list[str]:
    """What still grows with N, each with the measured figure it rests on."""
    big = max(rows, key=lambda r: r["n"])
    small = min(rows, key=lambda r: r["n"])
    nd = big.get("offsite_no_delete") or {}
    direct = big.get("offsite_direct") or {}
    out = []
    if nd:
        req = nd["retention_requests"]
        out.append(
            f"**A pass with nothing to delete reads no manifest**: with {big['n']:,} entries and `keep_last` above that, the pass "
            f"after the upload made {req['requests']:,} requests ({req['by_kind'].get('GET entries/', 0):,} manifest GETs) over "
            f"{fmt_ms(nd.get('retention_relay_span_ms'))} (via the relay)."
        )
    out.append(
        "**A process's first pass that deletes reads every kept manifest, one at a time**: "
        f"{fmt_ms(direct.get('retention_ms'))} for {big['n']:,} entries here (each run starts a fresh sidecar). Manifests never "
        "change, so later passes of the same process read only the new ones (not measured here)."
    )
    out.append(
        "**The pass holds the upload turn**: `upload_pending` (`src/offsite/background.rs`) takes `uploads.turn` for the upload "
        "and the prune that follows, so an entry copied meanwhile waits for the pass before its upload starts."
    )
    catch = [r for r in rows if r.get("catch_up")]
    if catch:
        c = max(catch, key=lambda r: r["n"])
        cu = c["catch_up"]
        by_kind = cu["retention_requests"]["by_kind"]
        batches = sum(v for k, v in by_kind.items() if k.startswith("POST"))
        out.append(
            f"**Deletes go in batches**: turning `keep_last = {CATCH_UP_KEEP}` on over {cu['present_before']:,} entries took "
            f"{fmt_ms(cu.get('retention_ms'))} here with {batches:,} `DeleteObjects` requests. Objects no entry names are deleted "
            "only once older than `prune_grace` (15 minutes): the synthetic entries' objects were minutes old, so they stay for a "
            "later pass."
        )
    out.append(
        f"**Memory grows with N**: the sidecar's peak RSS after a pass was {mib((small.get('offsite_direct') or {}).get('sidecar_peak_rss_kib'))} "
        f"at N = {small['n']:,} and {mib(direct.get('sidecar_peak_rss_kib'))} at N = {big['n']:,}: it remembers each entry's time "
        "and object keys for later passes. `backups list --repo` peaked at "
        f"{mib(small['list']['peak_rss_kib_max'])} → {mib(big['list']['peak_rss_kib_max'])} (N = {small['n']:,} → {big['n']:,}; "
        "not investigated further)."
    )
    out.append(
        "**One unparseable manifest stops retention** (from reading the code, not exercised here): a kept entry whose manifest does "
        "not parse makes the pass fail (\"unreadable manifest; nothing pruned\"), logged after each upload, until it is dealt with; "
        "an entry gone between the listing and its GET is skipped."
    )
    return out


# ----------------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="N = 100 only")
    p.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",") if x.strip()], default=[100, 1000, 10000], help="entry counts (default 100,1000,10000)")
    p.add_argument("--repeat", type=int, default=3, help="`backups list` runs per N straight to SeaweedFS (default 3)")
    p.add_argument("--out", type=Path, default=REPO / "benches" / "results", help="where offsite-scale.md/.json go")
    p.add_argument("--sidecar-bin", type=Path, help="use this sidecar binary instead of cargo build --release")
    p.add_argument("--no-retention", action="store_true", help="skip the managed-sidecar upload/retention runs")
    p.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (SeaweedFS data, logs)")
    p.add_argument("--report-only", type=Path, metavar="JSON", help="rewrite the report from an earlier offsite-scale.json; run nothing")
    args = p.parse_args(argv)
    if args.quick:
        args.sizes = [100]
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.report_only is not None:
        report = json.loads(args.report_only.read_text())
        report["at_scale_md"], report["at_scale"] = at_scale(report["results"])
        report["notes"] = findings(report["results"])
        write_report(args.out, report)
        log(f"rewrote {args.out / 'offsite-scale.md'} from {args.report_only}")
        return 0
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    tmp = Path(tempfile.mkdtemp(prefix="dgs-offsite-scale-"))
    atexit.register(lambda: None if args.keep_tmp else shutil.rmtree(tmp, ignore_errors=True))
    atexit.register(Proc.stop_all)
    started_wall, started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), time.monotonic()
    load_before = os.getloadavg()[0]
    relay = None
    try:
        sidecar = sidecar_binary(args, tmp)
        doltgres = doltgres_binary()
        log("starting SeaweedFS")
        store = SeaweedFs(tmp / "seaweedfs")
        relay = Relay(("127.0.0.1", store.port))
        threading.Thread(target=relay.serve_forever, daemon=True).start()
        log("shape probe: one real copy entry")
        template = shape_probe(tmp / "probe", sidecar, doltgres, store)
        log(f"real manifest: {len(template.get('files', []))} files, databases {[d['name'] for d in template.get('databases', [])]}")
        results = []
        for n in args.sizes:
            results.append(run_n(n, args, tmp, store, relay, sidecar, doltgres, template))
        at_scale_md, at_scale_data = at_scale(results)
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), "unknown")
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], stdout=subprocess.PIPE, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no", "src"], stdout=subprocess.PIPE, text=True).stdout.strip()
        report = {
            "started": started_wall,
            "command": "python3 -m benches.offsite_scale.run " + " ".join(argv),
            "duration_min": (time.monotonic() - started) / 60,
            "args": {"sizes": args.sizes, "repeat": args.repeat, "quick": args.quick},
            "machine": {"cores": os.cpu_count(), "cpu": cpu, "kernel": platform.release(), "load_before": load_before, "load_after": os.getloadavg()[0]},
            "versions": {
                "sidecar_commit": commit + ("+dirty" if dirty else ""),
                "sidecar_built": time.strftime("%Y-%m-%d %H:%M", time.localtime(sidecar.stat().st_mtime)),
                "doltgres": subprocess.run([str(doltgres), "--version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True).stdout.strip().splitlines()[0],
                "seaweedfs": store.version(),
            },
            "template_files": len(template.get("files", [])),
            "template_bytes": len(json.dumps(template, indent=2)),
            "template": template,
            "results": results,
            "at_scale": at_scale_data,
            "at_scale_md": at_scale_md,
            "notes": findings(results),
        }
        write_report(args.out, report)
        log(f"wrote {args.out / 'offsite-scale.md'} and offsite-scale.json")
        return 0
    finally:
        if relay is not None:
            relay.shutdown()
            relay.server_close()
        Proc.stop_all()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
