//! Newtype ids: a function that takes a `LicenseId` cannot be handed a product's id. Each is
//! the stored text (`lic_…`, `prod_…`), so it reads and writes as TEXT and derefs to `str`
//! for the repo functions that still take `&str`.

macro_rules! id_type {
    ($($(#[$meta:meta])* $name:ident),+ $(,)?) => {$(
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }

        impl rusqlite::ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                self.0.to_sql()
            }
        }

        impl rusqlite::types::FromSql for $name {
            fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
                String::column_result(v).map(Self)
            }
        }
    )+};
}

id_type!(
    /// A vendor namespace (`ten_…`).
    TenantId,
    /// A product, called project on the key/HWID face (`prod_…`).
    ProductId,
    /// A license, called key on the key/HWID face (`lic_…`).
    LicenseId,
    /// A person who signs in to the admin panel.
    OperatorId,
    /// A server-to-server credential.
    ApiKeyId,
    /// A release of a product.
    ReleaseId,
    /// An end user of a product's portal.
    PortalUserId,
    /// An abuse flag.
    FlagId,
    /// An endpoint that receives a payment provider's webhooks (`payep_…`).
    PaymentEndpointId,
);

/// Which tenants a caller reaches. Replaces `Option<&str>`, where `None` silently meant "every
/// tenant": reaching all of them now has to be said by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantScope {
    /// Every tenant (ADMIN operators, the operator CLI, background jobs).
    All,
    /// One tenant.
    Only(TenantId),
}

impl TenantScope {
    pub fn reaches(&self, tenant_id: &str) -> bool {
        match self {
            TenantScope::All => true,
            TenantScope::Only(t) => t.as_str() == tenant_id,
        }
    }

    /// The SQL filter form the repos take: `None` is every tenant.
    pub fn filter(&self) -> Option<&str> {
        match self {
            TenantScope::All => None,
            TenantScope::Only(t) => Some(t.as_str()),
        }
    }
}

/// Which products, within the tenants it reaches, a caller reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProductScope {
    All,
    /// A product-restricted API key, or a portal user: one product and nothing else.
    Only(ProductId),
}

impl ProductScope {
    pub fn reaches(&self, product_id: &str) -> bool {
        match self {
            ProductScope::All => true,
            ProductScope::Only(p) => p.as_str() == product_id,
        }
    }

    pub fn filter(&self) -> Option<&str> {
        match self {
            ProductScope::All => None,
            ProductScope::Only(p) => Some(p.as_str()),
        }
    }
}
