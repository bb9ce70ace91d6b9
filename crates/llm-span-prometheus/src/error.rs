//! The one error type of the crate.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Why the exporter could not be configured, built or started.
///
/// Messages name the offending address, metric, text or file path. They never
/// contain a credential: not from code, an environment variable or a file.
#[derive(Debug)]
#[non_exhaustive]
pub enum ExporterError {
    /// The listen address is already taken by another socket.
    AddressInUse {
        /// The address that could not be bound.
        addr: SocketAddr,
    },
    /// Binding the listen address failed for another reason (permission, no such address).
    Bind {
        /// The address that could not be bound.
        addr: SocketAddr,
        /// The operating system's error.
        source: io::Error,
    },
    /// A network in the allowlist is not an IP address or `address/prefix`.
    InvalidCidr {
        /// The text that failed to parse.
        text: String,
    },
    /// The bucket boundaries of a histogram are unusable.
    InvalidBuckets {
        /// The histogram the boundaries were given for.
        metric: String,
        /// What is wrong: empty, not finite, not strictly increasing, or negative.
        reason: &'static str,
    },
    /// A global label has an invalid or reserved name.
    InvalidLabel {
        /// The label name.
        name: String,
        /// Why it cannot be used.
        reason: &'static str,
    },
    /// A limit or interval of the builder is out of range (zero, say).
    InvalidSetting {
        /// The builder setting.
        setting: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A global recorder is already installed in this process.
    RecorderAlreadyInstalled,
    /// A credential file could not be read.
    CredentialFile {
        /// The file's path (its content is never part of the error).
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// A credential is empty, or otherwise unusable.
    InvalidCredential {
        /// Which credential: `basic auth user`, `basic auth password` or `bearer token`.
        what: &'static str,
        /// What is wrong with it (never the value itself).
        reason: &'static str,
    },
    /// A non-loopback listen address was configured with neither authentication nor an allowlist.
    PublicBindWithoutAuth {
        /// The listen address.
        addr: SocketAddr,
    },
    /// An environment variable has a value that cannot be used.
    InvalidEnv {
        /// The variable's name.
        var: &'static str,
        /// What is wrong with it (the value is quoted only for non-secret variables).
        reason: String,
    },
    /// A TLS certificate or key file could not be read or holds no usable PEM item.
    Tls {
        /// The file's path.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The listener's thread or runtime could not be started.
    Runtime(io::Error),
    /// A naming profile that does not exist (or an empty list of them).
    UnknownNaming {
        /// The name given.
        name: String,
    },
    /// An OpenTelemetry role ([`OtelRole`](crate::OtelRole)) that does not exist (or an
    /// empty list of them).
    UnknownOtelRole {
        /// The name given.
        name: String,
    },
}

impl fmt::Display for ExporterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::AddressInUse { addr } => write!(f, "metrics listen address {addr} is already in use"),
            Self::Bind { addr, source } => write!(f, "cannot bind metrics listen address {addr}: {source}"),
            Self::InvalidCidr { text } => {
                write!(f, "invalid network {text:?} in the metrics allowlist: expected an IP address or address/prefix")
            }
            Self::InvalidBuckets { metric, reason } => write!(f, "invalid histogram buckets for {metric}: {reason}"),
            Self::InvalidLabel { name, reason } => write!(f, "invalid global label {name:?}: {reason}"),
            Self::InvalidSetting { setting, reason } => write!(f, "invalid exporter setting {setting}: {reason}"),
            Self::RecorderAlreadyInstalled => f.write_str("a global metrics recorder is already installed"),
            Self::CredentialFile { path, source } => {
                write!(f, "cannot read metrics credential file {}: {source}", path.display())
            }
            Self::InvalidCredential { what, reason } => write!(f, "invalid metrics {what}: {reason}"),
            Self::PublicBindWithoutAuth { addr } => write!(
                f,
                "refusing to serve metrics on non-loopback address {addr} without authentication or an \
                 allowlist; configure one, or opt in with allow_unauthenticated_public_bind() \
                 (LLM_METRICS_ALLOW_PUBLIC=1)"
            ),
            Self::InvalidEnv { var, reason } => write!(f, "invalid environment variable {var}: {reason}"),
            Self::Tls { path, reason } => write!(f, "TLS file {}: {reason}", path.display()),
            Self::Runtime(source) => write!(f, "cannot start the metrics listener: {source}"),
            Self::UnknownNaming { name } => write!(
                f,
                "unknown naming profile {name:?}: the profiles are {}",
                crate::naming::Naming::all_names()
            ),
            Self::UnknownOtelRole { name } => write!(
                f,
                "unknown OpenTelemetry role {name:?}: the roles are {}",
                crate::naming::OtelRole::all_names()
            ),
        }
    }
}

impl std::error::Error for ExporterError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Bind { source, .. }
            | Self::CredentialFile { source, .. }
            | Self::Runtime(source) => Some(source),
            _ => None,
        }
    }
}
