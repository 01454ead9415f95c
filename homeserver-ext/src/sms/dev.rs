//! Dev sink: logs the code and appends `{"to","text"}` JSON lines to a file that `dev/up` shows.

use super::{SmsError, SmsSender};
use crate::number::E164;
use std::io::Write;
use std::path::PathBuf;

/// Writes messages to a file instead of sending them. Never use in production: it logs codes.
#[derive(Debug)]
pub struct DevSink {
    path: PathBuf,
    lock: std::sync::Mutex<()>,
}

impl DevSink {
    /// A sink appending to `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into(), lock: std::sync::Mutex::new(()) }
    }
}

#[async_trait::async_trait]
impl SmsSender for DevSink {
    async fn send(&self, to: &E164, text: &str) -> Result<(), SmsError> {
        tracing::warn!(to = %to.redacted(), %text, "dev SMS sink (not sent)");
        let line = serde_json::json!({"to": to.as_str(), "text": text}).to_string();
        let _guard = self.lock.lock().expect("dev sink lock");
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&self.path)?;
        writeln!(f, "{line}")?;
        Ok(())
    }
}
