//! Properties of the document parser and the token-endpoint response parser, over generated
//! input: never a panic, unknown fields always kept.

use authstore::authority::classify;
use authstore::document::AuthDocument;
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
