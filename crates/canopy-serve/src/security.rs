//! The request guards: `Host` header (DNS rebinding) and API key.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::error::ApiError;

/// The `Host` values that name this server.
#[derive(Clone, Debug)]
pub struct AllowedHosts {
    /// Lower-case `host:port` forms; empty = any host (a wildcard bind, protected by the API key).
    names: Vec<String>,
}

impl AllowedHosts {
    /// The loopback names and the bound host, each with the bound port (and without it on port 80).
    pub fn for_addr(addr: SocketAddr) -> Self {
        if addr.ip().is_unspecified() {
            // 0.0.0.0 or [::]: the machine's own names are not known here. Binding it needs an
            // API key, which a rebinding page does not have.
            return AllowedHosts { names: Vec::new() };
        }
        let port = addr.port();
        let bound = match addr {
            SocketAddr::V4(a) => a.ip().to_string(),
            SocketAddr::V6(a) => format!("[{}]", a.ip()),
        };
        let mut names = Vec::new();
        for host in ["127.0.0.1", "localhost", "[::1]", &bound] {
            names.push(format!("{host}:{port}"));
            if port == 80 {
                names.push(host.to_owned());
            }
        }
        names.sort();
        names.dedup();
        AllowedHosts { names }
    }

    pub fn allows(&self, host: &str) -> bool {
        self.names.is_empty() || self.names.iter().any(|n| n.eq_ignore_ascii_case(host))
    }
}

/// Refuses (403) a request whose `Host` header names another server.
pub async fn check_host(
    State(hosts): State<Arc<AllowedHosts>>,
    request: Request,
    next: Next,
) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !hosts.allows(host) {
        return ApiError::bad_host(host).into_response();
    }
    next.run(request).await
}

/// Refuses (401) a request without `Authorization: Bearer <key>`; the key is compared in constant
/// time.
pub async fn check_key(State(key): State<Arc<String>>, request: Request, next: Next) -> Response {
    if !key_matches(request.headers(), &key) {
        return ApiError::unauthorized().into_response();
    }
    next.run(request).await
}

fn key_matches(headers: &HeaderMap, key: &str) -> bool {
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
    else {
        return false;
    };
    bool::from(given.trim().as_bytes().ct_eq(key.as_bytes()))
}

/// Checks that an allowed origin has the shape browsers send: `scheme://host[:port]`, nothing more.
pub fn check_origin(origin: &str) -> Result<(), ()> {
    let Some((scheme, rest)) = origin.split_once("://") else {
        return Err(());
    };
    let scheme_ok = !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    let rest_ok = !rest.is_empty() && !rest.contains(['/', '?', '#', ' ', '*']);
    if scheme_ok && rest_ok {
        Ok(())
    } else {
        Err(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_with_the_port() {
        let hosts = AllowedHosts::for_addr("127.0.0.1:8080".parse().unwrap());
        for ok in [
            "127.0.0.1:8080",
            "localhost:8080",
            "LOCALHOST:8080",
            "[::1]:8080",
        ] {
            assert!(hosts.allows(ok), "{ok}");
        }
        for bad in [
            "evil.example:8080",
            "localhost",
            "127.0.0.1:8081",
            "",
            "localhost:8080.evil",
        ] {
            assert!(!hosts.allows(bad), "{bad}");
        }
    }

    #[test]
    fn the_bound_host_and_port_80() {
        let hosts = AllowedHosts::for_addr("[::1]:80".parse().unwrap());
        assert!(hosts.allows("[::1]"));
        assert!(hosts.allows("localhost"));
        let hosts = AllowedHosts::for_addr("192.168.1.5:9000".parse().unwrap());
        assert!(hosts.allows("192.168.1.5:9000"));
        assert!(!hosts.allows("192.168.1.6:9000"));
    }

    #[test]
    fn bearer_key_must_match_exactly() {
        let mut headers = HeaderMap::new();
        assert!(!key_matches(&headers, "secret"));
        headers.insert(header::AUTHORIZATION, "Bearer secret".parse().unwrap());
        assert!(key_matches(&headers, "secret"));
        headers.insert(header::AUTHORIZATION, "Bearer secre".parse().unwrap());
        assert!(!key_matches(&headers, "secret"));
        headers.insert(header::AUTHORIZATION, "Bearer secrets".parse().unwrap());
        assert!(!key_matches(&headers, "secret"));
        headers.insert(header::AUTHORIZATION, "Basic secret".parse().unwrap());
        assert!(!key_matches(&headers, "secret"));
    }

    #[test]
    fn origins_are_exact_scheme_host_port() {
        assert!(check_origin("http://localhost:3000").is_ok());
        assert!(check_origin("tauri://localhost").is_ok());
        for bad in ["localhost:3000", "http://", "http://a/b", "*", "http://*"] {
            assert!(check_origin(bad).is_err(), "{bad}");
        }
    }
}
