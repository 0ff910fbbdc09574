//! What the faces share: client IP, field validators, pagination, the key/HWID envelope (spoken
//! by the admin, client and portal faces), API-key authentication, the CSRF check, streamed
//! bodies. No face imports from a sibling face; they all import from here.

pub mod api_key;
pub mod body;
pub mod client_ip;
pub mod csrf;
pub mod device_cookie;
pub mod fields;
pub mod http_metrics;
pub mod keyvault_error;
pub mod offline;
pub mod pagination;
pub mod signed;
pub mod signing_key;
