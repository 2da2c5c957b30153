//! Process hardening for the agent: no core dumps, no ptrace by other processes of the
//! same user, the key memory locked in RAM where the OS allows, and freed memory handed
//! back after a compaction.
//!
//! This is the one module allowed `unsafe`: `mlock` takes a raw address range, and
//! glibc's `malloc_trim` is a foreign function.

#![allow(unsafe_code)]

use rustix::process::{DumpableBehavior, Resource, Rlimit, set_dumpable_behavior, setrlimit};

/// Disables core dumps (RLIMIT_CORE = 0) and makes the process non-dumpable
/// (PR_SET_DUMPABLE 0), which also stops other processes of the same user from
/// attaching with ptrace or reading its memory through /proc.
pub fn disable_core_dumps_and_ptrace() -> std::io::Result<()> {
    setrlimit(
        Resource::Core,
        Rlimit {
            current: Some(0),
            maximum: Some(0),
        },
    )?;
    set_dumpable_behavior(DumpableBehavior::NotDumpable)?;
    Ok(())
}

/// Locks the pages holding `len` bytes at `addr` in RAM so they never reach swap.
pub fn lock_memory(addr: usize, len: usize) -> std::io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    // SAFETY: mlock only changes the paging attributes of the pages that contain the
    // range; it neither reads nor writes the memory. The range is a live object of the
    // caller (the vault's keyring), which outlives the agent's use of it; the kernel
    // rounds it to page boundaries.
    unsafe { rustix::mm::mlock(addr as *mut std::ffi::c_void, len) }?;
    Ok(())
}

/// Hands the memory the allocator keeps but no longer uses back to the OS (glibc's
/// `malloc_trim`), after work that allocated much and freed it (a compaction copies
/// every record): otherwise the agent would hold its peak for the rest of its life.
/// Does nothing on other C libraries.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: malloc_trim takes no pointer and only returns free heap pages to the
        // OS; glibc allows it at any time, from any thread.
        unsafe {
            malloc_trim(0);
        }
    }
}

/// Whether this process is non-dumpable (for tests and `status`).
pub fn is_dumpable() -> bool {
    rustix::process::dumpable_behavior()
        .map(|b| b != DumpableBehavior::NotDumpable)
        .unwrap_or(true)
}
