//! Files and directories only the sidecar's user may read (copies of a server's files hold its
//! users' verifiers), and the hex form of a digest. A leaf.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

/// Creates a directory and its missing parents with mode 0700: copies of a server's files
/// (its users' verifiers among them) are for the sidecar's user alone.
pub fn private_dir_all(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Writes `bytes` to a file of mode 0600 (a manifest, a verification record).
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    private_file(path)?.write_all(bytes)
}

/// Creates (or truncates) a file with mode 0600, for the same reason.
pub fn private_file(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

/// A digest as lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Copies what `input` reads into a new private file at `dest`, hashing it on the way, in pieces
/// of `buf_size` bytes, and fsyncs it. Returns the size and the SHA-256, in hex.
pub fn copy_hashed(
    input: &mut impl Read,
    dest: &Path,
    buf_size: usize,
) -> io::Result<(u64, String)> {
    let mut output = private_file(dest)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; buf_size];
    let mut size = 0u64;
    loop {
        let n = input.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        output.write_all(&buf[..n])?;
        size += n as u64;
    }
    output.sync_all()?;
    Ok((size, hex(&hasher.finalize())))
}
