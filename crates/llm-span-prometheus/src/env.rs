//! Configuration from `LLM_METRICS_*` environment variables.

use std::net::SocketAddr;

use crate::allow::Cidr;
use crate::auth::Secret;
use crate::error::ExporterError;
use crate::naming::{Naming, OtelRole};

/// Listen address, e.g. `0.0.0.0:9000`.
pub(crate) const LISTEN: &str = "LLM_METRICS_LISTEN";
/// Comma-separated networks.
pub(crate) const ALLOW: &str = "LLM_METRICS_ALLOW";
pub(crate) const BASIC_USER: &str = "LLM_METRICS_BASIC_AUTH_USER";
pub(crate) const BASIC_PASSWORD: &str = "LLM_METRICS_BASIC_AUTH_PASSWORD";
pub(crate) const BASIC_PASSWORD_FILE: &str = "LLM_METRICS_BASIC_AUTH_PASSWORD_FILE";
pub(crate) const BEARER: &str = "LLM_METRICS_BEARER_TOKEN";
pub(crate) const BEARER_FILE: &str = "LLM_METRICS_BEARER_TOKEN_FILE";
pub(crate) const ALLOW_PUBLIC: &str = "LLM_METRICS_ALLOW_PUBLIC";
pub(crate) const GLOBAL_LABELS: &str = "LLM_METRICS_GLOBAL_LABELS";
pub(crate) const TLS_CERT: &str = "LLM_METRICS_TLS_CERT";
pub(crate) const TLS_KEY: &str = "LLM_METRICS_TLS_KEY";
/// Comma-separated naming profiles, e.g. `llm,vllm`.
pub(crate) const NAMING: &str = "LLM_METRICS_NAMING";
/// Comma-separated roles of the `otel` profile, e.g. `server`.
pub(crate) const OTEL_ROLES: &str = "LLM_METRICS_OTEL_ROLES";

/// The settings the variables give; what they leave unset is `None` or empty. The
/// builder applies them with its public methods (`ExporterBuilder::from_env_map`).
#[derive(Debug, Default)]
pub(crate) struct EnvSettings {
    pub(crate) listen: Option<SocketAddr>,
    pub(crate) allow: Vec<String>,
    pub(crate) basic_auth: Option<(String, Secret)>,
    pub(crate) bearer_token: Option<Secret>,
    pub(crate) allow_public: bool,
    pub(crate) global_labels: Vec<(String, String)>,
    pub(crate) naming: Option<Vec<Naming>>,
    pub(crate) otel_roles: Option<Vec<OtelRole>>,
    /// Certificate and key paths (read only with the `tls` feature).
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(crate) tls: Option<(String, String)>,
}

/// Reads the variables that `lookup` finds.
pub(crate) fn read(lookup: &dyn Fn(&str) -> Option<String>) -> Result<EnvSettings, ExporterError> {
    let mut settings = EnvSettings::default();
    // An empty variable counts as unset, except for credentials (see `secret`).
    let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());

    if let Some(listen) = get(LISTEN) {
        let addr = listen
            .trim()
            .parse::<SocketAddr>()
            .map_err(|_| ExporterError::InvalidEnv {
                var: LISTEN,
                reason: format!(
                    "{listen:?} is not a socket address like 127.0.0.1:9000 or [::]:9000"
                ),
            })?;
        settings.listen = Some(addr);
    }
    if let Some(allow) = get(ALLOW) {
        for network in allow.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            // Parsed now so that a typo fails at start-up, with the text in the error.
            Cidr::parse(network)?;
            settings.allow.push(network.to_owned());
        }
    }
    let password = secret(lookup, BASIC_PASSWORD, BASIC_PASSWORD_FILE)?;
    match (lookup(BASIC_USER), password) {
        (Some(user), Some(password)) => settings.basic_auth = Some((user, password)),
        (Some(_), None) => {
            return Err(ExporterError::InvalidEnv {
                var: BASIC_USER,
                reason: format!("set, but neither {BASIC_PASSWORD} nor {BASIC_PASSWORD_FILE} is"),
            })
        }
        (None, Some(_)) => {
            return Err(ExporterError::InvalidEnv {
                var: BASIC_USER,
                reason: "not set, but a basic auth password is".to_owned(),
            })
        }
        (None, None) => {}
    }
    if let Some(token) = secret(lookup, BEARER, BEARER_FILE)? {
        settings.bearer_token = Some(token);
    }
    if let Some(flag) = get(ALLOW_PUBLIC) {
        match flag.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" => settings.allow_public = true,
            // Off is the default: nothing to set.
            "0" | "false" | "no" => {}
            _ => {
                return Err(ExporterError::InvalidEnv {
                    var: ALLOW_PUBLIC,
                    reason: format!("{flag:?} is not 1/true/yes or 0/false/no"),
                })
            }
        }
    }
    if let Some(labels) = get(GLOBAL_LABELS) {
        for pair in labels.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((name, value)) = pair.split_once('=') else {
                return Err(ExporterError::InvalidEnv {
                    var: GLOBAL_LABELS,
                    reason: format!("{pair:?} is not name=value"),
                });
            };
            // Names are checked with the builder's own labels when the recorder is built.
            settings
                .global_labels
                .push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    if let Some(naming) = get(NAMING) {
        let list = Naming::parse_list(&naming).map_err(|_| ExporterError::InvalidEnv {
            var: NAMING,
            reason: format!(
                "{naming:?} is not a comma-separated list of naming profiles ({})",
                Naming::all_names()
            ),
        })?;
        settings.naming = Some(list);
    }
    if let Some(roles) = get(OTEL_ROLES) {
        let list = OtelRole::parse_list(&roles).map_err(|_| ExporterError::InvalidEnv {
            var: OTEL_ROLES,
            reason: format!(
                "{roles:?} is not a comma-separated list of OpenTelemetry roles ({})",
                OtelRole::all_names()
            ),
        })?;
        settings.otel_roles = Some(list);
    }
    match (get(TLS_CERT), get(TLS_KEY)) {
        (None, None) => {}
        #[cfg(feature = "tls")]
        (Some(cert), Some(key)) => settings.tls = Some((cert, key)),
        #[cfg(not(feature = "tls"))]
        (Some(_), Some(_)) => {
            return Err(ExporterError::InvalidEnv {
                var: TLS_CERT,
                reason: "llm-span-prometheus was built without its `tls` feature".to_owned(),
            })
        }
        (Some(_), None) => {
            return Err(ExporterError::InvalidEnv {
                var: TLS_KEY,
                reason: format!("not set, but {TLS_CERT} is"),
            })
        }
        (None, Some(_)) => {
            return Err(ExporterError::InvalidEnv {
                var: TLS_CERT,
                reason: format!("not set, but {TLS_KEY} is"),
            })
        }
    }
    Ok(settings)
}

/// A credential from `var` or from the file named by `file_var`; not both. A variable
/// that is set but empty is an error, not "no authentication": a secret that failed
/// to mount must not open the endpoint.
fn secret(
    lookup: &dyn Fn(&str) -> Option<String>,
    var: &'static str,
    file_var: &'static str,
) -> Result<Option<Secret>, ExporterError> {
    let empty = |what| ExporterError::InvalidEnv {
        var: what,
        reason: "set but empty".to_owned(),
    };
    match (lookup(var), lookup(file_var)) {
        (Some(_), Some(_)) => Err(ExporterError::InvalidEnv {
            var,
            reason: format!("set together with {file_var}; set one"),
        }),
        (Some(value), None) if value.is_empty() => Err(empty(var)),
        (Some(value), None) => Ok(Some(Secret::from(value))),
        (None, Some(path)) if path.is_empty() => Err(empty(file_var)),
        (None, Some(path)) => {
            let value = Secret::from_file(&path)?;
            if value.is_empty() {
                return Err(ExporterError::InvalidCredential {
                    what: if var == BEARER {
                        "bearer token"
                    } else {
                        "basic auth password"
                    },
                    reason: "the credential file is empty",
                });
            }
            Ok(Some(value))
        }
        (None, None) => Ok(None),
    }
}
