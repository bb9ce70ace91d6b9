//! [`Naming`]: the names, labels and buckets the layer's metrics are served under.

use std::fmt;
use std::str::FromStr;

use crate::error::ExporterError;

/// A naming profile: which names the layer's metrics are served under.
///
/// Several can be served at once (for a migration): each is written from the same series,
/// so their numbers agree exactly, and the layer's cardinality caps apply once. Your own
/// metrics keep their names under every profile. Choose with
/// [`ExporterBuilder::with_naming`](crate::ExporterBuilder::with_naming) or
/// `LLM_METRICS_NAMING` (a comma-separated list, e.g. `llm,vllm`); the mapping of every
/// family is in [`manual::naming`](crate::manual::naming).
///
/// ```
/// use llm_span_prometheus::Naming;
///
/// assert_eq!(Naming::parse_list("llm, vllm")?, [Naming::Llm, Naming::Vllm]);
/// let err = "vlm".parse::<Naming>().unwrap_err();
/// assert_eq!(err.to_string(), r#"unknown naming profile "vlm": the profiles are llm, vllm"#);
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
}

impl Naming {
    /// Every profile, in the order their names are listed.
    pub const ALL: &'static [Naming] = &[Naming::Llm, Naming::Vllm];

    /// The profile's name, as `LLM_METRICS_NAMING` spells it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Naming::Llm => "llm",
            Naming::Vllm => "vllm",
        }
    }

    /// Reads a comma-separated list of profile names (spaces around a name are ignored, a
    /// name given twice counts once): at least one, each of them known.
    pub fn parse_list(text: &str) -> Result<Vec<Naming>, ExporterError> {
        let mut list = Vec::new();
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let naming = name.parse()?;
            if !list.contains(&naming) {
                list.push(naming);
            }
        }
        if list.is_empty() {
            return Err(ExporterError::UnknownNaming {
                name: text.to_owned(),
            });
        }
        Ok(list)
    }

    /// `llm, vllm`: the names of every profile, for error messages.
    pub(crate) fn all_names() -> String {
        let names: Vec<&str> = Naming::ALL.iter().map(|n| n.as_str()).collect();
        names.join(", ")
    }
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

/// The profiles a recorder serves: at least one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Namings {
    llm: bool,
    vllm: bool,
}

impl Namings {
    /// `None` for an empty list.
    pub(crate) fn new(list: &[Naming]) -> Option<Self> {
        let namings = Self {
            llm: list.contains(&Naming::Llm),
            vllm: list.contains(&Naming::Vllm),
        };
        (namings.llm || namings.vllm).then_some(namings)
    }

    pub(crate) fn serves(self, naming: Naming) -> bool {
        match naming {
            Naming::Llm => self.llm,
            Naming::Vllm => self.vllm,
        }
    }
}

impl Default for Namings {
    fn default() -> Self {
        Self {
            llm: true,
            vllm: false,
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
        for bad in ["", " , ", "llm,otel", "LLM"] {
            let err = Naming::parse_list(bad).expect_err(bad);
            assert!(
                matches!(err, ExporterError::UnknownNaming { .. }),
                "{bad}: {err}"
            );
        }
        assert_eq!(
            Naming::parse_list("llm,otel").map_err(|e| e.to_string()),
            Err(r#"unknown naming profile "otel": the profiles are llm, vllm"#.to_owned())
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
    }
}
