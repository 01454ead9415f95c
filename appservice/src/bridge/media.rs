//! Attachments both ways: `m.image`, `m.file`, `m.audio`, `m.video`.
//!
//! - **Matrix → network.** The attachment is downloaded as the portal's ghost through the authenticated media
//!   API (`/_matrix/client/v1/media/download`), refused beyond `media.max_bytes` (the size the event declares
//!   first, then the bytes as they stream), and, in an encrypted room (`file`, an `EncryptedFile`), decrypted
//!   with matrix-sdk-crypto's attachment decryption (AES-256-CTR, the SHA-256 of the ciphertext checked).
//! - **Network → Matrix.** The bytes are uploaded as the ghost (`/_matrix/media/v3/upload`); in an encrypted
//!   room they are encrypted first (a fresh key per file) and the event carries `file` instead of `url`. The
//!   event itself is then encrypted like any other the ghost sends.

use super::{BridgeError, BridgeHandle, Result};
use crate::connector::{ConnectorError, Media, MediaKind};
use crate::homeserver::DownloadError;
use matrix_sdk_crypto::{AttachmentDecryptor, AttachmentEncryptor, MediaEncryptionInfo};
use ruma::api::client::media::create_content;
use ruma::events::AnyMessageLikeEventContent;
use ruma::events::room::message::MessageType;
use ruma::events::room::{EncryptedFile, MediaSource};
use ruma::serde::Raw;
use ruma::{RoomId, UserId};
use serde_json::json;
use std::io::Read;

/// What an attachment message carries besides its bytes.
struct Attachment<'a> {
    source: &'a MediaSource,
    mimetype: Option<String>,
    size: Option<u64>,
    filename: String,
}

fn attachment(msgtype: &MessageType) -> Option<Attachment<'_>> {
    let size = |s: Option<ruma::UInt>| s.map(u64::from);
    Some(match msgtype {
        MessageType::Image(c) => Attachment {
            source: &c.source,
            mimetype: c.info.as_ref().and_then(|i| i.mimetype.clone()),
            size: size(c.info.as_ref().and_then(|i| i.size)),
            filename: c.filename().to_owned(),
        },
        MessageType::File(c) => Attachment {
            source: &c.source,
            mimetype: c.info.as_ref().and_then(|i| i.mimetype.clone()),
            size: size(c.info.as_ref().and_then(|i| i.size)),
            filename: c.filename().to_owned(),
        },
        MessageType::Audio(c) => Attachment {
            source: &c.source,
            mimetype: c.info.as_ref().and_then(|i| i.mimetype.clone()),
            size: size(c.info.as_ref().and_then(|i| i.size)),
            filename: c.filename().to_owned(),
        },
        MessageType::Video(c) => Attachment {
            source: &c.source,
            mimetype: c.info.as_ref().and_then(|i| i.mimetype.clone()),
            size: size(c.info.as_ref().and_then(|i| i.size)),
            filename: c.filename().to_owned(),
        },
        _ => return None,
    })
}

fn too_large(max: u64) -> ConnectorError {
    ConnectorError::Rejected(format!("the attachment is larger than this bridge's limit of {}", human(max)))
}

fn human(bytes: u64) -> String {
    if bytes >= 1024 * 1024 { format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0)) } else { format!("{bytes} bytes") }
}

/// The attachment of `msgtype`, fetched as `ghost` and decrypted; `None` when the message has none. Failures
/// are connector errors, so that the core reports them on the message like the network's refusals.
pub(crate) async fn fetch(
    bridge: &BridgeHandle,
    ghost: &UserId,
    msgtype: &MessageType,
) -> Result<Option<Media>, ConnectorError> {
    let Some(a) = attachment(msgtype) else { return Ok(None) };
    let max = bridge.0.media_max_bytes;
    if a.size.is_some_and(|s| s > max) {
        return Err(too_large(max));
    }
    let mxc = match a.source {
        MediaSource::Plain(url) => url,
        MediaSource::Encrypted(file) => &file.url,
    };
    // An encrypted file is no bigger than its plaintext (AES-CTR).
    let fetched = bridge.0.hs.download(mxc, ghost, max).await.map_err(|e| match e {
        DownloadError::TooLarge { max } => too_large(max),
        DownloadError::Homeserver(e) => {
            tracing::warn!(error = %e, %mxc, "downloading an attachment failed");
            ConnectorError::Temporary(format!("the attachment could not be fetched from the homeserver: {e}"))
        }
    })?;
    let data = match a.source {
        MediaSource::Plain(_) => fetched,
        MediaSource::Encrypted(file) => decrypt(fetched, file)?,
    };
    bridge.0.metrics.inc(&bridge.0.metrics.media_in);
    Ok(Some(Media { mimetype: a.mimetype, filename: a.filename, data }))
}

/// Decrypts an encrypted attachment (the hash of the ciphertext checked).
pub(crate) fn decrypt(ciphertext: Vec<u8>, file: &EncryptedFile) -> Result<Vec<u8>, ConnectorError> {
    let refused = |why: String| ConnectorError::Rejected(format!("the attachment could not be decrypted: {why}"));
    let mut input = std::io::Cursor::new(ciphertext);
    let info = MediaEncryptionInfo::from(file.clone());
    let mut decryptor = AttachmentDecryptor::new(&mut input, info).map_err(|e| refused(e.to_string()))?;
    let mut plain = Vec::new();
    decryptor.read_to_end(&mut plain).map_err(|e| refused(e.to_string()))?;
    Ok(plain)
}

/// Encrypts an attachment with a fresh key; the ciphertext and what decrypts it (without the URL yet).
pub(crate) fn encrypt(plain: &[u8]) -> std::io::Result<(Vec<u8>, MediaEncryptionInfo)> {
    let mut input = std::io::Cursor::new(plain);
    let mut encryptor = AttachmentEncryptor::new(&mut input);
    let mut ciphertext = Vec::with_capacity(plain.len());
    encryptor.read_to_end(&mut ciphertext)?;
    Ok((ciphertext, encryptor.finish()))
}

/// Uploads `media` as `ghost` for `room` (encrypted when the room is) and returns the `m.room.message`
/// content of `kind` that shows it.
pub(crate) async fn content(
    bridge: &BridgeHandle,
    room: &RoomId,
    ghost: &UserId,
    kind: MediaKind,
    media: &Media,
    caption: Option<&str>,
) -> Result<Raw<AnyMessageLikeEventContent>> {
    let encrypted = match &bridge.0.crypto {
        Some(crypto) => crypto.room_encryption(bridge, ghost, room).await?.is_some(),
        None => false,
    };
    let mut info = json!({"size": media.data.len()});
    if let Some(m) = &media.mimetype {
        info["mimetype"] = json!(m);
    }
    let mut c = json!({
        "msgtype": kind.msgtype(),
        "body": caption.unwrap_or(&media.filename),
        "filename": media.filename,
        "info": info,
    });
    if encrypted {
        let (ciphertext, keys) = encrypt(&media.data).map_err(|e| BridgeError::Encode(e.to_string()))?;
        let mut req = create_content::v3::Request::new(ciphertext);
        req.content_type = Some("application/octet-stream".into());
        let url = bridge.0.hs.send(req, Some(ghost)).await?.content_uri;
        let file = EncryptedFile::new(url, keys.encryption_info, keys.hashes);
        c["file"] = serde_json::to_value(&file).map_err(|e| BridgeError::Encode(e.to_string()))?;
    } else {
        let mut req = create_content::v3::Request::new(media.data.clone());
        req.content_type = media.mimetype.clone();
        req.filename = Some(media.filename.clone());
        c["url"] = json!(bridge.0.hs.send(req, Some(ghost)).await?.content_uri);
    }
    bridge.0.metrics.inc(&bridge.0.metrics.media_out);
    let raw = serde_json::value::to_raw_value(&c).map_err(|e| BridgeError::Encode(e.to_string()))?;
    Ok(Raw::from_json(raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachments_round_trip_and_a_changed_byte_is_refused() {
        let plain = b"\x89PNG\r\n\x1a\n not really an image".to_vec();
        let (ciphertext, keys) = encrypt(&plain).unwrap();
        assert_ne!(ciphertext, plain);
        let file = EncryptedFile::new("mxc://hs.test/abc".into(), keys.encryption_info, keys.hashes);
        // Through its JSON form, as it travels in an event.
        let file: EncryptedFile = serde_json::from_value(serde_json::to_value(&file).unwrap()).unwrap();
        assert_eq!(decrypt(ciphertext.clone(), &file).unwrap(), plain);
        let mut tampered = ciphertext;
        tampered[3] ^= 1;
        let err = decrypt(tampered, &file).unwrap_err();
        assert!(matches!(err, ConnectorError::Rejected(m) if m.contains("could not be decrypted")));
    }
}
