//! The OpenAPI 3.1 document of the provider API, generated from the code (`GET /v1/openapi.json`): the
//! request and response types derive their schemas, the handlers their paths.

use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Components, RefOr};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};

/// A string schema with a pattern, a description and an example.
pub(crate) fn string(pattern: &str, description: &str, example: &str) -> RefOr<Schema> {
    RefOr::T(Schema::Object(
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(pattern))
            .description(Some(description))
            .examples([example])
            .build(),
    ))
}

macro_rules! string_schema {
    ($t:ty, $pattern:literal, $description:literal, $example:literal) => {
        impl PartialSchema for $t {
            fn schema() -> RefOr<Schema> {
                string($pattern, $description, $example)
            }
        }
        impl ToSchema for $t {}
    };
}

string_schema!(crate::money::Amount, r"^-?[0-9]+(\.[0-9]{1,6})?$", "An exact decimal amount, as a string.", "1.50");
string_schema!(crate::money::Currency, "^[A-Z]{3}$", "An ISO 4217 currency code.", "EUR");
string_schema!(crate::charging::HoldId, "^h_[0-9]+_[0-9]+$", "A hold's opaque id.", "h_12_345");
string_schema!(
    crate::charging::IdempotencyKey,
    "^[A-Za-z0-9._:-]{1,128}$",
    "Makes a write safe to repeat: the same key answers the first answer.",
    "call-42:settle"
);

impl PartialSchema for crate::charging::AccountId {
    fn schema() -> RefOr<Schema> {
        i64::schema()
    }
}
impl ToSchema for crate::charging::AccountId {}

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Components::new);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The provider API's document.
#[derive(OpenApi)]
#[openapi(
    info(title = "Tincan gateway provider API", description = "Accounts, prepaid charging (quote → reserve → settle/release), rates, credit."),
    modifiers(&Bearer),
    paths(
        crate::api::holds::quote, crate::api::holds::reserve, crate::api::holds::get, crate::api::holds::extend,
        crate::api::holds::settle, crate::api::holds::release,
        crate::api::accounts::create, crate::api::accounts::get, crate::api::accounts::adjust,
        crate::api::accounts::set_limits, crate::api::accounts::set_plan,
        crate::api::me::openid, crate::api::me::me, crate::api::me::my_history, crate::api::me::my_cdrs,
        crate::api::me::history, crate::api::me::cdrs, crate::api::calls::calls, crate::api::calls::my_calls,
        crate::api::rates::rate, crate::api::rates::routes, crate::api::rates::export, crate::api::rates::import,
        crate::api::credit::redeem, crate::api::credit::create_batch, crate::api::credit::stripe,
        crate::api::credit::generic,
    ),
    components(schemas(crate::api::ErrorBody))
)]
pub struct ApiDoc;

/// The document as JSON.
pub fn document() -> String {
    ApiDoc::openapi().to_pretty_json().expect("the document serialises")
}
