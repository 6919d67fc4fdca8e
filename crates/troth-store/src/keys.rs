//! API keys: scoped secrets, stored only as their SHA-256 hash.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What a key may do. `admin` includes the other two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Ingest,
    Read,
    /// A contact-centre agent's own key: reads what `read` reads, and every read
    /// of a customer's data is recorded under it; no admin.
    Agent,
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Read => "read",
            Scope::Agent => "agent",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        match s {
            "ingest" => Some(Scope::Ingest),
            "read" => Some(Scope::Read),
            "agent" => Some(Scope::Agent),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }
}

/// A key as listed: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKey {
    pub uid: String,
    pub name: Option<String>,
    pub scopes: Vec<Scope>,
    pub created_at: String,
}

impl ApiKey {
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.contains(&Scope::Admin)
            || self.scopes.contains(&scope)
            || (scope == Scope::Read && self.scopes.contains(&Scope::Agent))
    }
}

#[derive(Debug, Clone)]
pub struct NewKey {
    pub name: Option<String>,
    pub scopes: Vec<Scope>,
}

/// A fresh secret: `troth_` and 256 random bits in hex.
pub(crate) fn new_secret() -> Result<String, getrandom::Error> {
    Ok(format!("troth_{}", random_hex::<32>()?))
}

pub(crate) fn new_uid() -> Result<String, getrandom::Error> {
    Ok(format!("key_{}", random_hex::<8>()?))
}

fn random_hex<const N: usize>() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes)?;
    Ok(hex(&bytes))
}

pub(crate) fn hash_secret(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
