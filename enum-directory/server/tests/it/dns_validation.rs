//! Real validators accept the zone: delv and unbound-host with the zone's DS as trust anchor.

use crate::dns_support::{APEX, DnsServer, owner};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delv_validates_positive_answers() {
    let s = DnsServer::start().await;
    let name = owner("+442079460001");
    let out = s.delv(&name, "NAPTR").await;
    assert!(out.contains("; fully validated"), "{out}");
    assert!(out.contains("E2U+x-matrix") && out.contains("matrix:u/alice:hs.test?action=chat"), "{out}");
    assert!(out.contains("sip:+442079460001@sip.test"), "{out}");
    let out = s.delv(&name, "TXT").await;
    assert!(out.contains("; fully validated") && out.contains("v=tc1; mk="), "{out}");
    let out = s.delv(&owner("+4915112345678"), "NAPTR").await;
    assert!(out.contains("; fully validated") && out.contains("E2U+voice:tel"), "{out}");
    for t in ["SOA", "NS", "DNSKEY"] {
        let out = s.delv(APEX, t).await;
        assert!(out.contains("; fully validated"), "{t}: {out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delv_validates_compact_denial() {
    let s = DnsServer::start().await;
    for (name, t, what) in [
        (owner("+442079460003"), "NAPTR", "unregistered number"),
        (owner("+442079460002"), "TXT", "missing type"),
        ("4.4.e164.tincan.test.".to_owned(), "NAPTR", "empty non-terminal"),
        ("www.e164.tincan.test.".to_owned(), "A", "not a number"),
        (APEX.to_owned(), "TXT", "apex, missing type"),
        (format!("9.{}", owner("+442079460001")), "NAPTR", "below a number"),
    ] {
        let out = s.delv(&name, t).await;
        assert!(out.contains("; negative response, fully validated"), "{what}: {out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delv_validates_ed25519_zone() {
    let s =
        DnsServer::start_with(crate::dns_support::sample_records(), tincan_directory::dns::KeyAlgorithm::Ed25519, None)
            .await;
    let f: Vec<String> = s.ds().split_whitespace().map(str::to_owned).collect();
    assert_eq!(f[4], "15");
    std::fs::write(s.path("anchor.conf"), s.anchor_conf().replace(" 13 2 ", " 15 2 ")).unwrap();
    let out = s.delv(&owner("+442079460001"), "NAPTR").await;
    assert!(out.contains("; fully validated"), "{out}");
    let out = s.delv(&owner("+442079460009"), "NAPTR").await;
    assert!(out.contains("; negative response, fully validated"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dig_shows_compact_denial_shape() {
    let s = DnsServer::start().await;
    let missing = owner("+442079460003");
    let out = s.dig(&["+dnssec", "+norec", &missing, "NAPTR"]).await;
    assert!(out.contains("status: NOERROR"), "{out}");
    assert!(out.contains(" aa"), "{out}");
    assert!(out.contains("ANSWER: 0"), "{out}");
    // One NSEC owned by the query name, next name \000.<qname>, types RRSIG NSEC NXNAME (TYPE128).
    let nsec: Vec<&str> = out.lines().filter(|l| l.contains(" IN NSEC ")).collect();
    assert_eq!(nsec.len(), 1, "{out}");
    assert!(nsec[0].starts_with(&missing), "{out}");
    assert!(nsec[0].contains(&format!("\\000.{missing}")), "{out}");
    assert!(nsec[0].contains("RRSIG NSEC") && (nsec[0].contains("TYPE128") || nsec[0].contains("NXNAME")), "{out}");
    // Without DNSSEC the real rcode is given.
    let out = s.dig(&["+norec", &missing, "NAPTR"]).await;
    assert!(out.contains("status: NXDOMAIN"), "{out}");
    // Outside the zone: REFUSED.
    let out = s.dig(&["+norec", "example.com.", "A"]).await;
    assert!(out.contains("status: REFUSED"), "{out}");
    // Case is kept.
    let mixed = owner("+442079460001").replace("e164.tincan.test", "E164.TinCan.TEST");
    let out = s.dig(&["+norec", &mixed, "NAPTR"]).await;
    assert!(out.lines().any(|l| l.starts_with(&mixed) && l.contains("NAPTR")), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbound_host_reports_secure() {
    let s = DnsServer::start().await;
    let conf = format!(
        "server:\n  do-not-query-localhost: no\n  chroot: \"\"\n  username: \"\"\n  use-syslog: no\n  \
         module-config: \"validator iterator\"\n  local-zone: \"test.\" nodefault\n\
         stub-zone:\n  name: \"{APEX}\"\n  stub-addr: {}@{}\n",
        s.addr.ip(),
        s.addr.port()
    );
    std::fs::write(s.path("ub.conf"), conf).unwrap();
    let run = |name: String, t: &'static str| {
        let (conf, dsset) = (s.path("ub.conf"), s.path("dsset"));
        async move {
            let out = tokio::process::Command::new(tincan_testkit::tools::require("unbound-host"))
                .arg("-C")
                .arg(conf)
                .arg("-f")
                .arg(dsset)
                .args(["-v", "-t", t, &name])
                .kill_on_drop(true)
                .output()
                .await
                .unwrap();
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
        }
    };
    let out = run(owner("+442079460001"), "NAPTR").await;
    assert!(out.contains("(secure)") && out.contains("E2U+x-matrix"), "{out}");
    let out = run(owner("+442079460001"), "TXT").await;
    assert!(out.contains("(secure)"), "{out}");
    let out = run(owner("+442079460003"), "NAPTR").await;
    assert!(out.contains("(secure)"), "{out}");
}
