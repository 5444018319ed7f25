//! Bearer-token authentication. A JWT (HS256 with a shared secret, or RS256/ES256 with a public
//! key) names the caller: `sub` is the user id (a UUID) and `email` is where their notifications
//! go. `exp` is always required and `nbf` is checked when present (both with `JWT_LEEWAY`, at
//! most 5 minutes); a token valid for longer than `JWT_MAX_LIFETIME` (`exp - iat`, or
//! `exp - now` without `iat`) is refused; `iss`/`aud` are checked when configured. Any failure
//! is a 401 problem and never says which check failed beyond a short reason.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ApiError;
use crate::settings::Settings;

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthUser {
    pub user_id: Uuid,
    pub email: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    email: String,
    exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aud: Option<String>,
}

/// Why a verifier could not be built from the settings.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error("cannot read JWT_PUBLIC_KEY_FILE `{path}`: {source}")]
    KeyFile {
        path: String,
        source: std::io::Error,
    },
    #[error("JWT_PUBLIC_KEY_FILE is not a valid {algorithm} PEM public key: {source}")]
    Key {
        algorithm: String,
        source: jsonwebtoken::errors::Error,
    },
    #[error("no HS256 secret is configured (JWT_SECRET); refusing to sign a token")]
    NoSecret,
    #[error("signing failed: {0}")]
    Sign(jsonwebtoken::errors::Error),
    #[error("`{0}` is not a valid email address")]
    Email(String),
    #[error("a token valid for {}s exceeds JWT_MAX_LIFETIME ({}s)", .ttl.as_secs(), .max.as_secs())]
    Lifetime { ttl: Duration, max: Duration },
}

/// Verifies tokens; built once at start-up and shared.
#[derive(Clone)]
pub struct Authenticator {
    key: Arc<DecodingKey>,
    validation: Arc<Validation>,
    max_lifetime: Duration,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("algorithms", &self.validation.algorithms)
            .finish_non_exhaustive()
    }
}

fn algorithm(name: &str) -> Algorithm {
    match name {
        "RS256" => Algorithm::RS256,
        "ES256" => Algorithm::ES256,
        _ => Algorithm::HS256,
    }
}

impl Authenticator {
    /// Builds the verifier from validated settings.
    pub fn from_settings(settings: &Settings) -> Result<Self, AuthSetupError> {
        let alg = algorithm(&settings.jwt_algorithm);
        let key = match alg {
            Algorithm::HS256 => {
                let secret = settings
                    .jwt_secret
                    .as_ref()
                    .ok_or(AuthSetupError::NoSecret)?;
                DecodingKey::from_secret(secret.expose_secret().as_bytes())
            }
            _ => {
                let path = settings.jwt_public_key_file.clone().unwrap_or_default();
                let pem = std::fs::read(&path).map_err(|source| AuthSetupError::KeyFile {
                    path: path.display().to_string(),
                    source,
                })?;
                let parsed = if alg == Algorithm::RS256 {
                    DecodingKey::from_rsa_pem(&pem)
                } else {
                    DecodingKey::from_ec_pem(&pem)
                };
                parsed.map_err(|source| AuthSetupError::Key {
                    algorithm: settings.jwt_algorithm.clone(),
                    source,
                })?
            }
        };
        let mut validation = Validation::new(alg);
        validation.leeway = settings.jwt_leeway.as_secs();
        validation.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        match &settings.jwt_issuer {
            Some(issuer) => {
                validation.set_issuer(&[issuer]);
                required.push("iss");
            }
            None => validation.iss = None,
        }
        match &settings.jwt_audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        Ok(Self {
            key: Arc::new(key),
            validation: Arc::new(validation),
            max_lifetime: settings.jwt_max_lifetime,
        })
    }

    /// Verifies a bearer token and returns the caller.
    pub fn verify(&self, token: &str) -> Result<AuthUser, ApiError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(
            |error| {
                use jsonwebtoken::errors::ErrorKind;
                let reason = match error.kind() {
                    ErrorKind::ExpiredSignature => "the token has expired",
                    ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)",
                    ErrorKind::InvalidSignature => "the token signature is invalid",
                    ErrorKind::InvalidIssuer => "the token issuer is not accepted",
                    ErrorKind::InvalidAudience => "the token audience is not accepted",
                    ErrorKind::InvalidAlgorithm => "the token algorithm is not accepted",
                    ErrorKind::MissingRequiredClaim(_) => "the token lacks a required claim",
                    _ => "the token is malformed",
                };
                ApiError::Unauthorized(reason.to_owned())
            },
        )?;
        let claims = &data.claims;
        let start = claims
            .iat
            .unwrap_or_else(|| chrono::Utc::now().timestamp().max(0).unsigned_abs());
        if claims.exp.saturating_sub(start) > self.max_lifetime.as_secs() {
            return Err(ApiError::Unauthorized(format!(
                "the token is valid for longer than the {}s this API accepts (exp - iat)",
                self.max_lifetime.as_secs()
            )));
        }
        let user_id = Uuid::parse_str(&data.claims.sub)
            .map_err(|_| ApiError::Unauthorized("the token subject is not a UUID".into()))?;
        if !is_valid_email(&data.claims.email) {
            return Err(ApiError::Unauthorized(
                "the token email claim is not a valid address".into(),
            ));
        }
        Ok(AuthUser {
            user_id,
            email: data.claims.email,
        })
    }
}

/// A pragmatic address check (RFC 5321 lengths, one `@`, a dotted domain, no spaces or
/// control characters): strict enough to keep garbage out of the mail queue, lenient enough
/// for real addresses.
pub fn is_valid_email(address: &str) -> bool {
    if address.len() > 254 || address.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let Some((local, domain)) = address.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && local.len() <= 64
        && !local.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && domain
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

/// Signs an HS256 token for development and tests (`task-api token`).
pub fn issue_token(
    settings: &Settings,
    user_id: Uuid,
    email: &str,
    ttl: Duration,
) -> Result<String, AuthSetupError> {
    if settings.jwt_algorithm != "HS256" {
        return Err(AuthSetupError::NoSecret);
    }
    let secret = settings
        .jwt_secret
        .as_ref()
        .ok_or(AuthSetupError::NoSecret)?;
    if !is_valid_email(email) {
        return Err(AuthSetupError::Email(email.to_owned()));
    }
    if ttl > settings.jwt_max_lifetime {
        return Err(AuthSetupError::Lifetime {
            ttl,
            max: settings.jwt_max_lifetime,
        });
    }
    let now = chrono::Utc::now().timestamp().max(0).unsigned_abs();
    let claims = Claims {
        sub: user_id.to_string(),
        email: email.to_owned(),
        exp: now + ttl.as_secs(),
        iat: Some(now),
        nbf: None,
        iss: settings.jwt_issuer.clone(),
        aud: settings.jwt_audience.clone(),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.expose_secret().as_bytes()),
    )
    .map_err(AuthSetupError::Sign)
}

impl<S> FromRequestParts<S> for AuthUser
where
    S: Send + Sync,
    Authenticator: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(|| ApiError::Unauthorized("missing Authorization header".into()))?;
        let value = header
            .to_str()
            .map_err(|_| ApiError::Unauthorized("malformed Authorization header".into()))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::Unauthorized("expected `Authorization: Bearer <token>`".into())
            })?;
        Authenticator::from_ref(state).verify(token)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use service_kit::LayeredSettings as _;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn settings(extra: &[(&str, &str)]) -> Settings {
        let mut env = vec![("JWT_SECRET".to_string(), SECRET.to_string())];
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Settings::load_from(env).unwrap()
    }

    #[test]
    fn round_trip() {
        let s = settings(&[]);
        let user = Uuid::new_v4();
        let token = issue_token(&s, user, "a@example.com", Duration::from_secs(60)).unwrap();
        let auth = Authenticator::from_settings(&s).unwrap();
        let who = auth.verify(&token).unwrap();
        assert_eq!(who.user_id, user);
        assert_eq!(who.email, "a@example.com");
    }

    #[test]
    fn forged_and_garbage_tokens_are_rejected() {
        let s = settings(&[]);
        let other = settings(&[]);
        let mut other = other;
        other.jwt_secret = Some("ffffffffffffffffffffffffffffffffffff".to_string().into());
        let token = issue_token(
            &other,
            Uuid::new_v4(),
            "a@example.com",
            Duration::from_secs(60),
        )
        .unwrap();
        let auth = Authenticator::from_settings(&s).unwrap();
        assert!(
            matches!(auth.verify(&token), Err(ApiError::Unauthorized(m)) if m.contains("signature"))
        );
        assert!(auth.verify("not.a.token").is_err());
    }

    #[test]
    fn issuer_and_audience_are_enforced_when_configured() {
        let strict = settings(&[("JWT_ISSUER", "todo"), ("JWT_AUDIENCE", "task-api")]);
        let lax = settings(&[]);
        let token = issue_token(
            &lax,
            Uuid::new_v4(),
            "a@example.com",
            Duration::from_secs(60),
        )
        .unwrap();
        let auth = Authenticator::from_settings(&strict).unwrap();
        assert!(auth.verify(&token).is_err());
        let good = issue_token(
            &strict,
            Uuid::new_v4(),
            "a@example.com",
            Duration::from_secs(60),
        )
        .unwrap();
        assert!(auth.verify(&good).is_ok());
    }

    #[test]
    fn the_token_command_stays_within_the_maximum_lifetime() {
        let s = settings(&[("JWT_MAX_LIFETIME", "1h")]);
        let err = issue_token(
            &s,
            Uuid::new_v4(),
            "a@example.com",
            Duration::from_secs(7200),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("JWT_MAX_LIFETIME"), "{err}");
        assert!(
            issue_token(
                &s,
                Uuid::new_v4(),
                "a@example.com",
                Duration::from_secs(3600)
            )
            .is_ok()
        );
    }

    #[test]
    fn emails() {
        for ok in ["a@example.com", "first.last+tag@sub.example.org"] {
            assert!(is_valid_email(ok), "{ok}");
        }
        for bad in [
            "",
            "a",
            "a@",
            "@example.com",
            "a@b",
            "a b@example.com",
            "a@example..com",
            "a@@b.com",
        ] {
            assert!(!is_valid_email(bad), "{bad}");
        }
    }

    #[test]
    fn token_command_refuses_without_a_secret() {
        let mut s = settings(&[]);
        s.jwt_secret = None;
        assert!(matches!(
            issue_token(&s, Uuid::new_v4(), "a@example.com", Duration::from_secs(1)),
            Err(AuthSetupError::NoSecret)
        ));
    }
}
