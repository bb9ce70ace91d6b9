//! [`Naming`]: the names, labels and buckets the layer's metrics are served under.

use std::fmt;
use std::str::FromStr;

use crate::error::ExporterError;

/// A naming profile: which names the layer's metrics are served under.
///
/// Several can be served at once (for a migration): each is written from the same series,
/// read once per scrape, so their numbers agree exactly in every scrape, even while
/// requests run; the layer's cardinality caps apply once. Your own
/// metrics keep their names under every profile. Choose with
/// [`ExporterBuilder::with_naming`](crate::ExporterBuilder::with_naming) or
/// `LLM_METRICS_NAMING` (a comma-separated list, e.g. `llm,vllm`); the mapping of every
/// family is in [`manual::naming`](crate::manual::naming).
///
/// ```
/// use llm_span_prometheus::Naming;
///
/// assert_eq!(Naming::parse_list("llm, otel")?, [Naming::Llm, Naming::Otel]);
/// let err = "vlm".parse::<Naming>().unwrap_err();
/// assert_eq!(err.to_string(), r#"unknown naming profile "vlm": the profiles are llm, vllm, otel"#);
/// # Ok::<(), llm_span_prometheus::ExporterError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Naming {
    /// The layer's own names (`llm_requests_total`, label `model`, ...): the default.
    Llm,
    /// vLLM's Prometheus families (`vllm:num_requests_waiting`, label `model_name`, ...),
    /// with vLLM's bucket boundaries: what vLLM's dashboards, KEDA recipes and inference
    /// gateways read.
    Vllm,
    /// The OpenTelemetry GenAI metric conventions (v1.41.0) under the OpenTelemetry to
    /// Prometheus translation (`gen_ai_server_request_duration_seconds`, label
    /// `gen_ai_request_model`, ...), with their advisory bucket boundaries, for the
    /// [`OtelRole`]s chosen with
    /// [`ExporterBuilder::with_otel_roles`](crate::ExporterBuilder::with_otel_roles) (both
    /// by default): what OpenTelemetry GenAI dashboards read.
    Otel,
}

impl Naming {
    /// Every profile, in the order their names are listed.
    pub const ALL: &'static [Naming] = &[Naming::Llm, Naming::Vllm, Naming::Otel];

    /// The profile's name, as `LLM_METRICS_NAMING` spells it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Naming::Llm => "llm",
            Naming::Vllm => "vllm",
            Naming::Otel => "otel",
        }
    }

    /// Reads a comma-separated list of profile names (spaces around a name are ignored, a
    /// name given twice counts once): at least one, each of them known.
    pub fn parse_list(text: &str) -> Result<Vec<Naming>, ExporterError> {
        parse_list(text, |name| ExporterError::UnknownNaming { name })
    }

    /// `llm, vllm, otel`: the names of every profile, for error messages.
    pub(crate) fn all_names() -> String {
        let names: Vec<&str> = Naming::ALL.iter().map(|n| n.as_str()).collect();
        names.join(", ")
    }
}

/// A comma-separated list of names of `T` (spaces around a name ignored, a name given
/// twice counted once), at least one: `empty` makes the error of a list with none.
fn parse_list<T>(
    text: &str,
    empty: impl FnOnce(String) -> ExporterError,
) -> Result<Vec<T>, ExporterError>
where
    T: FromStr<Err = ExporterError> + PartialEq,
{
    let mut list = Vec::new();
    for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let item = name.parse()?;
        if !list.contains(&item) {
            list.push(item);
        }
    }
    if list.is_empty() {
        return Err(empty(text.to_owned()));
    }
    Ok(list)
}

impl fmt::Display for Naming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Naming {
    type Err = ExporterError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Naming::ALL
            .iter()
            .copied()
            .find(|naming| naming.as_str() == name)
            .ok_or_else(|| ExporterError::UnknownNaming {
                name: name.to_owned(),
            })
    }
}

/// Which side of a model call the `otel` profile describes: the OpenTelemetry GenAI
/// conventions have client families (`gen_ai.client.*`, for an application that calls a
/// model) and server families (`gen_ai.server.*`, for a server that runs one). The layer
/// measures both sides alike, so the `otel` profile serves the families of both by default;
/// choose with [`ExporterBuilder::with_otel_roles`](crate::ExporterBuilder::with_otel_roles)
/// or `LLM_METRICS_OTEL_ROLES` (a comma-separated list, e.g. `server`). Only the `otel`
/// profile reads them.
///
/// ```
/// use llm_span_prometheus::OtelRole;
///
/// assert_eq!(OtelRole::parse_list("server")?, [OtelRole::Server]);
/// let err = "gateway".parse::<OtelRole>().unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     r#"unknown OpenTelemetry role "gateway": the roles are client, server"#
/// );
/// # Ok::<(), llm_span_prometheus::ExporterError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OtelRole {
    /// `gen_ai_client_token_usage` and `gen_ai_client_operation_duration_seconds`.
    Client,
    /// `gen_ai_server_request_duration_seconds`, `gen_ai_server_time_to_first_token_seconds`
    /// and `gen_ai_server_time_per_output_token_seconds`.
    Server,
}

impl OtelRole {
    /// Every role, in the order their names are listed.
    pub const ALL: &'static [OtelRole] = &[OtelRole::Client, OtelRole::Server];

    /// The role's name, as `LLM_METRICS_OTEL_ROLES` spells it.
    pub const fn as_str(self) -> &'static str {
        match self {
            OtelRole::Client => "client",
            OtelRole::Server => "server",
        }
    }

    /// Reads a comma-separated list of role names (spaces around a name are ignored, a
    /// name given twice counts once): at least one, each of them known.
    pub fn parse_list(text: &str) -> Result<Vec<OtelRole>, ExporterError> {
        parse_list(text, |name| ExporterError::UnknownOtelRole { name })
    }

    /// `client, server`: the names of every role, for error messages.
    pub(crate) fn all_names() -> String {
        let names: Vec<&str> = OtelRole::ALL.iter().map(|r| r.as_str()).collect();
        names.join(", ")
    }
}

impl fmt::Display for OtelRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OtelRole {
    type Err = ExporterError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        OtelRole::ALL
            .iter()
            .copied()
            .find(|role| role.as_str() == name)
            .ok_or_else(|| ExporterError::UnknownOtelRole {
                name: name.to_owned(),
            })
    }
}

/// The profiles a recorder serves (at least one), and the roles of the `otel` profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Namings {
    llm: bool,
    vllm: bool,
    otel: bool,
    client: bool,
    server: bool,
}

impl Namings {
    /// `None` for an empty list. The `otel` profile, if listed, serves both roles.
    pub(crate) fn new(list: &[Naming]) -> Option<Self> {
        let namings = Self {
            llm: list.contains(&Naming::Llm),
            vllm: list.contains(&Naming::Vllm),
            otel: list.contains(&Naming::Otel),
            client: true,
            server: true,
        };
        (namings.llm || namings.vllm || namings.otel).then_some(namings)
    }

    /// The same profiles, the `otel` profile serving `roles`; `None` for an empty list.
    pub(crate) fn with_otel_roles(self, roles: &[OtelRole]) -> Option<Self> {
        let namings = Self {
            client: roles.contains(&OtelRole::Client),
            server: roles.contains(&OtelRole::Server),
            ..self
        };
        (namings.client || namings.server).then_some(namings)
    }

    pub(crate) fn serves(self, naming: Naming) -> bool {
        match naming {
            Naming::Llm => self.llm,
            Naming::Vllm => self.vllm,
            Naming::Otel => self.otel,
        }
    }

    /// Whether the `otel` profile is served with the families of `role`.
    pub(crate) fn serves_otel(self, role: OtelRole) -> bool {
        self.otel
            && match role {
                OtelRole::Client => self.client,
                OtelRole::Server => self.server,
            }
    }
}

impl Default for Namings {
    fn default() -> Self {
        Self {
            llm: true,
            vllm: false,
            otel: false,
            client: true,
            server: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_read_in_order_once_each_and_never_empty() {
        assert_eq!(
            Naming::parse_list(" vllm ,llm,vllm,").expect("valid"),
            [Naming::Vllm, Naming::Llm]
        );
        assert_eq!(
            Naming::parse_list("otel, llm,otel").expect("valid"),
            [Naming::Otel, Naming::Llm]
        );
        for bad in ["", " , ", "llm,otl", "LLM", "OTEL"] {
            let err = Naming::parse_list(bad).expect_err(bad);
            assert!(
                matches!(err, ExporterError::UnknownNaming { .. }),
                "{bad}: {err}"
            );
        }
        assert_eq!(
            Naming::parse_list("llm,otl").map_err(|e| e.to_string()),
            Err(r#"unknown naming profile "otl": the profiles are llm, vllm, otel"#.to_owned())
        );
        assert_eq!(
            Naming::parse_list(" , ").map_err(|e| e.to_string()),
            Err(r#"unknown naming profile " , ": the profiles are llm, vllm, otel"#.to_owned())
        );
    }

    #[test]
    fn role_lists_are_read_in_order_once_each_and_never_empty() {
        assert_eq!(
            OtelRole::parse_list(" server ,client,server,").expect("valid"),
            [OtelRole::Server, OtelRole::Client]
        );
        assert_eq!(
            OtelRole::parse_list("client").expect("valid"),
            [OtelRole::Client]
        );
        for bad in ["", " , ", "client,gateway", "Server"] {
            let err = OtelRole::parse_list(bad).expect_err(bad);
            assert!(
                matches!(err, ExporterError::UnknownOtelRole { .. }),
                "{bad}: {err}"
            );
        }
        assert_eq!(
            OtelRole::parse_list("client,gateway").map_err(|e| e.to_string()),
            Err(r#"unknown OpenTelemetry role "gateway": the roles are client, server"#.to_owned())
        );
        assert_eq!(
            OtelRole::parse_list("").map_err(|e| e.to_string()),
            Err(r#"unknown OpenTelemetry role "": the roles are client, server"#.to_owned())
        );
        assert_eq!(
            (OtelRole::Client.to_string(), OtelRole::Server.to_string()),
            ("client".to_owned(), "server".to_owned())
        );
    }

    #[test]
    fn a_set_serves_what_it_lists() {
        let both = Namings::new(&[Naming::Vllm, Naming::Llm]).expect("not empty");
        assert!(both.serves(Naming::Llm) && both.serves(Naming::Vllm));
        let vllm = Namings::new(&[Naming::Vllm]).expect("not empty");
        assert!(!vllm.serves(Naming::Llm) && vllm.serves(Naming::Vllm));
        assert_eq!(Namings::new(&[]), None);
        assert_eq!(
            Namings::default(),
            Namings::new(&[Naming::Llm]).expect("llm")
        );
        assert_eq!(Naming::Vllm.to_string(), "vllm");
        assert_eq!(Naming::Otel.to_string(), "otel");
        assert!(!both.serves(Naming::Otel));
        let otel = Namings::new(&[Naming::Otel]).expect("not empty");
        assert!(
            !otel.serves(Naming::Llm) && !otel.serves(Naming::Vllm) && otel.serves(Naming::Otel)
        );
    }

    #[test]
    fn the_otel_profile_serves_the_roles_chosen_both_by_default() {
        let otel = Namings::new(&[Naming::Otel]).expect("not empty");
        let roles = |namings: Namings| {
            (
                namings.serves_otel(OtelRole::Client),
                namings.serves_otel(OtelRole::Server),
            )
        };
        assert_eq!(roles(otel), (true, true));
        let server = otel.with_otel_roles(&[OtelRole::Server]).expect("a role");
        assert_eq!(roles(server), (false, true));
        assert!(server.serves(Naming::Otel));
        let client = otel.with_otel_roles(&[OtelRole::Client]).expect("a role");
        assert_eq!(roles(client), (true, false));
        let both = otel
            .with_otel_roles(&[OtelRole::Server, OtelRole::Client])
            .expect("roles");
        assert_eq!(roles(both), (true, true));
        assert_eq!(otel.with_otel_roles(&[]), None);
        // Without the profile, no role is served.
        let llm = Namings::default();
        assert_eq!(roles(llm), (false, false));
        assert_eq!(
            roles(llm.with_otel_roles(&[OtelRole::Server]).expect("a role")),
            (false, false)
        );
    }
}
