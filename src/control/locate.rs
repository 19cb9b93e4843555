//! Where a program named by a path or a bare name is: the file the operating system would start
//! for it (a bare name is looked up on `PATH`, as `execvp` does), as an absolute path, so that
//! another process in another directory can start the same one.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The absolute path of the executable file `program` names, if there is one.
pub fn locate(program: &Path) -> Option<PathBuf> {
    let bare = program.components().count() == 1 && !program.is_absolute();
    if !bare {
        return match executable(program) {
            true => std::path::absolute(program).ok(),
            false => None,
        };
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| executable(candidate))
        .and_then(|found| std::path::absolute(found).ok())
}

fn executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_looked_up_on_path_and_paths_made_absolute() {
        let sh = locate(Path::new("sh")).expect("sh on PATH");
        assert!(sh.is_absolute() && sh.ends_with("sh"), "{}", sh.display());
        assert_eq!(locate(Path::new("/bin/sh")), Some(PathBuf::from("/bin/sh")));
        assert_eq!(locate(Path::new("no-such-program-here")), None);
        assert_eq!(locate(Path::new("/etc/hostname-not-there")), None);
        assert_eq!(
            locate(Path::new("/etc")),
            None,
            "a directory is not a program"
        );
    }
}
