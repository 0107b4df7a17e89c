//! Control of a running lb node: the live configuration ([`live`]: the snapshot every
//! request reads, check tasks, connection counts), its hot reload ([`reload`]), the admin
//! routes (`/lb/...`, [`admin`]) and what `/readyz` and `/status` say ([`status`]).

pub(crate) mod admin;
pub(crate) mod live;
pub(crate) mod reload;
pub(crate) mod status;
