//! `records::decode` of every record kind: never a panic, and whatever decodes encodes
//! back to a record that decodes to the same value.

#![no_main]

use std::fmt::Debug;

use keyvault::backup::BackupHeader;
use keyvault::store::records::{
    self, AuditRecord, FailedUnlocks, Header, KeyRecord, RevokedRecord,
};
use libfuzzer_sys::fuzz_target;
use serde::Serialize;
use serde::de::DeserializeOwned;

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(data: &[u8], what: &str) {
    if let Ok(value) = records::decode::<T>(data, what) {
        let again = records::encode(&value).expect("a decoded record encodes");
        let back: T = records::decode(&again, what).expect("an encoded record decodes");
        assert_eq!(back, value, "{what} changed through encode/decode");
    }
}

fuzz_target!(|data: &[u8]| {
    round_trip::<Header>(data, "header");
    round_trip::<RevokedRecord>(data, "revoked");
    round_trip::<AuditRecord>(data, "audit");
    round_trip::<FailedUnlocks>(data, "failed unlocks");
    round_trip::<BackupHeader>(data, "backup header");
    // KeyRecord holds secrets and has no PartialEq: compare encodings instead.
    if let Ok(value) = records::decode::<KeyRecord>(data, "key") {
        let again = records::encode(&value).expect("a decoded key record encodes");
        let back: KeyRecord = records::decode(&again, "key").expect("it decodes");
        let third = records::encode(&back).expect("and encodes again");
        assert_eq!(again.as_slice(), third.as_slice());
        assert_eq!(back.versions.len(), value.versions.len());
    }
});
