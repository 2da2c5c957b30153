//! `revoke`, `is-revoked` and `revoked`: taking a user's keys away for good, and asking
//! about it.

use keyvault::Error;
use keyvault::ops::{Operations, Revoked};
use keyvault::vault;

use super::args::Cli;
use super::checks::check_lookup;
use super::output::Out;
use super::report::{RevocationAnswer, RevokeReceipt, RevokedList};
use super::session::Session;
use super::{CmdResult, SUCCESS};

/// `revoke USER [--reason TEXT] [--purge]`.
pub(crate) fn revoke(
    out: &mut Out,
    cli: &Cli,
    user: &str,
    reason: Option<&str>,
    purge: bool,
) -> CmdResult {
    check_lookup(user, None)?;
    if let Some(reason) = reason {
        vault::validate::reason(reason)?;
    }
    let Revoked {
        outcome,
        compacted,
        purge_failed,
    } = Session::new(cli)?.revoke(user, reason, purge)?;
    out.emit(&RevokeReceipt {
        outcome,
        compacted,
        purge_failed: purge_failed.clone(),
    })?;
    if let Some(error) = purge_failed {
        out.flush()?;
        return Err(Error::PurgeFailed(error).into());
    }
    Ok(SUCCESS)
}

/// `is-revoked USER`: exit 0 if the user is revoked, 1 if not.
pub(crate) fn is_revoked(out: &mut Out, cli: &Cli, user: &str) -> CmdResult {
    check_lookup(user, None)?;
    let revocation = Session::new(cli)?.revocation(user)?;
    let revoked = revocation.is_some();
    out.emit(&RevocationAnswer {
        revocation,
        revoked,
        user: user.to_string(),
    })?;
    Ok(if revoked { 0 } else { 1 })
}

/// `revoked`.
pub(crate) fn revoked(out: &mut Out, cli: &Cli) -> CmdResult {
    let revoked = Session::new(cli)?.revoked()?;
    out.emit(&RevokedList { revoked })?;
    Ok(SUCCESS)
}
