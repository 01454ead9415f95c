//! A DNS forwarder on loopback in front of the directory's real DNS server, for tests that need to see how many
//! resolutions the extension runs at once: every query (UDP, and TCP after a truncated answer) is held for a
//! fixed delay, forwarded unchanged and its answer sent back unchanged, and the forwarder keeps the most of the
//! owner names it is told to count that had a query in flight at the same moment (one resolution asks for its
//! number's name, NAPTR and TXT at once; other names, such as the apex's keys, are forwarded but not counted).

use hickory_proto::op::Message;
use hickory_proto::rr::Name;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

#[derive(Debug, Default)]
struct Counts {
    /// Queries in flight per owner name.
    in_flight: HashMap<Name, usize>,
    /// The most counted names in flight at once.
    peak: usize,
    /// Queries forwarded.
    queries: usize,
}

/// The forwarder; it stops on drop.
pub struct DnsCounter {
    /// Where to send queries (UDP and TCP).
    pub addr: SocketAddr,
    counts: Arc<Mutex<Counts>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for DnsCounter {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl DnsCounter {
    /// Forwards to `upstream`, holding each query for `delay`, and counts the names in `counted`.
    pub async fn start(upstream: SocketAddr, counted: HashSet<Name>, delay: Duration) -> anyhow::Result<DnsCounter> {
        let counted: Arc<HashSet<Name>> = Arc::new(counted.iter().map(Name::to_lowercase).collect());
        // UDP and TCP on the same port.
        let (udp, tcp) = loop {
            let udp = UdpSocket::bind("127.0.0.1:0").await?;
            if let Ok(tcp) = TcpListener::bind(udp.local_addr()?).await {
                break (Arc::new(udp), tcp);
            }
        };
        let addr = udp.local_addr()?;
        let counts = Arc::new(Mutex::new(Counts::default()));
        let udp_task = tokio::spawn({
            let (counts, counted) = (counts.clone(), counted.clone());
            async move {
                let mut buf = vec![0u8; 65_535];
                while let Ok((n, from)) = udp.recv_from(&mut buf).await {
                    let query = buf[..n].to_vec();
                    let (udp, counts, counted) = (udp.clone(), counts.clone(), counted.clone());
                    tokio::spawn(async move {
                        let Some(name) = held(&counts, &counted, &query, delay).await else { return };
                        let answer = forward_udp(upstream, &query).await;
                        release(&counts, &name);
                        if let Some(answer) = answer {
                            let _ = udp.send_to(&answer, from).await;
                        }
                    });
                }
            }
        });
        let tcp_task = tokio::spawn({
            let counts = counts.clone();
            async move {
                while let Ok((mut conn, _)) = tcp.accept().await {
                    let (counts, counted) = (counts.clone(), counted.clone());
                    tokio::spawn(async move {
                        while let Ok(query) = read_frame(&mut conn).await {
                            let Some(name) = held(&counts, &counted, &query, delay).await else { return };
                            let answer = forward_tcp(upstream, &query).await;
                            release(&counts, &name);
                            let Some(answer) = answer else { return };
                            if write_frame(&mut conn, &answer).await.is_err() {
                                return;
                            }
                        }
                    });
                }
            }
        });
        Ok(DnsCounter { addr, counts, tasks: vec![udp_task, tcp_task] })
    }

    /// The most counted names that had a query in flight at the same moment.
    pub fn peak(&self) -> usize {
        self.counts.lock().unwrap().peak
    }

    /// Queries forwarded so far.
    pub fn queries(&self) -> usize {
        self.counts.lock().unwrap().queries
    }
}

/// Counts `query` in flight under its owner name and holds it for `delay`: the name, `None` when the query does
/// not parse (dropped).
async fn held(counts: &Mutex<Counts>, counted: &HashSet<Name>, query: &[u8], delay: Duration) -> Option<Name> {
    let message = Message::from_vec(query).ok()?;
    let name = message.queries.first()?.name().to_lowercase();
    {
        let mut c = counts.lock().unwrap();
        c.queries += 1;
        *c.in_flight.entry(name.clone()).or_default() += 1;
        let counted_now = c.in_flight.keys().filter(|n| counted.contains(*n)).count();
        c.peak = c.peak.max(counted_now);
    }
    tokio::time::sleep(delay).await;
    Some(name)
}

fn release(counts: &Mutex<Counts>, name: &Name) {
    let mut c = counts.lock().unwrap();
    if let Some(n) = c.in_flight.get_mut(name) {
        *n -= 1;
        if *n == 0 {
            c.in_flight.remove(name);
        }
    }
}

/// The ENUM owner name of `number` (`+E.164`) under `apex`.
pub fn owner_name(number: &str, apex: &str) -> Name {
    let digits: Vec<String> = number.trim_start_matches('+').chars().rev().map(String::from).collect();
    Name::from_ascii(format!("{}.{apex}", digits.join("."))).expect("an ENUM name")
}

/// Whether `server` answers `name`'s NAPTR with at least one record (the directory's DNS serves the number).
pub async fn serves_naptr(server: SocketAddr, name: &Name) -> bool {
    use hickory_proto::op::Query;
    use hickory_proto::rr::RecordType;
    let mut query = Message::query();
    query.add_query(Query::query(name.clone(), RecordType::NAPTR));
    let Ok(bytes) = query.to_vec() else { return false };
    let answer = forward_udp(server, &bytes).await.and_then(|a| Message::from_vec(&a).ok());
    answer.is_some_and(|a| a.answers.iter().any(|r| r.record_type() == RecordType::NAPTR))
}

async fn forward_udp(upstream: SocketAddr, query: &[u8]) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.ok()?;
    socket.send_to(query, upstream).await.ok()?;
    let mut buf = vec![0u8; 65_535];
    let n = tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut buf)).await.ok()?.ok()?;
    buf.truncate(n);
    Some(buf)
}

async fn forward_tcp(upstream: SocketAddr, query: &[u8]) -> Option<Vec<u8>> {
    let mut conn = TcpStream::connect(upstream).await.ok()?;
    write_frame(&mut conn, query).await.ok()?;
    tokio::time::timeout(Duration::from_secs(5), read_frame(&mut conn)).await.ok()?.ok()
}

async fn read_frame(conn: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let len = conn.read_u16().await?;
    let mut buf = vec![0u8; usize::from(len)];
    conn.read_exact(&mut buf).await?;
    Ok(buf)
}

async fn write_frame(conn: &mut TcpStream, message: &[u8]) -> std::io::Result<()> {
    let len = u16::try_from(message.len()).map_err(|_| std::io::Error::other("message over 65535 octets"))?;
    conn.write_u16(len).await?;
    conn.write_all(message).await
}
