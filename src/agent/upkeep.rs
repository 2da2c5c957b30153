//! The agent's upkeep while nobody uses it: compacting the vault once its files have
//! grown past [`MAX_SPACE_RATIO`] times the records they hold.
//!
//! sled's log leaves superseded pages behind and reuses a segment only once half of it
//! is dead, so a vault that takes many small writes (one-key `gen`s through the agent)
//! grows to about 4–6× its records; a compaction brings it back to about 1.9×. The
//! agent watches the size of the files (a few `stat`s each second) and reads the
//! records' length (a walk of the database, nothing decrypted) only when the files have
//! grown by a quarter since it last looked, then compacts when the ratio is over the
//! limit, the agent has been quiet for [`QUIET`] and the filesystem has room for the
//! copy. A request that arrives meanwhile waits for the compaction (about 1 s per
//! 100,000 records on the reference machine).

use std::time::Duration;

use crate::vault::Vault;
use crate::vault::lifecycle::SpaceUse;

/// Compact when the vault's files are more than this many times its records: the
/// bound on the vault directory's size.
pub const MAX_SPACE_RATIO: f64 = 3.0;
/// Leave vaults smaller than this alone: a small database is mostly sled's fixed
/// overhead, and its size does not matter.
pub const MIN_BYTES: u64 = 16 << 20;
/// How long the agent must have had no request before it compacts.
pub const QUIET: Duration = Duration::from_secs(2);
/// Growth of the files, since the last look, that makes the agent look again: at most
/// a quarter, less when the last look found them near the limit (so they do not
/// overshoot it by much), but at least 2% (so a vault just under it is not walked each
/// second).
const REGROWTH: (f64, f64) = (1.02, 1.25);

/// When to look at the vault's space use next.
#[derive(Debug)]
pub struct Upkeep {
    next_look_at: u64,
}

impl Default for Upkeep {
    fn default() -> Self {
        Upkeep {
            next_look_at: MIN_BYTES,
        }
    }
}

impl Upkeep {
    /// The vault's space use when it is due for a compaction: its files are at least
    /// [`MIN_BYTES`], have grown since the last look, and are over [`MAX_SPACE_RATIO`]
    /// times its records. Otherwise `None`, and the next look waits for more growth.
    pub fn due(&mut self, vault: &Vault) -> Option<SpaceUse> {
        let on_disk = vault.disk_bytes();
        if on_disk < self.next_look_at {
            return None;
        }
        match vault.space_use() {
            // The copy needs room beside the vault; a failed
            // compaction would leave the agent without its vault, locked.
            Ok(space) if space.ratio() > MAX_SPACE_RATIO && room_for_copy(vault, space) => {
                Some(space)
            }
            Ok(space) => {
                self.looked(space);
                None
            }
            Err(_) => {
                self.looked(SpaceUse {
                    on_disk,
                    records: 0,
                });
                None
            }
        }
    }

    /// Whether [`Upkeep::due`] would walk the database now (its files have grown).
    pub fn would_look(&self, vault: &Vault) -> bool {
        vault.disk_bytes() >= self.next_look_at
    }

    /// Records a look at the files, or a compaction, that found `space`: the next look
    /// waits until the files have grown by as much as takes them from there to the
    /// limit (within 2% and 25%).
    pub fn looked(&mut self, space: SpaceUse) {
        let growth = (MAX_SPACE_RATIO / space.ratio()).clamp(REGROWTH.0, REGROWTH.1);
        self.next_look_at = MIN_BYTES.max((space.on_disk as f64 * growth) as u64);
    }
}

/// Whether the vault's filesystem has room for a compacted copy (3× the records, as
/// the copy can grow to that before sled reclaims space) and 64 MiB to spare.
fn room_for_copy(vault: &Vault, space: SpaceUse) -> bool {
    rustix::fs::statvfs(vault.path()).is_ok_and(|fs| {
        let free = fs.f_bavail.saturating_mul(fs.f_frsize);
        free >= space.records.saturating_mul(3).saturating_add(64 << 20)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space(on_disk: u64, records: u64) -> SpaceUse {
        SpaceUse { on_disk, records }
    }

    #[test]
    fn the_next_look_waits_for_growth_up_to_the_limit_and_never_below_the_floor() {
        let mut upkeep = Upkeep::default();
        assert_eq!(upkeep.next_look_at, MIN_BYTES);
        // Freshly compacted (2×): a quarter more.
        upkeep.looked(space(200 << 20, 100 << 20));
        assert_eq!(upkeep.next_look_at, 250 << 20);
        // Near the limit (2.9×): only the growth that reaches it, 3.4%.
        upkeep.looked(space(290 << 20, 100 << 20));
        assert_eq!(upkeep.next_look_at, 300 << 20);
        // At it, or unknown (no records counted): 2%, so not every second.
        upkeep.looked(space(300 << 20, 100 << 20));
        assert_eq!(upkeep.next_look_at, (300u64 << 20) * 102 / 100);
        upkeep.looked(space(300 << 20, 0));
        assert_eq!(upkeep.next_look_at, (300u64 << 20) * 102 / 100);
        // Small vaults wait for the floor.
        upkeep.looked(space(1 << 20, 1 << 10));
        assert_eq!(upkeep.next_look_at, MIN_BYTES);
    }

    #[test]
    fn the_ratio_of_an_empty_database_is_infinite() {
        let empty = SpaceUse {
            on_disk: 10,
            records: 0,
        };
        assert!(empty.ratio() > MAX_SPACE_RATIO);
        let compact = SpaceUse {
            on_disk: 190,
            records: 100,
        };
        assert!(compact.ratio() < MAX_SPACE_RATIO);
    }
}
