//! A TCP proxy in front of a test server that cuts connections at chosen
//! offsets, flips a byte or refuses blob GETs: networks failing mid-way.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

    // No test counts the upload yet; it stands beside `down` for one that will.
    #[allow(dead_code)]
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
