//! The OpenSSH agent protocol (draft-miller-ssh-agent): the few messages keyvault's
//! SSH socket answers, parsed from and encoded to their wire form.
//!
//! A message is a frame: a 4-byte big-endian length, then that many bytes, the first
//! of which is the message type. Strings are a 4-byte length and their bytes (RFC
//! 4251). Parsing never panics and never allocates more than the frame holds: every
//! length is checked against what is left before anything is copied.

/// The longest message accepted (OpenSSH's agent uses the same bound).
pub const MAX_MESSAGE: usize = 256 * 1024;

/// `SSH_AGENT_FAILURE`.
pub const FAILURE: u8 = 5;
/// `SSH_AGENT_SUCCESS`.
pub const SUCCESS: u8 = 6;
/// `SSH_AGENTC_REQUEST_IDENTITIES`.
pub const REQUEST_IDENTITIES: u8 = 11;
/// `SSH_AGENT_IDENTITIES_ANSWER`.
pub const IDENTITIES_ANSWER: u8 = 12;
/// `SSH_AGENTC_SIGN_REQUEST`.
pub const SIGN_REQUEST: u8 = 13;
/// `SSH_AGENT_SIGN_RESPONSE`.
pub const SIGN_RESPONSE: u8 = 14;
/// `SSH_AGENTC_EXTENSION`.
pub const EXTENSION: u8 = 27;

/// The sign-request flag asking for an `rsa-sha2-256` signature.
pub const RSA_SHA2_256: u32 = 2;
/// The sign-request flag asking for an `rsa-sha2-512` signature.
pub const RSA_SHA2_512: u32 = 4;

/// The extension by which `ssh` tells the agent which host a connection is for.
pub const SESSION_BIND: &str = "session-bind@openssh.com";

/// Requests that change the agent's keys or lock it: always refused, as keyvault's keys
/// come from the vault only (add, remove, remove all, smartcard add and remove, lock,
/// unlock, constrained add, constrained smartcard add).
const REFUSED: [u8; 9] = [17, 18, 19, 20, 21, 22, 23, 25, 26];

/// A request from an SSH client.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// List the keys.
    RequestIdentities,
    /// Sign `data` with the key whose public blob is `key_blob`.
    Sign {
        /// The public key, in the SSH wire encoding.
        key_blob: Vec<u8>,
        /// What to sign (a session hash, or an `sshsig` blob of `ssh-keygen -Y`).
        data: Vec<u8>,
        /// [`RSA_SHA2_256`], [`RSA_SHA2_512`] or none.
        flags: u32,
    },
    /// A protocol extension: its name and the bytes after it.
    Extension {
        /// The extension's name.
        name: String,
        /// Its contents.
        contents: Vec<u8>,
    },
    /// A request that changes the agent's keys or locks it (its type).
    Refused(u8),
    /// A message type keyvault does not know.
    Unknown(u8),
}

/// A message body that does not parse.
#[derive(Debug, PartialEq, Eq)]
pub struct Malformed;

/// Reads RFC 4251 values from a byte slice.
pub struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// A reader over `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader(bytes)
    }

    /// Whether everything was read.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if n > self.0.len() {
            return Err(Malformed);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    /// One byte.
    pub fn byte(&mut self) -> Result<u8, Malformed> {
        Ok(self.take(1)?[0])
    }

    /// A `uint32`.
    pub fn u32(&mut self) -> Result<u32, Malformed> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A `string`.
    pub fn string(&mut self) -> Result<&'a [u8], Malformed> {
        let n = usize::try_from(self.u32()?).map_err(|_| Malformed)?;
        self.take(n)
    }

    /// What is left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.0)
    }
}

/// Appends an RFC 4251 `string`.
pub fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    // Messages are bounded by MAX_MESSAGE, far below 4 GiB.
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// Parses a message body (the bytes after the length).
pub fn parse_request(body: &[u8]) -> Result<Request, Malformed> {
    let mut r = Reader::new(body);
    let kind = r.byte()?;
    let request = match kind {
        REQUEST_IDENTITIES => Request::RequestIdentities,
        SIGN_REQUEST => {
            let key_blob = r.string()?.to_vec();
            let data = r.string()?.to_vec();
            let flags = r.u32()?;
            Request::Sign {
                key_blob,
                data,
                flags,
            }
        }
        EXTENSION => {
            let name = std::str::from_utf8(r.string()?).map_err(|_| Malformed)?;
            return Ok(Request::Extension {
                name: name.to_string(),
                contents: r.rest().to_vec(),
            });
        }
        k if REFUSED.contains(&k) => return Ok(Request::Refused(k)),
        k => return Ok(Request::Unknown(k)),
    };
    if !r.is_empty() {
        return Err(Malformed);
    }
    Ok(request)
}

/// What a `session-bind@openssh.com` extension says: the host key of the server the
/// connection is for, the session it binds, and the host's signature over that session.
#[derive(Debug, PartialEq, Eq)]
pub struct SessionBind {
    /// The server's host key (SSH wire encoding).
    pub host_key: Vec<u8>,
    /// The session identifier.
    pub session_id: Vec<u8>,
    /// The host's signature over the session identifier.
    pub signature: Vec<u8>,
    /// Whether the connection is forwarded onwards from that host.
    pub forwarding: bool,
}

/// Parses the contents of a `session-bind@openssh.com` extension.
pub fn parse_session_bind(contents: &[u8]) -> Result<SessionBind, Malformed> {
    let mut r = Reader::new(contents);
    let bind = SessionBind {
        host_key: r.string()?.to_vec(),
        session_id: r.string()?.to_vec(),
        signature: r.string()?.to_vec(),
        forwarding: r.byte()? != 0,
    };
    if !r.is_empty() {
        return Err(Malformed);
    }
    Ok(bind)
}

/// The body of an identities answer: each key's public blob and comment.
pub fn identities_answer<'a>(keys: impl ExactSizeIterator<Item = (&'a [u8], &'a str)>) -> Vec<u8> {
    let mut out = vec![IDENTITIES_ANSWER];
    out.extend_from_slice(&(keys.len() as u32).to_be_bytes());
    for (blob, comment) in keys {
        put_string(&mut out, blob);
        put_string(&mut out, comment.as_bytes());
    }
    out
}

/// An SSH signature blob: the algorithm's name and the raw signature.
pub fn signature_blob(algorithm: &str, signature: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(signature.len() + algorithm.len() + 8);
    put_string(&mut out, algorithm.as_bytes());
    put_string(&mut out, signature);
    out
}

/// The body of a sign response.
pub fn sign_response(signature_blob: &[u8]) -> Vec<u8> {
    let mut out = vec![SIGN_RESPONSE];
    put_string(&mut out, signature_blob);
    out
}

/// A body made of its type alone (success, failure).
pub fn status(kind: u8) -> Vec<u8> {
    vec![kind]
}

/// `body` framed: its length, then itself.
pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 4);
    put_string(&mut out, body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse() {
        assert_eq!(parse_request(&[11]), Ok(Request::RequestIdentities));
        let mut sign = vec![13];
        put_string(&mut sign, b"blob");
        put_string(&mut sign, b"data");
        sign.extend_from_slice(&4u32.to_be_bytes());
        assert_eq!(
            parse_request(&sign),
            Ok(Request::Sign {
                key_blob: b"blob".to_vec(),
                data: b"data".to_vec(),
                flags: 4
            })
        );
        assert_eq!(parse_request(&[17, 1, 2]), Ok(Request::Refused(17)));
        assert_eq!(parse_request(&[99]), Ok(Request::Unknown(99)));
    }

    #[test]
    fn malformed_requests_are_refused_not_trusted() {
        assert_eq!(parse_request(&[]), Err(Malformed));
        assert_eq!(parse_request(&[11, 0]), Err(Malformed));
        // A string longer than what is left.
        assert_eq!(parse_request(&[13, 0xff, 0xff, 0xff, 0xff]), Err(Malformed));
        let mut sign = vec![13];
        put_string(&mut sign, b"blob");
        assert_eq!(parse_request(&sign), Err(Malformed));
        assert_eq!(parse_request(&[27, 0, 0, 0, 1, 0xff]), Err(Malformed));
    }

    #[test]
    fn session_bind_parses() {
        let mut c = Vec::new();
        put_string(&mut c, b"hostkey");
        put_string(&mut c, b"sid");
        put_string(&mut c, b"sig");
        c.push(0);
        let b = parse_session_bind(&c).unwrap();
        assert_eq!(b.host_key, b"hostkey");
        assert!(!b.forwarding);
        c.push(0);
        assert_eq!(parse_session_bind(&c), Err(Malformed));
    }
}
