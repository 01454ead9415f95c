//! RFC 3263 resolution against a real DNS server: Knot serving NAPTR, SRV and A/AAAA records.

use std::time::Duration;
use tincan_sip_core::resolve::{HickoryDns, resolve};
use tincan_sip_core::stack::{Target, Transport};
use tincan_testkit::dnssec::Knot;

const ZONE: &str = "$TTL 300
sip.test. IN SOA ns1.sip.test. hostmaster.sip.test. 1 3600 600 86400 300
sip.test. IN NS ns1.sip.test.
ns1.sip.test. IN A 127.0.0.1
provider.sip.test. IN NAPTR 10 50 \"s\" \"SIPS+D2T\" \"\" _sips._tcp.provider.sip.test.
provider.sip.test. IN NAPTR 20 50 \"s\" \"SIP+D2U\" \"\" _sip._udp.provider.sip.test.
_sips._tcp.provider.sip.test. IN SRV 10 0 5061 edge1.sip.test.
_sip._udp.provider.sip.test. IN SRV 10 60 5060 edge1.sip.test.
_sip._udp.provider.sip.test. IN SRV 20 0 5070 edge2.sip.test.
edge1.sip.test. IN A 127.0.0.11
edge1.sip.test. IN AAAA ::1
edge2.sip.test. IN A 127.0.0.12
_sip._udp.nonaptr.sip.test. IN SRV 0 0 5080 edge2.sip.test.
plain.sip.test. IN A 127.0.0.13
";

fn t(transport: Transport, addr: &str) -> Target {
    Target { transport, addr: addr.parse().unwrap() }
}

#[tokio::test]
async fn naptr_srv_and_address_records_from_knot() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("zone.db");
    std::fs::write(&file, ZONE).unwrap();
    let knot = Knot::serve("sip.test.", &file).await.unwrap();
    let dns = HickoryDns::new(&[knot.addr], Duration::from_secs(2)).unwrap();
    let all = [Transport::Udp, Transport::Tcp, Transport::Tls];

    let got =
        resolve(&dns, &"sip:+4420794600001@provider.sip.test;user=phone".parse().unwrap(), &all, || 0).await.unwrap();
    assert_eq!(
        got,
        [
            t(Transport::Tls, "127.0.0.11:5061"),
            t(Transport::Tls, "[::1]:5061"),
            t(Transport::Udp, "127.0.0.11:5060"),
            t(Transport::Udp, "[::1]:5060"),
            t(Transport::Udp, "127.0.0.12:5070"),
        ]
    );
    let got = resolve(&dns, &"sip:x@nonaptr.sip.test".parse().unwrap(), &all, || 0).await.unwrap();
    assert_eq!(got, [t(Transport::Udp, "127.0.0.12:5080")]);
    let got = resolve(&dns, &"sip:x@plain.sip.test".parse().unwrap(), &all, || 0).await.unwrap();
    assert_eq!(got, [t(Transport::Udp, "127.0.0.13:5060")]);
    let missing = resolve(&dns, &"sip:x@missing.sip.test".parse().unwrap(), &all, || 0).await;
    assert!(missing.is_err(), "{missing:?}");
}
