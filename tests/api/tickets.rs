//! Tickets: a signed-in user hands machines that cannot log in a secret that gets them
//! credentials, never more than its maker may read nor beyond its targets, ended by a
//! delete or a revocation on every replica, whatever happens to Redis or the process.

use std::time::{Duration, Instant};

use figment::providers::Serialized;
use figment::Figment;
use serde_json::{json, Value};

use crate::fleet::{
    admin, admin_replica_with, every_replica_keeps_saying, keeping_revocations_in, redis_cli,
    revoke_on, until_every_replica_says, wait_for_redis,
};
use crate::helpers::*;

/// POST /s3credentials/tickets as `token` with a JSON body.
async fn mint_ticket(app: &TestApp, token: &str, body: Value) -> (u16, Value) {
    json_of(
        app.http
            .post(app.url("/s3credentials/tickets"))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn ticket_for(app: &TestApp, token: &str, body: Value) -> (String, String) {
    let (status, minted) = mint_ticket(app, token, body).await;
    assert_eq!(status, 201, "{minted}");
    (
        minted["id"].as_str().unwrap().to_owned(),
        minted["ticket"].as_str().unwrap().to_owned(),
    )
}

async fn delete_ticket(app: &TestApp, token: &str, id: &str) -> u16 {
    app.http
        .delete(app.url(&format!("/s3credentials/tickets/{id}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// A ticket made with targets gets credentials narrowed to them (the policy AssumeRole was
/// sent names only them), every format works with it, asking beyond its targets or its
/// lifetime is refused naming what is beyond, and it can neither make, list nor delete
/// tickets. The secret is shown once: never in the list, never in the logs.
#[tokio::test]
async fn a_ticket_reads_only_its_targets_and_cannot_make_tickets() {
    let dir = tempfile::tempdir().unwrap();
    let (_moto, endpoint, recording) = start_recording_moto(dir.path());
    let issuer = components().issuer.clone();
    let app = spawn_app_against(&issuer, &endpoint, |f| f).await;
    assert!(app.wait_ready(Duration::from_secs(15)).await);
    let (user, token) = unique_user(&app, "ticketed", json!(["science"])).await;
    let (status, minted) = mint_ticket(
        &app,
        &token,
        json!({"targets": ["s3://demo-inregion/public/", "demo-inregion/public/deeper/"], "duration_seconds": 1000, "label": "dask job", "expires_in": 7200}),
    )
    .await;
    assert_eq!(status, 201, "{minted}");
    let ticket = minted["ticket"].as_str().unwrap().to_owned();
    assert!(ticket.starts_with("stsvend_tk1_"), "{ticket}");
    assert_eq!(minted["targets"], json!(["s3://demo-inregion/public/"]));
    assert_eq!(minted["label"], "dask job");
    assert_eq!(minted["duration_seconds"], 1800, "rounded up to 900s steps");

    let res = app.get_as("/s3credentials", &ticket).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let creds: Value = res.json().await.unwrap();
    assert!(creds["accessKeyId"].is_string(), "{creds}");
    let calls = recorded_assume_roles_of(&recording, &user);
    assert_eq!(calls.len(), 1, "{calls:?}");
    let field = |name: &str| {
        calls[0]
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let policy = field("Policy");
    assert!(policy.contains("demo-inregion/public/"), "{policy}");
    assert!(!policy.contains("demo-second"), "{policy}");
    assert_eq!(field("DurationSeconds"), "1800");

    for format in ["credential-process", "container"] {
        let res = app
            .get_as(&format!("/s3credentials?format={format}"), &ticket)
            .await;
        assert_eq!(res.status(), 200, "{format}");
    }
    let (status, scope) = json_of(app.get_as("/s3credentials/scope", &ticket).await).await;
    assert_eq!(status, 200);
    assert_eq!(
        scope["buckets"],
        json!([{"name": "demo-inregion", "prefixes": ["public/"]}])
    );
    // Inside it: fine. Beyond it: 403 naming what is beyond.
    let inside = app
        .get_as(
            "/s3credentials?target=s3://demo-inregion/public/a/",
            &ticket,
        )
        .await;
    assert_eq!(inside.status(), 200);
    for beyond in [
        "/s3credentials?target=s3://demo-inregion/",
        "/s3credentials?target=s3://demo-second/",
        "/s3credentials?duration_seconds=3600",
        "/s3credentials/bundle?target=s3://demo-second/",
    ] {
        let (status, body) = json_of(app.get_as(beyond, &ticket).await).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (403, Some("beyond_ticket")),
            "{beyond}: {body}"
        );
    }
    let (_, body) = json_of(
        app.get_as("/s3credentials?target=s3://demo-second/", &ticket)
            .await,
    )
    .await;
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("s3://demo-second/"),
        "{body}"
    );
    // An archive's own endpoint: the ticket's targets there, or nothing.
    let (status, body) = json_of(app.get_as("/archives/second/s3credentials", &ticket).await).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("beyond_ticket"))
    );
    // Links: inside the targets only.
    let link = app.get_as("/s3/demo-inregion/public/x.txt", &ticket).await;
    assert_eq!(link.status(), 307, "{:?}", link.text().await);
    let (status, body) = json_of(app.get_as("/s3/demo-inregion/private.txt", &ticket).await).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("beyond_ticket"))
    );

    // A ticket manages no tickets.
    let (status, body) = mint_ticket(&app, &ticket, json!({})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("ticket_not_allowed"))
    );
    let (status, _) = json_of(app.get_as("/s3credentials/tickets", &ticket).await).await;
    assert_eq!(status, 403);
    let id = minted["id"].as_str().unwrap();
    assert_eq!(delete_ticket(&app, &ticket, id).await, 403);

    // Whoami says it is a ticket.
    let (_, me) = json_of(app.get_as("/whoami", &ticket).await).await;
    assert_eq!(me["authenticated_by"], "ticket");
    assert_eq!(me["ticket"]["id"], id);
    assert_eq!(me["user_id"], user);

    // The list shows it, used, without its secret.
    let res = app.get_as("/s3credentials/tickets", &token).await;
    let text = res.text().await.unwrap();
    assert!(!text.contains(&ticket[12..]), "the list shows the secret");
    let list: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(list["tickets"][0]["id"], id);
    assert_eq!(list["tickets"][0]["label"], "dask job");
    assert!(list["tickets"][0]["last_used"].is_string(), "{list}");
    let logs = captured_logs();
    assert!(!logs.contains(&ticket[12..]), "a ticket was logged");
    assert!(
        logs.lines().any(|l| l.contains("credentials vended")
            && l.contains("\"authenticated_by\":\"Ticket\"")
            && l.contains(&format!("\"ticket\":\"{id}\""))),
        "no audit line names the ticket"
    );
}

/// What a ticket request must be: its targets inside what the user may read, a lifetime and
/// a ticket life within bounds, a sane label; garbage tickets are 401.
#[tokio::test]
async fn a_ticket_is_only_made_for_what_its_user_may_read() {
    let app = spawn_ready_app().await;
    let (_, token) = unique_user(&app, "asks", json!(["science"])).await;
    for (body, code, status) in [
        (
            json!({"targets": ["s3://demo-restricted/"]}),
            "access_denied",
            403,
        ),
        (
            json!({"targets": ["s3://nobody-serves-this/"]}),
            "access_denied",
            403,
        ),
        (
            json!({"targets": ["s3://NOT A BUCKET"]}),
            "invalid_target",
            400,
        ),
        (json!({"expires_in": 60}), "invalid_expires_in", 400),
        (
            json!({"expires_in": 999_999_999}),
            "invalid_expires_in",
            400,
        ),
        (json!({"duration_seconds": 10}), "invalid_duration", 400),
        (json!({"label": "a\nb"}), "invalid_label", 400),
        (json!({"label": "x".repeat(101)}), "invalid_label", 400),
        (json!({"unknown": 1}), "invalid_request", 400),
    ] {
        let (got, answer) = mint_ticket(&app, &token, body.clone()).await;
        assert_eq!(
            (got, answer["error"].as_str()),
            (status, Some(code)),
            "{body}: {answer}"
        );
    }
    // A form with more target fields than a list may hold, even empty ones (schemathesis).
    let res = app
        .http
        .post(app.url("/s3credentials/tickets"))
        .bearer_auth(&token)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("targets=&".repeat(21))
        .send()
        .await
        .unwrap();
    let (got, answer) = json_of(res).await;
    assert_eq!(
        (got, answer["error"].as_str()),
        (400, Some("too_many_targets"))
    );
    let res = app
        .http
        .post(app.url("/s3credentials/tickets"))
        .bearer_auth(&token)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("label=x&colour=blue")
        .send()
        .await
        .unwrap();
    let (got, answer) = json_of(res).await;
    assert_eq!(
        (got, answer["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let targets: Vec<String> = (0..21)
        .map(|i| format!("s3://demo-inregion/p{i}/"))
        .collect();
    let (got, answer) = mint_ticket(&app, &token, json!({ "targets": targets })).await;
    assert_eq!(
        (got, answer["error"].as_str()),
        (400, Some("too_many_targets"))
    );
    let (_, nothing) = unique_user(&app, "asks-nothing", json!([])).await;
    let (got, answer) = mint_ticket(&app, &nothing, json!({})).await;
    assert_eq!(
        (got, answer["error"].as_str()),
        (403, Some("access_denied"))
    );
    // Without targets: everything the user may read, in every archive.
    let (_, ticket) = ticket_for(&app, &token, json!({})).await;
    assert_eq!(app.get_as("/s3credentials", &ticket).await.status(), 200);
    assert_eq!(
        app.get_as("/archives/second/s3credentials", &ticket)
            .await
            .status(),
        200
    );
    // Anonymous: no ticket.
    let res = app
        .http
        .post(app.url("/s3credentials/tickets"))
        .header("accept", "application/json")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    for bad in [
        "stsvend_tk1_",
        "stsvend_tk1_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        &format!("{}x", &ticket[..ticket.len() - 1]),
    ] {
        let (status, body) = json_of(app.get_as("/s3credentials", bad).await).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_token")),
            "{bad}"
        );
    }
    // Only GET and POST on the collection, DELETE on one.
    let res = app
        .http
        .put(app.url("/s3credentials/tickets"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);
}

/// Deleting a ticket ends it (the list forgets it; another user cannot delete it); the
/// per-user cap counts live tickets only; an expired ticket is refused.
#[tokio::test]
async fn a_deleted_or_expired_ticket_is_refused_and_the_cap_counts_live_ones() {
    let app = spawn_app_with(|f| f.merge(Serialized::default("tickets.max_per_user", 2))).await;
    assert!(app.wait_ready(Duration::from_secs(15)).await);
    let (_, token) = unique_user(&app, "capped", json!(["science"])).await;
    let (_, other) = unique_user(&app, "capped-other", json!(["science"])).await;
    let (first, first_ticket) = ticket_for(&app, &token, json!({"label": "one"})).await;
    let (_, second_ticket) =
        ticket_for(&app, &token, json!({"label": "two", "expires_in": 900})).await;
    let (status, body) = mint_ticket(&app, &token, json!({})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("too_many_tickets")),
        "{body}"
    );
    assert_eq!(
        delete_ticket(&app, &other, &first).await,
        404,
        "another user's ticket"
    );
    assert_eq!(
        app.get_as("/s3credentials", &first_ticket).await.status(),
        200
    );
    assert_eq!(delete_ticket(&app, &token, &first).await, 204);
    assert_eq!(
        delete_ticket(&app, &token, &first).await,
        404,
        "deleted twice"
    );
    assert_eq!(delete_ticket(&app, &token, "../../etc").await, 404);
    let (status, body) = json_of(app.get_as("/s3credentials", &first_ticket).await).await;
    assert_eq!(status, 401);
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("deleted"),
        "{body}"
    );
    let (_, list) = json_of(app.get_as("/s3credentials/tickets", &token).await).await;
    assert_eq!(list["tickets"].as_array().unwrap().len(), 1, "{list}");
    ticket_for(&app, &token, json!({})).await;
    // The 900 s ticket expires.
    app.clock.advance(Duration::from_secs(901));
    let (status, body) = json_of(app.get_as("/s3credentials", &second_ticket).await).await;
    assert_eq!(status, 401);
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{body}"
    );
}

/// When stsvend next reads the user's groups (any token, any login), their tickets lose the
/// groups they lost; tickets never gain any.
#[tokio::test]
async fn a_user_who_loses_a_group_loses_it_in_their_tickets() {
    let app = spawn_ready_app().await;
    let user = format!("shrinking-{}", uuid::Uuid::new_v4().simple());
    let token = |groups: Value| {
        let issuer = app.issuer.clone();
        let user = user.clone();
        async move { mint(&issuer, json!({"sub": user, "groups": groups}), json!({})).await }
    };
    let before = token(json!(["science", "restricted"])).await;
    let (_, ticket) = ticket_for(&app, &before, json!({})).await;
    let (_, narrow_ticket) =
        ticket_for(&app, &before, json!({"targets": ["s3://demo-restricted/"]})).await;
    let (_, scope) = json_of(app.get_as("/s3credentials/scope", &ticket).await).await;
    assert_eq!(scope["buckets"].as_array().unwrap().len(), 2, "{scope}");
    // The user's groups shrink: the next token says so.
    let after = token(json!(["science"])).await;
    assert_eq!(app.get_as("/whoami", &after).await.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let (_, scope) = json_of(app.get_as("/s3credentials/scope", &ticket).await).await;
        if scope["buckets"] == json!([{"name": "demo-inregion", "prefixes": []}]) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the ticket kept the group: {scope}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, body) = json_of(app.get_as("/s3credentials", &narrow_ticket).await).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("access_denied")),
        "{body}"
    );
    // The group comes back: the tickets do not widen again.
    let again = token(json!(["science", "restricted"])).await;
    assert_eq!(app.get_as("/whoami", &again).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        app.get_as("/s3credentials", &narrow_ticket).await.status(),
        403
    );
}

/// Tickets turned off: the routes are 404 and a ticket made before is refused.
#[tokio::test]
async fn tickets_can_be_turned_off() {
    let revocations = fresh_revocations_file();
    let on = {
        let r = revocations.clone();
        spawn_app_with(move |f| f.merge(Serialized::default("revocations.file", r))).await
    };
    assert!(on.wait_ready(Duration::from_secs(15)).await);
    let (_, token) = unique_user(&on, "off", json!(["science"])).await;
    let (_, ticket) = ticket_for(&on, &token, json!({})).await;
    drop(on);
    let off = spawn_app_with(move |f| {
        f.merge(Serialized::default("revocations.file", revocations))
            .merge(Serialized::default("tickets.enabled", false))
    })
    .await;
    assert!(off.wait_ready(Duration::from_secs(15)).await);
    let (status, _) = mint_ticket(&off, &token, json!({})).await;
    assert_eq!(status, 404);
    let (status, body) = json_of(off.get_as("/s3credentials", &ticket).await).await;
    assert_eq!(status, 401, "{body}");
}

fn keeping_tickets_in(dir: &std::path::Path) -> impl Fn(Figment) -> Figment + Send + Sync {
    keeping_revocations_in(&dir.join("revocations.json"))
}

/// A lone replica keeps deletions on disk: the next start refuses the deleted ticket from its
/// first answer and serves the kept one. Revoking the user ends their tickets for good: a
/// lift gives the user back, not their tickets.
#[tokio::test]
async fn deletions_and_revocations_survive_a_restart_and_a_lift() {
    let dir = tempfile::tempdir().unwrap();
    let first = admin_replica_with(None, keeping_tickets_in(dir.path())).await;
    let (user, token) = unique_user(&first, "durable-ticket", json!(["science"])).await;
    let (gone, gone_ticket) = ticket_for(&first, &token, json!({})).await;
    let (_, kept_ticket) = ticket_for(&first, &token, json!({})).await;
    assert_eq!(delete_ticket(&first, &token, &gone).await, 204);
    drop(first);
    assert!(dir.path().join("revocations-tickets.json").exists());

    let second = admin_replica_with(None, keeping_tickets_in(dir.path())).await;
    assert_eq!(
        second.get_as("/s3credentials", &gone_ticket).await.status(),
        401
    );
    assert_eq!(
        second.get_as("/s3credentials", &kept_ticket).await.status(),
        200
    );
    let revoked = revoke_on(&second, &user).await;
    assert_eq!(revoked["tickets_ended"], 1, "{revoked}");
    assert_eq!(
        second.get_as("/s3credentials", &kept_ticket).await.status(),
        401
    );
    let lifted = admin(&second, reqwest::Method::DELETE, &format!("?user={user}"))
        .send()
        .await
        .unwrap();
    assert_eq!(lifted.status(), 204);
    assert_eq!(second.get_as("/s3credentials", &token).await.status(), 200);
    let (status, body) = json_of(second.get_as("/s3credentials", &kept_ticket).await).await;
    assert_eq!(status, 401, "{body}");
    drop(second);
    let third = admin_replica_with(None, keeping_tickets_in(dir.path())).await;
    assert_eq!(
        third.get_as("/s3credentials", &kept_ticket).await.status(),
        401
    );
}

/// Fleet mode: a deletion on one replica reaches every replica within a second, and neither
/// Redis losing its data nor a replica restarting brings the ticket back; a ticket made on
/// one replica is taken by the others at once (it carries what it is).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_ticket_is_refused_on_every_replica_within_a_second() {
    let (_redis, redis_port) = start_redis_anywhere();
    let dir = tempfile::tempdir().unwrap();
    let keep =
        |i: usize| keeping_revocations_in(&dir.path().join(format!("r{i}/revocations.json")));
    let mut apps = vec![
        admin_replica_with(Some(redis_port), keep(0)).await,
        admin_replica_with(Some(redis_port), keep(1)).await,
        admin_replica_with(Some(redis_port), keep(2)).await,
    ];
    wait_for_redis(&apps.iter().collect::<Vec<_>>(), "ok").await;
    let (_, token) = unique_user(&apps[0], "fleet-ticket", json!(["science"])).await;
    let (id, ticket) = ticket_for(&apps[0], &token, json!({})).await;
    let (_, kept) = ticket_for(&apps[1], &token, json!({})).await;
    for app in &apps {
        assert_eq!(app.get_as("/s3credentials", &ticket).await.status(), 200);
    }
    let started = Instant::now();
    assert_eq!(delete_ticket(&apps[2], &token, &id).await, 204);
    let refs: Vec<&TestApp> = apps.iter().collect();
    until_every_replica_says(&refs, &ticket, 401, Duration::from_secs(1)).await;
    eprintln!("deleted everywhere in {:?}", started.elapsed());
    // The list on another replica forgets it too.
    let (_, list) = json_of(apps[1].get_as("/s3credentials/tickets", &token).await).await;
    assert_eq!(list["tickets"].as_array().unwrap().len(), 1, "{list}");

    assert_eq!(redis_cli(redis_port, &["FLUSHALL"]), "OK");
    every_replica_keeps_saying(&refs, &ticket, 401, Duration::from_millis(1500)).await;
    every_replica_keeps_saying(&refs, &kept, 200, Duration::from_millis(100)).await;
    // Put back in Redis by the replicas: a new replica learns it from Redis alone.
    let newcomer = admin_replica_with(Some(redis_port), keep(3)).await;
    assert_eq!(
        newcomer.get_as("/s3credentials", &ticket).await.status(),
        401
    );
    // A replica restarted on its own disk still refuses it.
    drop(apps.remove(0));
    let restarted = admin_replica_with(Some(redis_port), keep(0)).await;
    assert_eq!(
        restarted.get_as("/s3credentials", &ticket).await.status(),
        401
    );
}

/// A thousand workers sharing one ticket cost one AssumeRole: 200 concurrent requests with
/// one ticket spread over three replicas make exactly one call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_ticket_on_many_workers_makes_one_assume_role_fleet_wide() {
    let (_redis, redis_port) = start_redis_anywhere();
    let apps = [
        crate::fleet::patient_replica(redis_port).await,
        crate::fleet::patient_replica(redis_port).await,
        crate::fleet::patient_replica(redis_port).await,
    ];
    wait_for_redis(&apps.iter().collect::<Vec<_>>(), "ok").await;
    let (user, token) = unique_user(&apps[0], "workers", json!(["science"])).await;
    let (_, ticket) = ticket_for(
        &apps[0],
        &token,
        json!({"targets": ["s3://demo-inregion/"]}),
    )
    .await;
    let before = assume_role_calls(&user).await;
    let mut tasks = Vec::new();
    for i in 0..200 {
        let url = apps[i % 3].url("/s3credentials");
        let ticket = ticket.clone();
        tasks.push(tokio::spawn(async move {
            let res = reqwest::Client::new()
                .get(url)
                .bearer_auth(ticket)
                .send()
                .await
                .unwrap();
            let status = res.status().as_u16();
            let body: Value = res.json().await.unwrap();
            (
                status,
                body["accessKeyId"].as_str().unwrap_or("").to_owned(),
            )
        }));
    }
    let mut keys = std::collections::BTreeSet::new();
    for t in tasks {
        let (status, key) = t.await.unwrap();
        assert_eq!(status, 200);
        keys.insert(key);
    }
    assert_eq!(keys.len(), 1, "one credential for all: {keys:?}");
    assert_eq!(assume_role_calls(&user).await - before, 1);
}

fn helper(args: &[&str], home: &std::path::Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_stsvend"))
        .args(args)
        .env("HOME", home)
        .env("AWS_CONFIG_FILE", home.join("aws-config"))
        .env_remove("XDG_CACHE_HOME")
        .output()
        .unwrap()
}

/// The helper's side: `ticket create` writes the ticket (0600) and says its id, `ticket list`
/// shows it, a worker's profile made by `configure --ticket-file` reads through botocore, and
/// after `ticket delete` the worker's helper is refused with one clear line.
#[tokio::test]
async fn the_helper_makes_a_ticket_a_worker_reads_with_until_it_is_deleted() {
    let app = spawn_ready_app().await;
    let (_, token) = unique_user(&app, "helper-ticket", json!(["science"])).await;
    let home = tempfile::tempdir().unwrap();
    let token_file = home.path().join("token");
    std::fs::write(&token_file, &token).unwrap();
    let endpoint = app.url("/s3credentials");
    let ticket_file = home.path().join("job.ticket");
    let (home_path, tf, tk) = (
        home.path().to_path_buf(),
        token_file.display().to_string(),
        ticket_file.display().to_string(),
    );
    let run = move |args: Vec<String>| {
        let home = home_path.clone();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            helper(&args, &home)
        })
    };
    let words = |s: &[&str]| s.iter().map(|w| (*w).to_owned()).collect::<Vec<_>>();
    let out = run(words(&[
        "ticket",
        "create",
        "--endpoint",
        &endpoint,
        "--token-file",
        &tf,
        "--target",
        "s3://demo-inregion/",
        "--label",
        "dask workers",
        "--output",
        &tk,
    ]))
    .await
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    assert!(out.stdout.is_empty(), "the ticket went to stdout too");
    let ticket = std::fs::read_to_string(&ticket_file).unwrap();
    assert!(ticket.starts_with("stsvend_tk1_"), "{ticket}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&ticket_file)
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }
    let id = err.split_whitespace().nth(2).unwrap().to_owned();
    let out = run(words(&[
        "ticket",
        "list",
        "--endpoint",
        &endpoint,
        "--token-file",
        &tf,
    ]))
    .await
    .unwrap();
    let listed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        listed.contains(&id) && listed.contains("dask workers"),
        "{listed}"
    );
    assert!(
        !listed.contains(&ticket.trim()[12..]),
        "the list shows the secret"
    );

    // A worker: a profile that runs the helper with the ticket.
    let out = run(words(&[
        "configure",
        "--endpoint",
        &endpoint,
        "--profile",
        "worker",
        "--ticket-file",
        &tk,
    ]))
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let script = format!(
        "import boto3\n\
         s3 = boto3.Session(profile_name='worker').client('s3', endpoint_url='{}', region_name='us-west-2')\n\
         print(s3.get_object(Bucket='demo-inregion', Key='hello.txt')['Body'].read().decode() != '')\n",
        components().moto_endpoint
    );
    let out = std::process::Command::new(repo_root().join("deploy/local/.venv/bin/python"))
        .args(["-c", &script])
        .env("HOME", home.path())
        .env("AWS_CONFIG_FILE", home.path().join("aws-config"))
        .env_remove("XDG_CACHE_HOME")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "True");

    let out = run(words(&[
        "ticket",
        "delete",
        "--endpoint",
        &endpoint,
        "--token-file",
        &tf,
        &id,
    ]))
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fresh_cache = home.path().join("fresh-cache");
    let out = run(words(&[
        "credential-process",
        "--endpoint",
        &endpoint,
        "--ticket-file",
        &tk,
        "--cache-dir",
        &fresh_cache.display().to_string(),
    ]))
    .await
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("deleted"), "{err}");
    // A file that holds no ticket is refused before anything is sent.
    let out = run(words(&[
        "credential-process",
        "--endpoint",
        &endpoint,
        "--ticket-file",
        &tf,
    ]))
    .await
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.contains("not an stsvend ticket"), "{err}");
}

/// A browser session makes tickets only from the service's own page: the form's token of
/// that session, posted from this origin. Another site's post (which a Lax cookie would not
/// carry anyway), a post without the token, and one with another session's token are refused.
#[tokio::test]
async fn a_browser_session_makes_tickets_only_from_the_page() {
    let app = spawn_ready_app().await;
    let browser = jar_client(BROWSER_UA);
    browser_login(&app, &browser, "/whoami", "carol", "carol-pw").await;
    let page = browser
        .get(app.url("/s3credentialsREADME"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the page has the form's token")
        .to_owned();
    let post = |origin: &'static str, csrf: String| {
        let (browser, url, origin) = (
            browser.clone(),
            app.url("/s3credentials/tickets"),
            if origin == "ours" {
                app.url("")
            } else {
                origin.to_owned()
            },
        );
        async move {
            browser
                .post(url)
                .header("origin", origin)
                .header("accept", BROWSER_ACCEPT)
                .form(&[
                    ("csrf", csrf.as_str()),
                    ("targets", "s3://demo-inregion/"),
                    ("label", "page"),
                    ("expires_in", "3600"),
                ])
                .send()
                .await
                .unwrap()
        }
    };
    for (origin, token) in [
        ("https://evil.example", csrf.clone()),
        ("null", csrf.clone()),
        ("ours", String::new()),
        ("ours", "AAAA".to_owned()),
    ] {
        let res = post(origin, token.clone()).await;
        assert_eq!(res.status(), 403, "{origin} {token}");
    }
    let res = post("ours", csrf.clone()).await;
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["cache-control"], "no-store");
    let shown = res.text().await.unwrap();
    assert!(shown.contains("id=\"ticket\">stsvend_tk1_"), "{shown}");
    // Deleting from a session follows the same rule about origins.
    let (_, list) = json_of(
        browser
            .get(app.url("/s3credentials/tickets"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let id = list["tickets"][0]["id"].as_str().unwrap().to_owned();
    let gone = browser
        .delete(app.url(&format!("/s3credentials/tickets/{id}")))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 403);
    let gone = browser
        .delete(app.url(&format!("/s3credentials/tickets/{id}")))
        .header("origin", app.url(""))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 204);
}
