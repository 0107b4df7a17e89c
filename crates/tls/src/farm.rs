//! The whole farm's certificates at once: the CA, the site's certificate and each node's,
//! created on first start and kept (or renewed) afterwards, as `webfarm up` and `webfarm
//! ca` need them.

use std::net::IpAddr;

use crate::ca::{Ensured, FarmCa, Layout, Leaf, Usage};
use crate::TlsError;

/// A node as its certificate names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    /// The node's name (a DNS name in the certificate).
    pub name: String,
    /// The node's address (an IP address in the certificate).
    pub address: IpAddr,
}

/// What [`ensure`] did, for the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The CA was created now.
    pub ca_created: bool,
    /// The certificates issued now: what (`site`, `operator`, a node's name) and why.
    pub issued: Vec<(String, &'static str)>,
}

/// The site's certificate: the site name and `extra` names (e.g. the load balancers'
/// addresses), for a TLS server.
pub fn site_leaf(site: &str, extra: &[String]) -> Leaf {
    let mut names = vec![site.to_string()];
    names.extend(extra.iter().cloned());
    Leaf {
        common_name: site.to_string(),
        names,
        usage: Usage::Server,
    }
}

/// A node's certificate: its name and address, as a server and as a client.
pub fn node_leaf(node: &NodeIdentity) -> Leaf {
    Leaf {
        common_name: node.name.clone(),
        names: vec![node.name.clone(), node.address.to_string()],
        usage: Usage::ServerAndClient,
    }
}

/// The operator's client certificate.
pub fn operator_leaf() -> Leaf {
    Leaf {
        common_name: "operator".into(),
        names: vec!["operator".into()],
        usage: Usage::Client,
    }
}

/// Creates what is missing under `layout` and renews what is due: the CA (named after
/// `site`), the site certificate (`site` and `site_extra`), the operator's and one per
/// node of `nodes`.
///
/// # Errors
///
/// A file that cannot be read or written, or an existing CA that is not usable (it is never
/// replaced silently: [`rotate`] does that).
pub fn ensure(
    layout: &Layout,
    site: &str,
    site_extra: &[String],
    nodes: &[NodeIdentity],
) -> Result<(FarmCa, Report), TlsError> {
    let (ca, ca_created) = FarmCa::open_or_create(layout, site)?;
    let mut report = Report {
        ca_created,
        issued: Vec::new(),
    };
    let mut note = |what: &str, ensured: Ensured| {
        if let Ensured::Issued(why) = ensured {
            report.issued.push((what.to_string(), why));
        }
    };
    note(
        "site",
        ca.ensure(&site_leaf(site, site_extra), &layout.site())?,
    );
    note("operator", ca.ensure(&operator_leaf(), &layout.operator())?);
    for node in nodes {
        note(
            &node.name,
            ca.ensure(&node_leaf(node), &layout.node(&node.name))?,
        );
    }
    Ok((ca, report))
}

/// Replaces the CA with a new one and issues every certificate again ([`ensure`] finds them
/// all signed by another CA). Nodes pick the new files up on reload; clients must be given
/// the new `ca.crt`.
///
/// # Errors
///
/// As [`ensure`].
pub fn rotate(
    layout: &Layout,
    site: &str,
    site_extra: &[String],
    nodes: &[NodeIdentity],
) -> Result<(FarmCa, Report), TlsError> {
    FarmCa::create(layout, site)?;
    let (ca, mut report) = ensure(layout, site, site_extra, nodes)?;
    report.ca_created = true;
    Ok((ca, report))
}
