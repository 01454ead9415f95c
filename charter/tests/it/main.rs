//! The charter's trust list end to end: a repository served over loopback HTTP, a client fetching and
//! verifying it, and the `tincan-charter` binary making keys, signing and publishing.

mod cli;
mod client;
mod fixture;
mod props;
