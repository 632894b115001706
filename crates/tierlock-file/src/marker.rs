//! The directory's mode file: which locking mode the processes using a lock directory agreed
//! on. Processes in `flock` mode and in lease mode would not exclude each other (one locks the
//! `.lock` files, the other renames state files in `.lease` directories), so the first provider
//! on a directory records its mode and every later one checks it.

use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;
use std::time::Duration;

use crate::error::FileError;

/// The name of the mode file in a lock directory, which records the directory's locking mode
/// (`flock` or `lease` on its first line). It starts with `.`, which no lock file does.
pub const MARKER: &str = ".tierlock-mode";

/// How long a reader waits for a mode file that its creator has not written yet.
const WRITE_PATIENCE: Duration = Duration::from_secs(2);

/// Checks that `dir` is used in `mode` (`"flock"` or `"lease"`), recording it if the directory
/// has no mode yet.
pub(crate) fn check(dir: &Path, mode: &'static str, file_mode: u32) -> Result<(), FileError> {
    let path = dir.join(MARKER);
    let io_error = |source| FileError::ModeFile {
        path: path.clone(),
        source,
    };
    let mut waited = Duration::ZERO;
    loop {
        match read(&path) {
            Ok(recorded) => {
                let recorded = recorded.trim();
                // Empty: its creator is about to write it.
                if recorded.is_empty() && waited < WRITE_PATIENCE {
                    std::thread::sleep(Duration::from_millis(10));
                    waited += Duration::from_millis(10);
                    continue;
                }
                let word = recorded.lines().next().unwrap_or("").trim();
                if word == mode {
                    return Ok(());
                }
                return Err(FileError::ModeMismatch {
                    dir: dir.to_path_buf(),
                    configured: mode,
                    recorded: word.chars().take(40).collect(),
                });
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                match create(&path, mode, file_mode) {
                    Ok(()) => return Ok(()),
                    // Another process created it first: read theirs.
                    Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(err) => return Err(io_error(err)),
                }
            }
            Err(err) => return Err(io_error(err)),
        }
    }
}

/// The mode file's contents, never following a symbolic link.
fn read(path: &Path) -> io::Result<String> {
    let mut options = fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NOFOLLOW);
    let mut text = String::new();
    options
        .open(path)?
        .take(4096)
        .read_to_string(&mut text)
        .map(|_| text)
}

fn create(path: &Path, mode: &str, file_mode: u32) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, file_mode);
    let mut file = options.open(path)?;
    writeln!(
        file,
        "{mode}\n# The locking mode of every tierlock process using this directory. Mixing modes \
         would break exclusion: change it only with no process using the directory."
    )?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_mode_sticks() {
        let tmp = tempfile::tempdir().unwrap();
        check(tmp.path(), "lease", 0o660).unwrap();
        check(tmp.path(), "lease", 0o660).unwrap();
        match check(tmp.path(), "flock", 0o660) {
            Err(FileError::ModeMismatch {
                configured,
                recorded,
                ..
            }) => assert_eq!((configured, recorded.as_str()), ("flock", "lease")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn garbage_is_a_mismatch_and_symlinks_are_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join(MARKER), "§$%\n").unwrap();
        assert!(matches!(
            check(tmp.path(), "flock", 0o660),
            Err(FileError::ModeMismatch { .. })
        ));
        #[cfg(unix)]
        {
            let other = tempfile::tempdir().unwrap();
            fs::write(other.path().join("target"), "flock\n").unwrap();
            std::os::unix::fs::symlink(other.path().join("target"), other.path().join(MARKER))
                .unwrap();
            assert!(matches!(
                check(other.path(), "flock", 0o660),
                Err(FileError::ModeFile { .. })
            ));
        }
    }
}
