//! A real registry for the tests: Debian's docker-registry (distribution
//! 2.8) on 127.0.0.1, anonymous, with htpasswd, TLS or token auth.

mod certificates;
mod token;

use std::fs;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use super::process::{run, stevedore, tempdir};
use certificates::make_certificates;
use token::TokenServer;

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

    /// Runs the copy app (`copyToRegistry`, `copyTo`) of a Nix result,
    /// `bin/NAME` of `app`, to push to `dest` with this registry's options
    /// (in the sandboxed Nix's tree when that is the Nix under test);
    /// fails the test with its error when the push fails.
    pub fn run_copy_app(&self, app: &Path, name: &str, dest: &str) {
        let out = super::process::run_bounded(
            super::nix::nix()
                .run_in_tree(&app.join("bin").join(name))
                .arg(dest)
                .args(self.stevedore_args()),
            Duration::from_secs(120),
        );
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
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

/// `stevedore push SOURCE DEST` with the registry's arguments; returns the
/// output.
pub fn push(reg: &Registry, source: &Path, dest: &str, extra: &[&str]) -> Output {
    run(reg
        .stevedore()
        .arg("push")
        .arg(source)
        .arg(dest)
        .args(reg.stevedore_args())
        .args(extra))
}
