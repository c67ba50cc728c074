//! The application's credentials as parkd itself checks them: the admin
//! token (`/metrics`), the ingest token (the events route, and what parkd's
//! own in-process deliveries carry), the refusal to listen beyond loopback
//! without them, and URLs with their passwords taken out for logs.

use std::net::SocketAddr;

use anyhow::{Result, bail};
use subtle::ConstantTimeEq;

pub use parking_domain::Credential;

/// The configured tokens (an empty variable is no token).
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    pub admin: Option<String>,
    pub ingest: Option<String>,
}

impl Credentials {
    /// From the resolved application variables.
    pub fn from_variables(variables: &std::collections::BTreeMap<String, String>) -> Self {
        let token = |c: Credential| variables.get(c.variable()).filter(|t| !t.is_empty()).cloned();
        Self { admin: token(Credential::Admin), ingest: token(Credential::Ingest) }
    }

    pub fn get(&self, credential: Credential) -> Option<&str> {
        match credential {
            Credential::Admin => self.admin.as_deref(),
            Credential::Ingest => self.ingest.as_deref(),
        }
    }

    /// Whether a request with these headers may use a route needing `credential`
    /// (always, when that token is not configured).
    pub fn allows(&self, headers: &http::HeaderMap, credential: Credential) -> bool {
        let Some(expected) = self.get(credential) else { return true };
        let presented = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        presented.is_some_and(|p| p.trim().as_bytes().ct_eq(expected.as_bytes()).into())
    }

    /// The `Authorization` header parkd's own deliveries carry, if a token is set.
    pub fn authorization(&self, credential: Credential) -> Option<http::HeaderValue> {
        let mut value = http::HeaderValue::try_from(format!("Bearer {}", self.get(credential)?)).ok()?;
        value.set_sensitive(true);
        Some(value)
    }
}

/// Refuses to serve beyond loopback while a credential the served components
/// use (`needed`) is not configured, unless `insecure` says to.
pub fn check_exposure(
    listen: SocketAddr,
    needed: &[Credential],
    credentials: &Credentials,
    insecure: bool,
) -> Result<()> {
    if listen.ip().is_loopback() {
        return Ok(());
    }
    let missing: Vec<Credential> = needed.iter().copied().filter(|c| credentials.get(*c).is_none()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let names =
        missing.iter().map(|c| format!("{} (`{}`)", c.environment(), c.variable())).collect::<Vec<_>>();
    if insecure {
        tracing::warn!(
            %listen,
            unset = %names.join(", "),
            "--insecure: serving routes without their credentials beyond loopback"
        );
        return Ok(());
    }
    bail!(
        "refusing to listen on {listen} (not loopback) with no token set for {}: set {}, listen on \
         127.0.0.1, or pass --insecure (PARKD_INSECURE=true) if the network alone guards these routes",
        names.join(" and "),
        missing.iter().map(|c| c.environment()).collect::<Vec<_>>().join(" and ")
    )
}

/// A URL as it may be logged: any password replaced by `***`. Text that is
/// not a URL is reduced to what precedes a userinfo (`user:pass@`), if any.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            parsed.to_string()
        }
        Err(_) => match url.rsplit_once('@') {
            Some((_, host)) => format!("***@{host}"),
            None => url.to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials() -> Credentials {
        Credentials { admin: Some("a".into()), ingest: None }
    }

    #[test]
    fn loopback_needs_no_token_and_other_addresses_name_the_missing_one() {
        let none = Credentials::default();
        assert!(check_exposure("127.0.0.1:3000".parse().unwrap(), &Credential::ALL, &none, false).is_ok());
        let refused =
            check_exposure("0.0.0.0:3000".parse().unwrap(), &Credential::ALL, &credentials(), false)
                .unwrap_err()
                .to_string();
        assert!(
            refused.contains("PARKING_INGEST_TOKEN") && !refused.contains("PARKING_ADMIN_TOKEN"),
            "{refused}"
        );
        assert!(refused.contains("--insecure"), "{refused}");
        assert!(check_exposure("0.0.0.0:3000".parse().unwrap(), &Credential::ALL, &none, true).is_ok());
        assert!(
            check_exposure("0.0.0.0:3000".parse().unwrap(), &[Credential::Admin], &credentials(), false)
                .is_ok()
        );
    }

    #[test]
    fn tokens_are_checked_only_when_set() {
        let mut headers = http::HeaderMap::new();
        assert!(!credentials().allows(&headers, Credential::Admin));
        assert!(credentials().allows(&headers, Credential::Ingest));
        headers.insert("authorization", "Bearer b".parse().unwrap());
        assert!(!credentials().allows(&headers, Credential::Admin));
        headers.insert("authorization", "Bearer a".parse().unwrap());
        assert!(credentials().allows(&headers, Credential::Admin));
    }

    #[test]
    fn passwords_never_reach_a_log_line() {
        assert_eq!(redact_url("mqtt://bridge:s3cret@broker:1883"), "mqtt://bridge:***@broker:1883");
        assert_eq!(redact_url("http://user:pw@sink/x"), "http://user:***@sink/x");
        assert_eq!(redact_url("http://sink/x"), "http://sink/x");
        assert!(!redact_url("mqtt//u:s3cret@host").contains("s3cret"));
    }
}
