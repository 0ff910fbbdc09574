//! Keyward: a self-hosted license-key server in one executable. `server::start` builds and
//! runs the whole application in-process, which is how tests and examples use it.

pub mod abuse;
pub mod api;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod domain;
pub mod error;
pub mod mailer;
pub mod maintenance;
pub mod net;
pub mod outgoing;
pub mod passwords;
pub mod ratelimit;
pub mod server;
pub mod service;
pub mod state;
pub mod storage;
pub mod telemetry;
pub mod tls;
pub mod web;

pub use config::Config;
pub use server::{Running, start};
