//! `<data-dir>/cluster.json`: what a node knows of its cluster and must not forget across a
//! restart: the cluster id, the epoch and its master, the membership, the last failover.
//!
//! Every change is written whole (temporary file, fsync, rename, fsync of the directory) before
//! the node acts on it: a node that adopted an epoch never comes back from a crash below it, and
//! a node that accepted a master for an epoch never accepts another for the same epoch.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use shared::cluster::{Epoch, FailoverRecord, Member};

use crate::storage::{
    StorageError,
    meta::{io_err, write_json_atomically},
};

const FILE: &str = "cluster.json";
const FORMAT: u32 = 1;

/// A member with when it was last heard from (kept by masters, for "down since").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    /// Node id.
    pub node_id: String,
    /// Advertised address.
    pub address: String,
    /// When a master last heard from it (milliseconds since the Unix epoch), if ever.
    pub last_seen_unix_ms: Option<u64>,
}

impl MemberRecord {
    /// The member without the timestamp.
    #[must_use]
    pub fn member(&self) -> Member {
        Member {
            node_id: self.node_id.clone(),
            address: self.address.clone(),
        }
    }
}

/// The content of `cluster.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterFile {
    /// File format.
    pub format: u32,
    /// The cluster this node belongs to; `None` for a replica that has not joined yet.
    pub cluster_id: Option<String>,
    /// The epoch this node knows (0: none yet, a new replica).
    pub epoch: Epoch,
    /// The master of `epoch` this node accepted.
    pub master: Option<Member>,
    /// Whether this node, as the master of `epoch`, got its majority and caught up from it
    /// (written before its first write of the epoch): a master that restarts before that must
    /// get its majority again instead of taking writes after its start-up probe.
    #[serde(default)]
    pub established: bool,
    /// Every node of the cluster this node knows of, itself included.
    pub members: Vec<MemberRecord>,
    /// Bumped at every membership change, so replicas know when to fetch it again.
    pub members_version: u64,
    /// The last failover this node took part in.
    pub last_failover: Option<FailoverRecord>,
}

impl ClusterFile {
    /// A file for a node that knows nothing yet.
    #[must_use]
    pub fn empty() -> Self {
        Self {
            format: FORMAT,
            cluster_id: None,
            epoch: 0,
            master: None,
            established: false,
            members: Vec::new(),
            members_version: 0,
            last_failover: None,
        }
    }

    /// The path in `dir`.
    #[must_use]
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(FILE)
    }

    /// Loads the file, `None` when the node never wrote one.
    ///
    /// # Errors
    /// When it cannot be read or does not decode.
    pub fn load(dir: &Path) -> Result<Option<Self>, StorageError> {
        let path = Self::path(dir);
        match std::fs::read(&path) {
            Ok(raw) => {
                let file: Self =
                    serde_json::from_slice(&raw).map_err(|e| StorageError::Corrupt {
                        what: "cluster.json",
                        detail: format!("{}: {e}", path.display()),
                    })?;
                if file.format != FORMAT {
                    return Err(StorageError::Corrupt {
                        what: "cluster.json",
                        detail: format!(
                            "{}: format {} is not supported (this kvd reads {FORMAT})",
                            path.display(),
                            file.format
                        ),
                    });
                }
                Ok(Some(file))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("cannot read", &path)(e)),
        }
    }

    /// Writes the file durably.
    ///
    /// # Errors
    /// On I/O errors.
    pub fn save(&self, dir: &Path) -> Result<(), StorageError> {
        write_json_atomically(&Self::path(dir), self, "cluster.json")
    }

    /// The members as plain members.
    #[must_use]
    pub fn member_list(&self) -> Vec<Member> {
        self.members.iter().map(MemberRecord::member).collect()
    }

    /// Adds or updates a member; returns whether anything changed (and bumps the version).
    pub fn upsert(&mut self, member: &Member) -> bool {
        match self
            .members
            .iter_mut()
            .find(|m| m.node_id == member.node_id)
        {
            Some(m) if m.address == member.address => false,
            Some(m) => {
                m.address.clone_from(&member.address);
                self.members_version += 1;
                true
            }
            None => {
                self.members.push(MemberRecord {
                    node_id: member.node_id.clone(),
                    address: member.address.clone(),
                    last_seen_unix_ms: None,
                });
                self.members.sort_by(|a, b| a.node_id.cmp(&b.node_id));
                self.members_version += 1;
                true
            }
        }
    }

    /// Replaces the membership with a master's (a replica adopting it), keeping what this node
    /// knew of when members were last seen.
    pub fn adopt_members(&mut self, version: u64, members: &[Member]) {
        let old = std::mem::take(&mut self.members);
        self.members = members
            .iter()
            .map(|m| MemberRecord {
                node_id: m.node_id.clone(),
                address: m.address.clone(),
                last_seen_unix_ms: old
                    .iter()
                    .find(|o| o.node_id == m.node_id)
                    .and_then(|o| o.last_seen_unix_ms),
            })
            .collect();
        self.members.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        self.members_version = version;
    }

    /// Removes a member; returns it.
    pub fn remove(&mut self, node_id: &str) -> Option<MemberRecord> {
        let i = self.members.iter().position(|m| m.node_id == node_id)?;
        self.members_version += 1;
        Some(self.members.remove(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, addr: &str) -> Member {
        Member {
            node_id: id.into(),
            address: addr.into(),
        }
    }

    #[test]
    fn saved_then_loaded_and_versioned() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(ClusterFile::load(dir.path()).expect("load"), None);
        let mut f = ClusterFile::empty();
        f.cluster_id = Some("c1".into());
        f.epoch = 3;
        f.master = Some(member("a", "h:1"));
        assert!(f.upsert(&member("b", "h:2")));
        assert!(f.upsert(&member("a", "h:1")));
        assert!(!f.upsert(&member("a", "h:1")), "no change, no new version");
        assert!(f.upsert(&member("b", "h:9")), "a new address is a change");
        assert_eq!(f.members_version, 3);
        assert_eq!(
            f.member_list(),
            vec![member("a", "h:1"), member("b", "h:9")]
        );
        f.save(dir.path()).expect("save");
        assert_eq!(
            ClusterFile::load(dir.path()).expect("load"),
            Some(f.clone())
        );
        assert_eq!(f.remove("b").map(|m| m.address), Some("h:9".into()));
        assert_eq!(f.members_version, 4);
        std::fs::write(ClusterFile::path(dir.path()), b"{").expect("damage");
        let e = ClusterFile::load(dir.path()).expect_err("corrupt");
        assert!(e.to_string().contains("cluster.json"), "{e}");
    }
}
