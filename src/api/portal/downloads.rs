//! The loader download.

use poem::Body;
use poem_openapi::ApiResponse;
use poem_openapi::payload::Binary;

use crate::api::shared::body::bundle_body;
use crate::service::portal::LoaderDownload;

/// The path of the portal's own loader download.
pub const LOADER_PATH: &str = "/api/portal/loader";

#[derive(ApiResponse)]
pub enum PortalLoaderResponse {
    /// The loader: the bundle of the project's newest published stable release, or the file of
    /// it that was chosen.
    #[oai(status = 200)]
    Ok(
        Binary<Body>,
        /// Bytes.
        #[oai(header = "Content-Length")]
        u64,
        /// Hex SHA-256 of the file sent.
        #[oai(header = "X-Bundle-SHA256")]
        String,
        /// Ed25519 over the exact bytes sent, base64.
        #[oai(header = "X-Bundle-Signature")]
        String,
        /// The kid of the project key that made `X-Bundle-Signature`.
        #[oai(header = "X-Keyward-Key-Id")]
        String,
        /// `attachment; filename="…"`.
        #[oai(header = "Content-Disposition")]
        String,
    ),
}

impl PortalLoaderResponse {
    pub fn new(download: LoaderDownload) -> Self {
        let bundle = download.bundle;
        Self::Ok(
            Binary(bundle_body(download.file)),
            bundle.size,
            bundle.sha256,
            bundle.signature,
            bundle.signature_kid,
            format!("attachment; filename=\"{}\"", bundle.filename),
        )
    }
}
