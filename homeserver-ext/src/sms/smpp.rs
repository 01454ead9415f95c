//! SMPP to an SMSC with rusmppc: one transmitter bind, opened on first use and re-opened after a failure.
//!
//! Connecting and binding is bounded by `sms.smpp_connect_timeout_secs`, and so is waiting for another
//! request's connect: a slow or silent SMSC fails sign-ups quickly instead of queueing them all behind one
//! lock. Messages are submitted outside the lock, so concurrent sign-ups share the bind.

use super::{SmsError, SmsSender};
use crate::config::SmsConfig;
use crate::number::E164;
use futures::StreamExt;
use rusmpp::pdus::{BindTransmitter, SubmitSm};
use rusmpp::types::{COctetString, OctetString};
use rusmpp::values::{DataCoding, EsmClass, InterfaceVersion, Npi, RegisteredDelivery, ServiceType, Ton};
use rusmppc::{Client, ConnectionBuilder};
use std::str::FromStr;
use std::time::Duration;
use tincan_common::Secret;
use tokio::sync::Mutex;

/// Sends SMS as `submit_sm` over one bound SMPP session.
#[derive(Debug)]
pub struct SmppSender {
    address: String,
    system_id: String,
    password: Secret,
    system_type: String,
    source_addr: String,
    connect_timeout: Duration,
    /// The current bind, with a generation number so a failed request forgets only the bind it used.
    client: Mutex<(u64, Option<Client>)>,
}

impl SmppSender {
    /// A sender for the configured SMSC; connects on first use.
    pub fn new(config: &SmsConfig) -> Self {
        Self {
            address: config.smpp_address.clone(),
            system_id: config.smpp_system_id.clone(),
            password: config.smpp_password.clone(),
            system_type: config.smpp_system_type.clone(),
            source_addr: config.smpp_source_addr.clone(),
            connect_timeout: Duration::from_secs(config.smpp_connect_timeout_secs.max(1)),
            client: Mutex::new((0, None)),
        }
    }

    async fn connect(&self) -> Result<Client, SmsError> {
        let (client, mut events) = ConnectionBuilder::new()
            .enquire_link_interval(Duration::from_secs(30))
            .response_timeout(Duration::from_secs(10))
            // We bind as SMPP 3.4 (what SMSCs commonly speak); rusmppc otherwise insists on 5.0.
            .disable_interface_version_check()
            .connect(format!("smpp://{}", self.address))
            .await?;
        // Nothing is expected from a transmitter bind; drain the stream so the connection never stalls.
        tokio::spawn(async move {
            while let Some(event) = events.next().await {
                tracing::debug!(?event, "SMPP event");
            }
        });
        let bind = BindTransmitter::builder()
            .system_id(c_octet(&self.system_id, "system_id")?)
            .password(c_octet(self.password.expose(), "password")?)
            .system_type(c_octet(&self.system_type, "system_type")?)
            .interface_version(InterfaceVersion::Smpp3_4)
            .addr_ton(Ton::Unknown)
            .addr_npi(Npi::Unknown)
            .address_range(COctetString::empty())
            .build();
        client.bind_transmitter(bind).await?;
        Ok(client)
    }

    fn submit(&self, to: &E164, text: &str) -> Result<SubmitSm, SmsError> {
        let (data_coding, bytes) = encode(text);
        if bytes.len() > 140 && data_coding == DataCoding::Ucs2 || bytes.len() > 160 {
            return Err(SmsError::TooLong(bytes.len()));
        }
        let alphanumeric = !self.source_addr.chars().all(|c| c.is_ascii_digit() || c == '+');
        let (src_ton, src_npi) =
            if alphanumeric { (Ton::Alphanumeric, Npi::Unknown) } else { (Ton::International, Npi::Isdn) };
        Ok(SubmitSm::builder()
            .service_type(ServiceType::default())
            .source_addr_ton(src_ton)
            .source_addr_npi(src_npi)
            .source_addr(c_octet(self.source_addr.trim_start_matches('+'), "source_addr")?)
            .dest_addr_ton(Ton::International)
            .dest_addr_npi(Npi::Isdn)
            .destination_addr(c_octet(to.digits(), "destination_addr")?)
            // rusmpp's EsmClass::default() is 0x08 (ANSI-41 delivery acknowledgement): say "normal message".
            .esm_class(plain_esm_class())
            .registered_delivery(RegisteredDelivery::default())
            .data_coding(data_coding)
            .short_message(OctetString::from_vec(bytes.clone()).map_err(|_| SmsError::TooLong(bytes.len()))?)
            .build())
    }
}

/// esm_class 0x00: default messaging mode, normal message, no GSM features.
pub(crate) fn plain_esm_class() -> EsmClass {
    EsmClass::from(0u8)
}

/// ASCII goes as the SMSC default alphabet; anything else as UCS-2 (UTF-16BE).
fn encode(text: &str) -> (DataCoding, Vec<u8>) {
    if text.is_ascii() {
        (DataCoding::McSpecific, text.as_bytes().to_vec())
    } else {
        (DataCoding::Ucs2, text.encode_utf16().flat_map(|u| u.to_be_bytes()).collect())
    }
}

fn c_octet<const MIN: usize, const MAX: usize>(
    s: &str,
    field: &'static str,
) -> Result<COctetString<MIN, MAX>, SmsError> {
    if s.is_empty() && MIN <= 1 {
        return Ok(COctetString::empty());
    }
    COctetString::from_str(s).map_err(|_| SmsError::SmppField(field))
}

impl SmppSender {
    /// The bound client: the current one, or a new connection made within the connect timeout (waiting for the
    /// lock counts against it too).
    async fn bound(&self) -> Result<(u64, Client), SmsError> {
        let deadline = tokio::time::Instant::now() + self.connect_timeout;
        let timeout = SmsError::Timeout(self.connect_timeout);
        let mut slot = tokio::time::timeout_at(deadline, self.client.lock()).await.map_err(|_| timeout)?;
        if let (generation, Some(c)) = &*slot
            && c.is_active()
        {
            return Ok((*generation, c.clone()));
        }
        let client = tokio::time::timeout_at(deadline, self.connect())
            .await
            .map_err(|_| SmsError::Timeout(self.connect_timeout))??;
        let generation = slot.0 + 1;
        *slot = (generation, Some(client.clone()));
        Ok((generation, client))
    }

    /// Forgets the bind of `generation` if it is still the current one, and closes it.
    async fn drop_client(&self, generation: u64, client: Client) {
        let mut slot = self.client.lock().await;
        if slot.0 == generation {
            slot.1 = None;
        }
        drop(slot);
        let _ = client.close().await;
    }
}

#[async_trait::async_trait]
impl SmsSender for SmppSender {
    async fn send(&self, to: &E164, text: &str) -> Result<(), SmsError> {
        let submit = self.submit(to, text)?;
        // One retry on a fresh connection: the SMSC may have dropped an idle bind.
        for attempt in 0..2 {
            let (generation, client) = self.bound().await?;
            match client.submit_sm(submit.clone()).await {
                Ok(resp) => {
                    tracing::info!(to = %to.redacted(), message_id = %resp.message_id(), "SMS accepted by SMSC");
                    return Ok(());
                }
                Err(e) if attempt == 0 => {
                    tracing::warn!(error = %e, "SMPP submit failed; reconnecting");
                    self.drop_client(generation, client).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        unreachable!("the loop returns on its second attempt")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn esm_class_is_zero() {
        assert_eq!(u8::from(plain_esm_class()), 0);
    }

    #[test]
    fn encodes_ascii_and_ucs2() {
        assert_eq!(encode("123456"), (DataCoding::McSpecific, b"123456".to_vec()));
        let (dc, bytes) = encode("Код 1");
        assert_eq!(dc, DataCoding::Ucs2);
        assert_eq!(bytes.len(), 10);
    }
}
