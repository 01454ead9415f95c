//! NOTIFY (RFC 1996): after every change (debounced), each secondary is told the new serial over UDP, signed with
//! its TSIG key, and retried with exponential backoff until it answers with an answer signed with the same key
//! over our request (RFC 8945 §5.3.1; an unsigned or wrongly signed answer counts as no answer); a new change
//! during the backoff is announced promptly (and starts the backoff over).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::watch;

use super::Transfers;
use super::content::Packer;
use super::tsig::{self, Signer};
use crate::dns::wire::rtype;

/// Announces changes to secondary `index` until `changes` closes (the zone writer was dropped).
pub(super) async fn run(t: Arc<Transfers>, index: usize, mut changes: watch::Receiver<u64>) {
    let secondary = &t.secondaries[index];
    let n = &t.notify;
    loop {
        if changes.changed().await.is_err() {
            return;
        }
        // Batch the changes of the next moment into one NOTIFY.
        tokio::time::sleep(Duration::from_millis(n.debounce_ms)).await;
        changes.borrow_and_update();
        let mut backoff = Duration::from_millis(n.initial_backoff_ms);
        let mut attempt = 1u32;
        loop {
            let result = match t.serial_for(secondary).await {
                Ok(serial) => send(&t, index, serial).await.map(|()| serial),
                Err(e) => Err(format!("reading the serial: {e}")),
            };
            match result {
                Ok(serial) => {
                    t.counters.notify_sent();
                    tracing::info!(secondary = %secondary.name, serial, attempt, "NOTIFY acknowledged");
                    break;
                }
                Err(e) => {
                    tracing::warn!(secondary = %secondary.name, attempt, error = %e, retry_in_ms = backoff.as_millis() as u64,
                        "NOTIFY not acknowledged");
                }
            }
            // Wait out the backoff, but a new change is worth a prompt attempt (its serial is read again then).
            let changed = tokio::select! {
                () = tokio::time::sleep(backoff) => false,
                r = changes.changed() => {
                    if r.is_err() {
                        return;
                    }
                    true
                }
            };
            if changed {
                tokio::time::sleep(Duration::from_millis(n.debounce_ms)).await;
                changes.borrow_and_update();
                backoff = Duration::from_millis(n.initial_backoff_ms);
            } else {
                backoff = (backoff * 2).min(Duration::from_millis(n.max_backoff_ms));
            }
            attempt += 1;
        }
    }
}

/// Sends one NOTIFY for `serial` and waits for the matching answer.
async fn send(t: &Transfers, index: usize, serial: u32) -> Result<(), String> {
    let secondary = &t.secondaries[index];
    let to: SocketAddr = secondary.config.address;
    let bind: SocketAddr = if to.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
    let sock = UdpSocket::bind(bind).await.map_err(|e| format!("binding a UDP socket: {e}"))?;
    let id: u16 = rand_id();
    let mut p = Packer::new(id, false, &t.apex_wire, rtype::SOA);
    let _ = p.push(&t.records.soa(serial));
    let mut msg = p.take().expect("one record");
    // Opcode NOTIFY (4), AA set, not a response (RFC 1996 §3.7).
    let flags: u16 = (4 << 11) | 0x0400;
    msg[2..4].copy_from_slice(&flags.to_be_bytes());
    let now = t.clock.unix_seconds();
    let key = &t.tsig_keys[index];
    let mut signer = Signer::new(key, None, id, now, 0);
    signer.sign(&mut msg);
    let mac = signer.last_mac().expect("just signed").to_vec();
    sock.send_to(&msg, to).await.map_err(|e| format!("sending to {to}: {e}"))?;
    let wait = Duration::from_millis(t.notify.timeout_ms);
    let mut buf = vec![0u8; 4096];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let (len, from) = tokio::time::timeout_at(deadline, sock.recv_from(&mut buf))
            .await
            .map_err(|_| format!("no answer from {to} within {} ms", wait.as_millis()))?
            .map_err(|e| format!("receiving: {e}"))?;
        let r = &buf[..len];
        if from != to || len < 12 || u16::from_be_bytes([r[0], r[1]]) != id {
            continue;
        }
        let flags = u16::from_be_bytes([r[2], r[3]]);
        let (response, opcode, rcode) = (flags & 0x8000 != 0, (flags >> 11) & 0xF, flags & 0xF);
        if !response || opcode != 4 {
            continue;
        }
        // An answer not signed with the secondary's key over our request proves nothing: a failed attempt.
        if let Err(e) = tsig::verify_answer(r, key, &mac, t.clock.unix_seconds()) {
            return Err(format!("{to} answered rcode {rcode}, but {e}"));
        }
        return if rcode == 0 { Ok(()) } else { Err(format!("{to} answered rcode {rcode}")) };
    }
}

fn rand_id() -> u16 {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut b = [0u8; 2];
    let _ = SystemRandom::new().fill(&mut b);
    u16::from_be_bytes(b)
}
