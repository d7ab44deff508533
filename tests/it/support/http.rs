//! Scripted HTTP/1.1 servers on 127.0.0.1: each answers every request as a
//! test says (stalling too) and records what it got.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
