//! Who is calling: bearer tokens (compared in constant time, never logged) or the identity
//! of a verified TLS client certificate; and what each role may do.

use axum::http::{HeaderMap, header};

use super::error::ApiError;
use tapelog_api::tls::CertIdentity;
use tapelog_api::{ErrorCode, Role};

/// A token the server accepts, with the caller it names.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenSpec {
    /// The caller's role.
    pub role: Role,
    /// The caller's name (owner of the streams it creates; appears in messages).
    pub name: String,
    /// The secret.
    pub token: String,
}

impl std::fmt::Debug for TokenSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSpec")
            .field("role", &self.role)
            .field("name", &self.name)
            .field("token", &"(hidden)")
            .finish()
    }
}

/// Shortest token accepted in the configuration.
pub const MIN_TOKEN_LEN: usize = 16;

impl TokenSpec {
    /// Parses `ROLE:NAME:SECRET` (the `--token` option). The message of an error never
    /// repeats the secret.
    pub fn parse(spec: &str) -> Result<TokenSpec, String> {
        let mut it = spec.splitn(3, ':');
        let (Some(role), Some(name), Some(token)) = (it.next(), it.next(), it.next()) else {
            return Err("a token is ROLE:NAME:SECRET (e.g. recorder:host1:SECRET)".into());
        };
        TokenSpec::new(role, name, token)
    }

    /// Checks the parts of a token entry.
    pub fn new(role: &str, name: &str, token: &str) -> Result<TokenSpec, String> {
        let role = parse_role(role)?;
        if name.is_empty() {
            return Err("a token needs a caller name".into());
        }
        if token.len() < MIN_TOKEN_LEN {
            return Err(format!(
                "the token of {name:?} is shorter than {MIN_TOKEN_LEN} characters"
            ));
        }
        Ok(TokenSpec {
            role,
            name: name.to_string(),
            token: token.to_string(),
        })
    }
}

/// Reads a role name (`recorder`, `auditor`, `admin`).
pub fn parse_role(s: &str) -> Result<Role, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| format!("unknown role {s:?}: use recorder, auditor or admin"))
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Its name (token name or certificate CN).
    pub name: String,
    /// Its role.
    pub role: Role,
}

impl Caller {
    /// Refuses (403) unless the caller's role is `role` or admin.
    pub fn require(&self, role: Role, action: &str) -> Result<(), ApiError> {
        if self.role == role || self.role == Role::Admin {
            return Ok(());
        }
        Err(ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "{} ({}) may not {action}: it needs the {} role",
                self.name,
                role_str(self.role),
                role_str(role)
            ),
        ))
    }

    /// Whether the caller may touch what `owner` created.
    pub fn owns(&self, owner: &str) -> bool {
        self.role == Role::Admin || self.name == owner
    }
}

fn role_str(r: Role) -> &'static str {
    tapelog_api::tls::certs::role_name(r)
}

/// The tokens of a server.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    tokens: Vec<TokenSpec>,
}

impl Tokens {
    /// A table of `tokens`.
    pub fn new(tokens: Vec<TokenSpec>) -> Tokens {
        Tokens { tokens }
    }

    /// The caller a request names: its bearer token first, else its client certificate.
    pub fn authenticate(
        &self,
        headers: &HeaderMap,
        cert: Option<&CertIdentity>,
    ) -> Result<Caller, ApiError> {
        let unauth = |m: &str| ApiError::new(ErrorCode::Unauthenticated, m);
        if let Some(value) = headers.get(header::AUTHORIZATION) {
            let value = value
                .to_str()
                .map_err(|_| unauth("the Authorization header is not text"))?;
            let Some(token) = value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
            else {
                return Err(unauth("the Authorization header must be \"Bearer TOKEN\""));
            };
            return self
                .find(token.trim().as_bytes())
                .ok_or_else(|| unauth("unknown token: check the token the server was given"));
        }
        if let Some(id) = cert {
            let Some(role) = id.role else {
                return Err(unauth(&format!(
                    "the client certificate of {:?} names no role in its OU ({:?}): use recorder, auditor or admin",
                    id.name, id.unit
                )));
            };
            return Ok(Caller {
                name: id.name.clone(),
                role,
            });
        }
        Err(unauth(
            "no credentials: send \"Authorization: Bearer TOKEN\" or a client certificate",
        ))
    }

    /// The caller whose token is `given`; every token is compared, in constant time each.
    fn find(&self, given: &[u8]) -> Option<Caller> {
        let mut found = None;
        for t in &self.tokens {
            if constant_time_eq(t.token.as_bytes(), given) && found.is_none() {
                found = Some(Caller {
                    name: t.name.clone(),
                    role: t.role,
                });
            }
        }
        found
    }
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn token_specs() {
        let t = TokenSpec::parse("recorder:host1:0123456789abcdef:x").unwrap();
        assert_eq!(t.role, Role::Recorder);
        assert_eq!(t.name, "host1");
        assert_eq!(t.token, "0123456789abcdef:x");
        assert!(
            TokenSpec::parse("root:a:0123456789abcdef")
                .unwrap_err()
                .contains("root")
        );
        let short = TokenSpec::parse("admin:a:short").unwrap_err();
        assert!(!short.contains("short\""), "{short}");
        assert!(!format!("{t:?}").contains("0123456789abcdef"));
    }

    #[test]
    fn authenticate_by_token_or_cert() {
        let tokens = Tokens::new(vec![
            TokenSpec::parse("auditor:aud:0123456789abcdef").unwrap(),
        ]);
        let mut h = HeaderMap::new();
        assert_eq!(
            tokens.authenticate(&h, None).unwrap_err().code,
            ErrorCode::Unauthenticated
        );
        h.insert(
            header::AUTHORIZATION,
            "Bearer 0123456789abcdef".parse().unwrap(),
        );
        let c = tokens.authenticate(&h, None).unwrap();
        assert_eq!((c.name.as_str(), c.role), ("aud", Role::Auditor));
        assert_eq!(
            c.require(Role::Recorder, "emit events").unwrap_err().code,
            ErrorCode::Forbidden
        );
        h.insert(
            header::AUTHORIZATION,
            "Bearer 0123456789abcdeX".parse().unwrap(),
        );
        assert!(tokens.authenticate(&h, None).is_err());
        let id = CertIdentity {
            name: "rec".into(),
            role: Some(Role::Recorder),
            unit: "recorder".into(),
        };
        let c = tokens.authenticate(&HeaderMap::new(), Some(&id)).unwrap();
        assert_eq!(c.role, Role::Recorder);
        assert!(constant_time_eq(b"abc", b"abc") && !constant_time_eq(b"abc", b"abd"));
    }
}
