//! Bearer credentials: the admin token for provisioning (and reads that show
//! sensors), the ingest token for the event routes.
//!
//! A credential that is configured (its variable is not empty) must be
//! presented as `Authorization: Bearer <token>`; a variable that cannot be
//! read refuses the request (fails closed) instead of meaning "no token".
//! Tokens are compared in constant time.

use http::StatusCode;
use subtle::ConstantTimeEq;

use crate::respond::ApiError;

/// A credential a route may need (the variable that configures it is
/// [`Credential::variable`]).
pub use parking_domain::Credential;

/// Refuses `req` unless it carries `credential` (when one is configured).
pub fn require<B>(req: &http::Request<B>, credential: Credential) -> Result<(), ApiError> {
    let expected = spin_sdk::variables::get(credential.variable()).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "cannot read the `{}` variable ({e}), so the request is refused: declare it for this \
                 component in spin.toml",
                credential.variable()
            ),
        )
    })?;
    let presented = req.headers().get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    check(presented, &expected, credential)
}

/// The decision of [`require`], given the configured token (empty: none).
pub fn check(authorization: Option<&str>, expected: &str, credential: Credential) -> Result<(), ApiError> {
    if expected.is_empty() || bearer_matches(authorization, expected) {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::UNAUTHORIZED,
        format!(
            "this request needs `Authorization: Bearer <token>` with the configured {} ({})",
            credential.variable(),
            credential.environment()
        ),
    ))
}

/// Compares a presented `Bearer` token with the configured one in constant time.
pub fn bearer_matches(authorization: Option<&str>, expected: &str) -> bool {
    let Some(presented) = authorization.and_then(|h| h.strip_prefix("Bearer ")) else {
        return false;
    };
    presented.trim().as_bytes().ct_eq(expected.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_must_match_exactly() {
        assert!(bearer_matches(Some("Bearer s3cret"), "s3cret"));
        assert!(!bearer_matches(Some("Bearer s3cre"), "s3cret"));
        assert!(!bearer_matches(Some("Bearer s3crets"), "s3cret"));
        assert!(!bearer_matches(Some("Basic s3cret"), "s3cret"));
        assert!(!bearer_matches(None, "s3cret"));
    }

    #[test]
    fn an_empty_token_means_none_is_configured() {
        assert!(check(None, "", Credential::Ingest).is_ok());
        let refused = check(Some("Bearer other"), "t", Credential::Ingest).unwrap_err();
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
        assert!(refused.message.contains("PARKING_INGEST_TOKEN"), "{}", refused.message);
        assert!(check(Some("Bearer t"), "t", Credential::Ingest).is_ok());
    }
}
