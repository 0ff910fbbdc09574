//! Request-body fields report their own name when they are missing or of the wrong type
//! (poem-openapi alone only names the object). Used through `deserialize_with`.
use poem_openapi::types::{ParseError, ParseFromJSON, ParseResult};
use serde_json::Value;

pub trait FieldName {
    const NAME: &'static str;
}

pub fn named<F: FieldName, T: ParseFromJSON>(value: Option<Value>) -> ParseResult<T> {
    let missing = matches!(value, None | Some(Value::Null));
    // poem-openapi turns numbers and booleans into strings (`"machineId": 12345678` would
    // activate machine "12345678"); the contract says string, so a wrong type is refused.
    if let Some(found @ (Value::Number(_) | Value::Bool(_))) = &value
        && expects_string::<T>()
    {
        let kind = if found.is_number() {
            "number"
        } else {
            "boolean"
        };
        return Err(ParseError::custom(format!(
            "field `{}`: expected a string, found a {kind}",
            F::NAME
        )));
    }
    T::parse_from_json(value).map_err(|e| {
        if missing {
            ParseError::custom(format!("field `{}` is required", F::NAME))
        } else {
            ParseError::custom(format!("field `{}`: {}", F::NAME, e.into_message()))
        }
    })
}

/// True when `T` (or the `T` inside an `Option`) is a JSON string in the schema, dates
/// included.
fn expects_string<T: ParseFromJSON>() -> bool {
    // By name: building the schema allocates, and this runs for every field of every
    // request. Strings and date-times are "string…", optional ones "optional_string…".
    let name = T::name();
    name.starts_with("string") || name.starts_with("optional_string")
}

/// Declares marker types naming JSON fields: `field_names!(LicenseKey = "licenseKey");`.
#[macro_export]
macro_rules! field_names {
    ($($ty:ident = $name:literal),+ $(,)?) => {
        $(
            pub struct $ty;
            impl $crate::api::shared::fields::FieldName for $ty {
                const NAME: &'static str = $name;
            }
        )+
    };
}
