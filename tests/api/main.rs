//! The API integration tests, one binary: each module drives a real server (see `helpers`)
//! through one area of the API. Tests that need a process of their own or are slow stay
//! separate binaries (`process`, `browser`, `updates_large`, `examples`, `hardening`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failing test should panic
mod abuse;
mod access_regressions;
mod admin_operators_projects;
mod artifacts;
mod artifacts_rules;
mod audit_retention;
mod catalog_regressions;
mod entitlements;
mod feeds;
mod helpers;
mod hot_path;
mod keys_and_validation;
mod keys_regressions;
mod layers;
mod license_files;
mod licensing_regressions;
mod login_lockout;
mod mail;
mod mail_customers;
mod mail_portal;
mod mail_settings;
mod metrics;
mod offline_activation;
mod openapi_nulls;
mod payments;
mod portal;
mod portal_regressions;
mod proxy;
mod releases_regressions;
mod revocations;
mod rollouts;
mod sessions;
mod setup_token;
mod signing_keys;
mod smoke;
mod two_factor;
mod updates;
mod vendor_license;
mod vendor_manage;
mod webhook_receiver;
mod webhooks;
mod webhooks_admin;
mod webhooks_delivery;
