//! Small helpers shared by the integration tests: running the binary,
//! temporary directories, adding fixtures to the Nix store, writing specs.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

/// The `stevedore` binary under test.
pub fn stevedore() -> Command {
    Command::new(env!("CARGO_BIN_EXE_stevedore"))
}

/// Runs a command, panicking with its output if it fails.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{cmd:?} failed with {}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out
}

/// Runs a command that must fail, returning its standard error.
pub fn run_fail(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        !out.status.success(),
        "{cmd:?} succeeded but should have failed\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stderr).unwrap()
}

/// A fresh temporary directory, removed when dropped.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("stevedore-test-")
        .tempdir()
        .unwrap()
}

/// Adds a directory tree to the Nix store (`nix-store --add`) and returns
/// the store path. Nix canonicalises it: modes 0444/0555, mtime 1, root.
pub fn nix_add(dir: &Path) -> PathBuf {
    let out = run(Command::new("nix-store").arg("--add").arg(dir));
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// A store path holding the static busybox as `bin/busybox`, with
/// `bin/sh` and `bin/echo` as symlinks to it.
pub fn busybox_store_path() -> PathBuf {
    let dir = tempdir();
    let root = dir.path().join("busybox-static");
    fs::create_dir_all(root.join("bin")).unwrap();
    fs::copy("/bin/busybox", root.join("bin/busybox")).expect("/bin/busybox from busybox-static");
    for applet in ["sh", "echo", "cat", "ls", "id", "stat"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    nix_add(&root)
}

/// A version-1 spec with the given store-path layers; `extra` fields are
/// merged in at the top level.
pub fn spec(name: &str, layers: &[Vec<&Path>], extra: Value) -> Value {
    let layers: Vec<Value> = layers
        .iter()
        .map(|paths| json!({ "paths": paths.iter().map(|p| p.to_str().unwrap()).collect::<Vec<_>>() }))
        .collect();
    let mut spec = json!({ "version": 1, "name": name, "tag": "latest", "layers": layers });
    if let Value::Object(extra) = extra {
        for (k, v) in extra {
            spec[k] = v;
        }
    }
    spec
}

/// Writes a spec into `dir` and returns its path.
pub fn write_spec(dir: &Path, spec: &Value) -> PathBuf {
    let path = dir.join("spec.json");
    fs::write(&path, serde_json::to_vec_pretty(spec).unwrap()).unwrap();
    path
}

/// `stevedore build SPEC --format F --compress C --out OUT`.
pub fn build(spec: &Path, format: &str, compress: &str, out: &Path) {
    run(stevedore()
        .arg("build")
        .arg(spec)
        .args(["--format", format, "--compress", compress, "--out"])
        .arg(out));
}

/// A podman command with this machine's settings: no default ulimits
/// (the machine refuses them) and runc.
pub fn podman() -> Command {
    let conf = std::env::temp_dir().join("stevedore-test-containers.conf");
    if !conf.exists() {
        fs::write(
            &conf,
            "[containers]\ndefault_ulimits = []\n[engine]\nruntime = \"runc\"\n",
        )
        .unwrap();
    }
    let mut cmd = Command::new("podman");
    cmd.env("CONTAINERS_CONF", conf);
    cmd
}

/// Held while a command adds images to or removes them from podman's store.
///
/// containers/storage shares layers between images: a `podman load` that
/// finds a layer already present can fail with "layer not known" when a
/// concurrent `podman rmi` of another image removes that layer meanwhile.
/// Tests run in parallel threads of one process, so one lock serialises
/// every load, import, save and removal.
static PODMAN_STORE: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Takes the podman store lock (see [`PODMAN_STORE`]).
pub fn podman_store_lock() -> std::sync::MutexGuard<'static, ()> {
    PODMAN_STORE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs a command that changes podman's image store (`podman load`,
/// `import`, `save`, `stevedore load --into podman`, a skopeo copy to
/// `containers-storage:`) under the store lock, panicking if it fails.
pub fn run_in_podman_store(cmd: &mut Command) -> Output {
    let _guard = podman_store_lock();
    run(cmd)
}

/// `podman rmi -f REFERENCE` under the store lock; a missing image is fine.
pub fn podman_rmi(reference: &str) {
    let _guard = podman_store_lock();
    let _ = podman().args(["rmi", "-f", reference]).output();
}

/// A podman image that is removed when dropped (also when a test fails).
pub struct PodmanImage(pub String);

impl Drop for PodmanImage {
    fn drop(&mut self) {
        podman_rmi(&self.0);
    }
}

/// Checks that podman load succeeded and reported `reference`.
fn loaded(out: &Output, reference: &str) -> PodmanImage {
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "podman load failed:\n{said}");
    assert!(
        said.contains(&format!("Loaded image: {reference}\n"))
            || said.contains(&format!("Loaded image(s): {reference}\n")),
        "podman load did not report {reference}:\n{said}"
    );
    PodmanImage(reference.to_owned())
}

/// `podman load -i ARCHIVE`, which must name the image `reference`.
pub fn podman_load(archive: &Path, reference: &str) -> PodmanImage {
    let _guard = podman_store_lock();
    let out = podman()
        .arg("load")
        .arg("-i")
        .arg(archive)
        .output()
        .unwrap();
    loaded(&out, reference)
}

/// `PRODUCER | podman load` (a launcher, `stevedore stream`), which must
/// name the image `reference`.
pub fn podman_load_stream(producer: &mut Command, reference: &str) -> PodmanImage {
    let _guard = podman_store_lock();
    let mut child = producer
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {producer:?}: {e}"));
    let pipe = child.stdout.take().unwrap();
    let load = podman().arg("load").stdin(pipe).output().unwrap();
    let produced = child.wait_with_output().unwrap();
    assert!(
        produced.status.success(),
        "{producer:?} failed ({}): {}",
        produced.status,
        String::from_utf8_lossy(&produced.stderr)
    );
    loaded(&load, reference)
}

/// `podman run --rm --network none IMAGE ARGS...`, its standard output.
pub fn podman_run(image: &PodmanImage, args: &[&str]) -> String {
    podman_stdout(
        podman()
            .args(["run", "--rm", "--network", "none", &image.0])
            .args(args),
    )
}

/// `podman image inspect`, the image's JSON object.
pub fn podman_inspect(image: &PodmanImage) -> Value {
    let out = podman_stdout(podman().args(["image", "inspect", &image.0]));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v.as_array().map(Vec::len), Some(1), "{out}");
    v[0].clone()
}

/// A podman command's standard output; it must succeed.
fn podman_stdout(cmd: &mut Command) -> String {
    String::from_utf8(run(cmd).stdout).unwrap()
}

/// The `CONTAINERS_CONF` that [`podman`] sets, for other programs that
/// talk to podman's store.
pub fn containers_conf() -> std::ffi::OsString {
    podman()
        .get_envs()
        .find(|(k, _)| *k == "CONTAINERS_CONF")
        .and_then(|(_, v)| v)
        .expect("podman() sets CONTAINERS_CONF")
        .to_owned()
}

/// The names in a directory, sorted.
pub fn dir_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The members of a tar file by name (without `./`), with their data.
pub fn tar_members(path: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    use std::io::Read as _;
    let mut out = std::collections::BTreeMap::new();
    let mut archive = tar::Archive::new(fs::File::open(path).unwrap());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        out.insert(name.trim_start_matches("./").to_owned(), data);
    }
    out
}

/// The SHA-256 of some bytes, as `sha256:<hex>`.
pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// Runs `stevedore build SPEC --format F --compress C --out PARENT/OUT ARGS`,
/// with `PARENT` a fresh empty directory, optionally behind a command prefix
/// (such as `setpriv ...`), and checks that it failed the way a user wants:
/// a non-zero exit that is not a panic, exactly one line on standard error,
/// nothing at the output path and no temporary file or directory left in
/// `PARENT`. Returns that line.
pub fn build_fails(
    prefix: &[&str],
    spec: &Path,
    format: &str,
    compress: &str,
    out: &str,
    args: &[&str],
) -> String {
    use std::os::unix::fs::PermissionsExt;
    let parent = tempdir();
    // Writable by all, for runs under another user.
    fs::set_permissions(parent.path(), fs::Permissions::from_mode(0o777)).unwrap();
    let out = parent.path().join(out);
    let mut cmd = match prefix {
        [] => stevedore(),
        [program, rest @ ..] => {
            let mut cmd = Command::new(program);
            cmd.args(rest).arg(env!("CARGO_BIN_EXE_stevedore"));
            cmd
        }
    };
    cmd.arg("build")
        .arg(spec)
        .args(["--format", format, "--compress", compress, "--out"])
        .arg(&out)
        .args(args);
    let output = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !output.status.success(),
        "{cmd:?} succeeded but should have failed"
    );
    assert_one_line_error(&stderr, &format!("{cmd:?}"));
    assert_eq!(output.status.code(), Some(1), "{cmd:?}: {stderr}");
    assert!(
        fs::symlink_metadata(&out).is_err(),
        "{cmd:?} failed but left {}",
        out.display()
    );
    assert_eq!(
        dir_names(parent.path()),
        Vec::<String>::new(),
        "{cmd:?} failed but left files in the output directory"
    );
    stderr.trim_end().to_owned()
}

/// Runs a command for at most `limit`, killing it after; its output.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stdout.read_to_end(&mut b);
        b
    });
    let err_reader = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stderr.read_to_end(&mut b);
        b
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Output {
        status,
        stdout: out_reader.join().unwrap(),
        stderr: err_reader.join().unwrap(),
    }
}

/// Checks that standard error is one `stevedore: error:` line, no panic.
pub fn assert_one_line_error(stderr: &str, what: &str) {
    assert!(!stderr.contains("panicked"), "{what} panicked:\n{stderr}");
    let text = stderr.trim_end();
    assert!(
        text.starts_with("stevedore: error: ") && !text.contains('\n'),
        "{what}: expected one error line on stderr, got:\n{stderr}"
    );
}

// ---------------------------------------------------------------------------
// A real registry: Debian's docker-registry (distribution 2.8) on 127.0.0.1.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::process::Child;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether something on `port` answers `GET /v2/` with 200.
fn answers_v2(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!("GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    response.starts_with(b"HTTP/1.0 200") || response.starts_with(b"HTTP/1.1 200")
}

/// How a test registry lets clients in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Auth {
    /// Plain http, no authentication.
    Anonymous,
    /// Plain http, htpasswd (bcrypt) Basic authentication.
    Basic,
    /// https with a certificate from a CA the test makes; no authentication.
    Tls,
    /// Plain http, Bearer tokens from a token server the test runs.
    Token,
}

/// The user and password of the registries with authentication.
pub const USER: &str = "stevedore-user";
pub const PASSWORD: &str = "pa55-w0rd-secret";

/// A `docker-registry serve` on 127.0.0.1 with its own storage, killed
/// when dropped.
pub struct Registry {
    child: Child,
    pub port: u16,
    pub auth: Auth,
    pub dir: tempfile::TempDir,
    log_path: PathBuf,
    _token_server: Option<TokenServer>,
}

impl Registry {
    /// An anonymous registry.
    pub fn start() -> Registry {
        Registry::start_with(Auth::Anonymous)
    }

    pub fn start_with(auth: Auth) -> Registry {
        let mut last_log = String::new();
        // The port may be taken between choosing and binding it: try again
        // with another.
        for _ in 0..5 {
            let dir = tempdir();
            let port = free_port();
            let storage = dir.path().join("storage");
            fs::create_dir(&storage).unwrap();
            let mut config = format!(
                "version: 0.1\nlog:\n  level: info\n  formatter: text\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
                storage.display()
            );
            let mut token_server = None;
            match auth {
                Auth::Anonymous => {}
                Auth::Basic => {
                    let hash = bcrypt::hash_with_result(PASSWORD, 5)
                        .unwrap()
                        .format_for_version(bcrypt::Version::TwoA);
                    let htpasswd = dir.path().join("htpasswd");
                    fs::write(&htpasswd, format!("{USER}:{hash}\n")).unwrap();
                    config.push_str(&format!(
                        "auth:\n  htpasswd:\n    realm: stevedore-test\n    path: {}\n",
                        htpasswd.display()
                    ));
                }
                Auth::Tls => {
                    make_certificates(dir.path());
                    config.push_str(&format!(
                        "  tls:\n    certificate: {}\n    key: {}\n",
                        dir.path().join("server.pem").display(),
                        dir.path().join("server.key").display()
                    ));
                }
                Auth::Token => {
                    let server = TokenServer::start(dir.path());
                    config.push_str(&format!(
                        "auth:\n  token:\n    realm: https://127.0.0.1:{}/token\n    service: stevedore-test\n    issuer: stevedore-test-issuer\n    rootcertbundle: {}\n",
                        server.port,
                        dir.path().join("token.pem").display()
                    ));
                    token_server = Some(server);
                }
            }
            let config_path = dir.path().join("config.yml");
            fs::write(&config_path, config).unwrap();
            let log_path = dir.path().join("registry.log");
            let log = fs::File::create(&log_path).unwrap();
            let child = Command::new("docker-registry")
                .arg("serve")
                .arg(&config_path)
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("docker-registry");
            let mut registry = Registry {
                child,
                port,
                auth,
                dir,
                log_path,
                _token_server: token_server,
            };
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                let up = if auth == Auth::Anonymous {
                    answers_v2(port)
                } else {
                    registry.log().contains("listening on")
                };
                if up {
                    return registry;
                }
                if registry.child.try_wait().unwrap().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            last_log = registry.log();
            drop(registry);
        }
        panic!("docker-registry did not start:\n{last_log}");
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn reference(&self, repo: &str, tag: &str) -> String {
        format!("docker://127.0.0.1:{}/{repo}:{tag}", self.port)
    }

    /// Everything the registry logged so far, its access log included.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The CA certificate of a TLS registry.
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A directory with the CA as `ca.crt`, for skopeo's `--cert-dir`.
    pub fn cert_dir(&self) -> PathBuf {
        let dir = self.dir.path().join("certs.d");
        if !dir.exists() {
            fs::create_dir(&dir).unwrap();
            fs::copy(self.ca(), dir.join("ca.crt")).unwrap();
        }
        dir
    }

    /// Arguments that let `stevedore push`/`pull` in: credentials, and
    /// plain http where there is no TLS.
    pub fn stevedore_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if self.auth != Auth::Tls {
            args.push("--tls-verify=false".to_owned());
        }
        if matches!(self.auth, Auth::Basic | Auth::Token) {
            args.push(format!("--creds={USER}:{PASSWORD}"));
        }
        args
    }

    /// A `stevedore` command that trusts this registry's CA.
    pub fn stevedore(&self) -> Command {
        let mut cmd = stevedore();
        if self.auth == Auth::Tls {
            cmd.env("SSL_CERT_FILE", self.ca());
        }
        cmd
    }

    /// skopeo's options for this registry as source (`src`) or
    /// destination (`dest`), or for `inspect` (`""`).
    pub fn skopeo_args(&self, side: &str) -> Vec<String> {
        let prefix = if side.is_empty() {
            String::new()
        } else {
            format!("{side}-")
        };
        let mut args = Vec::new();
        if self.auth == Auth::Tls {
            args.push(format!("--{prefix}cert-dir={}", self.cert_dir().display()));
        } else {
            args.push(format!("--{prefix}tls-verify=false"));
        }
        if matches!(self.auth, Auth::Basic | Auth::Token) {
            args.push(format!("--{prefix}creds={USER}:{PASSWORD}"));
        }
        args
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs openssl, panicking with its output on failure.
fn openssl(dir: &Path, args: &[&str]) {
    run(Command::new("openssl").current_dir(dir).args(args));
}

/// A CA, and a server certificate for 127.0.0.1 signed by it.
fn make_certificates(dir: &Path) {
    let subj_ca = "/CN=stevedore test CA";
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "3650",
            "-subj",
            subj_ca,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "3650",
            "-extfile",
            "server.ext",
        ],
    );
}

/// A token server for distribution's token auth: it checks Basic
/// credentials and answers a JWT (RS256, signed with openssl, the signing
/// certificate in `x5c`) granting what was asked.
struct TokenServer {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl TokenServer {
    fn start(dir: &Path) -> TokenServer {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                "token.key",
                "-out",
                "token.pem",
                "-days",
                "3650",
                "-subj",
                "/CN=stevedore test tokens",
            ],
        );
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

/// A TCP proxy in front of a port that cuts connections once the bytes it
/// has carried in one direction, over all connections, reach chosen
/// offsets, and can flip one byte. It counts what it carries.
pub struct CuttingProxy {
    pub port: u16,
    state: Arc<ProxyState>,
}

#[derive(Default)]
struct ProxyState {
    stop: AtomicBool,
    /// Bytes carried from the client to the server, and back.
    up: AtomicU64,
    down: AtomicU64,
    /// Offsets (in `up` or `down` bytes) at which to cut, ascending.
    cuts_up: Mutex<Vec<u64>>,
    cuts_down: Mutex<Vec<u64>>,
    /// A `down` offset whose byte is flipped.
    corrupt_down: Mutex<Option<u64>>,
    /// Blob GETs to answer with this status instead of forwarding them.
    refuse_blob_gets: Mutex<Option<(u16, usize)>>,
}

impl CuttingProxy {
    pub fn start(upstream: u16) -> CuttingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(ProxyState::default());
        let shared = state.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(1800);
            while !shared.stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((client, _)) => {
                        let _ = client.set_nonblocking(false);
                        let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                            continue;
                        };
                        for (from, to, up) in [
                            (
                                client.try_clone().unwrap(),
                                server.try_clone().unwrap(),
                                true,
                            ),
                            (server, client, false),
                        ] {
                            let state = shared.clone();
                            std::thread::spawn(move || pump(from, to, up, &state));
                        }
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        CuttingProxy { port, state }
    }

    /// Cuts when the client has sent `offset` more bytes than so far.
    pub fn cut_up_after(&self, offset: u64) {
        let at = self.state.up.load(Ordering::SeqCst) + offset;
        self.state.cuts_up.lock().unwrap().push(at);
    }

    /// Cuts when the server has sent `offset` more bytes than so far.
    pub fn cut_down_after(&self, offset: u64) {
        let at = self.state.down.load(Ordering::SeqCst) + offset;
        self.state.cuts_down.lock().unwrap().push(at);
    }

    /// Flips the byte the server sends `offset` bytes from now.
    pub fn corrupt_down_at(&self, offset: u64) {
        let at = self.state.down.load(Ordering::SeqCst) + offset;
        *self.state.corrupt_down.lock().unwrap() = Some(at);
    }

    /// Answers the next `count` blob GETs with `status` (and
    /// `Retry-After: 0`) and closes their connections.
    pub fn refuse_blob_gets(&self, status: u16, count: usize) {
        *self.state.refuse_blob_gets.lock().unwrap() = Some((status, count));
    }

    pub fn up(&self) -> u64 {
        self.state.up.load(Ordering::SeqCst)
    }

    pub fn down(&self) -> u64 {
        self.state.down.load(Ordering::SeqCst)
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, up: bool, state: &ProxyState) {
    let mut buf = vec![0u8; 16 * 1024];
    let (count, cuts) = if up {
        (&state.up, &state.cuts_up)
    } else {
        (&state.down, &state.cuts_down)
    };
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if up {
            let mut refuse = state.refuse_blob_gets.lock().unwrap();
            if let Some((status, left)) = *refuse
                && left > 0
                && buf[..n].starts_with(b"GET ")
                && buf[..n].windows(14).any(|w| w == b"/blobs/sha256:")
            {
                *refuse = Some((status, left - 1));
                let _ = from.write_all(
                    format!(
                        "HTTP/1.1 {status} Refused\r\nRetry-After: 0\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    )
                    .as_bytes(),
                );
                let _ = from.shutdown(std::net::Shutdown::Both);
                let _ = to.shutdown(std::net::Shutdown::Both);
                return;
            }
        }
        let start = count.fetch_add(n as u64, Ordering::SeqCst);
        let end = start + n as u64;
        if !up {
            let mut corrupt = state.corrupt_down.lock().unwrap();
            if let Some(at) = *corrupt
                && at >= start
                && at < end
            {
                buf[(at - start) as usize] ^= 0xff;
                *corrupt = None;
            }
        }
        let cut = {
            let mut cuts = cuts.lock().unwrap();
            match cuts.first() {
                Some(&at) if at < end => {
                    cuts.remove(0);
                    Some(at.saturating_sub(start) as usize)
                }
                _ => None,
            }
        };
        if let Some(keep) = cut {
            let _ = to.write_all(&buf[..keep]);
            let _ = to.shutdown(std::net::Shutdown::Both);
            let _ = from.shutdown(std::net::Shutdown::Both);
            return;
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

/// A server that answers every request with an HTML page, as a web server
/// in front of no registry does.
pub fn html_server() -> Server {
    Server::start(|_, _| {
        (
            200,
            vec![("Content-Type".into(), "text/html; charset=utf-8".into())],
            b"<!DOCTYPE html><html><body><h1>Welcome to nginx!</h1></body></html>".to_vec(),
        )
    })
}

// ---------------------------------------------------------------------------
// Scripted HTTP servers on 127.0.0.1

/// One request a server got.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Header names lowercased.
    pub headers: BTreeMap<String, String>,
}

/// An answer: status, headers, body. Status [`STALL`] holds the
/// connection without reading the request's body or answering;
/// [`STALL_BODY`] answers 200 with a tenth of the body it promises, then
/// holds the connection.
pub type Answer = (u16, Vec<(String, String)>, Vec<u8>);

pub const STALL: u16 = 0;
pub const STALL_BODY: u16 = 1;

/// An HTTP/1.1 server on 127.0.0.1 that answers every request with
/// `answer` and records it; it stops when dropped (or after 10 minutes).
pub struct Server {
    pub port: u16,
    seen: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
}

impl Server {
    pub fn start(answer: impl Fn(&Request, u16) -> Answer + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen2, stop2) = (seen.clone(), stop.clone());
        let answer = Arc::new(answer);
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(600);
            while !stop2.load(Ordering::SeqCst) && Instant::now() < deadline {
                let Ok((stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let (seen, answer) = (seen2.clone(), answer.clone());
                std::thread::spawn(move || {
                    let _ = stream.set_nonblocking(false);
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut stream = stream;
                    // Keep-alive: one request after another.
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let mut parts = line.split_whitespace();
                        let method = parts.next().unwrap_or_default().to_owned();
                        let path = parts.next().unwrap_or_default().to_owned();
                        let mut headers = BTreeMap::new();
                        loop {
                            let mut h = String::new();
                            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                                return;
                            }
                            let h = h.trim_end();
                            if h.is_empty() {
                                break;
                            }
                            if let Some((k, v)) = h.split_once(':') {
                                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
                            }
                        }
                        let request = Request {
                            method,
                            path,
                            headers,
                        };
                        seen.lock().unwrap().push(request.clone());
                        let (status, extra, body) = answer(&request, port);
                        if status == STALL {
                            // Neither reads the request's body nor answers.
                            std::thread::sleep(Duration::from_secs(120));
                            return;
                        }
                        let len: usize = request
                            .headers
                            .get("content-length")
                            .and_then(|l| l.parse().ok())
                            .unwrap_or(0);
                        let mut request_body = vec![0u8; len];
                        if reader.read_exact(&mut request_body).is_err() {
                            return;
                        }
                        if status == STALL_BODY {
                            // Promises ten times the body, sends it, stops.
                            let head = format!(
                                "HTTP/1.1 200 X\r\nContent-Length: {}\r\n\r\n",
                                body.len() * 10
                            );
                            let _ = stream.write_all(head.as_bytes());
                            let _ = stream.write_all(&body);
                            std::thread::sleep(Duration::from_secs(120));
                            return;
                        }
                        let mut head =
                            format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\n", body.len());
                        for (k, v) in extra {
                            head.push_str(&format!("{k}: {v}\r\n"));
                        }
                        head.push_str("\r\n");
                        if stream.write_all(head.as_bytes()).is_err()
                            || (request.method != "HEAD" && stream.write_all(&body).is_err())
                        {
                            return;
                        }
                    }
                });
            }
        });
        Server { port, seen, stop }
    }

    pub fn requests(&self) -> Vec<Request> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// The checkout under test.
pub const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// The Nix that builds the library's images in these tests.
///
/// By default the host's (Debian 12's Nix 2.8, `sandbox = false`) with the
/// helper under test. With `STEVEDORE_TEST_NIX=sandbox`, Debian sid's Nix
/// in the tree of `scripts/sandbox-nix.sh` with the sandbox on and
/// `sandbox-fallback = false`, the static helper of
/// `scripts/build-static-helper.sh`, and shell and PATH from a busybox in
/// that store: as users build. Its store is the tree's own; store paths
/// are read on the host through [`Nix::host_path`], and launchers run in
/// the tree ([`Built::command`]).
pub struct Nix {
    /// The tree's root, in the sandbox mode.
    tree: Option<PathBuf>,
    helper: PathBuf,
}

/// The Nix these tests build with (see [`Nix`]).
pub fn nix() -> &'static Nix {
    static NIX: std::sync::OnceLock<Nix> = std::sync::OnceLock::new();
    NIX.get_or_init(|| match std::env::var("STEVEDORE_TEST_NIX").as_deref() {
        Ok("sandbox") => {
            let dir = std::env::var_os("STEVEDORE_SANDBOX_NIX")
                .map(PathBuf::from)
                .unwrap_or_else(|| Path::new(REPO).join("target/sandbox-nix"));
            assert!(
                dir.join("ready").exists(),
                "no sandboxed Nix at {}: run scripts/sandbox-nix.sh setup (scripts/test.sh does)",
                dir.display()
            );
            let helper = Path::new(REPO).join(format!(
                "target/{}-unknown-linux-gnu/release/stevedore",
                std::env::consts::ARCH
            ));
            assert!(
                helper.exists(),
                "no static helper at {}: run scripts/build-static-helper.sh (scripts/test.sh does)",
                helper.display()
            );
            Nix {
                tree: Some(dir.join("root")),
                helper,
            }
        }
        Ok("host") | Err(_) => Nix {
            tree: None,
            helper: PathBuf::from(env!("CARGO_BIN_EXE_stevedore")),
        },
        Ok(other) => panic!("STEVEDORE_TEST_NIX={other}: use sandbox or host"),
    })
}

impl Nix {
    /// Whether builds run in the Nix sandbox (of Nix 2.34).
    pub fn sandboxed(&self) -> bool {
        self.tree.is_some()
    }

    /// A command of this Nix: `nix-build`, `nix-store`, `nix-instantiate`.
    pub fn command(&self, program: &str) -> Command {
        self.run_in_tree(Path::new(program))
    }

    /// Runs `program` where this Nix's store is: in the tree for the
    /// sandboxed Nix (a launcher's interpreter is in that store).
    pub fn run_in_tree(&self, program: &Path) -> Command {
        match &self.tree {
            None => Command::new(program),
            Some(_) => {
                let mut cmd = Command::new(Path::new(REPO).join("scripts/sandbox-nix.sh"));
                cmd.arg("run").arg(program);
                cmd
            }
        }
    }

    /// The helper, as a path both Nix and the host read.
    pub fn helper(&self) -> &Path {
        &self.helper
    }

    /// Where a path of this Nix's store is on the host.
    pub fn host_path(&self, store_path: &Path) -> PathBuf {
        match &self.tree {
            None => store_path.to_owned(),
            Some(root) => root.join(store_path.strip_prefix("/").unwrap_or(store_path)),
        }
    }

    /// The arguments of `examples/default.nix` besides `helper`: in the
    /// sandbox, busybox from the store for the shell and PATH.
    pub fn example_args(&self) -> Vec<String> {
        match &self.tree {
            None => Vec::new(),
            Some(_) => ["--arg", "busybox", "/opt/busybox"]
                .map(str::to_owned)
                .to_vec(),
        }
    }

    /// The examples' arguments as a Nix attribute set's body, for
    /// `import EXAMPLES { ... }` in an expression.
    pub fn example_attrs(&self) -> String {
        let busybox = if self.sandboxed() {
            " busybox = /opt/busybox;"
        } else {
            ""
        };
        format!("helper = {};{busybox}", self.helper.display())
    }
}

/// `nix-build examples -A ATTR... --arg helper HELPER`, with the binary
/// under test as the helper.
pub fn example_build_cmd(attrs: &[&str]) -> Command {
    let nix = nix();
    let mut cmd = nix.command("nix-build");
    cmd.arg(Path::new(REPO).join("examples"));
    for attr in attrs {
        cmd.args(["-A", attr]);
    }
    cmd.arg("--arg").arg("helper").arg(nix.helper());
    cmd.args(nix.example_args());
    cmd
}

/// An example built with `nix-build -o DIR/result`; the out link (a GC
/// root) goes with the directory.
pub struct Built {
    pub dir: tempfile::TempDir,
    /// The result, where the host reads it.
    pub path: PathBuf,
    /// The store path of the result, as Nix names it.
    pub store_path: PathBuf,
}

impl Built {
    /// Runs the result (a launcher), where its store is.
    pub fn command(&self) -> Command {
        nix().run_in_tree(&self.store_path)
    }
}

/// Builds one example attribute.
pub fn build_example(attr: &str) -> Built {
    let dir = tempdir();
    let link = dir.path().join("result");
    let out = run(example_build_cmd(&[attr]).arg("-o").arg(&link));
    let out = String::from_utf8(out.stdout).unwrap();
    let store_path = PathBuf::from(out.trim());
    assert!(
        store_path.starts_with("/nix/store"),
        "nix-build -A {attr} printed {out:?}"
    );
    assert_eq!(fs::read_link(&link).unwrap(), store_path, "the out link");
    Built {
        dir,
        path: nix().host_path(&store_path),
        store_path,
    }
}

/// `nix-store --realise --check PATHS`: rebuilds the derivations and
/// fails the test unless every output comes out bit for bit the same.
pub fn realise_check<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(drvs: &[S]) {
    let out = nix()
        .command("nix-store")
        .args(["--realise", "--check"])
        .args(drvs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nix-store --realise --check {drvs:?}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
