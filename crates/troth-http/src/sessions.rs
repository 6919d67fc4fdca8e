//! Sign-in sessions for the pages. `/login` checks the key and starts a session:
//! a random id in an `HttpOnly`, `SameSite=Strict` cookie (and `Secure` when the
//! request came over HTTPS, as a proxy in front says with `X-Forwarded-Proto`); the
//! key itself never leaves the server. Sessions live in memory: they end at sign-out,
//! after [`SESSION_LIFETIME`], when their key is revoked, or when troth restarts.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a session lasts from sign-in.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// The most sessions kept at once; the oldest make way.
const MAX_SESSIONS: usize = 10_000;

/// The session cookie's name.
pub const COOKIE: &str = "troth_session";

/// Who a session signed in as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Master,
    /// An API key, by its uid: checked again on every request, so revoking the key
    /// ends its sessions.
    Key(String),
}

#[derive(Default)]
pub struct Sessions {
    open: Mutex<HashMap<String, (Principal, Instant)>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Session ids are credentials: never printed.
        f.debug_struct("Sessions").finish_non_exhaustive()
    }
}

impl Sessions {
    /// Starts a session; returns its id for the cookie.
    pub fn start(&self, principal: Principal) -> Result<String, getrandom::Error> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)?;
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let now = Instant::now();
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        open.retain(|_, (_, expires)| *expires > now);
        if open.len() >= MAX_SESSIONS
            && let Some(oldest) = open
                .iter()
                .min_by_key(|(_, (_, expires))| *expires)
                .map(|(id, _)| id.clone())
        {
            open.remove(&oldest);
        }
        open.insert(id.clone(), (principal, now + SESSION_LIFETIME));
        Ok(id)
    }

    /// The session's principal, unless it has ended.
    pub fn get(&self, id: &str) -> Option<Principal> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        match open.get(id) {
            Some((principal, expires)) if *expires > Instant::now() => Some(principal.clone()),
            Some(_) => {
                open.remove(id);
                None
            }
            None => None,
        }
    }

    pub fn end(&self, id: &str) {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }
}

tokio::task_local! {
    /// Whether the page being rendered was asked for in a session, so its frame
    /// offers to sign out.
    pub static SIGNED_IN: bool;
}

/// Whether the page being rendered belongs to a session.
pub fn signed_in() -> bool {
    SIGNED_IN.try_with(|s| *s).unwrap_or(false)
}
