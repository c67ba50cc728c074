//! Answers of the public, cacheable reads (the open-data feeds, NGSI-LD,
//! the nearest lots): CORS for any origin, an `ETag` from the body with
//! `If-None-Match` answered 304, `Last-Modified`, and a `Cache-Control`
//! max-age as long as the data may be reused. Errors carry CORS too, so a
//! browser app can read why.

use chrono::{DateTime, Utc};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use parking_domain::feeds::{FEED_MAX_AGE_SECONDS, entity_tag, http_date, none_match};

const ALLOW_METHODS: &str = "GET, HEAD, OPTIONS";
const ALLOW_HEADERS: &str = "If-None-Match, If-Modified-Since";
const EXPOSE_HEADERS: &str = "ETag, Last-Modified";

/// Adds the CORS headers every public answer carries.
pub fn with_cors(mut response: Response<Vec<u8>>) -> Response<Vec<u8>> {
    let headers = response.headers_mut();
    headers.insert("access-control-allow-origin", HeaderValue::from_static("*"));
    headers.insert("access-control-expose-headers", HeaderValue::from_static(EXPOSE_HEADERS));
    response
}

/// The answer to a CORS preflight (`OPTIONS`): 204 allowing GET and the
/// conditional headers from any origin, cached by the browser for a day.
pub fn preflight() -> Response<Vec<u8>> {
    let response = Response::builder()
        .status(StatusCode::NO_CONTENT)
        .header("access-control-allow-methods", ALLOW_METHODS)
        .header("access-control-allow-headers", ALLOW_HEADERS)
        .header("access-control-max-age", "86400")
        .body(Vec::new())
        .expect("static response parts are valid");
    with_cors(response)
}

/// A cacheable answer: `body` (already a response) gets its `ETag`,
/// `Last-Modified` (when known), `Cache-Control` and CORS headers; when the
/// request's `If-None-Match` holds the same tag, a bodiless 304 instead.
pub fn cacheable(
    req: &Request<Vec<u8>>,
    mut response: Response<Vec<u8>>,
    modified: Option<DateTime<Utc>>,
) -> Response<Vec<u8>> {
    let etag = entity_tag(response.body());
    let matches = req
        .headers()
        .get(http::header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| none_match(v, &etag));
    if matches {
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response.body_mut().clear();
        response.headers_mut().remove(http::header::CONTENT_TYPE);
    }
    if req.method() == Method::HEAD {
        response.body_mut().clear();
    }
    let headers = response.headers_mut();
    if let Ok(tag) = HeaderValue::from_str(&etag) {
        headers.insert(http::header::ETAG, tag);
    }
    if let Some(date) = modified.and_then(|t| HeaderValue::from_str(&http_date(t)).ok()) {
        headers.insert(http::header::LAST_MODIFIED, date);
    }
    let cache = format!("public, max-age={FEED_MAX_AGE_SECONDS}");
    headers.insert(http::header::CACHE_CONTROL, HeaderValue::from_str(&cache).expect("ASCII"));
    headers.insert(http::header::VARY, HeaderValue::from_static("Origin"));
    with_cors(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(if_none_match: Option<&str>) -> Request<Vec<u8>> {
        let mut b = Request::builder().uri("/api/v1/feeds/x");
        if let Some(tag) = if_none_match {
            b = b.header("if-none-match", tag);
        }
        b.body(Vec::new()).unwrap()
    }

    fn ok() -> Response<Vec<u8>> {
        crate::respond::json(StatusCode::OK, &serde_json::json!({"a": 1}))
    }

    #[test]
    fn tags_bodies_and_answers_304_for_the_same_tag() {
        let first = cacheable(&get(None), ok(), None);
        assert_eq!(first.status(), StatusCode::OK);
        let tag = first.headers()["etag"].to_str().unwrap().to_owned();
        assert_eq!(first.headers()["access-control-allow-origin"], "*");
        assert_eq!(first.headers()["cache-control"], "public, max-age=30");
        assert!(first.headers().get("last-modified").is_none());
        let again = cacheable(&get(Some(&tag)), ok(), None);
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert!(again.body().is_empty());
        assert_eq!(again.headers()["etag"], tag.as_str());
        let other = cacheable(&get(Some("\"other\"")), ok(), None);
        assert_eq!(other.status(), StatusCode::OK);
    }

    #[test]
    fn preflight_allows_get_from_anywhere() {
        let r = preflight();
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
        assert_eq!(r.headers()["access-control-allow-origin"], "*");
        assert!(r.headers()["access-control-allow-methods"].to_str().unwrap().contains("GET"));
    }
}
