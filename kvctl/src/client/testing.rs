//! A fake node for tests: a real tarpc server on a loopback port whose answers are fixed by a
//! [`Fake`] value (a replica that names a master, a slow node, a set of keys to scan).

use std::{sync::Arc, time::Duration};

use futures::StreamExt as _;
use serde_bytes::ByteBuf;
use shared::{
    Entry, Kv, KvError, NodeStatus, PutRequest, Role, ScanPage, ScanRequest, ShardStatus,
    SyncPolicy, Version, Versioned, addr::Endpoint,
};
use tarpc::{
    context::Context,
    server::{BaseChannel, Channel as _},
};

/// The version the fake master answers every write with.
pub const MASTER_VERSION: Version = 42;

/// Most entries the fake returns per scan page, whatever the request asks (to force paging).
pub const FAKE_PAGE: usize = 3;

/// What the fake node answers.
#[derive(Clone, Default)]
pub struct Fake {
    /// `Some`: behave as a replica naming this master (writes refused with `NotMaster`).
    pub master: Option<String>,
    /// How long every call waits before answering.
    pub delay: Duration,
    /// The keys the node holds, in key order.
    pub entries: Arc<Vec<Entry>>,
}

impl Fake {
    /// Adds a key at version `number of keys so far + 1`, keeping the keys in order.
    pub fn with(mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Self {
        let entries = Arc::make_mut(&mut self.entries);
        let version = entries.len() as u64 + 1;
        entries.push(Entry {
            key: ByteBuf::from(key.as_ref()),
            value: ByteBuf::from(value.as_ref()),
            version,
        });
        entries.sort_by(|a, b| a.key.cmp(&b.key));
        self
    }

    fn refuse_writes(&self) -> Result<(), KvError> {
        match &self.master {
            Some(m) => Err(KvError::NotMaster {
                master: Some(m.clone()),
            }),
            None => Ok(()),
        }
    }
}

impl Kv for Fake {
    async fn get(self, _: Context, key: ByteBuf) -> Result<Option<Versioned>, KvError> {
        tokio::time::sleep(self.delay).await;
        Ok(self
            .entries
            .iter()
            .find(|e| e.key == key)
            .map(|e| Versioned {
                value: e.value.clone(),
                version: e.version,
            }))
    }

    async fn put(self, _: Context, _req: PutRequest) -> Result<Version, KvError> {
        tokio::time::sleep(self.delay).await;
        self.refuse_writes()?;
        Ok(MASTER_VERSION)
    }

    async fn delete(self, _: Context, key: ByteBuf) -> Result<Option<Version>, KvError> {
        tokio::time::sleep(self.delay).await;
        self.refuse_writes()?;
        Ok((key.as_slice() != b"absent").then_some(MASTER_VERSION))
    }

    async fn scan(self, _: Context, req: ScanRequest) -> Result<ScanPage, KvError> {
        tokio::time::sleep(self.delay).await;
        let page = usize::try_from(req.limit)
            .unwrap_or(usize::MAX)
            .min(FAKE_PAGE);
        let mut matching = self.entries.iter().filter(|e| {
            e.key.starts_with(&req.prefix) && req.start_after.as_ref().is_none_or(|s| e.key > *s)
        });
        let mut entries: Vec<Entry> = matching.by_ref().take(page).cloned().collect();
        if req.keys_only {
            for e in &mut entries {
                e.value = ByteBuf::new();
            }
        }
        let more = matching.next().is_some();
        let next = entries.last().filter(|_| more).map(|e| e.key.clone());
        Ok(ScanPage { entries, next })
    }

    async fn status(self, _: Context) -> Result<NodeStatus, KvError> {
        tokio::time::sleep(self.delay).await;
        Ok(NodeStatus {
            node_id: "n1".into(),
            role: if self.master.is_some() {
                Role::Replica
            } else {
                Role::Master
            },
            address: "localhost:3000".into(),
            version: "0.1.0".into(),
            uptime_secs: 3725,
            sync: SyncPolicy::Always,
            max_key_bytes: 4096,
            max_value_bytes: 1 << 20,
            shards: vec![
                ShardStatus {
                    shard: 0,
                    keys: 10,
                    last_seq: 12,
                    disk_bytes: 2048,
                },
                ShardStatus {
                    shard: 1,
                    keys: 1500,
                    last_seq: 1502,
                    disk_bytes: 3 << 20,
                },
            ],
        })
    }
}

/// Serves `fake` on a fresh loopback port until the test's runtime ends, with the frame limit
/// of a node running with default key and value limits.
pub async fn serve(fake: Fake) -> Endpoint {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let max_frame = shared::limits::server_max_frame_bytes(
        shared::limits::DEFAULT_MAX_KEY_BYTES,
        shared::limits::DEFAULT_MAX_VALUE_BYTES,
    );
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let transport =
                shared::transport::server_transport(stream, max_frame).expect("transport");
            let channel = BaseChannel::with_defaults(transport);
            tokio::spawn(channel.execute(fake.clone().serve()).for_each(|f| async {
                tokio::spawn(f);
            }));
        }
    });
    Endpoint {
        host: "127.0.0.1".into(),
        port,
    }
}
