//! Process hardening for the agent: no core dumps, no ptrace by other processes of the
//! same user, no file descriptors inherited from whoever ran `unlock`, the key memory
//! locked in RAM where the OS allows, and freed memory handed back after a compaction.
//!
//! This is the one module allowed `unsafe`: `mlock` takes a raw address range, closing
//! an inherited descriptor means naming it by number, and glibc's `malloc_trim` is a
//! foreign function.

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

/// Closes every file descriptor but 0, 1 and 2 (the pipes from `unlock` and
/// `/dev/null`): whatever the caller of `unlock` left open without close-on-exec (a
/// pipe a shell waits on, a lock file) must not stay open for the agent's lifetime.
///
/// Call it first thing in the agent, while no other thread opens files.
pub fn close_inherited_fds() {
    let fds: Vec<i32> = match std::fs::read_dir("/proc/self/fd") {
        Ok(listing) => listing
            .flatten()
            .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
            .filter(|fd| *fd > 2)
            .collect(),
        Err(_) => return,
    };
    for fd in fds {
        // SAFETY: the descriptors above 2 that this process has at its start are the
        // ones it inherited; nothing in it owns or uses them (no `File` or socket of
        // ours refers to them: the agent has opened nothing yet), and no other thread
        // opens files while this runs, so no number is reused before it is closed. The
        // listing's own descriptor was listed too and is closed already: `fcntl` tells
        // (EBADF), and it is skipped rather than closed twice.
        unsafe {
            let borrowed = std::os::fd::BorrowedFd::borrow_raw(fd);
            if rustix::io::fcntl_getfd(borrowed).is_ok() {
                rustix::io::close(fd);
            }
        }
    }
}

/// Points stdin and stdout at `/dev/null` once the agent has read its key and
/// acknowledged: it keeps no end of `unlock`'s pipes open.
pub fn detach_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        let _ = rustix::stdio::dup2_stdin(&null);
        let _ = rustix::stdio::dup2_stdout(&null);
    }
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
