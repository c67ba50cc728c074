//! JSON answers, and which status code each failure is.
//!
//! The status decides what Knative does with an event: 4xx is final (the
//! event goes to the dead-letter sink), 5xx and 429 are retried with backoff.

use http::{Response, StatusCode};
use serde::Serialize;

use crate::db::DbError;

/// A failed request: the status and a reason a person can act on.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    pub fn method_not_allowed(method: &http::Method, path: &str, allowed: &str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not supported on {path}; use {allowed}"),
        )
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        let status = match &e {
            DbError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            DbError::Conflict(_) => StatusCode::CONFLICT,
            DbError::Config(_) | DbError::Query(_) | DbError::Decode(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, e.to_string())
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

/// A JSON body with the given status.
pub fn json<T: Serialize>(status: StatusCode, body: &T) -> Response<Vec<u8>> {
    match serde_json::to_vec(body) {
        Ok(bytes) => Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(bytes)
            .expect("static response parts are valid"),
        Err(e) => error(&ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("could not encode the answer: {e}"),
        )),
    }
}

/// `{"error": "..."}` with the error's status; 503 also says when to retry.
pub fn error(e: &ApiError) -> Response<Vec<u8>> {
    let body = serde_json::to_vec(&ErrorBody { error: &e.message }).unwrap_or_default();
    let mut builder = Response::builder().status(e.status).header("content-type", "application/json");
    if e.status == StatusCode::SERVICE_UNAVAILABLE {
        builder = builder.header("retry-after", "1");
    }
    builder.body(body).expect("static response parts are valid")
}

/// Turns a handler's result into the response the component returns.
pub fn finish(result: Result<Response<Vec<u8>>, ApiError>) -> Response<Vec<u8>> {
    result.unwrap_or_else(|e| error(&e))
}

/// Splits a request path into its segments, ignoring the query and empty segments.
pub fn segments(path: &str) -> Vec<&str> {
    let path = path.split('?').next().unwrap_or_default();
    path.split('/').filter(|s| !s.is_empty()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_failures_map_to_retryable_or_final_statuses() {
        let unavailable: ApiError = DbError::Unavailable("connection refused".into()).into();
        assert_eq!(unavailable.status, StatusCode::SERVICE_UNAVAILABLE);
        let conflict: ApiError = DbError::Conflict("sensor".into()).into();
        assert_eq!(conflict.status, StatusCode::CONFLICT);
        let resp = error(&unavailable);
        assert_eq!(resp.headers()["retry-after"], "1");
        let body: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
        assert!(body["error"].as_str().unwrap().contains("connection refused"));
    }

    #[test]
    fn segments_ignore_query_and_slashes() {
        assert_eq!(segments("/api/v1/lots/L1/availability?x=1"), ["api", "v1", "lots", "L1", "availability"]);
        assert_eq!(segments("/api/v1/lots/"), ["api", "v1", "lots"]);
    }
}
