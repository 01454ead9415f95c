//! Generating the bindings from the built library (UniFFI library mode, with `clients/ffi/uniffi-bindgen`, the
//! same UniFFI release as the scaffolding) and running the Python script; the Kotlin and Swift bindings generate.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Where `dev/test` says the generator is.
const BINDGEN_ENV: &str = "TINCAN_TEST_UNIFFI_BINDGEN";

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

/// The generator: `TINCAN_TEST_UNIFFI_BINDGEN` (set by `dev/test`), else where dev/lib.sh's
/// `ensure_uniffi_bindgen` builds it. `None` outside CI when it is not built (the test is skipped); under CI a
/// missing generator fails the test.
pub fn bindgen() -> Option<PathBuf> {
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

/// `tincan_ffi.py` and the library it loads, in `out`.
pub fn generate_python(bindgen: &Path, out: &Path) -> anyhow::Result<()> {
    let lib = generate(bindgen, out, &["python"])?;
    std::fs::copy(&lib, out.join(lib.file_name().context("lib name")?))?;
    Ok(())
}

/// The venv's Python (`TINCAN_TEST_VENV`, as `dev/test` sets it) when there is one, else `python3`: the script
/// needs only the standard library.
fn python() -> PathBuf {
    let venv = std::env::var_os("TINCAN_TEST_VENV").map(PathBuf::from).unwrap_or_else(|| ".venv".into());
    let py = venv.join("bin/python");
    if py.exists() { py } else { "python3".into() }
}

/// Runs `tests/python/<script>` with the bindings in `bindings` and `env`; its output, or an error with its stderr.
pub fn run_script(script: &str, bindings: &Path, env: &[(&str, String)]) -> anyhow::Result<Output> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python").join(script);
    let mut cmd = Command::new(python());
    cmd.arg(&path).env("PYTHONPATH", bindings).env("PYTHONDONTWRITEBYTECODE", "1");
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    let out = cmd.output().with_context(|| format!("running {}", python().display()))?;
    if !out.status.success() {
        bail!(
            "{script} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

/// The Kotlin and Swift bindings generate (they cannot be compiled here: no Kotlin compiler recent enough, no
/// Swift toolchain, no Android or iOS Rust targets), with the API the apps use.
#[test]
fn kotlin_and_swift_bindings_generate() -> anyhow::Result<()> {
    let Some(bindgen) = bindgen() else { return Ok(()) };
    let out = tempfile::Builder::new().prefix("tincan-ffi-gen-").tempdir()?;
    generate(&bindgen, out.path(), &["kotlin", "swift"])?;
    let kotlin = std::fs::read_to_string(out.path().join("uniffi/tincan_ffi/tincan_ffi.kt"))?;
    for api in [
        "suspend fun `sendToNumber`",
        "suspend fun `routeToNumber`",
        "interface MessageListener",
        "class ClientException",
        "suspend fun `open`",
    ] {
        assert!(kotlin.contains(api), "Kotlin bindings lack {api}");
    }
    let swift = std::fs::read_to_string(out.path().join("tincan_ffi.swift"))?;
    // `open` is a Swift keyword: the generator escapes it.
    for api in
        ["func sendToNumber(", "func routeToNumber(", "protocol MessageListener", "enum ClientError", "func `open`("]
    {
        assert!(swift.contains(api), "Swift bindings lack {api}");
    }
    assert!(out.path().join("tincan_ffiFFI.h").exists());
    Ok(())
}
