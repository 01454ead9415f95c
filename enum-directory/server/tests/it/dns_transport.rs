//! UDP truncation by the client's EDNS size, the same answer whole over TCP, several queries per TCP connection.

use tincan_directory::dns::KeyAlgorithm;
use tincan_enum_core::ServiceType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::dns_support::{DnsServer, owner, record};

fn big_record() -> tincan_enum_core::NumberRecord {
    let uris: Vec<String> = (0..20).map(|i| format!("sip:user{i}-with-a-long-name@sip{i}.provider.example")).collect();
    let services: Vec<(ServiceType, &str)> = uris.iter().map(|u| (ServiceType::Sip, u.as_str())).collect();
    record("+442079460007", &services, None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_over_udp_whole_over_tcp() {
    let s = DnsServer::start_with(vec![big_record()], KeyAlgorithm::EcdsaP256Sha256, None).await;
    let name = owner("+442079460007");
    // No EDNS: 512 octets; +ignore keeps dig from retrying over TCP itself.
    let udp = s.dig(&["+norec", "+noedns", "+ignore", &name, "NAPTR"]).await;
    assert!(udp.contains(" tc"), "{udp}");
    assert!(udp.contains("ANSWER: 0"), "{udp}");
    // EDNS 1232 with DO: still too big (20 NAPTR + RRSIG), truncated.
    let udp = s.dig(&["+norec", "+dnssec", "+bufsize=1232", "+ignore", &name, "NAPTR"]).await;
    assert!(udp.contains(" tc"), "{udp}");
    // Without DO and a large buffer it fits.
    let udp = s.dig(&["+norec", "+dnssec", "+bufsize=4096", "+ignore", &name, "NAPTR"]).await;
    assert!(udp.contains(" tc"), "the server never sends more than 1232 octets over UDP: {udp}");
    let tcp = s.dig(&["+norec", "+dnssec", "+tcp", &name, "NAPTR"]).await;
    assert!(!tcp.contains(" tc") && tcp.contains("ANSWER: 21"), "{tcp}");
    // dig retries over TCP by itself when it sees TC.
    let retried = s.dig(&["+norec", "+noedns", &name, "NAPTR"]).await;
    assert!(retried.contains("ANSWER: 20"), "{retried}");
    assert!(s.metrics.snapshot().truncated >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_queries_on_one_tcp_connection() {
    use tincan_enum_core::hickory_proto::op::{Message, Query};
    use tincan_enum_core::hickory_proto::rr::{Name, RecordType};
    let s = DnsServer::start().await;
    let mut c = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let names = [owner("+442079460001"), owner("+442079460002"), owner("+442079460003")];
    // Pipelined: all three written before reading.
    for (i, n) in names.iter().enumerate() {
        let mut m = Message::query();
        m.metadata.id = i as u16 + 1;
        m.add_query(Query::query(Name::from_ascii(n).unwrap(), RecordType::NAPTR));
        let b = m.to_vec().unwrap();
        c.write_all(&(b.len() as u16).to_be_bytes()).await.unwrap();
        c.write_all(&b).await.unwrap();
    }
    for i in 0..3u16 {
        let len = c.read_u16().await.unwrap();
        let mut b = vec![0; usize::from(len)];
        c.read_exact(&mut b).await.unwrap();
        let m = Message::from_vec(&b).unwrap();
        assert_eq!(m.metadata.id, i + 1);
        assert_eq!(m.answers.len(), [2, 1, 0][usize::from(i)]);
    }
    assert_eq!(s.metrics.snapshot().tcp_queries, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limiting_drops_and_slips_over_udp() {
    use tincan_directory::dns::{RrlConfig, ServerConfig};
    use tincan_enum_core::hickory_proto::op::{Message, Query};
    use tincan_enum_core::hickory_proto::rr::{Name, RecordType};
    let rrl = RrlConfig { responses_per_second: 1, burst: 5, slip: 2, exempt_loopback: false, ..RrlConfig::default() };
    let config = ServerConfig { rrl, ..ServerConfig::default() };
    let s =
        DnsServer::start_configured(crate::dns_support::sample_records(), KeyAlgorithm::EcdsaP256Sha256, None, config)
            .await;
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.connect(s.addr).await.unwrap();
    let mut m = Message::query();
    m.add_query(Query::query(Name::from_ascii(owner("+442079460001")).unwrap(), RecordType::NAPTR));
    let q = m.to_vec().unwrap();
    for _ in 0..25 {
        sock.send(&q).await.unwrap();
    }
    let (mut full, mut truncated) = (0, 0);
    let mut buf = vec![0u8; 4096];
    while let Ok(Ok(n)) = tokio::time::timeout(std::time::Duration::from_millis(500), sock.recv(&mut buf)).await {
        let r = Message::from_vec(&buf[..n]).unwrap();
        if r.metadata.truncation { truncated += 1 } else { full += 1 }
    }
    // 5 from the burst (maybe one more refilled), then every 2nd of the other ~20 slipped, the rest dropped.
    assert!((5..=6).contains(&full), "full answers: {full}");
    assert!((9..=10).contains(&truncated), "slipped: {truncated}");
    let snap = s.metrics.snapshot();
    assert!(snap.rrl_dropped >= 9 && snap.rrl_slipped >= 9, "{snap:?}");
}

/// Threads of this test process named like the server's UDP workers (nextest runs each test in its own process).
fn udp_worker_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("dns-udp-"))
        .count()
}

/// The UDP workers are OS threads: they answer, and they stop and free the port both when the shutdown future
/// resolves and when the server's future is dropped (an aborted task, a test runtime going away).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_worker_threads_answer_and_stop() {
    use std::time::{Duration, Instant};
    use tincan_directory::dns::{self, Metrics, ServerConfig, Zones};
    let config = ServerConfig { udp_workers: 3, ..ServerConfig::default() };
    let records = crate::dns_support::sample_records();
    let s = DnsServer::start_configured(records.clone(), KeyAlgorithm::EcdsaP256Sha256, None, config.clone()).await;
    let out = s.dig(&["+norec", &owner("+442079460002"), "NAPTR"]).await;
    assert!(out.contains("ANSWER: 1") && out.contains("status: NOERROR"), "{out}");
    assert_eq!(udp_worker_threads(), 3);
    let addr = s.addr;
    drop(s);
    let deadline = Instant::now() + Duration::from_secs(2);
    while udp_worker_threads() > 0 || std::net::UdpSocket::bind(addr).is_err() {
        assert!(Instant::now() < deadline, "UDP workers still running or port still bound after shutdown");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let zone =
        crate::dns_support::zone_with(std::sync::Arc::new(tincan_common::SystemClock), KeyAlgorithm::Ed25519, &records);
    let udp = tokio::net::UdpSocket::bind(addr).await.unwrap();
    let tcp = tokio::net::TcpListener::bind(addr).await.unwrap();
    let zones = std::sync::Arc::new(Zones::new(vec![zone]));
    let task = tokio::spawn(dns::server::run(
        zones,
        udp,
        tcp,
        ServerConfig { udp_workers: 2, ..ServerConfig::default() },
        std::sync::Arc::new(Metrics::default()),
        std::future::pending(),
    ));
    while udp_worker_threads() < 2 {
        assert!(Instant::now() < deadline + Duration::from_secs(2), "workers never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    // Dropping the server's future joined the workers and closed the socket.
    assert_eq!(udp_worker_threads(), 0);
    std::net::UdpSocket::bind(addr).expect("the port is free again");
}
