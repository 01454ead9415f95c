//! Zone walking finds nothing: ldns-walk (port 53 only, so the server binds 127.77.0.1:53) reveals no number.

use std::net::SocketAddr;

use tincan_directory::dns::KeyAlgorithm;

use crate::dns_support::{DnsServer, owner, sample_records};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ldns_walk_reveals_no_number() {
    let walk = tincan_testkit::tools::require("ldns-walk");
    let at: SocketAddr = "127.77.0.1:53".parse().unwrap();
    let s = DnsServer::start_with(sample_records(), KeyAlgorithm::EcdsaP256Sha256, Some(at)).await;
    // ldns-walk follows NSEC next names; with compact denial each step only yields `\000.<name>`, so it is
    // bounded in time here and its whole output is checked.
    let child = tokio::process::Command::new(walk)
        .args(["-f", "@127.77.0.1", "e164.tincan.test."])
        .kill_on_drop(true)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = tokio::time::timeout(std::time::Duration::from_secs(10), child.wait_with_output()).await;
    let text = match out {
        Ok(Ok(o)) => format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)),
        _ => String::from("(walk still running after 10 s; killed)"),
    };
    for r in sample_records() {
        let name = owner(r.number.as_str());
        let digits = r.number.digits().to_owned();
        assert!(!text.contains(&name) && !text.contains(&digits), "walk revealed {name}:\n{text}");
    }
    // Partial numbers (empty non-terminals) are not revealed either.
    assert!(!text.contains("4.4.e164.tincan.test"), "{text}");
    assert!(s.metrics.snapshot().udp_queries + s.metrics.snapshot().tcp_queries > 0, "ldns-walk never asked");
}
