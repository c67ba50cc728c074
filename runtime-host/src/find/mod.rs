//! The public availability page, `GET /find`: the lots near the visitor
//! (or all of them), free bays per vehicle class and bay category, open or
//! closed, how fresh, and a schematic of where the lots are. A static page
//! (no build step, nothing fetched from elsewhere) that reads only public
//! reads: `GET /api/v1/lots` (with `near=` when the browser shares its
//! position) and the gateway's `GET /find/stream` for live counts. Served by
//! `parkd up` (beside the operator page) and by `parkd gateway` (on a
//! cluster, behind the Ingress).

use bytes::Bytes;
use http::{Method, Response};

/// The page, compiled into parkd so it works with nothing installed.
const FIND_PAGE: &str = include_str!("find.html");

/// The page's path (a contract: signs and leaflets print it).
pub const PATH: &str = "/find";

/// Whether `path` is the page's.
pub fn owns(path: &str) -> bool {
    path == PATH
}

/// What the page may load: everything is inline and same-origin.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
     connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Answers a request for [`PATH`]: the page for GET and HEAD, 405 otherwise.
pub fn handle(method: &Method) -> Response<Bytes> {
    let headers = [("content-security-policy", CONTENT_SECURITY_POLICY), ("referrer-policy", "no-referrer")];
    crate::page::answer(method, PATH, FIND_PAGE, &headers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    #[test]
    fn only_find_is_the_page() {
        assert!(owns("/find"));
        for other in ["/", "/find/", "/find/stream", "/finder", "/api/v1/lots"] {
            assert!(!owns(other), "{other}");
        }
    }

    #[test]
    fn get_serves_the_page_and_writes_are_refused() {
        let page = handle(&Method::GET);
        assert_eq!(page.status(), StatusCode::OK);
        assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
        assert!(page.headers()["content-security-policy"].to_str().unwrap().contains("connect-src 'self'"));
        let html = std::str::from_utf8(page.body()).unwrap();
        // The reads it makes and the accessibility hooks the end-to-end test relies on.
        for needle in ["/api/v1/lots", "/find/stream", "aria-live=\"polite\"", "<main", "lang=\"en\""] {
            assert!(html.contains(needle), "the page lacks {needle}");
        }
        // Public page: it must never carry or ask for a credential.
        for banned in ["token", "Authorization", "https://"] {
            assert!(!html.contains(banned), "the page mentions {banned}");
        }
        assert_eq!(handle(&Method::HEAD).status(), StatusCode::OK);
        assert_eq!(handle(&Method::POST).status(), StatusCode::METHOD_NOT_ALLOWED);
    }
}
