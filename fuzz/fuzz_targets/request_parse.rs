//! Request parsing: arbitrary bytes that are JSON become a request or a
//! coded error, never a panic, whatever their shape, nesting or size.

#![no_main]

use libfuzzer_sys::fuzz_target;
use simplesfu_proto::Request;

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        match Request::parse(&value) {
            Ok(request) => {
                let _ = request.request_type().as_str();
            }
            Err(error) => assert!(!error.message.is_empty(), "every refusal says why"),
        }
    }
});
