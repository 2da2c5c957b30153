//! The agent: unlock, lock and the idle timer through the real binary, its lifecycle
//! (start-up, faults, signals), background upkeep, and load from many clients.

#[path = "../util/mod.rs"]
mod util;

mod agent_lifecycle;
mod basics;
mod load;
mod upkeep;
