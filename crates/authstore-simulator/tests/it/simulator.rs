//! The embedded token authority, exercised over real HTTP.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use authstore_simulator::{
    Fault, Identity, RefreshError, RefreshEvent, RefreshHook, Simulator, SimulatorConfig,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

const CLIENT_ID: &str = "app_EMoamEEZ73f0CkXaXp7hrann";
/// Upper bound for any single wait in these tests.
const BOUND: Duration = Duration::from_secs(5);

fn client_with_timeout(limit: Duration) -> reqwest::Client {
    // reqwest is built without a default crypto provider (see src/authority.rs); plain HTTP
    // needs none, but the builder asks for one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(limit)
        .build()
        .expect("client")
}

fn client() -> reqwest::Client {
    client_with_timeout(BOUND)
}

async fn start(config: SimulatorConfig) -> Simulator {
    Simulator::start(config).await.expect("simulator starts")
}

async fn start_default() -> Simulator {
    start(SimulatorConfig::default()).await
}

fn identity() -> Identity {
    Identity::new("acct-1", "user-1")
}

/// Posts a refresh request; returns the status and the body as JSON
/// (`Value::Null` when it is not JSON).
async fn refresh_with(
    client: &reqwest::Client,
    sim: &Simulator,
    refresh_token: &str,
) -> reqwest::Result<(u16, Value)> {
    let response = client
        .post(sim.token_url())
        .json(&json!({
            "client_id": CLIENT_ID,
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
        }))
        .send()
        .await?;
    let status = response.status().as_u16();
    let text = response.text().await?;
    Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

async fn refresh(sim: &Simulator, refresh_token: &str) -> (u16, Value) {
    refresh_with(&client(), sim, refresh_token)
        .await
        .expect("refresh request completes")
}

/// Refreshes successfully and returns the new refresh token.
async fn rotate(sim: &Simulator, refresh_token: &str) -> String {
    let (status, body) = refresh(sim, refresh_token).await;
    assert_eq!(status, 200, "{body}");
    body["refresh_token"].as_str().expect("rotated").to_owned()
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

fn decode_part(part: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("json")
}

fn claims(jwt: &str) -> Value {
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "JWT-shaped");
    assert_eq!(decode_part(parts[0]), json!({"alg": "none", "typ": "JWT"}));
    decode_part(parts[1])
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn health_urls_and_routing() {
    let sim = start_default().await;
    assert_eq!(sim.base_url(), format!("http://{}", sim.addr()));
    assert_eq!(sim.token_url(), format!("{}/oauth/token", sim.base_url()));
    assert_eq!(sim.revoke_url(), format!("{}/oauth/revoke", sim.base_url()));
    assert!(sim.addr().ip().is_loopback());

    let client = client();
    let health = client
        .get(format!("{}/healthz", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), "ok");
    let missing = client
        .get(format!("{}/nope", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let wrong_method = client.get(sim.token_url()).send().await.unwrap();
    assert_eq!(wrong_method.status(), 405);
    // Every request is logged, routed or not, with its query string.
    let queried = client
        .get(format!("{}/backend-api/x?limit=2", sim.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(queried.status(), 404);
    let logged: Vec<(String, String)> = [
        ("GET", "/healthz"),
        ("GET", "/nope"),
        ("GET", "/oauth/token"),
        ("GET", "/backend-api/x?limit=2"),
    ]
    .map(|(method, target)| (method.to_owned(), target.to_owned()))
    .into();
    assert_eq!(sim.requests(), logged);
}

#[tokio::test]
async fn rotation_issues_new_token_and_rejects_the_old_one() {
    let sim = start_default().await;
    let login = sim.issue_login(&identity());
    let rt1 = rotate(&sim, &login.refresh_token).await;
    let rt2 = rotate(&sim, &rt1).await;
    assert_ne!(rt1, login.refresh_token);
    assert_ne!(rt2, rt1);
    assert!(
        sim.current_refresh_token(login.family) == Some(rt2.clone()),
        "the family's current token is the successor"
    );
    assert_eq!(sim.family_of(&login.refresh_token), Some(login.family));
    assert_eq!(sim.family_of(&rt2), Some(login.family));

    let (status, body) = refresh(&sim, &rt1).await;
    assert_eq!(status, 401);
    assert_eq!(error_code(&body), "refresh_token_reused");
    assert!(body["error"]["message"].is_string());

    assert_eq!(
        sim.presented_refresh_tokens(),
        vec![login.refresh_token.clone(), rt1.clone(), rt1]
    );
    assert_eq!(sim.refresh_calls(), 3);
    assert_eq!(sim.successful_refreshes(), 2);
    assert_eq!(sim.reuse_rejections(), 1);
    let events = sim.refresh_events();
    assert_eq!(events.len(), 3);
    assert!(
        events
            .iter()
            .all(|e| e.client_id.as_deref() == Some(CLIENT_ID))
    );
    assert_eq!(events[2].seq, 3);
    assert_eq!(events[2].family, Some(login.family));
}

#[tokio::test]
async fn reuse_revokes_the_family() {
    let sim = start_default().await;
    let login = sim.issue_login(&identity());
    let bystander = sim.issue_login(&identity());
    let rt1 = rotate(&sim, &login.refresh_token).await;

    let (status, body) = refresh(&sim, &login.refresh_token).await;
    assert_eq!((status, error_code(&body)), (401, "refresh_token_reused"));
    assert!(sim.is_family_revoked(login.family));
    assert_eq!(sim.families_revoked(), 1);

    let (status, body) = refresh(&sim, &rt1).await;
    assert_eq!(
        (status, error_code(&body)),
        (401, "refresh_token_invalidated")
    );
    // Other families are unaffected.
    rotate(&sim, &bystander.refresh_token).await;
    assert!(!sim.is_family_revoked(bystander.family));
}

#[tokio::test]
async fn reuse_without_family_revocation_keeps_the_current_token() {
    let sim = start(SimulatorConfig {
        family_revocation: false,
        ..SimulatorConfig::default()
    })
    .await;
    let login = sim.issue_login(&identity());
    let rt1 = rotate(&sim, &login.refresh_token).await;
    let (status, body) = refresh(&sim, &login.refresh_token).await;
    assert_eq!((status, error_code(&body)), (401, "refresh_token_reused"));
    rotate(&sim, &rt1).await;
    assert_eq!(sim.families_revoked(), 0);
    assert_eq!(sim.reuse_rejections(), 1);
}

#[tokio::test]
async fn reuse_interval_answers_with_the_same_successor() {
    let sim = start(SimulatorConfig {
        reuse_interval: Duration::from_millis(300),
        ..SimulatorConfig::default()
    })
    .await;
    let login = sim.issue_login(&identity());
    let (status, first) = refresh(&sim, &login.refresh_token).await;
    assert_eq!(status, 200);
    let (status, again) = refresh(&sim, &login.refresh_token).await;
    assert_eq!(status, 200);
    assert_eq!(again, first, "same id, access and refresh tokens");
    let stats = sim.stats();
    assert_eq!(
        (stats.reuse_interval_replays, stats.reuse_rejections),
        (1, 0)
    );

    // The successor is still unspent.
    let successor = first["refresh_token"].as_str().unwrap();
    rotate(&sim, successor).await;

    tokio::time::sleep(Duration::from_millis(350)).await;
    let (status, body) = refresh(&sim, &login.refresh_token).await;
    assert_eq!((status, error_code(&body)), (401, "refresh_token_reused"));
}

#[tokio::test]
async fn without_rotation_the_refresh_token_stays_valid() {
    let sim = start(SimulatorConfig {
        rotate_refresh_tokens: false,
        ..SimulatorConfig::default()
    })
    .await;
    let login = sim.issue_login(&identity());
    let (status, first) = refresh(&sim, &login.refresh_token).await;
    assert_eq!(status, 200);
    assert!(first.get("refresh_token").is_none());
    assert!(first["access_token"].is_string() && first["id_token"].is_string());
    let (status, second) = refresh(&sim, &login.refresh_token).await;
    assert_eq!(status, 200);
    assert_ne!(first["access_token"], second["access_token"]);
    assert_eq!(
        sim.current_refresh_token(login.family),
        Some(login.refresh_token)
    );
    assert_eq!(sim.reuse_rejections(), 0);
}

#[tokio::test]
async fn tokens_carry_the_identity_and_expiry() {
    let sim = start(SimulatorConfig {
        access_token_lifetime: Duration::from_secs(600),
        ..SimulatorConfig::default()
    })
    .await;
    let who = Identity::new("acct-1", "user-1").with_plan("pro");
    let login = sim.issue_login(&who);
    let now = unix_now();
    for jwt in [&login.id_token, &login.access_token] {
        let c = claims(jwt);
        assert_eq!(c["email"], "user-1@example.com");
        let auth = &c["https://api.openai.com/auth"];
        assert_eq!(auth["chatgpt_account_id"], "acct-1");
        assert_eq!(auth["chatgpt_user_id"], "user-1");
        assert_eq!(auth["user_id"], "user-1");
        assert_eq!(auth["chatgpt_plan_type"], "pro");
        assert_eq!(
            c["https://api.openai.com/profile"]["email"],
            "user-1@example.com"
        );
        let exp = c["exp"].as_u64().unwrap();
        assert!(exp.abs_diff(now + 600) <= 2, "exp {exp} vs now {now}");
        assert!(c["iat"].as_u64().unwrap().abs_diff(now) <= 2);
    }
    assert_ne!(
        claims(&login.id_token)["jti"],
        claims(&login.access_token)["jti"]
    );

    sim.set_access_token_lifetime(Duration::from_millis(1500));
    let (_, body) = refresh(&sim, &login.refresh_token).await;
    let c = claims(body["access_token"].as_str().unwrap());
    assert_eq!(
        c["https://api.openai.com/auth"]["chatgpt_account_id"],
        "acct-1"
    );
    let exp = c["exp"].as_u64().unwrap();
    let now = unix_now();
    assert!((now + 1..=now + 3).contains(&exp), "exp {exp} vs now {now}");
}

#[tokio::test]
async fn identity_less_tokens_omit_the_claims() {
    let sim = start_default().await;
    let login = sim.issue_login(&Identity::default());
    for jwt in [&login.id_token, &login.access_token] {
        let c = claims(jwt);
        let mut keys: Vec<&str> = c.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["exp", "iat", "jti"]);
    }
    let partial = sim.issue_login(&Identity {
        user_id: Some("u".into()),
        ..Identity::default()
    });
    let c = claims(&partial.id_token);
    assert!(c.get("email").is_none());
    assert_eq!(
        c["https://api.openai.com/auth"],
        json!({"chatgpt_user_id": "u", "user_id": "u"})
    );
}

#[tokio::test]
async fn auth_json_is_codex_shaped() {
    let sim = start_default().await;
    let doc = sim.auth_json(&identity());
    assert_eq!(doc["auth_mode"], "chatgpt");
    assert!(doc["OPENAI_API_KEY"].is_null());
    assert_eq!(doc["tokens"]["account_id"], "acct-1");
    let refresh_token = doc["tokens"]["refresh_token"].as_str().unwrap();
    assert!(refresh_token.starts_with("rt_"));
    assert!(sim.family_of(refresh_token).is_some());
    claims(doc["tokens"]["id_token"].as_str().unwrap());

    let last = doc["last_refresh"].as_str().unwrap();
    assert_eq!(last.len(), 20, "{last}");
    assert!(last.ends_with('Z') && &last[10..11] == "T", "{last}");
    let year: u64 = last[..4].parse().unwrap();
    assert!(year >= 2025);

    let anonymous = sim.auth_json(&Identity::default());
    assert!(anonymous["tokens"]["account_id"].is_null());
    rotate(&sim, refresh_token).await;
}

#[tokio::test]
async fn latency_fault_delays_then_answers() {
    let sim = start_default().await;
    let login = sim.issue_login(&identity());
    sim.set_fault(Fault::Latency(Duration::from_millis(200)));
    let started = Instant::now();
    let (status, _) = refresh(&sim, &login.refresh_token).await;
    assert_eq!(status, 200);
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(sim.stats().faults_injected, 1);
    assert_eq!(sim.successful_refreshes(), 1);
}

#[tokio::test]
async fn status_fault_answers_server_error_without_spending() {
    let sim = start_default().await;
    let login = sim.issue_login(&identity());
    sim.set_fault(Fault::Status(500));
    for _ in 0..2 {
        let (status, body) = refresh(&sim, &login.refresh_token).await;
        assert_eq!((status, body), (500, json!({"error": "server_error"})));
    }
    sim.set_fault(Fault::None);
    rotate(&sim, &login.refresh_token).await;
    assert_eq!(sim.stats().faults_injected, 2);
}

#[tokio::test]
async fn reset_fault_drops_the_connection() {
    let sim = start_default().await;
    let login = sim.issue_login(&identity());
    sim.set_fault(Fault::Reset);
    let error = refresh_with(&client(), &sim, &login.refresh_token)
        .await
        .expect_err("connection dropped");
    assert!(!error.is_timeout(), "{error}");
    assert_eq!(
        sim.current_refresh_token(login.family),
        Some(login.refresh_token.clone())
    );
    sim.set_fault(Fault::None);
    rotate(&sim, &login.refresh_token).await;
}

#[tokio::test]
async fn reset_after_refresh_loses_the_successor() {
    let sim = start_default().await;
    let login = sim.issue_login(&identity());
    sim.set_fault(Fault::next(1, Fault::ResetAfterRefresh));
    refresh_with(&client(), &sim, &login.refresh_token)
        .await
        .expect_err("connection dropped");
    assert_ne!(
        sim.current_refresh_token(login.family),
        Some(login.refresh_token.clone())
    );
    let (status, body) = refresh(&sim, &login.refresh_token).await;
    assert_eq!((status, error_code(&body)), (401, "refresh_token_reused"));
}

#[tokio::test]
async fn garbage_fault_answers_an_unparseable_200() {
    let sim = start_default().await;
    let login = sim.issue_login(&identity());
    sim.set_fault(Fault::Garbage);
    let response = client()
        .post(sim.token_url())
        .json(&json!({"grant_type": "refresh_token", "refresh_token": login.refresh_token}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert_eq!(text, "<html>not json");
    assert!(serde_json::from_str::<Value>(&text).is_err());
}

#[tokio::test]
async fn rewrite_fault_rotates_then_answers_the_rewritten_200() {
    let sim = start_default().await;
    let login = sim.issue_login(&identity());
    sim.set_fault(Fault::next(
        1,
        Fault::Rewrite {
            fields: vec![
                ("access_token".into(), Some(json!(""))),
                ("id_token".into(), None),
            ],
            pad: 1000,
        },
    ));
    let (status, body) = refresh(&sim, &login.refresh_token).await;
    assert_eq!(status, 200);
    assert_eq!(body["access_token"], "");
    assert!(body.get("id_token").is_none());
    assert_eq!(body["x_pad"].as_str().unwrap().len(), 1000);
    // The rotation happened, and the answer carries it.
    let successor = body["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(
        sim.current_refresh_token(login.family),
        Some(successor.clone())
    );
    rotate(&sim, &successor).await;
    // A refused refresh is answered as usual.
    sim.set_fault(Fault::Rewrite {
        fields: vec![("access_token".into(), Some(json!("x")))],
        pad: 0,
    });
    let (status, body) = refresh(&sim, &login.refresh_token).await;
    assert_eq!((status, error_code(&body)), (401, "refresh_token_reused"));
}

#[tokio::test]
async fn hang_fault_never_answers() {
    let sim = start_default().await;
    let login = sim.issue_login(&identity());
    sim.set_fault(Fault::Hang);
    let quick = client_with_timeout(Duration::from_millis(300));
    let error = refresh_with(&quick, &sim, &login.refresh_token)
        .await
        .expect_err("no answer");
    assert!(error.is_timeout(), "{error}");
    assert_eq!(sim.stats().in_flight_requests, 1);

    // Other connections are still served, and shutdown ends the hung one.
    sim.set_fault(Fault::None);
    rotate(&sim, &login.refresh_token).await;
    timeout(BOUND, sim.shutdown())
        .await
        .expect("shutdown completes");
}

#[tokio::test]
async fn scripted_code_fault_answers_without_spending() {
    let sim = start_default().await;
    let login = sim.issue_login(&identity());
    sim.set_fault(Fault::next(1, Fault::reused()));
    let (status, body) = refresh(&sim, &login.refresh_token).await;
    assert_eq!((status, error_code(&body)), (401, "refresh_token_reused"));
    assert_eq!(sim.reuse_rejections(), 0);
    assert!(!sim.is_family_revoked(login.family));

    sim.set_fault(Fault::Code {
        status: 401,
        code: "refresh_token_expired".into(),
    });
    let (status, body) = refresh(&sim, &login.refresh_token).await;
    assert_eq!((status, error_code(&body)), (401, "refresh_token_expired"));
    sim.set_fault(Fault::None);
    rotate(&sim, &login.refresh_token).await;
}

#[tokio::test]
async fn fail_next_clears_itself() {
    let sim = start_default().await;
    let login = sim.issue_login(&identity());
    sim.set_fault(Fault::next(2, Fault::Status(503)));
    assert_eq!(refresh(&sim, &login.refresh_token).await.0, 503);
    assert_eq!(
        sim.fault(),
        Fault::FailNext {
            count: 1,
            fault: Box::new(Fault::Status(503))
        }
    );
    assert_eq!(refresh(&sim, &login.refresh_token).await.0, 503);
    assert_eq!(sim.fault(), Fault::None);
    rotate(&sim, &login.refresh_token).await;
    let stats = sim.stats();
    assert_eq!((stats.faults_injected, stats.refresh_calls), (2, 3));
}

#[tokio::test]
async fn revoke_invalidates_the_family() {
    let sim = start_default().await;
    let login = sim.issue_login(&identity());
    let rt1 = rotate(&sim, &login.refresh_token).await;
    let client = client();
    let revoke = |token: String| {
        client
            .post(sim.revoke_url())
            .json(&json!({"token": token, "token_type_hint": "refresh_token", "client_id": CLIENT_ID}))
            .send()
    };
    let response = revoke(rt1.clone()).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap(), json!({}));
    let (status, body) = refresh(&sim, &rt1).await;
    assert_eq!(
        (status, error_code(&body)),
        (401, "refresh_token_invalidated")
    );

    // Unknown tokens are accepted silently (RFC 7009); bad bodies are not.
    assert_eq!(revoke("rt_unknown".into()).await.unwrap().status(), 200);
    let bad = client
        .post(sim.revoke_url())
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(sim.revoke_calls(), 3);
    assert_eq!(sim.families_revoked(), 1);
}

#[tokio::test]
async fn malformed_and_unknown_requests() {
    let sim = start_default().await;
    let client = client();
    let post = |body: &'static str| client.post(sim.token_url()).body(body).send();

    let bad_json = post("{not json").await.unwrap();
    assert_eq!(bad_json.status(), 400);
    assert_eq!(
        bad_json.json::<Value>().await.unwrap(),
        json!({"error": "invalid_request"})
    );
    let wrong_grant = post(r#"{"grant_type":"authorization_code","code":"x"}"#)
        .await
        .unwrap();
    assert_eq!(wrong_grant.status(), 400);
    assert_eq!(
        wrong_grant.json::<Value>().await.unwrap(),
        json!({"error": "unsupported_grant_type"})
    );
    let missing = post(r#"{"grant_type":"refresh_token"}"#).await.unwrap();
    assert_eq!(missing.status(), 400);

    let (status, body) = refresh(&sim, "rt_never_issued").await;
    assert_eq!((status, error_code(&body)), (401, "invalid_grant"));
    assert_eq!(sim.refresh_calls(), 4);
    assert!(
        sim.presented_refresh_tokens() == ["rt_never_issued"],
        "the presented token is recorded"
    );
    assert_eq!(sim.stats().rejected_refreshes, 1);
}

#[tokio::test]
async fn expired_refresh_tokens_are_refused() {
    let sim = start(SimulatorConfig {
        refresh_token_lifetime: Some(Duration::from_millis(100)),
        ..SimulatorConfig::default()
    })
    .await;
    let login = sim.issue_login(&identity());
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (status, body) = refresh(&sim, &login.refresh_token).await;
    assert_eq!((status, error_code(&body)), (401, "refresh_token_expired"));
}

#[tokio::test]
async fn concurrent_requests_are_counted() {
    let sim = start_default().await;
    sim.set_fault(Fault::Latency(Duration::from_millis(300)));
    let client = client();
    let logins: Vec<_> = (0..8).map(|_| sim.issue_login(&identity())).collect();
    let mut tasks = tokio::task::JoinSet::new();
    for login in &logins {
        let (client, sim, token) = (client.clone(), sim.clone(), login.refresh_token.clone());
        tasks.spawn(async move { refresh_with(&client, &sim, &token).await });
    }
    while let Some(result) = tasks.join_next().await {
        assert_eq!(result.unwrap().unwrap().0, 200);
    }
    assert_eq!(sim.max_concurrent_requests(), 8);
    assert_eq!(sim.stats().in_flight_requests, 0);
    assert_eq!(sim.successful_refreshes(), 8);
    let mut presented = sim.presented_refresh_tokens();
    let mut issued: Vec<String> = logins.into_iter().map(|l| l.refresh_token).collect();
    presented.sort();
    issued.sort();
    assert_eq!(presented, issued, "each token presented exactly once");
}

#[tokio::test]
async fn hook_runs_before_the_refresh_is_processed() {
    let sim = start(SimulatorConfig {
        family_revocation: false,
        ..SimulatorConfig::default()
    })
    .await;
    let login = sim.issue_login(&identity());
    // Another process wins the race: the hook spends the token first.
    let weak = sim.downgrade();
    let seen: Arc<Mutex<Vec<RefreshEvent>>> = Arc::default();
    let (seen_by_hook, winner) = (Arc::clone(&seen), Arc::new(Mutex::new(None)));
    let winner_by_hook = Arc::clone(&winner);
    let hook: RefreshHook = Arc::new(move |event: &RefreshEvent| {
        seen_by_hook.lock().unwrap().push(event.clone());
        if let Some(sim) = weak.upgrade()
            && event.seq == 1
        {
            *winner_by_hook.lock().unwrap() = Some(sim.refresh(&event.refresh_token));
        }
    });
    sim.set_on_refresh(Some(hook));

    let (status, body) = refresh(&sim, &login.refresh_token).await;
    assert_eq!((status, error_code(&body)), (401, "refresh_token_reused"));
    let won = winner
        .lock()
        .unwrap()
        .take()
        .unwrap()
        .expect("out-of-band refresh");
    assert_eq!(
        sim.current_refresh_token(login.family),
        Some(won.refresh_token.clone())
    );
    rotate(&sim, &won.refresh_token).await;
    // Out-of-band refreshes are not counted.
    assert_eq!(sim.successful_refreshes(), 1);
    assert_eq!(sim.refresh(&login.refresh_token), Err(RefreshError::Reused));

    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].family, Some(login.family));
    assert_eq!(seen[0].client_id.as_deref(), Some(CLIENT_ID));
}

#[tokio::test]
async fn hook_configured_at_start_can_script_the_answer() {
    let calls = Arc::new(Mutex::new(0));
    let counted = Arc::clone(&calls);
    let sim = start(SimulatorConfig {
        on_refresh: Some(Arc::new(move |_: &RefreshEvent| {
            *counted.lock().unwrap() += 1
        })),
        ..SimulatorConfig::default()
    })
    .await;
    let login = sim.issue_login(&identity());
    rotate(&sim, &login.refresh_token).await;
    assert_eq!(*calls.lock().unwrap(), 1);
}

#[tokio::test]
async fn keep_alive_and_pipelining_on_a_raw_connection() {
    let sim = start_default().await;
    let login = sim.issue_login(&identity());
    let body =
        json!({"grant_type": "refresh_token", "refresh_token": login.refresh_token}).to_string();
    let requests = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n\
         POST /oauth/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = timeout(BOUND, TcpStream::connect(sim.addr()))
        .await
        .unwrap()
        .unwrap();
    stream.write_all(requests.as_bytes()).await.unwrap();
    let mut answer = String::new();
    timeout(BOUND, stream.read_to_string(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert_eq!(answer.matches("HTTP/1.1 200 OK\r\n").count(), 2, "{answer}");
    assert!(answer.contains("\"refresh_token\":\"rt_"));
    assert!(answer.contains("connection: close"));

    let mut chunked = timeout(BOUND, TcpStream::connect(sim.addr()))
        .await
        .unwrap()
        .unwrap();
    chunked
        .write_all(b"POST /oauth/token HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    timeout(BOUND, chunked.read_to_string(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 501 "), "{answer}");
}

#[tokio::test]
async fn standalone_endpoints() {
    let sim = start_default().await;
    let client = client();
    let doc: Value = client
        .post(format!("{}/sim/login", sim.base_url()))
        .json(&json!({"account_id": "acct-9", "email": "x@example.com"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["tokens"]["account_id"], "acct-9");
    let c = claims(doc["tokens"]["access_token"].as_str().unwrap());
    assert_eq!(c["email"], "x@example.com");
    rotate(&sim, doc["tokens"]["refresh_token"].as_str().unwrap()).await;

    let stats: Value = client
        .get(format!("{}/sim/stats", sim.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["families_issued"], 1);
    assert_eq!(stats["successful_refreshes"], 1);
}

#[tokio::test]
async fn debug_output_hides_tokens() {
    let sim = start_default().await;
    let login = sim.issue_login(&identity());
    rotate(&sim, &login.refresh_token).await;
    let event = sim.refresh_events().remove(0);
    for shown in [
        format!("{login:?}"),
        format!("{event:?}"),
        format!("{sim:?}"),
        format!("{:?}", SimulatorConfig::default()),
    ] {
        assert!(!shown.contains(&login.refresh_token), "{shown}");
        assert!(!shown.contains(&login.access_token), "{shown}");
        assert!(!shown.contains("rt_"), "{shown}");
    }
}

#[tokio::test]
async fn shutdown_and_drop_stop_the_server() {
    let sim = start_default().await;
    let addr = sim.addr();
    timeout(BOUND, sim.shutdown())
        .await
        .expect("shutdown completes");
    assert!(TcpStream::connect(addr).await.is_err());
    timeout(BOUND, sim.shutdown()).await.expect("idempotent");

    let dropped = start_default().await;
    let addr = dropped.addr();
    drop(dropped);
    let refused = timeout(BOUND, async {
        while TcpStream::connect(addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        refused.is_ok(),
        "server still accepting after the last handle dropped"
    );
}
