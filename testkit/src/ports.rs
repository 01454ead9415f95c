//! Free loopback ports without races between parallel tests.
//!
//! nextest runs every test in its own process, so an in-process set is not enough. A port is handed out only
//! when (a) the OS lets us bind it on TCP and UDP (so nothing uses it now) and (b) we win an exclusive lock on
//! `$TMPDIR/tincan-testkit-ports/<port>.lock`, held until this process exits. Every testkit user goes through
//! the same lock files, so two tests never get the same port even after the probe sockets are closed.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

fn held() -> &'static Mutex<HashMap<u16, File>> {
    static HELD: OnceLock<Mutex<HashMap<u16, File>>> = OnceLock::new();
    HELD.get_or_init(Default::default)
}

fn lock_dir() -> PathBuf {
    let dir = std::env::temp_dir().join("tincan-testkit-ports");
    std::fs::create_dir_all(&dir).expect("create port lock dir");
    dir
}

/// A port free on 127.0.0.1 for both TCP and UDP, reserved for the rest of this process's life.
pub fn free_port() -> u16 {
    for _ in 0..200 {
        let Ok(tcp) = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)) else { continue };
        let port = tcp.local_addr().expect("local addr").port();
        if UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_err() {
            continue;
        }
        if reserve(port) {
            return port;
        }
    }
    panic!("no free loopback port found after 200 tries");
}

/// Several distinct free ports.
pub fn free_ports<const N: usize>() -> [u16; N] {
    std::array::from_fn(|_| free_port())
}

/// `127.0.0.1:<free port>`.
pub fn free_addr() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()))
}

fn reserve(port: u16) -> bool {
    let mut held = held().lock().unwrap();
    if held.contains_key(&port) {
        return false;
    }
    let path = lock_dir().join(format!("{port}.lock"));
    let Ok(file) = OpenOptions::new().create(true).truncate(false).write(true).open(&path) else { return false };
    match file.try_lock() {
        Ok(()) => {
            held.insert(port, file);
            true
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_and_bindable() {
        let ports = free_ports::<20>();
        let mut sorted = ports.to_vec();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 20);
        for p in ports {
            TcpListener::bind((Ipv4Addr::LOCALHOST, p)).unwrap();
            UdpSocket::bind((Ipv4Addr::LOCALHOST, p)).unwrap();
        }
    }

    #[test]
    fn a_port_locked_by_another_process_is_skipped() {
        // Simulate another process holding a port: lock its file through a second handle.
        let port = free_port();
        let other = OpenOptions::new().write(true).open(lock_dir().join(format!("{port}.lock"))).unwrap();
        assert!(other.try_lock().is_err(), "the reservation must hold an exclusive lock");
    }
}
