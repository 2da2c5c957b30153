//! The report of `demo`.

use std::fmt::{self, Display, Formatter};

use serde::Serialize;

use super::Report;

/// What `demo` did.
#[derive(Serialize)]
pub(crate) struct Demo {
    /// What happened, in detail.
    pub details: Vec<String>,
    /// What the prototype printed, as this run printed it.
    pub prototype_output: Vec<String>,
    /// Whether the temporary vault was removed.
    pub removed: bool,
    /// The temporary vault.
    pub vault: String,
}

impl Report for Demo {}

impl Display for Demo {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "keyvault demo: the prototype's scenario on a temporary vault at {}\n",
            self.vault
        )?;
        for l in &self.prototype_output {
            writeln!(f, "{l}")?;
        }
        writeln!(f, "\nWhat happened:")?;
        for l in &self.details {
            writeln!(f, "  {l}")?;
        }
        f.write_str(if self.removed {
            "\nThe temporary vault was removed.\n"
        } else {
            "\nThe temporary vault could not be removed.\n"
        })
    }
}
