//! Registries without a daemon: the OCI distribution protocol (Docker
//! Registry HTTP API v2) spoken by the helper itself, to upload blobs and
//! manifests ([`upload`]) and fetch images by digest ([`fetch`]). Only
//! transport: what to send is [`crate::push`]'s, where a pulled image
//! goes [`crate::pull`]'s.
//!
//! [`client`] owns HTTP, TLS, retries and authentication; [`credentials`]
//! finds what users already configured for podman, skopeo and Docker;
//! [`progress`] reports per layer. The protocol is small and its failure modes matter (resuming,
//! never pushing a broken manifest, never printing a credential), so it is
//! written here on an HTTP library (`ureq`) rather than through a registry
//! crate that would hide them.

pub mod client;
pub mod credentials;
pub mod fetch;
pub mod progress;
pub mod upload;

/// How to reach a registry: from the command line.
#[derive(Clone, Debug)]
pub struct Connection {
    /// `USER:PASS` from `--creds`.
    pub creds: Option<String>,
    /// false: plain http and self-signed certificates are accepted.
    pub tls_verify: bool,
    /// Retries of a request that failed with 5xx, 429 or a cut connection.
    pub retries: u32,
    /// The longest wait for a registry: for an answer's headers, and for
    /// each read or write of a transfer.
    pub timeout: std::time::Duration,
}

/// [`Connection::timeout`] unless `--timeout` says otherwise.
pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

impl Default for Connection {
    fn default() -> Self {
        Connection {
            creds: None,
            tls_verify: true,
            retries: 5,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// `12.3 MB`, for progress lines.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "kB", "MB", "GB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}
