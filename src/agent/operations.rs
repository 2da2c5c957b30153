//! The agent client as a place to run vault operations: the same typed calls as on a
//! [`crate::Vault`] this process opened (see [`Operations`]).

use crate::error::Result;
use crate::ops::{Operations, Request, Response};

use super::client::AgentClient;

/// Each request goes to the agent; an agent that locked itself without carrying it out
/// answers [`crate::Error::AgentStopped`] (use [`AgentClient::op_or_back`] to get the
/// request back and carry it out without the agent).
impl Operations for AgentClient {
    fn execute(&mut self, request: Request) -> Result<Response> {
        self.op(request)
    }
}
