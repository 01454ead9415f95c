use tincan_testkit::tools;

#[test]
fn runs_a_debian_tool() {
    // kzonecheck (Debian `knot`) checks a small zone file.
    let dir = tempfile::tempdir().unwrap();
    let zone = dir.path().join("z.zone");
    std::fs::write(
        &zone,
        "$ORIGIN e164.example.\n$TTL 300\n\
         @ SOA ns.e164.example. admin.e164.example. 1 3600 600 86400 300\n\
         @ NS ns.e164.example.\nns A 127.0.0.1\n\
         1.0.0.0.6.4.9.7.0.2.4.4 NAPTR 10 100 \"u\" \"E2U+sip\" \"!^.*$!sip:+442079460001@sip.test!\" .\n",
    )
    .unwrap();
    let out = tools::run_ok(tools::command("kzonecheck").args(["-o", "e164.example."]).arg(&zone));
    assert!(out.is_ok(), "{out:?}");
    // And it notices a broken zone.
    std::fs::write(&zone, "$ORIGIN e164.example.\n@ NAPTR bogus\n").unwrap();
    assert!(tools::run_ok(tools::command("kzonecheck").args(["-o", "e164.example."]).arg(&zone)).is_err());
}

#[test]
fn missing_tools_name_their_package() {
    assert_eq!(tools::package_of("delv"), Some("bind9-dnsutils"));
    assert_eq!(tools::package_of("sipp"), Some("sip-tester"));
    let err = tools::find("definitely-not-a-tool").unwrap_err().to_string();
    assert!(err.contains("not installed"), "{err}");
}
