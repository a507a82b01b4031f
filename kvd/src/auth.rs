//! Tokens and roles (`--auth-file`): who may call what.
//!
//! ```text
//!  connect ─► hello frame { token } (≤ 4 KiB, within 5 s) ─► Auth::check ─► role of the connection
//!            ─► every call: Role::allows(call) or PermissionDenied
//! ```
//!
//! The file has one line per token, `ROLE NAME SHA256-HEX-OF-TOKEN`; `#` starts a comment. Only
//! hashes are stored; a presented token is hashed and compared with every entry in constant
//! time. `kvd token new` makes a random 256-bit token, appends its line, and prints it once.
//! Without `--auth-file` every connection is `admin` (the node then listens on loopback only,
//! unless `--insecure`).

use std::{
    collections::HashMap,
    fmt,
    net::IpAddr,
    path::{Path, PathBuf},
    sync::{Mutex, PoisonError, RwLock},
    time::Duration,
};

use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use tokio::time::Instant;

/// What a token may do, each role including the ones before it where that makes sense:
/// `read` < `write`; `replica` is for nodes; `admin` may do everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// get, mget, scan, status, cluster_status.
    Read,
    /// read, plus put, mput, delete.
    Write,
    /// Node to node: join, pull, snapshot, digest, hello, vote, take_over, restore_mget, status.
    Replica,
    /// Everything, failover, promote and forget included.
    Admin,
}

impl Role {
    /// Its name in the file and in messages.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Replica => "replica",
            Self::Admin => "admin",
        }
    }

    /// Parses a role name.
    ///
    /// # Errors
    /// An unknown name, with the known ones.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "read" => Ok(Self::Read),
            "write" => Ok(Self::Write),
            "replica" => Ok(Self::Replica),
            "admin" => Ok(Self::Admin),
            other => Err(format!(
                "unknown role {other:?}: use read, write, replica or admin"
            )),
        }
    }

    /// Whether this role may make `call`.
    #[must_use]
    pub fn allows(self, call: Call) -> bool {
        match self {
            Self::Admin => true,
            Self::Read => matches!(call, Call::Read | Call::Status),
            Self::Write => matches!(call, Call::Read | Call::Status | Call::Write),
            Self::Replica => matches!(call, Call::Replication | Call::Status),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A token this node presents, kept out of `Debug` output.
#[derive(Clone)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<token>")
    }
}

/// The kinds of call, as the roles see them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// get, mget, scan.
    Read,
    /// status, cluster_status (also allowed to `read`: see [`Role::allows`]).
    Status,
    /// put, mput, delete.
    Write,
    /// join, pull, snapshot, digest, hello, vote, take_over, restore_mget.
    Replication,
    /// failover, promote, forget.
    Admin,
}

impl Call {
    /// The least role that may make it, for messages.
    #[must_use]
    pub fn needs(self) -> &'static str {
        match self {
            Self::Read | Self::Status => "read",
            Self::Write => "write",
            Self::Replication => "replica",
            Self::Admin => "admin",
        }
    }
}

/// One line of the file.
#[derive(Debug, Clone)]
struct Entry {
    role: Role,
    name: String,
    hash: [u8; 32],
}

/// The token file, parsed.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    entries: Vec<Entry>,
}

/// SHA-256 of a token, as the file stores it.
#[must_use]
pub fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl Tokens {
    /// Parses the file's text; `path` names it in errors.
    ///
    /// # Errors
    /// The first bad line, with its number and what is wrong.
    pub fn parse(text: &str, path: &Path) -> Result<Self, String> {
        let mut entries = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let bad = |why: String| format!("{} line {}: {why}", path.display(), n + 1);
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [role, name, digest] = fields.as_slice() else {
                return Err(bad(format!(
                    "expected `ROLE NAME SHA256-HEX-OF-TOKEN`, found {} fields",
                    fields.len()
                )));
            };
            let role = Role::parse(role).map_err(bad)?;
            let hash = unhex(digest).ok_or_else(|| {
                bad("the hash is not 64 hexadecimal digits (SHA-256 of the token)".into())
            })?;
            if entries.iter().any(|e: &Entry| e.name == *name) {
                return Err(bad(format!("the name {name:?} is used twice")));
            }
            entries.push(Entry {
                role,
                name: (*name).to_string(),
                hash,
            });
        }
        Ok(Self { entries })
    }

    /// Reads and parses the file.
    ///
    /// # Errors
    /// An unreadable file or a bad line.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read --auth-file {}: {e}", path.display()))?;
        Self::parse(&text, path)
    }

    /// The role and name of `token`, comparing its hash with every entry in constant time.
    #[must_use]
    pub fn check(&self, token: &str) -> Option<(Role, &str)> {
        let presented = hash(token);
        let mut found = None;
        for e in &self.entries {
            if bool::from(e.hash.ct_eq(&presented)) && found.is_none() {
                found = Some((e.role, e.name.as_str()));
            }
        }
        found
    }

    /// How many tokens the file holds.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A new random token (256 bits, `kvd_` and 64 hexadecimal digits).
#[must_use]
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("kvd_{}", hex(&bytes))
}

/// `kvd token new`: appends a line for a new token to `path` (creating it, mode 0600) and
/// returns the token.
///
/// # Errors
/// A bad role or name, a name already in the file, or a file that cannot be written.
pub fn append_new(path: &Path, role: Role, name: &str) -> Result<String, String> {
    use std::io::Write as _;
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == '#') {
        return Err(format!(
            "bad token name {name:?}: use letters, digits, '-' or '_', no spaces"
        ));
    }
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => Tokens::parse(&text, path)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Tokens::default(),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    if existing.entries.iter().any(|e| e.name == name) {
        return Err(format!(
            "{} already has a token named {name:?}; pick another name",
            path.display()
        ));
    }
    let token = new_token();
    let line = format!("{} {name} {}\n", role.as_str(), hex(&hash(&token)));
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    file.write_all(line.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(token)
}

/// Failed attempts allowed per address within [`FAILURE_WINDOW`] before the address is refused
/// without a check until the window ends.
pub const MAX_FAILURES: u32 = 10;
/// The window of [`MAX_FAILURES`].
pub const FAILURE_WINDOW: Duration = Duration::from_secs(10);

/// The node's authentication: the token file (re-read on SIGHUP) and failed attempts per address.
#[derive(Debug)]
pub struct Auth {
    path: Option<PathBuf>,
    tokens: RwLock<Tokens>,
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No token presented.
    Missing,
    /// A token that is in no line of the file.
    Wrong,
    /// Too many failures from this address lately.
    Throttled,
}

impl Auth {
    /// Authentication from `--auth-file` (`None`: every connection is `admin`).
    ///
    /// # Errors
    /// An unreadable file or a bad line.
    pub fn open(path: Option<&Path>) -> Result<Self, String> {
        let tokens = match path {
            Some(p) => Tokens::load(p)?,
            None => Tokens::default(),
        };
        Ok(Self {
            path: path.map(Path::to_path_buf),
            tokens: RwLock::new(tokens),
            failures: Mutex::new(HashMap::new()),
        })
    }

    /// Whether tokens are required.
    #[must_use]
    pub fn required(&self) -> bool {
        self.path.is_some()
    }

    /// Re-reads the file (SIGHUP); keeps the old tokens when the new file is bad.
    ///
    /// # Errors
    /// Why the file was not taken.
    pub fn reload(&self) -> Result<usize, String> {
        let Some(path) = &self.path else {
            return Ok(0);
        };
        let tokens = Tokens::load(path)?;
        let n = tokens.len();
        *self.tokens.write().unwrap_or_else(PoisonError::into_inner) = tokens;
        Ok(n)
    }

    /// The role of a connection from `peer` presenting `token`, and the token's name.
    ///
    /// # Errors
    /// Why it is refused; the failure counts against `peer`.
    pub fn authenticate(
        &self,
        peer: IpAddr,
        token: Option<&str>,
    ) -> Result<(Role, String), Refusal> {
        if !self.required() {
            return Ok((Role::Admin, String::new()));
        }
        let now = Instant::now();
        {
            let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((since, n)) = failures.get(&peer).copied() {
                if now.duration_since(since) >= FAILURE_WINDOW {
                    failures.remove(&peer);
                } else if n >= MAX_FAILURES {
                    return Err(Refusal::Throttled);
                }
            }
        }
        let found = token.and_then(|t| {
            self.tokens
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .check(t)
                .map(|(role, name)| (role, name.to_string()))
        });
        match (token, found) {
            (_, Some(ok)) => Ok(ok),
            (None, None) => Err(self.failed(peer, now, Refusal::Missing)),
            (Some(_), None) => Err(self.failed(peer, now, Refusal::Wrong)),
        }
    }

    fn failed(&self, peer: IpAddr, now: Instant, why: Refusal) -> Refusal {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        // Bounded: addresses whose window ended are dropped when the map grows.
        if failures.len() > 10_000 {
            failures.retain(|_, (since, _)| now.duration_since(*since) < FAILURE_WINDOW);
        }
        let entry = failures.entry(peer).or_insert((now, 0));
        entry.1 += 1;
        why
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(role: &str, name: &str, token: &str) -> String {
        format!("{role} {name} {}\n", hex(&hash(token)))
    }

    #[test]
    fn a_token_maps_to_its_role_and_nothing_else_does() {
        let text = format!(
            "# comment\n\n{}{}",
            line("read", "dash", "t-read"),
            line("admin", "ops", "t-admin")
        );
        let t = Tokens::parse(&text, Path::new("f")).expect("parses");
        assert_eq!(t.len(), 2);
        assert_eq!(t.check("t-read"), Some((Role::Read, "dash")));
        assert_eq!(t.check("t-admin"), Some((Role::Admin, "ops")));
        assert_eq!(t.check("t-reaD"), None);
        assert_eq!(t.check(""), None);
    }

    #[test]
    fn bad_lines_name_the_line_and_the_problem() {
        let e = Tokens::parse("read x\n", Path::new("f")).expect_err("bad");
        assert!(e.contains("f line 1") && e.contains("2 fields"), "{e}");
        let e = Tokens::parse("boss x 00\n", Path::new("f")).expect_err("bad");
        assert!(e.contains("unknown role \"boss\""), "{e}");
        let e = Tokens::parse("read x abc\n", Path::new("f")).expect_err("bad");
        assert!(e.contains("64 hexadecimal"), "{e}");
        let twice = format!("{}{}", line("read", "a", "1"), line("write", "a", "2"));
        let e = Tokens::parse(&twice, Path::new("f")).expect_err("bad");
        assert!(e.contains("line 2") && e.contains("used twice"), "{e}");
    }

    #[test]
    fn roles_allow_exactly_their_calls() {
        use Call::*;
        let table = [
            (Role::Read, [true, true, false, false, false]),
            (Role::Write, [true, true, true, false, false]),
            (Role::Replica, [false, true, false, true, false]),
            (Role::Admin, [true, true, true, true, true]),
        ];
        for (role, allowed) in table {
            for (call, want) in [Read, Status, Write, Replication, Admin]
                .into_iter()
                .zip(allowed)
            {
                assert_eq!(role.allows(call), want, "{role} {call:?}");
            }
        }
    }

    #[test]
    fn new_tokens_are_long_random_and_appended_hashed() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("tokens");
        let a = append_new(&path, Role::Write, "app").expect("new");
        let b = append_new(&path, Role::Read, "dash").expect("new");
        assert_ne!(a, b);
        assert_eq!(a.len(), 4 + 64);
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(!text.contains(&a[4..]), "the token itself is not stored");
        let t = Tokens::load(&path).expect("load");
        assert_eq!(t.check(&a), Some((Role::Write, "app")));
        assert_eq!(t.check(&b), Some((Role::Read, "dash")));
        let e = append_new(&path, Role::Read, "app").expect_err("dup");
        assert!(e.contains("already has a token named"), "{e}");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn failures_are_throttled_per_address() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("tokens");
        let good = append_new(&path, Role::Read, "r").expect("new");
        let auth = Auth::open(Some(&path)).expect("open");
        let a: IpAddr = "127.0.0.2".parse().expect("ip");
        let b: IpAddr = "127.0.0.3".parse().expect("ip");
        assert_eq!(auth.authenticate(a, None), Err(Refusal::Missing));
        for _ in 1..MAX_FAILURES {
            assert_eq!(auth.authenticate(a, Some("nope")), Err(Refusal::Wrong));
        }
        // The address is refused even with the right token until its window ends...
        assert_eq!(auth.authenticate(a, Some(&good)), Err(Refusal::Throttled));
        // ...and other addresses are not affected.
        assert_eq!(
            auth.authenticate(b, Some(&good)),
            Ok((Role::Read, "r".to_string()))
        );
    }

    #[test]
    fn without_a_file_everyone_is_admin() {
        let auth = Auth::open(None).expect("open");
        assert!(!auth.required());
        let ip: IpAddr = "127.0.0.1".parse().expect("ip");
        assert_eq!(
            auth.authenticate(ip, None),
            Ok((Role::Admin, String::new()))
        );
    }
}
