//! The operator page, `GET /`: every lot's live counts per vehicle class and
//! zone with occupancy and the forecast free bays in an hour, a 24-hour
//! occupancy chart per class (the running hour counted so far), overstays
//! (with the admin token where one is configured) and sensor health. A static
//! page (no build step) that reads the query API from the browser, so it
//! needs nothing from the host but to be served.

use bytes::Bytes;
use http::{Method, Response};

/// The page, compiled into parkd so it works with nothing installed.
const OPERATOR_PAGE: &str = include_str!("operator.html");

/// The page's path.
pub const PATH: &str = "/";

/// Whether `path` is the operator page's.
pub fn owns(path: &str) -> bool {
    path == PATH
}

/// Answers a request for [`PATH`]: the page for GET and HEAD, 405 otherwise.
pub fn handle(method: &Method) -> Response<Bytes> {
    crate::page::answer(method, PATH, OPERATOR_PAGE, &[])
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    #[test]
    fn only_the_root_is_the_operator_page() {
        assert!(owns("/"));
        for other in ["", "/index.html", "/api/v1/lots", "/terminals/T1"] {
            assert!(!owns(other), "{other}");
        }
    }

    #[test]
    fn get_serves_the_page_and_writes_are_refused() {
        let page = handle(&Method::GET);
        assert_eq!(page.status(), StatusCode::OK);
        assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
        let html = std::str::from_utf8(page.body()).unwrap();
        // The APIs it reads and the regions the end-to-end test looks at.
        for needle in ["/api/v1/lots", "/availability", "/history?bucket=hour", "/api/v1/alerts", "aria-live"]
        {
            assert!(html.contains(needle), "the page lacks {needle}");
        }
        assert_eq!(handle(&Method::HEAD).status(), StatusCode::OK);
        let refused = handle(&Method::POST);
        assert_eq!(refused.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(refused.headers()["allow"], "GET, HEAD");
    }
}
