//! `/api/projects/{id}/mail-templates`: a project's message templates (overrides of the
//! embedded defaults) and their preview.

use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::AdminTags;
use super::auth::AdminAuth;
use crate::api::shared::fields::named;
use crate::api::shared::keyvault_error::KvResult;
use crate::domain::mail::MailKind;
use crate::domain::mail::templates::Override;
use crate::service::mail::templates;
use crate::state::AppState;

pub struct MailTemplatesApi {
    pub state: AppState,
}

crate::field_names!(
    SubjectField = "subject",
    TextField = "text",
    HtmlField = "html",
);

#[derive(Object, Debug)]
#[oai(rename_all = "camelCase")]
pub struct MailTemplateRequest {
    /// One line; null, absent or blank: the default.
    #[oai(
        nullable,
        deserialize_with = "named::<SubjectField, _>",
        validator(max_length = 200)
    )]
    pub subject: Option<String>,
    /// The plain-text body; null, absent or blank: the default.
    #[oai(
        nullable,
        deserialize_with = "named::<TextField, _>",
        validator(max_length = 20000)
    )]
    pub text: Option<String>,
    /// The HTML body (placeholders are HTML-escaped); null, absent or blank: the default.
    #[oai(
        nullable,
        deserialize_with = "named::<HtmlField, _>",
        validator(max_length = 20000)
    )]
    pub html: Option<String>,
}

impl MailTemplateRequest {
    fn into_override(self) -> Override {
        Override {
            subject: self.subject,
            text: self.text,
            html: self.html,
        }
    }
}

#[derive(Object, Debug)]
#[oai(rename = "MailTemplate", rename_all = "camelCase")]
pub struct MailTemplateView {
    pub kind: MailKind,
    /// The placeholders this kind offers, written `{{ name }}`.
    pub variables: Vec<String>,
    pub subject: String,
    pub text: String,
    pub html: String,
    /// Which parts are the project's own (the others are the defaults).
    pub subject_overridden: bool,
    pub text_overridden: bool,
    pub html_overridden: bool,
}

impl MailTemplateView {
    fn new(t: templates::TemplateView) -> Self {
        Self {
            kind: t.kind,
            variables: t.variables.iter().map(|v| (*v).to_owned()).collect(),
            subject: t.subject,
            text: t.text,
            html: t.html,
            subject_overridden: t.subject_overridden,
            text_overridden: t.text_overridden,
            html_overridden: t.html_overridden,
        }
    }
}

#[derive(Object, Debug)]
pub struct MailTemplatesData {
    pub templates: Vec<MailTemplateView>,
}

#[derive(Object, Debug)]
pub struct MailTemplatesOk {
    pub success: bool,
    pub data: MailTemplatesData,
}

#[derive(Object, Debug)]
pub struct MailTemplateOk {
    pub success: bool,
    pub data: MailTemplateView,
}

#[derive(Object, Debug)]
#[oai(rename = "MailPreview")]
pub struct MailPreviewView {
    pub subject: String,
    pub text: String,
    pub html: String,
}

#[derive(Object, Debug)]
pub struct MailPreviewOk {
    pub success: bool,
    pub data: MailPreviewView,
}

#[derive(ApiResponse)]
pub enum MailTemplatesResponse {
    /// Every message kind's template as the project uses it.
    #[oai(status = 200)]
    Ok(Json<MailTemplatesOk>),
}

#[derive(ApiResponse)]
pub enum MailTemplateResponse {
    /// The template as the project now uses it.
    #[oai(status = 200)]
    Ok(Json<MailTemplateOk>),
}

#[derive(ApiResponse)]
pub enum MailPreviewResponse {
    /// The message rendered with sample values.
    #[oai(status = 200)]
    Ok(Json<MailPreviewOk>),
}

#[OpenApi(tag = "AdminTags::Mail")]
impl MailTemplatesApi {
    /// A project's message templates
    ///
    /// LICENSE_DELIVERED, SEND_KEYS, PASSWORD_RESET and EXPIRY_REMINDER, each part the
    /// project's override or the embedded default.
    #[oai(path = "/api/projects/:id/mail-templates", method = "get")]
    async fn list(&self, auth: AdminAuth, id: Path<String>) -> KvResult<MailTemplatesResponse> {
        let admin = auth.admin();
        let found = templates::list(&self.state, &admin.ctx, &id.0)?;
        Ok(MailTemplatesResponse::Ok(Json(MailTemplatesOk {
            success: true,
            data: MailTemplatesData {
                templates: found.into_iter().map(MailTemplateView::new).collect(),
            },
        })))
    }

    /// Override a message template
    ///
    /// Each part given replaces the default; a placeholder the kind does not offer is refused
    /// (400). All parts blank removes the override.
    #[oai(path = "/api/projects/:id/mail-templates/:kind", method = "put")]
    async fn save(
        &self,
        auth: AdminAuth,
        id: Path<String>,
        kind: Path<MailKind>,
        body: Json<MailTemplateRequest>,
    ) -> KvResult<MailTemplateResponse> {
        let admin = auth.admin();
        let saved = templates::save(
            &self.state,
            &admin.ctx,
            &id.0,
            kind.0,
            body.0.into_override(),
        )
        .await?;
        Ok(MailTemplateResponse::Ok(Json(MailTemplateOk {
            success: true,
            data: MailTemplateView::new(saved),
        })))
    }

    /// Restore a message template's defaults
    #[oai(path = "/api/projects/:id/mail-templates/:kind", method = "delete")]
    async fn reset(
        &self,
        auth: AdminAuth,
        id: Path<String>,
        kind: Path<MailKind>,
    ) -> KvResult<MailTemplateResponse> {
        let admin = auth.admin();
        let reset = templates::reset(&self.state, &admin.ctx, &id.0, kind.0).await?;
        Ok(MailTemplateResponse::Ok(Json(MailTemplateOk {
            success: true,
            data: MailTemplateView::new(reset),
        })))
    }

    /// Preview a message template
    ///
    /// The given parts (unsaved; missing ones from the saved override or the defaults)
    /// rendered with sample values.
    #[oai(
        path = "/api/projects/:id/mail-templates/:kind/preview",
        method = "post"
    )]
    async fn preview(
        &self,
        auth: AdminAuth,
        id: Path<String>,
        kind: Path<MailKind>,
        body: Json<MailTemplateRequest>,
    ) -> KvResult<MailPreviewResponse> {
        let admin = auth.admin();
        let r = templates::preview(
            &self.state,
            &admin.ctx,
            &id.0,
            kind.0,
            body.0.into_override(),
        )?;
        Ok(MailPreviewResponse::Ok(Json(MailPreviewOk {
            success: true,
            data: MailPreviewView {
                subject: r.subject,
                text: r.text,
                html: r.html,
            },
        })))
    }
}
