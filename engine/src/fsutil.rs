//! Atomic file output: write to a temporary file in the target directory, then rename, so a
//! failure never leaves a partial file behind; several outputs of one command appear together
//! or not at all.

use crate::error::{display_path, PoseError};
use crate::limits::MAX_STREAM_BYTES;
use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` atomically. On error nothing is left at `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PoseError> {
    write_all_or_none(&[(path, bytes)])
}

/// Writes several files so that all of them appear or none does: every file is first written
/// to a temporary file beside its target (a full disk or a read-only folder fails here, and the
/// temporary files are removed), then all are renamed into place. A symlink is written through
/// (its target replaced, the link kept); a device, FIFO or socket is written into in place,
/// after the others are staged.
pub fn write_all_or_none(files: &[(&Path, &[u8])]) -> Result<(), PoseError> {
    let mut staged = Vec::with_capacity(files.len());
    for (path, bytes) in files {
        staged.push(stage(path, bytes)?);
    }
    for s in staged {
        s.commit()?;
    }
    Ok(())
}

/// A file ready to be put in place.
enum Staged<'a> {
    /// A temporary file holding the bytes, renamed over `target` on commit.
    Temp {
        /// Removes the temporary file if the process is interrupted before the rename.
        _guard: interrupt::Registered,
        tmp: tempfile::NamedTempFile,
        target: std::path::PathBuf,
        shown: String,
    },
    /// A special file, written into on commit.
    InPlace {
        target: std::path::PathBuf,
        bytes: &'a [u8],
        shown: String,
    },
}

fn write_error(file: &str, msg: impl ToString) -> PoseError {
    PoseError::Write {
        file: file.to_string(),
        msg: msg.to_string(),
    }
}

fn stage<'a>(path: &Path, bytes: &'a [u8]) -> Result<Staged<'a>, PoseError> {
    let shown = display_path(path);
    let err = |msg: String| write_error(&shown, msg);
    if path.is_dir() {
        return Err(err("is a directory".into()));
    }
    let target = resolve_links(path).map_err(|e| err(e.to_string()))?;
    if let Ok(meta) = std::fs::metadata(&target) {
        if !meta.is_file() {
            return Ok(Staged::InPlace {
                target,
                bytes,
                shown,
            });
        }
    }
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(err(format!("directory {} does not exist", dir.display())));
    }
    let mut tmp = tempfile::Builder::new()
        .prefix(".skeleguide-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| err(e.to_string()))?;
    tmp.write_all(bytes).map_err(|e| err(e.to_string()))?;
    // The temporary file is created private (0600); give the result the permissions a plain
    // create would (or keep those of the file it replaces).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&target)
            .map(|m| m.permissions().mode())
            .unwrap_or(0o644);
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|e| err(e.to_string()))?;
    }
    tmp.as_file().sync_all().map_err(|e| err(e.to_string()))?;
    Ok(Staged::Temp {
        _guard: interrupt::register(tmp.path()),
        tmp,
        target,
        shown,
    })
}

impl Staged<'_> {
    fn commit(self) -> Result<(), PoseError> {
        match self {
            Staged::Temp {
                tmp, target, shown, ..
            } => tmp
                .persist(&target)
                .map(|_| ())
                .map_err(|e| write_error(&shown, e.error)),
            Staged::InPlace {
                target,
                bytes,
                shown,
            } => std::fs::OpenOptions::new()
                .write(true)
                .open(&target)
                .and_then(|mut f| f.write_all(bytes))
                .map_err(|e| write_error(&shown, e)),
        }
    }
}

/// `path` with every symlink along its final component followed (relative targets against the
/// link's folder), so writing replaces the file a link points to, never the link. Gives up
/// after 40 links, as the kernel does.
pub fn resolve_links(path: &Path) -> std::io::Result<std::path::PathBuf> {
    let mut p = path.to_path_buf();
    for _ in 0..40 {
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let target = std::fs::read_link(&p)?;
                p = match p.parent() {
                    Some(dir) if target.is_relative() => dir.join(target),
                    _ => target,
                };
            }
            _ => return Ok(p),
        }
    }
    Err(std::io::Error::other(format!(
        "{}: too many levels of symbolic links",
        path.display()
    )))
}

/// The bytes of the input file `path`, at most `limit` of them. A stream (`/dev/zero`, a pipe)
/// is read only up to the smaller of `limit` and [`MAX_STREAM_BYTES`], and a FIFO nobody writes
/// to reads as empty instead of blocking: it is opened without waiting for a writer. Errors
/// name no file: callers add it.
pub fn read_limited(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let file = open_input(path)?;
    let meta = file.metadata()?;
    if meta.is_dir() {
        return Err(std::io::Error::other("is a directory"));
    }
    if meta.is_file() && meta.len() > limit {
        return Err(std::io::Error::other(format!(
            "is {} bytes, over the limit of {limit}",
            meta.len()
        )));
    }
    let (limit, mut bytes) = if meta.is_file() {
        (limit, Vec::with_capacity(meta.len() as usize + 1))
    } else {
        (limit.min(MAX_STREAM_BYTES), Vec::new())
    };
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::other(format!(
            "is longer than the limit of {limit} bytes"
        )));
    }
    Ok(bytes)
}

/// [`read_limited`] as UTF-8 text, a leading byte-order mark dropped.
pub fn read_text_limited(path: &Path, limit: u64) -> std::io::Result<String> {
    let bytes = read_limited(path, limit)?;
    let text = String::from_utf8(bytes)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.utf8_error()))?;
    Ok(match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_string(),
        None => text,
    })
}

/// Opens `path` for reading without blocking on a FIFO that has no writer, then makes reads
/// blocking again.
#[cfg(unix)]
fn open_input(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let fd = file.as_raw_fd();
    // SAFETY: `fd` is the open descriptor `file` owns; F_GETFL/F_SETFL only read and set its
    // status flags.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 || libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(file)
}

#[cfg(not(unix))]
fn open_input(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::File::open(path)
}

/// Makes writing to a closed pipe end the process quietly, as it does other command-line tools
/// (`skeleguide bench | head`): Rust ignores SIGPIPE, so `print!` would panic instead. An
/// output file is never half-written either way (they are written atomically).
pub fn quiet_broken_pipe() {
    // SAFETY: restoring a signal's default disposition has no preconditions.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Removing in-flight temporary files when the process is interrupted (SIGINT, SIGTERM, SIGHUP;
/// SIGPIPE once `quiet_broken_pipe` gave it its default action)
/// instead of leaving `.skeleguide-*.tmp` behind. The handler only reads a fixed table of
/// C strings and calls `unlink`, both async-signal-safe; then the signal's default action runs,
/// so the exit status still says "interrupted". A `kill -9` cannot be caught: its leftovers are
/// hidden, dot-named files that readers of an output folder ignore.
pub mod interrupt {
    use std::ffi::CString;
    use std::path::Path;
    use std::sync::atomic::{AtomicPtr, Ordering};
    use std::sync::Once;

    const SLOTS: usize = 64;
    #[allow(clippy::declare_interior_mutable_const)]
    const EMPTY: AtomicPtr<libc::c_char> = AtomicPtr::new(std::ptr::null_mut());
    static PENDING: [AtomicPtr<libc::c_char>; SLOTS] = [EMPTY; SLOTS];
    static INSTALL: Once = Once::new();

    /// A temporary file removed on interruption until this is dropped.
    #[derive(Debug)]
    pub struct Registered(Option<usize>);

    /// Registers `path` for removal on interruption (installing the handler on first use).
    /// When all slots are taken the file is simply not registered.
    pub fn register(path: &Path) -> Registered {
        install();
        use std::os::unix::ffi::OsStrExt;
        let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
            return Registered(None);
        };
        let raw = c.into_raw();
        for (i, slot) in PENDING.iter().enumerate() {
            if slot
                .compare_exchange(
                    std::ptr::null_mut(),
                    raw,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
            {
                return Registered(Some(i));
            }
        }
        // SAFETY: `raw` came from `CString::into_raw` above and was not stored anywhere.
        drop(unsafe { CString::from_raw(raw) });
        Registered(None)
    }

    impl Drop for Registered {
        fn drop(&mut self) {
            if let Some(i) = self.0 {
                let raw = PENDING[i].swap(std::ptr::null_mut(), Ordering::AcqRel);
                if !raw.is_null() {
                    // SAFETY: only `register` stores pointers, each from `CString::into_raw`,
                    // and the swap above took this one out of the table.
                    drop(unsafe { CString::from_raw(raw) });
                }
            }
        }
    }

    /// Installs the handler for SIGINT, SIGTERM, SIGHUP and SIGPIPE where their action is the
    /// default.
    fn install() {
        INSTALL.call_once(|| {
            // SIGPIPE too, where `quiet_broken_pipe` restored its default action.
            for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGPIPE] {
                // SAFETY: querying then setting a signal disposition; `on_signal` only does
                // async-signal-safe work.
                unsafe {
                    let mut old: libc::sigaction = std::mem::zeroed();
                    if libc::sigaction(sig, std::ptr::null(), &mut old) != 0
                        || old.sa_sigaction != libc::SIG_DFL
                    {
                        continue;
                    }
                    let mut act: libc::sigaction = std::mem::zeroed();
                    act.sa_sigaction = on_signal as *const () as usize;
                    libc::sigemptyset(&mut act.sa_mask);
                    act.sa_flags = libc::SA_RESETHAND;
                    libc::sigaction(sig, &act, std::ptr::null_mut());
                }
            }
        });
    }

    extern "C" fn on_signal(sig: libc::c_int) {
        for slot in &PENDING {
            let raw = slot.swap(std::ptr::null_mut(), Ordering::AcqRel);
            if !raw.is_null() {
                // SAFETY: a NUL-terminated path stored by `register`; `unlink` is
                // async-signal-safe. The string is leaked: the process is about to end.
                unsafe { libc::unlink(raw) };
            }
        }
        // SA_RESETHAND restored the default action: raising again ends the process with it.
        // SAFETY: `raise` is async-signal-safe.
        unsafe { libc::raise(sig) };
    }
}
