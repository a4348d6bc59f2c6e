//! `tapelog serve --teleport` (the real binary) as a read-only gateway to the Auth double:
//! sessions and events from the cluster, the recording rebuilt from its typed events and
//! read back by tapelog's reader, writes refused, `/healthz` pinging the cluster.

use std::process::Stdio;

use tapelog_api::{ErrorBody, ErrorCode, EventsPage};
use tapelog_core::AuditEvent;
use tapelog_core::codec::read_all;
use tapelog_teleport::double::CLUSTER_NAME;

use super::cli::Cluster;
use crate::util::serve::{AUDITOR, ServeProcess, http, session, uuid};

fn end_event(sid: &str, seconds: i64) -> AuditEvent {
    let t = tapelog_core::Timestamp::from_unix_nanos(i128::from(seconds) * 1_000_000_000);
    AuditEvent::from_json(
        &serde_json::json!({"event": "session.end", "code": "T2004I", "uid": format!("end-{sid}"),
            "time": t.to_rfc3339(), "sid": sid, "user": "alice"})
        .to_string(),
    )
    .unwrap()
}

#[test]
fn serve_teleport_is_a_read_only_gateway_to_the_cluster() {
    let c = Cluster::start();
    let (s1, s2) = (uuid(), uuid());
    let events = session(&s1, 30);
    c.double.add_session(&s1, events.clone());
    c.double
        .add_events([end_event(&s1, 1_700_000_000), end_event(&s2, 1_700_000_100)]);
    let addr = c.double.addr();
    let data = tempfile::tempdir().unwrap();
    let serve = ServeProcess::start(|cmd| {
        cmd.args(["--listen", "127.0.0.1:0", "--completer-interval", "0"])
            .arg("--data-dir")
            .arg(data.path())
            .args(["--token", &format!("auditor:aud:{AUDITOR}")])
            .args(c.args())
            .stderr(Stdio::null());
    });
    let url = serve.url.clone();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = http();
    let get = |path: &str| {
        let req = client.get(format!("{url}{path}")).bearer_auth(AUDITOR);
        rt.block_on(async { req.send().await.unwrap() })
    };
    let body = |r: reqwest::Response| rt.block_on(async { r.bytes().await.unwrap().to_vec() });

    // /healthz pings the cluster.
    let r = get("/healthz");
    assert_eq!(r.status(), 200);
    let text = String::from_utf8(body(r)).unwrap();
    assert!(
        text.contains(CLUSTER_NAME) && text.contains(&addr),
        "{text}"
    );

    // The web player's list: the cluster's session ends, newest first.
    let r = get("/v1/sessions?order=desc&limit=50");
    assert_eq!(r.status(), 200);
    let page: EventsPage = serde_json::from_slice(&body(r)).unwrap();
    let sids: Vec<&str> = page
        .events
        .iter()
        .map(|e| e["sid"].as_str().unwrap())
        .collect();
    assert_eq!(sids, [s2.as_str(), s1.as_str()]);
    assert_eq!(page.next_key, "");

    // The recording: rebuilt from the typed events, it reads back to the same events.
    let r = get(&format!("/v1/sessions/{s1}/recording"));
    assert_eq!(r.status(), 200);
    let bytes = body(r);
    let read = read_all(&bytes);
    assert!(read.error.is_none(), "{:?}", read.error);
    assert_eq!(read.events, events);
    // A Range is ignored: the whole recording again (the web player then skips).
    let req = client
        .get(format!("{url}/v1/sessions/{s1}/recording"))
        .bearer_auth(AUDITOR)
        .header("Range", "bytes=100-");
    let r = rt.block_on(async { req.send().await.unwrap() });
    assert_eq!(r.status(), 200);
    assert_eq!(body(r), bytes);

    // A session's events from an index, as JSON lines.
    let r = get(&format!("/v1/sessions/{s1}/events?from_index=5"));
    assert_eq!(r.status(), 200);
    let lines = String::from_utf8(body(r)).unwrap();
    let want: Vec<String> = events[5..].iter().map(AuditEvent::to_json).collect();
    assert_eq!(lines.lines().collect::<Vec<_>>(), want);

    // Search pages with the cluster's keys.
    let r = get("/v1/events?limit=1");
    let page: EventsPage = serde_json::from_slice(&body(r)).unwrap();
    assert_eq!(page.events.len(), 1);
    assert!(!page.next_key.is_empty());
    let r = get(&format!("/v1/events?limit=1&start_key={}", page.next_key));
    let next: EventsPage = serde_json::from_slice(&body(r)).unwrap();
    assert_eq!(next.events[0]["sid"], s2.as_str());

    // A recording the cluster does not have.
    let missing = uuid();
    let r = get(&format!("/v1/sessions/{missing}/recording"));
    assert_eq!(r.status(), 404);
    let e: ErrorBody = serde_json::from_slice(&body(r)).unwrap();
    assert_eq!(e.error.code, ErrorCode::NotFound);
    assert!(e.error.message.contains(&missing), "{}", e.error.message);

    // Writes are refused with a typed error; unauthenticated callers first get 401.
    for (method, path) in [
        (reqwest::Method::POST, "/v1/events"),
        (reqwest::Method::POST, "/v1/streams"),
        (reqwest::Method::POST, "/v1/uploads/complete"),
        (reqwest::Method::GET, "/v1/uploads"),
    ] {
        let req = client
            .request(method.clone(), format!("{url}{path}"))
            .bearer_auth(AUDITOR)
            .header("content-type", "application/json")
            .body("{}");
        let r = rt.block_on(async { req.send().await.unwrap() });
        assert_eq!(r.status(), 405, "{method} {path}");
        assert_eq!(r.headers()["allow"], "GET");
        let e: ErrorBody = serde_json::from_slice(&body(r)).unwrap();
        assert_eq!(e.error.code, ErrorCode::ReadOnly, "{method} {path}");
        assert!(e.error.message.contains(&addr), "{}", e.error.message);
    }
    let req = client.post(format!("{url}/v1/events")).body("{}");
    let r = rt.block_on(async { req.send().await.unwrap() });
    assert_eq!(r.status(), 401);
    assert_eq!(get("/v1/sessions").status(), 200);
    let anonymous = rt.block_on(async {
        client
            .get(format!("{url}/v1/sessions"))
            .send()
            .await
            .unwrap()
    });
    assert_eq!(anonymous.status(), 401);

    // The cluster gone: /healthz says so, naming it.
    drop(c);
    let r = get("/healthz");
    assert_eq!(r.status(), 502);
    let e: ErrorBody = serde_json::from_slice(&body(r)).unwrap();
    assert_eq!(e.error.code, ErrorCode::BadGateway);
    assert!(e.error.message.contains(&addr), "{}", e.error.message);
    serve.terminate();
}
