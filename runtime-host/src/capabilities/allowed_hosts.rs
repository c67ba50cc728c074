//! `allowed_outbound_hosts`: which addresses a component may connect to.
//!
//! Every outbound capability (HTTP, PostgreSQL, later MQTT) asks the same
//! question before it connects, and refuses with an error that names the
//! address and the manifest line that would allow it, as Spin does.
//!
//! Entry syntax (Spin's): `scheme://host:port`, where scheme may be `*`, host
//! may be `*` or `*.example.com`, port may be `*`, a number or a range
//! `8000-8099`, and may be left out for schemes with a well-known port.

use std::fmt;

use anyhow::{Context, Result, bail};

#[derive(Debug, Clone, PartialEq, Eq)]
enum SchemePattern {
    Any,
    Exact(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Any,
    Exact(String),
    /// `*.example.com` matches `a.example.com` and `a.b.example.com`, not `example.com`.
    Subdomains(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PortPattern {
    Any,
    Range(u16, u16),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct AllowedHost {
    scheme: SchemePattern,
    host: HostPattern,
    port: PortPattern,
}

/// The parsed `allowed_outbound_hosts` of one component.
#[derive(Debug, Clone, Default)]
pub struct AllowedHosts {
    component: String,
    entries: Vec<AllowedHost>,
}

/// A refused connection: says what was refused and how to allow it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct NotAllowed {
    pub component: String,
    pub address: String,
    pub suggestion: String,
}

impl fmt::Display for NotAllowed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "component `{}` may not connect to {}: it is not in its allowed_outbound_hosts; \
             to allow it, add `allowed_outbound_hosts = [\"{}\"]` under [component.{}] in spin.toml",
            self.component, self.address, self.suggestion, self.component
        )
    }
}

/// The port a scheme uses when an address names none.
pub fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        "postgres" | "postgresql" => Some(5432),
        "mqtt" => Some(1883),
        "mqtts" => Some(8883),
        "redis" => Some(6379),
        "mysql" => Some(3306),
        _ => None,
    }
}

impl AllowedHosts {
    /// Parses a component's entries (already rendered: no `{{ }}` left).
    pub fn parse(component: &str, entries: &[String]) -> Result<Self> {
        let entries = entries
            .iter()
            .map(|e| {
                parse_entry(e)
                    .with_context(|| format!("component `{component}`: allowed_outbound_hosts entry {e:?}"))
            })
            .collect::<Result<_>>()?;
        Ok(Self { component: component.to_owned(), entries })
    }

    /// Checks `scheme://host:port`; `port` defaults by scheme.
    pub fn check(&self, scheme: &str, host: &str, port: Option<u16>) -> Result<(), NotAllowed> {
        let scheme = scheme.to_ascii_lowercase();
        let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        let port = port.or_else(|| default_port(&scheme));
        let allowed = self.entries.iter().any(|e| {
            let scheme_ok = match &e.scheme {
                SchemePattern::Any => true,
                SchemePattern::Exact(s) => *s == scheme,
            };
            let host_ok = match &e.host {
                HostPattern::Any => true,
                HostPattern::Exact(h) => *h == host,
                HostPattern::Subdomains(suffix) => {
                    host.len() > suffix.len() + 1
                        && host.ends_with(suffix.as_str())
                        && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
                }
            };
            let port_ok = match (&e.port, port) {
                (PortPattern::Any, _) => true,
                (PortPattern::Range(lo, hi), Some(p)) => (*lo..=*hi).contains(&p),
                (PortPattern::Range(..), None) => false,
            };
            scheme_ok && host_ok && port_ok
        });
        if allowed {
            return Ok(());
        }
        let hostport = match port {
            Some(p) if host.contains(':') => format!("[{host}]:{p}"),
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        let address = format!("{scheme}://{hostport}");
        Err(NotAllowed { component: self.component.clone(), suggestion: address.clone(), address })
    }

    /// Checks a URL such as `postgres://user@db:5432/parking` or `https://example.com/x`.
    pub fn check_url(&self, url: &str) -> Result<(), NotAllowed> {
        match url::Url::parse(url) {
            Ok(parsed) => {
                let host = parsed.host_str().unwrap_or_default();
                self.check(parsed.scheme(), host, parsed.port())
            }
            Err(_) => Err(NotAllowed {
                component: self.component.clone(),
                address: format!("{:?} (not a valid URL)", crate::credentials::redact_url(url)),
                suggestion: "scheme://host:port".into(),
            }),
        }
    }
}

fn parse_entry(entry: &str) -> Result<AllowedHost> {
    let Some((scheme, rest)) = entry.split_once("://") else {
        bail!("expected scheme://host[:port], e.g. \"postgres://127.0.0.1:5432\"");
    };
    if scheme.is_empty() || rest.is_empty() {
        bail!("expected scheme://host[:port]");
    }
    let rest = rest.trim_end_matches('/');
    if rest.contains('/') {
        bail!("paths are not allowed: name only the scheme, host and port");
    }
    let scheme_pattern =
        if scheme == "*" { SchemePattern::Any } else { SchemePattern::Exact(scheme.to_ascii_lowercase()) };
    // An IPv6 literal is bracketed: split the port off after the bracket.
    let (host, port) = if let Some(stripped) = rest.strip_prefix('[') {
        let (h, after) = stripped.split_once(']').context("unclosed '[' in an IPv6 address")?;
        (h.to_owned(), after.strip_prefix(':'))
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (rest.to_owned(), None),
        }
    };
    let host = host.to_ascii_lowercase();
    let host_pattern = if host == "*" {
        HostPattern::Any
    } else if let Some(suffix) = host.strip_prefix("*.") {
        HostPattern::Subdomains(suffix.to_owned())
    } else if host.contains('*') {
        bail!("a host wildcard must be `*` or lead the name, as in `*.example.com`");
    } else {
        HostPattern::Exact(host)
    };
    let port_pattern = match port {
        Some("*") => PortPattern::Any,
        Some(p) => match p.split_once('-') {
            Some((lo, hi)) => {
                let (lo, hi): (u16, u16) = (lo.parse()?, hi.parse()?);
                if lo > hi {
                    bail!("port range {lo}-{hi} is empty");
                }
                PortPattern::Range(lo, hi)
            }
            None => {
                let p: u16 = p.parse().with_context(|| format!("{p:?} is not a port"))?;
                PortPattern::Range(p, p)
            }
        },
        None => match &scheme_pattern {
            SchemePattern::Exact(s) => match default_port(s) {
                Some(p) => PortPattern::Range(p, p),
                None => bail!("scheme {s} has no well-known port: add one, or `:*`"),
            },
            SchemePattern::Any => bail!("`*://` needs an explicit port, or `:*`"),
        },
    };
    Ok(AllowedHost { scheme: scheme_pattern, host: host_pattern, port: port_pattern })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(entries: &[&str]) -> AllowedHosts {
        AllowedHosts::parse("sensor-event", &entries.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap()
    }

    #[test]
    fn exact_entries_match_only_their_address() {
        let h = hosts(&["postgres://127.0.0.1:5432"]);
        assert!(h.check_url("postgres://parking@127.0.0.1:5432/parking").is_ok());
        assert!(h.check_url("postgres://parking@127.0.0.1/parking").is_ok(), "default port 5432");
        assert!(h.check_url("postgres://parking@127.0.0.1:5433/parking").is_err());
        assert!(h.check_url("postgres://parking@10.0.0.1:5432/parking").is_err());
        assert!(h.check_url("https://127.0.0.1:5432/").is_err(), "scheme must match");
    }

    #[test]
    fn wildcards_for_scheme_host_and_port() {
        let h = hosts(&["postgres://localhost:*", "https://*.example.com", "*://10.0.0.1:8000-8099"]);
        assert!(h.check("postgres", "localhost", Some(41234)).is_ok());
        assert!(h.check("https", "api.example.com", None).is_ok());
        assert!(h.check("https", "a.b.example.com", Some(443)).is_ok());
        assert!(h.check("https", "example.com", None).is_err(), "the bare domain is not a subdomain");
        assert!(h.check("https", "badexample.com", None).is_err());
        assert!(h.check("http", "10.0.0.1", Some(8042)).is_ok());
        assert!(h.check("http", "10.0.0.1", Some(8100)).is_err());
    }

    #[test]
    fn refusal_names_the_address_and_the_line_to_add() {
        let err = hosts(&[]).check_url("postgres://u:secret@db.internal:6543/parking").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("postgres://db.internal:6543"), "{msg}");
        assert!(msg.contains("allowed_outbound_hosts = [\"postgres://db.internal:6543\"]"), "{msg}");
        assert!(msg.contains("[component.sensor-event]"), "{msg}");
        assert!(!msg.contains("secret"), "credentials never appear in errors: {msg}");
    }

    #[test]
    fn bad_entries_are_rejected_at_load() {
        for bad in ["127.0.0.1:5432", "postgres://", "foo://host", "http://h/path", "http://ho*st", "*://h"] {
            let err = AllowedHosts::parse("c", &[bad.to_string()]);
            assert!(err.is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn ipv6_literals() {
        let h = hosts(&["http://[::1]:3000"]);
        assert!(h.check_url("http://[::1]:3000/x").is_ok());
        assert!(h.check_url("http://[::1]:3001/x").is_err());
    }
}
