//! Describing keys without their material: `key_info`, `list`, and the agent's cache of
//! descriptions (with the whole vault's listing, patched after small changes) that
//! makes a repeated `list` skip the scan, the decryption and the sort.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::store::Tree;
use crate::store::records::{KeyRecord, VersionState};

use super::types::{KeyInfo, KeyTypeName, Timestamp, VersionInfo};
use super::{Vault, hex, version_fingerprint};

/// See [`Vault::infos`]. `generation` moves on with every change to the keys tree, so a
/// description read before a change is never stored after it.
///
/// Held only for vaults of up to [`INFO_CACHE_MAX_KEYS`] keys: above that, the
/// descriptions would cost the agent more memory than the listing they save (about
/// 0.5 KB a key), and every listing opens the records again.
#[derive(Default)]
pub(super) struct InfoCache {
    /// Descriptions by database key; kept across changes (a change drops its keys').
    pub(super) map: std::collections::HashMap<Vec<u8>, Arc<KeyInfo>>,
    /// The whole vault's listing as of `generation`, sorted by user then name (with
    /// stored use counts): a repeated `list` skips the scan, the lookups and the sort.
    pub(super) all: Option<Listing>,
    /// The keys changed since `all` was made (at most [`LISTING_PATCH_MAX`]): the next
    /// whole listing re-reads only these.
    pub(super) dirty: Vec<Vec<u8>>,
    pub(super) generation: u64,
}

/// Past this many changed keys, the cached whole listing is dropped rather than
/// patched.
const LISTING_PATCH_MAX: usize = 64;

impl InfoCache {
    /// Forgets what a commit that changed the keys `db_keys` made stale.
    pub(super) fn changed<'a>(&mut self, db_keys: impl Iterator<Item = &'a [u8]>) {
        self.generation += 1;
        for k in db_keys {
            self.map.remove(k);
            if self.all.is_some() {
                self.dirty.push(k.to_vec());
            }
        }
        if self.dirty.len() > LISTING_PATCH_MAX {
            self.all = None;
            self.dirty.clear();
        }
    }
}

/// The most keys whose descriptions the vault keeps in memory (see [`InfoCache`]).
const INFO_CACHE_MAX_KEYS: usize = 20_000;

/// Descriptions with their database keys, sorted by user then name.
type Listing = Arc<[(Vec<u8>, Arc<KeyInfo>)]>;

/// A listing's descriptions with their database keys, sorted by user then name.
pub(super) enum SortedInfos {
    /// The cached whole listing.
    Cached(Listing),
    /// Read now (descriptions the cache holds are shared with it).
    Fresh(Vec<(Vec<u8>, Arc<KeyInfo>)>),
}

impl Vault {
    /// Describes one key: its type, versions and fingerprints (never its material).
    pub fn key_info(&self, user: &str, name: &str) -> Result<KeyInfo> {
        let user = &self.resolve_user(user)?;
        let (db_key, record) = self.require_key(user, name)?;
        Ok(self.live_info(&db_key, &record))
    }

    /// The description of a key with the use counts this process has live.
    fn live_info(&self, db_key: &[u8], record: &KeyRecord) -> KeyInfo {
        let mut info = key_info(record);
        for (v, r) in info.versions.iter_mut().zip(&record.versions) {
            v.uses = self.live_uses(db_key, r.version, r.uses);
        }
        info
    }

    /// Lists the keys of one user, or of every user, sorted by user then name.
    pub fn list(&self, user: Option<&str>) -> Result<Vec<KeyInfo>> {
        let resolved = user.map(|u| self.resolve_user(u)).transpose()?;
        let user = resolved.as_deref();
        let out = self.with_live_uses_all(self.sorted_infos(user)?);
        if let Some(user) = user
            && out.is_empty()
        {
            // A revoked or unknown user is said to be one, not shown as "no keys".
            return Err(self.why_no_key(user, None)?);
        }
        let mut last_user = None;
        for info in &out {
            if last_user != Some(&info.user) {
                self.refuse_key_of_revoked(&info.user)?;
                last_user = Some(&info.user);
            }
        }
        Ok(out)
    }

    /// The cached whole listing `all` made current: the keys in `dirty` (changed since
    /// it was made) are read again, or left out when gone. Cached in turn unless
    /// another change came meanwhile.
    fn patched_listing(
        &self,
        generation: u64,
        all: &[(Vec<u8>, Arc<KeyInfo>)],
        mut dirty: Vec<Vec<u8>>,
    ) -> Result<SortedInfos> {
        dirty.sort_unstable();
        dirty.dedup();
        let changed = |k: &[u8]| dirty.binary_search_by(|d| d.as_slice().cmp(k)).is_ok();
        let mut out: Vec<(Vec<u8>, Arc<KeyInfo>)> = all
            .iter()
            .filter(|(k, _)| !changed(k))
            .map(|(k, info)| (k.clone(), Arc::clone(info)))
            .collect();
        let mut fresh = Vec::new();
        for db_key in &dirty {
            if let Some(sealed) = self.store.get(Tree::Keys, db_key)? {
                // As in `sorted_infos`: authenticated with its database key.
                let record: KeyRecord = self.open_record(Tree::Keys, db_key, &sealed)?;
                let info = Arc::new(key_info(&record));
                fresh.push((db_key.clone(), Arc::clone(&info)));
                out.push((db_key.clone(), info));
            }
        }
        out.sort_by(|(_, a), (_, b)| (&a.user, &a.name).cmp(&(&b.user, &b.name)));
        let mut infos = self.infos.lock().unwrap_or_else(|p| p.into_inner());
        if infos.generation != generation || out.len() > INFO_CACHE_MAX_KEYS {
            return Ok(SortedInfos::Fresh(out));
        }
        if infos.map.len() + fresh.len() <= INFO_CACHE_MAX_KEYS {
            infos.map.extend(fresh);
        }
        let listing: Listing = out.into();
        infos.all = Some(Arc::clone(&listing));
        infos.dirty.clear();
        Ok(SortedInfos::Cached(listing))
    }

    /// The descriptions of the keys of `user` (or of every user) with their database
    /// keys, sorted by user then name, with the use counts stored in their records: from
    /// the cached whole listing when it is current, else from the records (and the
    /// descriptions already read), caching the whole listing when it was asked for.
    fn sorted_infos(&self, user: Option<&str>) -> Result<SortedInfos> {
        let (generation, held, patch) = {
            let infos = self.infos.lock().unwrap_or_else(|p| p.into_inner());
            let mut patch = None;
            if user.is_none()
                && let Some(all) = &infos.all
            {
                if infos.dirty.is_empty() {
                    return Ok(SortedInfos::Cached(Arc::clone(all)));
                }
                patch = Some((Arc::clone(all), infos.dirty.clone()));
            }
            (infos.generation, infos.map.len(), patch)
        };
        if let Some((all, dirty)) = patch {
            return self.patched_listing(generation, &all, dirty);
        }
        // Whether the descriptions read now may still fit in the cache.
        let mut fits = held < INFO_CACHE_MAX_KEYS;
        let prefix = match user {
            Some(user) => self.user_hash(user).to_vec(),
            None => Vec::new(),
        };
        let mut out = Vec::new();
        let mut fresh = Vec::new();
        for item in self.store.scan_prefix(Tree::Keys, &prefix) {
            let (db_key, sealed) = item?;
            let cached = self
                .infos
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .map
                .get(&db_key)
                .cloned();
            let info = match cached {
                Some(info) => info,
                None => {
                    // Authenticated with its database key as associated data, so it was
                    // sealed there with the master key; `check` recomputes the index.
                    let record: KeyRecord = self.open_record(Tree::Keys, &db_key, &sealed)?;
                    let info = Arc::new(key_info(&record));
                    if fits {
                        fresh.push((db_key.clone(), Arc::clone(&info)));
                        if held + fresh.len() > INFO_CACHE_MAX_KEYS {
                            fits = false;
                            fresh = Vec::new();
                        }
                    }
                    info
                }
            };
            if user.is_some_and(|u| u != info.user) {
                return Err(Error::Integrity(
                    "a key record does not match its index entry".into(),
                ));
            }
            out.push((db_key, info));
        }
        out.sort_by(|(_, a), (_, b)| (&a.user, &a.name).cmp(&(&b.user, &b.name)));
        let mut infos = self.infos.lock().unwrap_or_else(|p| p.into_inner());
        if infos.generation != generation {
            return Ok(SortedInfos::Fresh(out));
        }
        if fits && infos.map.len() + fresh.len() <= INFO_CACHE_MAX_KEYS {
            infos.map.extend(fresh);
        }
        if user.is_none() && out.len() <= INFO_CACHE_MAX_KEYS {
            let all: Listing = out.into();
            infos.all = Some(Arc::clone(&all));
            infos.dirty.clear();
            return Ok(SortedInfos::Cached(all));
        }
        Ok(SortedInfos::Fresh(out))
    }
}

/// The description of a stored key (never its material).
pub(super) fn key_info(record: &KeyRecord) -> KeyInfo {
    let versions: Vec<VersionInfo> = record
        .versions
        .iter()
        .map(|v| VersionInfo {
            version: v.version,
            created: Timestamp(v.created),
            state: v.state.into(),
            uses: v.uses,
            fingerprint: version_fingerprint(record.key_type, v),
        })
        .collect();
    let primary = record
        .versions
        .iter()
        .position(|v| v.state == VersionState::Primary)
        .unwrap_or(record.versions.len().saturating_sub(1));
    let (primary_version, fingerprint, public_only) = match record.versions.get(primary) {
        Some(v) => (
            v.version,
            versions[primary].fingerprint.clone(),
            v.secret.is_empty(),
        ),
        None => (0, String::new(), false),
    };
    KeyInfo {
        id: hex(&record.id),
        user: record.user.clone(),
        name: record.name.clone(),
        key_type: KeyTypeName(record.key_type),
        created: Timestamp(record.created),
        primary_version,
        fingerprint,
        public_only,
        versions,
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::crypto::kdf::KdfParams;
    use crate::keytype::KeyType;

    fn vault(dir: &Path) -> Vault {
        let fast = KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        };
        Vault::create(&dir.join("v"), b"pw", fast, true).unwrap()
    }

    /// The whole listing read afresh from the records, bypassing the cached one.
    fn uncached(v: &Vault) -> Vec<KeyInfo> {
        {
            let mut infos = v.infos.lock().unwrap();
            infos.all = None;
            infos.dirty.clear();
            infos.map.clear();
        }
        v.list(None).unwrap()
    }

    #[test]
    fn a_cached_listing_patched_after_changes_matched_a_fresh_one() {
        let dir = tempfile::tempdir().unwrap();
        let v = vault(dir.path());
        for name in ["a", "b", "c", "d"] {
            v.generate("alice", Some(name), KeyType::Fernet).unwrap();
        }
        v.generate("bob", Some("x"), KeyType::Fernet).unwrap();
        assert_eq!(v.list(None).unwrap().len(), 5);
        assert!(v.infos.lock().unwrap().all.is_some());
        // A new key, a rotated one, a deleted one, and one deleted then made again.
        v.generate("carol", Some("n"), KeyType::Fernet).unwrap();
        v.rotate("alice", "b").unwrap();
        v.delete("alice", "c").unwrap();
        v.delete("bob", "x").unwrap();
        v.generate("bob", Some("x"), KeyType::Fernet).unwrap();
        assert!(!v.infos.lock().unwrap().dirty.is_empty());
        let patched = v.list(None).unwrap();
        assert!(v.infos.lock().unwrap().dirty.is_empty());
        assert_eq!(patched, uncached(&v));
        let names: Vec<_> = patched
            .iter()
            .map(|k| (k.user.as_str(), k.name.as_str(), k.versions.len()))
            .collect();
        assert_eq!(
            names,
            [
                ("alice", "a", 1),
                ("alice", "b", 2),
                ("alice", "d", 1),
                ("bob", "x", 1),
                ("carol", "n", 1)
            ]
        );
    }

    #[test]
    fn many_changes_dropped_the_cached_listing_instead_of_patching_it() {
        let dir = tempfile::tempdir().unwrap();
        let v = vault(dir.path());
        v.generate("alice", Some("a"), KeyType::Fernet).unwrap();
        v.list(None).unwrap();
        for i in 0..=LISTING_PATCH_MAX {
            v.generate("bob", Some(&format!("k{i}")), KeyType::Fernet)
                .unwrap();
        }
        assert!(v.infos.lock().unwrap().all.is_none());
        let listed = v.list(None).unwrap();
        assert_eq!(listed.len(), LISTING_PATCH_MAX + 2);
        assert_eq!(listed, uncached(&v));
    }
}
