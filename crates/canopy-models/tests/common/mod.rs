//! Shared test fixtures: a real HTTP server on 127.0.0.1, small valid GGUF files, the real models.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use canopy_gguf::{GgmlType, GgufWriter};
use sha2::{Digest, Sha256};

/// How the server misbehaves.
#[derive(Debug, Clone, Default)]
pub struct Behaviour {
    /// On the first request only: send this many body bytes, then close the connection.
    pub cut_first_at: Option<u64>,
    /// Ignore `Range` and always send the whole file with 200.
    pub ignore_range: bool,
    /// Flip one byte in the middle of every body.
    pub corrupt: bool,
    /// Answer every request with this status and no body.
    pub status: Option<u16>,
}

/// A tiny HTTP/1.1 file server on an ephemeral port of 127.0.0.1, one thread per connection.
pub struct Server {
    pub url: String,
    /// The `Range` header of every request, in order (`None` when absent).
    pub ranges: Arc<Mutex<Vec<Option<String>>>>,
}

pub fn serve(name: &str, data: Arc<Vec<u8>>, behaviour: Behaviour) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/models/{name}", listener.local_addr().unwrap());
    let ranges = Arc::new(Mutex::new(Vec::new()));
    let seen = ranges.clone();
    let count = Arc::new(AtomicUsize::new(0));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let (data, behaviour, seen, count) =
                (data.clone(), behaviour.clone(), seen.clone(), count.clone());
            std::thread::spawn(move || {
                let _ = answer(stream, &data, &behaviour, &seen, &count);
            });
        }
    });
    Server { url, ranges }
}

fn answer(
    mut stream: TcpStream,
    data: &[u8],
    behaviour: &Behaviour,
    seen: &Mutex<Vec<Option<String>>>,
    count: &AtomicUsize,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("range") {
                range = Some(v.trim().to_string());
            }
        }
    }
    seen.lock().unwrap().push(range.clone());
    let nth = count.fetch_add(1, Ordering::SeqCst);
    if let Some(status) = behaviour.status {
        write!(
            stream,
            "HTTP/1.1 {status} Status\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )?;
        return Ok(());
    }
    let len = data.len() as u64;
    let start = match (&range, behaviour.ignore_range) {
        (Some(r), false) => r
            .strip_prefix("bytes=")
            .and_then(|r| r.strip_suffix('-'))
            .and_then(|s| s.parse::<u64>().ok()),
        _ => None,
    };
    let (head, body_start) = match start {
        Some(s) if s >= len => {
            write!(
                stream,
                "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )?;
            return Ok(());
        }
        Some(s) => (
            format!(
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {s}-{}/{len}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                len - 1,
                len - s
            ),
            s,
        ),
        None => (
            format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"),
            0,
        ),
    };
    stream.write_all(head.as_bytes())?;
    let mut body = data[body_start as usize..].to_vec();
    if behaviour.corrupt && !body.is_empty() {
        let mid = body.len() / 2;
        body[mid] ^= 0xff;
    }
    match behaviour.cut_first_at {
        Some(cut) if nth == 0 => {
            stream.write_all(&body[..cut as usize])?;
            stream.flush()?;
            stream.shutdown(Shutdown::Both)?;
        }
        _ => stream.write_all(&body)?,
    }
    Ok(())
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub fn sha256_file(path: &Path) -> String {
    sha256_hex(&std::fs::read(path).unwrap())
}

/// A small valid GGUF: a llama-like header, `tokens` as its vocabulary, one f32 tensor of
/// `elements` weights (zeros).
pub fn small_gguf(tokens: &[&str], elements: u64) -> Vec<u8> {
    GgufWriter::new()
        .kv_str("general.architecture", "llama")
        .kv_str("general.name", "tiny")
        .kv_u32("llama.block_count", 2)
        .kv_u32("llama.context_length", 256)
        .kv_u32("llama.embedding_length", 8)
        .kv_u32("llama.attention.head_count", 2)
        .kv_u32("llama.attention.head_count_kv", 1)
        .vocabulary("gpt2", tokens, 0, 1)
        .tensor("token_embd.weight", &[elements], GgmlType::F32)
        .to_bytes()
}

pub fn write(path: &Path, bytes: &[u8]) -> PathBuf {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, bytes).unwrap();
    path.to_path_buf()
}

/// The path of a real test model, or a panic that says how to fetch it.
pub fn real_model(id: &str) -> PathBuf {
    canopy_models::test_model(id).unwrap_or_else(|e| panic!("{e}"))
}

/// One repository served by [`serve_hub`].
#[derive(Clone, Default)]
pub struct HubRepo {
    /// `OWNER/NAME`.
    pub id: String,
    /// The one revision that exists.
    pub revision: String,
    /// With `Some(token)`, downloads need `Authorization: Bearer token` (a gated repository).
    pub gated_token: Option<String>,
    /// `(path, bytes, listed size, sha256)`: the listing shows the listed size when given.
    pub files: Vec<ServedFile>,
}

/// Path, bytes, the size the listing shows (when not the real one), sha256.
pub type ServedFile = (String, Arc<Vec<u8>>, Option<u64>, String);

impl HubRepo {
    pub fn new(id: &str) -> HubRepo {
        HubRepo {
            id: id.to_string(),
            revision: "main".to_string(),
            ..HubRepo::default()
        }
    }

    pub fn file(mut self, path: &str, data: Arc<Vec<u8>>) -> HubRepo {
        let sha = sha256_hex(&data);
        self.files.push((path.to_string(), data, None, sha));
        self
    }

    pub fn file_listed_as(mut self, path: &str, data: Arc<Vec<u8>>, size: u64) -> HubRepo {
        let sha = sha256_hex(&data);
        self.files.push((path.to_string(), data, Some(size), sha));
        self
    }

    pub fn gated(mut self, token: &str) -> HubRepo {
        self.gated_token = Some(token.to_string());
        self
    }
}

/// One request a [`HubServer`] saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub range: Option<String>,
    pub authorization: Option<String>,
}

/// A hub on 127.0.0.1 answering the documented endpoints over real bytes: `GET /api/models?search=`
/// (GGUF repositories whose id contains the query), `GET /api/models/{repo}/tree/{rev}[/{folder}]`
/// (files with `lfs.oid` = sha256 and `lfs.size`), and `GET`/`HEAD /{repo}/resolve/{rev}/{path}`,
/// which checks the token of a gated repository and answers 302 to `/cdn/{repo}/{path}`, where the
/// bytes are served with `Range` support and the [`Behaviour`]'s faults. Errors carry the hub's
/// `X-Error-Code` and `X-Error-Message` headers.
pub struct HubServer {
    pub endpoint: String,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl HubServer {
    /// The requests seen whose path starts with `prefix`.
    pub fn requests(&self, prefix: &str) -> Vec<Seen> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.path.starts_with(prefix))
            .cloned()
            .collect()
    }
}

pub fn serve_hub(repos: Vec<HubRepo>, behaviour: Behaviour) -> HubServer {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let state = Arc::new((repos, behaviour, endpoint.clone(), AtomicUsize::new(0)));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let (state, log) = (state.clone(), log.clone());
            std::thread::spawn(move || {
                let _ = answer_hub(stream, &state, &log);
            });
        }
    });
    HubServer { endpoint, seen }
}

type HubState = (Vec<HubRepo>, Behaviour, String, AtomicUsize);

fn answer_hub(
    mut stream: TcpStream,
    state: &HubState,
    log: &Mutex<Vec<Seen>>,
) -> std::io::Result<()> {
    let (repos, behaviour, endpoint, cdn_count) = state;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    let (mut range, mut authorization) = (None, None);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("range") {
                range = Some(v.trim().to_string());
            } else if k.eq_ignore_ascii_case("authorization") {
                authorization = Some(v.trim().to_string());
            }
        }
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let path = decode(path);
    log.lock().unwrap().push(Seen {
        method: method.clone(),
        path: path.clone(),
        range: range.clone(),
        authorization: authorization.clone(),
    });
    let head_only = method == "HEAD";
    let mut reply = |status: &str, headers: &[(&str, String)], body: &[u8]| {
        let mut head = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        stream.write_all(head.as_bytes())?;
        if !head_only {
            stream.write_all(body)?;
        }
        stream.flush()
    };
    let error = |code: &str, message: String| {
        vec![
            ("X-Error-Code", code.to_string()),
            ("X-Error-Message", message),
        ]
    };
    let find_repo = |owner: &str, name: &str| {
        let id = format!("{owner}/{name}");
        repos.iter().find(|r| r.id == id)
    };

    if path == "/api/models" {
        let search = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("search="))
            .map(decode)
            .unwrap_or_default()
            .to_lowercase();
        let list: Vec<_> = repos
            .iter()
            .filter(|r| r.id.to_lowercase().contains(&search))
            .map(|r| {
                serde_json::json!({
                    "_id": "0", "id": r.id, "modelId": r.id, "likes": 3, "downloads": 42,
                    "private": false, "tags": ["gguf"], "pipeline_tag": "text-generation",
                    "library_name": "gguf"
                })
            })
            .collect();
        let body = serde_json::to_vec(&list).unwrap();
        return reply(
            "200 OK",
            &[("Content-Type", "application/json".into())],
            &body,
        );
    }
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if segments.len() >= 5
        && segments[0] == "api"
        && segments[1] == "models"
        && segments[4] == "tree"
    {
        let Some(repo) = find_repo(segments[2], segments[3]) else {
            return reply(
                "401 Unauthorized",
                &error("RepoNotFound", "Repository not found".into()),
                b"",
            );
        };
        if segments.get(5).copied() != Some(repo.revision.as_str()) {
            let msg = format!("Invalid rev id: {}", segments.get(5).unwrap_or(&""));
            return reply("404 Not Found", &error("RevisionNotFound", msg), b"");
        }
        let folder = segments[6..].join("/");
        let inside = |p: &str| folder.is_empty() || p.starts_with(&format!("{folder}/"));
        if !folder.is_empty() && !repo.files.iter().any(|(p, ..)| inside(p)) {
            return reply(
                "404 Not Found",
                &error("EntryNotFound", format!("{folder} does not exist")),
                b"",
            );
        }
        let items: Vec<_> = repo
            .files
            .iter()
            .filter(|(p, ..)| inside(p))
            .map(|(p, data, listed, sha)| {
                let size = listed.unwrap_or(data.len() as u64);
                serde_json::json!({
                    "type": "file", "oid": "0123456789abcdef0123456789abcdef01234567",
                    "size": size, "path": p,
                    "lfs": {"oid": sha, "size": size, "pointerSize": 134}
                })
            })
            .collect();
        let body = serde_json::to_vec(&items).unwrap();
        return reply(
            "200 OK",
            &[("Content-Type", "application/json".into())],
            &body,
        );
    }
    if segments.len() >= 5 && segments[2] == "resolve" {
        let Some(repo) = find_repo(segments[0], segments[1]) else {
            return reply(
                "401 Unauthorized",
                &error("RepoNotFound", "Repository not found".into()),
                b"",
            );
        };
        if segments[3] != repo.revision {
            return reply(
                "404 Not Found",
                &error("RevisionNotFound", "Invalid rev id".into()),
                b"",
            );
        }
        if let Some(token) = &repo.gated_token {
            let msg = format!(
                "Access to model {} is restricted. You must have access to it and be authenticated to access it. Please log in.",
                repo.id
            );
            match &authorization {
                None => return reply("401 Unauthorized", &error("GatedRepo", msg), b""),
                Some(a) if *a != format!("Bearer {token}") => {
                    return reply("403 Forbidden", &error("GatedRepo", msg), b"")
                }
                Some(_) => {}
            }
        }
        let file = segments[4..].join("/");
        let Some((_, data, _, sha)) = repo.files.iter().find(|(p, ..)| *p == file) else {
            return reply(
                "404 Not Found",
                &error("EntryNotFound", format!("{file} does not exist")),
                b"",
            );
        };
        let location = format!("{endpoint}/cdn/{}/{file}?X-Signature=abc", repo.id);
        return reply(
            "302 Found",
            &[
                ("Location", location),
                ("X-Linked-Etag", format!("\"{sha}\"")),
                ("X-Linked-Size", data.len().to_string()),
            ],
            b"",
        );
    }
    if segments.len() >= 4 && segments[0] == "cdn" {
        let repo = find_repo(segments[1], segments[2]);
        let file = segments[3..].join("/");
        let Some((_, data, ..)) = repo.and_then(|r| r.files.iter().find(|(p, ..)| *p == file))
        else {
            return reply("404 Not Found", &[], b"");
        };
        let nth = cdn_count.fetch_add(1, Ordering::SeqCst);
        let len = data.len();
        let start = range
            .as_deref()
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.strip_suffix('-'))
            .and_then(|s| s.parse::<usize>().ok())
            .filter(|_| !behaviour.ignore_range);
        let (status, mut headers, from) = match start {
            Some(s) if s >= len => {
                return reply(
                    "416 Range Not Satisfiable",
                    &[("Content-Range", format!("bytes */{len}"))],
                    b"",
                )
            }
            Some(s) => (
                "206 Partial Content",
                vec![("Content-Range", format!("bytes {s}-{}/{len}", len - 1))],
                s,
            ),
            None => ("200 OK", Vec::new(), 0),
        };
        let mut body = data[from..].to_vec();
        if behaviour.corrupt && !body.is_empty() {
            let mid = body.len() / 2;
            body[mid] ^= 0xff;
        }
        if let (Some(cut), 0) = (behaviour.cut_first_at, nth) {
            headers.push(("Content-Length", body.len().to_string()));
            let mut head = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
            for (k, v) in &headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str("\r\n");
            stream.write_all(head.as_bytes())?;
            stream.write_all(&body[..cut as usize])?;
            stream.flush()?;
            return stream.shutdown(Shutdown::Both);
        }
        return reply(status, &headers, &body);
    }
    reply("404 Not Found", &[], b"")
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `data` (a valid GGUF) split into `parts` files named `PREFIX-0000N-of-0000M.gguf`.
pub fn split_parts(prefix: &str, data: &[u8], parts: usize) -> Vec<(String, Arc<Vec<u8>>)> {
    let files = canopy_gguf::split_bytes(data, parts).unwrap();
    let count = files.len();
    files
        .into_iter()
        .enumerate()
        .map(|(i, bytes)| {
            (
                format!("{prefix}-{:05}-of-{count:05}.gguf", i + 1),
                Arc::new(bytes),
            )
        })
        .collect()
}
