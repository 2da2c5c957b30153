//! The agent's frame decoder, as the agent runs it on what a client sends
//! (`read_message::<AgentRequest>` with the request limit), and as a client runs it on
//! what the agent answers. Never a panic, never an allocation the input did not pay for
//! (libFuzzer's `-rss_limit_mb` catches those), and every request that decodes is
//! re-encoded to the same frame.

#![no_main]

use keyvault::agent::protocol::{
    AgentRequest, AgentResponse, FrameError, MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES, read_message,
    write_message,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Several frames in a row, as one stream.
    let mut stream = data;
    for _ in 0..8 {
        match read_message::<AgentRequest>(&mut stream, MAX_REQUEST_BYTES) {
            Ok(request) => {
                let mut frame = Vec::new();
                write_message(&mut frame, &request).expect("a decoded request encodes");
                let back: AgentRequest = read_message(&mut frame.as_slice(), MAX_REQUEST_BYTES)
                    .expect("an encoded request decodes");
                let mut again = Vec::new();
                write_message(&mut again, &back).expect("it encodes again");
                assert_eq!(frame, again, "a request changed through encode/decode");
            }
            Err(FrameError::Closed) => break,
            Err(FrameError::TooLarge(n)) => {
                assert!(n > MAX_REQUEST_BYTES);
                break;
            }
            Err(_) => break,
        }
    }
    // The client's side: responses under their own (larger) limit.
    let mut stream = data;
    for _ in 0..8 {
        if read_message::<AgentResponse>(&mut stream, MAX_RESPONSE_BYTES).is_err() {
            break;
        }
    }
});
