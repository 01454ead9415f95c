//! Generating the bindings from the built library (UniFFI library mode, with `clients/ffi/uniffi-bindgen`, the
//! same UniFFI release as the scaffolding) and running the pytest suite on them; the Kotlin and Swift bindings
//! generate.

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

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

/// The venv's Python (`TINCAN_TEST_VENV`, as `dev/test` sets it, with pytest: dev/lib.sh `ensure_venv`) when
/// there is one, else `python3`.
fn python() -> PathBuf {
    let venv = std::env::var_os("TINCAN_TEST_VENV").map(PathBuf::from).unwrap_or_else(|| ".venv".into());
    let py = venv.join("bin/python");
    if py.exists() { py } else { "python3".into() }
}

/// Runs the pytest file `tests/python/<file>` in a new process, with the bindings in `bindings` and `env`; the
/// JSON object its tests wrote to `TINCAN_FFI_OUT` (`helpers.write_out`), its output printed. An error with
/// pytest's report when a test fails (or pytest is missing).
pub fn run_pytest(file: &str, bindings: &Path, env: &[(&str, String)]) -> anyhow::Result<serde_json::Value> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python");
    let out_file = tempfile::Builder::new().prefix("tincan-ffi-out-").suffix(".json").tempfile()?;
    std::fs::write(out_file.path(), "{}")?;
    let mut cmd = Command::new(python());
    // -s: the tests' FIGURE lines reach our output; no cache provider: nothing is written into the source tree.
    cmd.args(["-m", "pytest", "-s", "-v", "-p", "no:cacheprovider", "--rootdir"]).arg(&dir).arg(dir.join(file));
    cmd.env("PYTHONPATH", bindings).env("PYTHONDONTWRITEBYTECODE", "1").env("TINCAN_FFI_OUT", out_file.path());
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    let out = cmd.output().with_context(|| format!("running {}", python().display()))?;
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("{stdout}");
    if !out.status.success() {
        if stderr.contains("No module named pytest") {
            bail!("pytest is not installed in {}: run dev/test (dev/lib.sh installs it)", python().display());
        }
        bail!("pytest {file} failed ({}):\n{stdout}\n{stderr}", out.status);
    }
    Ok(serde_json::from_slice(&std::fs::read(out_file.path())?)?)
}

/// Runs the Python script `script` (a benchmark) with the bindings in `bindings` and the suite's helpers
/// (`tests/python`) on its path and `env`; its output, or an error with its stderr.
pub fn run_script(script: &Path, bindings: &Path, env: &[(&str, String)]) -> anyhow::Result<String> {
    let helpers = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python");
    let path = std::env::join_paths([bindings, &helpers])?;
    let mut cmd = Command::new(python());
    cmd.arg(script).env("PYTHONPATH", path).env("PYTHONDONTWRITEBYTECODE", "1");
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    let out = cmd.output().with_context(|| format!("running {}", python().display()))?;
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        bail!("{} failed ({}):\n{stdout}\n{stderr}", script.display(), out.status);
    }
    Ok(stdout.into_owned())
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
        "interface SessionStore",
        "class StoredSession",
    ] {
        assert!(kotlin.contains(api), "Kotlin bindings lack {api}");
    }
    let swift = std::fs::read_to_string(out.path().join("tincan_ffi.swift"))?;
    // `open` is a Swift keyword: the generator escapes it.
    for api in [
        "func sendToNumber(",
        "func routeToNumber(",
        "protocol MessageListener",
        "enum ClientError",
        "func `open`(",
        "protocol SessionStore",
        "struct StoredSession",
    ] {
        assert!(swift.contains(api), "Swift bindings lack {api}");
    }
    assert!(out.path().join("tincan_ffiFFI.h").exists());
    Ok(())
}
