//! A JSON body extractor whose every rejection is a problem document naming what was wrong:
//! wrong media type (415), body over the limit (413), syntax error (400 `malformed-json`),
//! unknown or mistyped field (400 `validation-error` naming the field by its JSON path).

use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON request body, deserialised with field paths in the errors.
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

/// The limit used in error messages; the real limit is axum's `DefaultBodyLimit` layer.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !is_json(content_type) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let limit = req
            .extensions()
            .get::<BodyLimit>()
            .map_or(0, |limit| limit.0);
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge(limit)
            } else {
                ApiError::MalformedJson {
                    detail: format!("cannot read the request body: {rejection}"),
                    field: None,
                }
            }
        })?;
        parse(&bytes).map(ApiJson)
    }
}

/// Deserialises `bytes`, mapping errors to problems that name the field.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(classify)?;
    deserializer
        .end()
        .map_err(|error| ApiError::MalformedJson {
            detail: error.to_string(),
            field: None,
        })?;
    Ok(value)
}

fn classify(error: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = error.path().to_string();
    let inner = error.into_inner();
    match inner.classify() {
        serde_json::error::Category::Data => {
            let message = inner.to_string();
            // serde reports an unknown field at its parent's path; name the field itself.
            let field = unknown_field(&message)
                .map(|name| {
                    if path == name || path.ends_with(&format!(".{name}")) {
                        path.clone()
                    } else {
                        join(&path, &name)
                    }
                })
                .unwrap_or_else(|| if path == "." { "body".to_owned() } else { path });
            ApiError::field(field, strip_position(&message))
        }
        _ => ApiError::MalformedJson {
            detail: inner.to_string(),
            field: (path != ".").then_some(path),
        },
    }
}

fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next().map(str::to_owned)
}

fn join(parent: &str, name: &str) -> String {
    if parent == "." || parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}.{name}")
    }
}

fn strip_position(message: &str) -> String {
    match message.find(" at line ") {
        Some(index) => message[..index].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        title: String,
        count: Option<u32>,
    }

    fn field_of(error: ApiError) -> String {
        match error {
            ApiError::Validation(errors) => errors[0].field.clone(),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn unknown_fields_are_named() {
        let error = parse::<Body>(br#"{"title":"x","colour":"red"}"#).unwrap_err();
        assert_eq!(field_of(error), "colour");
    }

    #[test]
    fn wrong_types_are_named() {
        let error = parse::<Body>(br#"{"title":"x","count":"many"}"#).unwrap_err();
        assert_eq!(field_of(error), "count");
        let error = parse::<Body>(br#"{}"#).unwrap_err();
        assert!(matches!(error, ApiError::Validation(ref e) if e[0].message.contains("title")));
    }

    #[test]
    fn syntax_errors_are_malformed_json() {
        assert!(matches!(
            parse::<Body>(br#"{"title": "#),
            Err(ApiError::MalformedJson { .. })
        ));
        assert!(matches!(
            parse::<Body>(br#"{"title":"x"} trailing"#),
            Err(ApiError::MalformedJson { .. })
        ));
    }

    #[test]
    fn media_types() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(is_json("application/merge-patch+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json(""));
    }
}
