use sqlx::{Connection, Row};
use tincan_testkit::Postgres;

#[tokio::test]
async fn creates_and_drops_a_database() {
    let Some(db) = Postgres::create().await else { return };
    let name = db.name().to_owned();
    {
        let mut conn = sqlx::postgres::PgConnection::connect(db.url()).await.unwrap();
        sqlx::query("CREATE TABLE t (id integer primary key)").execute(&mut conn).await.unwrap();
        sqlx::query("INSERT INTO t VALUES (1)").execute(&mut conn).await.unwrap();
        let n: i64 = sqlx::query("SELECT count(*) FROM t").fetch_one(&mut conn).await.unwrap().get(0);
        assert_eq!(n, 1);
        // The connection stays open on purpose: the drop must still succeed (WITH (FORCE)).
        drop(db);
        let mut admin = sqlx::postgres::PgConnection::connect(&tincan_testkit::postgres::admin_url()).await.unwrap();
        let left: i64 = sqlx::query("SELECT count(*) FROM pg_database WHERE datname = $1")
            .bind(&name)
            .fetch_one(&mut admin)
            .await
            .unwrap()
            .get(0);
        assert_eq!(left, 0, "database {name} was not dropped");
    }
}
