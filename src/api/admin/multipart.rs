//! Multipart bodies of the admin face: a release's bundle and an artifact's file stream to
//! disk after authentication, their text fields are read with a size bound each.

use std::marker::PhantomData;

use poem::web::Multipart;
use poem::{FromRequest, IntoResponse, Request, RequestBody};
use poem_openapi::payload::Payload;
use poem_openapi::registry::{MetaMediaType, MetaRequest, Registry};
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};
use tokio::io::AsyncReadExt;

use crate::api::shared::keyvault_error::KvError;
use crate::domain::releases;
use crate::error::Error;

/// A multipart body documented as `F` but handed to the handler unparsed, so the bundle
/// streams to disk after authentication instead of being buffered whole in a temp file.
pub struct BundleUpload<F> {
    pub form: Multipart,
    _doc: PhantomData<F>,
}

impl<'a, F: Payload> ApiExtractor<'a> for BundleUpload<F> {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        F::register(registry);
    }

    fn request_meta() -> Option<MetaRequest> {
        Some(MetaRequest {
            description: None,
            content: vec![MetaMediaType {
                content_type: "multipart/form-data",
                schema: F::schema_ref(),
            }],
            required: true,
        })
    }

    async fn from_request(
        req: &'a Request,
        body: &mut RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        let multipart = req.content_type().is_some_and(|t| {
            t.trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/form-data")
        });
        if !multipart {
            return Err(poem::Error::from_response(
                KvError::from_status(
                    poem::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "Unsupported media type: send the file as multipart/form-data".into(),
                )
                .into_response(),
            ));
        }
        let form = <Multipart as FromRequest>::from_request(req, body)
            .await
            .map_err(|e| {
                poem::Error::from_response(
                    KvError::from_error(&Error::Invalid(format!("malformed multipart body: {e}")))
                        .into_response(),
                )
            })?;
        Ok(Self {
            form,
            _doc: PhantomData,
        })
    }
}

pub fn rollout_field(text: &str) -> Result<u8, Error> {
    let value = text.trim().parse::<i64>().map_err(|_| {
        Error::Invalid("rolloutPercentage must be a whole number from 0 to 100".into())
    })?;
    releases::parse_rollout_percentage("rolloutPercentage", value)
}

pub async fn next_field(form: &mut Multipart) -> Result<Option<poem::web::Field>, Error> {
    form.next_field()
        .await
        .map_err(|e| Error::Invalid(format!("malformed multipart body: {e}")))
}

pub async fn text_field(field: poem::web::Field, name: &str, max: usize) -> Result<String, Error> {
    let mut bytes = Vec::new();
    field
        .into_async_read()
        .take(max as u64 + 1)
        .read_to_end(&mut bytes)
        .await
        .map_err(|e| Error::Invalid(format!("malformed multipart body: {e}")))?;
    if bytes.len() > max {
        return Err(Error::Invalid(format!(
            "{name} must be at most {max} bytes"
        )));
    }
    String::from_utf8(bytes).map_err(|_| Error::Invalid(format!("{name} must be UTF-8 text")))
}

pub async fn bool_field(field: poem::web::Field, name: &str) -> Result<bool, Error> {
    match text_field(field, name, 8).await?.trim() {
        "true" | "1" | "on" => Ok(true),
        "false" | "0" | "off" | "" => Ok(false),
        _ => Err(Error::Invalid(format!("{name} must be true or false"))),
    }
}

pub fn unknown_field(name: &str, expected: &str) -> Error {
    if name.is_empty() {
        return Error::Invalid(format!("a form field has no name; expected {expected}"));
    }
    let shown: String = name.chars().take(40).collect();
    Error::Invalid(format!("unknown form field `{shown}`; expected {expected}"))
}
