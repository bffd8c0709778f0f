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
