//! Verified, resumable downloads of model files over HTTP(S).
//!
//! Bytes go to `<models dir>/.partial/<name>.part`; a dropped connection keeps them, and the next
//! attempt asks the server for the rest with a `Range` request (after hashing the bytes already on
//! disk, so the final checksum covers the whole file). Only a file whose sha256 (or, where no
//! checksum is known, size) matches is renamed atomically into the models folder.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};

pub use crate::error::DownloadError;
use crate::paths::partial_dir;

const CHUNK: usize = 256 * 1024;

/// What the downloaded file must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expected {
    /// sha256 of the whole file, 64 hex digits (any case).
    pub sha256: Option<String>,
    /// Size of the whole file in bytes.
    pub size: Option<u64>,
}

/// One download.
#[derive(Debug, Clone)]
pub struct DownloadRequest {
    /// `http://` or `https://` URL of the file.
    pub url: String,
    /// File name in the models folder; default: the last path segment of the URL.
    pub file_name: Option<String>,
    /// What the file must match. At least one of sha256 and size is required.
    pub expected: Expected,
}

/// Progress of a download, reported through the callback of [`download`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownloadEvent {
    /// Hashing the bytes of an earlier attempt before asking for the rest.
    CheckingPartial { bytes: u64 },
    /// The server answered; the download continues from `resume_from`.
    Connected {
        resume_from: u64,
        total: Option<u64>,
    },
    /// The server ignored the `Range` request and sent the whole file; the partial bytes were dropped.
    ServerIgnoredRange { discarded: u64 },
    /// Bytes on disk so far (including resumed bytes).
    Progress { done: u64, total: Option<u64> },
}

/// A finished, verified download, already in the models folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    /// Final path inside the models folder.
    pub path: PathBuf,
    /// Size in bytes.
    pub size: u64,
    /// sha256 of the file, lowercase hex.
    pub sha256: String,
    /// True when a sha256 was given and matched; false when only the size was checked.
    pub checksum_verified: bool,
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> DownloadError + 'a {
    move |source| DownloadError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Checks that `url` is an absolute `http`/`https` URL with a host.
///
/// Fails with [`DownloadError::UnsupportedScheme`] or [`DownloadError::InvalidUrl`].
pub fn check_url(url: &str) -> Result<(), DownloadError> {
    let invalid = |reason: &str| DownloadError::InvalidUrl {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let Some((scheme, _)) = url.split_once("://") else {
        return Err(invalid(
            "it is not an absolute URL (expected https://host/path)",
        ));
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(DownloadError::UnsupportedScheme {
            url: url.to_string(),
            scheme: scheme.to_string(),
        });
    }
    let uri: ureq::http::Uri = url.parse().map_err(|e| invalid(&format!("{e}")))?;
    match uri.host() {
        Some(h) if !h.is_empty() => Ok(()),
        _ => Err(invalid("it has no host")),
    }
}

/// The file name a URL downloads to: its last path segment, without query or fragment.
///
/// Fails when that segment is not a plain `.gguf` file name (see [`check_file_name`]).
pub fn file_name_from_url(url: &str) -> Result<String, DownloadError> {
    let without_query = url.split(['?', '#']).next().unwrap_or(url);
    let after_scheme = without_query
        .split_once("://")
        .map_or(without_query, |(_, rest)| rest);
    let name = after_scheme
        .split_once('/')
        .map_or("", |(_, path)| path)
        .rsplit('/')
        .next()
        .unwrap_or("");
    check_file_name(name)?;
    Ok(name.to_string())
}

/// Checks that `name` is a plain file name ending in `.gguf`: letters, digits, `.`, `_`, `-`, `+`,
/// not starting with a dot.
///
/// Fails with [`DownloadError::BadFileName`].
pub fn check_file_name(name: &str) -> Result<(), DownloadError> {
    let bad = |reason: &str| DownloadError::BadFileName {
        name: name.to_string(),
        reason: reason.to_string(),
    };
    if name.is_empty() {
        return Err(bad(
            "the URL does not end in a file name; pass --name FILE.gguf",
        ));
    }
    if name.starts_with('.') {
        return Err(bad("it must not start with a dot"));
    }
    if name.len() > 200 {
        return Err(bad("it is longer than 200 bytes"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+'))
    {
        return Err(bad(
            "only letters, digits, '.', '_', '-' and '+' are allowed; pass --name FILE.gguf",
        ));
    }
    if !name.to_ascii_lowercase().ends_with(".gguf") {
        return Err(bad("it must end in .gguf"));
    }
    Ok(())
}

/// Normalises a sha256 given by the user to lowercase hex.
///
/// Fails with [`DownloadError::BadChecksum`] unless it is 64 hexadecimal digits.
pub fn parse_sha256(given: &str) -> Result<String, DownloadError> {
    let trimmed = given.trim();
    if trimmed.len() == 64 && trimmed.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(trimmed.to_ascii_lowercase())
    } else {
        Err(DownloadError::BadChecksum {
            given: given.to_string(),
        })
    }
}

/// Downloads `request.url` into `models_dir`, resuming an earlier partial download of the same
/// file, verifying it, and renaming it into place atomically.
///
/// `on_event` is called with progress; setting `cancel` stops the download at the next chunk
/// (the partial bytes are kept for a later resume).
///
/// Fails with a [`DownloadError`] for a bad URL, file name or checksum, an existing destination,
/// an HTTP error status (404 and others), a failed or dropped connection (the partial file is kept),
/// a full disk (the partial file is kept), a checksum or size mismatch (the partial file is deleted),
/// cancellation, or a local I/O error.
pub fn download(
    models_dir: &Path,
    request: &DownloadRequest,
    cancel: &AtomicBool,
    on_event: &mut dyn FnMut(&DownloadEvent),
) -> Result<Downloaded, DownloadError> {
    download_authorized(models_dir, request, None, cancel, on_event)
}

/// [`download`] with an `Authorization` header value (for example `Bearer TOKEN`) sent to the
/// URL. The header is never sent on after a redirect (the hub redirects to storage that needs no
/// token), and it never appears in an error or event.
///
/// Fails like [`download`].
pub fn download_authorized(
    models_dir: &Path,
    request: &DownloadRequest,
    authorization: Option<&str>,
    cancel: &AtomicBool,
    on_event: &mut dyn FnMut(&DownloadEvent),
) -> Result<Downloaded, DownloadError> {
    let job = Job::prepare(models_dir, request)?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .user_agent(concat!("canopy/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let mut restarted_after_416 = false;
    loop {
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&job.partial)
            .map_err(io_err("cannot open", &job.partial))?;
        let mut hasher = Sha256::new();
        let mut done = hash_existing(&mut file, &job.partial, &mut hasher, on_event)?;

        let mut call = agent.get(job.url);
        if let Some(value) = authorization {
            call = call.header("Authorization", value);
        }
        if done > 0 {
            call = call.header("Range", format!("bytes={done}-"));
        }
        let response = call.call().map_err(|e| connect_error(job.url, e))?;
        let total = match job.answer(&response, done)? {
            Answer::Bytes { total } => total,
            Answer::Whole { total } => {
                if done > 0 {
                    on_event(&DownloadEvent::ServerIgnoredRange { discarded: done });
                    file.set_len(0)
                        .and_then(|()| file.seek(SeekFrom::Start(0)).map(|_| ()))
                        .map_err(io_err("cannot truncate", &job.partial))?;
                    hasher = Sha256::new();
                    done = 0;
                }
                total
            }
            Answer::AlreadyComplete => {
                drop(file);
                return job.finish(hasher, done);
            }
            Answer::Restart if restarted_after_416 => {
                return Err(DownloadError::BadResponse {
                    url: job.url.to_string(),
                    reason: "416 Range Not Satisfiable even for a fresh download".to_string(),
                });
            }
            Answer::Restart => {
                restarted_after_416 = true;
                drop(file);
                remove_if_exists(&job.partial)?;
                continue;
            }
        };
        let total = job.check_total(total, done)?;
        on_event(&DownloadEvent::Connected {
            resume_from: done,
            total,
        });
        let mut reader = response.into_body().into_reader();
        let received = Receiving {
            file: &mut file,
            hasher: &mut hasher,
            done,
            total,
        };
        done = job.receive(received, &mut reader, cancel, on_event)?;
        drop(file);
        return job.finish(hasher, done);
    }
}

/// One download's names and expectations, checked before the first byte.
struct Job<'a> {
    url: &'a str,
    dest: PathBuf,
    partial_root: PathBuf,
    partial: PathBuf,
    stamp: PathBuf,
    expected_sha: Option<String>,
    expected_size: Option<u64>,
}

/// What a server's answer to a (range) request means for the partial file.
enum Answer {
    /// 206: the bytes after the partial file's, of a file of `total` bytes when known.
    Bytes { total: Option<u64> },
    /// 200: the whole file, whatever was asked.
    Whole { total: Option<u64> },
    /// 416 for a partial file exactly as long as the file: nothing is left to fetch.
    AlreadyComplete,
    /// 416 for a partial file longer than the file now on the server: start again.
    Restart,
}

/// The partial file being written, its hash so far and its length.
struct Receiving<'f> {
    file: &'f mut File,
    hasher: &'f mut Sha256,
    done: u64,
    total: Option<u64>,
}

impl<'a> Job<'a> {
    /// Checks the request and claims the partial file: one from another URL or checksum is not
    /// ours to continue, so it is dropped.
    fn prepare(models_dir: &Path, request: &'a DownloadRequest) -> Result<Job<'a>, DownloadError> {
        let url = request.url.as_str();
        check_url(url)?;
        let name = match &request.file_name {
            Some(n) => {
                check_file_name(n)?;
                n.clone()
            }
            None => file_name_from_url(url)?,
        };
        let expected_sha = request
            .expected
            .sha256
            .as_deref()
            .map(parse_sha256)
            .transpose()?;
        if expected_sha.is_none() && request.expected.size.is_none() {
            return Err(DownloadError::NothingToVerify);
        }
        let dest = models_dir.join(&name);
        if dest.exists() {
            return Err(DownloadError::Exists { path: dest });
        }
        let partial_root = partial_dir(models_dir);
        fs::create_dir_all(&partial_root).map_err(io_err("cannot create", &partial_root))?;
        let partial = partial_root.join(format!("{name}.part"));
        let stamp = partial_root.join(format!("{name}.part.source"));
        let identity = format!("{url}\n{}\n", expected_sha.as_deref().unwrap_or("-"));
        match fs::read_to_string(&stamp) {
            Ok(previous) if previous == identity => {}
            _ => {
                remove_if_exists(&partial)?;
                fs::write(&stamp, &identity).map_err(io_err("cannot write", &stamp))?;
            }
        }
        Ok(Job {
            url,
            dest,
            partial_root,
            partial,
            stamp,
            expected_sha,
            expected_size: request.expected.size,
        })
    }

    /// Reads the status and range headers of the answer to a request for the bytes from `done`.
    fn answer(
        &self,
        response: &ureq::http::Response<ureq::Body>,
        done: u64,
    ) -> Result<Answer, DownloadError> {
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let content_length = header("content-length").and_then(|v| v.trim().parse::<u64>().ok());
        let bad = |reason: String| DownloadError::BadResponse {
            url: self.url.to_string(),
            reason,
        };
        match response.status().as_u16() {
            206 => {
                let range = header("content-range").unwrap_or_default();
                let (start, total) = parse_content_range(&range).ok_or_else(|| {
                    bad(format!("206 with an unreadable Content-Range {range:?}"))
                })?;
                if start != done {
                    return Err(bad(format!(
                        "asked for bytes from {done} but got bytes from {start}"
                    )));
                }
                Ok(Answer::Bytes {
                    total: total.or(content_length.map(|l| done + l)),
                })
            }
            200 => Ok(Answer::Whole {
                total: content_length,
            }),
            416 if done > 0 => {
                // The server has no bytes after ours: either the partial file is complete, or it
                // is longer than the file now on the server.
                let range = header("content-range").unwrap_or_default();
                let server_total = range
                    .trim()
                    .strip_prefix("bytes */")
                    .and_then(|t| t.trim().parse::<u64>().ok());
                Ok(if server_total == Some(done) {
                    Answer::AlreadyComplete
                } else {
                    Answer::Restart
                })
            }
            404 => Err(DownloadError::NotFound {
                url: self.url.to_string(),
            }),
            code => Err(DownloadError::Status {
                url: self.url.to_string(),
                code,
            }),
        }
    }

    /// The file's size as the server says it, checked against the expected size, and the free
    /// disk space checked against what is left to fetch.
    fn check_total(&self, total: Option<u64>, done: u64) -> Result<Option<u64>, DownloadError> {
        if let (Some(total), Some(size)) = (total, self.expected_size) {
            if total != size {
                return Err(DownloadError::SizeMismatch {
                    url: self.url.to_string(),
                    expected: size,
                    actual: total,
                });
            }
        }
        let total = total.or(self.expected_size);
        if let Some(total) = total {
            let needed = total.saturating_sub(done);
            if let Some(available) = available_space(&self.partial_root) {
                if available < needed {
                    return Err(DownloadError::DiskFull {
                        partial: self.partial.clone(),
                        needed,
                        available,
                    });
                }
            }
        }
        Ok(total)
    }

    /// Appends the body to the partial file until it ends, a cancel or a dropped connection
    /// (the bytes so far are kept and flushed), and returns the file's length.
    fn receive(
        &self,
        to: Receiving<'_>,
        reader: &mut dyn Read,
        cancel: &AtomicBool,
        on_event: &mut dyn FnMut(&DownloadEvent),
    ) -> Result<u64, DownloadError> {
        let Receiving {
            file,
            hasher,
            mut done,
            total,
        } = to;
        let partial = || self.partial.clone();
        let mut buf = vec![0u8; CHUNK];
        loop {
            if cancel.load(Ordering::Relaxed) {
                let _ = file.sync_all();
                return Err(DownloadError::Cancelled { partial: partial() });
            }
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let _ = file.sync_all();
                    return Err(DownloadError::Dropped {
                        done,
                        total,
                        reason: e.to_string(),
                        partial: partial(),
                    });
                }
            };
            if let Err(e) = file.write_all(&buf[..n]) {
                if is_disk_full(&e) {
                    return Err(DownloadError::DiskFullWhileWriting { partial: partial() });
                }
                return Err(io_err("cannot write", &self.partial)(e));
            }
            hasher.update(&buf[..n]);
            done += n as u64;
            on_event(&DownloadEvent::Progress { done, total });
        }
        if let Some(total) = total {
            if done < total {
                let _ = file.sync_all();
                return Err(DownloadError::Dropped {
                    done,
                    total: Some(total),
                    reason: "the server closed the connection early".to_string(),
                    partial: partial(),
                });
            }
        }
        if let Err(e) = file.sync_all() {
            if is_disk_full(&e) {
                return Err(DownloadError::DiskFullWhileWriting { partial: partial() });
            }
            return Err(io_err("cannot flush", &self.partial)(e));
        }
        Ok(done)
    }

    fn finish(&self, hasher: Sha256, done: u64) -> Result<Downloaded, DownloadError> {
        finish(
            self.url,
            &self.partial,
            &self.stamp,
            &self.dest,
            hasher,
            done,
            self.expected_sha.as_deref(),
            self.expected_size,
        )
    }
}

/// Verifies the finished partial file and renames it to `dest`.
#[allow(clippy::too_many_arguments)]
fn finish(
    url: &str,
    partial: &Path,
    stamp: &Path,
    dest: &Path,
    hasher: Sha256,
    size: u64,
    expected_sha: Option<&str>,
    expected_size: Option<u64>,
) -> Result<Downloaded, DownloadError> {
    let actual = hex::encode(hasher.finalize());
    if let Some(expected) = expected_size {
        if expected != size {
            remove_if_exists(partial)?;
            remove_if_exists(stamp)?;
            return Err(DownloadError::SizeMismatch {
                url: url.to_string(),
                expected,
                actual: size,
            });
        }
    }
    if let Some(expected) = expected_sha {
        if expected != actual {
            remove_if_exists(partial)?;
            remove_if_exists(stamp)?;
            return Err(DownloadError::ChecksumMismatch {
                url: url.to_string(),
                expected: expected.to_string(),
                actual,
            });
        }
    }
    if dest.exists() {
        return Err(DownloadError::Exists {
            path: dest.to_path_buf(),
        });
    }
    fs::rename(partial, dest).map_err(io_err("cannot move the download to", dest))?;
    remove_if_exists(stamp)?;
    if let Some(dir) = dest.parent() {
        // Make the rename durable; a failure here only weakens crash safety, so it is not fatal.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(Downloaded {
        path: dest.to_path_buf(),
        size,
        sha256: actual,
        checksum_verified: expected_sha.is_some(),
    })
}

/// Feeds the bytes already in `file` to `hasher` and leaves the cursor at the end.
fn hash_existing(
    file: &mut File,
    path: &Path,
    hasher: &mut Sha256,
    on_event: &mut dyn FnMut(&DownloadEvent),
) -> Result<u64, DownloadError> {
    let len = file.metadata().map_err(io_err("cannot stat", path))?.len();
    if len == 0 {
        return Ok(0);
    }
    on_event(&DownloadEvent::CheckingPartial { bytes: len });
    let mut buf = vec![0u8; CHUNK];
    let mut done = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(io_err("cannot read", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        done += n as u64;
    }
    Ok(done)
}

/// Parses `bytes START-END/TOTAL` (TOTAL may be `*`) into (START, TOTAL).
fn parse_content_range(value: &str) -> Option<(u64, Option<u64>)> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let start: u64 = start.trim().parse().ok()?;
    let end: u64 = end.trim().parse().ok()?;
    if end < start {
        return None;
    }
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse::<u64>().ok()?),
    };
    Some((start, total))
}

fn connect_error(url: &str, err: ureq::Error) -> DownloadError {
    match err {
        ureq::Error::BadUri(reason) => DownloadError::InvalidUrl {
            url: url.to_string(),
            reason,
        },
        ureq::Error::HostNotFound => DownloadError::Connect {
            url: url.to_string(),
            reason: "host not found".to_string(),
        },
        other => DownloadError::Connect {
            url: url.to_string(),
            reason: other.to_string(),
        },
    }
}

fn is_disk_full(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::StorageFull || err.raw_os_error() == Some(libc::ENOSPC)
}

fn remove_if_exists(path: &Path) -> Result<(), DownloadError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("cannot remove", path)(e)),
    }
}

/// Free bytes for an unprivileged user on the file system holding `dir`, where the platform says.
#[cfg(unix)]
pub(crate) fn available_space(dir: &Path) -> Option<u64> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c_path = CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c_path` is a valid NUL-terminated string and `stat` points to writable memory of
    // the right type; statvfs only writes into it.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it initialised the struct.
    let stat = unsafe { stat.assume_init() };
    #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
    Some((stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64))
}

#[cfg(not(unix))]
pub(crate) fn available_space(_dir: &Path) -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        assert!(check_url("https://huggingface.co/a/b/resolve/main/x.gguf").is_ok());
        assert!(check_url("http://127.0.0.1:8080/x.gguf").is_ok());
        let e = check_url("ftp://example.com/x.gguf").unwrap_err();
        assert!(matches!(e, DownloadError::UnsupportedScheme { .. }), "{e}");
        assert!(check_url("file:///etc/passwd").is_err());
        let e = check_url("not a url").unwrap_err();
        assert!(matches!(e, DownloadError::InvalidUrl { .. }), "{e}");
        assert!(check_url("https:// bad host/x").is_err());
    }

    #[test]
    fn file_names_come_from_the_url_path() {
        assert_eq!(
            file_name_from_url(
                "https://h.co/r/resolve/main/Llama-3.2-1B-Instruct-Q4_K_M.gguf?download=true"
            )
            .unwrap(),
            "Llama-3.2-1B-Instruct-Q4_K_M.gguf"
        );
        assert!(file_name_from_url("https://h.co/").is_err());
        assert!(file_name_from_url("https://h.co/x/readme.md").is_err());
        assert!(file_name_from_url("https://h.co/x/%2e%2e%2fevil.gguf").is_err());
        assert!(check_file_name("../x.gguf").is_err());
        assert!(check_file_name(".hidden.gguf").is_err());
        assert!(check_file_name("a/b.gguf").is_err());
    }

    #[test]
    fn checksums_and_ranges_parse() {
        let hex64 = "AB".repeat(32);
        assert_eq!(parse_sha256(&hex64).unwrap(), "ab".repeat(32));
        assert!(parse_sha256("abc").is_err());
        assert!(parse_sha256(&"zz".repeat(32)).is_err());
        assert_eq!(
            parse_content_range("bytes 100-199/200"),
            Some((100, Some(200)))
        );
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, None)));
        assert_eq!(parse_content_range("bytes 9-5/10"), None);
        assert_eq!(parse_content_range("items 0-1/2"), None);
    }
}
