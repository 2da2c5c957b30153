//! The backup reader: `read_header` and `verify_body` under a fixed keyring.
//!
//! Each input is read twice: as given (almost always stopped by the header checksum or
//! the MAC, which is what a forged file meets), and "repaired" (magic, format, header
//! length, checksum and MAC made right around the fuzzer's bytes), which takes the
//! header decoder and the record parser through every path.

#![no_main]

use keyvault::Error;
use keyvault::backup::{read_header, verify_body};
use keyvault_fuzz::{keyring, repair_backup};
use libfuzzer_sys::fuzz_target;

fn read(bytes: &[u8], repaired: bool) {
    let Ok((header, body_start)) = read_header(bytes) else {
        return;
    };
    assert!(body_start <= bytes.len());
    match verify_body(bytes, body_start, &header, keyring()) {
        Ok(records) => {
            assert_eq!(records.len() as u64, header.records);
            assert!(records.iter().all(|(_, k, _)| k.len() <= 4096));
        }
        Err(Error::Integrity(msg)) => {
            // A repaired input carries a right MAC: the reader must get past it.
            assert!(
                !(repaired && msg.contains("MAC")),
                "the harness's MAC is wrong: {msg}"
            );
        }
        Err(e) => panic!("verify_body failed with a non-integrity error: {e:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    read(data, false);
    read(&repair_backup(data), true);
});
