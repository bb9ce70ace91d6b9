//! Config parsing never panics, whatever the input: price files and the exporter's
//! environment variables. Errors name the problem and never echo a credential.
//!
//! `PROPTEST_CASES=100000 cargo test --test fuzz_config` fuzzes longer.

use std::collections::HashMap;

use llm_span_layer::PriceTable;
use llm_span_prometheus::ExporterBuilder;
use proptest::prelude::*;

const VARIABLES: [&str; 13] = [
    "LLM_METRICS_LISTEN",
    "LLM_METRICS_ALLOW",
    "LLM_METRICS_BASIC_AUTH_USER",
    "LLM_METRICS_BASIC_AUTH_PASSWORD",
    "LLM_METRICS_BASIC_AUTH_PASSWORD_FILE",
    "LLM_METRICS_BEARER_TOKEN",
    "LLM_METRICS_BEARER_TOKEN_FILE",
    "LLM_METRICS_ALLOW_PUBLIC",
    "LLM_METRICS_GLOBAL_LABELS",
    "LLM_METRICS_TLS_CERT",
    "LLM_METRICS_TLS_KEY",
    "LLM_METRICS_NAMING",
    "LLM_METRICS_OTEL_ROLES",
];

fn price_line() -> impl Strategy<Value = String> {
    let number = prop_oneof![
        "[0-9]{1,7}",
        "[0-9]{1,4}\\.[0-9]{0,8}",
        Just("-".to_owned()),
        Just("-1".to_owned()),
        "\\PC{0,6}"
    ];
    (
        "[a-z0-9.-]{0,12}",
        number.clone(),
        number.clone(),
        number,
        prop_oneof![Just(""), Just(" # note"), Just("\t")],
    )
        .prop_map(|(model, a, b, c, tail)| format!("{model} {a} {b} {c}{tail}"))
}

fn env_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("127.0.0.1:0".to_owned()),
        Just("0.0.0.0:9000".to_owned()),
        Just("[::]:0".to_owned()),
        Just("10.0.0.0/8,::1".to_owned()),
        Just("1".to_owned()),
        Just("service=chat,instance=a".to_owned()),
        Just("llm,vllm,otel".to_owned()),
        Just(" server,client".to_owned()),
        Just("/nonexistent/secret".to_owned()),
        "\\PC{0,30}",
        any::<String>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn price_files_never_panic(text in prop_oneof![any::<String>(), proptest::collection::vec(price_line(), 0..6).prop_map(|l| l.join("\n"))]) {
        match PriceTable::parse(&text) {
            Ok(table) => prop_assert!(table.len() <= text.lines().count()),
            Err(error) => prop_assert!(error.to_string().contains("line "), "{}", error),
        }
    }

    #[test]
    fn exporter_environment_never_panics_nor_leaks(values in proptest::collection::vec((0..VARIABLES.len(), env_value()), 0..6)) {
        let env: HashMap<&str, String> = values.iter().map(|(i, v)| (VARIABLES[*i], v.clone())).collect();
        const CREDENTIALS: [&str; 2] = ["LLM_METRICS_BASIC_AUTH_PASSWORD", "LLM_METRICS_BEARER_TOKEN"];
        // A value also given to another variable may rightly be quoted for that one.
        let secrets: Vec<&String> = CREDENTIALS
            .iter()
            .filter_map(|k| env.get(k))
            .filter(|v| v.len() >= 4)
            .filter(|v| !env.iter().any(|(k, other)| !CREDENTIALS.contains(k) && other.contains(v.as_str())))
            .collect();
        let result = ExporterBuilder::from_env_map(|name| env.get(name).cloned())
            // Building the server config runs every validation without binding a port.
            .and_then(|builder| builder.build().map(|_| ()));
        if let Err(error) = result {
            let shown = format!("{error} {error:?}");
            for secret in secrets {
                prop_assert!(!shown.contains(secret.as_str()), "{} leaks a credential", shown);
            }
        }
    }
}
