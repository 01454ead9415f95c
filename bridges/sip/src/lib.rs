//! The Tincan SIP bridge: Matrix users and SIP phones, by phone number, on the bridge core
//! (`tincan-appservice`) and the shared SIP crate (`tincan-sip-core`).
//!
//! - [`connector`]: the network connector — SIP MESSAGE ↔ Matrix text, REGISTER, calls;
//! - [`registrar`]: users' SIP devices register under their number with per-device digest credentials;
//! - [`subscribers`]: who holds which number and their devices (the sign-up extension, or config);
//! - [`devices`]: users' registered SIP devices as destinations (calls and MESSAGEs to a number reach them);
//! - [`routing`]: where a number or SIP address is reached (validated ENUM, RFC 3263, the PSTN fallback);
//! - [`messages`]: MESSAGE bodies (text/plain, message/cpim) ↔ text;
//! - [`calls`]: `m.call.*` ↔ INVITE dialogs, media through rtpengine;
//! - [`store`]: registrations and open media sessions (SQLite or PostgreSQL);
//! - [`config`], [`run`]: the binary's config and assembly.

pub mod calls;
pub mod config;
pub mod connector;
pub mod devices;
pub mod messages;
pub mod registrar;
pub mod routing;
pub mod run;
pub mod store;
pub mod subscribers;
