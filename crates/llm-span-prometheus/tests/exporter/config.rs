//! Builder and environment configuration, every error variant, and secrets.

use std::net::SocketAddr;

use llm_span_layer::catalog::{self, MetricKind};
use llm_span_prometheus::{
    buckets, ExporterBuilder, ExporterError, Naming, OtelRole, Secret, MAX_CONNECTIONS_LIMIT,
    MAX_HTTP_TIMEOUT,
};
use llm_span_testkit::http::{basic_auth, get, get_with};
use llm_span_testkit::process::TempDir;
use llm_span_testkit::prom::{self, Scrape};
use metrics::{Key, Label, Recorder};

use crate::support::{env, loopback, META};

#[test]
fn every_catalog_histogram_has_a_bucket_preset() {
    for def in catalog::METRICS
        .iter()
        .filter(|d| d.kind == MetricKind::Histogram)
    {
        let preset = buckets::preset(def.name)
            .unwrap_or_else(|| panic!("{} has no preset and would render as a summary", def.name));
        assert!(preset.windows(2).all(|w| w[0] < w[1]), "{}", def.name);
    }
    assert_eq!(
        buckets::PRESETS.len(),
        catalog::METRICS
            .iter()
            .filter(|d| d.kind == MetricKind::Histogram)
            .count()
    );
}

#[test]
fn bucket_overrides_and_defaults_are_rendered() {
    let (recorder, handle) = ExporterBuilder::new()
        .with_buckets(catalog::TTFT_SECONDS, &[0.5, 1.0])
        .with_buckets("my_own_seconds", &[3.0])
        .build()
        .expect("recorder");
    let ttft = Key::from_parts(catalog::TTFT_SECONDS, vec![Label::new("model", "m")]);
    recorder.register_histogram(&ttft, &META).record(0.7);
    recorder
        .register_histogram(&Key::from_name("my_own_seconds"), &META)
        .record(1.0);
    recorder
        .register_histogram(&Key::from_name("other_seconds"), &META)
        .record(0.02);
    let text = handle.render();
    let s = prom::series(&text);
    assert_eq!(
        s.get(r#"llm_ttft_seconds_bucket{le="0.5",model="m"}"#),
        Some(&0.0)
    );
    assert_eq!(
        s.get(r#"llm_ttft_seconds_bucket{le="1",model="m"}"#),
        Some(&1.0)
    );
    assert_eq!(
        s.get(r#"llm_ttft_seconds_bucket{le="+Inf",model="m"}"#),
        Some(&1.0)
    );
    assert_eq!(
        s.keys()
            .filter(|k| k.starts_with("llm_ttft_seconds_bucket"))
            .count(),
        3
    );
    assert_eq!(s.get(r#"my_own_seconds_bucket{le="3"}"#), Some(&1.0));
    // Histograms outside the catalog get the default buckets, not a summary.
    let families = Scrape::parse_or_panic(&text).types;
    assert_eq!(
        families.get("other_seconds").map(String::as_str),
        Some("histogram")
    );
    assert_eq!(
        s.keys()
            .filter(|k| k.starts_with("other_seconds_bucket"))
            .count(),
        buckets::DEFAULT.len() + 1
    );
    assert_eq!(s.get(r#"other_seconds_bucket{le="0.025"}"#), Some(&1.0));
    assert_eq!(s.get(r#"other_seconds_bucket{le="0.01"}"#), Some(&0.0));
}

#[test]
fn global_labels_go_on_every_series() {
    let (recorder, handle) = ExporterBuilder::new()
        .with_global_label("service", "chat")
        .with_global_label("instance", "old")
        .with_global_label("instance", "a")
        .build()
        .expect("recorder");
    let key = Key::from_parts(
        catalog::REQUESTS_TOTAL,
        vec![Label::new("model", "m"), Label::new("status", "ok")],
    );
    recorder.register_counter(&key, &META).increment(2);
    let s = prom::series(&handle.render());
    assert_eq!(
        s.get(r#"llm_requests_total{instance="a",model="m",service="chat",status="ok"}"#),
        Some(&2.0)
    );
}

fn bucket_error(builder: ExporterBuilder) -> (String, &'static str) {
    match builder.build() {
        Err(ExporterError::InvalidBuckets { metric, reason }) => (metric, reason),
        other => panic!("expected InvalidBuckets, got {other:?}"),
    }
}

#[test]
fn invalid_buckets_name_the_metric() {
    let (metric, reason) =
        bucket_error(ExporterBuilder::new().with_buckets("llm_ttft_seconds", &[]));
    assert_eq!(metric, "llm_ttft_seconds");
    assert!(reason.contains("no boundaries"));
    let (metric, reason) =
        bucket_error(ExporterBuilder::new().with_buckets("x_seconds", &[1.0, 0.5]));
    assert_eq!(metric, "x_seconds");
    assert!(reason.contains("increasing"));
    let (_, reason) = bucket_error(ExporterBuilder::new().with_buckets("x_seconds", &[f64::NAN]));
    assert!(reason.contains("finite"));
    let (_, reason) =
        bucket_error(ExporterBuilder::new().with_buckets("x_seconds", &[1.0, f64::INFINITY]));
    assert!(reason.contains("finite"));
    let (metric, _) = bucket_error(ExporterBuilder::new().with_default_buckets(&[]));
    assert_eq!(metric, "(default buckets)");
    let error = ExporterBuilder::new()
        .with_buckets("llm_e2e_latency_seconds", &[2.0, 1.0])
        .build()
        .expect_err("unsorted");
    assert!(
        error.to_string().contains("llm_e2e_latency_seconds"),
        "{error}"
    );
}

#[test]
fn negative_bucket_bounds_are_refused_by_name() {
    // OpenMetrics forbids `_sum` on a histogram with negative buckets, and every
    // histogram here has a `_sum`.
    let reason =
        "boundaries must not be negative: OpenMetrics allows no _sum with negative buckets";
    for (builder, name) in [
        (
            ExporterBuilder::new().with_buckets("llm_ttft_seconds", &[-1.0, 0.0, 1.0]),
            "llm_ttft_seconds",
        ),
        (
            ExporterBuilder::new().with_buckets("my_own_seconds", &[-0.5]),
            "my_own_seconds",
        ),
        (
            ExporterBuilder::new().with_default_buckets(&[-2.0, -1.0]),
            "(default buckets)",
        ),
    ] {
        assert_eq!(bucket_error(builder), (name.to_owned(), reason));
    }
    // Zero is a bound like any other.
    let (recorder, handle) = ExporterBuilder::new()
        .with_buckets("llm_ttft_seconds", &[0.0, 1.0])
        .with_default_buckets(&[0.0])
        .build()
        .expect("zero is a valid bound");
    let ttft = Key::from_parts(catalog::TTFT_SECONDS, vec![Label::new("model", "m")]);
    recorder.register_histogram(&ttft, &META).record(0.0);
    let s = prom::series(&handle.render());
    assert_eq!(
        s.get(r#"llm_ttft_seconds_bucket{le="0",model="m"}"#),
        Some(&1.0)
    );
}

#[test]
fn invalid_global_labels_are_refused() {
    for name in [
        "le", "quantile", "model", "status", "__meta", "1abc", "a-b", "",
    ] {
        match ExporterBuilder::new().with_global_label(name, "v").build() {
            Err(ExporterError::InvalidLabel { name: n, .. }) => assert_eq!(n, name),
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn invalid_cidr_names_the_text() {
    let error = loopback()
        .with_allowed_network("10.0.0.0/33")
        .spawn()
        .expect_err("bad network");
    assert!(
        matches!(&error, ExporterError::InvalidCidr { text } if text == "10.0.0.0/33"),
        "{error:?}"
    );
    assert!(error.to_string().contains("10.0.0.0/33"));
}

#[test]
fn empty_credentials_are_refused() {
    let what =
        |builder: ExporterBuilder| match builder.with_listen_addr(([127, 0, 0, 1], 0)).spawn() {
            Err(ExporterError::InvalidCredential { what, .. }) => what,
            other => panic!("{other:?}"),
        };
    assert_eq!(
        what(ExporterBuilder::new().with_bearer_token("")),
        "bearer token"
    );
    assert_eq!(
        what(ExporterBuilder::new().with_basic_auth("", "pw")),
        "basic auth user"
    );
    assert_eq!(
        what(ExporterBuilder::new().with_basic_auth("u", "")),
        "basic auth password"
    );
}

#[test]
fn public_bind_without_auth_is_refused() {
    for addr in ["0.0.0.0:0", "[::]:0", "192.0.2.1:9000"] {
        let addr: SocketAddr = addr.parse().expect("addr");
        let error = ExporterBuilder::new()
            .with_listen_addr(addr)
            .spawn()
            .expect_err("public bind");
        assert!(
            matches!(error, ExporterError::PublicBindWithoutAuth { addr: a } if a == addr),
            "{error:?}"
        );
        assert!(error
            .to_string()
            .contains("allow_unauthenticated_public_bind"));
    }
}

#[test]
fn public_bind_opt_in_and_auth_pass_the_check() {
    // 192.0.2.1 (TEST-NET-1) is on no interface: getting as far as bind() shows the
    // check passed, without opening a public socket.
    let addr: SocketAddr = "192.0.2.1:0".parse().expect("addr");
    for builder in [
        ExporterBuilder::new().allow_unauthenticated_public_bind(),
        ExporterBuilder::new().with_bearer_token("t"),
        ExporterBuilder::new().with_basic_auth("u", "p"),
        ExporterBuilder::new().with_allowed_network("10.0.0.0/8"),
    ] {
        match builder.with_listen_addr(addr).spawn() {
            Err(ExporterError::Bind { addr: a, .. }) => assert_eq!(a, addr),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn zero_limits_are_refused() {
    use std::time::Duration;
    let setting =
        |builder: ExporterBuilder| match builder.with_listen_addr(([127, 0, 0, 1], 0)).spawn() {
            Err(ExporterError::InvalidSetting { setting, .. }) => setting,
            other => panic!("{other:?}"),
        };
    assert_eq!(
        setting(ExporterBuilder::new().with_max_connections(0)),
        "max_connections"
    );
    assert_eq!(
        setting(ExporterBuilder::new().with_header_read_timeout(Duration::ZERO)),
        "header_read_timeout"
    );
    assert_eq!(
        setting(ExporterBuilder::new().with_connection_timeout(Duration::ZERO)),
        "connection_timeout"
    );
}

#[test]
fn connections_beyond_the_limit_are_refused() {
    let spawn = |max| loopback().with_max_connections(max).spawn();
    match spawn(MAX_CONNECTIONS_LIMIT + 1) {
        Err(ExporterError::InvalidSetting { setting, reason }) => {
            assert_eq!(
                (setting, reason),
                ("max_connections", "must be at most 65536")
            );
        }
        other => panic!("{other:?}"),
    }
    // The limit itself is taken, and served.
    let (_recorder, server) = spawn(MAX_CONNECTIONS_LIMIT).expect("at the limit");
    assert_eq!(get(server.local_addr(), "/health").status, 200);
    server.shutdown();
}

#[test]
fn timeouts_beyond_a_day_are_refused() {
    use std::time::Duration;
    assert_eq!(MAX_HTTP_TIMEOUT, Duration::from_secs(86_400));
    let longer = MAX_HTTP_TIMEOUT + Duration::from_nanos(1);
    for (builder, name) in [
        (
            ExporterBuilder::new().with_header_read_timeout(longer),
            "header_read_timeout",
        ),
        (
            ExporterBuilder::new().with_connection_timeout(longer),
            "connection_timeout",
        ),
        (
            ExporterBuilder::new().with_shutdown_timeout(longer),
            "shutdown_timeout",
        ),
    ] {
        match builder.with_listen_addr(([127, 0, 0, 1], 0)).spawn() {
            Err(ExporterError::InvalidSetting { setting, reason }) => {
                assert_eq!((setting, reason), (name, "must be at most one day"));
            }
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn the_longest_timeouts_serve_and_shut_down() {
    let (_recorder, server) = loopback()
        .with_header_read_timeout(MAX_HTTP_TIMEOUT)
        .with_connection_timeout(MAX_HTTP_TIMEOUT)
        .with_shutdown_timeout(MAX_HTTP_TIMEOUT)
        .spawn()
        .expect("exporter");
    assert_eq!(get(server.local_addr(), "/metrics").status, 200);
    assert_eq!(get(server.local_addr(), "/health").status, 200);
    // No request in flight: it returns at once, however long it would wait for one.
    server.shutdown();
}

#[test]
fn secret_debug_never_shows_the_secret() {
    let secret = Secret::new("hunter2");
    assert_eq!(format!("{secret:?}"), "Secret(***)");
    let builder = ExporterBuilder::new()
        .with_basic_auth("admin", "hunter2")
        .with_bearer_token("t0k3n-xyz");
    let debug = format!("{builder:?}");
    assert!(
        !debug.contains("hunter2") && !debug.contains("t0k3n-xyz"),
        "{debug}"
    );
    assert!(debug.contains("Secret(***)"), "{debug}");
}

#[test]
fn credential_file_missing_names_the_path() {
    let path = std::env::temp_dir().join("llm-span-prometheus-no-such-file");
    match Secret::from_file(&path) {
        Err(ExporterError::CredentialFile { path: p, .. }) => assert_eq!(p, path),
        other => panic!("{other:?}"),
    }
    let error = env(&[(
        "LLM_METRICS_BEARER_TOKEN_FILE",
        path.to_str().expect("utf-8"),
    )])
    .expect_err("missing file");
    assert!(
        matches!(error, ExporterError::CredentialFile { .. }),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("llm-span-prometheus-no-such-file"),
        "{error}"
    );
}

#[test]
fn credential_files_lose_one_trailing_newline_and_never_leak() {
    let dir = TempDir::new("credential-files");
    let file = dir.write("token", "file-t0ken\n");
    let file = file.to_str().expect("utf-8 temp path");
    let (_recorder, server) = env(&[
        ("LLM_METRICS_LISTEN", "127.0.0.1:0"),
        ("LLM_METRICS_BEARER_TOKEN_FILE", file),
    ])
    .expect("env config")
    .spawn()
    .expect("starts");
    let addr = server.local_addr();
    assert_eq!(get(addr, "/metrics").status, 401);
    assert_eq!(
        get_with(addr, "/metrics", &[("Authorization", "Bearer file-t0ken")]).status,
        200
    );

    let empty = dir.write("empty", "\n");
    let empty = empty.to_str().expect("utf-8 temp path");
    let error = env(&[("LLM_METRICS_BEARER_TOKEN_FILE", empty)]).expect_err("empty file");
    assert!(
        matches!(
            error,
            ExporterError::InvalidCredential {
                what: "bearer token",
                ..
            }
        ),
        "{error:?}"
    );
    // Both forms at once: refused, and the message does not quote the token.
    let error = env(&[
        ("LLM_METRICS_BEARER_TOKEN", "inline-s3cret"),
        ("LLM_METRICS_BEARER_TOKEN_FILE", file),
    ])
    .expect_err("both");
    assert!(!error.to_string().contains("inline-s3cret"));
    assert!(!format!("{error:?}").contains("inline-s3cret"));
}

#[test]
fn env_configures_listener_auth_allowlist_and_labels() {
    let dir = TempDir::new("env-config");
    let password = dir.write("password", "pw-from-file\r\n");
    let builder = env(&[
        ("LLM_METRICS_LISTEN", "127.0.0.1:0"),
        ("LLM_METRICS_BASIC_AUTH_USER", "prom"),
        (
            "LLM_METRICS_BASIC_AUTH_PASSWORD_FILE",
            password.to_str().expect("utf-8 temp path"),
        ),
        ("LLM_METRICS_BEARER_TOKEN", "env-tok"),
        ("LLM_METRICS_ALLOW", " 127.0.0.0/8 , ::1 ,"),
        ("LLM_METRICS_GLOBAL_LABELS", "service=chat, instance = a-1"),
        ("LLM_METRICS_ALLOW_PUBLIC", ""),
    ])
    .expect("env config");
    let (recorder, server) = builder.spawn().expect("starts");
    let key = Key::from_parts(
        catalog::REQUESTS_TOTAL,
        vec![Label::new("model", "m"), Label::new("status", "ok")],
    );
    recorder.register_counter(&key, &META).increment(1);
    let addr = server.local_addr();
    assert_eq!(addr.ip().to_string(), "127.0.0.1");
    assert_eq!(get(addr, "/metrics").status, 401);
    let by_basic = get_with(
        addr,
        "/metrics",
        &[("Authorization", &basic_auth("prom", "pw-from-file"))],
    );
    assert_eq!(by_basic.status, 200);
    let s = prom::series(&by_basic.body);
    assert_eq!(
        s.get(r#"llm_requests_total{instance="a-1",model="m",service="chat",status="ok"}"#),
        Some(&1.0),
        "{}",
        by_basic.body
    );
    assert_eq!(
        get_with(addr, "/metrics", &[("Authorization", "Bearer env-tok")]).status,
        200
    );

    let (_recorder, denied) = env(&[
        ("LLM_METRICS_LISTEN", "127.0.0.1:0"),
        ("LLM_METRICS_ALLOW", "10.0.0.0/8"),
    ])
    .expect("env config")
    .spawn()
    .expect("starts");
    assert_eq!(get(denied.local_addr(), "/metrics").status, 403);
}

#[test]
fn env_allow_public_reaches_bind() {
    let addr: SocketAddr = "192.0.2.1:0".parse().expect("addr");
    for flag in ["1", "true", "YES"] {
        let builder = env(&[
            ("LLM_METRICS_LISTEN", "192.0.2.1:0"),
            ("LLM_METRICS_ALLOW_PUBLIC", flag),
        ])
        .expect("env config");
        assert!(matches!(builder.spawn(), Err(ExporterError::Bind { addr: a, .. }) if a == addr));
    }
    let builder = env(&[
        ("LLM_METRICS_LISTEN", "192.0.2.1:0"),
        ("LLM_METRICS_ALLOW_PUBLIC", "0"),
    ])
    .expect("env config");
    assert!(matches!(
        builder.spawn(),
        Err(ExporterError::PublicBindWithoutAuth { .. })
    ));
}

#[test]
fn env_with_nothing_set_is_the_default() {
    let builder = env(&[]).expect("empty env");
    let default = ExporterBuilder::new();
    assert_eq!(format!("{builder:?}"), format!("{default:?}"));
    assert!(format!("{builder:?}").contains("127.0.0.1:9000"));
}

#[test]
fn env_chooses_the_otel_profile_and_its_roles() {
    let families = |vars: &[(&str, &str)]| -> Vec<String> {
        let (_recorder, handle) = env(vars).expect("env config").build().expect("recorder");
        handle
            .render()
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter(|l| l.starts_with("gen_ai_") || l.starts_with("llm_requests_total"))
            .map(str::to_owned)
            .collect()
    };
    let client = [
        "gen_ai_client_operation_duration_seconds histogram",
        "gen_ai_client_token_usage histogram",
    ];
    let server = [
        "gen_ai_server_request_duration_seconds histogram",
        "gen_ai_server_time_per_output_token_seconds histogram",
        "gen_ai_server_time_to_first_token_seconds histogram",
    ];
    let both = [&client[..], &server[..]].concat();
    assert_eq!(families(&[("LLM_METRICS_NAMING", "otel")]), both);
    assert_eq!(
        families(&[
            ("LLM_METRICS_NAMING", "otel"),
            ("LLM_METRICS_OTEL_ROLES", "server")
        ]),
        server
    );
    assert_eq!(
        families(&[
            ("LLM_METRICS_NAMING", "otel"),
            ("LLM_METRICS_OTEL_ROLES", " client ")
        ]),
        client
    );
    assert_eq!(
        families(&[
            ("LLM_METRICS_NAMING", "otel"),
            ("LLM_METRICS_OTEL_ROLES", "server,client,server")
        ]),
        both
    );
    // An empty variable is unset (as every variable but credentials): both roles.
    assert_eq!(
        families(&[
            ("LLM_METRICS_NAMING", "otel"),
            ("LLM_METRICS_OTEL_ROLES", "")
        ]),
        both
    );
    let mut llm_and_otel: Vec<String> = server.iter().map(|s| (*s).to_owned()).collect();
    llm_and_otel.push("llm_requests_total counter".to_owned());
    assert_eq!(
        families(&[
            ("LLM_METRICS_NAMING", "llm,otel"),
            ("LLM_METRICS_OTEL_ROLES", "server")
        ]),
        llm_and_otel
    );
    // Roles without the profile change nothing.
    assert_eq!(
        families(&[("LLM_METRICS_OTEL_ROLES", "client")]),
        ["llm_requests_total counter"]
    );
    // The builder reads them as with_naming and with_otel_roles would be called.
    let from_env = env(&[
        ("LLM_METRICS_NAMING", "otel"),
        ("LLM_METRICS_OTEL_ROLES", "server"),
    ])
    .expect("env config");
    let in_code = ExporterBuilder::new()
        .with_naming([Naming::Otel])
        .with_otel_roles([OtelRole::Server]);
    assert_eq!(format!("{from_env:?}"), format!("{in_code:?}"));
}

#[test]
fn env_otel_role_errors_name_the_roles() {
    for value in ["gateway", "client,gateway", " , ", "Server"] {
        match env(&[("LLM_METRICS_OTEL_ROLES", value)]) {
            Err(ExporterError::InvalidEnv { var, reason }) => {
                assert_eq!(var, "LLM_METRICS_OTEL_ROLES");
                assert_eq!(
                    reason,
                    format!("{value:?} is not a comma-separated list of OpenTelemetry roles (client, server)")
                );
            }
            other => panic!("{value}: {other:?}"),
        }
    }
    let err = env(&[("LLM_METRICS_OTEL_ROLES", "gateway")])
        .map(|_| ())
        .expect_err("gateway");
    assert_eq!(
        err.to_string(),
        r#"invalid environment variable LLM_METRICS_OTEL_ROLES: "gateway" is not a comma-separated list of OpenTelemetry roles (client, server)"#
    );
    let err = env(&[("LLM_METRICS_NAMING", "llm,otl")])
        .map(|_| ())
        .expect_err("otl");
    assert_eq!(
        err.to_string(),
        r#"invalid environment variable LLM_METRICS_NAMING: "llm,otl" is not a comma-separated list of naming profiles (llm, vllm, otel)"#
    );
}

#[test]
fn the_otel_builder_settings_are_checked_when_built() {
    let build = |builder: ExporterBuilder| builder.build().map(|_| ()).map_err(|e| e.to_string());
    assert_eq!(
        build(
            ExporterBuilder::new()
                .with_naming([Naming::Otel])
                .with_otel_roles([])
        ),
        Err("invalid exporter setting otel_roles: must name at least one role".to_owned())
    );
    assert_eq!(
        build(ExporterBuilder::new().with_naming([])),
        Err("invalid exporter setting naming: must name at least one profile".to_owned())
    );
    for label in [
        "gen_ai_request_model",
        "gen_ai_token_type",
        "error_type",
        "gen_ai_operation_name",
        "gen_ai_provider_name",
    ] {
        let otel = ExporterBuilder::new()
            .with_naming([Naming::Llm, Naming::Otel])
            .with_global_label(label, "x");
        match otel.build() {
            Err(ExporterError::InvalidLabel { name, reason }) => {
                assert_eq!(name, label);
                assert_eq!(reason, "reserved: the otel naming profile uses this label");
            }
            other => panic!("{label}: {other:?}"),
        }
        // Without the profile, the name is free.
        assert_eq!(
            build(ExporterBuilder::new().with_global_label(label, "x")),
            Ok(()),
            "{label}"
        );
    }
    match "gateway".parse::<OtelRole>() {
        Err(ExporterError::UnknownOtelRole { name }) => assert_eq!(name, "gateway"),
        other => panic!("{other:?}"),
    }
    assert_eq!("server".parse::<OtelRole>().ok(), Some(OtelRole::Server));
    assert_eq!("otel".parse::<Naming>().ok(), Some(Naming::Otel));
}

#[test]
fn env_errors_are_typed() {
    let var = |vars: &[(&str, &str)]| match env(vars) {
        Err(ExporterError::InvalidEnv { var, reason }) => (var, reason),
        other => panic!("{vars:?}: {other:?}"),
    };
    let (name, reason) = var(&[("LLM_METRICS_LISTEN", "localhost")]);
    assert_eq!(name, "LLM_METRICS_LISTEN");
    assert!(reason.contains("localhost"));
    assert_eq!(
        var(&[("LLM_METRICS_ALLOW_PUBLIC", "maybe")]).0,
        "LLM_METRICS_ALLOW_PUBLIC"
    );
    assert_eq!(
        var(&[("LLM_METRICS_GLOBAL_LABELS", "service")]).0,
        "LLM_METRICS_GLOBAL_LABELS"
    );
    assert_eq!(
        var(&[("LLM_METRICS_BASIC_AUTH_USER", "u")]).0,
        "LLM_METRICS_BASIC_AUTH_USER"
    );
    assert_eq!(
        var(&[("LLM_METRICS_BASIC_AUTH_PASSWORD", "p")]).0,
        "LLM_METRICS_BASIC_AUTH_USER"
    );
    let (name, reason) = var(&[
        ("LLM_METRICS_BASIC_AUTH_USER", "u"),
        ("LLM_METRICS_BASIC_AUTH_PASSWORD", "p4ss"),
        ("LLM_METRICS_BASIC_AUTH_PASSWORD_FILE", "/x"),
    ]);
    assert_eq!(name, "LLM_METRICS_BASIC_AUTH_PASSWORD");
    assert!(!reason.contains("p4ss"));
    assert_eq!(
        var(&[("LLM_METRICS_BEARER_TOKEN", "")]).0,
        "LLM_METRICS_BEARER_TOKEN"
    );
    assert_eq!(
        var(&[("LLM_METRICS_TLS_CERT", "/c.pem")]).0,
        "LLM_METRICS_TLS_KEY"
    );
    assert_eq!(
        var(&[("LLM_METRICS_TLS_KEY", "/k.pem")]).0,
        "LLM_METRICS_TLS_CERT"
    );
    #[cfg(not(feature = "tls"))]
    {
        let (name, reason) = var(&[
            ("LLM_METRICS_TLS_CERT", "/c.pem"),
            ("LLM_METRICS_TLS_KEY", "/k.pem"),
        ]);
        assert_eq!(name, "LLM_METRICS_TLS_CERT");
        assert!(reason.contains("tls"));
    }
    match env(&[("LLM_METRICS_ALLOW", "10.0.0.0/8,10.0.0.300")]) {
        Err(ExporterError::InvalidCidr { text }) => assert_eq!(text, "10.0.0.300"),
        other => panic!("{other:?}"),
    }
    // Label names are checked when the recorder is built.
    let builder = env(&[("LLM_METRICS_GLOBAL_LABELS", "le=1")]).expect("parsed");
    assert!(matches!(
        builder.build(),
        Err(ExporterError::InvalidLabel { .. })
    ));
}
