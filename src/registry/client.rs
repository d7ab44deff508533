//! One repository on one registry, over HTTP: TLS roots, authentication,
//! retries, and the registry's error bodies turned into one line.
//!
//! - TLS roots come from `SSL_CERT_FILE`, else `NIX_SSL_CERT_FILE`, else
//!   the Mozilla roots built in, so a sandboxed build can name its CA
//!   bundle. `--tls-verify=false` accepts any certificate and falls back
//!   to plain http when the registry does not speak TLS.
//! - Authentication follows the registry's `WWW-Authenticate` challenge:
//!   none, Basic, or a Bearer token fetched from the challenge's realm for
//!   the challenge's service and the scopes this client needs (the
//!   distribution project's token spec). Credentials are only ever sent
//!   in `Authorization` headers and never appear in a message.
//! - A request that fails with 5xx, 429 or a cut connection is retried
//!   with exponential backoff (honouring `Retry-After`), up to
//!   [`Connection::retries`] times. Upload requests are not replayed
//!   blindly: [`Client::send_with`] leaves that to the uploader, which
//!   asks the registry where the upload stands.
//!
//! HTTP and TLS are `ureq` (blocking, rustls). The `WWW-Authenticate`
//! parser and the percent-encoding of query values are a few lines each,
//! written here rather than brought in as crates of their own.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use ureq::http::{Response, StatusCode};
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};
use ureq::{Agent, SendBody};

use super::Connection;
use super::credentials::{self, Credentials};

/// A request body that can be sent again on a retry.
#[derive(Clone, Copy, Debug)]
pub enum Body<'a> {
    Empty,
    Bytes(&'a [u8]),
    /// `len` bytes of a file from `offset`.
    File {
        path: &'a Path,
        offset: u64,
        len: u64,
    },
}

/// A response with the body not yet read.
pub type Reply = Response<ureq::Body>;

/// A client for one repository (and, for mounts, the repositories named in
/// its scopes).
pub struct Client {
    agent: Agent,
    /// `https://HOST` or `http://HOST`.
    base: String,
    pub host: String,
    pub repo: String,
    retries: u32,
    credentials: Option<Credentials>,
    /// Token scopes this client needs, such as `repository:a/b:pull,push`.
    scopes: Vec<String>,
    /// The `Authorization` header value in use.
    auth: Mutex<Option<String>>,
}

/// How long to wait for a connection, and for a response.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest error body read for a message.
const ERROR_BODY_LIMIT: u64 = 64 * 1024;

impl Client {
    /// Connects to `host` for `repo`: finds credentials, checks that the
    /// host speaks the registry API and authenticates for `scopes`.
    pub fn connect(
        conn: &Connection,
        host: &str,
        repo: &str,
        scopes: Vec<String>,
    ) -> Result<Client> {
        let credentials = credentials::find(conn.creds.as_deref(), host)?;
        let agent = agent(conn.tls_verify, conn.timeout)?;
        let mut client = Client {
            agent,
            base: format!("https://{host}"),
            host: host.to_owned(),
            repo: repo.to_owned(),
            retries: conn.retries,
            credentials,
            scopes,
            auth: Mutex::new(None),
        };
        // Without TLS verification the https probe is not retried: a
        // registry without TLS answers it with garbage, and http follows.
        let ping = match client.get_v2(conn.tls_verify) {
            Ok(reply) => reply,
            Err(https_err) if !conn.tls_verify => {
                // A local registry without TLS: plain http, as asked.
                client.base = format!("http://{host}");
                client.get_v2(true).map_err(|http_err| {
                    anyhow::anyhow!(
                        "registry {host} answers neither https ({https_err:#}) nor http ({http_err:#})"
                    )
                })?
            }
            Err(e) => bail!(
                "registry {host}: {e:#} (for a registry without TLS or without a trusted certificate, pass --tls-verify=false)"
            ),
        };
        let status = ping.status();
        if is_html(&ping) {
            bail!(
                "{host} answered GET /v2/ with an HTML page (HTTP {}), not the registry API: is {host} a registry?",
                status.as_u16()
            );
        }
        if status == StatusCode::UNAUTHORIZED {
            client.authenticate(&ping)?;
        } else if !status.is_success() {
            bail!("{}", client.error_line("GET /v2/", ping));
        }
        Ok(client)
    }

    fn get_v2(&self, retry: bool) -> Result<Reply> {
        let url = format!("{}/v2/", self.base);
        let mut tries = 0;
        loop {
            match self.send_raw("GET", &url, &[], Body::Empty, false) {
                Ok(r)
                    if retry
                        && tries < self.retries
                        && (r.status().is_server_error()
                            || r.status() == StatusCode::TOO_MANY_REQUESTS) =>
                {
                    tries += 1;
                    let wait = header(&r, "retry-after").and_then(|s| s.parse().ok());
                    std::thread::sleep(backoff(tries, wait));
                }
                Ok(r) => return Ok(r),
                Err(e) if retry && tries < self.retries && retryable(&e) => {
                    tries += 1;
                    std::thread::sleep(backoff(tries, None));
                }
                Err(e) => return Err(anyhow::Error::new(e)),
            }
        }
    }

    /// `BASE/v2/REPO/SUFFIX`.
    pub fn url(&self, suffix: &str) -> String {
        format!("{}/v2/{}/{suffix}", self.base, self.repo)
    }

    /// A `Location` header resolved against the registry.
    pub fn location(&self, reply: &Reply) -> Result<String> {
        let loc = header(reply, "location").with_context(|| {
            format!(
                "{}: the registry gave no Location for the upload (HTTP {})",
                self.host,
                reply.status().as_u16()
            )
        })?;
        Ok(
            if loc.starts_with("http://") || loc.starts_with("https://") {
                loc
            } else if loc.starts_with('/') {
                format!("{}{loc}", self.base)
            } else {
                format!("{}/{loc}", self.base)
            },
        )
    }

    /// Sends a request, retrying 5xx, 429 and cut connections, and
    /// authenticating once on a 401.
    pub fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        body: Body,
    ) -> Result<Reply> {
        self.send_with(method, url, headers, body, true)
    }

    /// As [`Client::send`]; without `retry_transport`, a cut connection is
    /// returned at once, for a caller that knows how to resume.
    pub fn send_with(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        body: Body,
        retry_transport: bool,
    ) -> Result<Reply> {
        let mut attempt = 0;
        let mut authenticated = false;
        loop {
            match self.send_raw(method, url, headers, body, true) {
                Ok(reply) if reply.status() == StatusCode::UNAUTHORIZED && !authenticated => {
                    authenticated = true;
                    self.authenticate(&reply)?;
                }
                Ok(reply) if reply.status() == StatusCode::UNAUTHORIZED => {
                    bail!("{}", self.refused(method, url, reply));
                }
                Ok(reply)
                    if (reply.status().is_server_error()
                        || reply.status() == StatusCode::TOO_MANY_REQUESTS)
                        && attempt < self.retries =>
                {
                    attempt += 1;
                    let wait = header(&reply, "retry-after").and_then(|s| s.parse().ok());
                    std::thread::sleep(backoff(attempt, wait));
                }
                Ok(reply) => return Ok(reply),
                Err(e) if retry_transport && retryable(&e) && attempt < self.retries => {
                    attempt += 1;
                    std::thread::sleep(backoff(attempt, None));
                }
                Err(e) => {
                    return Err(anyhow::Error::new(e))
                        .with_context(|| format!("{method} {}", self.describe(url)));
                }
            }
        }
    }

    fn send_raw(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        body: Body,
        with_auth: bool,
    ) -> std::result::Result<Reply, ureq::Error> {
        let mut req = ureq::http::Request::builder().method(method).uri(url);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        if with_auth
            && same_origin(url, &self.base)
            && let Some(auth) = self.auth.lock().unwrap().clone()
        {
            req = req.header("authorization", auth);
        }
        match body {
            Body::Empty => {
                if matches!(method, "PUT" | "POST" | "PATCH") {
                    req = req.header("content-length", "0");
                }
                self.agent.run(req.body(())?)
            }
            Body::Bytes(b) => {
                req = req.header("content-length", b.len().to_string());
                self.agent.run(req.body(b)?)
            }
            Body::File { path, offset, len } => {
                let mut file = File::open(path)?;
                file.seek(SeekFrom::Start(offset))?;
                req = req.header("content-length", len.to_string());
                let reader = file.take(len);
                self.agent
                    .run(req.body(SendBody::from_owned_reader(reader))?)
            }
        }
    }

    /// Answers a 401: Basic with the credentials, or a Bearer token from
    /// the challenge's realm.
    fn authenticate(&self, reply: &Reply) -> Result<()> {
        let challenge = header(reply, "www-authenticate").with_context(|| {
            format!(
                "{}: the registry answered 401 without a WWW-Authenticate challenge",
                self.host
            )
        })?;
        let challenge = Challenge::parse(&challenge).with_context(|| {
            format!(
                "{}: cannot read the registry's WWW-Authenticate challenge",
                self.host
            )
        })?;
        let header_value = match challenge.scheme.as_str() {
            "basic" => match &self.credentials {
                Some(c) => c.basic_header(),
                None => bail!("{}", self.needs_credentials()),
            },
            "bearer" => format!("Bearer {}", self.token(&challenge)?),
            other => bail!(
                "{}: the registry asks for {other} authentication, which stevedore does not speak (Basic and Bearer only)",
                self.host
            ),
        };
        *self.auth.lock().unwrap() = Some(header_value);
        Ok(())
    }

    /// A Bearer token for this client's scopes and the challenge's.
    fn token(&self, challenge: &Challenge) -> Result<String> {
        let realm = challenge.param("realm").with_context(|| {
            format!(
                "{}: the registry's Bearer challenge has no realm",
                self.host
            )
        })?;
        let mut scopes: Vec<&str> = self.scopes.iter().map(String::as_str).collect();
        if let Some(s) = challenge.param("scope") {
            scopes.extend(s.split(' '));
        }
        scopes.sort_unstable();
        scopes.dedup();
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(service) = challenge.param("service") {
            query.push(("service", service));
        }
        for s in &scopes {
            query.push(("scope", s));
        }
        let url = if query.is_empty() {
            realm.to_owned()
        } else {
            let q: Vec<String> = query
                .iter()
                .map(|(k, v)| format!("{k}={}", percent_encode(v)))
                .collect();
            let sep = if realm.contains('?') { '&' } else { '?' };
            format!("{realm}{sep}{}", q.join("&"))
        };
        let mut req = ureq::http::Request::builder().method("GET").uri(&url);
        // The registry names its token server, often another host (Docker
        // Hub's); it gets the credentials over https, or at the
        // registry's own origin. A plain-http realm elsewhere, such as
        // another port of the same host that another user may hold, is
        // asked without them.
        if let Some(c) = &self.credentials
            && (realm.starts_with("https://") || same_origin(realm, &self.base))
        {
            req = req.header("authorization", c.basic_header());
        }
        let realm_host = realm.split('?').next().unwrap_or(realm);
        let reply = self
            .agent
            .run(req.body(())?)
            .with_context(|| format!("token server {realm_host}"))?;
        let status = reply.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            match &self.credentials {
                Some(c) => bail!(
                    "token server {realm_host} refused the credentials from {} (HTTP {})",
                    c.source,
                    status.as_u16()
                ),
                None => bail!("{}", self.needs_credentials()),
            }
        }
        if !status.is_success() {
            bail!(
                "token server {realm_host} answered HTTP {}",
                status.as_u16()
            );
        }
        let body = reply
            .into_body()
            .with_config()
            .limit(1 << 20)
            .read_to_vec()
            .with_context(|| format!("reading the answer of token server {realm_host}"))?;
        token_of_answer(&body)
            .with_context(|| format!("token server {realm_host} did not answer with a JSON token"))
    }

    fn needs_credentials(&self) -> String {
        format!(
            "{} requires credentials: pass --creds USER:PASSWORD, or log in with podman/skopeo (REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json) or docker (~/.docker/config.json)",
            self.host
        )
    }

    /// The message of a 401 that authentication did not cure.
    fn refused(&self, method: &str, url: &str, reply: Reply) -> String {
        let what = format!("{method} {}", self.describe(url));
        let code = api_code(reply).unwrap_or_default();
        match &self.credentials {
            Some(c) => format!(
                "{what}: the credentials from {} were refused (HTTP 401{code})",
                c.source
            ),
            None => format!("{what}: {}", self.needs_credentials()),
        }
    }

    /// A URL as messages show it: the path, without the query (upload
    /// URLs carry the registry's state).
    pub fn describe(&self, url: &str) -> String {
        let path = url.strip_prefix(&self.base).unwrap_or(url);
        let path = path.split('?').next().unwrap_or(path);
        format!("{}{path}", self.host)
    }

    /// One line for an unexpected answer: the request, the status, and the
    /// registry's error code and message, or a note that it is not the
    /// registry API.
    pub fn error_line(&self, what: &str, reply: Reply) -> String {
        let status = reply.status().as_u16();
        if is_html(&reply) {
            return format!(
                "{what}: {} answered with an HTML page (HTTP {status}), not the registry API: is {} a registry?",
                self.host, self.host
            );
        }
        let detail = api_code(reply).unwrap_or_default();
        format!("{what}: HTTP {status}{detail}")
    }

    /// Checks a reply's status is one of `ok`, else fails with
    /// [`Client::error_line`].
    pub fn expect(&self, what: &str, reply: Reply, ok: &[u16]) -> Result<Reply> {
        if ok.contains(&reply.status().as_u16()) {
            Ok(reply)
        } else {
            bail!("{}", self.error_line(what, reply))
        }
    }
}

/// Whether `url` is at `base`'s origin: the same scheme, host and port
/// (the scheme's default when none is given). The one rule for where the
/// registry's credentials may go: an upload `Location` elsewhere gets
/// none.
pub fn same_origin(url: &str, base: &str) -> bool {
    fn origin(url: &str) -> Option<(String, String, u16)> {
        let uri: ureq::http::Uri = url.parse().ok()?;
        let scheme = uri.scheme_str()?.to_ascii_lowercase();
        let port = uri.port_u16().or(match scheme.as_str() {
            "https" => Some(443),
            "http" => Some(80),
            _ => None,
        })?;
        Some((scheme, uri.host()?.to_ascii_lowercase(), port))
    }
    matches!((origin(url), origin(base)), (Some(a), Some(b)) if a == b)
}

/// The agent: TLS roots from the environment, no automatic errors on
/// status codes (every status is interpreted here).
/// `timeout` bounds each wait: for an answer's headers, and for each read
/// or write of a transfer, so a registry that stalls in the middle of a
/// body is given up on (and retried) after that long without a byte,
/// however large the blob. Connecting has [`CONNECT_TIMEOUT`].
fn agent(tls_verify: bool, timeout: Duration) -> Result<Agent> {
    let mut tls = TlsConfig::builder().disable_verification(!tls_verify);
    if let Some(certs) = env_roots()? {
        tls = tls.root_certs(RootCerts::from(certs));
    }
    let config = Agent::config_builder()
        .http_status_as_error(false)
        .tls_config(tls.build())
        .timeout_connect(Some(CONNECT_TIMEOUT.min(timeout)))
        .timeout_recv_response(Some(timeout))
        .timeout_per_read(Some(timeout))
        .timeout_per_write(Some(timeout))
        // ureq's SameHost compares hosts, not ports: a redirect to
        // another port of the registry's host (another user's server on a
        // shared machine) would get the credentials. Redirects get none.
        .redirect_auth_headers(ureq::config::RedirectAuthHeaders::Never)
        .user_agent(concat!("stevedore/", env!("CARGO_PKG_VERSION")))
        .build();
    Ok(config.into())
}

/// The certificates of `SSL_CERT_FILE` or `NIX_SSL_CERT_FILE`.
fn env_roots() -> Result<Option<Vec<Certificate<'static>>>> {
    for var in ["SSL_CERT_FILE", "NIX_SSL_CERT_FILE"] {
        let Some(file) = std::env::var_os(var).filter(|f| !f.is_empty()) else {
            continue;
        };
        let text = std::fs::read(&file)
            .with_context(|| format!("{var}: reading {}", Path::new(&file).display()))?;
        let mut certs = Vec::new();
        for item in ureq::tls::parse_pem(&text) {
            if let Ok(PemItem::Certificate(c)) = item {
                certs.push(c);
            }
        }
        if certs.is_empty() {
            bail!(
                "{var}: {} holds no PEM certificate",
                Path::new(&file).display()
            );
        }
        return Ok(Some(certs));
    }
    Ok(None)
}

/// Whether a transport error is worth another try.
fn retryable(e: &ureq::Error) -> bool {
    matches!(
        e,
        ureq::Error::Io(_)
            | ureq::Error::Timeout(_)
            | ureq::Error::Protocol(_)
            | ureq::Error::ConnectionFailed
    )
}

/// Whether an error chain ends in a retryable transport error.
pub fn is_transport(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<ureq::Error>().is_some_and(retryable)
            || e.downcast_ref::<std::io::Error>().is_some()
    })
}

/// 0.2 s, 0.4 s, 0.8 s, ... up to 5 s, or what `Retry-After` asks (up to
/// 30 s).
pub fn backoff(attempt: u32, retry_after: Option<u64>) -> Duration {
    if let Some(s) = retry_after {
        return Duration::from_secs(s.min(30));
    }
    Duration::from_millis((200u64 << attempt.saturating_sub(1).min(5)).min(5000))
}

/// A header as a string.
pub fn header(reply: &Reply, name: &str) -> Option<String> {
    reply
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Whether the answer is a web page rather than the API.
pub fn is_html(reply: &Reply) -> bool {
    header(reply, "content-type").is_some_and(|t| t.to_ascii_lowercase().contains("text/html"))
}

/// `: CODE: message` from the registry's JSON error body, if it has one.
fn api_code(reply: Reply) -> Option<String> {
    let body = reply
        .into_body()
        .with_config()
        .limit(ERROR_BODY_LIMIT)
        .read_to_vec()
        .ok()?;
    error_detail(&body)
}

/// ` CODE: MESSAGE` of the first error of a registry's error body (the
/// distribution spec's `{"errors": [...]}`), cut short, the message
/// without control characters.
pub fn error_detail(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<ApiError>,
    }
    #[derive(Deserialize)]
    struct ApiError {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let errors: Errors = serde_json::from_slice(body).ok()?;
    let first = errors.errors.first()?;
    let message: String = first
        .message
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    let code: String = first.code.chars().take(100).collect();
    Some(format!(" {code}: {message}"))
}

/// The token of a token server's answer (`token`, or OAuth's
/// `access_token`), if it is JSON with a non-empty one.
pub fn token_of_answer(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct TokenReply {
        #[serde(default)]
        token: Option<String>,
        #[serde(default)]
        access_token: Option<String>,
    }
    let parsed: TokenReply = serde_json::from_slice(body).ok()?;
    parsed
        .token
        .or(parsed.access_token)
        .filter(|t| !t.is_empty())
}

/// A `WWW-Authenticate` challenge: a scheme and `key="value"` parameters.
#[derive(Debug)]
pub struct Challenge {
    /// Lowercase: `basic`, `bearer`.
    pub scheme: String,
    params: Vec<(String, String)>,
}

impl Challenge {
    /// Parses `Bearer realm="https://auth",service="reg",scope="a:b:pull,push"`.
    pub fn parse(text: &str) -> Result<Challenge> {
        let text = text.trim();
        let (scheme, mut rest) = text.split_once(' ').unwrap_or((text, ""));
        if scheme.is_empty() {
            bail!("empty challenge");
        }
        let mut params = Vec::new();
        loop {
            rest = rest.trim_start_matches([' ', ',']);
            if rest.is_empty() {
                break;
            }
            let (key, after) = rest.split_once('=').context("a parameter without =")?;
            let (value, after) = if let Some(quoted) = after.strip_prefix('"') {
                let mut value = String::new();
                let mut chars = quoted.char_indices();
                let mut end = None;
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => {
                            if let Some((_, n)) = chars.next() {
                                value.push(n);
                            }
                        }
                        '"' => {
                            end = Some(i);
                            break;
                        }
                        c => value.push(c),
                    }
                }
                let end = end.context("an unterminated quoted value")?;
                (value, &quoted[end + 1..])
            } else {
                let end = after.find(',').unwrap_or(after.len());
                (after[..end].trim().to_owned(), &after[end..])
            };
            params.push((key.trim().to_ascii_lowercase(), value));
            rest = after;
        }
        Ok(Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params,
        })
    }

    pub fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Percent-encodes a query value (RFC 3986 unreserved characters kept).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn credentials_stay_at_the_registry_origin() {
        let base = "https://registry.example:5000";
        assert!(same_origin(
            "https://registry.example:5000/v2/a/blobs/uploads/1",
            base
        ));
        assert!(same_origin("https://REGISTRY.example:5000/x", base));
        assert!(!same_origin("https://registry.example:5001/x", base));
        assert!(!same_origin("http://registry.example:5000/x", base));
        assert!(!same_origin("https://other.example:5000/x", base));
        assert!(same_origin("https://r.example/x", "https://r.example:443"));
        assert!(!same_origin("not a url", base));
    }

    use super::*;

    #[test]
    fn parses_challenges() {
        let c = Challenge::parse(
            r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.param("realm"), Some("https://auth.example.com/token"));
        assert_eq!(c.param("service"), Some("registry.example.com"));
        assert_eq!(c.param("scope"), Some("repository:a/b:pull,push"));
        let c = Challenge::parse(r#"Basic realm="Registry Realm""#).unwrap();
        assert_eq!(c.scheme, "basic");
        assert_eq!(c.param("realm"), Some("Registry Realm"));
        assert!(Challenge::parse(r#"Bearer realm="x"#).is_err());
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(1, None), Duration::from_millis(200));
        assert_eq!(backoff(2, None), Duration::from_millis(400));
        assert_eq!(backoff(20, None), Duration::from_millis(5000));
        assert_eq!(backoff(1, Some(100)), Duration::from_secs(30));
    }

    #[test]
    fn encodes_scopes() {
        assert_eq!(
            percent_encode("repository:a/b:pull,push"),
            "repository%3Aa%2Fb%3Apull%2Cpush"
        );
    }
}
