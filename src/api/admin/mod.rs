//! The admin face (key/HWID contract): operators and their sessions, projects, keys, API
//! keys, logs and stats. Errors use the key/HWID envelope (`api::shared::keyvault_error`).

pub mod abuse;
pub mod api_keys;
pub mod artifacts;
pub mod auth;
pub mod customers;
pub mod feeds;
pub mod keys;
pub mod mail;
pub mod mail_templates;
pub mod multipart;
pub mod offline;
pub mod operators;
pub mod overview;
pub mod payments;
pub mod projects;
pub mod releases;
pub mod signing_keys;
pub mod two_factor;
pub mod webhooks;

use poem_openapi::Tags;

#[derive(Tags)]
pub enum AdminTags {
    /// Setup, login, logout, the current operator.
    Auth,
    /// Operator administration (ADMIN only).
    Users,
    /// Projects: the products of the vendor API, with their kv_ secrets and settings.
    Projects,
    /// License keys: generate, search, inspect, ban, revoke, reset HWID.
    Keys,
    /// Vendor API keys (shown once).
    ApiKeys,
    /// Signed software releases: upload, publish, yank, delta bundles.
    Releases,
    /// Audit logs, statistics and health.
    Logs,
    /// Abuse detection: flags with their evidence, IP blocks.
    Abuse,
    /// Selling: payment endpoints for Stripe, Paddle and Lemon Squeezy, their price mappings
    /// and received events.
    Payments,
    /// Event webhooks (Standard Webhooks): endpoints, deliveries, redelivery.
    Webhooks,
    /// E-mail to customers: SMTP settings, the outbox, message templates.
    Mail,
    /// Finding customers: everything of one e-mail address.
    Customers,
}

/// Page and limit from the query: page ≥ 1 (default 1), limit 1–500 (default 50).
pub use crate::api::shared::pagination::page_and_limit;
