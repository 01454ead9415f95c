//! The benchmark through the Python bindings (ignored: `bench/client/ffi.sh` runs it, not CI): on the real
//! chain, the time from `send_to_number` to the peer's `MessageListener` callback, the cold start of an existing
//! session and the cost of a no-op call (`bench/client/ffi_latency.py` measures; this starts the chain for it).

use crate::chain::Chain;
use crate::python;
use std::path::Path;
use tincan_testkit::directory::APEX;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: bench/client/ffi.sh"]
async fn bench_send_to_listener_callback() -> anyhow::Result<()> {
    let Some(bindgen) = python::bindgen() else {
        return Ok(());
    };
    let Some(chain) = Chain::start("+442079460499").await? else {
        return Ok(());
    };
    let bindings = tempfile::Builder::new().prefix("tincan-ffi-bench-").tempdir()?;
    python::generate_python(&bindgen, bindings.path())?;
    let env = vec![
        ("TINCAN_FFI_EXT_URL", chain.ext.url.clone()),
        ("TINCAN_FFI_HS_URL", chain.hs.url()),
        ("TINCAN_FFI_SMS_FILE", chain.ext.sms_file().display().to_string()),
        ("TINCAN_FFI_DNS", chain.proxy.addr.to_string()),
        ("TINCAN_FFI_APEX", APEX.to_owned()),
        ("TINCAN_FFI_ANCHOR", chain.anchor.clone()),
        ("TINCAN_FFI_LOG_URL", chain.log.url.clone()),
        ("TINCAN_FFI_LOG_KEY", chain.log_key.clone()),
        ("TINCAN_BENCH_ROUNDS", std::env::var("TINCAN_BENCH_ROUNDS").unwrap_or_else(|_| "50".into())),
    ];
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/client/ffi_latency.py");
    let dir = bindings.path().to_owned();
    let out = tokio::task::spawn_blocking(move || python::run_script(&script, &dir, &env)).await??;
    print!("{out}");
    Ok(())
}
