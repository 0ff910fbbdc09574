//! The audit trail: who did what to which license, from which IP and machine, and when.
//! Events are queued to the writer and committed in batches, so recording never slows a read.

pub mod daily;
pub mod repo;

super::text_enum! {
    /// One name per kind of event: the audit trail, the dashboard's figures and the retention
    /// rules all read these names, so a use case cannot invent a second spelling.
    pub enum AuditAction {
        LicenseActivate => "license.activate",
        LicenseActivateRefused => "license.activate.refused",
        /// An air-gapped machine activated from its activation request (refusals are
        /// `license.activate.refused` with `"offline": true`).
        LicenseActivateOffline => "license.activate.offline",
        LicenseValidate => "license.validate",
        LicenseDeactivate => "license.deactivate",
        LicenseCheck => "license.check",
        LicenseCheckout => "license.checkout",
        LicenseCheckoutRefused => "license.checkout.refused",
        LicenseCreate => "license.create",
        LicenseRevoke => "license.revoke",
        LicenseRenew => "license.renew",
        LicenseUpdate => "license.update",
        LicenseExpire => "license.expire",
        MachineCull => "machine.cull",
        KeyValidate => "key.validate",
        KeyValidateRefused => "key.validate.refused",
        KeySessionEnd => "key.session.end",
        KeySessionEndRefused => "key.session.end.refused",
        KeyInfo => "key.info",
        KeyResetHwid => "key.reset_hwid",
        ProductCreate => "project.create",
        ProductUpdate => "project.update",
        ProductDelete => "project.delete",
        SigningKeyRotate => "project.signing_key.rotate",
        SigningKeyRetire => "project.signing_key.retire",
        ApiKeyCreate => "apikey.create",
        ApiKeyRevoke => "apikey.revoke",
        OperatorCreate => "operator.create",
        OperatorUpdate => "operator.update",
        OperatorDelete => "operator.delete",
        OperatorLogin => "operator.login",
        OperatorLoginFailed => "operator.login.failed",
        OperatorLogout => "operator.logout",
        /// An operator turned two-factor login on (its first code was right).
        TwoFactorEnable => "operator.2fa.enable",
        /// Two-factor login turned off, by the operator (with a code or its password) or by
        /// `keyward admin disable-2fa`.
        TwoFactorDisable => "operator.2fa.disable",
        TwoFactorRecoveryCodesRegenerate => "operator.2fa.recovery_codes.regenerate",
        /// A sign-in's second step used a recovery code (one fewer is left).
        TwoFactorRecoveryCodeUse => "operator.2fa.recovery_code.use",
        /// A wrong, replayed or malformed code at a sign-in's second step.
        TwoFactorFailed => "operator.2fa.failed",
        /// A workspace's requirement of two-factor login was set or lifted.
        TwoFactorPolicyUpdate => "workspace.2fa.policy.update",
        SetupTokenIssue => "setup.token.issue",
        TenantCreate => "tenant.create",
        ReleaseUpload => "release.upload",
        ReleaseUpdate => "release.update",
        ReleasePublish => "release.publish",
        ReleaseYank => "release.yank",
        ReleaseDelete => "release.delete",
        ReleaseDelta => "release.delta",
        ReleaseArtifactUpload => "release.artifact.upload",
        ReleaseArtifactDelete => "release.artifact.delete",
        UpdateDownload => "update.download",
        /// A license asked for a feed token (for an updater that cannot send headers).
        FeedTokenIssue => "feed.token.issue",
        FeedTokenRevoke => "feed.token.revoke",
        PortalRegister => "portal.register",
        PortalLogin => "portal.login",
        PortalActivate => "portal.activate",
        PortalLoaderDownload => "portal.loader.download",
        AbuseFlag => "abuse.flag",
        AbuseLicenseSuspend => "abuse.license.suspend",
        AbuseIpBlock => "abuse.ip.block",
        AbuseIpUnblock => "abuse.ip.unblock",
        AbuseFlagUpdate => "abuse.flag.update",
        AbusePolicyUpdate => "abuse.policy.update",
        PaymentEndpointCreate => "payment.endpoint.create",
        PaymentEndpointUpdate => "payment.endpoint.update",
        PaymentEndpointDelete => "payment.endpoint.delete",
        PaymentMappingUpdate => "payment.mapping.update",
        /// A received payment event Keyward could not act on (unmapped, no license, refused).
        PaymentEventFlagged => "payment.event.flagged",
        /// An operator applied a flagged payment event again, with the endpoint's mappings of
        /// now (the detail has the outcome before and after).
        PaymentEventApply => "payment.event.apply",
        WebhookEndpointCreate => "webhook.endpoint.create",
        WebhookEndpointUpdate => "webhook.endpoint.update",
        WebhookEndpointDelete => "webhook.endpoint.delete",
        /// The server disabled an endpoint whose deliveries failed for too long.
        WebhookEndpointDisable => "webhook.endpoint.disable",
        WebhookRedeliver => "webhook.delivery.redeliver",
        WebhookTest => "webhook.test",
        MailSettingsUpdate => "mail.settings.update",
        MailTemplateUpdate => "mail.template.update",
        /// A message queued by hand or by a sweep (the key page's "E-mail the key", a test
        /// message, an expiry reminder).
        MailSend => "mail.send",
        MailRetry => "mail.retry",
        PortalKeysRequest => "portal.keys.request",
        PortalPasswordResetRequest => "portal.password.reset.request",
        PortalPasswordReset => "portal.password.reset",
        PortalEmailUpdate => "portal.email.update",
    }
}

/// How long an event's raw row is kept: each kind of event has its own retention
/// (`--audit-retention-*`). Before a row is pruned it is counted in the daily aggregates, so the
/// dashboard's figures stay; the rows themselves (the log view) go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetentionClass {
    /// The read path, one row per request: validations (accepted and refused), heartbeats and
    /// checks, key look-ups, refused activations, update downloads.
    Validations,
    /// What happened to a license or a machine: activations, deactivations, issue, renewal,
    /// revocation, expiry, culls, HWID resets, portal accounts.
    Licenses,
    /// Operators, API keys, projects, tenants, releases, abuse actions, and any name this
    /// version does not know.
    Admin,
}

impl RetentionClass {
    pub const ALL: [RetentionClass; 3] = [
        RetentionClass::Validations,
        RetentionClass::Licenses,
        RetentionClass::Admin,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RetentionClass::Validations => "validations",
            RetentionClass::Licenses => "licenses",
            RetentionClass::Admin => "admin",
        }
    }

    /// The class of a stored action name; names no longer known are kept longest.
    pub fn of(action: &str) -> RetentionClass {
        AuditAction::parse(action).map_or(RetentionClass::Admin, AuditAction::retention_class)
    }

    /// The actions of this class, or `None` for [`RetentionClass::Admin`], which is every
    /// action not in another class.
    pub fn actions(self) -> Option<Vec<&'static str>> {
        match self {
            RetentionClass::Admin => None,
            class => Some(
                AuditAction::ALL
                    .iter()
                    .filter(|a| a.retention_class() == class)
                    .map(|a| a.as_str())
                    .collect(),
            ),
        }
    }
}

impl AuditAction {
    pub fn retention_class(self) -> RetentionClass {
        use AuditAction::*;
        match self {
            LicenseValidate
            | LicenseCheck
            | LicenseCheckout
            | LicenseCheckoutRefused
            | LicenseActivateRefused
            | KeyValidate
            | KeyValidateRefused
            | KeyInfo
            | KeySessionEnd
            | KeySessionEndRefused
            | UpdateDownload => RetentionClass::Validations,
            LicenseActivate
            | LicenseActivateOffline
            | LicenseDeactivate
            | LicenseCreate
            | LicenseRevoke
            | LicenseRenew
            | LicenseUpdate
            | LicenseExpire
            | MachineCull
            | KeyResetHwid
            | PortalRegister
            | PortalLogin
            | PortalActivate
            | PortalLoaderDownload
            | MailSend
            | PortalKeysRequest
            | PortalPasswordResetRequest
            | PortalPasswordReset
            | PortalEmailUpdate
            | FeedTokenIssue
            | FeedTokenRevoke => RetentionClass::Licenses,
            ProductCreate
            | ProductUpdate
            | ProductDelete
            | SigningKeyRotate
            | SigningKeyRetire
            | ApiKeyCreate
            | ApiKeyRevoke
            | OperatorCreate
            | OperatorUpdate
            | OperatorDelete
            | OperatorLogin
            | OperatorLoginFailed
            | OperatorLogout
            | TenantCreate
            | ReleaseUpload
            | ReleaseUpdate
            | ReleasePublish
            | ReleaseYank
            | ReleaseDelete
            | ReleaseDelta
            | ReleaseArtifactUpload
            | ReleaseArtifactDelete
            | AbuseFlag
            | AbuseLicenseSuspend
            | AbuseIpBlock
            | AbuseIpUnblock
            | AbuseFlagUpdate
            | AbusePolicyUpdate
            | SetupTokenIssue
            | TwoFactorEnable
            | TwoFactorDisable
            | TwoFactorRecoveryCodesRegenerate
            | TwoFactorRecoveryCodeUse
            | TwoFactorFailed
            | TwoFactorPolicyUpdate
            | PaymentEndpointCreate
            | PaymentEndpointUpdate
            | PaymentEndpointDelete
            | PaymentMappingUpdate
            | PaymentEventFlagged
            | PaymentEventApply => RetentionClass::Admin,
            WebhookEndpointCreate
            | WebhookEndpointUpdate
            | WebhookEndpointDelete
            | WebhookEndpointDisable
            | WebhookRedeliver
            | WebhookTest
            | MailSettingsUpdate
            | MailTemplateUpdate
            | MailRetry => RetentionClass::Admin,
        }
    }
}

/// Who acts and from which address, as the audit trail records it. Handlers build events from
/// it, so the caller's IP reaches every event without each handler remembering to add it.
#[derive(Debug, Clone)]
pub struct Caller {
    pub actor: String,
    pub ip: Option<String>,
}

impl Caller {
    pub fn event(&self, tenant_id: &str, action: AuditAction) -> AuditEvent {
        AuditEvent::new(tenant_id, &self.actor, action).ip(self.ip.as_deref())
    }
}

#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub tenant_id: String,
    pub at: i64,
    /// `api_key:<id>`, `system`, `cli`, later `operator:<id>` or `portal:<id>`.
    pub actor: String,
    /// Dotted verb such as `license.activate` or `license.validate`.
    pub action: String,
    pub product_id: Option<String>,
    pub license_id: Option<String>,
    pub machine_id: Option<String>,
    pub ip: Option<String>,
    /// Small JSON object with what else matters (outcome code, reason…).
    pub detail: Option<String>,
}

impl AuditEvent {
    pub fn new(tenant_id: &str, actor: &str, action: AuditAction) -> Self {
        Self {
            tenant_id: tenant_id.to_owned(),
            at: super::now_ms(),
            actor: actor.to_owned(),
            action: action.as_str().to_owned(),
            product_id: None,
            license_id: None,
            machine_id: None,
            ip: None,
            detail: None,
        }
    }

    pub fn license(mut self, product_id: &str, license_id: &str) -> Self {
        self.product_id = Some(product_id.to_owned());
        self.license_id = Some(license_id.to_owned());
        self
    }

    pub fn product(mut self, product_id: &str) -> Self {
        self.product_id = Some(product_id.to_owned());
        self
    }

    pub fn machine(mut self, machine_id: &str) -> Self {
        self.machine_id = Some(machine_id.to_owned());
        self
    }

    pub fn ip(mut self, ip: Option<&str>) -> Self {
        self.ip = ip.map(str::to_owned);
        self
    }

    pub fn detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = Some(detail.to_string());
        self
    }
}
