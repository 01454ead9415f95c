//! Vouchers: operators make batches of single-use codes worth an amount; a user redeems one for credit.
//!
//! A code is 16 characters of an unambiguous base-32 alphabet (80 bits), shown once when made and stored only
//! as its SHA-256, so the database never holds a usable code and a presented code is found by its hash (no
//! comparison runs over the secret itself; the stored hash is compared again in constant time). Redeeming is
//! one conditional statement (the code still unused) and the credit entry, in one transaction; a user
//! redeeming the same code again gets the same answer, anyone else `voucher_used`. Attempts are rate limited
//! per account by the API.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::charging::{AccountId, ChargeError, IdempotencyKey};
use crate::ledger::{Ledger, LedgerError};
use crate::money::{Amount, Currency};
use crate::storage::{EntryKind, StorageError, TokenHash, VoucherBatch};

/// Crockford's base 32: no I, L, O, U; a typed O reads as 0, I and L as 1.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const CODE_LEN: usize = 16;

/// Why a voucher was not redeemed.
#[derive(Debug, thiserror::Error)]
pub enum VoucherError {
    /// No such code (or mistyped).
    #[error("no such voucher")]
    Unknown,
    /// Someone already redeemed it.
    #[error("this voucher was already used")]
    Used,
    /// Its batch expired.
    #[error("this voucher expired")]
    Expired,
    /// It is in another currency than the account.
    #[error("this voucher is in {0}, the account in another currency")]
    Currency(Currency),
    /// A ledger rule or the database failed.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

impl From<StorageError> for VoucherError {
    fn from(e: StorageError) -> Self {
        VoucherError::Ledger(e.into())
    }
}

/// The canonical form of a typed code: upper case, without spaces and dashes; `None` if it cannot be a code.
pub fn normalise(code: &str) -> Option<String> {
    let c: String = code
        .chars()
        .filter(|c| !matches!(c, ' ' | '-'))
        .flat_map(char::to_uppercase)
        .map(|c| match c {
            'O' => '0',
            'I' | 'L' => '1',
            c => c,
        })
        .collect();
    (c.len() == CODE_LEN && c.bytes().all(|b| ALPHABET.contains(&b))).then_some(c)
}

/// The hash a code is stored as.
pub fn code_hash(normalised: &str) -> TokenHash {
    TokenHash(Sha256::digest(normalised.as_bytes()).into())
}

/// A new code from the operating system's generator, grouped `XXXX-XXXX-XXXX-XXXX` for reading.
pub fn new_code() -> Result<String, ChargeError> {
    use rand::TryRngCore;
    let mut bytes = [0u8; CODE_LEN];
    rand::rngs::OsRng.try_fill_bytes(&mut bytes).map_err(|_| ChargeError::Unavailable("no randomness".into()))?;
    let chars: Vec<char> = bytes.iter().map(|b| ALPHABET[usize::from(*b & 31)] as char).collect();
    Ok(chars.chunks(4).map(|c| c.iter().collect::<String>()).collect::<Vec<_>>().join("-"))
}

/// What a redemption credited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redeemed {
    /// The amount credited.
    pub credited: Amount,
    /// The journal entry.
    pub entry_id: i64,
}

/// Makes a batch of `count` codes worth `amount` each; returns the batch and the codes (shown only now).
pub async fn create_batch(
    ledger: &Ledger,
    name: &str,
    amount: Amount,
    currency: Currency,
    count: u32,
    expires_at_ms: Option<i64>,
) -> Result<(VoucherBatch, Vec<String>), VoucherError> {
    if !amount.is_positive() || !(1..=10_000).contains(&count) || name.is_empty() || name.len() > 100 {
        return Err(LedgerError::from(ChargeError::Invalid(
            "a batch: a name, an amount above zero, 1 to 10000 codes".into(),
        ))
        .into());
    }
    let codes: Vec<String> = (0..count).map(|_| new_code()).collect::<Result<_, _>>().map_err(LedgerError::from)?;
    let hashes: Vec<TokenHash> = codes.iter().map(|c| code_hash(&normalise(c).expect("made valid"))).collect();
    let mut tx = ledger.storage().begin().await?;
    let batch = tx.vouchers().create_batch(name, amount, currency, &hashes, expires_at_ms).await?;
    tx.commit().await?;
    Ok((batch, codes))
}

/// Redeems `code` for `account` (its owner's principal scopes the repeat).
pub async fn redeem(ledger: &Ledger, account: AccountId, code: &str) -> Result<Redeemed, VoucherError> {
    let normal = normalise(code).ok_or(VoucherError::Unknown)?;
    let hash = code_hash(&normal);
    let principal = format!("voucher:{account}");
    let key = IdempotencyKey::new(hex::encode(&hash.0[..16])).map_err(LedgerError::from)?;
    let mut tx = ledger.storage().begin().await?;
    if let Some(done) = crate::ledger::replay::<Redeemed>(&mut *tx, &principal, &key, "redeem", "voucher").await? {
        return Ok(done);
    }
    let (batch, state) = tx.vouchers().find(&hash).await?.ok_or(VoucherError::Unknown)?;
    let now = crate::storage::unix_ms(ledger.clock().now());
    if state.is_some() {
        return Err(VoucherError::Used);
    }
    if batch.expires_at_ms.is_some_and(|e| e <= now) {
        return Err(VoucherError::Expired);
    }
    let a = tx
        .accounts()
        .get(account)
        .await?
        .filter(|a| a.kind.is_customer())
        .ok_or(ChargeError::AccountNotFound)
        .map_err(LedgerError::from)?;
    if a.currency != batch.currency {
        return Err(VoucherError::Currency(batch.currency));
    }
    if !tx.vouchers().mark_used(&hash, account, now).await? {
        return Err(VoucherError::Used);
    }
    let mut learned = crate::ledger::Learned::default();
    let vouchers =
        ledger.system_account(&mut *tx, &mut learned, crate::storage::SystemAccount::Vouchers, a.currency).await?;
    let legs = [(account, batch.amount), (vouchers, -batch.amount)];
    let reference = format!("voucher batch {}", batch.name);
    let entry = crate::storage::NewEntry {
        kind: EntryKind::Voucher,
        reference: &reference,
        hold: None,
        memo: "voucher",
        legs: &legs,
    };
    let entry_id = tx.journal().post(&entry).await?;
    let done = Redeemed { credited: batch.amount, entry_id };
    crate::ledger::record(&mut *tx, &principal, &key, "redeem", "voucher", &done, now).await?;
    tx.commit().await?;
    ledger.remember(learned);
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_long_unambiguous_and_normalise() {
        let c = new_code().unwrap();
        assert_eq!(c.len(), 19, "{c}");
        let n = normalise(&c).unwrap();
        assert_eq!(n.len(), 16);
        assert!(!n.contains(['O', 'I', 'L', 'U']), "{n}");
        assert_eq!(normalise(&c.to_lowercase().replace('-', " ")).unwrap(), n, "typed in lower case with spaces");
        assert_eq!(code_hash(&n), code_hash(&normalise(&c).unwrap()));
        assert!(normalise("ABCD-EFGH").is_none(), "too short");
        assert_eq!(normalise("abcd-efgh-jkmn-pqro").unwrap(), "ABCDEFGHJKMNPQR0", "O is read as 0");
        assert!(normalise("ABCD-EFGH-JKMN-PQRU").is_none(), "U is not in the alphabet");
        assert_ne!(new_code().unwrap(), c);
    }
}
