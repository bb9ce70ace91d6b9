//! Hostile HTTP against /metrics: floods of silent connections, byte-a-second
//! clients, oversized headers and bodies, garbage, wrong methods and paths, failed
//! authentication, all at once. A legitimate scrape keeps succeeding within 2 s, the
//! server's connections stay bounded, and everything is closed once the attack stops.
//! (Its own binary: it counts this process's sockets.)

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use llm_span_prometheus::ExporterBuilder;
use llm_span_testkit::http;
use llm_span_testkit::process::{rss_bytes, wait_for};

const MAX_CONNECTIONS: usize = 64;
const ATTACK: Duration = Duration::from_secs(5);
/// What a legitimate scrape may take while the attack runs.
const SCRAPE_BOUND: Duration = Duration::from_secs(2);
/// Legitimate scrapes made under attack, at the least.
const MIN_SCRAPES: usize = 10;

/// Server-side sockets of `port` that are established: `(accepted, queued)`, where queued
/// ones wait in the listen queue (a socket has no inode until it is accepted). Exact only
/// at rest: the kernel's table is read bucket by bucket, so under a churn of thousands of
/// connections a second it also counts sockets that never existed at the same time.
fn server_sockets(port: u16) -> (usize, usize) {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default()
        + &std::fs::read_to_string("/proc/net/tcp6").unwrap_or_default();
    let local = format!(":{port:04X}");
    let (mut accepted, mut queued) = (0, 0);
    for line in table.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() > 9 && fields[1].ends_with(&local) && fields[3] == "01" {
            if fields[9] == "0" {
                queued += 1;
            } else {
                accepted += 1;
            }
        }
    }
    (accepted, queued)
}

fn connect(addr: SocketAddr) -> Option<TcpStream> {
    http::connect_with(addr, Duration::from_secs(1), Duration::from_secs(3)).ok()
}

/// Sends `request` and returns the status code, if the server answered one (a
/// response cut short by a reset still counts).
fn exchange(addr: SocketAddr, request: &[u8]) -> Option<u16> {
    let mut stream = connect(addr)?;
    stream.write_all(request).ok()?;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    http::status(&response)
}

fn legit_scrape(addr: SocketAddr) -> Result<Duration, String> {
    let started = Instant::now();
    let mut stream =
        http::connect_with(addr, SCRAPE_BOUND, SCRAPE_BOUND).map_err(|e| e.to_string())?;
    let auth = http::basic_auth("prometheus", "s3cret");
    let request = http::format_request(addr, "GET", "/metrics", &[("Authorization", &auth)], None);
    let response = http::exchange(&mut stream, &request).map_err(|e| e.to_string())?;
    if response.status != 200 || !response.body.contains("llm_requests_total") {
        return Err(format!("unexpected response: status {}", response.status));
    }
    Ok(started.elapsed())
}

#[test]
fn scrapes_succeed_while_the_endpoint_is_attacked() {
    let (_recorder, server) = ExporterBuilder::new()
        .with_listen_addr(([127, 0, 0, 1], 0))
        .with_basic_auth("prometheus", "s3cret")
        .with_max_connections(MAX_CONNECTIONS)
        .with_header_read_timeout(Duration::from_secs(2))
        .spawn()
        .expect("exporter");
    let addr = server.local_addr();
    let port = addr.port();
    let stop = Arc::new(AtomicBool::new(false));
    // Set once the attack has run: the flood stops changing (its connections stay open)
    // and the one-shot requests stop, so that the server's connections can be counted.
    let freeze = Arc::new(AtomicBool::new(false));
    let answers = Arc::new(AtomicU64::new(0));
    let mut attackers = Vec::new();

    // A churn of silent connections: far more than the cap, replaced as they close.
    for _ in 0..2 {
        let (stop, freeze) = (stop.clone(), freeze.clone());
        attackers.push(std::thread::spawn(move || {
            let mut held: Vec<TcpStream> = Vec::new();
            while !stop.load(Ordering::Acquire) {
                if freeze.load(Ordering::Acquire) {
                    // Hold what is open.
                } else if held.len() < 150 {
                    held.extend(connect(addr));
                } else {
                    held.remove(0);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }));
    }
    // Byte-a-second clients that never finish their headers.
    for _ in 0..2 {
        let stop = stop.clone();
        attackers.push(std::thread::spawn(move || {
            let mut slow: Vec<TcpStream> = (0..10).filter_map(|_| connect(addr)).collect();
            let line = b"GET /metrics HTTP/1.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
            let mut i = 0;
            while !stop.load(Ordering::Acquire) {
                for stream in &mut slow {
                    let _ = stream.write_all(&line[i % line.len()..i % line.len() + 1]);
                }
                i += 1;
                std::thread::sleep(Duration::from_millis(1000));
            }
        }));
    }
    // Oversized headers, oversized bodies, garbage, wrong methods and paths, bad auth.
    let requests: Vec<Vec<u8>> = vec![
        [b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec(), vec![b'a'; 64 * 1024], b"\r\n\r\n".to_vec()].concat(),
        [b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n".to_vec(), vec![b'b'; 256 * 1024]].concat(),
        (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect(),
        b"DELETE /metrics HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        b"GET /admin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Basic cHJvbWV0aGV1czp3cm9uZw==\r\nConnection: close\r\n\r\n".to_vec(),
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer guess\r\nConnection: close\r\n\r\n".to_vec(),
    ];
    for request in requests {
        let (freeze, answers) = (freeze.clone(), answers.clone());
        attackers.push(std::thread::spawn(move || {
            while !freeze.load(Ordering::Acquire) {
                if exchange(addr, &request).is_some() {
                    answers.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }

    let rss_before = rss_bytes();
    let mut rss_peak = rss_before;
    let started = Instant::now();
    let (mut scrapes, mut slowest) = (0, Duration::ZERO);
    std::thread::sleep(Duration::from_millis(300));
    // At least MIN_SCRAPES, however slowly a loaded machine runs this thread.
    while started.elapsed() < ATTACK || (scrapes < MIN_SCRAPES && started.elapsed() < 4 * ATTACK) {
        let took = legit_scrape(addr)
            .unwrap_or_else(|e| panic!("scrape {scrapes} failed under attack: {e}"));
        assert!(took < SCRAPE_BOUND, "scrape took {took:?}");
        slowest = slowest.max(took);
        scrapes += 1;
        rss_peak = rss_peak.max(rss_bytes());
        std::thread::sleep(Duration::from_millis(100));
    }
    // The flood (about 330 connections) still open, now at rest: the server holds at most
    // its cap, plus the one a new connection is handed over to while its victim closes.
    freeze.store(true, Ordering::Release);
    std::thread::sleep(Duration::from_millis(500));
    let (accepted, queued) = server_sockets(port);
    let still_served = legit_scrape(addr).map_err(|e| format!("scrape after the flood: {e}"));
    stop.store(true, Ordering::Release);
    for attacker in attackers {
        attacker.join().expect("attacker");
    }
    let answered = answers.load(Ordering::Relaxed);
    // Once the attackers are gone, so are their connections on the server side.
    let drained = wait_for(Duration::from_secs(5), || {
        (server_sockets(port) == (0, 0)).then_some(())
    });
    let rss_growth = rss_peak.saturating_sub(rss_before);
    eprintln!(
        "{scrapes} scrapes under attack, slowest {slowest:?}; {answered} hostile requests answered; with the flood held open, {accepted} connections accepted (cap {MAX_CONNECTIONS}) and {queued} in the listen queue; RSS +{} KiB (attackers included)",
        rss_growth >> 10
    );
    // Attackers and server share this process: the bound covers both.
    assert!(
        rss_growth < 64 << 20,
        "resident memory grew by {rss_growth} bytes"
    );
    assert!(scrapes >= MIN_SCRAPES, "{scrapes} scrapes");
    still_served.expect("a scrape while the flood is held open");
    assert!(
        answered > 100,
        "the hostile requests were answered (401/404/413/431/400), not hung"
    );
    assert!(
        accepted <= MAX_CONNECTIONS + 1,
        "{accepted} connections accepted"
    );
    assert!(
        drained.is_some(),
        "{:?} connections (accepted, queued) left after the attack",
        server_sockets(port)
    );
    server.shutdown();
}
