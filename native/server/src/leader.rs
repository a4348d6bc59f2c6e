//! The upload completer among replicas that share a database audit log: one replica at a
//! time completes uploads. Before each pass a replica takes the lease `upload-completer`
//! in the database ([`PgLog::try_lease`]) for `--completer-lease`; during a long pass it
//! renews it every third of that time, and stops the pass when another replica holds it or
//! when it could not renew for two thirds of it. A leader that dies loses the lease when it
//! expires; the next replica whose pass comes takes it. Between passes the lease is left to
//! expire, so leadership may move from pass to pass, never two at once.

use std::sync::Arc;
use std::time::Duration;

use tapelog_audit::PgLog;
use tapelog_core::complete::{half_jitter_ms, seventh_jitter_ms};
use tokio::sync::watch;

use super::{App, stopped};

/// The lease's name in `tapelog_leases`.
const LEASE: &str = "upload-completer";

/// Runs completer passes every `period` (jittered as the plain completer's), each only while
/// this replica holds the lease, until `stop`.
pub(crate) async fn run_completer(
    app: &Arc<App>,
    db: PgLog,
    grace: Duration,
    period: Duration,
    lease: Duration,
    stop: &mut watch::Receiver<bool>,
) {
    let holder = format!("{}/{}", app.server_id, uuid::Uuid::new_v4());
    let completer = app.completer(grace, period);
    let period_ms = u64::try_from(period.as_millis()).unwrap_or(u64::MAX);
    let mut delay = half_jitter_ms(period_ms, rand());
    loop {
        tokio::select! {
            () = stopped(stop) => break,
            () = tokio::time::sleep(Duration::from_millis(delay)) => {}
        }
        delay = seventh_jitter_ms(period_ms, rand()).max(1);
        if !matches!(db.try_lease(LEASE, &holder, lease).await, Ok(true)) {
            continue;
        }
        let now = app.stream_config.clock.unix_ms();
        tokio::select! {
            _ = completer.run_once(now) => {}
            () = keep_lease(&db, &holder, lease) => {
                eprintln!("upload completer: lost the lease ({LEASE}) during a pass; another replica goes on");
            }
            () = stopped(stop) => break,
        }
    }
    let _ = db.release_lease(LEASE, &holder).await;
}

/// Renews the lease every third of its length; returns when it is lost (another holder, or
/// no renewal for two thirds of its length).
async fn keep_lease(db: &PgLog, holder: &str, lease: Duration) {
    let mut renewed = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(lease / 3).await;
        match db.try_lease(LEASE, holder, lease).await {
            Ok(true) => renewed = tokio::time::Instant::now(),
            Ok(false) => return,
            Err(_) if renewed.elapsed() >= lease * 2 / 3 => return,
            Err(_) => {}
        }
    }
}

fn rand() -> u64 {
    u64::from_le_bytes(
        uuid::Uuid::new_v4().as_bytes()[..8]
            .try_into()
            .unwrap_or([0; 8]),
    )
}
