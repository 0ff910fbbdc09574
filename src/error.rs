//! The one domain error type. Each HTTP face maps it to its own envelope in one place
//! (`api::v1::error` for the vendor contract).

use std::time::Duration;

/// Why a license cannot be used for what was asked. Faces choose status and code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LicenseProblem {
    Expired,
    Suspended,
    Revoked,
    ActivationLimitReached,
    NotActivated,
    /// Banned by an operator (the vendor face reports it as suspended).
    Banned,
    /// The key is bound to other machines and has no free seat (key/HWID face).
    HwidMismatch,
    /// Every allowed session is live.
    SessionLimitReached,
    /// The client sent a nonce that is not the one it was last given.
    NonceMismatch,
    /// An encrypted envelope's `requestId` was seen before: the whole request is a replay.
    RequestReplayed,
    /// The presented session was ended because a newer session took its place (the project's
    /// session limit is `END_OLDEST`).
    SessionReplaced,
    /// The presented session was ended by the app itself (end-session).
    SessionEndedByApp,
    /// The presented session is beyond the key's `maxSessions` (lowered while it ran).
    SessionOverLimit,
    /// The presented session is not a live or ended session of this key on this machine.
    SessionUnknown,
}

impl LicenseProblem {
    /// The code the vendor face answers (and its audit trail records).
    pub fn vendor_code(self) -> &'static str {
        match self {
            Self::Expired => "LICENSE_EXPIRED",
            Self::Suspended | Self::Banned => "LICENSE_SUSPENDED",
            Self::Revoked => "LICENSE_REVOKED",
            Self::ActivationLimitReached => "ACTIVATION_LIMIT_REACHED",
            Self::NotActivated => "NOT_ACTIVATED",
            // Only the key/HWID face raises these; named for completeness.
            Self::HwidMismatch => "ACTIVATION_LIMIT_REACHED",
            Self::SessionLimitReached => "SESSION_LIMIT_REACHED",
            Self::NonceMismatch => "NONCE_MISMATCH",
            Self::RequestReplayed => "REQUEST_REPLAYED",
            Self::SessionReplaced | Self::SessionEndedByApp | Self::SessionOverLimit => {
                "SESSION_ENDED"
            }
            Self::SessionUnknown => "SESSION_NOT_FOUND",
        }
    }

    /// The code the key/HWID face answers (and its audit trail records).
    pub fn key_code(self) -> &'static str {
        match self {
            Self::Expired => "KEY_EXPIRED",
            Self::Suspended => "KEY_SUSPENDED",
            Self::Revoked => "KEY_REVOKED",
            Self::ActivationLimitReached | Self::HwidMismatch => "HWID_MISMATCH",
            Self::NotActivated => "NOT_ACTIVATED",
            Self::Banned => "KEY_BANNED",
            Self::SessionLimitReached => "MAX_SESSIONS",
            Self::NonceMismatch => "REPLAY",
            Self::RequestReplayed => "REQUEST_REPLAYED",
            Self::SessionReplaced | Self::SessionEndedByApp | Self::SessionOverLimit => {
                "SESSION_ENDED"
            }
            Self::SessionUnknown => "SESSION_NOT_FOUND",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Self::Expired => "The license has expired",
            Self::Suspended => "The license is suspended",
            Self::Revoked => "The license has been revoked",
            Self::ActivationLimitReached => {
                "The license has reached its maximum number of activations"
            }
            Self::NotActivated => "The license is not activated on this machine",
            Self::Banned => "This key is banned",
            Self::HwidMismatch => "This key is bound to another machine (HWID mismatch)",
            Self::SessionLimitReached => {
                "Every session this key allows is in use; close one or wait for it to expire"
            }
            Self::NonceMismatch => {
                "Replay refused: the nonce is not the one this key was last given"
            }
            Self::RequestReplayed => {
                "Replay refused: this envelope's requestId was already used; give every request a new one"
            }
            Self::SessionReplaced => {
                "This session has ended: a newer session of this key took its place (every \
                 session the key allows was in use); this instance must stop"
            }
            Self::SessionEndedByApp => {
                "This session has ended: the app ended it (end-session); validate without \
                 sessionId and nonce to start a new one"
            }
            Self::SessionOverLimit => {
                "This session has ended: the key now allows fewer sessions than are running \
                 (maxSessions was lowered); this instance must stop"
            }
            Self::SessionUnknown => {
                "No live session of this key on this machine has this sessionId (it timed out, \
                 or never existed)"
            }
        }
    }
}

/// Why the unauthenticated setup step refused its one-time setup token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetupTokenProblem {
    /// No `setupToken` was sent.
    Missing,
    /// Not the current token: mistyped, used already, or replaced by a newer one.
    Invalid,
    /// The current token, but past its 24 hours.
    Expired,
}

impl SetupTokenProblem {
    pub fn code(self) -> &'static str {
        match self {
            Self::Missing => "SETUP_TOKEN_REQUIRED",
            Self::Invalid => "SETUP_TOKEN_INVALID",
            Self::Expired => "SETUP_TOKEN_EXPIRED",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Self::Missing => {
                "Creating the first administrator needs the one-time setup token (`setupToken`): \
                 open the setup URL the server printed at its start, or run `keyward admin setup-url`"
            }
            Self::Invalid => {
                "The setup token is wrong, used, or replaced by a newer one: open the latest setup \
                 URL, or run `keyward admin setup-url` for a new one"
            }
            Self::Expired => {
                "The setup token has expired: restart the server or run `keyward admin setup-url` \
                 for a new one"
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Input that breaks a rule; the message names the field and the rule.
    #[error("{0}")]
    Invalid(String),
    /// Unknown, or belonging to another tenant: the two are indistinguishable on purpose.
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    /// A unique name is already taken.
    #[error("{0}")]
    Conflict(String),
    #[error("{}", .0.message())]
    License(LicenseProblem),
    /// The license presented as a credential (`X-License-Key`) may not be used now.
    #[error("{}", .0.message())]
    LicenseRefused(LicenseProblem),
    /// A body (an uploaded bundle) over its size limit.
    #[error("{0}")]
    TooLarge(String),
    /// An idempotency key reused with a different request body.
    #[error("{0}")]
    IdempotencyMismatch(String),
    /// The setup step's one-time token is missing, wrong or expired (401 on every face).
    #[error("{}", .0.message())]
    SetupToken(SetupTokenProblem),
    #[error("Too many requests; retry in {} s", retry_after.as_secs().max(1))]
    RateLimited { retry_after: Duration, limit: u32 },
    /// The client's address is blocked for suspected abuse (until the block expires or an
    /// operator lifts it).
    #[error("Requests from this address are blocked for suspected abuse; retry in {} s", retry_after.as_secs().max(1))]
    IpBlocked { retry_after: Duration },
    /// The database or the file system failed; details go to the log, not to the caller.
    #[error("storage failure: {0}")]
    Storage(String),
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Storage(e.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
