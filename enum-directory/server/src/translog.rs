//! The directory's transparency log, over storage: every accepted change is a leaf (number changes are appended
//! by the storage in the transaction that makes them, key changes by [`crate::keys`]); this module signs tree
//! heads with the log's own Ed25519 key (made on first use and kept in storage with the zone keys) and answers
//! proofs.
//!
//! Tree heads are signed when one is asked for and the tree has grown since the last one, so a burst of changes
//! (an import) is covered by one head; every head signed is stored, so a size is only ever signed once, and a
//! head's timestamp is never older than the previous head's (clocks of several nodes may differ).
//!
//! Proofs are public, so they must stay cheap on a large log: they come from a [`SubtreeCache`] of complete
//! chunks' roots in memory plus the leaf hashes of at most three chunks read per proof, O(log n) in all. The
//! cache follows the stored log, whoever appends to it (this process, an import, another node): before each proof
//! it takes the chunks completed since, and it must agree with the stored right edge ([`Frontier`]), which
//! commits to every leaf; when it does not (the database was swapped for a backup, say) it is filled again.

use std::sync::Arc;

use ring::rand::{SecureRandom, SystemRandom};
use tincan_common::Clock;
use tincan_enum_core::E164;
use tincan_translog::wire::{ConsistencyProof, InclusionProof};
use tincan_translog::{CachedTree, Frontier, SignedTreeHead, SubtreeCache, Subtrees, TreeHead, TreeHeadSigner};
use tokio::sync::RwLock;

use crate::storage::{LogLeaf, Repository, Storage, StorageError};

/// Leaves per chunk of the proof cache, as a power of two: 256 leaves, so the cache holds 2 hashes (64 bytes)
/// per 256 leaves and a proof hashes at most a few hundred leaves.
const CHUNK_BITS: u32 = 8;

/// Chunks read per transaction while the cache catches up (writers wait on SQLite's lock meanwhile).
const FILL_CHUNKS: u64 = 64;

/// Why a log operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// No randomness for a new log key.
    #[error("the system random generator failed")]
    Random,
    /// A requested size or range lies beyond the tree (or `from > to`).
    #[error("out of range: {0}")]
    OutOfRange(&'static str),
    /// The stored leaves do not give a proof (they were altered).
    #[error("cannot build a proof from the stored leaves: {0}")]
    Proof(#[from] tincan_translog::Error),
    /// The latest signed tree head is not one the stored leaves produce: part of the database was restored
    /// from another point in time (the heads survived while leaves were lost, or the reverse). Serving on would
    /// sign heads that fork the log, so this is never answered with a head.
    #[error(
        "the latest signed tree head (size {head_size}) is not produced by the stored log ({stored_size} leaves): \
         {reason}; restore the lost leaves or see the README's \"Restoring a backup\""
    )]
    HeadMismatch {
        /// The tree size of the latest stored head.
        head_size: u64,
        /// The size of the stored tree.
        stored_size: u64,
        /// What does not match.
        reason: &'static str,
    },
}

/// The log of one directory.
#[derive(Debug)]
pub struct TransLog {
    storage: Arc<dyn Storage>,
    signer: TreeHeadSigner,
    clock: Arc<dyn Clock>,
    cache: RwLock<SubtreeCache>,
}

impl TransLog {
    /// Loads the log's signing key, making and storing one on first use, and checks that the stored leaves
    /// produce the latest signed head ([`LogError::HeadMismatch`] when they do not).
    pub async fn open(storage: Arc<dyn Storage>, clock: Arc<dyn Clock>) -> Result<TransLog, LogError> {
        let log = Self::open_unchecked(storage, clock).await?;
        log.check_latest_head().await?;
        Ok(log)
    }

    /// [`TransLog::open`] without the check of the stored leaves.
    async fn open_unchecked(storage: Arc<dyn Storage>, clock: Arc<dyn Clock>) -> Result<TransLog, LogError> {
        let mut tx = storage.begin().await?;
        let seed = match tx.log().signing_seed().await? {
            Some(seed) => seed,
            None => {
                let mut seed = [0u8; 32];
                SystemRandom::new().fill(&mut seed).map_err(|_| LogError::Random)?;
                tx.log().add_signing_seed(&seed).await?;
                tx.commit().await?;
                // Another node may have stored one first (PostgreSQL): the first one stored is the log's key.
                let mut tx = storage.begin().await?;
                tx.log().signing_seed().await?.unwrap_or(seed)
            }
        };
        let cache = RwLock::new(SubtreeCache::new(CHUNK_BITS));
        Ok(TransLog { storage, signer: TreeHeadSigner::from_seed(&seed), clock, cache })
    }

    /// Checks that the stored leaves produce the latest signed head: its size is at most the stored tree's and
    /// its root is that of the first `size` leaves (which also reads every leaf once, filling the proof cache,
    /// and checks the leaves against the stored right edge).
    async fn check_latest_head(&self) -> Result<(), LogError> {
        let mut tx = self.storage.begin_read().await?;
        // The head first: every head is stored after its leaves, so a consistent store's tree read after it is
        // at least as large (also with other nodes appending meanwhile).
        let Some(latest) = tx.log().latest_sth().await? else { return Ok(()) };
        let frontier = tx.log().frontier().await?;
        drop(tx);
        self.check_head(&latest, &frontier, true).await
    }

    /// Checks that the stored tree whose right edge is `frontier` is `head`'s tree or extends it: `head` is no
    /// larger, and its root is the root of its size's first leaves — from a consistency proof, which reads
    /// leaves (all of them the first time, checking them against the right edge), unless the sizes are equal
    /// and `read_leaves` is false: then the right edge's root.
    async fn check_head(&self, head: &SignedTreeHead, frontier: &Frontier, read_leaves: bool) -> Result<(), LogError> {
        let (head_size, stored_size) = (head.head.tree_size, frontier.size());
        let mismatch = |reason| {
            tracing::error!(
                head_size,
                stored_size,
                reason,
                "the transparency log's latest signed head is not produced by its stored leaves; not serving it"
            );
            LogError::HeadMismatch { head_size, stored_size, reason }
        };
        let root = if head_size > stored_size {
            return Err(mismatch("the head is larger than the stored tree (leaves were lost)"));
        } else if head_size == stored_size && !read_leaves {
            frontier.root()
        } else {
            match self.consistency(head_size, stored_size).await {
                Ok(c) => c.from_root,
                Err(LogError::Proof(_)) => {
                    return Err(mismatch("the stored leaves are missing or do not give the stored tree's root"));
                }
                Err(e) => return Err(e),
            }
        };
        if root != head.head.root_hash {
            return Err(mismatch("the head's root is not the root of the stored leaves (another log was restored)"));
        }
        Ok(())
    }

    /// The log's public key, unpadded base64 (what auditors and clients pin).
    pub fn public_key(&self) -> String {
        self.signer.verifier().to_base64()
    }

    /// The signed head of the current tree (or a newer one another node signed meanwhile), signing it now if
    /// this size was never signed.
    pub async fn sth(&self) -> Result<SignedTreeHead, LogError> {
        // A read transaction: public reads never take SQLite's write lock (registrar writes would wait on them);
        // only signing a new head writes.
        let mut tx = self.storage.begin_read().await?;
        // The head before the tree, as in `check_latest_head`.
        let latest = tx.log().latest_sth().await?;
        let frontier = tx.log().frontier().await?;
        drop(tx);
        // Never a head the stored leaves do not produce, nor a new one for leaves that do not extend the last
        // (a database swapped under a running server): free when the head is current, one consistency proof
        // (cache warm) when a new head is to be signed.
        if let Some(sth) = &latest {
            self.check_head(sth, &frontier, false).await?;
            if sth.head.tree_size == frontier.size() {
                return Ok(sth.clone());
            }
        }
        let now_ms = self
            .clock
            .now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        let timestamp_ms = latest.map_or(now_ms, |l| now_ms.max(l.head.timestamp_ms));
        let sth = self.signer.sign(TreeHead { tree_size: frontier.size(), timestamp_ms, root_hash: frontier.root() });
        let mut tx = self.storage.begin().await?;
        tx.log().store_sth(&sth).await?;
        // Another node may have signed this size (or a larger one) meanwhile (PostgreSQL): the head stored first
        // is the one.
        let sth = tx.log().latest_sth().await?.filter(|s| s.head.tree_size >= sth.head.tree_size).unwrap_or(sth);
        tx.commit().await?;
        Ok(sth)
    }

    /// The proof that the newest entry of `number` (of zone version `version`, if given) is in the current
    /// tree; `None` when the log holds no such entry, and also when the number is deleted now or the entry asked
    /// for is a deletion: the endpoint is public, so it must not tell a deleted number (or its history) from one
    /// never registered.
    pub async fn inclusion(&self, number: &E164, version: Option<i64>) -> Result<Option<InclusionProof>, LogError> {
        let sth = self.sth().await?;
        let size = sth.head.tree_size;
        let mut tx = self.storage.begin_read().await?;
        let Some(newest) = tx.log().find(number, None, size).await? else { return Ok(None) };
        if is_deletion(&newest) {
            return Ok(None);
        }
        let leaf = match version {
            None => newest,
            Some(v) => match tx.log().find(number, Some(v), size).await? {
                Some(leaf) if !is_deletion(&leaf) => leaf,
                _ => return Ok(None),
            },
        };
        let frontier = tx.log().frontier().await?;
        let windows = self.windows(tx.as_mut(), size, &[leaf.index]).await?;
        drop(tx);
        let proof = self.prove(&frontier, size, windows, |t| t.inclusion_proof(leaf.index)).await?;
        Ok(Some(InclusionProof { index: leaf.index, entry: leaf.entry, proof, sth }))
    }

    /// The proof that the tree of `from` leaves is a prefix of the tree of `to` leaves (`to` at most the current
    /// size).
    pub async fn consistency(&self, from: u64, to: u64) -> Result<ConsistencyProof, LogError> {
        if from > to {
            return Err(LogError::OutOfRange("from is larger than to"));
        }
        let mut tx = self.storage.begin_read().await?;
        let frontier = tx.log().frontier().await?;
        if to > frontier.size() {
            return Err(LogError::OutOfRange("to is larger than the tree"));
        }
        let last_of_from: Vec<u64> = from.checked_sub(1).into_iter().collect();
        let windows = self.windows(tx.as_mut(), to, &last_of_from).await?;
        drop(tx);
        self.prove(&frontier, to, windows, |t| {
            let from_root = if from == 0 { tincan_translog::empty_root() } else { t.subtree_root(0, from)? };
            Ok(ConsistencyProof { from, to, from_root, to_root: t.tree_root()?, proof: t.consistency_proof(from)? })
        })
        .await
    }

    /// The leaf hashes a proof about the tree of `size` leaves needs besides the cache: the chunks of `points`
    /// and the last one (see [`SubtreeCache::windows`]).
    async fn windows(
        &self,
        tx: &mut dyn Repository,
        size: u64,
        points: &[u64],
    ) -> Result<Vec<(u64, Vec<tincan_translog::Hash>)>, LogError> {
        let ranges = self.cache.read().await.windows(size, points);
        let mut windows = Vec::with_capacity(ranges.len());
        for r in ranges {
            windows.push((r.start, read_leaf_hashes(tx, r.start, r.end).await?));
        }
        Ok(windows)
    }

    /// Runs `f` on the tree of the first `size` leaves of the log whose stored right edge is `frontier`, seen
    /// through the cache (brought in step first) and `windows`.
    async fn prove<T>(
        &self,
        frontier: &Frontier,
        size: u64,
        windows: Vec<(u64, Vec<tincan_translog::Hash>)>,
        f: impl FnOnce(&CachedTree<'_>) -> tincan_translog::Result<T>,
    ) -> Result<T, LogError> {
        self.catch_up(frontier).await?;
        let cache = self.cache.read().await;
        Ok(f(&cache.tree(size, windows)?)?)
    }

    /// Brings the cache in step with the stored log: takes the chunks completed since it was last filled, and
    /// fills it again from the start when it holds another log than the stored one.
    async fn catch_up(&self, frontier: &Frontier) -> Result<(), LogError> {
        if self.cache.read().await.matches(frontier) {
            return Ok(());
        }
        let mut cache = self.cache.write().await;
        for attempt in 0..2 {
            if attempt > 0 {
                tracing::warn!(
                    size = frontier.size(),
                    "the log's proof cache disagrees with the stored log; refilling"
                );
                cache.clear();
            }
            let wanted = cache.wanted(frontier.size());
            while cache.covered() < wanted {
                let start = cache.covered();
                let end = wanted.min(start + FILL_CHUNKS * cache.chunk_len());
                let mut tx = self.storage.begin_read().await?;
                cache.extend(&read_leaf_hashes(tx.as_mut(), start, end).await?)?;
            }
            if cache.matches(frontier) {
                return Ok(());
            }
        }
        Err(LogError::Proof(tincan_translog::Error::RootMismatch))
    }

    /// Leaves `start..end` (at most `limit`), as stored.
    pub async fn leaves(&self, start: u64, end: u64, limit: u32) -> Result<Vec<LogLeaf>, LogError> {
        if start > end {
            return Err(LogError::OutOfRange("start is larger than end"));
        }
        let mut tx = self.storage.begin_read().await?;
        Ok(tx.log().leaves(start, end, limit).await?)
    }
}

/// Whether a leaf records a number's deletion (its entry unreadable counts as one: nothing to reveal).
fn is_deletion(leaf: &LogLeaf) -> bool {
    !tincan_translog::LogEntry::parse(&leaf.entry)
        .is_ok_and(|e| e.number_change().is_some_and(|(_, record)| record.is_some()))
}

/// The hashes of leaves `start..end`, all of them (fewer means leaves are missing from storage).
async fn read_leaf_hashes(
    tx: &mut dyn Repository,
    start: u64,
    end: u64,
) -> Result<Vec<tincan_translog::Hash>, LogError> {
    let hashes = tx.log().leaf_hashes(start, end).await?;
    if hashes.len() as u64 != end - start {
        return Err(LogError::Proof(tincan_translog::Error::MissingLeaves { start, end }));
    }
    Ok(hashes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::SqliteStorage;
    use tincan_common::SystemClock;
    use tincan_translog::{LogEntry, TreeHeadVerifier, root};

    fn number(i: u64) -> E164 {
        E164::parse(&format!("+4915100{i:06}")).unwrap()
    }

    async fn open(url: &str) -> Arc<dyn Storage> {
        Arc::new(SqliteStorage::open(url, Arc::new(SystemClock)).await.unwrap())
    }

    /// Appends number entries `first..end` (`salt` makes another log of the same numbers).
    async fn append(storage: &dyn Storage, first: u64, end: u64, salt: i64) {
        let mut tx = storage.begin().await.unwrap();
        for i in first..end {
            let entry = LogEntry::Number {
                version: i as i64 + 1,
                number: number(i),
                record: Some(tincan_enum_core::NumberRecord {
                    number: number(i),
                    services: vec![
                        tincan_enum_core::Service::new(tincan_enum_core::ServiceType::Matrix, "matrix:u/a:hs.test")
                            .unwrap(),
                    ],
                    key: None,
                }),
                provider: None,
                at_ms: salt,
            };
            tx.log().append(&entry).await.unwrap();
        }
        tx.commit().await.unwrap();
    }

    async fn leaf_hashes(storage: &dyn Storage) -> Vec<tincan_translog::Hash> {
        let mut tx = storage.begin().await.unwrap();
        let size = tx.log().frontier().await.unwrap().size();
        tx.log().leaf_hashes(0, size).await.unwrap()
    }

    /// Inclusion proofs of a few numbers and consistency proofs between a few sizes verify, and the roots are
    /// those of the stored leaves.
    async fn check_proofs(log: &TransLog, storage: &dyn Storage, numbers: &[u64]) {
        let key = TreeHeadVerifier::from_base64(&log.public_key()).unwrap();
        let hashes = leaf_hashes(storage).await;
        for &i in numbers {
            let p = log.inclusion(&number(i), None).await.unwrap().unwrap();
            key.verify(&p.sth).unwrap();
            p.verify().unwrap_or_else(|e| panic!("inclusion of leaf {i}: {e}"));
            assert_eq!((p.index, p.sth.head.root_hash), (i, root(&hashes)));
        }
        let n = hashes.len() as u64;
        for (from, to) in [(0, n), (1, n), (255, 256), (256, n), (300, n - 1), (n, n), (n / 2, n)] {
            let c = log.consistency(from, to).await.unwrap();
            c.verify().unwrap_or_else(|e| panic!("consistency {from}→{to}: {e}"));
            assert_eq!(c.from_root, root(&hashes[..from as usize]));
            assert_eq!(c.to_root, root(&hashes[..to as usize]));
        }
    }

    #[tokio::test]
    async fn proofs_follow_appends_by_another_process_and_a_swapped_log() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("log.sqlite3").display());
        let ours = open(&url).await;
        append(&*ours, 0, 700, 0).await;
        let log = TransLog::open(ours.clone(), Arc::new(SystemClock)).await.unwrap();
        check_proofs(&log, &*ours, &[0, 255, 256, 511, 600, 699]).await;
        assert_eq!(log.cache.read().await.covered(), 512);

        // Another process appends to the same database: the next proof covers its leaves too.
        let other = open(&url).await;
        append(&*other, 700, 1100, 0).await;
        check_proofs(&log, &*ours, &[3, 699, 700, 1024, 1099]).await;
        assert_eq!(log.cache.read().await.covered(), 1024);

        // The database now holds another log (a restored backup, say): the cache is filled again from it.
        for stmt in
            ["DELETE FROM translog", "UPDATE translog_head SET size = 0, frontier = X''", "DELETE FROM translog_sth"]
        {
            sql(&url, stmt).await;
        }
        append(&*other, 0, 1100, 1).await;
        check_proofs(&log, &*ours, &[0, 1023, 1099]).await;

        // Stored leaves that do not give the stored root: an error, not a wrong proof.
        sql(&url, "UPDATE translog SET leaf_hash = zeroblob(32) WHERE idx = 5").await;
        let fresh = TransLog::open_unchecked(ours.clone(), Arc::new(SystemClock)).await.unwrap();
        assert!(matches!(fresh.inclusion(&number(900), None).await, Err(LogError::Proof(_))));
        assert!(matches!(fresh.consistency(10, 20).await, Err(LogError::Proof(_))));
        // Nor is such a log opened: the leaves do not produce its latest head.
        assert!(matches!(
            TransLog::open(ours.clone(), Arc::new(SystemClock)).await,
            Err(LogError::HeadMismatch { head_size: 1100, stored_size: 1100, .. })
        ));
    }

    /// A head larger than the stored tree (leaves lost under a running server) is never served, nor a head of
    /// the tree's size with another root, nor a new head for leaves that do not extend the last one; the open
    /// check refuses them too.
    #[tokio::test]
    async fn a_head_the_stored_leaves_do_not_produce_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("log.sqlite3").display());
        let storage = open(&url).await;
        append(&*storage, 0, 10, 0).await;
        let log = TransLog::open(storage.clone(), Arc::new(SystemClock)).await.unwrap();
        assert_eq!(log.sth().await.unwrap().head.tree_size, 10);

        // Leaves 5.. lost (as a restore of the log tables alone from an older backup would).
        sql(&url, "DELETE FROM translog WHERE idx >= 5").await;
        let mut tx = storage.begin().await.unwrap();
        let hashes = tx.log().leaf_hashes(0, 5).await.unwrap();
        let mut frontier = Frontier::new();
        hashes.iter().for_each(|h| frontier.push(*h));
        drop(tx);
        let head = format!("UPDATE translog_head SET size = 5, frontier = X'{}'", hex(&frontier.to_bytes()));
        sql(&url, &head).await;
        let refused = |r: Result<SignedTreeHead, LogError>| {
            matches!(r, Err(LogError::HeadMismatch { head_size: 10, stored_size: 5, .. }))
        };
        assert!(refused(log.sth().await));
        assert!(matches!(
            TransLog::open(storage.clone(), Arc::new(SystemClock)).await,
            Err(LogError::HeadMismatch { head_size: 10, stored_size: 5, .. })
        ));

        // Five other leaves: the tree's size again, but not the head's root.
        append(&*storage, 5, 10, 1).await;
        assert!(matches!(log.sth().await, Err(LogError::HeadMismatch { head_size: 10, stored_size: 10, .. })));
        // Grown past the head, but not from it: no new head is signed for it either.
        append(&*storage, 10, 13, 1).await;
        assert!(matches!(log.sth().await, Err(LogError::HeadMismatch { head_size: 10, stored_size: 13, .. })));
        // The honest log grown past its head gets a new head.
        let honest = open(&format!("sqlite://{}", dir.path().join("honest.sqlite3").display())).await;
        append(&*honest, 0, 10, 0).await;
        let log = TransLog::open(honest.clone(), Arc::new(SystemClock)).await.unwrap();
        assert_eq!(log.sth().await.unwrap().head.tree_size, 10);
        append(&*honest, 10, 13, 0).await;
        assert_eq!(log.sth().await.unwrap().head.tree_size, 13);
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Runs one statement on the database, as another process would.
    async fn sql(url: &str, stmt: &str) {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(stmt.to_owned())).execute(&mut conn).await.unwrap();
    }
}
