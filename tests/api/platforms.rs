//! Platforms acting for their users: a token the IdP issued to a configured platform's client
//! (the local stack's `demo-platform`) is the user's, acting through the platform; the STS
//! session name, the audit line and /whoami name it. Cumulus's `EDL-Client-Id` + `EDL-Token`
//! work too. Tokens issued to any other client are refused as before.

use std::time::Duration;

use figment::providers::Serialized;
use serde_json::{json, Value};

use crate::helpers::*;

/// The token the demo platform holds for `user`: issued by the IdP's token API to the
/// platform's client.
async fn platform_token(issuer: &str, user: &str, password: &str) -> String {
    let res = reqwest::Client::new()
        .post(format!(
            "{issuer}/api/users/find_or_create_token?client_id=demo-platform"
        ))
        .basic_auth(user, Some(password))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

/// A platform's token gets the user's credential under a session named for the platform
/// (moto records `<user>@<app>+demo`), apart from the user's own; whoami and the audit line
/// say who acted for whom; the EDL headers do the same, and refuse an unknown platform or a
/// token that is not the platform's.
#[tokio::test]
async fn a_platforms_token_acts_for_its_user_and_names_the_platform() {
    let dir = tempfile::tempdir().unwrap();
    let (_moto, endpoint, recording) = start_recording_moto(dir.path());
    let issuer = components().issuer.clone();
    let app = spawn_app_against(&issuer, &endpoint, |f| f).await;
    assert!(app.wait_ready(Duration::from_secs(15)).await);
    let through = platform_token(&app.issuer, "alice", "alice-pw").await;
    let own = idp_token(&app.issuer, "alice", "alice-pw").await;

    let (status, me) = json_of(app.get_as("/whoami", &through).await).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(
        (me["user_id"].as_str(), me["via"].as_str()),
        (Some("alice"), Some("demo"))
    );
    let (_, mine) = json_of(app.get_as("/whoami", &own).await).await;
    assert!(mine.get("via").is_none(), "{mine}");

    let (status, by_platform) = json_of(app.get_as("/s3credentials", &through).await).await;
    assert_eq!(status, 200, "{by_platform}");
    let (_, by_user) = json_of(app.get_as("/s3credentials", &own).await).await;
    assert_ne!(
        by_platform["accessKeyId"], by_user["accessKeyId"],
        "the platform's session is not the user's own"
    );
    let names: Vec<String> = recorded_assume_roles_of(&recording, "alice")
        .iter()
        .filter_map(|call| {
            call.iter()
                .find(|(k, _)| k == "RoleSessionName")
                .map(|(_, v)| v.clone())
        })
        .collect();
    assert!(
        names.contains(&"alice@stsvend-test+demo".to_owned()),
        "{names:?}"
    );
    assert!(
        names.contains(&"alice@stsvend-test".to_owned()),
        "{names:?}"
    );
    let logs = captured_logs();
    assert!(
        logs.lines().any(|l| l.contains("credentials vended")
            && l.contains("\"via\":\"demo\"")
            && l.contains("alice@stsvend-test+demo")),
        "no audit line names the platform"
    );

    // Cumulus's spelling.
    let edl = |client: &str, token: &str| {
        app.http
            .get(app.url("/s3credentials"))
            .header("EDL-Client-Id", client)
            .header("EDL-Token", token)
            .send()
    };
    let (status, body) = json_of(edl("demo-platform", &through).await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accessKeyId"], by_platform["accessKeyId"]);
    let (status, body) = json_of(edl("somebody-else", &through).await.unwrap()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("unknown_platform"))
    );
    let (status, body) = json_of(edl("demo-platform", &own).await.unwrap()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_token")),
        "{body}"
    );

    // A token issued to a client that is no platform is refused as before.
    let other = mint(
        &app.issuer,
        json!({"sub": "alice", "aud": "other-app", "client_id": "other-app"}),
        json!({}),
    )
    .await;
    let (status, body) = json_of(app.get_as("/s3credentials", &other).await).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_token"))
    );
}

/// A platform can hand its user's jobs a ticket; the ticket carries the platform.
#[tokio::test]
async fn a_platform_can_make_tickets_that_name_it() {
    let app = spawn_ready_app().await;
    let through = platform_token(&app.issuer, "carol", "carol-pw").await;
    let res = app
        .http
        .post(app.url("/s3credentials/tickets"))
        .bearer_auth(&through)
        .json(&json!({"label": "hub job"}))
        .send()
        .await
        .unwrap();
    let (status, minted) = json_of(res).await;
    assert_eq!(status, 201, "{minted}");
    let ticket = minted["ticket"].as_str().unwrap();
    let (_, me) = json_of(app.get_as("/whoami", ticket).await).await;
    assert_eq!(me["via"], "demo");
    assert_eq!(me["authenticated_by"], "ticket");
}

/// Taking the platform out of the configuration stops it; revoking the user stops it too.
#[tokio::test]
async fn removing_a_platform_or_revoking_its_user_stops_it() {
    let without =
        spawn_app_with(|f| f.merge(Serialized::default("platforms", Vec::<Value>::new()))).await;
    assert!(without.wait_ready(Duration::from_secs(15)).await);
    let through = platform_token(&without.issuer, "alice", "alice-pw").await;
    let (status, body) = json_of(without.get_as("/s3credentials", &through).await).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_token")),
        "{body}"
    );

    let app = crate::fleet::admin_replica_with(None, |f| {
        f.merge(Serialized::default("sts.source_identity", false))
    })
    .await;
    let user = format!("platformed-{}", uuid::Uuid::new_v4().simple());
    let token = mint(
        &app.issuer,
        json!({"sub": user, "groups": ["science"], "aud": "demo-platform", "client_id": "demo-platform"}),
        json!({}),
    )
    .await;
    assert_eq!(app.get_as("/s3credentials", &token).await.status(), 200);
    let revoked = crate::fleet::revoke_on(&app, &user).await;
    assert_eq!(app.get_as("/s3credentials", &token).await.status(), 403);
    // Without SourceIdentity the deny statement names the platform's sessions too.
    let deny = revoked["deny_statement"].to_string();
    assert!(deny.contains("+demo"), "{deny}");
}
