//! Starts the DNS engine in-process on a loopback port, with a test zone and its trust anchor files.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use tincan_common::{Clock, SystemClock};
use tincan_directory::dns::{self, KeyAlgorithm, Metrics, ServerConfig, Zone, ZoneConfig, ZoneKeys, Zones};
use tincan_enum_core::hickory_proto::rr::Name;
use tincan_enum_core::{E164, MasterKey, NumberRecord, Service, ServiceType};

pub const APEX: &str = "e164.tincan.test.";

/// A server running on a runtime task; stopped on drop.
pub struct DnsServer {
    pub addr: SocketAddr,
    pub zone: Arc<Zone>,
    pub metrics: Arc<Metrics>,
    pub dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// A sample master key (the ed25519 base point).
pub fn sample_key() -> MasterKey {
    let mut b = [0x66u8; 32];
    b[0] = 0x58;
    MasterKey::from_bytes(b).unwrap()
}

pub fn record(number: &str, services: &[(ServiceType, &str)], key: Option<MasterKey>) -> NumberRecord {
    NumberRecord {
        number: E164::parse(number).unwrap(),
        services: services.iter().map(|(t, u)| Service::new(*t, u).unwrap()).collect(),
        key,
    }
}

/// +442079460001: Matrix, SIP and a key; +442079460002: Matrix only; +4915112345678: SMS and voice.
pub fn sample_records() -> Vec<NumberRecord> {
    vec![
        record(
            "+442079460001",
            &[
                (ServiceType::Matrix, "matrix:u/alice:hs.test?action=chat"),
                (ServiceType::Sip, "sip:+442079460001@sip.test"),
            ],
            Some(sample_key()),
        ),
        record("+442079460002", &[(ServiceType::Matrix, "matrix:u/bob:hs.test")], None),
        record(
            "+4915112345678",
            &[(ServiceType::Sms, "tel:+4915112345678"), (ServiceType::Voice, "tel:+4915112345678")],
            None,
        ),
    ]
}

pub fn owner(number: &str) -> String {
    tincan_enum_core::owner_name(&E164::parse(number).unwrap(), &Name::from_ascii(APEX).unwrap()).to_ascii()
}

pub fn zone_with(clock: Arc<dyn Clock>, alg: KeyAlgorithm, records: &[NumberRecord]) -> Arc<Zone> {
    let keys = Arc::new(ZoneKeys::generate(alg, clock.unix_seconds()).unwrap());
    let config = ZoneConfig { apex: Name::from_ascii(APEX).unwrap(), ..ZoneConfig::default() };
    let zone = Arc::new(Zone::new(config, keys, clock, 1).unwrap());
    for r in records {
        zone.upsert(r).unwrap();
    }
    zone
}

impl DnsServer {
    /// A server for [`sample_records`] on 127.0.0.1 and a free port.
    pub async fn start() -> DnsServer {
        Self::start_with(sample_records(), KeyAlgorithm::EcdsaP256Sha256, None).await
    }

    /// A server for `records`, on `at` or 127.0.0.1 and a free port.
    pub async fn start_with(records: Vec<NumberRecord>, alg: KeyAlgorithm, at: Option<SocketAddr>) -> DnsServer {
        Self::start_configured(records, alg, at, ServerConfig::default()).await
    }

    /// A server with its own [`ServerConfig`].
    pub async fn start_configured(
        records: Vec<NumberRecord>,
        alg: KeyAlgorithm,
        at: Option<SocketAddr>,
        config: ServerConfig,
    ) -> DnsServer {
        let addr =
            at.unwrap_or_else(|| SocketAddr::new(IpAddr::from([127, 0, 0, 1]), tincan_testkit::ports::free_port()));
        let zone = zone_with(Arc::new(SystemClock), alg, &records);
        let zones = Arc::new(Zones::new(vec![zone.clone()]));
        let udp = tokio::net::UdpSocket::bind(addr).await.unwrap();
        let tcp = tokio::net::TcpListener::bind(addr).await.unwrap();
        let metrics = Arc::new(Metrics::default());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let m = metrics.clone();
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            dns::server::run(zones, udp, tcp, config, m, shutdown).await.unwrap();
        });
        let dir = tempfile::tempdir().unwrap();
        let server = DnsServer { addr, zone, metrics, dir, stop: Some(stop) };
        std::fs::write(server.path("anchor.conf"), server.anchor_conf()).unwrap();
        std::fs::write(server.path("dsset"), format!("{}\n", server.ds())).unwrap();
        server
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn ds(&self) -> String {
        self.zone.keys().ds_presentation(self.zone.apex_name())
    }

    /// delv's `trust-anchors` clause with the KSK's DS.
    pub fn anchor_conf(&self) -> String {
        let ds = self.ds();
        let f: Vec<&str> = ds.split_whitespace().collect();
        // "<apex> IN DS <tag> <alg> 2 <HEX>"
        format!("trust-anchors {{ \"{}\" static-ds {} {} {} \"{}\"; }};\n", f[0], f[3], f[4], f[5], f[6])
    }

    /// `delv` against this server with the zone's trust anchor; returns stdout and stderr together.
    pub async fn delv(&self, name: &str, rtype: &str) -> String {
        let out = tokio::process::Command::new(tincan_testkit::tools::require("delv"))
            .arg(format!("@{}", self.addr.ip()))
            .args(["-p", &self.addr.port().to_string()])
            .arg("-a")
            .arg(self.path("anchor.conf"))
            .arg(format!("+root={}", APEX.trim_end_matches('.')))
            .args([name, rtype])
            .kill_on_drop(true)
            .output()
            .await
            .unwrap();
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    }

    /// `dig` against this server with extra arguments; returns stdout.
    pub async fn dig(&self, args: &[&str]) -> String {
        let out = tokio::process::Command::new(tincan_testkit::tools::require("dig"))
            .arg(format!("@{}", self.addr.ip()))
            .args(["-p", &self.addr.port().to_string()])
            .args(args)
            .kill_on_drop(true)
            .output()
            .await
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}
