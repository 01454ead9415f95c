//! Generates the Python bindings from the built library (UniFFI library mode, with `clients/ffi/uniffi-bindgen`)
//! and runs the pytest suite in
//! `tests/python` against the real chain (`chain.rs`: Synapse, `tincan-ext` with its SMS sink, the directory
//! behind a DNS man-in-the-middle that tampers with one number, its transparency log). The suite gets the chain's
//! addresses in `TINCAN_FFI_*` variables; every Python test is one pytest test, and the pytest run as a whole is
//! this test.

use crate::chain::Chain;
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where `dev/test` says the generator is.
const BINDGEN_ENV: &str = "TINCAN_TEST_UNIFFI_BINDGEN";
/// Answers for this number are tampered with on the wire.
const TAMPERED_NUM: &str = "+442079460305";

/// The cdylib the tests were built with: `target/debug/libtincan_ffi.so` (the test executable is in
/// `target/debug/deps`).
fn cdylib() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let deps = exe.parent().context("test exe dir")?;
    let name = format!("{}tincan_ffi{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX);
    [deps.join(&name), deps.parent().context("target dir")?.join(&name)]
        .into_iter()
        .find(|p| p.exists())
        .with_context(|| format!("{name} not built next to {}", exe.display()))
}

/// `tincan_ffi.py` and the library it loads, in `out`.
pub fn generate_python(bindgen: &Path, out: &Path) -> anyhow::Result<()> {
    let lib = generate(bindgen, out, &["python"])?;
    std::fs::copy(&lib, out.join(lib.file_name().context("lib name")?))?;
    Ok(())
}

/// The generator (`clients/ffi/uniffi-bindgen`, built by `dev/test`): `TINCAN_TEST_UNIFFI_BINDGEN`, else where
/// dev/lib.sh builds it. `None` outside CI when it is not built (the test is skipped).
fn bindgen() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(BINDGEN_ENV) {
        return Some(p.into());
    }
    let target = std::env::current_exe().ok()?.parent()?.parent()?.parent()?.to_owned();
    let p = target.join("uniffi-bindgen/debug/uniffi-bindgen");
    if p.exists() {
        return Some(p);
    }
    assert!(!tincan_testkit::in_ci(), "{BINDGEN_ENV} must point at uniffi-bindgen in CI");
    eprintln!("skipped: no uniffi-bindgen (dev/test builds it; or set {BINDGEN_ENV})");
    None
}

/// Bindings for `languages` ("python", "kotlin", "swift") from the built library, in `out`; the library's path.
fn generate(bindgen: &Path, out: &Path, languages: &[&str]) -> anyhow::Result<PathBuf> {
    let lib = cdylib()?;
    let mut cmd = Command::new(bindgen);
    cmd.args(["generate", "--no-format", "--metadata-no-deps", "--out-dir"]).arg(out);
    for l in languages {
        cmd.args(["--language", l]);
    }
    let o = cmd.arg(&lib).output()?;
    if !o.status.success() {
        bail!("uniffi-bindgen failed: {}", String::from_utf8_lossy(&o.stderr));
    }
    Ok(lib)
}

/// The Kotlin and Swift bindings generate (they cannot be compiled here: no Kotlin compiler recent enough, no
/// Swift toolchain, no Android or iOS Rust targets), with the API the apps use.
#[test]
fn kotlin_and_swift_bindings_generate() -> anyhow::Result<()> {
    let Some(bindgen) = bindgen() else { return Ok(()) };
    let out = tempfile::Builder::new().prefix("tincan-ffi-gen-").tempdir()?;
    generate(&bindgen, out.path(), &["kotlin", "swift"])?;
    let kotlin = std::fs::read_to_string(out.path().join("uniffi/tincan_ffi/tincan_ffi.kt"))?;
    for api in
        ["suspend fun `sendToNumber`", "interface MessageListener", "class ClientException", "suspend fun `open`"]
    {
        assert!(kotlin.contains(api), "Kotlin bindings lack {api}");
    }
    let swift = std::fs::read_to_string(out.path().join("tincan_ffi.swift"))?;
    for api in ["func sendToNumber(", "protocol MessageListener", "enum ClientError", "func open("] {
        assert!(swift.contains(api), "Swift bindings lack {api}");
    }
    assert!(out.path().join("tincan_ffiFFI.h").exists());
    Ok(())
}

fn python() -> PathBuf {
    let venv = std::env::var_os("TINCAN_TEST_VENV").map(PathBuf::from).unwrap_or_else(|| ".venv".into());
    venv.join("bin/python")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_bindings_on_the_real_chain() -> anyhow::Result<()> {
    // Synapse refuses to push to loopback addresses by default; the test's push gateway is on one.
    let local_push = serde_json::json!({"ip_range_whitelist": ["127.0.0.1"]});
    let Some(bindgen) = bindgen() else { return Ok(()) };
    let Some(chain) = Chain::start_with(TAMPERED_NUM, |b| b.config(local_push)).await? else { return Ok(()) };
    let out = tempfile::Builder::new().prefix("tincan-ffi-py-").tempdir()?;
    generate_python(&bindgen, out.path())?;
    let suite = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python");
    let status = tokio::task::spawn_blocking({
        let mut cmd = Command::new(python());
        cmd.args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-x"])
            .arg(&suite)
            .env("PYTHONPATH", out.path())
            .env("TINCAN_FFI_EXT_URL", &chain.ext.url)
            .env("TINCAN_FFI_SMS_FILE", chain.ext.sms_file())
            .env("TINCAN_FFI_DNS", chain.proxy.addr.to_string())
            .env("TINCAN_FFI_APEX", tincan_testkit::directory::APEX)
            .env("TINCAN_FFI_ANCHOR", &chain.anchor)
            .env("TINCAN_FFI_LOG_URL", &chain.log.url)
            .env("TINCAN_FFI_LOG_KEY", &chain.log_key)
            .env("TINCAN_FFI_REGISTRAR", &chain.registrar.api)
            .env("TINCAN_FFI_REGISTRAR_TOKEN", &chain.registrar.token)
            .env("TINCAN_FFI_TAMPERED", TAMPERED_NUM)
            .env("TINCAN_FFI_HS_URL", chain.hs.url());
        move || cmd.status()
    })
    .await??;
    if !status.success() {
        bail!("the Python suite failed ({status}); tincan-ext's log:\n{}", chain.ext.log_tail(30));
    }
    Ok(())
}
