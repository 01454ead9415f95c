//! NAPTR records of one number (RFC 6116 §2.4): flags `u`, regexp `!^.*$!<uri>!`, replacement `.`.

use hickory_proto::rr::Name;
use hickory_proto::rr::rdata::NAPTR;

use crate::{Service, ServiceType};

/// Order of every published NAPTR; preference follows the position in the list (10, 20, …).
const ORDER: u16 = 100;

/// The NAPTR rdata publishing `services`, in their order (preference 10, 20, …).
pub fn naptr_rdata(services: &[Service]) -> Vec<NAPTR> {
    services
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let preference = u16::try_from((i + 1) * 10).unwrap_or(u16::MAX);
            NAPTR::new(
                ORDER,
                preference,
                b"u".to_vec().into_boxed_slice(),
                s.enumservice().as_bytes().to_vec().into_boxed_slice(),
                format!("!^.*$!{}!", s.uri()).into_bytes().into_boxed_slice(),
                Name::root(),
            )
        })
        .collect()
}

/// The service a NAPTR publishes, or `None` when it is not one of ours (other flags or enumservice, a regexp
/// other than `!^.*$!<uri>!`, a replacement other than `.`, or a URI that does not fit the service type).
pub fn service_from_naptr(n: &NAPTR) -> Option<Service> {
    if !n.flags.eq_ignore_ascii_case(b"u") || !n.replacement.is_root() {
        return None;
    }
    let kind = ServiceType::from_enumservice(std::str::from_utf8(&n.services).ok()?)?;
    let regexp = std::str::from_utf8(&n.regexp).ok()?;
    let uri = regexp.strip_prefix("!^.*$!")?.strip_suffix('!')?;
    Service::new(kind, uri).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_rfc6116_records() {
        let services = [
            Service::new(ServiceType::Matrix, "matrix:u/alice:hs.example?action=chat").unwrap(),
            Service::new(ServiceType::Sip, "sip:+442079460001@sip.provider.example").unwrap(),
        ];
        let rd = naptr_rdata(&services);
        assert_eq!(rd.len(), 2);
        assert_eq!((rd[0].order, rd[0].preference, rd[1].preference), (100, 10, 20));
        assert_eq!(&*rd[0].flags, b"u");
        assert_eq!(&*rd[0].services, b"E2U+x-matrix");
        assert_eq!(&*rd[0].regexp, b"!^.*$!matrix:u/alice:hs.example?action=chat!");
        assert!(rd[0].replacement.is_root());
        assert_eq!(rd.iter().filter_map(service_from_naptr).collect::<Vec<_>>(), services);
    }

    #[test]
    fn ignores_foreign_records() {
        let good = naptr_rdata(&[Service::new(ServiceType::Sms, "tel:+442079460001").unwrap()]).remove(0);
        assert!(service_from_naptr(&good).is_some());
        let mut n = good.clone();
        n.flags = b"s".to_vec().into();
        assert!(service_from_naptr(&n).is_none());
        let mut n = good.clone();
        n.services = b"E2U+web:http".to_vec().into();
        assert!(service_from_naptr(&n).is_none());
        let mut n = good.clone();
        n.regexp = b"!^\\+44(.*)$!tel:+44\\1!".to_vec().into();
        assert!(service_from_naptr(&n).is_none());
        let mut n = good.clone();
        n.replacement = Name::from_ascii("x.example.").unwrap();
        assert!(service_from_naptr(&n).is_none());
        let mut n = good;
        n.regexp = b"!^.*$!tel:12!".to_vec().into();
        assert!(service_from_naptr(&n).is_none());
    }
}
