use rusqlite::{Connection, OptionalExtension, Row, params};

use super::templates::Override;
use super::{MailKind, NewMessage, OutboxMessage, OutboxStatus, SmtpSettings};
use crate::error::Result;

fn settings_from_row(r: &Row<'_>) -> rusqlite::Result<SmtpSettings> {
    Ok(SmtpSettings {
        tenant_id: r.get("tenant_id")?,
        host: r.get("host")?,
        port: r.get("port")?,
        security: r.get("security")?,
        username: r.get("username")?,
        password_sealed: r.get("password_sealed")?,
        from_address: r.get("from_address")?,
        from_name: r.get("from_name")?,
        public_url: r.get("public_url")?,
        updated_at: r.get("updated_at")?,
    })
}

pub fn settings(conn: &Connection, tenant_id: &str) -> Result<Option<SmtpSettings>> {
    Ok(conn
        .prepare_cached("SELECT * FROM smtp_settings WHERE tenant_id = ?1")?
        .query_row([tenant_id], settings_from_row)
        .optional()?)
}

pub fn save_settings(conn: &Connection, s: &SmtpSettings) -> Result<()> {
    conn.execute(
        "INSERT INTO smtp_settings (tenant_id, host, port, security, username, password_sealed,
            from_address, from_name, public_url, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (tenant_id) DO UPDATE SET host = excluded.host, port = excluded.port,
            security = excluded.security, username = excluded.username,
            password_sealed = excluded.password_sealed, from_address = excluded.from_address,
            from_name = excluded.from_name, public_url = excluded.public_url,
            updated_at = excluded.updated_at",
        params![
            s.tenant_id,
            s.host,
            s.port,
            s.security,
            s.username,
            s.password_sealed,
            s.from_address,
            s.from_name,
            s.public_url,
            s.updated_at
        ],
    )?;
    Ok(())
}

pub fn delete_settings(conn: &Connection, tenant_id: &str) -> Result<bool> {
    Ok(conn.execute(
        "DELETE FROM smtp_settings WHERE tenant_id = ?1",
        [tenant_id],
    )? > 0)
}

fn message_from_row(r: &Row<'_>) -> rusqlite::Result<OutboxMessage> {
    Ok(OutboxMessage {
        id: r.get("id")?,
        tenant_id: r.get("tenant_id")?,
        product_id: r.get("product_id")?,
        license_id: r.get("license_id")?,
        kind: r.get("kind")?,
        recipient: r.get("recipient")?,
        subject: r.get("subject")?,
        body_text: r.get("body_text")?,
        body_html: r.get("body_html")?,
        status: r.get("status")?,
        attempts: r.get("attempts")?,
        next_attempt_at: r.get("next_attempt_at")?,
        last_error: r.get("last_error")?,
        created_at: r.get("created_at")?,
        sent_at: r.get("sent_at")?,
    })
}

/// Queues a message for its first attempt now; returns its id.
pub fn enqueue(conn: &Connection, m: &NewMessage, now: i64) -> Result<String> {
    let id = crate::crypto::new_id("msg");
    conn.prepare_cached(
        "INSERT INTO mail_outbox (id, tenant_id, product_id, license_id, kind, recipient, subject,
            body_text, body_html, status, attempts, next_attempt_at, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'PENDING', 0, ?10, ?10)",
    )?
    .execute(params![
        id,
        m.tenant_id,
        m.product_id,
        m.license_id,
        m.kind,
        m.recipient.to_ascii_lowercase(),
        m.rendered.subject,
        m.rendered.text,
        m.rendered.html,
        now
    ])?;
    Ok(id)
}

pub fn find_message(conn: &Connection, tenant_id: &str, id: &str) -> Result<Option<OutboxMessage>> {
    Ok(conn
        .prepare_cached("SELECT * FROM mail_outbox WHERE tenant_id = ?1 AND id = ?2")?
        .query_row([tenant_id, id], message_from_row)
        .optional()?)
}

/// Filters of the outbox list.
#[derive(Debug, Default, Clone)]
pub struct OutboxFilter<'a> {
    pub tenant_id: &'a str,
    pub status: Option<OutboxStatus>,
    pub recipient: Option<&'a str>,
    /// Only this product's messages (a product-restricted caller's view of a customer).
    pub product_id: Option<&'a str>,
}

const OUTBOX_FILTER: &str = "tenant_id = ?1 AND (?2 IS NULL OR status = ?2)
    AND (?3 IS NULL OR recipient = ?3) AND (?4 IS NULL OR product_id = ?4)";

/// One page of the outbox, newest first, and the total.
pub fn list(
    conn: &Connection,
    f: &OutboxFilter<'_>,
    limit: u32,
    offset: u64,
) -> Result<(Vec<OutboxMessage>, u64)> {
    let recipient = f.recipient.map(str::to_ascii_lowercase);
    let total: i64 = conn
        .prepare_cached(&format!(
            "SELECT COUNT(*) FROM mail_outbox WHERE {OUTBOX_FILTER}"
        ))?
        .query_row(
            params![f.tenant_id, f.status, recipient, f.product_id],
            |r| r.get(0),
        )?;
    Ok((newest(conn, f, limit, offset)?, total as u64))
}

/// One page of the outbox, newest first, without counting the rest (a view that shows the
/// newest few and no pager).
pub fn newest(
    conn: &Connection,
    f: &OutboxFilter<'_>,
    limit: u32,
    offset: u64,
) -> Result<Vec<OutboxMessage>> {
    let recipient = f.recipient.map(str::to_ascii_lowercase);
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT * FROM mail_outbox WHERE {OUTBOX_FILTER}
         ORDER BY created_at DESC, rowid DESC LIMIT ?5 OFFSET ?6"
    ))?;
    let rows = stmt.query_map(
        params![
            f.tenant_id,
            f.status,
            recipient,
            f.product_id,
            limit,
            offset as i64
        ],
        message_from_row,
    )?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Messages whose attempt is due, oldest first.
pub fn due(conn: &Connection, now: i64, limit: u32) -> Result<Vec<OutboxMessage>> {
    let mut stmt = conn.prepare_cached(
        "SELECT * FROM mail_outbox WHERE status = 'PENDING' AND next_attempt_at <= ?1
         ORDER BY next_attempt_at, rowid LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![now, limit], message_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// When the next pending message is due, if any.
pub fn next_due_at(conn: &Connection) -> Result<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT MIN(next_attempt_at) FROM mail_outbox WHERE status = 'PENDING'")?
        .query_row([], |r| r.get(0))?)
}

pub fn pending_count(conn: &Connection) -> Result<u64> {
    let n: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM mail_outbox WHERE status = 'PENDING'")?
        .query_row([], |r| r.get(0))?;
    Ok(n as u64)
}

pub fn mark_sent(conn: &Connection, id: &str, now: i64) -> Result<()> {
    conn.prepare_cached(
        "UPDATE mail_outbox SET status = 'SENT', attempts = attempts + 1, sent_at = ?2,
            last_error = NULL
         WHERE id = ?1 AND status = 'PENDING'",
    )?
    .execute(params![id, now])?;
    Ok(())
}

/// Records a failed attempt: the message waits until `next_attempt_at`, or is given up
/// (`give_up`).
pub fn mark_attempt_failed(
    conn: &Connection,
    id: &str,
    error: &str,
    next_attempt_at: i64,
    give_up: bool,
) -> Result<()> {
    conn.prepare_cached(
        "UPDATE mail_outbox SET attempts = attempts + 1, last_error = ?2, next_attempt_at = ?3,
            status = CASE WHEN ?4 THEN 'FAILED' ELSE status END
         WHERE id = ?1 AND status = 'PENDING'",
    )?
    .execute(params![id, error, next_attempt_at, give_up])?;
    Ok(())
}

/// Puts a message back in the queue for an attempt now, with a fresh set of attempts.
pub fn retry(conn: &Connection, id: &str, now: i64) -> Result<()> {
    conn.execute(
        "UPDATE mail_outbox SET status = 'PENDING', attempts = 0, next_attempt_at = ?2
         WHERE id = ?1",
        params![id, now],
    )?;
    Ok(())
}

pub fn template(conn: &Connection, product_id: &str, kind: MailKind) -> Result<Option<Override>> {
    Ok(conn
        .prepare_cached(
            "SELECT subject, body_text, body_html FROM mail_templates
             WHERE product_id = ?1 AND kind = ?2",
        )?
        .query_row(params![product_id, kind], |r| {
            Ok(Override {
                subject: r.get(0)?,
                text: r.get(1)?,
                html: r.get(2)?,
            })
        })
        .optional()?)
}

pub fn save_template(
    conn: &Connection,
    product_id: &str,
    kind: MailKind,
    o: &Override,
    now: i64,
) -> Result<()> {
    conn.execute(
        "INSERT INTO mail_templates (product_id, kind, subject, body_text, body_html, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (product_id, kind) DO UPDATE SET subject = excluded.subject,
            body_text = excluded.body_text, body_html = excluded.body_html,
            updated_at = excluded.updated_at",
        params![product_id, kind, o.subject, o.text, o.html, now],
    )?;
    Ok(())
}

pub fn delete_template(conn: &Connection, product_id: &str, kind: MailKind) -> Result<bool> {
    Ok(conn.execute(
        "DELETE FROM mail_templates WHERE product_id = ?1 AND kind = ?2",
        params![product_id, kind],
    )? > 0)
}

/// A subscription license due for its expiry reminder.
#[derive(Debug, Clone)]
pub struct ReminderDue {
    pub license_id: String,
    pub valid_until: i64,
}

/// Active subscription licenses with a customer address that expire within `(now, until]`
/// and have had no reminder for this expiry date.
pub fn reminders_due(
    conn: &Connection,
    now: i64,
    until: i64,
    limit: u32,
) -> Result<Vec<ReminderDue>> {
    let mut stmt = conn.prepare_cached(
        "SELECT l.id, l.valid_until FROM licenses l INDEXED BY licenses_expiring
         WHERE l.status = 'ACTIVE' AND l.valid_until IS NOT NULL
           AND l.valid_until > ?1 AND l.valid_until <= ?2
           AND l.license_type = 'SUBSCRIPTION' AND l.customer_email IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM mail_reminders r
                           WHERE r.license_id = l.id AND r.valid_until = l.valid_until)
         ORDER BY l.valid_until LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![now, until, limit], |r| {
        Ok(ReminderDue {
            license_id: r.get(0)?,
            valid_until: r.get(1)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn record_reminder(
    conn: &Connection,
    license_id: &str,
    valid_until: i64,
    now: i64,
) -> Result<()> {
    conn.execute(
        "INSERT OR IGNORE INTO mail_reminders (license_id, valid_until, sent_at) VALUES (?1, ?2, ?3)",
        params![license_id, valid_until, now],
    )?;
    Ok(())
}
