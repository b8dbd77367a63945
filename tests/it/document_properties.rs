//! Properties of the two untrusted inputs, `auth.json` and the token endpoint's answers, over
//! generated input: never a panic, unknown fields always kept, a well-formed rotated refresh
//! token always stored whatever else the answer holds, no empty or malformed token ever
//! stored, and a file that is refused never changed.

use std::time::{Duration, SystemTime};

use authstore::authority::{AuthorityConfig, classify, is_token_string};
use authstore::document::AuthDocument;
use authstore::store::StoreOptions;
use authstore::{AuthManager, ManagerOptions};
use proptest::prelude::*;
use serde_json::{Value, json};

/// Arbitrary JSON values, nested a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = AuthDocument::parse(&bytes);
        for status in [200u16, 400, 401, 500] {
            let _ = classify(status, &bytes);
        }
    }

    #[test]
    fn arbitrary_json_never_panics(value in json_value()) {
        let bytes = value.to_string().into_bytes();
        let _ = AuthDocument::parse(&bytes);
        let _ = classify(200, &bytes);
        let _ = classify(401, &bytes);
    }

    #[test]
    fn unknown_fields_survive_a_round_trip(
        top in prop::collection::btree_map("x_[a-z]{1,8}", json_value(), 0..4),
        inner in prop::collection::btree_map("x_[a-z]{1,8}", json_value(), 0..4),
    ) {
        let mut document = json!({
            "OPENAI_API_KEY": null,
            "tokens": {"id_token": "a.b.c", "access_token": "d.e.f", "refresh_token": "r", "account_id": null},
        });
        for (key, value) in &top {
            document[key] = value.clone();
        }
        for (key, value) in &inner {
            document["tokens"][key] = value.clone();
        }
        let parsed = AuthDocument::parse(document.to_string().as_bytes()).unwrap();
        let written: Value = serde_json::from_slice(&parsed.to_json()).unwrap();
        prop_assert!(written == document, "a field was lost or changed");
        // And written again, byte for byte the same.
        let again = AuthDocument::parse(&parsed.to_json()).unwrap();
        prop_assert!(again.to_json() == parsed.to_json());
    }
}

/// What a broken or hostile authority may put in a token field: nothing, `null`, a token, a
/// string that is not one (empty, blank, with whitespace or control characters), any JSON.
fn token_value() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        Just(Some(Value::Null)),
        "[A-Za-z0-9._~+/=-]{1,40}".prop_map(|t| Some(Value::String(t))),
        "[ \t\n\u{0}\u{1f}\u{7f}a-z.]{0,6}".prop_map(|t| Some(Value::String(t))),
        json_value().prop_map(Some),
    ]
}

/// A valid Codex document, then maybe cut short or with one byte changed.
fn auth_json_bytes() -> impl Strategy<Value = Vec<u8>> {
    let valid = serde_json::to_vec_pretty(&json!({
        "OPENAI_API_KEY": null,
        "tokens": {"id_token": "a.b.c", "access_token": "d.e.f", "refresh_token": "r", "account_id": null},
        "last_refresh": "2026-01-01T00:00:00Z"
    }))
    .unwrap();
    let length = valid.len();
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        (0..length).prop_map({
            let valid = valid.clone();
            move |cut| valid[..cut].to_vec()
        }),
        (0..length, any::<u8>()).prop_map(move |(at, byte)| {
            let mut bytes = valid.clone();
            bytes[at] = byte;
            bytes
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_answer_keeps_a_well_formed_rotation_and_stores_no_malformed_token(
        id in token_value(),
        access in token_value(),
        refresh in token_value(),
        extra in prop::collection::btree_map("[a-z_]{1,8}", json_value(), 0..3),
        status in 200u16..300,
    ) {
        let mut answer = serde_json::Map::new();
        for (key, value) in extra {
            answer.insert(key, value);
        }
        for (name, value) in [("id_token", &id), ("access_token", &access), ("refresh_token", &refresh)] {
            match value {
                Some(value) => { answer.insert(name.into(), value.clone()); }
                None => { answer.remove(name); }
            }
        }
        let base = AuthDocument::parse(br#"{"tokens": {"id_token": "id-0", "access_token": "at-0",
            "refresh_token": "rt-0"}, "last_refresh": "2026-01-01T00:00:00Z"}"#).unwrap();
        let response = classify(status, Value::Object(answer).to_string().as_bytes()).unwrap();
        let well_formed = |value: &Option<Value>| {
            value.as_ref().and_then(Value::as_str).filter(|t| is_token_string(t)).map(str::to_owned)
        };
        prop_assert_eq!(response.is_usable(), well_formed(&access).is_some());
        let merged = response.merge_into(&base, SystemTime::now());
        let tokens = merged.tokens.as_ref().unwrap();
        for (name, value, stored, old) in [
            ("id_token", &id, &tokens.id_token, "id-0"),
            ("access_token", &access, &tokens.access_token, "at-0"),
            ("refresh_token", &refresh, &tokens.refresh_token, "rt-0"),
        ] {
            let expected = well_formed(value).unwrap_or_else(|| old.to_owned());
            prop_assert!(stored.expose() == expected, "{} is not the one expected", name);
            prop_assert!(is_token_string(stored.expose()), "{} is not a token", name);
        }
        if well_formed(&access).is_none() {
            prop_assert_eq!(merged.last_refresh.as_deref(), Some("2026-01-01T00:00:00Z"));
        }
        let again = AuthDocument::parse(&merged.to_json()).unwrap();
        prop_assert!(again == merged);
    }
}

proptest! {
    // Each case runs a manager on its own home: fewer cases, each a real transaction.
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Whatever `auth.json` holds, a manager whose token endpoint fails (a real local HTTP
    /// server answering 500, which is not retried) leaves it byte for byte as it was: refused
    /// files are never changed, and nothing is written without a refresh.
    #[test]
    fn an_auth_json_the_manager_cannot_refresh_is_never_changed(bytes in auth_json_bytes()) {
        let home = tempfile::tempdir().unwrap();
        let path = home.path().join("auth.json");
        std::fs::write(&path, &bytes).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let outcome = runtime.block_on(async {
            let server = wiremock::MockServer::start().await;
            wiremock::Mock::given(wiremock::matchers::any())
                .respond_with(wiremock::ResponseTemplate::new(500))
                .mount(&server)
                .await;
            let authority = AuthorityConfig::default()
                .token_url(format!("{}/oauth/token", server.uri()))
                .request_timeout(Duration::from_secs(5));
            // A cut-short file is read again after this pause (an in-place rewrite may be under
            // way); the default second would only slow the cases down.
            let store = StoreOptions::default().parse_retry(Duration::from_millis(5));
            let options = ManagerOptions::default().authority(authority).store(store).watch(false);
            let manager = AuthManager::new(home.path(), options)?;
            manager.auth().await.map(drop)
        });
        prop_assert!(std::fs::read(&path).unwrap() == bytes, "auth.json changed ({:?})", outcome.err().map(|e| e.kind()));
        prop_assert_eq!(
            outcome.is_ok(),
            AuthDocument::parse(&bytes).is_ok_and(|d| d.has_credentials() && !d.is_stale(SystemTime::now(), &Default::default())),
            "a usable file is used, anything else is an error"
        );
    }
}
