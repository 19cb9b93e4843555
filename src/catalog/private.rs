//! Files and directories only the sidecar's user may read (copies of a server's files hold its
//! users' verifiers), and the hex form of a digest. A leaf.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

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
