//! The vault on disk: what is at rest, crash consistency and corruption, storage
//! integrity, the committed fixtures of each released format, the lifecycle commands
//! that rewrite files (backup, restore, passwd, compact) and their damage and stress
//! tests, batches, the model-based test, and the constant-time source scan.

#[path = "../util/mod.rs"]
mod util;

mod at_rest;
mod batch;
mod constant_time;
mod corruption;
mod crash;
mod fixture_v1;
mod fixture_v3;
mod fixture_v4;
mod lifecycle;
mod lifecycle_damage;
mod lifecycle_stress;
mod model;
mod storage_integrity;
