//! The registrar with sipp as a device: digest challenge and answer, wrong passwords, too-short
//! registrations, unregistering.

use crate::harness::{ALICE_DEVICE, ALICE_DEVICE_PASSWORD, ALICE_NUMBER, Harness, register};
use tincan_testkit::ports::free_addr;
use tincan_testkit::sip::Scenario;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_registers_with_its_own_password_and_only_with_it() {
    let h = Harness::start(None).await;
    let store = h.bridge.as_ref().unwrap().store.clone();
    let now = || std::time::SystemTime::UNIX_EPOCH.elapsed().unwrap().as_secs() as i64;
    let device = free_addr();

    // A wrong password: 403, nothing bound.
    let s = Scenario::new("wrong", &register(ALICE_DEVICE, "not-the-password", 300, 403)).unwrap();
    s.run(s.command(h.sip, device, 1)).await.unwrap();
    // Another device's name: 403.
    let s = Scenario::new("stranger", &register("mallory", ALICE_DEVICE_PASSWORD, 300, 403)).unwrap();
    s.run(s.command(h.sip, free_addr(), 1)).await.unwrap();
    // Too brief: 423.
    let s = Scenario::new("brief", &register(ALICE_DEVICE, ALICE_DEVICE_PASSWORD, 10, 423)).unwrap();
    s.run(s.command(h.sip, free_addr(), 1)).await.unwrap();
    assert!(store.bindings(ALICE_NUMBER, now()).await.unwrap().is_empty());

    // The right password: 200, the contact is bound with the source address the REGISTER came from.
    let s = Scenario::new("ok", &register(ALICE_DEVICE, ALICE_DEVICE_PASSWORD, 300, 200)).unwrap();
    s.run(s.command(h.sip, device, 1)).await.unwrap();
    let b = store.bindings(ALICE_NUMBER, now()).await.unwrap();
    assert_eq!(b.len(), 1, "{b:?}");
    assert_eq!(b[0].username, ALICE_DEVICE);
    assert_eq!(b[0].contact, format!("sip:desk@{device}"));
    assert_eq!(b[0].source.addr, device);
    assert!((b[0].expires_at - now() - 300).abs() <= 2);

    // Unregistering removes it.
    let s = Scenario::new("off", &register(ALICE_DEVICE, ALICE_DEVICE_PASSWORD, 0, 200)).unwrap();
    s.run(s.command(h.sip, device, 1)).await.unwrap();
    assert!(store.bindings(ALICE_NUMBER, now()).await.unwrap().is_empty());
}
