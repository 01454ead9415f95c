//! The Identity Service and sign-up request bodies, through the extension's real router (SQLite store, dev SMS
//! sink, an authenticated Identity Service token): the first byte picks the endpoint, the rest is the body. Any
//! body gets an answer below 500, and every refusal is a JSON object with a Matrix `errcode` — never a panic,
//! never an internal error. Rate limits are set out of reach so the bodies, not the budgets, are exercised.
//!
//! There is no homeserver (`homeserver_url` is a closed port): the endpoints that check the caller's access
//! token with it answer 502 once the body is one they accept — a JSON object, or for `unregister` also an empty
//! body (whitespace only). Any other body is refused before the homeserver is asked, so it never gets that 502.
//!
//! The router, its runtime and its database are built once per process; every input starts from the same
//! state, so a verdict never depends on the inputs before it (see the README beside `fuzz_targets/`): the
//! database is put back to the state below whenever a request wrote to it, and the app's RNG is re-seeded.
//! That state is the token, the pepper `p`, an Identity Service session `1` (client secret `s3cr3t`, code
//! `123456`) waiting for its code, a validated one `2` for binding, and `+442079460123` bound to the token's
//! user — so submitToken, bind, unbind and lookup get past their first checks.
#![no_main]

use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::sync::{Arc, LazyLock, Mutex};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;
use sqlx::AssertSqlSafe;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use tincan_homeserver_ext::app::App;
use tincan_homeserver_ext::config::{BucketConfig, ExtConfig};
use tincan_homeserver_ext::store::{Binding, CodeSession, IsToken, Purpose};
use tower::ServiceExt;

const TOKEN: &str = "fuzz-is-token";
const USER: &str = "@fuzz:localhost";
const SEED: u64 = 7;

/// Takes an empty body as well as a JSON object.
const UNREGISTER: &str = "/_tincan/client/v1/unregister";

/// The endpoints that ask the homeserver who the caller is (`whoami`).
const ASK_THE_HOMESERVER: &[&str] = &[UNREGISTER, "/_tincan/client/v1/keys/master"];

/// (method, path) per first byte.
const ENDPOINTS: &[(&str, &str)] = &[
    ("POST", "/_matrix/identity/v2/lookup"),
    ("POST", "/_matrix/identity/v2/3pid/bind"),
    ("POST", "/_matrix/identity/v2/3pid/unbind"),
    ("POST", "/_matrix/identity/v2/validate/msisdn/requestToken"),
    ("POST", "/_matrix/identity/api/v1/validate/msisdn/requestToken"),
    ("POST", "/_matrix/identity/v2/validate/msisdn/submitToken"),
    ("POST", "/_matrix/identity/api/v1/validate/msisdn/submitToken"),
    ("POST", "/_matrix/identity/v2/terms"),
    ("POST", "/_matrix/identity/v2/account/logout"),
    ("POST", "/_tincan/client/v1/register/request"),
    ("POST", "/_tincan/client/v1/register/verify"),
    ("POST", "/_tincan/client/v1/unregister"),
    ("PUT", "/_tincan/client/v1/keys/master"),
];

struct Target {
    rt: tokio::runtime::Runtime,
    router: axum::Router,
    app: Arc<App>,
    /// The harness's own connection to the app's database, which puts the first state back.
    db: SqlitePool,
    /// The database's shared-memory file (`ext.db-shm`), which starts with the WAL-index header.
    shm: std::fs::File,
    /// The WAL-index header when the database was last in the first state.
    clean: Mutex<WalHeader>,
    /// `TINCAN_FUZZ_TRACE` is set: every request and its answer go to stderr (to read what a reproducer does).
    trace: bool,
    _dir: tempfile::TempDir,
}

static TARGET: LazyLock<Target> = LazyLock::new(|| {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    // In memory (tmpfs where there is one): nothing here needs to survive the process.
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() }.unwrap();
    let db_path = dir.path().join("ext.db");
    let mut config = ExtConfig::default();
    config.database_url = format!("sqlite://{}?mode=rwc", db_path.display());
    config.homeserver_url = "http://127.0.0.1:9".into();
    config.codes.secret = tincan_common::Secret::new("fuzz-only code secret, not a real one");
    config.limits.allowed_countries = vec!["*".into()];
    config.identity.lookup_allow_none = true;
    let unlimited = BucketConfig { burst: u32::MAX, refill: u32::MAX, period_secs: 1 };
    let l = &mut config.limits;
    for b in [
        &mut l.per_number,
        &mut l.per_prefix,
        &mut l.per_ip,
        &mut l.per_country,
        &mut l.global,
        &mut l.verify_per_ip,
        &mut l.verify_per_number,
        &mut l.lookup_per_user,
        &mut l.lookup_per_ip,
        &mut l.lookup_per_homeserver,
    ] {
        *b = unlimited;
    }
    let clock: Arc<dyn tincan_common::Clock> = Arc::new(tincan_common::SystemClock);
    let (router, app, db) = rt.block_on(async {
        let store = tincan_homeserver_ext::store::open(&config.database_url).await.unwrap();
        let now = clock.unix_seconds() as i64;
        let owner = IsToken { user_id: USER.into(), server_name: "localhost".into() };
        store
            .add_token(&tincan_homeserver_ext::code::digest(TOKEN), &owner, now, now + 10 * 365 * 86_400)
            .await
            .unwrap();
        store.add_first_pepper("p", now).await.unwrap();
        let key = config.codes.secret.expose().as_bytes().to_vec();
        // Far from expiring: a long run sees the same sessions at its end as at its start.
        let far = now + 10 * 365 * 86_400;
        for (sid, number, validated_at) in [("1", "+442079460124", None), ("2", "+442079460125", Some(now))] {
            let session = CodeSession {
                sid: sid.into(),
                client_secret_digest: tincan_homeserver_ext::code::digest("s3cr3t"),
                number: number.into(),
                purpose: Purpose::Identity,
                code_hash: tincan_homeserver_ext::code::hash(&key, sid, "123456"),
                created_at: now,
                expires_at: far,
                attempts: 0,
                send_attempt: 1,
                last_sent_at: now,
                validated_at,
                consumed_at: None,
            };
            store.create_session(&session).await.unwrap();
        }
        let sms = Arc::new(tincan_homeserver_ext::sms::DevSink::new("/dev/null"));
        let homeserver = tincan_homeserver_ext::homeserver::from_config(&config, clock.clone());
        let app = Arc::new(App::new(config, store, sms, homeserver, clock, rand::rngs::StdRng::seed_from_u64(SEED)));
        let bound = Binding { number: "+442079460123".into(), user_id: USER.into() };
        tincan_homeserver_ext::identity::bind_number(&app, &bound).await.unwrap();
        // Foreign keys off: tables are emptied and refilled in any order. One connection for the whole run:
        // `data_version` counts per connection.
        let options = SqliteConnectOptions::new().filename(&db_path).foreign_keys(false);
        let db = SqlitePoolOptions::new()
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .unwrap();
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
             AND name <> '_sqlx_migrations'",
        )
        .fetch_all(&db)
        .await
        .unwrap();
        // The table names come from the database's own schema. The reset is one statement: an insert into a
        // view of the harness's connection (`TEMP`, unseen by the app) whose trigger empties and refills every
        // table, in the statement's transaction. As a batch of statements it cost two trips to sqlx's
        // connection worker per table.
        let mut reset = String::from(
            "CREATE TEMP VIEW fuzz_reset AS SELECT 1 AS x; \
             CREATE TEMP TRIGGER fuzz_reset INSTEAD OF INSERT ON fuzz_reset BEGIN ",
        );
        for t in &tables {
            let copy = format!("CREATE TABLE \"fuzz_first_{t}\" AS SELECT * FROM \"{t}\"");
            sqlx::raw_sql(AssertSqlSafe(copy)).execute(&db).await.unwrap();
            reset += &format!("DELETE FROM \"{t}\"; INSERT INTO \"{t}\" SELECT * FROM \"fuzz_first_{t}\"; ");
        }
        reset += "END;";
        sqlx::raw_sql(AssertSqlSafe(reset)).execute(&db).await.unwrap();
        let router = tincan_homeserver_ext::api::router(app.clone());
        (router, app, db)
    });
    // The store opens the database in WAL mode: the file exists while a connection is open, the harness's
    // for the whole run.
    let shm = std::fs::File::open(dir.path().join("ext.db-shm")).unwrap();
    let clean = Mutex::new(wal_header(&shm));
    let trace = std::env::var_os("TINCAN_FUZZ_TRACE").is_some();
    Target { rt, router, app, db, shm, clean, trace, _dir: dir }
});

/// The WAL-index header (<https://sqlite.org/walformat.html>, the first 48 bytes of the `-shm` file). Every
/// commit by any connection rewrites it with a higher change counter (`iChange`), and nothing else but a commit
/// or a checkpoint does, so it differs after a request exactly when the request wrote (a checkpoint follows a
/// commit). Read in this thread with one `pread`: the `PRAGMA data_version` it replaces went through sqlx's
/// connection worker thread, three round trips per input.
type WalHeader = [u8; 48];

fn wal_header(shm: &std::fs::File) -> WalHeader {
    let mut h = [0; 48];
    shm.read_exact_at(&mut h, 0).unwrap();
    h
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else { return };
    let (method, path) = ENDPOINTS[usize::from(pick) % ENDPOINTS.len()];
    let t = &*TARGET;
    *t.app.rng.lock().unwrap() = rand::rngs::StdRng::seed_from_u64(SEED);
    let mut req = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).unwrap())
        .uri(path)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Body::from(body.to_vec()))
        .unwrap();
    req.extensions_mut().insert(ConnectInfo(SocketAddr::from(([192, 0, 2, 1], 40000))));
    let (status, bytes) = t.rt.block_on(async {
        let res = t.router.clone().oneshot(req).await.unwrap();
        (res.status(), res.into_body().collect().await.unwrap().to_bytes())
    });
    // The request wrote: back to the first state.
    let mut clean = t.clean.lock().unwrap();
    let wrote = wal_header(&t.shm) != *clean;
    if t.trace {
        let body = String::from_utf8_lossy(body);
        eprintln!("{method} {path} {body:?} → {status} {bytes:?} (wrote: {wrote})");
    }
    if wrote {
        t.rt.block_on(sqlx::query("INSERT INTO fuzz_reset VALUES (1)").execute(&t.db)).unwrap();
        *clean = wal_header(&t.shm);
    }
    drop(clean);
    let accepted = serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|v| v.is_object())
        || (path == UNREGISTER && body.iter().all(u8::is_ascii_whitespace));
    let homeserver_asked = status.as_u16() == 502 && ASK_THE_HOMESERVER.contains(&path) && accepted;
    assert!(status.as_u16() < 500 || homeserver_asked, "{method} {path}: {status} {}", String::from_utf8_lossy(&bytes));
    if status.is_client_error() {
        let v: serde_json::Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{path}: {status} with a body that is not JSON ({e}): {bytes:?}"));
        assert!(v["errcode"].is_string(), "{path}: {status} without errcode: {v}");
    }
});
