//! Knot DNS (`knotd`) serving a test zone under [`APEX`] (the testkit's [`dnssec::Knot`]): a pre-signed zone
//! file as is, or an unsigned one signed online by `mod-onlinesign` (NODATA with an NSEC at the query name).

use std::path::Path;

use anyhow::Result;
use tincan_testkit::dnssec;

use crate::zone::APEX;

pub use dnssec::Knot;

/// Serves `zone_file` (already signed, or plain) as is.
pub async fn serve(zone_file: &Path) -> Result<Knot> {
    Knot::serve(APEX, zone_file).await
}

/// Serves `zone_file` as is on `port` (one this test reserved, e.g. from an earlier [`Knot`]).
pub async fn serve_on(zone_file: &Path, port: u16) -> Result<Knot> {
    Knot::serve_on(APEX, zone_file, port).await
}

/// Serves `zone_file` signed online by `mod-onlinesign` with keys Knot generates.
pub async fn serve_onlinesign(zone_file: &Path) -> Result<Knot> {
    Knot::serve_onlinesign(APEX, zone_file).await
}
