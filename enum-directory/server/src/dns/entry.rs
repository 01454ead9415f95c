//! One number's signed RRsets (NAPTR, TXT) in a single allocation: the form the zone keeps in memory and the
//! form persisted with the number (`numbers.signed`), so a start-up only copies bytes and never signs.
//!
//! Layout (all integers big-endian):
//! ```text
//! [format = 1][algorithm][ttl u32]
//! [naptr_len u16][NAPTR set: ([len u16][rdata])…]   naptr_len 0: no NAPTR RRset
//! [txt_len u16][TXT set]                            txt_len 0: no TXT RRset
//! per present set (NAPTR first): [signed 0|1][inception u32][expiration u32][key tag u16][signature 64]
//! ```
//! The algorithm and TTL are what the signatures cover besides the owner and rdata: when they no longer match
//! the zone (a changed `record_ttl`, a new algorithm or key tag) the signature is dropped at load and re-made.

use super::sign::Sig;

const FORMAT: u8 = 1;
const HEAD: usize = 6;
pub(crate) const SIG_LEN: usize = 1 + 4 + 4 + 2 + 64;

/// A number's signed records, as published and as persisted. Build with [`crate::dns::Zone::sign_record`].
#[derive(Clone, PartialEq, Eq)]
pub struct SignedEntry(Box<[u8]>);

impl std::fmt::Debug for SignedEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedEntry").field("bytes", &self.0.len()).finish_non_exhaustive()
    }
}

/// An entry's sets (packed rdata) and their signatures.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sets<'a> {
    pub naptr: Option<(&'a [u8], Option<Sig>)>,
    pub txt: Option<(&'a [u8], Option<Sig>)>,
}

/// One set of an entry as the answer path reads it: nothing decoded or copied.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SetRef<'a> {
    /// The packed rdata (`[len u16][rdata]…`).
    pub rdata: &'a [u8],
    /// The stored signature (`[signed 0|1][inception u32][expiration u32][key tag u16][signature 64]`), if the
    /// set is signed; see [`super::sign::write_rrsig_stored`].
    pub sig: Option<&'a [u8; SIG_LEN]>,
}

/// Offsets of the parts of an entry.
#[derive(Debug, Clone, Copy)]
struct Layout {
    naptr: (usize, usize),
    txt: (usize, usize),
    sigs: usize,
}

fn layout(b: &[u8]) -> Option<Layout> {
    if b.len() < HEAD + 4 || b[0] != FORMAT {
        return None;
    }
    let nl = usize::from(u16::from_be_bytes([b[HEAD], b[HEAD + 1]]));
    let naptr = (HEAD + 2, HEAD + 2 + nl);
    let tl_at = naptr.1;
    let tl = usize::from(u16::from_be_bytes([*b.get(tl_at)?, *b.get(tl_at + 1)?]));
    let txt = (tl_at + 2, tl_at + 2 + tl);
    let present = usize::from(nl > 0) + usize::from(tl > 0);
    if present == 0 || b.len() != txt.1 + present * SIG_LEN {
        return None;
    }
    Some(Layout { naptr, txt, sigs: txt.1 })
}

fn read_sig(b: &[u8]) -> Option<Sig> {
    if b[0] != 1 {
        return None;
    }
    let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    Some(Sig {
        inception: u32_at(1),
        expiration: u32_at(5),
        key_tag: u16::from_be_bytes([b[9], b[10]]),
        bytes: b[11..75].try_into().expect("64 bytes"),
    })
}

fn write_sig(out: &mut [u8], sig: Option<&Sig>) {
    match sig {
        None => out.fill(0),
        Some(s) => {
            out[0] = 1;
            out[1..5].copy_from_slice(&s.inception.to_be_bytes());
            out[5..9].copy_from_slice(&s.expiration.to_be_bytes());
            out[9..11].copy_from_slice(&s.key_tag.to_be_bytes());
            out[11..75].copy_from_slice(&s.bytes);
        }
    }
}

impl SignedEntry {
    /// An unsigned entry; `None` when both sets are empty (nothing to publish).
    pub(crate) fn new(algorithm: u8, ttl: u32, naptr: &[u8], txt: &[u8]) -> Option<SignedEntry> {
        let present = usize::from(!naptr.is_empty()) + usize::from(!txt.is_empty());
        if present == 0 || naptr.len() > usize::from(u16::MAX) || txt.len() > usize::from(u16::MAX) {
            return None;
        }
        let mut b = Vec::with_capacity(HEAD + 4 + naptr.len() + txt.len() + present * SIG_LEN);
        b.push(FORMAT);
        b.push(algorithm);
        b.extend_from_slice(&ttl.to_be_bytes());
        b.extend_from_slice(&(naptr.len() as u16).to_be_bytes());
        b.extend_from_slice(naptr);
        b.extend_from_slice(&(txt.len() as u16).to_be_bytes());
        b.extend_from_slice(txt);
        b.resize(b.len() + present * SIG_LEN, 0);
        Some(SignedEntry(b.into_boxed_slice()))
    }

    /// An entry read back from storage. `None` when the bytes are not an entry (then the number is rebuilt
    /// from its record and signed again). Signatures not matching `algorithm`, `ttl` and `key_tag` are dropped.
    pub fn from_stored(bytes: &[u8], algorithm: u8, ttl: u32, key_tag: u16) -> Option<SignedEntry> {
        layout(bytes)?;
        let mut e = SignedEntry(bytes.into());
        let matches = e.0[1] == algorithm && e.0[2..HEAD] == ttl.to_be_bytes();
        let l = e.layout();
        for i in 0..e.present() {
            let at = l.sigs + i * SIG_LEN;
            let keep = matches && read_sig(&e.0[at..at + SIG_LEN]).is_some_and(|s| s.key_tag == key_tag);
            if !keep {
                e.0[at] = 0;
            }
        }
        Some(e)
    }

    /// The bytes to persist.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    fn layout(&self) -> Layout {
        layout(&self.0).expect("a SignedEntry is always well-formed")
    }

    fn present(&self) -> usize {
        let l = self.layout();
        usize::from(l.naptr.1 > l.naptr.0) + usize::from(l.txt.1 > l.txt.0)
    }

    /// Both sets with their signatures, from one reading of the layout.
    pub(crate) fn parts(&self) -> Sets<'_> {
        let [naptr, txt] = self.set_refs();
        fn decode(s: SetRef<'_>) -> (&[u8], Option<Sig>) {
            (s.rdata, s.sig.and_then(|sig| read_sig(sig)))
        }
        Sets { naptr: naptr.map(decode), txt: txt.map(decode) }
    }

    /// The NAPTR and the TXT set, borrowed as they are stored (the answer path's form of [`SignedEntry::parts`]).
    pub(crate) fn set_refs(&self) -> [Option<SetRef<'_>>; 2] {
        let l = self.layout();
        let b = &self.0;
        let sig = |at: usize| -> Option<&[u8; SIG_LEN]> {
            let s: &[u8; SIG_LEN] = b[at..at + SIG_LEN].try_into().expect("a signature slot");
            (s[0] == 1).then_some(s)
        };
        let has_naptr = l.naptr.1 > l.naptr.0;
        let naptr = has_naptr.then(|| SetRef { rdata: &b[l.naptr.0..l.naptr.1], sig: sig(l.sigs) });
        let at = l.sigs + if has_naptr { SIG_LEN } else { 0 };
        let txt = (l.txt.1 > l.txt.0).then(|| SetRef { rdata: &b[l.txt.0..l.txt.1], sig: sig(at) });
        [naptr, txt]
    }

    /// The NAPTR set (packed rdata) and its signature.
    pub(crate) fn naptr(&self) -> Option<(&[u8], Option<Sig>)> {
        self.parts().naptr
    }

    /// The TXT set (packed rdata) and its signature.
    pub(crate) fn txt(&self) -> Option<(&[u8], Option<Sig>)> {
        self.parts().txt
    }

    /// The sets with their record types, NAPTR first, and each one's signature slot index.
    pub(crate) fn sets(&self) -> impl Iterator<Item = (u16, &[u8], Option<Sig>)> {
        let Sets { naptr, txt } = self.parts();
        let n = naptr.map(|(s, sig)| (super::wire::rtype::NAPTR, s, sig));
        let t = txt.map(|(s, sig)| (super::wire::rtype::TXT, s, sig));
        n.into_iter().chain(t)
    }

    /// Whether any present set is unsigned, or signed to expire at or before `before`, or by a key other than
    /// `key_tag`. Reads only the signatures' fixed fields (no set decoded, no signature copied): the answer path
    /// asks this for every query.
    pub(crate) fn any_sig_stale(&self, before: u32, key_tag: u16) -> bool {
        self.set_refs().into_iter().flatten().any(|set| {
            set.sig.is_none_or(|sig| {
                u32::from_be_bytes([sig[5], sig[6], sig[7], sig[8]]) <= before
                    || u16::from_be_bytes([sig[9], sig[10]]) != key_tag
            })
        })
    }

    /// Whether `other` publishes the same records (it may differ in signatures).
    pub(crate) fn same_records(&self, other: &SignedEntry) -> bool {
        self.0[..self.layout().sigs] == other.0[..other.layout().sigs]
    }

    /// Replaces the signature of the `i`th present set (NAPTR first).
    pub(crate) fn set_sig(&mut self, i: usize, sig: &Sig) {
        let at = self.layout().sigs + i * SIG_LEN;
        write_sig(&mut self.0[at..at + SIG_LEN], Some(sig));
    }

    /// The earliest expiration among the sets, `None` if one is unsigned.
    pub(crate) fn earliest_expiration(&self) -> Option<u32> {
        self.sets().map(|(_, _, s)| s.map(|s| s.expiration)).try_fold(u32::MAX, |m, e| e.map(|e| m.min(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(tag: u16) -> Sig {
        Sig { inception: 10, expiration: 20, key_tag: tag, bytes: [7; 64] }
    }

    #[test]
    fn round_trips_and_drops_foreign_signatures() {
        let mut e = SignedEntry::new(13, 300, &[0, 2, 1, 2], &[0, 1, 9]).unwrap();
        assert!(e.naptr().unwrap().1.is_none());
        e.set_sig(0, &sig(5));
        e.set_sig(1, &sig(5));
        assert_eq!(e.naptr().unwrap(), (&[0, 2, 1, 2][..], Some(sig(5))));
        assert_eq!(e.txt().unwrap(), (&[0, 1, 9][..], Some(sig(5))));
        assert_eq!(e.earliest_expiration(), Some(20));
        let back = SignedEntry::from_stored(e.as_bytes(), 13, 300, 5).unwrap();
        assert_eq!(back, e);
        for (alg, ttl, tag) in [(15, 300, 5), (13, 60, 5), (13, 300, 6)] {
            let other = SignedEntry::from_stored(e.as_bytes(), alg, ttl, tag).unwrap();
            assert!(other.sets().all(|(_, _, s)| s.is_none()), "{alg} {ttl} {tag}");
            assert_eq!(other.earliest_expiration(), None);
        }
    }

    #[test]
    fn one_set_only_and_garbage() {
        let mut e = SignedEntry::new(13, 300, &[], &[0, 1, 9]).unwrap();
        e.set_sig(0, &sig(1));
        assert!(e.naptr().is_none());
        assert_eq!(e.txt().unwrap().1, Some(sig(1)));
        assert!(SignedEntry::new(13, 300, &[], &[]).is_none());
        for bad in [&b""[..], b"\x01\x0d\0\0\x01\x2c\0\0\0\0", &e.as_bytes()[..e.as_bytes().len() - 1], b"\x02"] {
            assert!(SignedEntry::from_stored(bad, 13, 300, 1).is_none(), "{bad:?}");
        }
    }
}
