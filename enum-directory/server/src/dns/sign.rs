//! RRSIG signing input (RFC 4034 §3.1.8.1) and RRSIG rdata, over RRsets kept in wire format.

use super::keys::{KeyError, KeyRole, ZoneKeys};

/// One cached signature: everything of the RRSIG that is not fixed by the zone and the RRset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sig {
    pub inception: u32,
    pub expiration: u32,
    pub key_tag: u16,
    pub bytes: [u8; 64],
}

/// What an RRSIG covers, apart from the signature times.
pub(crate) struct Covered<'a> {
    pub rtype: u16,
    pub algorithm: u8,
    /// Labels of the owner name (root not counted).
    pub labels: u8,
    pub ttl: u32,
    /// The signer (apex) in lowercase wire format.
    pub signer: &'a [u8],
}

/// The RRSIG rdata without the signature field.
pub(crate) fn rrsig_head(c: &Covered<'_>, expiration: u32, inception: u32, key_tag: u16) -> Vec<u8> {
    let mut out = Vec::with_capacity(18 + c.signer.len() + 64);
    write_rrsig_head(&mut out, c, expiration, inception, key_tag);
    out
}

fn write_rrsig_head(out: &mut Vec<u8>, c: &Covered<'_>, expiration: u32, inception: u32, key_tag: u16) {
    let mut fixed = [0u8; 18];
    fixed[..2].copy_from_slice(&c.rtype.to_be_bytes());
    fixed[2] = c.algorithm;
    fixed[3] = c.labels;
    fixed[4..8].copy_from_slice(&c.ttl.to_be_bytes());
    fixed[8..12].copy_from_slice(&expiration.to_be_bytes());
    fixed[12..16].copy_from_slice(&inception.to_be_bytes());
    fixed[16..18].copy_from_slice(&key_tag.to_be_bytes());
    out.extend_from_slice(&fixed);
    out.extend_from_slice(c.signer);
}

/// Appends the full RRSIG rdata of a cached signature to `out`.
pub(crate) fn write_rrsig_rdata(out: &mut Vec<u8>, c: &Covered<'_>, sig: &Sig) {
    write_rrsig_head(out, c, sig.expiration, sig.inception, sig.key_tag);
    out.extend_from_slice(&sig.bytes);
}

/// Appends the full RRSIG rdata of a signature in an entry's stored form ([`super::entry::SetRef::sig`]),
/// copying its fields straight from the entry.
pub(crate) fn write_rrsig_stored(out: &mut Vec<u8>, c: &Covered<'_>, stored: &[u8; super::entry::SIG_LEN]) {
    let mut fixed = [0u8; 18];
    fixed[..2].copy_from_slice(&c.rtype.to_be_bytes());
    fixed[2] = c.algorithm;
    fixed[3] = c.labels;
    fixed[4..8].copy_from_slice(&c.ttl.to_be_bytes());
    fixed[8..12].copy_from_slice(&stored[5..9]); // expiration
    fixed[12..16].copy_from_slice(&stored[1..5]); // inception
    fixed[16..18].copy_from_slice(&stored[9..11]); // key tag
    out.extend_from_slice(&fixed);
    out.extend_from_slice(c.signer);
    out.extend_from_slice(&stored[11..]);
}

/// Iterates the rdata of an RRset stored as `[len u16][rdata]…`.
pub(crate) fn rdatas(set: &[u8]) -> impl Iterator<Item = &[u8]> + Clone {
    let mut rest = set;
    std::iter::from_fn(move || {
        if rest.len() < 2 {
            return None;
        }
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let (rd, tail) = rest[2..].split_at(len.min(rest.len() - 2));
        rest = tail;
        Some(rd)
    })
}

/// Packs rdata into the `[len u16][rdata]…` form in canonical order (RFC 4034 §6.3), dropping duplicates.
pub(crate) fn pack_set(mut rdata: Vec<Vec<u8>>) -> Box<[u8]> {
    rdata.sort();
    rdata.dedup();
    let mut out = Vec::with_capacity(rdata.iter().map(|r| r.len() + 2).sum());
    for r in rdata {
        out.extend_from_slice(&(r.len() as u16).to_be_bytes());
        out.extend_from_slice(&r);
    }
    out.into_boxed_slice()
}

/// Signs an RRset (its rdata in canonical order) owned by `owner` (lowercase wire).
pub(crate) fn sign_set(
    keys: &ZoneKeys,
    role: KeyRole,
    c: &Covered<'_>,
    owner: &[u8],
    set: &[u8],
    inception: u32,
    expiration: u32,
) -> Result<Sig, KeyError> {
    sign_rdatas(keys, role, c, owner, rdatas(set), inception, expiration)
}

/// [`sign_set`] with the rdata given one by one, in canonical order (an online-signed NSEC is one).
pub(crate) fn sign_rdatas<'r>(
    keys: &ZoneKeys,
    role: KeyRole,
    c: &Covered<'_>,
    owner: &[u8],
    rdatas: impl IntoIterator<Item = &'r [u8]> + Clone,
    inception: u32,
    expiration: u32,
) -> Result<Sig, KeyError> {
    let key_tag = match role {
        KeyRole::Ksk => keys.ksk().key_tag(),
        KeyRole::Zsk => keys.zsk().key_tag(),
    };
    let mut data = rrsig_head(c, expiration, inception, key_tag);
    data.reserve_exact(rdatas.clone().into_iter().map(|rd| owner.len() + 10 + rd.len()).sum());
    for rd in rdatas {
        data.extend_from_slice(owner);
        data.extend_from_slice(&c.rtype.to_be_bytes());
        data.extend_from_slice(&super::wire::CLASS_IN.to_be_bytes());
        data.extend_from_slice(&c.ttl.to_be_bytes());
        data.extend_from_slice(&(rd.len() as u16).to_be_bytes());
        data.extend_from_slice(rd);
    }
    let bytes = keys.sign_with(role, &data)?;
    Ok(Sig { inception, expiration, key_tag, bytes })
}

/// The full RRSIG rdata of a cached signature.
pub(crate) fn rrsig_rdata(c: &Covered<'_>, sig: &Sig) -> Vec<u8> {
    let mut out = Vec::with_capacity(18 + c.signer.len() + 64);
    write_rrsig_rdata(&mut out, c, sig);
    out
}
