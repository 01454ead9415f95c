//! Sending code SMS: one trait, three backends (dev sink, HTTP webhook, SMPP).

mod dev;
#[cfg(feature = "smpp")]
mod smpp;
mod webhook;

pub use dev::DevSink;
#[cfg(feature = "smpp")]
pub use smpp::SmppSender;
pub use webhook::WebhookSender;

use crate::config::{SmsBackend, SmsConfig};
use crate::number::E164;
use std::sync::Arc;

/// Why an SMS could not be handed over.
#[derive(Debug, thiserror::Error)]
pub enum SmsError {
    /// Writing the dev sink file failed.
    #[error("dev SMS sink: {0}")]
    Io(#[from] std::io::Error),
    /// The webhook could not be reached or answered with an error.
    #[error("SMS webhook: {0}")]
    Webhook(#[from] reqwest::Error),
    /// The SMSC could not be reached, refused the bind or the message.
    #[cfg(feature = "smpp")]
    #[error("SMPP: {0}")]
    Smpp(#[from] rusmppc::error::Error),
    /// A configured SMPP field does not fit its PDU field (`system_id` over 15 characters…).
    #[error("SMPP field {0} is malformed or too long")]
    SmppField(&'static str),
    /// The text does not fit one SMS.
    #[error("message too long for one SMS ({0} bytes)")]
    TooLong(usize),
    /// No backend is configured (`sms.backend = "none"`).
    #[error("no SMS backend is configured")]
    NotConfigured,
    /// Connecting and binding to the SMSC took longer than `sms.smpp_connect_timeout_secs`.
    #[error("the SMSC did not bind within {0:?}")]
    Timeout(std::time::Duration),
    /// The backend did not take the message within `sms.send_timeout_secs`.
    #[error("the SMS backend did not take the message within {0:?}")]
    SendTimeout(std::time::Duration),
}

/// Refuses the dev sink unless `serve --dev-sms` asked for it, and warns at every start that it is in use.
pub fn check_dev(config: &SmsConfig, dev_sms: bool) -> Result<(), DevSinkRefused> {
    match (config.backend, dev_sms) {
        (SmsBackend::Dev, false) => Err(DevSinkRefused),
        (SmsBackend::Dev, true) => {
            tracing::warn!(file = %config.dev_file, "sms.backend = \"dev\": codes are NOT sent, they are logged and written to a file; never run this in production");
            Ok(())
        }
        _ => Ok(()),
    }
}

/// `sms.backend = "dev"` without `serve --dev-sms`.
#[derive(Debug, thiserror::Error)]
#[error(
    "sms.backend = \"dev\" writes sign-up codes to a file and the log; start with `serve --dev-sms` to confirm this is a development setup"
)]
pub struct DevSinkRefused;

/// The sender of `sms.backend = "none"`: refuses every message.
#[derive(Debug)]
pub struct NoSender;

#[async_trait::async_trait]
impl SmsSender for NoSender {
    async fn send(&self, _to: &E164, _text: &str) -> Result<(), SmsError> {
        Err(SmsError::NotConfigured)
    }
}

/// Hands one text message to the network.
#[async_trait::async_trait]
pub trait SmsSender: Send + Sync + std::fmt::Debug {
    /// Sends `text` to `to`; returns once the SMSC (or sink) accepted it.
    async fn send(&self, to: &E164, text: &str) -> Result<(), SmsError>;
}

/// Builds the configured backend.
pub fn from_config(config: &SmsConfig) -> Arc<dyn SmsSender> {
    match config.backend {
        SmsBackend::None => Arc::new(NoSender),
        SmsBackend::Dev => Arc::new(DevSink::new(&config.dev_file)),
        SmsBackend::Webhook => Arc::new(WebhookSender::new(&config.webhook_url, config.webhook_token.clone())),
        #[cfg(feature = "smpp")]
        SmsBackend::Smpp => Arc::new(SmppSender::new(config)),
        #[cfg(not(feature = "smpp"))]
        SmsBackend::Smpp => unreachable!("rejected by config validation"),
    }
}

/// Renders the code message. Lines naming `{domain}` are dropped when no WebOTP domain is configured.
pub fn render(template: &str, app: &str, domain: &str, code: &str) -> String {
    let lines: Vec<String> = template
        .split('\n')
        .filter(|l| !(domain.is_empty() && l.contains("{domain}")))
        .map(|l| l.replace("{code}", code).replace("{app}", app).replace("{domain}", domain))
        .collect();
    lines.join("\n").trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "{code} is your {app} code. Do not share it.\n\n@{domain} #{code}";

    #[test]
    fn webotp_line_last() {
        let s = render(T, "Tincan", "chat.example", "123456");
        assert_eq!(s, "123456 is your Tincan code. Do not share it.\n\n@chat.example #123456");
    }

    #[test]
    fn no_domain_no_webotp_line() {
        assert_eq!(render(T, "Tincan", "", "000042"), "000042 is your Tincan code. Do not share it.");
    }
}
