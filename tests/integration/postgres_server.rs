//! The test PostgreSQL itself ([`crate::util::postgres`]): the shared cluster gives each test a
//! database of its own, and a private cluster survives SIGKILL with its committed rows.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use tokio_postgres::error::SqlState;

use crate::util::postgres::{self, PgServer};

#[tokio::test]
async fn shared_server_gives_each_test_a_database_of_its_own() {
    let pg = postgres::shared();
    let a = pg.create_database();
    let b = pg.create_database();
    assert_ne!(a, b);
    assert!(a.starts_with(&format!("postgres://postgres@127.0.0.1:{}/", pg.port())));

    let ca = postgres::connect(&a).await;
    let cb = postgres::connect(&b).await;
    let version: i32 = ca
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .unwrap()
        .get(0);
    assert!((150000..160000).contains(&version), "version {version}");

    ca.batch_execute("CREATE TABLE t (v int); INSERT INTO t VALUES (7)")
        .await
        .unwrap();
    let err = cb.query("SELECT v FROM t", &[]).await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::UNDEFINED_TABLE), "{err}");
    let v: i32 = ca.query_one("SELECT v FROM t", &[]).await.unwrap().get(0);
    assert_eq!(v, 7);
    // The same server through psql (no runtime needed).
    let db = a.rsplit('/').next().unwrap();
    assert_eq!(pg.psql(db, "SELECT v FROM t"), "7\n");
}

#[test]
fn private_server_keeps_committed_rows_across_kill9_and_restart() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pg = PgServer::start_private();
    let url = pg.create_database();
    let port = pg.port();
    let data_dir = pg.data_dir().to_owned();

    let client = rt.block_on(postgres::connect(&url));
    rt.block_on(async {
        client
            .batch_execute("CREATE TABLE t (v text); INSERT INTO t VALUES ('committed')")
            .await
            .unwrap();
        client
            .batch_execute("BEGIN; INSERT INTO t VALUES ('open')")
            .await
            .unwrap();
    });

    pg.kill9();
    let err = rt.block_on(client.query("SELECT 1", &[])).unwrap_err();
    assert!(err.is_closed(), "{err}");
    assert!(
        rt.block_on(tokio_postgres::connect(&url, tokio_postgres::NoTls))
            .is_err()
    );

    pg.restart();
    assert_eq!(pg.port(), port);
    assert_eq!(pg.data_dir(), data_dir);
    assert!(
        pg.log().contains("automatic recovery in progress"),
        "no crash recovery in the log:\n{}",
        pg.log()
    );
    let client = rt.block_on(postgres::connect(&url));
    let rows: Vec<String> = rt
        .block_on(client.query("SELECT v FROM t ORDER BY v", &[]))
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(rows, ["committed"]);

    drop(pg);
    assert!(!data_dir.exists(), "{} not removed", data_dir.display());
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    assert!(TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err());
}
