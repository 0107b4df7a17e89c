//! VRRP version 3 (RFC 5798) for webfarm's load-balancer pair.
pub mod packet;
pub mod router;
