//! The token-endpoint response classifier: any status and body give a response or a
//! classified failure, never a panic.
#![no_main]

use authstore::authority::classify;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u16, &[u8])| {
    let (status, body) = input;
    let _ = classify(status, body);
});
