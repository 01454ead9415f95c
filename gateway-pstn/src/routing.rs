//! Carrier order for a destination, pure: the carriers that can carry the service there, least cost first
//! (their longest matching prefix's price), then by priority, then by name — the order a call router tries
//! them in, failing over to the next (the call and SMS services consume this through `GET /v1/routes/{number}`).

use std::cmp::Ordering;

use crate::charging::ServiceKind;
use crate::money::Amount;
use crate::storage::CarrierRoute;

/// What comparing carriers for a service costs: the price that scales with use, then the fixed fee.
fn cost_key(route: &CarrierRoute, service: ServiceKind) -> Option<(Amount, Amount)> {
    match service {
        ServiceKind::Voice => route.cost.per_minute.map(|p| (p, route.cost.connect_fee)),
        ServiceKind::Sms => route.cost.per_segment.map(|p| (p, Amount::ZERO)),
        ServiceKind::Mms => route.cost.per_mms.map(|p| (p, Amount::ZERO)),
    }
}

/// The routes that carry `service`, in the order to try them.
pub fn order(mut routes: Vec<CarrierRoute>, service: ServiceKind) -> Vec<CarrierRoute> {
    routes.retain(|r| r.carrier.enabled && cost_key(r, service).is_some());
    routes.sort_by(|a, b| {
        cost_key(a, service)
            .cmp(&cost_key(b, service))
            .then(a.carrier.priority.cmp(&b.carrier.priority))
            .then_with(|| a.carrier.name.cmp(&b.carrier.name))
            .then(Ordering::Equal)
    });
    routes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rating::{Increments, Rate};
    use crate::storage::{Carrier, CarrierKind};

    fn route(
        name: &str,
        priority: i32,
        per_minute: Option<&str>,
        connect: &str,
        per_sms: Option<&str>,
    ) -> CarrierRoute {
        CarrierRoute {
            carrier: Carrier {
                id: 0,
                name: name.into(),
                kind: CarrierKind::Sip,
                priority,
                max_concurrent: 10,
                enabled: true,
            },
            cost: Rate {
                prefix: "49".into(),
                description: String::new(),
                connect_fee: connect.parse().unwrap(),
                per_minute: per_minute.map(|p| p.parse().unwrap()),
                increments: Increments::PER_SECOND,
                per_segment: per_sms.map(|p| p.parse().unwrap()),
                per_mms: None,
            },
        }
    }

    fn names(r: &[CarrierRoute]) -> Vec<&str> {
        r.iter().map(|r| r.carrier.name.as_str()).collect()
    }

    #[test]
    fn least_cost_then_priority_then_name() {
        let routes = vec![
            route("dear", 1, Some("0.02"), "0", None),
            route("cheap-b", 5, Some("0.01"), "0", None),
            route("cheap-a", 5, Some("0.01"), "0", None),
            route("cheap-first", 1, Some("0.01"), "0", None),
            route("fee", 1, Some("0.01"), "0.05", None),
            route("sms-only", 1, None, "0", Some("0.001")),
        ];
        assert_eq!(
            names(&order(routes.clone(), ServiceKind::Voice)),
            ["cheap-first", "cheap-a", "cheap-b", "fee", "dear"]
        );
        assert_eq!(names(&order(routes, ServiceKind::Sms)), ["sms-only"]);
    }

    #[test]
    fn disabled_carriers_are_left_out() {
        let mut off = route("off", 0, Some("0.001"), "0", None);
        off.carrier.enabled = false;
        let on = route("on", 9, Some("0.5"), "0", None);
        assert_eq!(names(&order(vec![off, on], ServiceKind::Voice)), ["on"]);
        assert!(order(Vec::new(), ServiceKind::Voice).is_empty());
    }
}
