//! Credentials: the [`Secret`] wrapper, HTTP basic and bearer authentication.

use std::fmt;
use std::path::Path;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use base64::Engine as _;
use subtle::ConstantTimeEq;

use crate::error::ExporterError;

/// A credential (password or bearer token) that never shows up in `Debug` output,
/// logs or errors.
///
/// ```
/// use llm_span_prometheus::Secret;
///
/// let token = Secret::new("s3cr3t");
/// assert_eq!(format!("{token:?}"), "Secret(***)");
/// ```
// No PartialEq: comparing credentials goes through `constant_time_eq` only.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential given in code.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// Reads a credential from a file (a mounted Kubernetes or Docker secret, say), so
    /// that it is neither in the code nor on the command line. One trailing line break
    /// (`\n` or `\r\n`) is removed; errors name the path, never the content.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ExporterError> {
        let path = path.as_ref();
        let mut value =
            std::fs::read_to_string(path).map_err(|source| ExporterError::CredentialFile {
                path: path.to_owned(),
                source,
            })?;
        if value.ends_with('\n') {
            value.pop();
            if value.ends_with('\r') {
                value.pop();
            }
        }
        Ok(Self(value))
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        // Best effort: overwrite the bytes before the allocator reuses them.
        let mut bytes = std::mem::take(&mut self.0).into_bytes();
        bytes.iter_mut().for_each(|b| *b = 0);
        std::hint::black_box(&bytes);
    }
}

/// Compares `given` with `expected` in time that depends only on `expected.len()`,
/// with [`subtle`]'s constant-time comparison: no exit on the first differing byte.
///
/// subtle returns at once when the lengths differ, which would tell a client how long
/// the secret is. So on a length mismatch `expected` is compared with itself (the same
/// work as a real comparison) and the mismatch is folded into the result.
pub(crate) fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    let same_len = given.len().ct_eq(&expected.len());
    let candidate = if bool::from(same_len) {
        given
    } else {
        expected
    };
    bool::from(candidate.ct_eq(expected) & same_len)
}

/// Decodes standard base64 (RFC 4648 alphabet `A-Z a-z 0-9 + /`), with or without `=`
/// padding. `None` for any other character, misplaced or partial padding, a dangling
/// symbol, or non-zero trailing bits (a non-canonical encoding such as `Zh==`).
pub(crate) fn base64_decode(input: &str) -> Option<Vec<u8>> {
    // Both engines use the standard alphabet and reject non-canonical trailing bits.
    // Padded input must be padded completely (`Zg==`, not `Zg=`); unpadded input must
    // carry no `=` at all: so `=` decides the engine, and the engine decides the rest.
    let engine = if input.contains('=') {
        &STANDARD
    } else {
        &STANDARD_NO_PAD
    };
    engine.decode(input).ok()
}

/// The configured credentials of the /metrics endpoint.
#[derive(Debug, Clone, Default)]
pub(crate) struct Credentials {
    /// `user:password`, as a basic-auth client sends it (base64-decoded).
    basic: Option<Secret>,
    bearer: Option<Secret>,
}

/// The outcome of checking a request's `Authorization` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthResult {
    Allowed,
    Denied,
}

impl Credentials {
    pub(crate) fn new(
        basic: Option<(String, Secret)>,
        bearer: Option<Secret>,
    ) -> Result<Self, ExporterError> {
        let basic = match basic {
            Some((user, password)) => {
                if user.is_empty() {
                    return Err(ExporterError::InvalidCredential {
                        what: "basic auth user",
                        reason: "empty",
                    });
                }
                if user.contains(':') {
                    return Err(ExporterError::InvalidCredential {
                        what: "basic auth user",
                        reason: "must not contain ':'",
                    });
                }
                if password.is_empty() {
                    return Err(ExporterError::InvalidCredential {
                        what: "basic auth password",
                        reason: "empty",
                    });
                }
                Some(Secret(format!("{user}:{}", password.expose())))
            }
            None => None,
        };
        if let Some(token) = &bearer {
            if token.is_empty() {
                return Err(ExporterError::InvalidCredential {
                    what: "bearer token",
                    reason: "empty",
                });
            }
            // It goes in a header: it must be a visible ASCII token without spaces.
            if !token.expose().bytes().all(|b| b.is_ascii_graphic()) {
                return Err(ExporterError::InvalidCredential {
                    what: "bearer token",
                    reason: "must be printable ASCII without spaces",
                });
            }
        }
        Ok(Self { basic, bearer })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.basic.is_none() && self.bearer.is_none()
    }

    /// The `WWW-Authenticate` challenges to send with a 401.
    pub(crate) fn challenges(&self) -> impl Iterator<Item = &'static str> {
        let basic = self.basic.as_ref().map(|_| "Basic realm=\"metrics\"");
        let bearer = self.bearer.as_ref().map(|_| "Bearer realm=\"metrics\"");
        basic.into_iter().chain(bearer)
    }

    /// Checks an `Authorization` header value; any configured scheme may be used.
    pub(crate) fn check(&self, header: Option<&[u8]>) -> AuthResult {
        if self.is_empty() {
            return AuthResult::Allowed;
        }
        let Some(header) = header.and_then(|h| std::str::from_utf8(h).ok()) else {
            return AuthResult::Denied;
        };
        let (scheme, rest) = header.trim().split_once(' ').unwrap_or((header, ""));
        let rest = rest.trim_start();
        let ok = if scheme.eq_ignore_ascii_case("basic") {
            match (&self.basic, base64_decode(rest)) {
                (Some(expected), Some(given)) => {
                    constant_time_eq(&given, expected.expose().as_bytes())
                }
                _ => false,
            }
        } else if scheme.eq_ignore_ascii_case("bearer") {
            match &self.bearer {
                Some(expected) => constant_time_eq(rest.as_bytes(), expected.expose().as_bytes()),
                None => false,
            }
        } else {
            false
        };
        if ok {
            AuthResult::Allowed
        } else {
            AuthResult::Denied
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_debug_hides_the_value() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "Secret(***)");
        assert_eq!(format!("{secret:#?}"), "Secret(***)");
        let creds = Credentials::new(
            Some(("admin".into(), "hunter2".into())),
            Some("tok3n".into()),
        )
        .expect("valid");
        let debug = format!("{creds:?}");
        assert!(
            !debug.contains("hunter2") && !debug.contains("tok3n"),
            "{debug}"
        );
    }

    #[test]
    fn constant_time_eq_compares_content_and_length() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"abd", b"abc"));
        assert!(!constant_time_eq(b"bbc", b"abc"));
        assert!(!constant_time_eq(b"ab", b"abc"));
        assert!(!constant_time_eq(b"abcd", b"abc"));
        assert!(!constant_time_eq(b"", b"abc"));
        assert!(!constant_time_eq(b"abc", b""));
        // A prefix padded with zero bytes is not the secret either.
        assert!(!constant_time_eq(b"ab\0", b"ab"));
        assert!(!constant_time_eq(b"ab", b"ab\0"));
    }

    #[test]
    fn base64_decodes_rfc4648_vectors() {
        let cases: [(&str, &[u8]); 8] = [
            ("", b""),
            ("Zg==", b"f"),
            ("Zm8=", b"fo"),
            ("Zm9v", b"foo"),
            ("Zm9vYg==", b"foob"),
            ("Zm9vYmE=", b"fooba"),
            ("Zm9vYmFy", b"foobar"),
            ("YWRtaW46czNjcjN0", b"admin:s3cr3t"),
        ];
        for (encoded, decoded) in cases {
            assert_eq!(
                base64_decode(encoded).as_deref(),
                Some(decoded),
                "{encoded}"
            );
        }
        // Unpadded input is accepted too.
        assert_eq!(base64_decode("Zg").as_deref(), Some(&b"f"[..]));
        assert_eq!(base64_decode("Zm8").as_deref(), Some(&b"fo"[..]));
        // All 64 symbols.
        assert_eq!(
            base64_decode("+/+/").as_deref(),
            Some(&[0xfb, 0xff, 0xbf][..])
        );
    }

    #[test]
    fn base64_rejects_invalid_input() {
        for bad in [
            "Z",
            "Zg=",
            "Zg===",
            "Z===",
            "=Zg=",
            "Zg=a",
            "Zm9v!",
            "Zm9v YmFy",
            "Zh==",
            "Zm9=",
            "-_==",
            "Zm9vYg=",
        ] {
            assert_eq!(base64_decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn basic_and_bearer_checks() {
        let creds = Credentials::new(
            Some(("admin".into(), "s3cr3t".into())),
            Some("tok3n".into()),
        )
        .expect("valid");
        assert_eq!(creds.check(None), AuthResult::Denied);
        assert_eq!(
            creds.check(Some(b"Basic YWRtaW46czNjcjN0")),
            AuthResult::Allowed
        );
        assert_eq!(
            creds.check(Some(b"basic  YWRtaW46czNjcjN0")),
            AuthResult::Allowed
        );
        // admin:s3cr3u
        assert_eq!(
            creds.check(Some(b"Basic YWRtaW46czNjcjN1")),
            AuthResult::Denied
        );
        assert_eq!(creds.check(Some(b"Basic !!!")), AuthResult::Denied);
        assert_eq!(creds.check(Some(b"Bearer tok3n")), AuthResult::Allowed);
        assert_eq!(creds.check(Some(b"BEARER tok3n")), AuthResult::Allowed);
        assert_eq!(creds.check(Some(b"Bearer tok3")), AuthResult::Denied);
        assert_eq!(creds.check(Some(b"Bearer tok3nn")), AuthResult::Denied);
        assert_eq!(creds.check(Some(b"Bearer")), AuthResult::Denied);
        assert_eq!(creds.check(Some(b"Digest tok3n")), AuthResult::Denied);
        assert_eq!(creds.check(Some(b"tok3n")), AuthResult::Denied);
        assert_eq!(creds.check(Some(&[0xff, 0xfe])), AuthResult::Denied);
        assert_eq!(
            creds.challenges().collect::<Vec<_>>(),
            ["Basic realm=\"metrics\"", "Bearer realm=\"metrics\""]
        );

        let bearer_only = Credentials::new(None, Some("tok3n".into())).expect("valid");
        assert_eq!(
            bearer_only.check(Some(b"Basic YWRtaW46czNjcjN0")),
            AuthResult::Denied
        );
        assert_eq!(
            bearer_only.challenges().collect::<Vec<_>>(),
            ["Bearer realm=\"metrics\""]
        );

        let none = Credentials::default();
        assert!(none.is_empty());
        assert_eq!(none.check(None), AuthResult::Allowed);
    }

    #[test]
    fn invalid_credentials_are_refused() {
        let err = |basic: Option<(&str, &str)>, bearer: Option<&str>| match Credentials::new(
            basic.map(|(u, p)| (u.to_owned(), p.into())),
            bearer.map(Secret::from),
        ) {
            Err(ExporterError::InvalidCredential { what, .. }) => what,
            other => panic!("{other:?}"),
        };
        assert_eq!(err(Some(("", "pw")), None), "basic auth user");
        assert_eq!(err(Some(("a:b", "pw")), None), "basic auth user");
        assert_eq!(err(Some(("admin", "")), None), "basic auth password");
        assert_eq!(err(None, Some("")), "bearer token");
        assert_eq!(err(None, Some("has space")), "bearer token");
    }
}
