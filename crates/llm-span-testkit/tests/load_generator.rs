//! The load generator's command line, without a server. (Its integration test also makes
//! `cargo test --workspace` build the binary, which the root package's end-to-end tests
//! run through `llm_span_testkit::process::load_generator`.)

use std::process::{Command, Output};

fn load_generator(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_load-generator"))
        .args(args)
        .output()
        .expect("run load-generator")
}

#[test]
fn help_lists_every_flag() {
    let output = load_generator(&["--help"]);
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).expect("UTF-8");
    for flag in [
        "--target",
        "--requests",
        "--duration",
        "--concurrency",
        "--seed",
        "--models",
        "--stream-share",
        "--abort-share",
        "--api",
        "--embeddings-share",
        "--json",
        "--progress",
        "--quiet",
    ] {
        assert!(help.contains(flag), "{flag} is not in --help:\n{help}");
    }
}

#[test]
fn bad_flags_exit_2_with_a_message() {
    for (args, message) in [
        (&["--bogus"][..], "unknown flag \"--bogus\""),
        (&["--abort-share", "2"][..], "--abort-share"),
        (&["--embeddings-share", "-1"][..], "--embeddings-share"),
        (
            &["--api", "responses"][..],
            "--api: \"responses\" is neither",
        ),
        (&["--concurrency", "0"][..], "--concurrency"),
        (&["--target"][..], "--target needs a value"),
    ] {
        let output = load_generator(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.starts_with("error: ") && stderr.contains(message),
            "{args:?}: {stderr}"
        );
    }
}

#[test]
fn an_unreachable_server_is_an_error() {
    // A port nobody listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let output = load_generator(&["--target", &format!("http://127.0.0.1:{port}"), "--quiet"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot reach the server"), "{stderr}");
}
