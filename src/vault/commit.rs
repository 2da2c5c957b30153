//! Committing changes: the writer lock (which also holds the audit chain's head), one
//! atomic batch per change with its audit entry, group commit of the flushes, and the
//! epoch raised by every change that removes something.

use std::sync::atomic::Ordering;

use crate::error::Result;
use crate::store::{Batch, Tree};

use super::audit::{AuditEvent, AuditHead};
use super::{Vault, epoch, ledger};

impl Vault {
    pub(super) fn lock_writer(&self) -> std::sync::MutexGuard<'_, AuditHead> {
        // A panic while holding the lock cannot leave the store half-written (batches
        // are atomic), so a poisoned lock is safe to reuse.
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies `batch` with the audit entry for `event`, atomically, releases the
    /// writer lock, and waits until the change is durable (unless flushing is deferred,
    /// see [`Vault::set_deferred_flush`]). Writers that commit while a flush runs share
    /// the next one (group commit).
    pub(super) fn commit(
        &self,
        mut head: std::sync::MutexGuard<'_, AuditHead>,
        batch: Batch,
        event: AuditEvent,
    ) -> Result<()> {
        let ticket = self.commit_with(&mut head, batch, event, false)?;
        drop(head);
        if self.deferred_flush.load(Ordering::Relaxed) {
            return Ok(());
        }
        self.wait_durable(ticket)
    }

    /// Applies `batch` with the audit entry for `event` under the writer lock, and
    /// returns the ticket to wait on for durability (flushed at once if `durable`).
    pub(super) fn commit_with(
        &self,
        head: &mut AuditHead,
        batch: Batch,
        event: AuditEvent,
        durable: bool,
    ) -> Result<u64> {
        self.commit_events(head, batch, vec![event], durable)
    }

    /// As [`Vault::commit_with`], with one audit entry per event, all in one batch.
    pub(super) fn commit_events(
        &self,
        head: &mut AuditHead,
        mut batch: Batch,
        events: Vec<AuditEvent>,
        durable: bool,
    ) -> Result<u64> {
        let mut next = *head;
        let seal = |tree: Tree, db_key: &[u8], plain: &[u8]| self.seal(tree, db_key, plain);
        for event in events {
            next = next.append(&self.keyring, event, &mut batch, seal)?;
        }
        // The sealed head goes in the same atomic batch as the entries it ends.
        next.stage(&mut batch, seal)?;
        self.store.apply(&batch)?;
        *head = next;
        if batch.keys_in(Tree::Keys).next().is_some() {
            self.infos
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .changed(batch.keys_in(Tree::Keys));
        }
        let ticket = {
            let mut f = self.flushes.lock().unwrap_or_else(|p| p.into_inner());
            f.applied += 1;
            f.applied
        };
        if durable {
            self.wait_durable(ticket)?;
        }
        Ok(ticket)
    }

    /// Waits until every change up to `ticket` is on disk, flushing if no flush that
    /// covers it is running.
    pub(super) fn wait_durable(&self, ticket: u64) -> Result<()> {
        let mut f = self.flushes.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if f.durable >= ticket {
                return Ok(());
            }
            if !f.flushing {
                f.flushing = true;
                let target = f.applied;
                drop(f);
                let result = self.store.flush();
                f = self.flushes.lock().unwrap_or_else(|p| p.into_inner());
                f.flushing = false;
                if result.is_ok() {
                    f.durable = f.durable.max(target);
                }
                self.flushed.notify_all();
                result?;
                continue;
            }
            f = self.flushed.wait(f).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Defers flushing: changes are still atomic, but become durable only at the next
    /// [`Vault::flush`] (or when the vault closes). For bulk
    /// loads and benchmarks; commands never set it.
    pub fn set_deferred_flush(&self, deferred: bool) {
        self.deferred_flush.store(deferred, Ordering::Relaxed);
    }

    /// Makes every change so far durable.
    pub fn flush(&self) -> Result<()> {
        let ticket = self
            .flushes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .applied;
        self.wait_durable(ticket)
    }

    /// Commits a batch that revokes the user whose index hash is `user_db_key`, with the
    /// updated revocation ledger in the same atomic batch.
    pub(super) fn commit_revocation(
        &self,
        mut head: std::sync::MutexGuard<'_, AuditHead>,
        mut batch: Batch,
        user_db_key: &[u8],
        event: AuditEvent,
    ) -> Result<()> {
        let ledger = self.trusted_ledger()?.with(&self.keyring, user_db_key);
        ledger.stage(&self.keyring, &mut batch)?;
        let epoch = self.stage_next_epoch(&mut batch, None, &ledger, head.seq())?;
        let ticket = self.commit_with(&mut head, batch, event, false)?;
        *self.revocations.lock().unwrap_or_else(|p| p.into_inner()) = Ok(ledger);
        self.epoch.store(epoch, Ordering::Relaxed);
        drop(head);
        if self.deferred_flush.load(Ordering::Relaxed) {
            return Ok(());
        }
        self.wait_durable(ticket)?;
        epoch::remember(&self.id_hex(), epoch);
        Ok(())
    }

    /// Stages the epoch record after this one (epoch `to`, or one more) in `batch`, with
    /// the revocation `ledger` the batch leaves and the audit log's length before the
    /// batch, and returns the new epoch. Call under the writer lock.
    pub(super) fn stage_next_epoch(
        &self,
        batch: &mut Batch,
        to: Option<u64>,
        ledger: &ledger::Ledger,
        audit_seq: u64,
    ) -> Result<u64> {
        let next = to.unwrap_or_else(|| self.epoch().saturating_add(1));
        epoch::stage(
            &self.keyring,
            batch,
            &epoch::EpochRecord {
                epoch: next,
                ledger: *ledger,
                audit_floor: audit_seq,
            },
        )?;
        Ok(next)
    }

    /// Commits a change that removes something (a key, a version, the old wrapping of
    /// the master key, the dead records a compaction drops): raises the epoch (to `to`,
    /// or by one) in the same atomic batch, waits until it is durable, then remembers
    /// the new epoch on this machine (see [`epoch`]).
    pub(super) fn commit_raising_epoch(
        &self,
        mut head: std::sync::MutexGuard<'_, AuditHead>,
        mut batch: Batch,
        event: AuditEvent,
        to: Option<u64>,
    ) -> Result<()> {
        // A vault whose revocations do not match their ledger takes no change (restore
        // it from a backup).
        let ledger = self.trusted_ledger()?;
        let epoch = self.stage_next_epoch(&mut batch, to, &ledger, head.seq())?;
        let ticket = self.commit_with(&mut head, batch, event, false)?;
        self.epoch.store(epoch, Ordering::Relaxed);
        drop(head);
        self.wait_durable(ticket)?;
        epoch::remember(&self.id_hex(), epoch);
        Ok(())
    }

    /// Appends the audit entry of a read (an export or other use of a secret). It is
    /// atomic but not flushed at once: the next change, closing the vault, or the agent's
    /// flush each second makes it durable. Reads stay fast, and a crash can lose at most
    /// the last second of read entries, never a change.
    pub(super) fn record_use(&self, event: AuditEvent) -> Result<()> {
        if self.is_read_only() {
            // Nothing can be written; the command line says that uses go unaudited.
            return Ok(());
        }
        let mut head = self.lock_writer();
        self.commit_with(&mut head, Batch::new(), event, false)
            .map(|_| ())
    }

    /// Appends an audit entry on its own, durably.
    pub(super) fn record(&self, event: AuditEvent) -> Result<()> {
        let head = self.lock_writer();
        self.commit(head, Batch::new(), event)
    }
}
