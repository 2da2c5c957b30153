//! Faults the agent's integration tests make it hit on purpose, where nothing real
//! triggers them on demand: a panic while serving a request, and a compaction that
//! loses the vault (its database could not be reopened after the swap).
//!
//! Only debug builds look at the environment variable [`ENV`]: in release builds
//! every function here is empty and the variable is ignored, so no release binary
//! can be made to fail this way.

/// The environment variable naming the fault, read once by the agent at start-up (a
/// test sets it on `unlock`, whose environment the agent inherits). Debug builds only.
pub const ENV: &str = "KEYVAULT_AGENT_TEST_FAULT";

/// A fault to inject.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Fault {
    /// None.
    #[default]
    None,
    /// Panic inside any vault request naming this user.
    PanicForUser(String),
    /// A compaction asked for by a client loses the vault, as a failed reopen would.
    LoseVaultOnCompact,
}

impl Fault {
    /// The fault the environment asks for (always [`Fault::None`] in release builds).
    pub fn from_env() -> Fault {
        #[cfg(debug_assertions)]
        {
            let Some(value) = std::env::var_os(ENV) else {
                return Fault::None;
            };
            let value = value.to_string_lossy();
            if let Some(user) = value.strip_prefix("panic-for-user:") {
                return Fault::PanicForUser(user.to_string());
            }
            if value == "lose-vault-on-compact" {
                return Fault::LoseVaultOnCompact;
            }
        }
        Fault::None
    }

    /// Panics if this is [`Fault::PanicForUser`] naming `user` (debug builds only).
    pub fn panic_for(&self, user: Option<&str>) {
        #[cfg(debug_assertions)]
        if let (Fault::PanicForUser(u), Some(user)) = (self, user)
            && u == user
        {
            panic!("test fault: a panic while serving a request");
        }
        #[cfg(not(debug_assertions))]
        let _ = (self, user);
    }

    /// Whether a compaction should lose the vault (debug builds only).
    pub fn loses_vault(&self) -> bool {
        cfg!(debug_assertions) && *self == Fault::LoseVaultOnCompact
    }
}
