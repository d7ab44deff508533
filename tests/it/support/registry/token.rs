//! The token server of token-auth registries: it checks Basic credentials
//! and answers JWTs it signs with openssl, over TLS as token servers are.

use std::fs;
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use super::certificates::{make_certificates, self_signed};
use super::{PASSWORD, USER};
use crate::support::process::run;

/// A token server for distribution's token auth: it checks Basic
/// credentials and answers a JWT (RS256, signed with openssl, the signing
/// certificate in `x5c`) granting what was asked.
pub(super) struct TokenServer {
    pub(super) port: u16,
    stop: Arc<AtomicBool>,
}

impl TokenServer {
    pub(super) fn start(dir: &Path) -> TokenServer {
        self_signed(dir, "token", "/CN=stevedore test tokens", &[]);
        let der = run(Command::new("openssl").current_dir(dir).args([
            "x509",
            "-in",
            "token.pem",
            "-outform",
            "DER",
        ]))
        .stdout;
        use base64::Engine as _;
        let x5c = base64::engine::general_purpose::STANDARD.encode(der);
        // Over TLS, as token servers are: clients send it the registry's
        // credentials only over https (or at the registry's own origin).
        make_certificates(dir);
        let tls = token_tls_config(dir);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let dir = dir.to_owned();
        let stopped = stop.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(1800);
            while !stopped.load(Ordering::SeqCst) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                        let Ok(conn) = rustls::ServerConnection::new(tls.clone()) else {
                            continue;
                        };
                        let mut tls = rustls::StreamOwned::new(conn, stream);
                        serve_token(&mut tls, &dir, &x5c);
                        tls.conn.send_close_notify();
                        let _ = std::io::Write::flush(&mut tls);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        TokenServer { port, stop }
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The token server's TLS: the test CA's certificate for 127.0.0.1.
fn token_tls_config(dir: &Path) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("server.pem"))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    Arc::new(config)
}

fn serve_token(mut stream: impl std::io::Read + std::io::Write, dir: &Path, x5c: &str) {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&request).into_owned();
    let target = text.split_whitespace().nth(1).unwrap_or("").to_owned();
    let expected = format!(
        "basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
    );
    let authorised = text.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("authorization:")
            && l["authorization:".len()..].trim() == expected.to_ascii_lowercase()
    });
    if !authorised {
        let _ = stream.write_all(
            b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
        );
        return;
    }
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let mut access = Vec::new();
    for pair in query.split('&') {
        let Some(("scope", value)) = pair.split_once('=') else {
            continue;
        };
        let value = percent_decode(value);
        // repository:NAME:ACTIONS
        let mut parts = value.splitn(2, ':');
        let kind = parts.next().unwrap_or("");
        let rest = parts.next().unwrap_or("");
        let Some((name, actions)) = rest.rsplit_once(':') else {
            continue;
        };
        access.push(json!({
            "type": kind,
            "name": name,
            "actions": actions.split(',').collect::<Vec<_>>(),
        }));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    static JTI: AtomicU64 = AtomicU64::new(0);
    let header = json!({ "alg": "RS256", "typ": "JWT", "x5c": [x5c] });
    let claims = json!({
        "iss": "stevedore-test-issuer",
        "sub": USER,
        "aud": "stevedore-test",
        "exp": now + 3600,
        "nbf": now - 60,
        "iat": now,
        "jti": format!("{}-{}", std::process::id(), JTI.fetch_add(1, Ordering::SeqCst)),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        b64.encode(serde_json::to_vec(&header).unwrap()),
        b64.encode(serde_json::to_vec(&claims).unwrap())
    );
    let scratch = tempfile::NamedTempFile::new_in(dir).unwrap();
    fs::write(scratch.path(), &signing_input).unwrap();
    let signature = run(Command::new("openssl")
        .args(["dgst", "-sha256", "-sign"])
        .arg(dir.join("token.key"))
        .arg(scratch.path()))
    .stdout;
    let token = format!("{signing_input}.{}", b64.encode(signature));
    let body = json!({ "token": token, "access_token": token, "expires_in": 3600 }).to_string();
    let _ = stream.write_all(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
