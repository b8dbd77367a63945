//! The auth.json parser: any bytes give a document or an error, never a panic; a parsed
//! document writes back to bytes that parse to the same document.
#![no_main]

use authstore::document::AuthDocument;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(document) = AuthDocument::parse(bytes) {
        let written = document.to_json();
        let again = AuthDocument::parse(&written).expect("written documents parse");
        assert!(again == document, "round trip changed the document");
        let _ = document.identity();
        let _ = document.expires_at();
    }
});
