//! Who may call: principals from the auth file, how a caller proves to be one (a bearer token or
//! a client certificate), and what a principal may touch (scopes, tenancy, `acts_as`).
//!
//! The file (`auth_file`, TOML) lists principals:
//!
//! ```toml
//! [[principal]]
//! name = "image-backend"
//! token_sha256 = "9f86d0…"          # sha256 of the bearer token, hex
//! scopes = ["credit"]               # any of credit, admin, watch, verify
//! workspaces = ["team-a"]           # optional: only these workspaces
//! accounts = ["acct-1"]             # optional: only these accounts
//! acts_as = "owner-1"               # optional: the admin actor this identity is
//! certificate_subject = "CN=…"      # optional: the mTLS identity
//! ```
//!
//! With no file every caller is [`Caller::open`]: unrestricted (the server then listens on
//! loopback only, unless told `insecure_no_auth`).

mod layer;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

pub use layer::{Audit, AuditEntry, AuthLayer};

/// What a principal may call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// CreditService: the hot path.
    Credit,
    /// AdminService mutations and reads.
    Admin,
    /// WatchNotifications.
    Watch,
    /// VerifyLedger and the journal export.
    Verify,
}

impl Scope {
    /// The name used in the auth file and in error details.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Credit => "credit",
            Scope::Admin => "admin",
            Scope::Watch => "watch",
            Scope::Verify => "verify",
        }
    }

    /// The scope a gRPC method needs; `None` for the open services (health, reflection).
    pub fn of_method(path: &str) -> Option<Scope> {
        let path = path.trim_start_matches('/');
        let (service, method) = path.split_once('/').unwrap_or((path, ""));
        match (service, method) {
            ("grpc.health.v1.Health", _)
            | ("grpc.reflection.v1.ServerReflection", _)
            | ("grpc.reflection.v1alpha.ServerReflection", _) => None,
            ("creditpool.v1.CreditService", _) => Some(Scope::Credit),
            ("creditpool.v1.AdminService", "WatchNotifications") => Some(Scope::Watch),
            ("creditpool.v1.AdminService", "VerifyLedger" | "ExportJournal") => Some(Scope::Verify),
            _ => Some(Scope::Admin),
        }
    }
}

/// Which workspaces and accounts a principal may touch; `None` lists mean no restriction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tenancy {
    /// Only these workspaces (any member there).
    pub workspaces: Option<HashSet<String>>,
    /// Only these accounts (personal context and account calls).
    pub accounts: Option<HashSet<String>>,
}

impl Tenancy {
    /// Whether the principal is confined at all.
    pub fn is_confined(&self) -> bool {
        self.workspaces.is_some() || self.accounts.is_some()
    }

    /// Whether a workspace call in `workspace_id` is allowed.
    pub fn allows_workspace(&self, workspace_id: &str) -> bool {
        !self.is_confined() || self.workspaces.as_ref().is_some_and(|listed| listed.contains(workspace_id))
    }

    /// Whether a call on the account `account_id` (outside any workspace) is allowed.
    pub fn allows_account(&self, account_id: &str) -> bool {
        !self.is_confined() || self.accounts.as_ref().is_some_and(|listed| listed.contains(account_id))
    }
}

/// An authenticated caller, put into each request's extensions by [`AuthLayer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The principal's name (`anonymous` when no principals are configured).
    pub name: String,
    scopes: HashSet<Scope>,
    /// What it may touch.
    pub tenancy: Tenancy,
    /// The admin actor this caller is, if its identity fixes one.
    pub acts_as: Option<String>,
}

impl Caller {
    /// The caller of a server with no principals: every scope, no tenancy.
    pub fn open() -> Caller {
        Caller {
            name: "anonymous".to_owned(),
            scopes: [Scope::Credit, Scope::Admin, Scope::Watch, Scope::Verify].into(),
            tenancy: Tenancy::default(),
            acts_as: None,
        }
    }

    /// Whether it holds `scope`.
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

/// One `[[principal]]` of the file, as written.
#[derive(Debug, Deserialize)]
struct PrincipalEntry {
    name: String,
    token_sha256: Option<String>,
    certificate_subject: Option<String>,
    scopes: Vec<Scope>,
    workspaces: Option<Vec<String>>,
    accounts: Option<Vec<String>>,
    acts_as: Option<String>,
}

#[derive(Debug, Deserialize)]
struct AuthFile {
    #[serde(default)]
    principal: Vec<PrincipalEntry>,
}

/// A principal ready to match callers.
#[derive(Debug)]
struct Principal {
    caller: Caller,
    token_sha256: Option<[u8; 32]>,
    certificate_subject: Option<String>,
}

/// The configured principals (empty: no authentication).
#[derive(Debug, Default)]
pub struct Principals {
    principals: Vec<Principal>,
}

/// Why the auth file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthFileError {
    /// It cannot be read.
    #[error("cannot read the auth file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// It is not valid TOML of the expected shape.
    #[error("the auth file {path} is not valid")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: toml::de::Error,
    },
    /// An entry breaks a rule.
    #[error("the auth file {path}: principal {index} ({name}): {problem}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based position of the entry.
        index: usize,
        /// Its name as written.
        name: String,
        /// What is wrong.
        problem: String,
    },
}

impl Principals {
    /// Reads and checks the auth file.
    pub fn load(path: &Path) -> Result<Principals, AuthFileError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| AuthFileError::Read { path: path.to_owned(), source })?;
        let file: AuthFile =
            toml::from_str(&text).map_err(|source| AuthFileError::Parse { path: path.to_owned(), source })?;
        let mut names = HashSet::new();
        let mut principals = Vec::new();
        for (position, entry) in file.principal.into_iter().enumerate() {
            let invalid = |problem: &str| AuthFileError::Invalid {
                path: path.to_owned(),
                index: position + 1,
                name: entry.name.clone(),
                problem: problem.to_owned(),
            };
            if entry.name.trim().is_empty() {
                return Err(invalid("name must not be empty"));
            }
            if !names.insert(entry.name.clone()) {
                return Err(invalid("another principal has this name"));
            }
            if entry.token_sha256.is_none() && entry.certificate_subject.is_none() {
                return Err(invalid("needs token_sha256 or certificate_subject"));
            }
            if entry.scopes.is_empty() {
                return Err(invalid("scopes must name at least one of credit, admin, watch, verify"));
            }
            let token_sha256 = entry
                .token_sha256
                .as_deref()
                .map(|hex| parse_sha256(hex).ok_or_else(|| invalid("token_sha256 must be 64 hexadecimal digits")))
                .transpose()?;
            let ids = |list: &Option<Vec<String>>, what: &str| -> Result<Option<HashSet<String>>, AuthFileError> {
                match list {
                    None => Ok(None),
                    Some(ids) => {
                        if let Some(bad) = ids.iter().find(|id| crate::domain::AccountId::parse((*id).clone()).is_err())
                        {
                            return Err(invalid(&format!("{what} lists an ill-formed id {bad:?}")));
                        }
                        Ok(Some(ids.iter().cloned().collect()))
                    }
                }
            };
            let tenancy = Tenancy {
                workspaces: ids(&entry.workspaces, "workspaces")?,
                accounts: ids(&entry.accounts, "accounts")?,
            };
            principals.push(Principal {
                caller: Caller {
                    name: entry.name.clone(),
                    scopes: entry.scopes.iter().copied().collect(),
                    tenancy,
                    acts_as: entry.acts_as.clone(),
                },
                token_sha256,
                certificate_subject: entry.certificate_subject.clone(),
            });
        }
        Ok(Principals { principals })
    }

    /// Whether any principal is configured (else authentication is off).
    pub fn is_empty(&self) -> bool {
        self.principals.is_empty()
    }

    /// The principal whose token is `token`. Every hash is compared, in constant time each.
    fn by_token(&self, token: &str) -> Option<&Caller> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for principal in &self.principals {
            if let Some(expected) = &principal.token_sha256
                && bool::from(expected.ct_eq(&digest))
            {
                found = Some(&principal.caller);
            }
        }
        found
    }

    /// The principal one of whose names `identities` carries (see [`certificate_identities`]).
    fn by_certificate(&self, identities: &[String]) -> Option<&Caller> {
        self.principals.iter().find_map(|principal| {
            let subject = principal.certificate_subject.as_deref()?;
            identities.iter().any(|identity| identity == subject).then_some(&principal.caller)
        })
    }
}

/// 64 hex digits → 32 bytes.
fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 {
        return None;
    }
    let mut bytes = [0_u8; 32];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(bytes)
}

/// The names a client certificate may be matched by: its whole subject (`CN=a, O=b`), its common
/// name as `CN=a`, and each DNS, URI and e-mail subject alternative name.
pub fn certificate_identities(der: &[u8]) -> Vec<String> {
    let Ok((_, certificate)) = x509_parser::parse_x509_certificate(der) else { return Vec::new() };
    let subject = certificate.subject();
    let mut identities = vec![subject.to_string()];
    identities.extend(subject.iter_common_name().filter_map(|cn| cn.as_str().ok()).map(|cn| format!("CN={cn}")));
    if let Ok(Some(names)) = certificate.subject_alternative_name() {
        for name in &names.value.general_names {
            match name {
                x509_parser::extensions::GeneralName::DNSName(n)
                | x509_parser::extensions::GeneralName::URI(n)
                | x509_parser::extensions::GeneralName::RFC822Name(n) => identities.push((*n).to_owned()),
                _ => {}
            }
        }
    }
    identities
}

/// The principals in force, swapped whole when the file is re-read.
#[derive(Debug, Clone)]
pub struct Authenticator {
    principals: Arc<ArcSwap<Principals>>,
    file: Option<PathBuf>,
}

impl Authenticator {
    /// Loads `file`, or configures no principals without one.
    pub fn load(file: Option<&Path>) -> Result<Authenticator, AuthFileError> {
        let principals = match file {
            Some(path) => Principals::load(path)?,
            None => Principals::default(),
        };
        Ok(Authenticator { principals: Arc::new(ArcSwap::from_pointee(principals)), file: file.map(Path::to_owned) })
    }

    /// Whether callers must authenticate.
    pub fn is_enabled(&self) -> bool {
        !self.principals.load().is_empty()
    }

    /// Re-reads the file (SIGHUP): a bad file keeps the principals in force and says why.
    pub fn reload(&self) {
        let Some(path) = &self.file else { return };
        match Principals::load(path) {
            Ok(principals) => {
                let count = principals.principals.len();
                self.principals.store(Arc::new(principals));
                tracing::info!(principals = count, file = %path.display(), "auth file reloaded");
            }
            Err(error) => tracing::error!(
                error = %crate::error_chain(&error),
                "auth file not reloaded; the principals in force stay"
            ),
        }
    }

    /// Who presents `token` (a bearer token) or, without one, a certificate with `identities`.
    pub fn authenticate(&self, token: Option<&str>, identities: &[String]) -> Result<Caller, Unauthenticated> {
        let principals = self.principals.load();
        if principals.is_empty() {
            return Ok(Caller::open());
        }
        match token {
            Some(token) => principals.by_token(token).cloned().ok_or(Unauthenticated::Unknown),
            None if !identities.is_empty() => {
                principals.by_certificate(identities).cloned().ok_or(Unauthenticated::Unknown)
            }
            None => Err(Unauthenticated::Missing),
        }
    }
}

/// Why a caller is not authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unauthenticated {
    /// No bearer token and no client certificate.
    Missing,
    /// Credentials that match no principal.
    Unknown,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> (Result<Principals, AuthFileError>, PathBuf) {
        let path =
            std::env::temp_dir().join(format!("creditpool-auth-unit-{}-{}.toml", std::process::id(), text.len()));
        std::fs::write(&path, text).unwrap();
        let loaded = Principals::load(&path);
        let _ = std::fs::remove_file(&path);
        (loaded, path)
    }

    const TEST_SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"; // sha256("test")

    #[test]
    fn a_token_matches_its_principal_by_hash_and_an_unknown_one_matches_none() {
        let (loaded, _) = file(&format!(
            "[[principal]]\nname = \"backend\"\ntoken_sha256 = \"{TEST_SHA}\"\nscopes = [\"credit\"]\nextra = 1\n"
        ));
        let principals = loaded.unwrap();
        assert_eq!(principals.by_token("test").map(|c| c.name.as_str()), Some("backend"));
        assert!(principals.by_token("tesT").is_none());
        assert!(principals.by_token("test").unwrap().has(Scope::Credit));
        assert!(!principals.by_token("test").unwrap().has(Scope::Admin));
    }

    #[test]
    fn bad_entries_are_refused_naming_the_principal_and_the_problem() {
        for (text, problem) in [
            ("[[principal]]\nname = \"a\"\nscopes = [\"credit\"]\n", "needs token_sha256"),
            ("[[principal]]\nname = \"a\"\ntoken_sha256 = \"abc\"\nscopes = [\"credit\"]\n", "64 hexadecimal"),
            (&format!("[[principal]]\nname = \"a\"\ntoken_sha256 = \"{TEST_SHA}\"\nscopes = []\n"), "scopes"),
            (
                &format!(
                    "[[principal]]\nname = \"a\"\ntoken_sha256 = \"{TEST_SHA}\"\nscopes = [\"credit\"]\n\
                     [[principal]]\nname = \"a\"\ntoken_sha256 = \"{TEST_SHA}\"\nscopes = [\"credit\"]\n"
                ),
                "another principal",
            ),
            (
                &format!(
                    "[[principal]]\nname = \"a\"\ntoken_sha256 = \"{TEST_SHA}\"\nscopes = [\"credit\"]\nworkspaces = [\"bad id\"]\n"
                ),
                "ill-formed id",
            ),
        ] {
            let (loaded, _) = file(text);
            let error = loaded.expect_err(text).to_string();
            assert!(error.contains(problem), "{error}");
        }
        let (loaded, _) = file("[[principal]]\nname = \"a\"\nscopes = [\"everything\"]\n");
        assert!(matches!(loaded, Err(AuthFileError::Parse { .. })));
    }

    #[test]
    fn a_confined_principal_touches_only_its_tenants() {
        let tenancy = Tenancy { workspaces: Some(["team-a".to_owned()].into()), accounts: None };
        assert!(tenancy.allows_workspace("team-a"));
        assert!(!tenancy.allows_workspace("team-b"));
        assert!(!tenancy.allows_account("anyone"), "a workspace-bound principal has no personal context");
        assert!(Tenancy::default().allows_account("anyone"));
    }

    #[test]
    fn methods_need_the_scope_of_their_service() {
        assert_eq!(Scope::of_method("/creditpool.v1.CreditService/Consume"), Some(Scope::Credit));
        assert_eq!(Scope::of_method("/creditpool.v1.AdminService/SetPoolSize"), Some(Scope::Admin));
        assert_eq!(Scope::of_method("/creditpool.v1.AdminService/WatchNotifications"), Some(Scope::Watch));
        assert_eq!(Scope::of_method("/creditpool.v1.AdminService/VerifyLedger"), Some(Scope::Verify));
        assert_eq!(Scope::of_method("/grpc.health.v1.Health/Check"), None);
        assert_eq!(Scope::of_method("/unknown.Service/Method"), Some(Scope::Admin));
    }
}
