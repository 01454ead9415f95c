//! The directory's transparency log, over storage: every accepted change is a leaf (number changes are appended
//! by the storage in the transaction that makes them, key changes by [`crate::keys`]); this module signs tree
//! heads with the log's own Ed25519 key (made on first use and kept in storage with the zone keys) and answers
//! proofs.
//!
//! Tree heads are signed when one is asked for and the tree has grown since the last one, so a burst of changes
//! (an import) is covered by one head; every head signed is stored, so a size is only ever signed once.
//! Proofs are computed from the stored leaf hashes (O(n) reads per proof).

use std::sync::Arc;

use ring::rand::{SecureRandom, SystemRandom};
use tincan_common::Clock;
use tincan_enum_core::E164;
use tincan_translog::wire::{ConsistencyProof, InclusionProof};
use tincan_translog::{SignedTreeHead, TreeHead, TreeHeadSigner, consistency_proof, inclusion_proof, root};

use crate::storage::{LogLeaf, Storage, StorageError};

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
}

/// The log of one directory.
#[derive(Debug)]
pub struct TransLog {
    storage: Arc<dyn Storage>,
    signer: TreeHeadSigner,
    clock: Arc<dyn Clock>,
}

impl TransLog {
    /// Loads the log's signing key, making and storing one on first use.
    pub async fn open(storage: Arc<dyn Storage>, clock: Arc<dyn Clock>) -> Result<TransLog, LogError> {
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
        Ok(TransLog { storage, signer: TreeHeadSigner::from_seed(&seed), clock })
    }

    /// The log's public key, unpadded base64 (what auditors and clients pin).
    pub fn public_key(&self) -> String {
        self.signer.verifier().to_base64()
    }

    /// The signed head of the current tree, signing it now if this size was never signed.
    pub async fn sth(&self) -> Result<SignedTreeHead, LogError> {
        let mut tx = self.storage.begin().await?;
        let frontier = tx.log().frontier().await?;
        if let Some(sth) = tx.log().sth_at(frontier.size()).await? {
            return Ok(sth);
        }
        let timestamp_ms = self
            .clock
            .now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        let sth = self.signer.sign(TreeHead { tree_size: frontier.size(), timestamp_ms, root_hash: frontier.root() });
        tx.log().store_sth(&sth).await?;
        tx.commit().await?;
        Ok(sth)
    }

    /// The proof that the newest entry of `number` (of zone version `version`, if given) is in the current
    /// tree; `None` when the log holds no such entry.
    pub async fn inclusion(&self, number: &E164, version: Option<i64>) -> Result<Option<InclusionProof>, LogError> {
        let sth = self.sth().await?;
        let size = sth.head.tree_size;
        let mut tx = self.storage.begin().await?;
        let Some(leaf) = tx.log().find(number, version, size).await? else { return Ok(None) };
        let hashes = tx.log().leaf_hashes(size).await?;
        drop(tx);
        let index = usize::try_from(leaf.index).map_err(|_| LogError::OutOfRange("index"))?;
        let proof = inclusion_proof(&hashes, index)?;
        Ok(Some(InclusionProof { index: leaf.index, entry: leaf.entry, proof, sth }))
    }

    /// The proof that the tree of `from` leaves is a prefix of the tree of `to` leaves (`to` at most the current
    /// size).
    pub async fn consistency(&self, from: u64, to: u64) -> Result<ConsistencyProof, LogError> {
        if from > to {
            return Err(LogError::OutOfRange("from is larger than to"));
        }
        let mut tx = self.storage.begin().await?;
        if to > tx.log().frontier().await?.size() {
            return Err(LogError::OutOfRange("to is larger than the tree"));
        }
        let hashes = tx.log().leaf_hashes(to).await?;
        drop(tx);
        let first = usize::try_from(from).map_err(|_| LogError::OutOfRange("from"))?;
        Ok(ConsistencyProof {
            from,
            to,
            from_root: root(&hashes[..first]),
            to_root: root(&hashes),
            proof: consistency_proof(&hashes, first)?,
        })
    }

    /// Leaves `start..end` (at most `limit`), as stored.
    pub async fn leaves(&self, start: u64, end: u64, limit: u32) -> Result<Vec<LogLeaf>, LogError> {
        if start > end {
            return Err(LogError::OutOfRange("start is larger than end"));
        }
        let mut tx = self.storage.begin().await?;
        Ok(tx.log().leaves(start, end, limit).await?)
    }
}
