//! `account/register` locates another homeserver by Matrix server discovery (server-server API, "Resolving
//! server names"): `.well-known/matrix/server` delegation, SRV `_matrix-fed._tcp` and the deprecated
//! `_matrix._tcp`, then port 8448, with the certificate checked against the name the spec says. Real pieces:
//! Knot serves the names (`identity.homeserver_dns_servers`), `tests/https_hs.py` the homeservers over TLS on
//! loopback addresses of their own (`.well-known` needs port 443), each with a certificate for its server name
//! alone, so reaching it through any other name fails the TLS check.

use crate::harness::{Api, Ext};
use crate::register_fetch::{HttpsHomeserver, register};
use std::path::PathBuf;
use tincan_testkit::Synapse;
use tincan_testkit::dnssec::Knot;
use tincan_testkit::federation::TestCa;
use tincan_testkit::ports::free_port;

/// A loopback address no other test uses: `127.X.Y.1`, X.Y from a port the kernel just handed out.
fn loopback() -> String {
    let p = free_port();
    format!("127.{}.{}.1", p >> 8, p & 0xff)
}

/// Whether this test may listen on port 443 of `addr` (`.well-known` is always fetched there): not as an
/// unprivileged user, where the test is skipped (under `CI=true` it fails instead).
fn may_listen_on_443(addr: &str) -> bool {
    match std::net::TcpListener::bind((addr, 443)) {
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied && !tincan_testkit::in_ci() => {
            eprintln!("skipped: cannot listen on {addr}:443 ({e}); run as root or lower ip_unprivileged_port_start");
            false
        }
        Err(e) => panic!("cannot listen on {addr}:443: {e}"),
    }
}

/// Knot serving `disc.test.` with `records`, and the extension resolving other homeservers through it, trusting
/// `servers`' certificates, allowed to contact loopback.
async fn start(records: &str, servers: &[&HttpsHomeserver]) -> (Knot, Ext, tempfile::TempDir) {
    let certs: Vec<PathBuf> = servers.iter().map(|s| s.cert()).collect();
    start_trusting(records, &certs).await
}

/// [`start`], trusting the certificates (or CAs) in `certs`.
async fn start_trusting(records: &str, certs: &[PathBuf]) -> (Knot, Ext, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let zone = dir.path().join("zone.db");
    std::fs::write(
        &zone,
        format!(
            "$TTL 60\ndisc.test. IN SOA ns.disc.test. hostmaster.disc.test. 1 3600 600 86400 60\n\
             disc.test. IN NS ns.disc.test.\nns.disc.test. IN A 127.0.0.1\n{records}"
        ),
    )
    .unwrap();
    let knot = Knot::serve("disc.test.", &zone).await.unwrap();
    let bundle = dir.path().join("trusted.pem");
    let pems: Vec<String> = certs.iter().map(|c| std::fs::read_to_string(c).unwrap()).collect();
    std::fs::write(&bundle, pems.concat()).unwrap();
    let config = format!(
        "server_name = \"hs.test\"\n[homeserver]\njwt_secret = \"unused-secret-0123456789\"\n\
         [identity]\nhomeserver_allowed_addresses = [\"127.0.0.0/8\"]\nhomeserver_timeout_secs = 3\n\
         homeserver_dns_servers = [\"{}\"]\n",
        knot.addr
    );
    let ext = Ext::start_env(None, &config, &[("SSL_CERT_FILE", bundle.to_str().unwrap())]).await.unwrap();
    (knot, ext, dir)
}

/// An HTTPS homeserver on `bind:port` whose certificate names `name` only.
async fn homeserver(bind: &str, port: u16, name: &str, extra: &[&str]) -> HttpsHomeserver {
    let mut args = vec!["--bind", bind, "--names", name];
    args.extend_from_slice(extra);
    HttpsHomeserver::start_with(port, "-", &args).await
}

/// Registers with the user `@alice:{name}` (the test homeservers vouch for the user the token names) and checks
/// the token works.
async fn registers(ext: &Ext, name: &str) {
    let user = format!("@alice:{name}");
    let (status, body) = register(ext, name, &user).await;
    assert_eq!(status, 200, "{name}: {body}");
    let (status, account) = ext.get("/_matrix/identity/v2/account", body["token"].as_str().unwrap()).await;
    assert_eq!((status, account["user_id"].as_str()), (200, Some(user.as_str())), "{name}");
}

/// The `Host` headers of the userinfo requests `hs` answered.
fn userinfo_hosts(hs: &HttpsHomeserver) -> Vec<String> {
    hs.request_log()
        .iter()
        .filter(|r| r["path"].as_str().unwrap().starts_with("/_matrix/federation/v1/openid/userinfo"))
        .map(|r| r["host"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn register_follows_well_known_delegation_to_another_port() {
    let port = free_port();
    let wk = loopback();
    if !may_listen_on_443(&wk) {
        return;
    }
    let well_known = format!(r#"{{"m.server": "hs.disc.test:{port}"}}"#);
    let delegating = homeserver(&wk, 443, "wk.disc.test", &["--well-known", &well_known]).await;
    let hs = homeserver("127.0.0.1", port, "hs.disc.test", &[]).await;
    let (_knot, ext, _dir) =
        start(&format!("wk.disc.test. IN A {wk}\nhs.disc.test. IN A 127.0.0.1\n"), &[&delegating, &hs]).await;

    registers(&ext, "wk.disc.test").await;
    registers(&ext, "wk.disc.test").await;
    let asked: Vec<String> = delegating.request_log().iter().map(|r| r["path"].as_str().unwrap().into()).collect();
    assert_eq!(asked, ["/.well-known/matrix/server"], "asked once: the answer is kept (24 h without Cache-Control)");
    let delegated = format!("hs.disc.test:{port}");
    assert_eq!(userinfo_hosts(&hs), [delegated.clone(), delegated], "Host is the delegated name and port");
}

#[tokio::test]
async fn register_finds_a_homeserver_by_srv_and_by_the_legacy_srv_name() {
    let (fed, legacy) = (free_port(), free_port());
    // The certificates name the server names, not the SRV target `box.disc.test`.
    let by_srv = homeserver("127.0.0.1", fed, "srv.disc.test", &[]).await;
    let by_legacy = homeserver("127.0.0.1", legacy, "legacy.disc.test", &[]).await;
    // A delegation without a port: SRV of the delegated name.
    let deleg = loopback();
    if !may_listen_on_443(&deleg) {
        return;
    }
    let delegating =
        homeserver(&deleg, 443, "deleg.disc.test", &["--well-known", r#"{"m.server": "srv.disc.test"}"#]).await;
    let records = format!(
        "srv.disc.test. IN A {}\n_matrix-fed._tcp.srv.disc.test. IN SRV 10 5 {fed} box.disc.test.\n\
         legacy.disc.test. IN A {}\n_matrix._tcp.legacy.disc.test. IN SRV 10 5 {legacy} box.disc.test.\n\
         deleg.disc.test. IN A {deleg}\nbox.disc.test. IN A 127.0.0.1\n",
        loopback(),
        loopback(),
    );
    let (_knot, ext, _dir) = start(&records, &[&by_srv, &by_legacy, &delegating]).await;

    registers(&ext, "srv.disc.test").await;
    registers(&ext, "legacy.disc.test").await;
    registers(&ext, "deleg.disc.test").await;
    assert_eq!(userinfo_hosts(&by_srv), ["srv.disc.test", "srv.disc.test"], "Host is the name SRV was asked for");
    assert_eq!(userinfo_hosts(&by_legacy), ["legacy.disc.test"]);
}

#[tokio::test]
async fn register_finds_a_real_synapse_by_srv() {
    // Synapse named `synapse.disc.test` (no port), its federation listener over TLS on a port only SRV gives,
    // with a certificate (of a CA the extension trusts) for that name.
    let ca = TestCa::new().unwrap();
    let hs = Synapse::builder().server_name("synapse.disc.test").federation_named(&ca).unwrap().start().await.unwrap();
    let fed = hs.federation_port().unwrap();
    // The server name has no address, so `.well-known` cannot be asked (no delegation) and 8448 is not there:
    // only the SRV record leads to Synapse, through a target its certificate does not name.
    let records = format!(
        "_matrix-fed._tcp.synapse.disc.test. IN SRV 10 5 {fed} box.disc.test.
box.disc.test. IN A 127.0.0.1
"
    );
    let (_knot, ext, _dir) = start_trusting(&records, &[ca.cert_file().to_owned()]).await;

    // A user of that Synapse asks it for an OpenID token and registers with it: the extension checks the token
    // with Synapse's federation API, found by SRV.
    let alice = hs.register_user("alice", false).await.unwrap();
    assert_eq!(alice.user_id, "@alice:synapse.disc.test");
    let url = format!("{}/_matrix/client/v3/user/{}/openid/request_token", hs.url(), alice.user_id);
    let openid: serde_json::Value = reqwest::Client::new()
        .post(url)
        .bearer_auth(&alice.access_token)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(openid["matrix_server_name"], "synapse.disc.test", "{openid}");
    let (status, body) = register(&ext, "synapse.disc.test", openid["access_token"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{body}");
    let (status, account) = ext.get("/_matrix/identity/v2/account", body["token"].as_str().unwrap()).await;
    assert_eq!((status, account["user_id"].as_str()), (200, Some(alice.user_id.as_str())), "{account}");

    // A token Synapse did not issue is refused by Synapse through the same way.
    let (status, body) = register(&ext, "synapse.disc.test", "not-a-token-synapse-issued").await;
    assert_eq!(status, 401, "{body}");
}

#[tokio::test]
async fn register_falls_back_to_port_8448() {
    let addr = loopback();
    let hs = homeserver(&addr, 8448, "plain.disc.test", &[]).await;
    let (_knot, ext, _dir) = start(&format!("plain.disc.test. IN A {addr}\n"), &[&hs]).await;

    registers(&ext, "plain.disc.test").await;
    assert_eq!(userinfo_hosts(&hs), ["plain.disc.test"]);
}

#[tokio::test]
async fn register_says_why_discovery_failed() {
    let records = "_matrix-fed._tcp.nosvc.disc.test. IN SRV 0 0 0 .\n\
                   lan.disc.test. IN A 10.1.2.3\n\
                   _matrix-fed._tcp.lan2.disc.test. IN SRV 10 0 8448 inside.disc.test.\n\
                   inside.disc.test. IN A 10.1.2.4\n";
    let (_knot, ext, _dir) = start(records, &[]).await;
    let failed = |name: &'static str| {
        let ext = &ext;
        async move {
            let (status, body) = register(ext, name, &format!("@alice:{name}")).await;
            (status, body["errcode"].as_str().unwrap_or_default().to_owned(), body["error"].to_string())
        }
    };

    let (status, errcode, error) = failed("gone.disc.test").await;
    assert_eq!((status, errcode.as_str()), (400, "M_INVALID_PARAM"), "{error}");
    assert!(error.contains("no homeserver found for gone.disc.test"), "{error}");

    let (status, errcode, error) = failed("nosvc.disc.test").await;
    assert_eq!((status, errcode.as_str()), (400, "M_INVALID_PARAM"), "{error}");
    assert!(error.contains("_matrix-fed._tcp.nosvc.disc.test says nosvc.disc.test offers no Matrix"), "{error}");

    // Private addresses stay refused whether a name's address or its SRV target's.
    for name in ["lan.disc.test", "lan2.disc.test"] {
        let (status, errcode, error) = failed(name).await;
        assert_eq!((status, errcode.as_str()), (403, "M_FORBIDDEN"), "{name}: {error}");
    }
}

/// A DNS server on `ip`:53 (UDP): `gone.disc.test` and every SRV name do not exist (NXDOMAIN), the addresses of
/// `broken.disc.test` fail (SERVFAIL), anything else is refused. Port 53, because the system's resolver
/// configuration (`/etc/resolv.conf`) cannot name another.
async fn flaky_dns(ip: &str) -> tokio::task::JoinHandle<()> {
    use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
    let sock = tokio::net::UdpSocket::bind((ip, 53)).await.unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, peer)) = sock.recv_from(&mut buf).await {
            let Ok(q) = Message::from_vec(&buf[..n]) else { continue };
            let Some(query) = q.queries.first().cloned() else { continue };
            let name = query.name().to_ascii().to_ascii_lowercase();
            let code = if name.starts_with("_matrix") || name == "gone.disc.test." {
                ResponseCode::NXDomain
            } else if name == "broken.disc.test." {
                ResponseCode::ServFail
            } else {
                ResponseCode::Refused
            };
            let mut r = Message::new(q.metadata.id, MessageType::Response, OpCode::Query);
            r.metadata.response_code = code;
            r.metadata.recursion_desired = q.metadata.recursion_desired;
            r.metadata.recursion_available = true;
            r.add_query(query);
            let _ = sock.send_to(&r.to_vec().unwrap(), peer).await;
        }
    })
}

/// Whether this test may run the extension in a mount namespace of its own (`unshare -m`, to give it another
/// `/etc/resolv.conf`): as root; otherwise skipped (under `CI=true` it fails instead).
fn may_unshare() -> bool {
    let ok = std::process::Command::new("unshare").args(["-m", "true"]).status().is_ok_and(|s| s.success());
    if !ok {
        assert!(!tincan_testkit::in_ci(), "`unshare -m` failed: the test needs root");
        eprintln!("skipped: `unshare -m` failed (run as root)");
    }
    ok
}

#[tokio::test]
async fn register_tells_a_dns_failure_from_a_missing_name_with_either_resolver() {
    if !may_unshare() {
        return;
    }
    let ip = loopback();
    let _dns = flaky_dns(&ip).await;
    let dir = tempfile::tempdir().unwrap();
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(&resolv, format!("nameserver {ip}\noptions timeout:1 attempts:1\n")).unwrap();
    let base = "server_name = \"hs.test\"\n[homeserver]\njwt_secret = \"unused-secret-0123456789\"\n\
                [identity]\nhomeserver_allowed_addresses = [\"127.0.0.0/8\"]\nhomeserver_timeout_secs = 3\n";
    // `identity.homeserver_dns_servers` names the server; or it is empty, and the system's resolver
    // configuration names it (a bind mount over /etc/resolv.conf, seen by the extension alone).
    let configured = Ext::start(&format!("{base}homeserver_dns_servers = [\"{ip}:53\"]\n")).await.unwrap();
    let script = r#"mount --bind "$0" /etc/resolv.conf && exec "$@""#;
    let system =
        Ext::start_launched(&["unshare", "-m", "sh", "-c", script, resolv.to_str().unwrap()], base, &[]).await.unwrap();

    for (mode, ext) in [("configured servers", &configured), ("system resolver", &system)] {
        let (status, body) = register(ext, "gone.disc.test", "@alice:gone.disc.test").await;
        assert_eq!((status, body["errcode"].as_str()), (400, Some("M_INVALID_PARAM")), "{mode}: {body}");
        assert!(body["error"].as_str().unwrap().contains("no homeserver found for gone.disc.test"), "{mode}: {body}");
        // The name's addresses could not be looked up: the way there failed, not the client.
        let (status, body) = register(ext, "broken.disc.test", "@alice:broken.disc.test").await;
        assert_eq!((status, body["errcode"].as_str()), (502, Some("M_UNKNOWN")), "{mode}: {body}");
    }
}
