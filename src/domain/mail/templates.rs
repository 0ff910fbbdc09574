//! The messages' templates: an embedded plain-text and HTML version per kind, which a product
//! may override (subject, text, HTML, each on its own). Placeholders are `{{ name }}`, from a
//! fixed list per kind; a value is inserted as text (HTML-escaped in the HTML version), so a
//! customer's name or a product's name can never inject markup. An unknown placeholder is
//! refused when an override is saved, and never reaches a customer.

use super::{MailKind, Rendered};
use crate::error::{Error, Result};

/// One kind's embedded defaults.
pub struct Defaults {
    pub subject: &'static str,
    pub text: &'static str,
    pub html: &'static str,
}

/// The placeholders a kind's templates may use.
pub fn variables(kind: MailKind) -> &'static [&'static str] {
    match kind {
        MailKind::LicenseDelivered => &["product", "key", "expiry", "portal_link", "customer_name"],
        MailKind::SendKeys => &["product", "licenses", "portal_link"],
        MailKind::PasswordReset => &["product", "username", "reset_link", "valid_minutes"],
        MailKind::ExpiryReminder => &[
            "product",
            "key",
            "expiry",
            "days_left",
            "portal_link",
            "customer_name",
        ],
        MailKind::Test => &["from"],
    }
}

/// The kinds a product may override (the test message belongs to the workspace).
pub const OVERRIDABLE: [MailKind; 4] = [
    MailKind::LicenseDelivered,
    MailKind::SendKeys,
    MailKind::PasswordReset,
    MailKind::ExpiryReminder,
];

pub fn defaults(kind: MailKind) -> Defaults {
    match kind {
        MailKind::LicenseDelivered => Defaults {
            subject: "Your license key for {{ product }}",
            text: "Hello {{ customer_name }},\n\n\
                   thank you for choosing {{ product }}. Your license key is:\n\n\
                   {{ key }}\n\n\
                   Valid until: {{ expiry }}\n\n\
                   Manage your license and downloads in the portal:\n{{ portal_link }}\n",
            html: "<p>Hello {{ customer_name }},</p>\n\
                   <p>thank you for choosing <strong>{{ product }}</strong>. Your license key is:</p>\n\
                   <p style=\"font-family:monospace;font-size:16px;padding:8px;background:#f3f4f6\">{{ key }}</p>\n\
                   <p>Valid until: {{ expiry }}</p>\n\
                   <p>Manage your license and downloads in the <a href=\"{{ portal_link }}\">portal</a>.</p>\n",
        },
        MailKind::SendKeys => Defaults {
            subject: "Your license keys for {{ product }}",
            text: "Hello,\n\nsomeone (hopefully you) asked for the license keys of this address \
                   for {{ product }}:\n\n{{ licenses }}\n\n\
                   The portal: {{ portal_link }}\n\n\
                   If you did not ask for this, you can ignore this message.\n",
            html: "<p>Hello,</p>\n\
                   <p>someone (hopefully you) asked for the license keys of this address for \
                   <strong>{{ product }}</strong>:</p>\n\
                   <p style=\"font-family:monospace\">{{ licenses }}</p>\n\
                   <p>The <a href=\"{{ portal_link }}\">portal</a>.</p>\n\
                   <p>If you did not ask for this, you can ignore this message.</p>\n",
        },
        MailKind::PasswordReset => Defaults {
            subject: "Reset your {{ product }} portal password",
            text: "Hello {{ username }},\n\n\
                   to choose a new password for the {{ product }} portal, open this link \
                   (it works once, for {{ valid_minutes }} minutes):\n\n{{ reset_link }}\n\n\
                   If you did not ask for this, you can ignore this message: your password \
                   stays as it is.\n",
            html: "<p>Hello {{ username }},</p>\n\
                   <p>to choose a new password for the <strong>{{ product }}</strong> portal, \
                   open this link (it works once, for {{ valid_minutes }} minutes):</p>\n\
                   <p><a href=\"{{ reset_link }}\">Choose a new password</a></p>\n\
                   <p>If you did not ask for this, you can ignore this message: your password \
                   stays as it is.</p>\n",
        },
        MailKind::ExpiryReminder => Defaults {
            subject: "Your {{ product }} license expires in {{ days_left }} day(s)",
            text: "Hello {{ customer_name }},\n\n\
                   your {{ product }} license {{ key }} expires on {{ expiry }} \
                   ({{ days_left }} day(s) from now).\n\n\
                   Renew it to keep using {{ product }}. The portal: {{ portal_link }}\n",
            html: "<p>Hello {{ customer_name }},</p>\n\
                   <p>your <strong>{{ product }}</strong> license \
                   <code>{{ key }}</code> expires on {{ expiry }} ({{ days_left }} day(s) from now).</p>\n\
                   <p>Renew it to keep using {{ product }}. The <a href=\"{{ portal_link }}\">portal</a>.</p>\n",
        },
        MailKind::Test => Defaults {
            subject: "Keyward test e-mail",
            text: "This is a test e-mail from Keyward, sent as {{ from }}.\n\n\
                   Your SMTP settings work.\n",
            html: "<p>This is a test e-mail from Keyward, sent as {{ from }}.</p>\n\
                   <p>Your SMTP settings work.</p>\n",
        },
    }
}

/// A product's override of one kind; a `None` part keeps the default.
#[derive(Debug, Clone, Default)]
pub struct Override {
    pub subject: Option<String>,
    pub text: Option<String>,
    pub html: Option<String>,
}

/// Longest template part accepted (subjects: [`MAX_SUBJECT`]).
pub const MAX_TEMPLATE: usize = 20_000;
pub const MAX_SUBJECT: usize = 200;

/// Refuses an override that names a placeholder its kind does not have, or is too long.
pub fn check(kind: MailKind, o: &Override) -> Result<()> {
    let parts = [
        ("subject", &o.subject, MAX_SUBJECT),
        ("text", &o.text, MAX_TEMPLATE),
        ("html", &o.html, MAX_TEMPLATE),
    ];
    for (field, part, max) in parts {
        let Some(part) = part else { continue };
        if part.chars().count() > max {
            return Err(Error::Invalid(format!(
                "{field} must be at most {max} characters"
            )));
        }
        if field == "subject" && part.contains(['\r', '\n']) {
            return Err(Error::Invalid("subject must be one line".into()));
        }
        for name in placeholders(part) {
            if !variables(kind).contains(&name) {
                return Err(Error::Invalid(format!(
                    "{field}: unknown placeholder {{{{ {name} }}}}; {} offers {}",
                    kind.as_str(),
                    variables(kind).join(", ")
                )));
            }
        }
    }
    Ok(())
}

/// The placeholder names a template uses, in order.
fn placeholders(template: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        out.push(after[..end].trim());
        rest = &after[end + 2..];
    }
    out
}

/// Fills `template`; each value through `escape`. Placeholders without a value stay empty
/// (overrides are checked when saved, so only a default could miss one, and none does).
fn fill(template: &str, values: &[(&str, String)], escape: fn(&str) -> String) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        out.push_str(&rest[..start]);
        let name = after[..end].trim();
        if let Some((_, v)) = values.iter().find(|(n, _)| *n == name) {
            out.push_str(&escape(v));
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\n' => out.push_str("<br>\n"),
            c => out.push(c),
        }
    }
    out
}

/// The message of `kind` from the product's override (if any) over the defaults.
pub fn render(kind: MailKind, over: Option<&Override>, values: &[(&str, String)]) -> Rendered {
    let d = defaults(kind);
    let part = |o: Option<&String>, default: &'static str| -> String {
        o.cloned().unwrap_or_else(|| default.to_owned())
    };
    let subject = part(over.and_then(|o| o.subject.as_ref()), d.subject);
    let text = part(over.and_then(|o| o.text.as_ref()), d.text);
    let html = part(over.and_then(|o| o.html.as_ref()), d.html);
    // Header injection: a value with a line break must not start a new header.
    let one_line = |s: &str| s.replace(['\r', '\n'], " ");
    Rendered {
        subject: one_line(&fill(&subject, values, str::to_owned)),
        text: fill(&text, values, str::to_owned),
        html: fill(&html, values, escape_html),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped_in_html_only() {
        let r = render(
            MailKind::LicenseDelivered,
            None,
            &[
                ("product", "Ace <b>".into()),
                ("customer_name", "Ana & \"Bo\"".into()),
                ("key", "K-1".into()),
            ],
        );
        assert!(r.subject.contains("Ace <b>"));
        assert!(r.text.contains("Ana & \"Bo\""));
        assert!(r.html.contains("Ace &lt;b&gt;"));
        assert!(r.html.contains("Ana &amp; &quot;Bo&quot;"));
    }

    #[test]
    fn unknown_placeholders_are_refused() {
        let o = Override {
            subject: Some("Hi {{ nope }}".into()),
            ..Override::default()
        };
        assert!(check(MailKind::LicenseDelivered, &o).is_err());
        let o = Override {
            text: Some("{{key}} for {{ product }}".into()),
            ..Override::default()
        };
        assert!(check(MailKind::LicenseDelivered, &o).is_ok());
    }
}
