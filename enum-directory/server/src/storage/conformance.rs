//! The storage conformance suite: written once, run against every backend (SQLite and PostgreSQL) by the
//! integration tests. Each check takes a freshly migrated, empty storage whose clock is `clock`.

use std::time::Duration;

use tincan_common::MockClock;
use tincan_enum_core::{E164, MasterKey, NumberRecord, Service, ServiceType};

use super::{
    KeyAlgorithm, KeyRole, KeyState, NewPort, ObjectionReason, PortState, Prefix, SignatureUpdate, Storage,
    StorageError, TokenHash,
};

/// Runs every check in order on one empty storage.
pub async fn run(storage: &dyn Storage, clock: &MockClock) {
    providers(storage, clock).await;
    numbers_and_journal(storage, clock).await;
    rollback_on_drop(storage).await;
    dnssec_keys(storage).await;
    transparency_log(storage).await;
    signed_records_and_scan(storage).await;
    current_and_stored_signatures(storage).await;
    port_requests(storage, clock).await;
}

fn number(s: &str) -> E164 {
    E164::parse(s).unwrap()
}

fn record(n: &str, user: &str) -> NumberRecord {
    NumberRecord {
        number: number(n),
        services: vec![
            Service::new(ServiceType::Matrix, &format!("matrix:u/{user}:hs.test")).unwrap(),
            Service::new(ServiceType::Sms, &format!("tel:{n}")).unwrap(),
        ],
        key: None,
    }
}

async fn providers(storage: &dyn Storage, clock: &MockClock) {
    let mut tx = storage.begin().await.unwrap();
    let uk: Prefix = "+44".parse().unwrap();
    let de: Prefix = "+49".parse().unwrap();
    let a = tx.providers().add("acme", TokenHash::of("token-a"), &[uk.clone(), de.clone(), uk.clone()]).await.unwrap();
    assert_eq!(a.prefixes, vec![uk.clone(), de.clone()], "prefixes sorted and deduplicated");
    assert_eq!(a.created_at, clock.now_system());
    let b = tx.providers().add("beta", TokenHash::of("token-b"), &["+4420".parse().unwrap()]).await.unwrap();
    assert_ne!(a.id, b.id);
    tx.commit().await.unwrap();

    let mut tx = storage.begin().await.unwrap();
    let dup = tx.providers().add("acme", TokenHash::of("other"), &[]).await;
    assert!(matches!(dup, Err(StorageError::Duplicate("provider"))), "{dup:?}");
    drop(tx);

    let mut tx = storage.begin().await.unwrap();
    let dup = tx.providers().add("gamma", TokenHash::of("token-a"), &[]).await;
    assert!(matches!(dup, Err(StorageError::Duplicate("provider"))), "same token: {dup:?}");
    drop(tx);

    let mut tx = storage.begin().await.unwrap();
    let found = tx.providers().by_token_hash(&TokenHash::of("token-a")).await.unwrap().unwrap();
    assert_eq!(found, a);
    assert!(tx.providers().by_token_hash(&TokenHash::of("token-x")).await.unwrap().is_none());
    assert_eq!(tx.providers().by_id(b.id).await.unwrap().unwrap(), b);
    assert_eq!(tx.providers().by_name("beta").await.unwrap().unwrap(), b);
    assert!(tx.providers().by_name("gamma").await.unwrap().is_none(), "failed adds left nothing");
    let all = tx.providers().list().await.unwrap();
    assert_eq!(all.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["acme", "beta"]);
    assert!(a.serves(&number("+442079460001")) && !a.serves(&number("+12025550143")));
    drop(tx);

    // Prefixes replaced (sorted, deduplicated), emptied, and restored; a rolled-back change leaves nothing.
    let p4420: Prefix = "+4420".parse().unwrap();
    let p4421: Prefix = "+4421".parse().unwrap();
    let mut tx = storage.begin().await.unwrap();
    tx.providers().set_prefixes(b.id, &[p4421.clone(), p4420.clone(), p4421.clone()]).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = storage.begin().await.unwrap();
    assert_eq!(tx.providers().by_id(b.id).await.unwrap().unwrap().prefixes, [p4420.clone(), p4421]);
    tx.providers().set_prefixes(b.id, &[]).await.unwrap();
    assert!(tx.providers().by_name("beta").await.unwrap().unwrap().prefixes.is_empty());
    drop(tx);
    let mut tx = storage.begin().await.unwrap();
    assert_eq!(tx.providers().by_id(b.id).await.unwrap().unwrap().prefixes.len(), 2, "rolled back");
    tx.providers().set_prefixes(b.id, std::slice::from_ref(&p4420)).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = storage.begin().await.unwrap();
    assert_eq!(tx.providers().by_id(b.id).await.unwrap().unwrap(), b);
}

async fn numbers_and_journal(storage: &dyn Storage, clock: &MockClock) {
    let mut tx = storage.begin().await.unwrap();
    let acme = tx.providers().by_name("acme").await.unwrap().unwrap().id;
    let beta = tx.providers().by_name("beta").await.unwrap().unwrap().id;
    let start = tx.journal().current_version().await.unwrap();
    let n1 = number("+442079460001");
    assert!(tx.numbers().get(&n1).await.unwrap().is_none());
    let r1 = record("+442079460001", "alice");
    let created = tx.numbers().put(&r1, acme).await.unwrap();
    assert_eq!((created.version, created.provider), (start + 1, acme));
    tx.commit().await.unwrap();
    let t0 = clock.now_system();

    clock.advance(Duration::from_secs(10));
    let mut tx = storage.begin().await.unwrap();
    assert_eq!(tx.numbers().get(&n1).await.unwrap().unwrap(), created);
    let mut r1b = r1.clone();
    r1b.key = Some(MasterKey::from_base64("WGZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmY").unwrap());
    r1b.services.truncate(1);
    let updated = tx.numbers().put(&r1b, beta).await.unwrap();
    assert_eq!(updated.version, start + 2);
    assert_eq!(updated.created_at, t0, "created_at survives updates");
    assert_eq!(updated.updated_at, clock.now_system());
    let r2 = record("+4915112345678", "bob");
    tx.numbers().put(&r2, acme).await.unwrap();
    tx.commit().await.unwrap();

    let mut tx = storage.begin().await.unwrap();
    let got = tx.numbers().get(&n1).await.unwrap().unwrap();
    assert_eq!(got, updated);
    assert_eq!(got.record.key, r1b.key, "key round-trips");
    assert_eq!(tx.numbers().count().await.unwrap(), 2);
    let all = tx.numbers().all().await.unwrap();
    assert_eq!(all.iter().map(|s| s.record.number.as_str()).collect::<Vec<_>>(), ["+442079460001", "+4915112345678"]);
    let first = tx.numbers().page(None, 1).await.unwrap();
    assert_eq!(first, all[..1], "first page");
    let rest = tx.numbers().page(Some(&first[0].record.number), 10).await.unwrap();
    assert_eq!(rest, all[1..], "the page after the cursor");
    assert!(tx.numbers().page(Some(&all[1].record.number), 10).await.unwrap().is_empty(), "past the end");
    let removed = tx.numbers().delete(&n1, Some(beta)).await.unwrap().unwrap();
    assert_eq!(removed.record, r1b);
    assert!(tx.numbers().delete(&n1, Some(beta)).await.unwrap().is_none(), "second delete finds nothing");
    assert!(tx.numbers().get(&n1).await.unwrap().is_none());
    tx.commit().await.unwrap();

    let mut tx = storage.begin().await.unwrap();
    assert_eq!(tx.journal().current_version().await.unwrap(), start + 4);
    let j = tx.journal().since(start, 100).await.unwrap();
    assert_eq!(j.iter().map(|e| e.version).collect::<Vec<_>>(), [start + 1, start + 2, start + 3, start + 4]);
    assert_eq!((j[0].old.as_ref(), j[0].new.as_ref(), j[0].provider, j[0].at), (None, Some(&r1), Some(acme), t0));
    assert_eq!((j[1].old.as_ref(), j[1].new.as_ref(), j[1].provider), (Some(&r1), Some(&r1b), Some(beta)));
    assert_eq!(j[2].number, r2.number);
    assert_eq!((j[3].old.as_ref(), j[3].new.as_ref()), (Some(&r1b), None));
    assert_eq!(tx.journal().since(start + 2, 1).await.unwrap().len(), 1, "limit");
    assert!(tx.journal().since(start + 4, 10).await.unwrap().is_empty());
}

async fn rollback_on_drop(storage: &dyn Storage) {
    let mut tx = storage.begin().await.unwrap();
    let acme = tx.providers().by_name("acme").await.unwrap().unwrap().id;
    let before = tx.journal().current_version().await.unwrap();
    drop(tx);

    let mut tx = storage.begin().await.unwrap();
    tx.numbers().put(&record("+12025550143", "carol"), acme).await.unwrap();
    tx.providers().add("dropped", TokenHash::of("token-d"), &[]).await.unwrap();
    drop(tx); // no commit

    let mut tx = storage.begin().await.unwrap();
    assert!(tx.numbers().get(&number("+12025550143")).await.unwrap().is_none(), "rolled back");
    assert!(tx.providers().by_name("dropped").await.unwrap().is_none(), "rolled back");
    assert_eq!(tx.journal().current_version().await.unwrap(), before, "no version taken");
    assert!(tx.journal().since(before, 10).await.unwrap().is_empty());
}

async fn dnssec_keys(storage: &dyn Storage) {
    let apex = "e164.tincan.test.";
    let mut tx = storage.begin().await.unwrap();
    assert!(tx.keys().for_apex(apex).await.unwrap().is_empty());
    let ksk =
        tx.keys().add(apex, KeyRole::Ksk, KeyAlgorithm::EcdsaP256, &[1, 2, 3, 0, 255], KeyState::Active).await.unwrap();
    let zsk = tx.keys().add(apex, KeyRole::Zsk, KeyAlgorithm::Ed25519, &[9; 48], KeyState::Published).await.unwrap();
    tx.keys().add("other.test.", KeyRole::Zsk, KeyAlgorithm::EcdsaP256, &[7], KeyState::Active).await.unwrap();
    tx.commit().await.unwrap();

    let mut tx = storage.begin().await.unwrap();
    let keys = tx.keys().for_apex(apex).await.unwrap();
    assert_eq!(keys, vec![ksk.clone(), zsk.clone()]);
    assert!(tx.keys().set_state(zsk.id, KeyState::Active).await.unwrap());
    assert!(!tx.keys().set_state(-1, KeyState::Active).await.unwrap());
    tx.commit().await.unwrap();
    let mut tx = storage.begin().await.unwrap();
    let keys = tx.keys().for_apex(apex).await.unwrap();
    assert_eq!(keys[1].state, KeyState::Active);
    for state in [KeyState::Published, KeyState::Inactive, KeyState::Staged, KeyState::Retiring, KeyState::Retired] {
        assert!(tx.keys().set_state(zsk.id, state).await.unwrap());
        assert_eq!(tx.keys().for_apex(apex).await.unwrap()[1].state, state, "{state:?} round-trips");
    }
    assert_eq!(keys[0].pkcs8, vec![1, 2, 3, 0, 255]);
}

/// `now()` of the mock clock (the suite compares stored timestamps with it).
trait NowSystem {
    fn now_system(&self) -> std::time::SystemTime;
}

impl NowSystem for MockClock {
    fn now_system(&self) -> std::time::SystemTime {
        tincan_common::Clock::now(self)
    }
}

async fn transparency_log(storage: &dyn Storage) {
    use tincan_translog::{LogEntry, SignedTreeHead, TreeHead, leaf_hash, root};

    let n1 = number("+442079460001");
    let mut tx = storage.begin().await.unwrap();
    let j = tx.journal().since(0, 100).await.unwrap();
    let f = tx.log().frontier().await.unwrap();
    assert_eq!(f.size(), j.len() as u64, "one leaf per journalled change, none for rolled-back ones");
    let hashes = tx.log().leaf_hashes(0, f.size()).await.unwrap();
    assert_eq!(root(&hashes), f.root(), "the stored right edge gives the root of the stored leaves");
    assert_eq!(tx.log().leaf_hashes(1, 3).await.unwrap(), hashes[1..3], "a range");
    let leaves = tx.log().leaves(0, f.size(), 100).await.unwrap();
    for (leaf, journalled) in leaves.iter().zip(&j) {
        assert_eq!(leaf.leaf_hash, leaf_hash(leaf.entry.as_bytes()));
        assert_eq!(leaf.number.as_ref(), Some(&journalled.number));
        match LogEntry::parse(&leaf.entry).unwrap() {
            LogEntry::Number { version, number, record, provider, .. } => {
                assert_eq!((version, &number, &record), (journalled.version, &journalled.number, &journalled.new));
                assert_eq!(provider, journalled.provider.map(|p| p.0));
            }
            other => panic!("not a number entry: {other:?}"),
        }
    }
    assert_eq!(tx.log().leaves(1, 3, 1).await.unwrap().len(), 1, "limit");
    let newest = tx.log().find(&n1, None, f.size()).await.unwrap().unwrap();
    assert_eq!(newest.index, 3, "the deletion is the newest entry of n1");
    let first = tx.log().find(&n1, Some(j[0].version), f.size()).await.unwrap().unwrap();
    assert_eq!(first.index, 0);
    assert_eq!(tx.log().find(&n1, None, 1).await.unwrap().unwrap().index, 0, "only below the given size");
    assert!(tx.log().find(&number("+12025550143"), None, f.size()).await.unwrap().is_none());
    drop(tx);

    // A key change appended by the caller; dropped transactions append nothing.
    let key = LogEntry::Key {
        apex: "e164.tincan.test.".into(),
        key_id: 1,
        role: "zsk".into(),
        algorithm: 13,
        key_tag: 4711,
        dnskey: "AQID".into(),
        state: "published".into(),
        at_ms: 1,
    };
    let mut tx = storage.begin().await.unwrap();
    assert_eq!(tx.log().append(&key).await.unwrap(), f.size());
    drop(tx);
    let mut tx = storage.begin().await.unwrap();
    assert_eq!(tx.log().frontier().await.unwrap().size(), f.size(), "rolled back");
    assert_eq!(tx.log().append(&key).await.unwrap(), f.size());
    tx.commit().await.unwrap();
    let mut tx = storage.begin().await.unwrap();
    let grown = tx.log().frontier().await.unwrap();
    assert_eq!(grown.size(), f.size() + 1);
    let leaf = tx.log().leaves(f.size(), f.size() + 1, 10).await.unwrap().remove(0);
    assert_eq!((LogEntry::parse(&leaf.entry).unwrap(), leaf.number), (key, None));
    assert_eq!(root(&tx.log().leaf_hashes(0, grown.size()).await.unwrap()), grown.root());

    // Signed tree heads and the log key.
    assert!(tx.log().latest_sth().await.unwrap().is_none());
    let sth = |size: u64, sig: &str| SignedTreeHead {
        head: TreeHead { tree_size: size, timestamp_ms: 1_700_000_000_000 + size, root_hash: [size as u8; 32] },
        signature: sig.into(),
    };
    tx.log().store_sth(&sth(2, "a")).await.unwrap();
    tx.log().store_sth(&sth(5, "b")).await.unwrap();
    tx.log().store_sth(&sth(5, "other")).await.unwrap();
    assert_eq!(tx.log().latest_sth().await.unwrap(), Some(sth(5, "b")), "a size is signed once");
    tx.log().store_sth(&sth(3, "c")).await.unwrap();
    assert_eq!(tx.log().latest_sth().await.unwrap(), Some(sth(5, "b")), "the largest tree, not the last stored");
    assert!(tx.log().signing_seed().await.unwrap().is_none());
    tx.log().add_signing_seed(&[3; 32]).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = storage.begin().await.unwrap();
    assert_eq!(tx.log().signing_seed().await.unwrap(), Some([3; 32]));
    tx.log().add_signing_seed(&[4; 32]).await.unwrap();
    assert_eq!(tx.log().signing_seed().await.unwrap(), Some([3; 32]), "the first seed stays the log's key");
}

async fn signed_records_and_scan(storage: &dyn Storage) {
    let mut tx = storage.begin().await.unwrap();
    let acme = tx.providers().by_name("acme").await.unwrap().unwrap().id;
    let before = tx.journal().current_version().await.unwrap();
    let r = record("+442079460077", "sig");
    let stored = tx.numbers().put_signed(&r, acme, Some(b"signed-1")).await.unwrap();
    assert_eq!(stored.version, before + 1, "a signed put is a change like any other");
    tx.numbers().put_signed(&record("+442079460078", "nosig"), acme, None).await.unwrap();
    tx.commit().await.unwrap();

    let rows = scan_all(storage).await;
    let row = |n: &str| rows.iter().find(|r| r.0 == n).cloned().unwrap();
    assert_eq!(row("+442079460077"), ("+442079460077".to_owned(), acme, Some(b"signed-1".to_vec()), r.clone()));
    assert_eq!(row("+442079460078").2, None);
    // The scan's numbers and signed forms are those `current` reads.
    let numbers: Vec<E164> = rows.iter().map(|r| number(&r.0)).collect();
    let mut tx = storage.begin().await.unwrap();
    let mut current: Vec<_> = tx
        .numbers()
        .current(&numbers)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.record.number.as_str().to_owned(), c.signed))
        .collect();
    drop(tx);
    current.sort();
    let mut scanned: Vec<_> = rows.iter().map(|r| (r.0.clone(), r.2.clone())).collect();
    scanned.sort();
    assert_eq!(current, scanned);

    // A plain put (a writer that does not sign) clears the stored signatures: they would not match.
    let mut tx = storage.begin().await.unwrap();
    let mut changed = r.clone();
    changed.services.truncate(1);
    tx.numbers().put(&changed, acme).await.unwrap();
    tx.commit().await.unwrap();
    let rows = scan_all(storage).await;
    let got = rows.iter().find(|x| x.0 == "+442079460077").unwrap();
    assert_eq!((got.2.as_ref(), &got.3), (None, &changed));
}

async fn current_and_stored_signatures(storage: &dyn Storage) {
    let mut tx = storage.begin().await.unwrap();
    let acme = tx.providers().by_name("acme").await.unwrap().unwrap().id;
    let a = tx.numbers().put_signed(&record("+442079460081", "a"), acme, Some(b"sig-a")).await.unwrap();
    let b = tx.numbers().put_signed(&record("+442079460082", "b"), acme, None).await.unwrap();
    tx.commit().await.unwrap();

    // Many numbers at once (more than one statement's worth), unknown ones left out.
    let mut asked: Vec<E164> = (0..super::CURRENT_CHUNK + 7).map(|i| number(&format!("+4930{i:06}"))).collect();
    asked.push(number("+442079460082"));
    asked.push(number("+442079460081"));
    let mut tx = storage.begin().await.unwrap();
    let mut got = tx.numbers().current(&asked).await.unwrap();
    got.sort_by(|x, y| x.record.number.cmp(&y.record.number));
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!((&got[0].record, got[0].version, got[0].signed.as_deref()), (&a.record, a.version, Some(&b"sig-a"[..])));
    assert_eq!((&got[1].record, got[1].version, got[1].signed.as_deref()), (&b.record, b.version, None));
    assert!(tx.numbers().current(&[]).await.unwrap().is_empty());
    let version = tx.journal().current_version().await.unwrap();

    // New signatures replace the stored ones only at the version they were made for.
    let updates = [
        SignatureUpdate { number: a.record.number.clone(), version: a.version, signed: b"sig-a2".to_vec() },
        SignatureUpdate { number: b.record.number.clone(), version: b.version - 1, signed: b"old".to_vec() },
        SignatureUpdate { number: number("+4930999999"), version: 1, signed: b"none".to_vec() },
    ];
    assert_eq!(tx.numbers().store_signatures(&updates).await.unwrap(), 1);
    tx.commit().await.unwrap();
    let mut tx = storage.begin().await.unwrap();
    let got = tx.numbers().current(&[a.record.number.clone(), b.record.number.clone()]).await.unwrap();
    let signed = |n: &E164| got.iter().find(|c| &c.record.number == n).unwrap().clone();
    assert_eq!(signed(&a.record.number).signed.as_deref(), Some(&b"sig-a2"[..]));
    assert_eq!(signed(&a.record.number).version, a.version, "storing signatures is not a change");
    assert_eq!(signed(&b.record.number).signed, None, "a stale version is not overwritten");
    assert_eq!(tx.journal().current_version().await.unwrap(), version, "nothing journalled");
    assert!(tx.numbers().store_signatures(&[]).await.unwrap() == 0);
}

type Scanned = (String, super::ProviderId, Option<Vec<u8>>, NumberRecord);

/// Every number as the scan reads it, with its record (read with `current`: the scan reads no records).
async fn scan_all(storage: &dyn Storage) -> Vec<Scanned> {
    let mut tx = storage.begin().await.unwrap();
    let mut rows = Vec::new();
    let n = tx
        .numbers()
        .scan(&mut |row| {
            rows.push((row.number()?, row.provider, row.signed.map(<[u8]>::to_vec)));
            Ok(())
        })
        .await
        .unwrap();
    assert_eq!(n as usize, rows.len());
    let numbers: Vec<E164> = rows.iter().map(|r| r.0.clone()).collect();
    let records: std::collections::HashMap<E164, NumberRecord> = tx
        .numbers()
        .current(&numbers)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.record.number.clone(), c.record))
        .collect();
    rows.into_iter().map(|(n, p, s)| (n.as_str().to_owned(), p, s, records[&n].clone())).collect()
}

async fn port_requests(storage: &dyn Storage, clock: &MockClock) {
    use tincan_translog::{LogEntry, PortParty};
    let mut tx = storage.begin().await.unwrap();
    let losing = tx.providers().add("port-losing", TokenHash::of("port-l"), &["+3312".parse().unwrap()]).await.unwrap();
    let gaining =
        tx.providers().add("port-gaining", TokenHash::of("port-g"), &["+3399".parse().unwrap()]).await.unwrap();
    let n = number("+33123456789");
    tx.numbers().put(&record("+33123456789", "old"), losing.id).await.unwrap();
    let ends = clock.now_system() + Duration::from_secs(3600);
    let key = MasterKey::from_base64("WGZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmY").unwrap();
    let new = NewPort {
        number: n.clone(),
        losing: losing.id,
        gaining: gaining.id,
        services: record("+33123456789", "new").services,
        key: None,
        window_ends_at: ends,
    };
    let filed = tx.ports().file(&new).await.unwrap();
    assert_eq!((filed.state, filed.reason, filed.closed_at), (PortState::Pending, None, None));
    assert_eq!((filed.filed_at, filed.window_ends_at), (clock.now_system(), ends));
    tx.commit().await.unwrap();
    // In a transaction of its own: a failed statement ends a PostgreSQL transaction.
    let mut tx = storage.begin().await.unwrap();
    let twice = tx.ports().file(&new).await;
    assert!(matches!(twice, Err(StorageError::Duplicate(_))), "one open request per number: {twice:?}");
    drop(tx);

    let mut tx = storage.begin().await.unwrap();
    assert!(tx.ports().amend(filed.id, &new.services, Some(key)).await.unwrap());
    let open = tx.ports().open_for(&n).await.unwrap().unwrap();
    assert_eq!((open.id, open.key), (filed.id, Some(key)), "amended");
    assert_eq!(tx.ports().for_provider(losing.id, true, 10).await.unwrap(), std::slice::from_ref(&open));
    assert_eq!(tx.ports().for_provider(gaining.id, true, 10).await.unwrap(), std::slice::from_ref(&open));
    assert!(tx.ports().due(clock.now_system(), 10).await.unwrap().is_empty(), "window still open");
    assert_eq!(tx.ports().due(ends, 10).await.unwrap(), std::slice::from_ref(&open), "due at the window's end");

    // The move: one version, journalled, logged as a port naming both providers.
    let moved = NumberRecord { number: n.clone(), services: open.services.clone(), key: Some(key) };
    let stored =
        tx.numbers().port_signed(&moved, (losing.id, "port-losing"), (gaining.id, "port-gaining"), None).await.unwrap();
    assert_eq!((stored.provider, &stored.record), (gaining.id, &moved));
    assert!(tx.ports().close(filed.id, PortState::Completed, None).await.unwrap());
    assert!(!tx.ports().close(filed.id, PortState::Objected, Some(ObjectionReason::FraudSuspected)).await.unwrap());
    tx.commit().await.unwrap();

    let mut tx = storage.begin().await.unwrap();
    let closed = tx.ports().get(filed.id).await.unwrap().unwrap();
    assert_eq!((closed.state, closed.closed_at), (PortState::Completed, Some(clock.now_system())));
    assert!(tx.ports().open_for(&n).await.unwrap().is_none());
    assert!(tx.ports().for_provider(losing.id, true, 10).await.unwrap().is_empty());
    assert_eq!(tx.ports().for_provider(losing.id, false, 10).await.unwrap(), [closed]);
    let size = tx.log().frontier().await.unwrap().size();
    let leaf = tx.log().find(&n, None, size).await.unwrap().unwrap();
    assert_eq!(
        LogEntry::parse(&leaf.entry).unwrap(),
        LogEntry::Port {
            version: stored.version,
            number: n.clone(),
            record: moved,
            from: PortParty { provider: losing.id.0, name: "port-losing".into() },
            to: PortParty { provider: gaining.id.0, name: "port-gaining".into() },
            at_ms: clock.now_system().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64,
        }
    );
    let j = tx.journal().since(stored.version - 1, 1).await.unwrap();
    assert_eq!(j[0].provider, Some(gaining.id));

    // A new request may follow a closed one; an objection keeps its reason.
    let again = NewPort { losing: gaining.id, gaining: losing.id, ..new };
    let second = tx.ports().file(&again).await.unwrap();
    assert!(tx.ports().close(second.id, PortState::Objected, Some(ObjectionReason::RegistrationLocked)).await.unwrap());
    let objected = tx.ports().get(second.id).await.unwrap().unwrap();
    assert_eq!((objected.state, objected.reason), (PortState::Objected, Some(ObjectionReason::RegistrationLocked)));
    tx.commit().await.unwrap();
}
