//! Spin's HTTP routing rules: which component answers a path.
//!
//! Routes are exact (`/api/v1/lots`), single-segment wildcards
//! (`/api/v1/lots/:lot`) or trailing wildcards (`/api/v1/lots/...`). An
//! exact route wins over a wildcard, a single-segment wildcard over a
//! trailing one, and a longer route over a shorter one.

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param,
}

#[derive(Debug, Clone)]
struct Route {
    segments: Vec<Segment>,
    trailing: bool,
    component: String,
}

#[derive(Debug, Clone, Default)]
pub struct Router {
    routes: Vec<Route>,
}

/// How well a route matched, ordered so that the best match compares greatest.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Rank {
    exact: bool,
    no_trailing: bool,
    literal_segments: usize,
    length: usize,
}

impl Router {
    pub fn add(&mut self, route: &str, component: &str) -> anyhow::Result<()> {
        let trimmed = route.trim_end_matches('/');
        let (body, trailing) = match trimmed.strip_suffix("/...") {
            Some(body) => (body, true),
            None if trimmed == "..." || route == "/..." => ("", true),
            None => (trimmed, false),
        };
        let segments = body
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| if s.starts_with(':') { Segment::Param } else { Segment::Literal(s.to_owned()) })
            .collect::<Vec<_>>();
        if segments.iter().any(|s| matches!(s, Segment::Literal(l) if l.contains("..."))) {
            anyhow::bail!("route {route:?}: `...` may only end a route, as in \"/api/...\"");
        }
        self.routes.push(Route { segments, trailing, component: component.to_owned() });
        Ok(())
    }

    /// The component for `path` (without the query), if any route matches.
    pub fn find(&self, path: &str) -> Option<&str> {
        let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        self.routes
            .iter()
            .filter_map(|r| {
                let head_matches = if r.trailing {
                    parts.len() >= r.segments.len()
                } else {
                    parts.len() == r.segments.len()
                };
                let matches = head_matches
                    && r.segments.iter().zip(&parts).all(|(s, p)| match s {
                        Segment::Literal(l) => l == p,
                        Segment::Param => true,
                    });
                matches.then(|| {
                    let literal_segments =
                        r.segments.iter().filter(|s| matches!(s, Segment::Literal(_))).count();
                    let rank = Rank {
                        exact: !r.trailing && literal_segments == r.segments.len(),
                        no_trailing: !r.trailing,
                        literal_segments,
                        length: r.segments.len(),
                    };
                    (rank, r.component.as_str())
                })
            })
            .max_by(|a, b| a.0.cmp(&b.0))
            .map(|(_, c)| c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router {
        let mut r = Router::default();
        r.add("/api/v1/events", "sensor-event").unwrap();
        r.add("/api/v1/lots", "availability-query").unwrap();
        r.add("/api/v1/lots/...", "availability-query").unwrap();
        r.add("/api/v1/lots/:lot", "lot-admin").unwrap();
        r
    }

    #[test]
    fn exact_beats_param_beats_trailing() {
        let r = router();
        assert_eq!(r.find("/api/v1/lots"), Some("availability-query"));
        assert_eq!(r.find("/api/v1/lots/L1"), Some("lot-admin"));
        assert_eq!(r.find("/api/v1/lots/L1/"), Some("lot-admin"));
        assert_eq!(r.find("/api/v1/lots/L1/availability"), Some("availability-query"));
        assert_eq!(r.find("/api/v1/events"), Some("sensor-event"));
        assert_eq!(r.find("/api/v1/events/x"), None);
        assert_eq!(r.find("/"), None);
    }

    #[test]
    fn a_catch_all_takes_what_nothing_else_does() {
        let mut r = router();
        r.add("/...", "fallback").unwrap();
        assert_eq!(r.find("/anything/else"), Some("fallback"));
        assert_eq!(r.find("/"), Some("fallback"));
        assert_eq!(r.find("/api/v1/lots"), Some("availability-query"));
    }

    #[test]
    fn longer_trailing_routes_win() {
        let mut r = Router::default();
        r.add("/a/...", "short").unwrap();
        r.add("/a/b/...", "long").unwrap();
        assert_eq!(r.find("/a/b/c"), Some("long"));
        assert_eq!(r.find("/a/c"), Some("short"));
    }

    #[test]
    fn misplaced_wildcards_are_rejected() {
        assert!(Router::default().add("/a/.../b", "x").is_err());
    }
}
