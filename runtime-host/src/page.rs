//! A page compiled into parkd (the operator page, the public availability
//! page): the page to GET and HEAD, never cached across upgrades; anything
//! else is refused with 405, since pages only read.

use bytes::Bytes;
use http::{Method, Response, StatusCode};

/// Answers `method` on the page at `path`, with the page's own `headers`.
pub fn answer(method: &Method, path: &str, html: &'static str, headers: &[(&str, &str)]) -> Response<Bytes> {
    if method != Method::GET && method != Method::HEAD {
        let body = serde_json::json!({ "error": format!("the page at {path} is read-only: use GET {path}") });
        return Response::builder()
            .status(StatusCode::METHOD_NOT_ALLOWED)
            .header("allow", "GET, HEAD")
            .header("content-type", "application/json")
            .body(Bytes::from(body.to_string()))
            .expect("valid response");
    }
    let mut response = Response::builder()
        .header("content-type", "text/html; charset=utf-8")
        // Always the page of the running parkd, never one cached across upgrades.
        .header("cache-control", "no-cache");
    for (name, value) in headers {
        response = response.header(*name, *value);
    }
    response.body(Bytes::from_static(html.as_bytes())).expect("valid response")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_get_the_page_with_its_headers_and_writes_are_refused_naming_the_path() {
        let page = answer(&Method::GET, "/p", "<html>", &[("referrer-policy", "no-referrer")]);
        assert_eq!((page.status(), page.body().as_ref()), (StatusCode::OK, b"<html>".as_ref()));
        assert_eq!(page.headers()["referrer-policy"], "no-referrer");
        assert_eq!(page.headers()["cache-control"], "no-cache");
        assert_eq!(answer(&Method::HEAD, "/p", "<html>", &[]).status(), StatusCode::OK);
        let refused = answer(&Method::DELETE, "/p", "<html>", &[]);
        assert_eq!(refused.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(refused.headers()["allow"], "GET, HEAD");
        assert!(std::str::from_utf8(refused.body()).unwrap().contains("use GET /p"));
    }
}
