//! The webhook receiver Alertmanager delivers to, inside the test: it records every
//! notification.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use llm_span_testkit::process::wait_for;
use serde_json::Value;

/// One notification the webhook received.
#[derive(Debug, Clone)]
pub(crate) struct Notification {
    pub(crate) path: String,
    pub(crate) body: Value,
}

impl Notification {
    /// `(alertname, model, status)` of every alert in it.
    pub(crate) fn alerts(&self) -> Vec<(String, String, String)> {
        let field =
            |alert: &Value, name: &str| alert["labels"][name].as_str().unwrap_or("").to_owned();
        self.body["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| {
                (
                    field(a, "alertname"),
                    field(a, "model"),
                    a["status"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect()
    }
}

impl std::ops::Index<&str> for Notification {
    type Output = Value;

    fn index(&self, key: &str) -> &Value {
        &self.body[key]
    }
}

/// A webhook receiver on 127.0.0.1: records every request's path and JSON body and
/// answers 200. Its thread stops when it drops.
pub(crate) struct Webhook {
    pub(crate) addr: SocketAddr,
    received: Arc<Mutex<Vec<Notification>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Webhook {
    pub(crate) fn start() -> Webhook {
        let listener = TcpListener::bind("127.0.0.1:0").expect("webhook port");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("webhook address");
        let received: Arc<Mutex<Vec<Notification>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (received, stop) = (received.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            if let Some(notification) = Webhook::serve(stream) {
                                received.lock().expect("webhook log").push(notification);
                            }
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            })
        };
        Webhook {
            addr,
            received,
            stop,
            thread: Some(thread),
        }
    }

    /// Reads one request, answers 200 and closes the connection.
    fn serve(mut stream: TcpStream) -> Option<Notification> {
        stream.set_nonblocking(false).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        let mut data = Vec::new();
        let mut chunk = [0u8; 8192];
        let head_end = loop {
            if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            let n = stream.read(&mut chunk).ok().filter(|n| *n > 0)?;
            data.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .unwrap_or(0);
        while data.len() < head_end + length {
            let n = stream.read(&mut chunk).ok().filter(|n| *n > 0)?;
            data.extend_from_slice(&chunk[..n]);
        }
        let _ =
            stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
        let body = serde_json::from_slice(&data[head_end..head_end + length]).ok()?;
        Some(Notification { path, body })
    }

    pub(crate) fn received(&self) -> Vec<Notification> {
        self.received.lock().expect("webhook log").clone()
    }

    /// Waits up to `timeout` for a notification that `check` accepts.
    pub(crate) fn wait(
        &self,
        timeout: Duration,
        check: impl Fn(&Notification) -> bool,
    ) -> Option<Notification> {
        wait_for(timeout, || self.received().into_iter().find(|n| check(n)))
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
