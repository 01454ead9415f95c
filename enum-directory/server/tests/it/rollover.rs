//! Key rollovers through their whole timeline under an injected clock, with the zone served by the real DNS
//! engine: at every step `delv` validates a positive and a negative answer with the DS set the parent publishes
//! now and with the previous step's DS set (a resolver that cached it), and every signature in those answers is
//! made by a key of the previous step's DNSKEY set (a resolver still holding that set in cache can validate).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::rr::Name;
use tincan_common::Secret;
use tincan_common::{Clock, MockClock, SystemClock};
use tincan_directory::dns::server::Interceptor;
use tincan_directory::dns::{self, Metrics, ServerConfig, Zone, ZoneConfig, Zones};
use tincan_directory::rollover::{self, Policy, RolloverConfig};
use tincan_directory::storage::TokenHash;
use tincan_directory::storage::{self, KeyAlgorithm, KeyRole, KeyState, Storage};
use tincan_directory::xfr::{Flavour, SecondaryConfig, Transfers, XfrConfig};
use tincan_directory::{keys, serve};
use tincan_enum_core::{E164, NumberRecord, Service, ServiceType};
use tincan_testkit::secondary::NsdSecondary;

const APEX: &str = "e164.tincan.test.";
const NUMBER: &str = "+442079460001";
const KEY_NAME: &str = "tincan-xfr";

struct Rig {
    storage: Arc<dyn Storage>,
    clock: Arc<MockClock>,
    zone: Arc<Zone>,
    policy: Policy,
    addr: SocketAddr,
    dir: tempfile::TempDir,
    /// With a secondary: the zone writer whose drop ends the NOTIFY tasks.
    _writer: Option<Arc<dyn tincan_directory::api::ZoneWriter>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// A secondary the rig's directory transfers to with TSIG.
struct SecondarySpec {
    addr: SocketAddr,
    secret: String,
    flavour: Flavour,
}

/// What a resolver may have cached at one step.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The DS set at the parent.
    pub ds: Vec<String>,
    /// The key tags of the DNSKEY set, sorted.
    pub dnskey_tags: Vec<u16>,
}

fn apex() -> Name {
    Name::from_ascii(APEX).unwrap()
}

fn owner(number: &str) -> String {
    tincan_enum_core::owner_name(&E164::parse(number).unwrap(), &apex()).to_ascii()
}

impl Rig {
    async fn start() -> Rig {
        let config =
            ZoneConfig { apex: apex(), apex_ttl: 60, record_ttl: 30, negative_ttl: 30, ..ZoneConfig::default() };
        Self::start_with(config, None).await
    }

    /// The rig with `config`, serving transfers to `secondary` (the number is then in storage too, as it must be
    /// to be transferred).
    async fn start_with(config: ZoneConfig, secondary: Option<SecondarySpec>) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(MockClock::at(SystemClock.unix_seconds()));
        let url = format!("sqlite://{}", dir.path().join("d.sqlite3").display());
        let storage = storage::open(&url, clock.clone()).await.unwrap();
        keys::ensure(&*storage, &*clock, &apex(), KeyAlgorithm::EcdsaP256).await.unwrap();
        let schedule = RolloverConfig {
            zsk_lifetime: 0,
            ksk_lifetime: 0,
            propagation_delay: 10,
            parent_ds_ttl: 120,
            check_interval: 1,
        };
        let policy = Policy::new(&schedule, config.apex_ttl, 60);
        let zone_keys = Arc::new(keys::load(&*storage, &apex()).await.unwrap());
        let zone = Arc::new(Zone::new(config.clone(), zone_keys.clone(), clock.clone(), 1).unwrap());
        let record = NumberRecord {
            number: E164::parse(NUMBER).unwrap(),
            services: vec![Service::new(ServiceType::Matrix, "matrix:u/alice:hs.test").unwrap()],
            key: None,
        };
        zone.upsert(&record).unwrap();
        let mut tx = storage.begin().await.unwrap();
        let provider = tx.providers().add("acme", TokenHash::of("t"), &["+44".parse().unwrap()]).await.unwrap();
        tx.numbers().put(&record, provider.id).await.unwrap();
        tx.commit().await.unwrap();
        let (writer, interceptor) = match secondary {
            None => (None, None),
            Some(s) => {
                let secondary = SecondaryConfig {
                    address: s.addr,
                    allow_from: Vec::new(),
                    tsig_key: KEY_NAME.into(),
                    tsig_secret: Secret::new(s.secret),
                    flavour: s.flavour,
                    notify: true,
                };
                let mut xfr = XfrConfig::default();
                xfr.secondaries.insert("edge".into(), secondary);
                xfr.notify.debounce_ms = 50;
                xfr.notify.initial_backoff_ms = 200;
                let t = Transfers::new(&xfr, config, zone_keys, storage.clone(), clock.clone()).unwrap();
                let t = Arc::new(t.following(zone.clone()));
                let writer = t.start_notifier(zone.clone());
                (Some(writer), Some(t as Arc<dyn Interceptor>))
            }
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], tincan_testkit::ports::free_port()));
        let udp = tokio::net::UdpSocket::bind(addr).await.unwrap();
        let tcp = tokio::net::TcpListener::bind(addr).await.unwrap();
        let zones = Arc::new(Zones::new(vec![zone.clone()]));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            let metrics = Arc::new(Metrics::default());
            dns::server::run_with(zones, udp, tcp, ServerConfig::default(), metrics, interceptor, shutdown)
                .await
                .unwrap();
        });
        Rig { storage, clock, zone, policy, addr, dir, _writer: writer, _stop: stop }
    }

    /// Advances the clock and runs the schedule as `serve` does; returns whether the zone's keys changed.
    async fn advance(&self, secs: u64) -> bool {
        self.clock.advance(Duration::from_secs(secs));
        let before = self.zone.keys();
        let changed =
            serve::sync_keys(&*self.storage, &*self.clock, &self.zone, &self.policy, KeyAlgorithm::EcdsaP256, &apex())
                .await
                .unwrap();
        assert_eq!(changed, !before.same_keys(&self.zone.keys()));
        changed
    }

    async fn states(&self, role: KeyRole) -> Vec<KeyState> {
        let mut tx = self.storage.begin().await.unwrap();
        tx.keys().for_apex(APEX).await.unwrap().into_iter().filter(|k| k.role == role).map(|k| k.state).collect()
    }

    async fn tool_at(&self, server: SocketAddr, tool: &str, args: &[String]) -> String {
        let out = tokio::process::Command::new(tincan_testkit::tools::require(tool))
            .arg(format!("@{}", server.ip()))
            .args(["-p", &server.port().to_string()])
            .args(args)
            .kill_on_drop(true)
            .output()
            .await
            .unwrap();
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    }

    async fn delv_at(&self, server: SocketAddr, ds: &[String], name: &str, rtype: &str) -> String {
        let mut conf = String::from("trust-anchors {\n");
        for line in ds {
            // "<apex> IN DS <tag> <alg> 2 <HEX>"
            let f: Vec<&str> = line.split_whitespace().collect();
            conf.push_str(&format!("  \"{}\" static-ds {} {} {} \"{}\";\n", f[0], f[3], f[4], f[5], f[6]));
        }
        conf.push_str("};\n");
        let path = self.dir.path().join("anchor.conf");
        std::fs::write(&path, conf).unwrap();
        let args = ["-a".into(), path.display().to_string(), format!("+root={}", APEX.trim_end_matches('.'))];
        let mut all: Vec<String> = args.to_vec();
        all.extend([name.to_owned(), rtype.to_owned()]);
        self.tool_at(server, "delv", &all).await
    }

    /// Key tags of the RRSIGs in `server`'s answer to `name rtype` (with DO).
    async fn rrsig_tags_at(&self, server: SocketAddr, name: &str, rtype: &str) -> Vec<u16> {
        let out = self.tool_at(server, "dig", &["+dnssec".into(), "+norec".into(), name.into(), rtype.into()]).await;
        out.lines()
            .filter(|l| !l.starts_with(';'))
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.get(3) == Some(&"RRSIG")).then(|| f[10].parse().unwrap())
            })
            .collect()
    }

    /// Key tags of the DNSKEY set `server` answers, sorted.
    async fn dnskey_tags_at(&self, server: SocketAddr) -> Vec<u16> {
        let args = ["+multiline", "+norec", APEX, "DNSKEY"].map(String::from);
        let dnskey = self.tool_at(server, "dig", &args).await;
        let mut tags: Vec<u16> = dnskey
            .lines()
            .filter_map(|l| l.split("key id = ").nth(1))
            .map(|t| t.trim().trim_end_matches(')').trim().parse().unwrap())
            .collect();
        tags.sort_unstable();
        tags
    }

    /// Validates at this step and returns what a resolver may cache now.
    async fn check(&self, step: &str, previous: Option<&Seen>) -> Seen {
        let ds = keys::ds_records(&*self.storage, &apex()).await.unwrap();
        let dnskey_tags = self.dnskey_tags_at(self.addr).await;
        assert!(!dnskey_tags.is_empty(), "{step}: no DNSKEY");
        self.validate_at(self.addr, step, &ds, previous).await;
        Seen { ds, dnskey_tags }
    }

    /// With `delv`, validates a positive and a negative answer from `server` with the DS set `ds` the parent
    /// publishes now and with the previous step's DS set (a resolver that cached it); checks that every signature
    /// in those answers is made by a key of the previous step's DNSKEY set (a resolver still holding that set in
    /// cache can validate them).
    async fn validate_at(&self, server: SocketAddr, step: &str, ds: &[String], previous: Option<&Seen>) {
        let positive = owner(NUMBER);
        let negative = owner("+442079460009");
        let mut anchors = vec![("now", ds)];
        if let Some(p) = previous {
            anchors.push(("previous step's", &p.ds));
        }
        for (which, set) in &anchors {
            let out = self.delv_at(server, set, &positive, "NAPTR").await;
            assert!(
                out.contains("; fully validated") && out.contains("alice"),
                "{step} @{server}, {which} DS set {set:?}: positive answer\n{out}"
            );
            let out = self.delv_at(server, set, &negative, "NAPTR").await;
            assert!(
                out.contains("; negative response, fully validated"),
                "{step} @{server}, {which} DS set {set:?}: negative answer\n{out}"
            );
        }
        if let Some(p) = previous {
            for (name, rtype) in [(&positive, "NAPTR"), (&negative, "NAPTR")] {
                let tags = self.rrsig_tags_at(server, name, rtype).await;
                assert!(!tags.is_empty(), "{step} @{server}: {name} {rtype} unsigned");
                for t in tags {
                    assert!(
                        p.dnskey_tags.contains(&t),
                        "{step} @{server}: {name} {rtype} signed by {t}, not in the previous DNSKEY set {:?}",
                        p.dnskey_tags
                    );
                }
            }
        }
    }
}

/// One step of a rollover's timeline, as the rig's schedule runs it (DNSKEY TTL 60 s, largest TTL 60 s, parent DS
/// TTL 120 s, propagation 10 s).
pub struct Step {
    /// What happened.
    pub name: &'static str,
    /// Seconds to advance the rig's clock from the previous step.
    pub after: u64,
    /// The states of the old and the new key of the role once it is reached.
    pub states: [KeyState; 2],
    /// How many DNSKEY and DS records are published then.
    pub dnskeys: usize,
    pub ds: usize,
}

/// The timeline of a rollover of `role` after `keys roll`: ZSK by pre-publication, KSK by double-DS.
pub fn timeline(role: KeyRole) -> [Step; 3] {
    use KeyState::*;
    let step = |name, after, states, dnskeys, ds| Step { name, after, states, dnskeys, ds };
    match role {
        KeyRole::Zsk => [
            step("ZSK published", 0, [Active, Published], 3, 1),
            step("ZSK active, old inactive", 70, [Inactive, Active], 3, 1),
            step("old ZSK removed", 70, [Retired, Active], 2, 1),
        ],
        KeyRole::Ksk => [
            step("KSK staged, both DS at the parent", 0, [Active, Staged], 2, 2),
            step("new KSK signs DNSKEY, old DS kept", 130, [Retiring, Active], 2, 2),
            step("old KSK and its DS gone", 70, [Retired, Active], 2, 1),
        ],
    }
}

#[tokio::test]
async fn zsk_and_ksk_rollovers_validate_at_every_step() {
    let rig = Rig::start().await;
    let s0 = rig.check("start", None).await;
    assert_eq!((s0.dnskey_tags.len(), s0.ds.len()), (2, 1));

    // ZSK by pre-publication.
    let t = rollover::roll(&*rig.storage, &*rig.clock, &apex(), KeyRole::Zsk, KeyAlgorithm::EcdsaP256).await.unwrap();
    assert_eq!(t.to, KeyState::Published);
    let again = rollover::roll(&*rig.storage, &*rig.clock, &apex(), KeyRole::Zsk, KeyAlgorithm::EcdsaP256).await;
    assert!(again.is_err(), "one rollover at a time");
    rig.advance(0).await;
    let s1 = rig.check("ZSK published", Some(&s0)).await;
    assert_eq!(s1.dnskey_tags.len(), 3);
    assert!(s1.dnskey_tags.contains(&t.key_tag));
    assert_eq!(
        rig.zone.keys().zsk().key_tag(),
        s0.dnskey_tags.iter().copied().find(|x| *x != rig.zone.keys().ksk().key_tag()).unwrap()
    );

    rig.advance(60).await; // DNSKEY TTL 60 + propagation 10 not yet over
    assert_eq!(rig.states(KeyRole::Zsk).await, [KeyState::Active, KeyState::Published]);
    rig.advance(10).await;
    assert_eq!(rig.states(KeyRole::Zsk).await, [KeyState::Inactive, KeyState::Active]);
    assert_eq!(rig.zone.keys().zsk().key_tag(), t.key_tag, "the new ZSK signs");
    let s2 = rig.check("ZSK active, old inactive", Some(&s1)).await;
    assert_eq!(s2.dnskey_tags.len(), 3);

    rig.advance(70).await;
    assert_eq!(rig.states(KeyRole::Zsk).await, [KeyState::Retired, KeyState::Active]);
    let s3 = rig.check("old ZSK removed", Some(&s2)).await;
    assert_eq!(s3.dnskey_tags.len(), 2);

    // KSK by double-DS.
    let k = rollover::roll(&*rig.storage, &*rig.clock, &apex(), KeyRole::Ksk, KeyAlgorithm::EcdsaP256).await.unwrap();
    assert_eq!(k.to, KeyState::Staged);
    rig.advance(0).await;
    let s4 = rig.check("KSK staged, both DS at the parent", Some(&s3)).await;
    assert_eq!((s4.dnskey_tags.len(), s4.ds.len()), (2, 2), "the DNSKEY set is unchanged; the DS set has both");

    rig.advance(130).await; // parent DS TTL 120 + propagation 10
    assert_eq!(rig.states(KeyRole::Ksk).await, [KeyState::Retiring, KeyState::Active]);
    assert_eq!(rig.zone.keys().ksk().key_tag(), k.key_tag);
    let s5 = rig.check("new KSK signs DNSKEY, old DS kept", Some(&s4)).await;
    assert_eq!((s5.dnskey_tags.len(), s5.ds.len()), (2, 2));
    assert!(s5.dnskey_tags.contains(&k.key_tag));

    rig.advance(70).await;
    assert_eq!(rig.states(KeyRole::Ksk).await, [KeyState::Retired, KeyState::Active]);
    let s6 = rig.check("old KSK and its DS gone", Some(&s5)).await;
    assert_eq!((s6.dnskey_tags.len(), s6.ds.len()), (2, 1));

    // Every key change is in the transparency log.
    let mut tx = rig.storage.begin().await.unwrap();
    let leaves = tx.log().leaves(0, 1000, 1000).await.unwrap();
    let key_entries = leaves.iter().filter(|l| l.entry.contains("\"kind\":\"key\"")).count();
    assert_eq!(key_entries, 2 + 1 + 2 + 1 + 1 + 2 + 1, "generated, published, swapped, retired for both roles");
}

#[tokio::test]
async fn keys_roll_and_status_drive_a_running_server() {
    use crate::harness::{Directory, cli, query};
    use hickory_proto::rr::RecordType;

    let dir = tempfile::tempdir().unwrap();
    let d = Directory::start_with(dir.path(), &[("TINCAN_DIRECTORY_DNS__ROLLOVER__CHECK_INTERVAL", "1")]).await;
    let dnskeys =
        |m: &hickory_proto::op::Message| m.answers.iter().filter(|r| r.record_type() == RecordType::DNSKEY).count();
    assert_eq!(dnskeys(&query(d.dns, APEX, RecordType::DNSKEY).await), 2);

    let out = cli(dir.path(), &["keys", "roll", "zsk"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = cli(dir.path(), &["keys", "roll", "zsk"]);
    assert!(!out.status.success(), "a second ZSK rollover is refused");
    assert!(String::from_utf8_lossy(&out.stderr).contains("already in progress"));

    let out = cli(dir.path(), &["keys", "status"]);
    assert!(out.status.success());
    let status = String::from_utf8(out.stdout).unwrap();
    assert!(status.contains("zsk ecdsap256 tag") && status.contains(" published since "), "{status}");
    assert!(status.contains("; becomes active at "), "{status}");
    assert!(status.contains("DS set the parent must publish now:\ne164.tincan.test. IN DS "), "{status}");

    // The running server publishes the new ZSK at its next schedule check.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while dnskeys(&query(d.dns, APEX, RecordType::DNSKEY).await) != 3 {
        assert!(std::time::Instant::now() < deadline, "new ZSK not published\n{}", d.guard.log_tail(20));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    while !d.guard.log_tail(50).contains("zone re-signed with the new keys") {
        assert!(std::time::Instant::now() < deadline, "no background re-signing\n{}", d.guard.log_tail(20));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let out = cli(dir.path(), &["keys", "roll", "ksk"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = cli(dir.path(), &["keys", "ds"]);
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 2, "double-DS: both DS for the parent");
}

/// The SOA serial in a zone printed by `dig AXFR`.
fn soa_serial(zone: &str) -> u32 {
    let soa = zone.lines().find(|l| l.split_whitespace().nth(3) == Some("SOA")).expect("an SOA");
    soa.split_whitespace().nth(6).unwrap().parse().unwrap()
}

/// The DNSKEY records in a zone printed by `dig AXFR`.
fn dnskeys(zone: &str) -> usize {
    zone.lines().filter(|l| l.split_whitespace().nth(3) == Some("DNSKEY")).count()
}

/// An NSD secondary of the pre-signed NSEC3 flavour attached to a rig with `config`.
async fn rig_with_nsd(config: ZoneConfig) -> (Rig, NsdSecondary) {
    let secret = crate::xfr::secret();
    let nsd_addr = SocketAddr::from(([127, 0, 0, 1], tincan_testkit::ports::free_port()));
    let spec = SecondarySpec { addr: nsd_addr, secret: secret.clone(), flavour: Flavour::Nsec3 };
    let rig = Rig::start_with(config, Some(spec)).await;
    let nsd = NsdSecondary::start(APEX, rig.addr, KEY_NAME, &secret, nsd_addr).await.unwrap();
    (rig, nsd)
}

impl Rig {
    /// Waits until `nsd` serves a copy with serial `at_least` or newer holding the DNSKEY set `now` saw at the
    /// directory, signed by the keys the directory signs with now (DNSKEY by the KSK, the rest by the ZSK); checks it
    /// with `ldns-verify-zone` against the DS set the parent publishes now, and validates answers from NSD as
    /// [`Rig::validate_at`] does (with this step's and the previous step's DS set, and a resolver holding the
    /// previous DNSKEY set). Returns the copy's serial and text.
    async fn check_secondary(
        &self,
        nsd: &mut NsdSecondary,
        step: &str,
        at_least: u32,
        now: &Seen,
        previous: Option<&Seen>,
    ) -> (u32, String) {
        let keys = self.zone.keys();
        let (ksk, zsk) = (keys.ksk().key_tag(), keys.zsk().key_tag());
        let signed_right = |z: &str| {
            z.lines()
                .filter_map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    (f.get(3) == Some(&"RRSIG")).then(|| (f[4] == "DNSKEY", f[10].parse::<u16>().unwrap()))
                })
                .all(|(dnskey, tag)| tag == if dnskey { ksk } else { zsk })
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let zone = loop {
            // NSD transfers its copy out to loopback clients without a key.
            let args = ["+onesoa", "+nocmd", "+nostats", "+nocomments", APEX, "AXFR"].map(String::from);
            let z = self.tool_at(nsd.addr, "dig", &args).await;
            let loaded = z.contains("NSEC3PARAM") && !z.contains("Transfer failed");
            if loaded
                && soa_serial(&z).wrapping_sub(at_least) as i32 >= 0
                && self.dnskey_tags_at(nsd.addr).await == now.dnskey_tags
                && signed_right(&z)
            {
                break z;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{step}: NSD has no copy from serial {at_least} with DNSKEY {:?} signed by KSK {ksk} and ZSK {zsk}; \
                 last:\n{z}",
                now.dnskey_tags
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!(dnskeys(&zone), now.dnskey_tags.len(), "{step}");
        let path = self.dir.path().join("nsd.zone");
        std::fs::write(&path, &zone).unwrap();
        let ds_file = self.dir.path().join("ds.anchor");
        std::fs::write(&ds_file, now.ds.join("\n") + "\n").unwrap();
        let out = tincan_testkit::tools::run(
            tincan_testkit::tools::command("ldns-verify-zone").arg("-k").arg(&ds_file).arg(&path),
        )
        .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{step}: ldns-verify-zone of NSD's copy:\n{text}\n{zone}");
        self.validate_at(nsd.addr, step, &now.ds, previous).await;
        (soa_serial(&zone), zone)
    }
}

/// A rollover of `role` through its whole timeline, with an NSD secondary of the `nsec3` flavour checked at every
/// step: it gets a new copy when the DNSKEY set or the signing keys change, and a resolver asking it validates with
/// whatever DS set and DNSKEY set it may hold at that step.
async fn rollover_reaches_an_nsd_secondary(role: KeyRole) {
    let config = ZoneConfig { apex: apex(), apex_ttl: 60, record_ttl: 30, negative_ttl: 30, ..ZoneConfig::default() };
    let (rig, mut nsd) = rig_with_nsd(config).await;
    let mut seen = rig.check("start", None).await;
    let (mut serial, _) = rig.check_secondary(&mut nsd, "start", 0, &seen, None).await;
    let t = rollover::roll(&*rig.storage, &*rig.clock, &apex(), role, KeyAlgorithm::EcdsaP256).await.unwrap();
    for step in timeline(role) {
        let changed = rig.advance(step.after).await;
        assert_eq!(rig.states(role).await, step.states, "{}", step.name);
        let now = rig.check(step.name, Some(&seen)).await;
        assert_eq!((now.dnskey_tags.len(), now.ds.len()), (step.dnskeys, step.ds), "{}", step.name);
        // A new copy when the keys changed; otherwise the secondary keeps the one it has.
        let at_least = if changed { serial.wrapping_add(1) } else { serial };
        let (s, _) = rig.check_secondary(&mut nsd, step.name, at_least, &now, Some(&seen)).await;
        if !changed {
            assert_eq!(s, serial, "{}: nothing changed for the secondary", step.name);
        }
        (serial, seen) = (s, now);
    }
    let new_key = match role {
        KeyRole::Zsk => rig.zone.keys().zsk().key_tag(),
        KeyRole::Ksk => rig.zone.keys().ksk().key_tag(),
    };
    assert_eq!(new_key, t.key_tag, "the new key took over");
}

#[tokio::test]
async fn a_zsk_rollover_reaches_an_nsd_secondary_of_the_nsec3_flavour_at_every_step() {
    rollover_reaches_an_nsd_secondary(KeyRole::Zsk).await;
}

#[tokio::test]
async fn a_ksk_rollover_reaches_an_nsd_secondary_of_the_nsec3_flavour_at_every_step() {
    rollover_reaches_an_nsd_secondary(KeyRole::Ksk).await;
}
#[tokio::test]
async fn a_quiet_nsec3_copy_is_re_signed_before_its_signatures_expire() {
    // Signatures valid 400 s, re-made when less than 300 s remain: a quiet zone's copy is fresh for 100 s.
    let config = ZoneConfig {
        apex: apex(),
        apex_ttl: 60,
        record_ttl: 30,
        negative_ttl: 30,
        signature_validity: 400,
        signature_refresh: 300,
        ..ZoneConfig::default()
    };
    let (rig, mut nsd) = rig_with_nsd(config).await;
    let seen = rig.check("start", None).await;
    let (s0, z0) = rig.check_secondary(&mut nsd, "start", 0, &seen, None).await;
    rig.clock.advance(Duration::from_secs(60));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let still = nsd.wait_zone(Duration::from_secs(5)).await.unwrap();
    assert_eq!(soa_serial(&std::fs::read_to_string(still).unwrap()), s0, "nothing to do while the copy is fresh");
    rig.clock.advance(Duration::from_secs(41));
    let (s1, z1) = rig.check_secondary(&mut nsd, "re-signed", s0.wrapping_add(1), &seen, Some(&seen)).await;
    // Every RRSIG was re-made: their expiration moved by the time that passed.
    let expirations = |z: &str| -> Vec<u64> {
        z.lines()
            .filter(|l| l.contains("\tRRSIG\t"))
            .map(|l| l.split_whitespace().nth(8).unwrap().parse().unwrap())
            .collect()
    };
    let (e0, e1) = (expirations(&z0), expirations(&z1));
    assert_eq!(e0.len(), e1.len());
    assert!(e0.iter().zip(&e1).all(|(a, b)| b > a), "{z0}\n{z1}");
    assert!(s1.wrapping_sub(s0) as i32 > 0);
}
