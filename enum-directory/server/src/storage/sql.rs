//! The SQL both backends share. The statements are portable (`$n` parameters, `ON CONFLICT`, `RETURNING`), so
//! the repository code is written once here and stamped out for each backend by [`impl_repositories!`]; the
//! backends differ only in how they connect, begin and migrate.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tincan_enum_core::{E164, MasterKey, NumberRecord, Service};

use super::{Result, StorageError};

/// Unix milliseconds, as stored.
pub(super) fn to_millis(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)).unwrap_or(0)
}

/// The time a stored millisecond count stands for.
pub(super) fn from_millis(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

pub(super) fn corrupt(table: &'static str, column: &'static str) -> StorageError {
    StorageError::Corrupt { table, column }
}

pub(super) fn parse_number(s: &str, table: &'static str) -> Result<E164> {
    E164::parse(s).map_err(|_| corrupt(table, "e164"))
}

pub(super) fn parse_services(s: &str) -> Result<Vec<Service>> {
    serde_json::from_str(s).map_err(|_| corrupt("numbers", "services"))
}

pub(super) fn parse_key(s: Option<String>) -> Result<Option<MasterKey>> {
    s.map(|k| MasterKey::from_base64(&k).map_err(|_| corrupt("numbers", "master_key"))).transpose()
}

pub(super) fn parse_record(s: Option<String>, column: &'static str) -> Result<Option<NumberRecord>> {
    s.map(|r| serde_json::from_str(&r).map_err(|_| corrupt("journal", column))).transpose()
}

pub(super) fn record_json(r: &NumberRecord) -> String {
    serde_json::to_string(r).expect("a NumberRecord always serialises")
}

pub(super) fn services_json(s: &[Service]) -> String {
    serde_json::to_string(s).expect("services always serialise")
}

pub(super) fn duplicate_or(e: sqlx::Error, what: &'static str) -> StorageError {
    match e.as_database_error() {
        Some(d) if d.is_unique_violation() => StorageError::Duplicate(what),
        _ => StorageError::Database(e),
    }
}

/// Implements [`Repository`](super::Repository) and every repository trait for `$repo`, a struct with fields
/// `tx: sqlx::Transaction<'static, $db>` and `clock: Arc<dyn Clock>`.
macro_rules! impl_repositories {
    ($repo:ident) => {
        use async_trait::async_trait;
        use sqlx::Row as _;
        use tincan_enum_core::{E164, NumberRecord};
        use tincan_translog::{Frontier, Hash, LogEntry, SignedTreeHead, TreeHead};
        use $crate::storage::sql::{
            corrupt, duplicate_or, from_millis, parse_key, parse_number, parse_record, parse_services, record_json,
            services_json, to_millis,
        };
        use $crate::storage::{
            CURRENT_CHUNK, CurrentNumber, DnssecKey, JournalEntry, JournalRepository, KeyAlgorithm, KeyRepository,
            KeyRole, KeyState, LogLeaf, LogRepository, NewPort, NumberRepository, NumberRow, ObjectionReason,
            PortRepository, PortRequest, PortState, Prefix, Provider, ProviderId, ProviderRepository, Repository,
            Result, SignatureUpdate, StoredNumber, TokenHash,
        };

        const PORT_COLUMNS: &str = "id, e164, losing_provider, gaining_provider, services, master_key, state, reason, \
                                    filed_at, window_ends_at, closed_at";

        const NUMBER_COLUMNS: &str = "e164, services, master_key, provider_id, version, created_at, updated_at";

        impl $repo {
            fn number_from_row(row: &<Db as sqlx::Database>::Row) -> Result<StoredNumber> {
                let e164: String = row.try_get("e164")?;
                let services: String = row.try_get("services")?;
                Ok(StoredNumber {
                    record: NumberRecord {
                        number: parse_number(&e164, "numbers")?,
                        services: parse_services(&services)?,
                        key: parse_key(row.try_get("master_key")?)?,
                    },
                    provider: ProviderId(row.try_get("provider_id")?),
                    version: row.try_get("version")?,
                    created_at: from_millis(row.try_get("created_at")?),
                    updated_at: from_millis(row.try_get("updated_at")?),
                })
            }

            async fn next_version(&mut self) -> Result<i64> {
                Ok(sqlx::query_scalar("UPDATE zone_version SET version = version + 1 WHERE id = 1 RETURNING version")
                    .fetch_one(&mut *self.tx)
                    .await?)
            }

            fn port_from_row(row: &<Db as sqlx::Database>::Row) -> Result<PortRequest> {
                let e164: String = row.try_get("e164")?;
                let services: String = row.try_get("services")?;
                let state: String = row.try_get("state")?;
                let reason: Option<String> = row.try_get("reason")?;
                let closed_at: Option<i64> = row.try_get("closed_at")?;
                Ok(PortRequest {
                    id: row.try_get("id")?,
                    number: parse_number(&e164, "port_requests")?,
                    losing: ProviderId(row.try_get("losing_provider")?),
                    gaining: ProviderId(row.try_get("gaining_provider")?),
                    services: serde_json::from_str(&services).map_err(|_| corrupt("port_requests", "services"))?,
                    key: parse_key(row.try_get("master_key")?).map_err(|_| corrupt("port_requests", "master_key"))?,
                    state: PortState::parse_stored(&state)?,
                    reason: reason.as_deref().map(ObjectionReason::parse_stored).transpose()?,
                    filed_at: from_millis(row.try_get("filed_at")?),
                    window_ends_at: from_millis(row.try_get("window_ends_at")?),
                    closed_at: closed_at.map(from_millis),
                })
            }

            /// Writes the number's new row (next version) and its journal entry; returns the stored number and
            /// the version, for the caller's log entry.
            async fn write_number(
                &mut self,
                record: &NumberRecord,
                provider: ProviderId,
                signed: Option<&[u8]>,
                log: impl FnOnce(i64, i64) -> Option<LogEntry>,
            ) -> Result<StoredNumber> {
                let now = to_millis(self.clock.now());
                let old = NumberRepository::get(self, &record.number).await?;
                let version = self.next_version().await?;
                sqlx::query(
                    "INSERT INTO numbers \
                     (e164, services, master_key, provider_id, version, created_at, updated_at, signed) \
                     VALUES ($1, $2, $3, $4, $5, $6, $6, $7) \
                     ON CONFLICT (e164) DO UPDATE SET services = excluded.services, \
                     master_key = excluded.master_key, provider_id = excluded.provider_id, \
                     version = excluded.version, updated_at = excluded.updated_at, signed = excluded.signed",
                )
                .bind(record.number.as_str())
                .bind(services_json(&record.services))
                .bind(record.key.map(|k| k.to_base64()))
                .bind(provider.0)
                .bind(version)
                .bind(now)
                .bind(signed)
                .execute(&mut *self.tx)
                .await?;
                let old_record = old.as_ref().map(|o| &o.record);
                self.journal_append(version, &record.number, old_record, Some(record), Some(provider), now, log(version, now))
                    .await?;
                Ok(StoredNumber {
                    record: record.clone(),
                    provider,
                    version,
                    created_at: old.map(|o| o.created_at).unwrap_or_else(|| from_millis(now)),
                    updated_at: from_millis(now),
                })
            }

            /// Appends the journal entry and its log leaf: `log` when given (a port), else a number change.
            #[allow(clippy::too_many_arguments)]
            async fn journal_append(
                &mut self,
                version: i64,
                number: &E164,
                old: Option<&NumberRecord>,
                new: Option<&NumberRecord>,
                provider: Option<ProviderId>,
                at: i64,
                log: Option<LogEntry>,
            ) -> Result<()> {
                sqlx::query(
                    "INSERT INTO journal (version, e164, old_record, new_record, provider_id, at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(version)
                .bind(number.as_str())
                .bind(old.map(record_json))
                .bind(new.map(record_json))
                .bind(provider.map(|p| p.0))
                .bind(at)
                .execute(&mut *self.tx)
                .await?;
                let entry = log.unwrap_or_else(|| LogEntry::Number {
                    version,
                    number: number.clone(),
                    record: new.cloned(),
                    provider: provider.map(|p| p.0),
                    at_ms: at,
                });
                self.append(&entry).await?;
                Ok(())
            }

            fn leaf_from_row(row: &<Db as sqlx::Database>::Row) -> Result<LogLeaf> {
                let hash: Vec<u8> = row.try_get("leaf_hash")?;
                let e164: Option<String> = row.try_get("e164")?;
                Ok(LogLeaf {
                    index: u64::try_from(row.try_get::<i64, _>("idx")?).map_err(|_| corrupt("translog", "idx"))?,
                    entry: row.try_get("entry")?,
                    leaf_hash: hash.try_into().map_err(|_| corrupt("translog", "leaf_hash"))?,
                    number: e164.map(|n| parse_number(&n, "translog")).transpose()?,
                })
            }

            async fn provider_from_row(&mut self, row: &<Db as sqlx::Database>::Row) -> Result<Provider> {
                let id: i64 = row.try_get("id")?;
                let hash: Vec<u8> = row.try_get("token_hash")?;
                let hash: [u8; 32] = hash.try_into().map_err(|_| corrupt("providers", "token_hash"))?;
                let prefixes: Vec<String> =
                    sqlx::query_scalar("SELECT prefix FROM provider_prefixes WHERE provider_id = $1 ORDER BY prefix")
                        .bind(id)
                        .fetch_all(&mut *self.tx)
                        .await?;
                let prefixes = prefixes
                    .into_iter()
                    .map(|p| p.parse::<Prefix>().map_err(|_| corrupt("provider_prefixes", "prefix")))
                    .collect::<Result<Vec<_>>>()?;
                Ok(Provider {
                    id: ProviderId(id),
                    name: row.try_get("name")?,
                    token_hash: TokenHash(hash),
                    prefixes,
                    created_at: from_millis(row.try_get("created_at")?),
                })
            }

            fn key_from_row(row: &<Db as sqlx::Database>::Row) -> Result<DnssecKey> {
                Ok(DnssecKey {
                    id: row.try_get("id")?,
                    apex: row.try_get("apex")?,
                    role: KeyRole::parse_stored(row.try_get("role")?)?,
                    algorithm: KeyAlgorithm::parse_stored(row.try_get("algorithm")?)?,
                    pkcs8: row.try_get("pkcs8")?,
                    state: KeyState::parse_stored(row.try_get("state")?)?,
                    created_at: from_millis(row.try_get("created_at")?),
                    changed_at: from_millis(row.try_get("changed_at")?),
                })
            }
        }

        #[async_trait]
        impl Repository for $repo {
            fn numbers(&mut self) -> &mut dyn NumberRepository {
                self
            }
            fn providers(&mut self) -> &mut dyn ProviderRepository {
                self
            }
            fn keys(&mut self) -> &mut dyn KeyRepository {
                self
            }
            fn journal(&mut self) -> &mut dyn JournalRepository {
                self
            }
            fn log(&mut self) -> &mut dyn LogRepository {
                self
            }
            fn ports(&mut self) -> &mut dyn PortRepository {
                self
            }
            async fn commit(self: Box<Self>) -> Result<()> {
                self.tx.commit().await?;
                Ok(())
            }
        }

        #[async_trait]
        impl NumberRepository for $repo {
            async fn get(&mut self, number: &E164) -> Result<Option<StoredNumber>> {
                let sql = sqlx::AssertSqlSafe(format!("SELECT {NUMBER_COLUMNS} FROM numbers WHERE e164 = $1"));
                let row = sqlx::query(sql).bind(number.as_str()).fetch_optional(&mut *self.tx).await?;
                row.as_ref().map(Self::number_from_row).transpose()
            }

            async fn put_signed(
                &mut self,
                record: &NumberRecord,
                provider: ProviderId,
                signed: Option<&[u8]>,
            ) -> Result<StoredNumber> {
                self.write_number(record, provider, signed, |_, _| None).await
            }

            async fn port_signed(
                &mut self,
                record: &NumberRecord,
                from: (ProviderId, &str),
                to: (ProviderId, &str),
                signed: Option<&[u8]>,
            ) -> Result<StoredNumber> {
                let party = |(id, name): (ProviderId, &str)| tincan_translog::PortParty { provider: id.0, name: name.to_owned() };
                let (from, to) = (party(from), party(to));
                self.write_number(record, ProviderId(to.provider), signed, |version, at_ms| {
                    Some(LogEntry::Port { version, number: record.number.clone(), record: record.clone(), from, to, at_ms })
                })
                .await
            }

            async fn delete(&mut self, number: &E164, provider: Option<ProviderId>) -> Result<Option<StoredNumber>> {
                let Some(old) = NumberRepository::get(self, number).await? else { return Ok(None) };
                let now = to_millis(self.clock.now());
                let version = self.next_version().await?;
                sqlx::query("DELETE FROM numbers WHERE e164 = $1").bind(number.as_str()).execute(&mut *self.tx).await?;
                self.journal_append(version, number, Some(&old.record), None, provider, now, None).await?;
                Ok(Some(old))
            }

            async fn all(&mut self) -> Result<Vec<StoredNumber>> {
                let sql = sqlx::AssertSqlSafe(format!("SELECT {NUMBER_COLUMNS} FROM numbers ORDER BY e164"));
                let rows = sqlx::query(sql).fetch_all(&mut *self.tx).await?;
                rows.iter().map(Self::number_from_row).collect()
            }

            async fn page(&mut self, after: Option<&E164>, limit: u32) -> Result<Vec<StoredNumber>> {
                let sql = sqlx::AssertSqlSafe(format!(
                    "SELECT {NUMBER_COLUMNS} FROM numbers WHERE e164 > $1 ORDER BY e164 LIMIT $2"
                ));
                let rows = sqlx::query(sql)
                    .bind(after.map_or("", |n| n.as_str()))
                    .bind(i64::from(limit))
                    .fetch_all(&mut *self.tx)
                    .await?;
                rows.iter().map(Self::number_from_row).collect()
            }

            async fn scan(
                &mut self,
                each: &mut (dyn for<'r> FnMut(NumberRow<'r>) -> Result<()> + Send),
            ) -> Result<u64> {
                use futures::TryStreamExt as _;
                let mut rows = sqlx::query("SELECT e164, provider_id, signed FROM numbers").fetch(&mut *self.tx);
                let mut n = 0;
                while let Some(row) = rows.try_next().await? {
                    each(NumberRow {
                        e164: row.try_get(0)?,
                        provider: ProviderId(row.try_get(1)?),
                        signed: row.try_get(2)?,
                    })?;
                    n += 1;
                }
                Ok(n)
            }

            async fn count(&mut self) -> Result<u64> {
                let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM numbers").fetch_one(&mut *self.tx).await?;
                Ok(u64::try_from(n).unwrap_or(0))
            }

            async fn current(&mut self, numbers: &[E164]) -> Result<Vec<CurrentNumber>> {
                let mut out = Vec::with_capacity(numbers.len());
                for chunk in numbers.chunks(CURRENT_CHUNK) {
                    let params: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
                    // Only placeholders are formatted in; the numbers are bound.
                    let sql = sqlx::AssertSqlSafe(format!(
                        "SELECT e164, services, master_key, version, signed FROM numbers WHERE e164 IN ({})",
                        params.join(", ")
                    ));
                    let mut q = sqlx::query(sql);
                    for n in chunk {
                        q = q.bind(n.as_str());
                    }
                    for row in q.fetch_all(&mut *self.tx).await? {
                        let e164: String = row.try_get("e164")?;
                        let services: String = row.try_get("services")?;
                        out.push(CurrentNumber {
                            record: NumberRecord {
                                number: parse_number(&e164, "numbers")?,
                                services: parse_services(&services)?,
                                key: parse_key(row.try_get("master_key")?)?,
                            },
                            version: row.try_get("version")?,
                            signed: row.try_get("signed")?,
                        });
                    }
                }
                Ok(out)
            }

            async fn store_signatures(&mut self, updates: &[SignatureUpdate]) -> Result<u64> {
                let mut n = 0;
                for u in updates {
                    let done = sqlx::query("UPDATE numbers SET signed = $1 WHERE e164 = $2 AND version = $3")
                        .bind(&u.signed[..])
                        .bind(u.number.as_str())
                        .bind(u.version)
                        .execute(&mut *self.tx)
                        .await?;
                    n += done.rows_affected();
                }
                Ok(n)
            }
        }

        #[async_trait]
        impl ProviderRepository for $repo {
            async fn add(&mut self, name: &str, token_hash: TokenHash, prefixes: &[Prefix]) -> Result<Provider> {
                let now = to_millis(self.clock.now());
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO providers (name, token_hash, created_at) VALUES ($1, $2, $3) RETURNING id",
                )
                .bind(name)
                .bind(&token_hash.0[..])
                .bind(now)
                .fetch_one(&mut *self.tx)
                .await
                .map_err(|e| duplicate_or(e, "provider"))?;
                let mut sorted = prefixes.to_vec();
                sorted.sort();
                sorted.dedup();
                for p in &sorted {
                    sqlx::query("INSERT INTO provider_prefixes (provider_id, prefix) VALUES ($1, $2)")
                        .bind(id)
                        .bind(p.as_str())
                        .execute(&mut *self.tx)
                        .await?;
                }
                Ok(Provider {
                    id: ProviderId(id),
                    name: name.to_owned(),
                    token_hash,
                    prefixes: sorted,
                    created_at: from_millis(now),
                })
            }

            async fn by_token_hash(&mut self, hash: &TokenHash) -> Result<Option<Provider>> {
                let row = sqlx::query("SELECT id, name, token_hash, created_at FROM providers WHERE token_hash = $1")
                    .bind(&hash.0[..])
                    .fetch_optional(&mut *self.tx)
                    .await?;
                let Some(row) = row else { return Ok(None) };
                let p = self.provider_from_row(&row).await?;
                Ok(p.token_hash.matches(hash).then_some(p))
            }

            async fn by_id(&mut self, id: ProviderId) -> Result<Option<Provider>> {
                let row = sqlx::query("SELECT id, name, token_hash, created_at FROM providers WHERE id = $1")
                    .bind(id.0)
                    .fetch_optional(&mut *self.tx)
                    .await?;
                match row {
                    Some(row) => Ok(Some(self.provider_from_row(&row).await?)),
                    None => Ok(None),
                }
            }

            async fn by_name(&mut self, name: &str) -> Result<Option<Provider>> {
                let row = sqlx::query("SELECT id, name, token_hash, created_at FROM providers WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&mut *self.tx)
                    .await?;
                match row {
                    Some(row) => Ok(Some(self.provider_from_row(&row).await?)),
                    None => Ok(None),
                }
            }

            async fn list(&mut self) -> Result<Vec<Provider>> {
                let rows = sqlx::query("SELECT id, name, token_hash, created_at FROM providers ORDER BY name")
                    .fetch_all(&mut *self.tx)
                    .await?;
                let mut out = Vec::with_capacity(rows.len());
                for row in &rows {
                    out.push(self.provider_from_row(row).await?);
                }
                Ok(out)
            }

            async fn lock_prefixes(&mut self) -> Result<()> {
                if let Some(lock) = Self::LOCK_PREFIXES {
                    sqlx::query(lock).execute(&mut *self.tx).await?;
                }
                Ok(())
            }

            async fn set_prefixes(&mut self, id: ProviderId, prefixes: &[Prefix]) -> Result<()> {
                sqlx::query("DELETE FROM provider_prefixes WHERE provider_id = $1")
                    .bind(id.0)
                    .execute(&mut *self.tx)
                    .await?;
                let mut sorted = prefixes.to_vec();
                sorted.sort();
                sorted.dedup();
                for p in &sorted {
                    sqlx::query("INSERT INTO provider_prefixes (provider_id, prefix) VALUES ($1, $2)")
                        .bind(id.0)
                        .bind(p.as_str())
                        .execute(&mut *self.tx)
                        .await?;
                }
                Ok(())
            }
        }

        #[async_trait]
        impl KeyRepository for $repo {
            async fn add(
                &mut self,
                apex: &str,
                role: KeyRole,
                algorithm: KeyAlgorithm,
                pkcs8: &[u8],
                state: KeyState,
            ) -> Result<DnssecKey> {
                let now = to_millis(self.clock.now());
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO dnssec_keys (apex, role, algorithm, pkcs8, state, created_at, changed_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING id",
                )
                .bind(apex)
                .bind(role.as_str())
                .bind(algorithm.as_str())
                .bind(pkcs8)
                .bind(state.as_str())
                .bind(now)
                .fetch_one(&mut *self.tx)
                .await?;
                Ok(DnssecKey {
                    id,
                    apex: apex.to_owned(),
                    role,
                    algorithm,
                    pkcs8: pkcs8.to_vec(),
                    state,
                    created_at: from_millis(now),
                    changed_at: from_millis(now),
                })
            }

            async fn for_apex(&mut self, apex: &str) -> Result<Vec<DnssecKey>> {
                let rows = sqlx::query(
                    "SELECT id, apex, role, algorithm, pkcs8, state, created_at, changed_at FROM dnssec_keys \
                     WHERE apex = $1 ORDER BY id",
                )
                .bind(apex)
                .fetch_all(&mut *self.tx)
                .await?;
                rows.iter().map(Self::key_from_row).collect()
            }

            async fn set_state(&mut self, id: i64, state: KeyState) -> Result<bool> {
                let done = sqlx::query("UPDATE dnssec_keys SET state = $1, changed_at = $2 WHERE id = $3")
                    .bind(state.as_str())
                    .bind(to_millis(self.clock.now()))
                    .bind(id)
                    .execute(&mut *self.tx)
                    .await?;
                Ok(done.rows_affected() > 0)
            }
        }

        #[async_trait]
        impl JournalRepository for $repo {
            async fn current_version(&mut self) -> Result<i64> {
                Ok(sqlx::query_scalar("SELECT version FROM zone_version WHERE id = 1").fetch_one(&mut *self.tx).await?)
            }

            async fn since(&mut self, after: i64, limit: u32) -> Result<Vec<JournalEntry>> {
                let rows = sqlx::query(
                    "SELECT version, e164, old_record, new_record, provider_id, at FROM journal \
                     WHERE version > $1 ORDER BY version LIMIT $2",
                )
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(&mut *self.tx)
                .await?;
                rows.iter()
                    .map(|row| {
                        let e164: String = row.try_get("e164")?;
                        Ok(JournalEntry {
                            version: row.try_get("version")?,
                            number: parse_number(&e164, "journal")?,
                            old: parse_record(row.try_get("old_record")?, "old_record")?,
                            new: parse_record(row.try_get("new_record")?, "new_record")?,
                            provider: row.try_get::<Option<i64>, _>("provider_id")?.map(ProviderId),
                            at: from_millis(row.try_get("at")?),
                        })
                    })
                    .collect()
            }
        }

        const LEAF_COLUMNS: &str = "idx, entry, leaf_hash, e164";

        #[async_trait]
        impl PortRepository for $repo {
            async fn file(&mut self, port: &NewPort) -> Result<PortRequest> {
                let now = to_millis(self.clock.now());
                let sql = sqlx::AssertSqlSafe(format!(
                    "INSERT INTO port_requests (e164, losing_provider, gaining_provider, services, master_key, state, \
                     filed_at, window_ends_at) VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7) RETURNING {PORT_COLUMNS}"
                ));
                let row = sqlx::query(sql)
                    .bind(port.number.as_str())
                    .bind(port.losing.0)
                    .bind(port.gaining.0)
                    .bind(services_json(&port.services))
                    .bind(port.key.map(|k| k.to_base64()))
                    .bind(now)
                    .bind(to_millis(port.window_ends_at))
                    .fetch_one(&mut *self.tx)
                    .await
                    .map_err(|e| duplicate_or(e, "an open port request for this number"))?;
                Self::port_from_row(&row)
            }

            async fn amend(
                &mut self,
                id: i64,
                services: &[tincan_enum_core::Service],
                key: Option<tincan_enum_core::MasterKey>,
            ) -> Result<bool> {
                let done = sqlx::query(
                    "UPDATE port_requests SET services = $1, master_key = $2 WHERE id = $3 AND state = 'pending'",
                )
                .bind(services_json(services))
                .bind(key.map(|k| k.to_base64()))
                .bind(id)
                .execute(&mut *self.tx)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn get(&mut self, id: i64) -> Result<Option<PortRequest>> {
                let sql = sqlx::AssertSqlSafe(format!("SELECT {PORT_COLUMNS} FROM port_requests WHERE id = $1"));
                let row = sqlx::query(sql).bind(id).fetch_optional(&mut *self.tx).await?;
                row.as_ref().map(Self::port_from_row).transpose()
            }

            async fn open_for(&mut self, number: &E164) -> Result<Option<PortRequest>> {
                let sql = sqlx::AssertSqlSafe(format!(
                    "SELECT {PORT_COLUMNS} FROM port_requests WHERE e164 = $1 AND state = 'pending'"
                ));
                let row = sqlx::query(sql).bind(number.as_str()).fetch_optional(&mut *self.tx).await?;
                row.as_ref().map(Self::port_from_row).transpose()
            }

            async fn for_provider(
                &mut self,
                provider: ProviderId,
                open_only: bool,
                limit: u32,
            ) -> Result<Vec<PortRequest>> {
                let sql = sqlx::AssertSqlSafe(format!(
                    "SELECT {PORT_COLUMNS} FROM port_requests WHERE (losing_provider = $1 OR gaining_provider = $1) \
                     AND (state = 'pending' OR NOT $2) ORDER BY id LIMIT $3"
                ));
                let rows = sqlx::query(sql)
                    .bind(provider.0)
                    .bind(open_only)
                    .bind(i64::from(limit))
                    .fetch_all(&mut *self.tx)
                    .await?;
                rows.iter().map(Self::port_from_row).collect()
            }

            async fn close(&mut self, id: i64, state: PortState, reason: Option<ObjectionReason>) -> Result<bool> {
                let now = to_millis(self.clock.now());
                let done = sqlx::query(
                    "UPDATE port_requests SET state = $1, reason = $2, closed_at = $3 \
                     WHERE id = $4 AND state = 'pending'",
                )
                .bind(state.as_str())
                .bind(reason.map(ObjectionReason::as_str))
                .bind(now)
                .bind(id)
                .execute(&mut *self.tx)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn due(&mut self, now: std::time::SystemTime, limit: u32) -> Result<Vec<PortRequest>> {
                let sql = sqlx::AssertSqlSafe(format!(
                    "SELECT {PORT_COLUMNS} FROM port_requests WHERE state = 'pending' AND window_ends_at <= $1 \
                     ORDER BY window_ends_at, id LIMIT $2"
                ));
                let rows =
                    sqlx::query(sql).bind(to_millis(now)).bind(i64::from(limit)).fetch_all(&mut *self.tx).await?;
                rows.iter().map(Self::port_from_row).collect()
            }
        }

        #[async_trait]
        impl LogRepository for $repo {
            async fn append(&mut self, entry: &LogEntry) -> Result<u64> {
                // Taking the next index first locks the head row, so concurrent appends queue up here.
                let row = sqlx::query("UPDATE translog_head SET size = size + 1 WHERE id = 1 RETURNING size, frontier")
                    .fetch_one(&mut *self.tx)
                    .await?;
                let size: i64 = row.try_get("size")?;
                let index = u64::try_from(size - 1).map_err(|_| corrupt("translog_head", "size"))?;
                let bytes: Vec<u8> = row.try_get("frontier")?;
                let mut frontier =
                    Frontier::from_bytes(index, &bytes).map_err(|_| corrupt("translog_head", "frontier"))?;
                let text = entry.to_json();
                let leaf = tincan_translog::leaf_hash(text.as_bytes());
                let version = entry.version();
                sqlx::query("INSERT INTO translog (idx, entry, leaf_hash, e164, version) VALUES ($1, $2, $3, $4, $5)")
                    .bind(size - 1)
                    .bind(&text)
                    .bind(&leaf[..])
                    .bind(entry.number().map(|n| n.as_str().to_owned()))
                    .bind(version)
                    .execute(&mut *self.tx)
                    .await?;
                frontier.push(leaf);
                sqlx::query("UPDATE translog_head SET frontier = $1 WHERE id = 1")
                    .bind(frontier.to_bytes())
                    .execute(&mut *self.tx)
                    .await?;
                Ok(index)
            }

            async fn frontier(&mut self) -> Result<Frontier> {
                let row = sqlx::query("SELECT size, frontier FROM translog_head WHERE id = 1")
                    .fetch_one(&mut *self.tx)
                    .await?;
                let size =
                    u64::try_from(row.try_get::<i64, _>("size")?).map_err(|_| corrupt("translog_head", "size"))?;
                let bytes: Vec<u8> = row.try_get("frontier")?;
                Frontier::from_bytes(size, &bytes).map_err(|_| corrupt("translog_head", "frontier"))
            }

            async fn leaf_hashes(&mut self, start: u64, end: u64) -> Result<Vec<Hash>> {
                let rows: Vec<Vec<u8>> =
                    sqlx::query_scalar("SELECT leaf_hash FROM translog WHERE idx >= $1 AND idx < $2 ORDER BY idx")
                        .bind(i64::try_from(start).unwrap_or(i64::MAX))
                        .bind(i64::try_from(end).unwrap_or(i64::MAX))
                        .fetch_all(&mut *self.tx)
                        .await?;
                rows.into_iter().map(|h| h.try_into().map_err(|_| corrupt("translog", "leaf_hash"))).collect()
            }

            async fn leaves(&mut self, start: u64, end: u64, limit: u32) -> Result<Vec<LogLeaf>> {
                let sql = sqlx::AssertSqlSafe(format!(
                    "SELECT {LEAF_COLUMNS} FROM translog WHERE idx >= $1 AND idx < $2 ORDER BY idx LIMIT $3"
                ));
                let rows = sqlx::query(sql)
                    .bind(i64::try_from(start).unwrap_or(i64::MAX))
                    .bind(i64::try_from(end).unwrap_or(i64::MAX))
                    .bind(i64::from(limit))
                    .fetch_all(&mut *self.tx)
                    .await?;
                rows.iter().map(Self::leaf_from_row).collect()
            }

            async fn find(&mut self, number: &E164, version: Option<i64>, below: u64) -> Result<Option<LogLeaf>> {
                let below = i64::try_from(below).unwrap_or(i64::MAX);
                let row = match version {
                    Some(v) => {
                        let sql = sqlx::AssertSqlSafe(format!(
                            "SELECT {LEAF_COLUMNS} FROM translog WHERE e164 = $1 AND version = $2 AND idx < $3 \
                             ORDER BY idx DESC LIMIT 1"
                        ));
                        sqlx::query(sql).bind(number.as_str()).bind(v).bind(below).fetch_optional(&mut *self.tx).await?
                    }
                    None => {
                        let sql = sqlx::AssertSqlSafe(format!(
                            "SELECT {LEAF_COLUMNS} FROM translog WHERE e164 = $1 AND idx < $2 ORDER BY idx DESC LIMIT 1"
                        ));
                        sqlx::query(sql).bind(number.as_str()).bind(below).fetch_optional(&mut *self.tx).await?
                    }
                };
                row.as_ref().map(Self::leaf_from_row).transpose()
            }

            async fn latest_sth(&mut self) -> Result<Option<SignedTreeHead>> {
                let row = sqlx::query(
                    "SELECT tree_size, timestamp_ms, root_hash, signature FROM translog_sth \
                     ORDER BY tree_size DESC LIMIT 1",
                )
                .fetch_optional(&mut *self.tx)
                .await?;
                row.as_ref().map(sth_from_row).transpose()
            }

            async fn store_sth(&mut self, sth: &SignedTreeHead) -> Result<()> {
                sqlx::query(
                    "INSERT INTO translog_sth (tree_size, timestamp_ms, root_hash, signature) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (tree_size) DO NOTHING",
                )
                .bind(i64::try_from(sth.head.tree_size).unwrap_or(i64::MAX))
                .bind(i64::try_from(sth.head.timestamp_ms).unwrap_or(i64::MAX))
                .bind(&sth.head.root_hash[..])
                .bind(&sth.signature)
                .execute(&mut *self.tx)
                .await?;
                Ok(())
            }

            async fn signing_seed(&mut self) -> Result<Option<[u8; 32]>> {
                let seed: Option<Vec<u8>> = sqlx::query_scalar("SELECT seed FROM log_keys ORDER BY id LIMIT 1")
                    .fetch_optional(&mut *self.tx)
                    .await?;
                seed.map(|s| s.try_into().map_err(|_| corrupt("log_keys", "seed"))).transpose()
            }

            async fn add_signing_seed(&mut self, seed: &[u8; 32]) -> Result<()> {
                sqlx::query("INSERT INTO log_keys (seed, created_at) VALUES ($1, $2)")
                    .bind(&seed[..])
                    .bind(to_millis(self.clock.now()))
                    .execute(&mut *self.tx)
                    .await?;
                Ok(())
            }
        }

        fn sth_from_row(row: &<Db as sqlx::Database>::Row) -> Result<SignedTreeHead> {
            let root: Vec<u8> = row.try_get("root_hash")?;
            Ok(SignedTreeHead {
                head: TreeHead {
                    tree_size: u64::try_from(row.try_get::<i64, _>("tree_size")?)
                        .map_err(|_| corrupt("translog_sth", "tree_size"))?,
                    timestamp_ms: u64::try_from(row.try_get::<i64, _>("timestamp_ms")?)
                        .map_err(|_| corrupt("translog_sth", "timestamp_ms"))?,
                    root_hash: root.try_into().map_err(|_| corrupt("translog_sth", "root_hash"))?,
                },
                signature: row.try_get("signature")?,
            })
        }
    };
}
pub(super) use impl_repositories;
