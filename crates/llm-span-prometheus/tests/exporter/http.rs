//! The listener over real HTTP on loopback: routes, access control, robustness, shutdown.

use std::io::{Read, Write};
use std::net::{Ipv6Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use llm_span_prometheus::{ExporterBuilder, ExporterError, ExporterHandle, MetricsRecorder};
use llm_span_testkit::http::{self, basic_auth, get, get_with, request};
use llm_span_testkit::prom::{self, CONTENT_TYPE};
use metrics::{Key, Label, Recorder};

use crate::support::{closed_by_server, hold_max_level, loopback, own_process_metrics, META};

fn start(builder: ExporterBuilder) -> (MetricsRecorder, ExporterHandle) {
    builder.spawn().expect("exporter starts")
}

#[test]
fn get_metrics_serves_the_exposition_with_the_exact_content_type() {
    let (_recorder, server) = start(loopback());
    assert_ne!(
        server.local_addr().port(),
        0,
        "port 0 reports the bound port"
    );
    let response = get(server.local_addr(), "/metrics");
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some(CONTENT_TYPE));
    assert_eq!(llm_span_prometheus::CONTENT_TYPE, CONTENT_TYPE);
    assert!(response
        .body
        .contains("# TYPE llm_ttft_seconds histogram\n"));
    assert!(response
        .body
        .contains("# TYPE llm_requests_total counter\n"));
    // Query strings do not change the route.
    assert_eq!(get(server.local_addr(), "/metrics?x=1").status, 200);
}

#[test]
fn head_metrics_sends_headers_without_body() {
    // GET and HEAD render twice: the same bytes, whatever the other tests do meanwhile.
    let _level = hold_max_level();
    let (recorder, server) = start(loopback());
    own_process_metrics(&recorder);
    fill(&recorder, 200);
    let addr = server.local_addr();
    // HEAD announces the exact length GET sends, plain and gzip-encoded.
    for encoding in ["identity", "gzip"] {
        let headers = [("Accept-Encoding", encoding)];
        let get = get_with(addr, "/metrics", &headers);
        let head = request(addr, "HEAD", "/metrics", &headers, None);
        assert_eq!(head.status, 200);
        assert_eq!(head.header("content-type"), Some(CONTENT_TYPE));
        assert_eq!(head.body, "", "HEAD has no body");
        let length = get.wire_len.to_string();
        assert_eq!(
            head.header("content-length"),
            Some(length.as_str()),
            "{encoding}"
        );
    }
}

#[test]
fn health_is_open_cheap_and_method_checked() {
    let (_recorder, server) = start(
        loopback()
            .with_bearer_token("t0ken")
            .with_allowed_network("10.0.0.0/8"),
    );
    let addr = server.local_addr();
    let health = get(addr, "/health");
    assert_eq!(health.status, 200);
    assert_eq!(health.body, "ok\n");
    let head = request(addr, "HEAD", "/health", &[], None);
    assert_eq!(head.status, 200);
    assert_eq!(head.body, "");
    let post = request(addr, "POST", "/health", &[("Content-Length", "0")], None);
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
}

#[test]
fn unknown_paths_are_404() {
    let (_recorder, server) = start(loopback());
    for path in ["/", "/metrics/", "/metricsx", "/health/x", "/favicon.ico"] {
        assert_eq!(get(server.local_addr(), path).status, 404, "{path}");
    }
}

#[test]
fn other_methods_on_metrics_are_405_with_allow() {
    let (_recorder, server) = start(loopback());
    for method in ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"] {
        let response = request(
            server.local_addr(),
            method,
            "/metrics",
            &[("Content-Length", "0")],
            None,
        );
        assert_eq!(response.status, 405, "{method}");
        assert_eq!(response.header("allow"), Some("GET, HEAD"), "{method}");
    }
}

#[test]
fn request_bodies_are_refused() {
    let (_recorder, server) = start(loopback());
    let raw = b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
    let response = http::send_raw(server.local_addr(), raw).expect("response");
    assert_eq!(response.status, 413);
    let chunked = b"GET /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    let response = http::send_raw(server.local_addr(), chunked).expect("response");
    assert_eq!(response.status, 413);
}

#[test]
fn oversized_headers_are_refused() {
    let (_recorder, server) = start(loopback());
    let huge = "x".repeat(16 * 1024);
    let response = http::try_request(
        server.local_addr(),
        "GET",
        "/metrics",
        &[("X-Big", &huge)],
        None,
    );
    // hyper answers 431 or closes the connection; either way no metrics.
    if let Ok(response) = response {
        assert_eq!(response.status, 431);
    }
    assert_eq!(get(server.local_addr(), "/metrics").status, 200);
}

#[test]
fn more_than_32_header_lines_get_431() {
    let (_recorder, server) = start(loopback());
    let addr = server.local_addr();
    // `Host` and `Connection` come with every request of the test client.
    let names: Vec<String> = (0..31).map(|i| format!("X-Header-{i}")).collect();
    let headers: Vec<(&str, &str)> = names.iter().map(|name| (name.as_str(), "v")).collect();
    assert_eq!(get_with(addr, "/metrics", &headers[..30]).status, 200);
    assert_eq!(get_with(addr, "/metrics", &headers).status, 431);
}

#[test]
fn basic_auth_matrix() {
    let (_recorder, server) = start(loopback().with_basic_auth("prometheus", "pa55word"));
    let addr = server.local_addr();
    let none = get(addr, "/metrics");
    assert_eq!(none.status, 401);
    assert_eq!(
        none.headers_named("www-authenticate"),
        ["Basic realm=\"metrics\""]
    );
    assert!(!none.body.contains("llm_"));
    for wrong in [
        basic_auth("prometheus", "pa55wore"),
        basic_auth("prometheus", "pa55word "),
        basic_auth("prometheus", "pa55wor"),
        basic_auth("prometheuz", "pa55word"),
        basic_auth("", ""),
        "Basic %%%".to_owned(),
        "Bearer pa55word".to_owned(),
    ] {
        let response = get_with(addr, "/metrics", &[("Authorization", &wrong)]);
        assert_eq!(response.status, 401, "{wrong}");
        assert!(response.header("www-authenticate").is_some());
    }
    let right = get_with(
        addr,
        "/metrics",
        &[("Authorization", &basic_auth("prometheus", "pa55word"))],
    );
    assert_eq!(right.status, 200);
    assert_eq!(right.header("content-type"), Some(CONTENT_TYPE));
    // HEAD is authenticated like GET.
    assert_eq!(request(addr, "HEAD", "/metrics", &[], None).status, 401);
}

#[test]
fn bearer_auth_matrix() {
    let (_recorder, server) = start(loopback().with_bearer_token("t0k3n-abc"));
    let addr = server.local_addr();
    let none = get(addr, "/metrics");
    assert_eq!(none.status, 401);
    assert_eq!(
        none.headers_named("www-authenticate"),
        ["Bearer realm=\"metrics\""]
    );
    for wrong in [
        "Bearer t0k3n-abd",
        "Bearer t0k3n-ab",
        "Bearer t0k3n-abcd",
        "Bearer ",
        "t0k3n-abc",
        "Basic t0k3n-abc",
    ] {
        assert_eq!(
            get_with(addr, "/metrics", &[("Authorization", wrong)]).status,
            401,
            "{wrong}"
        );
    }
    for right in ["Bearer t0k3n-abc", "bearer t0k3n-abc"] {
        assert_eq!(
            get_with(addr, "/metrics", &[("Authorization", right)]).status,
            200,
            "{right}"
        );
    }
}

#[test]
fn basic_and_bearer_together_accept_either() {
    let (_recorder, server) = start(
        loopback()
            .with_basic_auth("u", "p")
            .with_bearer_token("tok"),
    );
    let addr = server.local_addr();
    let none = get(addr, "/metrics");
    assert_eq!(none.status, 401);
    assert_eq!(
        none.headers_named("www-authenticate"),
        ["Basic realm=\"metrics\"", "Bearer realm=\"metrics\""]
    );
    assert_eq!(
        get_with(
            addr,
            "/metrics",
            &[("Authorization", &basic_auth("u", "p"))]
        )
        .status,
        200
    );
    assert_eq!(
        get_with(addr, "/metrics", &[("Authorization", "Bearer tok")]).status,
        200
    );
}

#[test]
fn allowlist_hit_and_miss() {
    let (_recorder, hit) = start(loopback().with_allowed_network("127.0.0.1/32"));
    assert_eq!(get(hit.local_addr(), "/metrics").status, 200);

    let (_recorder, miss) = start(
        loopback()
            .with_allowed_network("10.0.0.0/8")
            .with_allowed_network("::1"),
    );
    let response = get(miss.local_addr(), "/metrics");
    assert_eq!(response.status, 403);
    assert!(!response.body.contains("llm_"));

    // The allowlist comes before authentication: right credentials from the wrong place
    // are still refused.
    let (_recorder, both) = start(
        loopback()
            .with_allowed_network("10.0.0.0/8")
            .with_bearer_token("tok"),
    );
    let addr = both.local_addr();
    assert_eq!(
        get_with(addr, "/metrics", &[("Authorization", "Bearer tok")]).status,
        403
    );
    let (_recorder, both_ok) = start(
        loopback()
            .with_allowed_network("127.0.0.0/8")
            .with_bearer_token("tok"),
    );
    let addr = both_ok.local_addr();
    assert_eq!(get(addr, "/metrics").status, 401);
    assert_eq!(
        get_with(addr, "/metrics", &[("Authorization", "Bearer tok")]).status,
        200
    );
}

/// Starts a dual-stack `[::]:0` server; `None` (with the reason printed) when this
/// machine cannot serve IPv4 clients on an IPv6 socket.
fn dual_stack(network: &str) -> Option<(MetricsRecorder, ExporterHandle, SocketAddr)> {
    let builder = ExporterBuilder::new()
        .with_listen_addr((Ipv6Addr::UNSPECIFIED, 0))
        .with_allowed_network(network);
    let (recorder, server) = match builder.spawn() {
        Ok(started) => started,
        Err(e) => {
            eprintln!("SKIPPED dual-stack case: cannot bind [::]:0 ({e})");
            return None;
        }
    };
    // Only ever loopback: an IPv4 client of the dual-stack socket.
    let v4 = SocketAddr::from(([127, 0, 0, 1], server.local_addr().port()));
    if let Err(e) = TcpStream::connect_timeout(&v4, Duration::from_secs(2)) {
        eprintln!("SKIPPED dual-stack case: [::] socket is IPv6-only here ({e})");
        return None;
    }
    Some((recorder, server, v4))
}

#[test]
fn ipv4_clients_of_a_dual_stack_socket_match_ipv4_networks() {
    let Some((_recorder, admit, v4)) = dual_stack("127.0.0.1/32") else {
        return;
    };
    assert_eq!(
        get(v4, "/metrics").status,
        200,
        "::ffff:127.0.0.1 is in 127.0.0.1/32"
    );
    drop(admit);

    let Some((_recorder, _reject, v4)) = dual_stack("10.0.0.0/8") else {
        return;
    };
    assert_eq!(
        get(v4, "/metrics").status,
        403,
        "::ffff:127.0.0.1 is not in 10.0.0.0/8"
    );
}

#[test]
fn ipv6_loopback_clients_match_ipv6_networks() {
    let builder = |network: &str| {
        ExporterBuilder::new()
            .with_listen_addr((Ipv6Addr::LOCALHOST, 0))
            .with_allowed_network(network)
            .spawn()
    };
    let (_recorder, server) = match builder("::1") {
        Ok(started) => started,
        Err(e) => {
            eprintln!("SKIPPED IPv6 case: no IPv6 loopback on this machine ({e})");
            return;
        }
    };
    assert_eq!(get(server.local_addr(), "/metrics").status, 200);
    let (_recorder, v4_only) = builder("127.0.0.0/8").expect("IPv6 loopback works");
    assert_eq!(get(v4_only.local_addr(), "/metrics").status, 403);
}

#[test]
fn slow_clients_do_not_block_scrapes() {
    let (_recorder, server) = start(loopback().with_header_read_timeout(Duration::from_secs(1)));
    let addr = server.local_addr();

    // Clients that connect and send nothing.
    let mut silent: Vec<TcpStream> = (0..8)
        .map(|_| http::connect(addr).expect("connect"))
        .collect();
    // A client that sends one byte per second and never finishes its headers in time.
    let trickling = Arc::new(AtomicBool::new(true));
    let trickler = {
        let trickling = Arc::clone(&trickling);
        thread::spawn(move || -> (usize, Duration) {
            let started = Instant::now();
            let mut stream = http::connect(addr).expect("connect");
            let mut sent = 0;
            for byte in b"GET /metrics HTTP/1.1\r\nHost: slow\r\n\r\n" {
                if !trickling.load(Ordering::Relaxed) || stream.write_all(&[*byte]).is_err() {
                    break;
                }
                sent += 1;
                thread::sleep(Duration::from_secs(1));
                // Stop as soon as the server hung up.
                stream.set_nonblocking(true).expect("nonblocking");
                let mut buf = [0u8; 256];
                let gone = match stream.read(&mut buf) {
                    Ok(0) => true,
                    Ok(_) => true, // an error response: the server ended it too
                    Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
                };
                stream.set_nonblocking(false).expect("blocking");
                if gone {
                    break;
                }
            }
            (sent, started.elapsed())
        })
    };

    thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    let response = get(addr, "/metrics");
    assert_eq!(response.status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "scrape took {:?}",
        started.elapsed()
    );

    // The silent ones are cut off by the header timeout.
    for stream in &mut silent {
        assert!(
            closed_by_server(stream, Duration::from_secs(5)),
            "a silent client was not disconnected"
        );
    }
    let (sent, elapsed) = trickler.join().expect("trickler");
    trickling.store(false, Ordering::Relaxed);
    assert!(sent < 10, "the trickling client was allowed {sent} bytes");
    assert!(
        elapsed < Duration::from_secs(6),
        "trickling client lasted {elapsed:?}"
    );
    assert_eq!(get(addr, "/metrics").status, 200);
}

#[test]
fn silent_connections_at_the_cap_make_room_for_a_scrape() {
    let (_recorder, server) = start(loopback().with_max_connections(2));
    let addr = server.local_addr();
    let mut held: Vec<TcpStream> = (0..2)
        .map(|_| http::connect(addr).expect("connect"))
        .collect();
    thread::sleep(Duration::from_millis(200));
    // Both slots are taken by clients that never sent a request: a scrape evicts one.
    let started = Instant::now();
    let response = http::try_request(addr, "GET", "/metrics", &[], None).expect("scrape");
    assert_eq!(response.status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let evicted = held
        .iter_mut()
        .map(|stream| closed_by_server(stream, Duration::from_secs(2)))
        .filter(|closed| *closed)
        .count();
    assert!(evicted >= 1, "a silent connection was evicted");
}

#[test]
fn connections_over_the_cap_are_closed_when_every_slot_serves_requests() {
    let (_recorder, server) = start(loopback().with_max_connections(2));
    let addr = server.local_addr();
    // Two keep-alive clients that were served metrics: they are not evictable.
    let held: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut stream = http::connect(addr).expect("connect");
            stream
                .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                .expect("send");
            let head = http::ResponseReader::new(&mut stream)
                .head()
                .expect("response");
            assert_eq!(head.status, 200);
            stream
        })
        .collect();
    let mut extra = http::connect(addr).expect("the kernel still accepts");
    let started = Instant::now();
    assert!(closed_by_server(&mut extra, Duration::from_secs(3)));
    assert!(started.elapsed() < Duration::from_secs(1));
    drop(held);
    // Slots free up once the held connections close.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match http::try_request(addr, "GET", "/metrics", &[], None) {
            Ok(response) if response.status == 200 => break,
            _ if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
            other => panic!("no slot freed: {other:?}"),
        }
    }
}

/// A keep-alive connection to `addr` from the loopback address `from`.
fn connect_from(from: [u8; 4], addr: SocketAddr) -> TcpStream {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("runtime");
    let stream = runtime
        .block_on(async {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(SocketAddr::from((from, 0)))?;
            socket.connect(addr).await?.into_std()
        })
        .expect("connect");
    stream.set_nonblocking(false).expect("blocking");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    stream
}

/// A keep-alive client that may not scrape, by `kind`: it asks for `/health` (0), for
/// `/metrics` without credentials (1), with wrong ones (2) or from outside the allowlist
/// (3), and keeps its connection open. Returns the status it got, if any.
fn unauthorized_client(addr: SocketAddr, kind: usize) -> (TcpStream, Option<u16>) {
    let (from, path, authorization) = match kind {
        0 => ([127, 0, 0, 1], "/health", ""),
        1 => ([127, 0, 0, 1], "/metrics", ""),
        2 => (
            [127, 0, 0, 1],
            "/metrics",
            "Authorization: Bearer wrong\r\n",
        ),
        _ => ([127, 0, 0, 2], "/metrics", "Authorization: Bearer tok\r\n"),
    };
    let mut stream = connect_from(from, addr);
    let raw = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{authorization}\r\n");
    let status = stream
        .write_all(raw.as_bytes())
        .and_then(|()| http::ResponseReader::new(&mut stream).head())
        .map(|head| head.status)
        .ok();
    (stream, status)
}

#[test]
fn refused_and_health_only_clients_at_the_cap_never_lock_out_an_authorized_scrape() {
    let (_recorder, server) = start(
        loopback()
            .with_max_connections(8)
            .with_allowed_network("127.0.0.1/32")
            .with_bearer_token("tok"),
    );
    let addr = server.local_addr();
    let mut held = Vec::new();
    let mut refused = Vec::new();
    let mut scraped = 0;
    for round in 0..12 {
        // The cap full of keep-alive clients that were refused or asked for /health
        // only: 8 at first, then one more before each scrape, in place of the one
        // the last scrape evicted.
        let newcomers = if round == 0 { 8 } else { 1 };
        for i in 0..newcomers {
            let kind = (round + i) % 4;
            let (stream, status) = unauthorized_client(addr, kind);
            refused.push((kind, status));
            held.push(stream);
        }
        let scrape = http::try_request(
            addr,
            "GET",
            "/metrics",
            &[("Authorization", "Bearer tok")],
            None,
        );
        if scrape.is_ok_and(|response| response.status == 200) {
            scraped += 1;
        }
    }
    assert_eq!(scraped, 12, "authorized scrapes that got through, of 12");
    let expected = |kind: usize| Some([200, 401, 401, 403][kind]);
    assert!(
        refused
            .iter()
            .all(|(kind, status)| *status == expected(*kind)),
        "{refused:?}"
    );
}

#[test]
fn connection_timeout_closes_long_lived_connections() {
    let (_recorder, server) = start(
        loopback()
            .with_header_read_timeout(Duration::from_secs(30))
            .with_connection_timeout(Duration::from_millis(500)),
    );
    let mut stream = http::connect(server.local_addr()).expect("connect");
    let started = Instant::now();
    assert!(closed_by_server(&mut stream, Duration::from_secs(5)));
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let (_recorder, server) = start(loopback());
    let mut stream = http::connect(server.local_addr()).expect("connect");
    let one = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
    let last = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    stream.write_all(one).expect("write");
    stream.write_all(last).expect("write");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("read");
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");
}

/// A recorder with a response of `rows` lines of about 1 KiB each.
fn fill(recorder: &MetricsRecorder, rows: usize) {
    let pad = "p".repeat(1000);
    for i in 0..rows {
        let key = Key::from_parts(
            "test_big",
            vec![
                Label::new("pad", pad.clone()),
                Label::new("i", i.to_string()),
            ],
        );
        recorder.register_gauge(&key, &META).set(i as f64);
    }
}

#[test]
fn shutdown_closes_the_port_and_finishes_the_scrape_in_flight() {
    let (recorder, server) = start(loopback());
    let addr = server.local_addr();
    // Far more than the loopback socket buffers hold, so the response is still being
    // written when shutdown starts.
    fill(&recorder, 20_000);

    let mut stream = http::connect(addr).expect("connect");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("send request");
    // Read the first bytes so the response is known to be under way.
    let mut first = [0u8; 12];
    stream.read_exact(&mut first).expect("response starts");
    assert_eq!(&first, b"HTTP/1.1 200");

    let shutdown_started = Instant::now();
    let stopper = thread::spawn(move || {
        server.shutdown();
        Instant::now()
    });
    thread::sleep(Duration::from_millis(300));
    // Nothing listens on the port any more: it can be bound (a listener still open would
    // make this fail). Holding it keeps another test of this binary from taking it and
    // answering in its place.
    let rebound = std::net::TcpListener::bind(addr);
    assert!(rebound.is_ok(), "port still open after shutdown started");

    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).expect("read the rest");
    let mut bytes = first.to_vec();
    bytes.extend(rest);
    let response = http::parse_response(&bytes).expect("complete response");
    let length: usize = response
        .header("content-length")
        .expect("content-length")
        .parse()
        .expect("number");
    assert_eq!(
        response.body.len(),
        length,
        "the in-flight scrape was cut short"
    );
    assert_eq!(response.body.matches("test_big{").count(), 20_000);

    let stopped_at = stopper.join().expect("shutdown thread");
    assert!(
        stopped_at.duration_since(shutdown_started) < Duration::from_secs(10),
        "shutdown took too long"
    );
}

#[test]
fn shutdown_is_bounded_when_a_client_never_reads() {
    let (recorder, server) = start(
        loopback()
            .with_shutdown_timeout(Duration::from_millis(500))
            .with_header_read_timeout(Duration::from_secs(30)),
    );
    fill(&recorder, 20_000);
    let addr = server.local_addr();
    let mut stream = http::connect(addr).expect("connect");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send request");
    thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    server.shutdown();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "shutdown waited {:?} for a client that never reads",
        started.elapsed()
    );
    drop(stream);
}

/// A client that asks for `/metrics`, reads the status line and stops reading.
fn stalled_reader(addr: SocketAddr) -> TcpStream {
    let mut stream = http::connect(addr).expect("connect");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send request");
    let mut first = [0u8; 12];
    stream.read_exact(&mut first).expect("the response starts");
    assert_eq!(&first, b"HTTP/1.1 200");
    stream
}

#[test]
fn stalled_readers_hold_no_more_body_bytes_than_the_budget() {
    // Bodies of an exact length: the same metrics, rendered by a recorder of their own.
    let (probe, handle) = loopback().build().expect("recorder");
    own_process_metrics(&probe);
    fill(&probe, 20_000);
    let length = handle.render().len();
    // Room for two bodies, far more than the socket buffers hold.
    let (recorder, server) = start(loopback().with_max_bytes_in_flight(2 * length));
    own_process_metrics(&recorder);
    fill(&recorder, 20_000);
    let addr = server.local_addr();
    let first = stalled_reader(addr);
    // Two bodies fill the budget exactly: still served.
    let second = stalled_reader(addr);
    let refused = get(addr, "/metrics");
    assert_eq!(refused.status, 503);
    assert_eq!(refused.header("retry-after"), Some("1"));
    // Once the stalled clients are gone, so are their bodies.
    drop(first);
    drop(second);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = get(addr, "/metrics");
        if response.status == 200 {
            assert_eq!(response.body.len(), length);
            break;
        }
        assert!(Instant::now() < deadline, "{}", response.status);
        thread::sleep(Duration::from_millis(20));
    }
    // A body larger than the budget is served when no other is in flight.
    let (_recorder, tiny) = start(loopback().with_max_bytes_in_flight(1));
    assert_eq!(get(tiny.local_addr(), "/metrics").status, 200);
}

#[test]
fn dropping_the_handle_stops_the_listener() {
    let (_recorder, server) = start(loopback());
    let addr = server.local_addr();
    assert_eq!(get(addr, "/health").status, 200);
    drop(server);
    // The port is free once drop returns: nothing listens there any more (a listener
    // still bound would make this bind fail). Binding it at once, rather than trying a
    // connection first, keeps another test of this binary from taking the freed port
    // in between.
    let rebound = std::net::TcpListener::bind(addr).expect("the port is free again");
    assert_eq!(rebound.local_addr().expect("bound"), addr);
}

#[test]
fn idle_keep_alive_connections_do_not_delay_shutdown() {
    let (_recorder, server) = start(loopback().with_header_read_timeout(Duration::from_secs(30)));
    let addr = server.local_addr();
    let mut stream = http::connect(addr).expect("connect");
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let mut buf = [0u8; 512];
    let n = stream.read(&mut buf).expect("read");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let started = Instant::now();
    server.shutdown();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(closed_by_server(&mut stream, Duration::from_secs(2)));
}

#[test]
fn port_in_use_is_a_typed_error_and_fails_fast() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let started = Instant::now();
    let error = ExporterBuilder::new()
        .with_listen_addr(addr)
        .spawn()
        .expect_err("port is taken");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(
        matches!(error, ExporterError::AddressInUse { addr: a } if a == addr),
        "{error:?}"
    );
    assert!(error.to_string().contains(&addr.to_string()), "{error}");
}

#[test]
fn handle_renders_what_the_listener_serves() {
    let (recorder, server) = start(loopback());
    let key = Key::from_parts(
        "llm_requests_total",
        vec![Label::new("model", "m"), Label::new("status", "ok")],
    );
    recorder.register_counter(&key, &META).increment(7);
    let rendered = prom::series(&server.metrics().render());
    let served = prom::series(&get(server.local_addr(), "/metrics").body);
    let series = "llm_requests_total{model=\"m\",status=\"ok\"}";
    assert_eq!(rendered.get(series), Some(&7.0));
    assert_eq!(served.get(series), Some(&7.0));
}

#[test]
fn repeated_accept_lines_count_together_and_application_wildcards_get_openmetrics() {
    let (_recorder, server) = start(loopback());
    let addr = server.local_addr();
    let openmetrics = Some(llm_span_prometheus::OPENMETRICS_CONTENT_TYPE);
    let content_type = |headers: &[(&str, &str)]| {
        get_with(addr, "/metrics", headers)
            .header("content-type")
            .map(str::to_owned)
    };
    assert_eq!(
        content_type(&[("Accept", "application/*")]).as_deref(),
        openmetrics
    );
    // Lines of one header are one comma-separated list (RFC 9110).
    let two_lines = [
        ("Accept", "text/plain;q=0.5"),
        ("Accept", "application/openmetrics-text"),
    ];
    assert_eq!(content_type(&two_lines).as_deref(), openmetrics);
    let refused = get_with(
        addr,
        "/metrics",
        &[("Accept-Encoding", "gzip"), ("Accept-Encoding", "gzip;q=0")],
    );
    assert_eq!(refused.status, 200);
    assert_eq!(refused.header("content-encoding"), None);
    let admitted = get_with(
        addr,
        "/metrics",
        &[("Accept-Encoding", "br"), ("Accept-Encoding", "gzip")],
    );
    assert_eq!(admitted.header("content-encoding"), Some("gzip"));
}

#[test]
fn scrapes_are_gzip_compressed_when_the_scraper_asks() {
    // Gzip and plain scrapes compared below: the same series in both.
    let _level = hold_max_level();
    let (recorder, server) = start(loopback());
    fill(&recorder, 200);
    let addr = server.local_addr();
    // What Prometheus 2.42 sends.
    let gzip = get_with(addr, "/metrics", &[("Accept-Encoding", "gzip")]);
    let plain = get(addr, "/metrics");
    assert_eq!(gzip.status, 200);
    assert_eq!(gzip.header("content-encoding"), Some("gzip"));
    assert_eq!(gzip.header("vary"), Some("Accept, Accept-Encoding"));
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(plain.header("vary"), Some("Accept, Accept-Encoding"));
    // The same metrics (process metrics aside, which move between scrapes).
    let series = |body: &str| {
        let mut series = prom::series(body);
        series.retain(|name, _| !name.starts_with("process_"));
        series
    };
    assert_eq!(series(&gzip.body), series(&plain.body));
    assert!(
        gzip.wire_len * 5 < plain.wire_len,
        "{} compressed bytes for {} plain",
        gzip.wire_len,
        plain.wire_len
    );
    // Refused or absent gzip: identity.
    for refused in ["gzip;q=0", "identity", "br"] {
        let response = get_with(addr, "/metrics", &[("Accept-Encoding", refused)]);
        assert_eq!(response.header("content-encoding"), None, "{refused}");
        assert_eq!(series(&response.body), series(&plain.body), "{refused}");
    }
    // HEAD announces the compressed length.
    let head = http::request(
        addr,
        "HEAD",
        "/metrics",
        &[("Accept-Encoding", "gzip")],
        None,
    );
    assert_eq!(head.header("content-encoding"), Some("gzip"));
    assert!(head.body.is_empty());
}
