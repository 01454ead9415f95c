//! The sign-in pages: server-rendered HTML forms (no JavaScript), sized for phones, every string from
//! [`Strings`] so a translation is one more table.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

/// Every text the pages show.
#[derive(Debug, Clone, Copy)]
pub struct Strings {
    /// `<html lang>`.
    pub lang: &'static str,
    /// Page title.
    pub title: &'static str,
    /// Above the number field.
    pub phone_intro: &'static str,
    /// Label of the number field.
    pub phone_label: &'static str,
    /// Placeholder of the number field.
    pub phone_placeholder: &'static str,
    /// Button sending the SMS.
    pub send_code: &'static str,
    /// Above the code field; `{number}` is replaced.
    pub code_intro: &'static str,
    /// Label of the code field.
    pub code_label: &'static str,
    /// Button checking the code.
    pub continue_: &'static str,
    /// Button sending another SMS.
    pub resend: &'static str,
    /// Link back to the number form.
    pub other_number: &'static str,
    /// The number does not parse.
    pub err_invalid_number: &'static str,
    /// Country not allowed, blocked or premium-rate number.
    pub err_refused_number: &'static str,
    /// A limit was hit; `{minutes}` is replaced.
    pub err_rate_limited: &'static str,
    /// Wrong code.
    pub err_wrong_code: &'static str,
    /// Too many wrong codes for this SMS.
    pub err_locked: &'static str,
    /// The code expired.
    pub err_expired: &'static str,
    /// The SMS could not be sent.
    pub err_sms_failed: &'static str,
    /// The sign-in page expired or belongs to another browser.
    pub err_session_gone: &'static str,
    /// The app sent an invalid request (unknown client or redirect URI).
    pub err_bad_request: &'static str,
    /// Anything else.
    pub err_server: &'static str,
    /// Label of the registration-lock PIN field.
    pub pin_label: &'static str,
    /// The account has a registration lock: the PIN is needed too.
    pub err_registration_locked: &'static str,
    /// Wrong registration-lock PIN.
    pub err_wrong_pin: &'static str,
}

/// English.
pub const EN: Strings = Strings {
    lang: "en",
    title: "Sign in with your phone number",
    phone_intro: "Enter your phone number. We will send you a code by SMS.",
    phone_label: "Phone number (with country code)",
    phone_placeholder: "+44 7700 900123",
    send_code: "Send code",
    code_intro: "We sent a 6-digit code to {number}.",
    code_label: "Code",
    continue_: "Continue",
    resend: "Send a new code",
    other_number: "Use another number",
    err_invalid_number: "This is not a valid phone number. Include the country code, like +44.",
    err_refused_number: "This phone number cannot be used here.",
    err_rate_limited: "Too many attempts. Try again in {minutes} minutes.",
    err_wrong_code: "That code is not right. Check the SMS and try again.",
    err_locked: "Too many wrong codes. Ask for a new code.",
    err_expired: "This code has expired. Ask for a new code.",
    err_sms_failed: "We could not send the SMS. Try again later.",
    err_session_gone: "This sign-in page has expired. Go back to your app and start again.",
    err_bad_request: "The app that sent you here made an invalid request.",
    err_server: "Something went wrong on our side. Try again later.",
    pin_label: "Registration lock PIN",
    err_registration_locked: "This number has a registration lock. Enter your PIN with the code.",
    err_wrong_pin: "That PIN is not right.",
};

pub use tincan_common::html::escape;

fn layout(t: &Strings, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"{lang}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"referrer\" content=\"no-referrer\">\
         <title>{title}</title><style>\
         body{{font-family:system-ui,sans-serif;margin:0;padding:1.5rem;max-width:26rem;margin-inline:auto;line-height:1.4}}\
         h1{{font-size:1.4rem}}label{{display:block;margin:1rem 0 .3rem;font-weight:600}}\
         input[type=tel],input[inputmode=numeric]{{width:100%;box-sizing:border-box;font-size:1.2rem;padding:.6rem}}\
         button{{width:100%;font-size:1.1rem;padding:.7rem;margin-top:1rem}}\
         .error{{color:#a00;background:#fee;padding:.6rem;border-radius:.3rem}}.link{{background:none;border:none;color:#06c;text-decoration:underline}}\
         </style></head><body><h1>{title}</h1>{body}</body></html>",
        lang = t.lang,
        title = escape(t.title),
    )
}

fn error_box(error: Option<&str>) -> String {
    error.map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e))).unwrap_or_default()
}

/// The number form.
pub fn phone(t: &Strings, base: &str, req: &str, error: Option<&str>, number: &str) -> String {
    layout(
        t,
        &format!(
            "{err}<p>{intro}</p><form method=\"post\" action=\"{base}/oauth2/authorize/phone\">\
             <input type=\"hidden\" name=\"req\" value=\"{req}\">\
             <label for=\"phone\">{label}</label>\
             <input id=\"phone\" name=\"phone\" type=\"tel\" autocomplete=\"tel\" required value=\"{number}\" placeholder=\"{ph}\">\
             <button type=\"submit\">{send}</button></form>",
            err = error_box(error),
            intro = escape(t.phone_intro),
            base = escape(base),
            req = escape(req),
            label = escape(t.phone_label),
            number = escape(number),
            ph = escape(t.phone_placeholder),
            send = escape(t.send_code),
        ),
    )
}

/// The code form (with the registration-lock PIN field when `pin`), with "send again" and "other number".
pub fn code(t: &Strings, base: &str, req: &str, error: Option<&str>, number: &str, pin: bool) -> String {
    let pin_field = if pin {
        format!(
            "<label for=\"pin\">{}</label><input id=\"pin\" name=\"pin\" type=\"password\" autocomplete=\"off\" required>",
            escape(t.pin_label)
        )
    } else {
        String::new()
    };
    layout(
        t,
        &format!(
            "{err}<p>{intro}</p><form method=\"post\" action=\"{base}/oauth2/authorize/code\">\
             <input type=\"hidden\" name=\"req\" value=\"{req}\">\
             <label for=\"code\">{label}</label>\
             <input id=\"code\" name=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\" pattern=\"[0-9 ]*\" maxlength=\"8\" required>\
             {pin_field}<button type=\"submit\">{cont}</button></form>\
             <form method=\"post\" action=\"{base}/oauth2/authorize/phone\">\
             <input type=\"hidden\" name=\"req\" value=\"{req}\"><input type=\"hidden\" name=\"phone\" value=\"{number}\">\
             <button type=\"submit\" class=\"link\">{resend}</button></form>\
             <form method=\"post\" action=\"{base}/oauth2/authorize/phone\">\
             <input type=\"hidden\" name=\"req\" value=\"{req}\">\
             <button type=\"submit\" class=\"link\">{other}</button></form>",
            err = error_box(error),
            intro = escape(&t.code_intro.replace("{number}", number)),
            base = escape(base),
            req = escape(req),
            label = escape(t.code_label),
            cont = escape(t.continue_),
            number = escape(number),
            resend = escape(t.resend),
            other = escape(t.other_number),
        ),
    )
}

/// A page that only shows an error (nothing to go back to).
pub fn error(t: &Strings, status: StatusCode, message: &str) -> Response {
    let html = layout(t, &error_box(Some(message)));
    (status, no_store(), Html(html)).into_response()
}

/// Sign-in pages and token answers are never cached.
pub fn no_store() -> [(axum::http::HeaderName, &'static str); 2] {
    [(axum::http::header::CACHE_CONTROL, "no-store"), (axum::http::header::PRAGMA, "no-cache")]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_text_is_escaped() {
        let html = phone(&EN, "", "r\"><script>", Some("<b>"), "+44\"<x>");
        assert!(!html.contains("<script>") && !html.contains("<b>") && !html.contains("\"<x>"));
        assert!(html.contains("&lt;script&gt;") && html.contains("name=\"viewport\""));
    }
}
