//! The domain: one folder per concept, each with its types and rules (`mod.rs`) and its SQL
//! (`repo.rs`). Nothing outside a `repo.rs` writes SQL.

pub mod abuse;
pub mod activations;
pub mod api_keys;
pub mod artifacts;
pub mod audit;
pub mod entitlements;
pub mod feeds;
pub mod license_files;
pub mod licenses;
pub mod mail;
pub mod operators;
pub mod payments;
pub mod portal_users;
pub mod products;
pub mod releases;
pub mod revocations;
pub mod sessions;
pub mod signing_keys;
pub mod tenants;
pub mod two_factor;
pub mod webhooks;

mod ids;
pub use ids::*;

use time::OffsetDateTime;

/// Milliseconds since the Unix epoch, the unit every stored time uses.
pub fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

pub fn ms_to_datetime(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

pub fn datetime_to_ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

pub const DAY_MS: i64 = 86_400_000;

/// A row count that stops at a cap: `capped` means "at least `total`".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counted {
    pub total: u64,
    pub capped: bool,
}

/// Counting stops here unless the page asked for lies further out.
pub const COUNT_CAP: u64 = 10_000;

/// A WHERE clause of only the filters in use, with their arguments in order: an
/// `?1 IS NULL OR column = ?1` condition defeats SQLite's planner (it cannot pick an index for
/// it), so lists and counts name the filters they were given and nothing else.
#[derive(Default)]
pub struct Filter {
    conditions: Vec<&'static str>,
    pub args: Vec<Box<dyn rusqlite::ToSql>>,
}

impl Filter {
    /// Adds `condition` (with one `?` per argument) and its arguments.
    pub fn and(&mut self, condition: &'static str, args: Vec<Box<dyn rusqlite::ToSql>>) {
        self.conditions.push(condition);
        self.args.extend(args);
    }

    /// Adds `condition` with its one argument, when there is one.
    pub fn and_some<T: rusqlite::ToSql + 'static>(
        &mut self,
        condition: &'static str,
        arg: Option<T>,
    ) {
        if let Some(arg) = arg {
            self.and(condition, vec![Box::new(arg)]);
        }
    }

    /// The conditions joined by AND (`1` for none).
    pub fn sql(&self) -> String {
        if self.conditions.is_empty() {
            "1".to_owned()
        } else {
            self.conditions.join(" AND ")
        }
    }
}

/// An enum stored as its upper-case name in a TEXT column and shown as the same name in both
/// API faces (it also derives `poem_openapi::Enum` for the OpenAPI document).
macro_rules! text_enum {
    ($(#[$meta:meta])* $vis:vis enum $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, poem_openapi::Enum, serde::Serialize, serde::Deserialize)]
        $(#[$meta])*
        $vis enum $name {
            $($(#[$vmeta])* #[oai(rename = $text)] #[serde(rename = $text)] $variant),+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }

            /// The accepted values, for error messages.
            pub fn choices() -> String {
                [$($text),+].join(", ")
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl rusqlite::types::ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(rusqlite::types::ToSqlOutput::from(self.as_str()))
            }
        }

        impl rusqlite::types::FromSql for $name {
            fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
                let text = value.as_str()?;
                $name::parse(text).ok_or_else(|| rusqlite::types::FromSqlError::Other(
                    format!("unknown {} {text:?}", stringify!($name)).into(),
                ))
            }
        }
    };
}
pub(crate) use text_enum;
