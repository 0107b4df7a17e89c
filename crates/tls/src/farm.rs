//! The whole farm's certificates at once: the CA, the site's certificate and each node's,
//! created on first start and kept (or renewed) afterwards, as `webfarm up` and `webfarm
//! ca` need them.

use std::net::IpAddr;

use crate::ca::{Ensured, FarmCa, Layout, Leaf, PairPaths, Usage};
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

/// Everything the farm's certificates name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subjects {
    /// The site's name (the site certificate's first name; the CA is named after it).
    pub site: String,
    /// More names for the site certificate (e.g. the load balancers' addresses).
    pub site_extra: Vec<String>,
    /// Every node, each getting a certificate.
    pub nodes: Vec<NodeIdentity>,
    /// Where the CRL is published ([`crate::revoke::crl_url`]), written into every leaf;
    /// `None` when the farm has no plain HTTP frontend to publish it on.
    pub crl_url: Option<String>,
}

impl Subjects {
    /// The site, with no extra names, no nodes and no CRL address.
    pub fn site(site: &str) -> Subjects {
        Subjects {
            site: site.to_string(),
            ..Subjects::default()
        }
    }

    /// The site's certificate: the site name and the extra names, for a TLS server.
    pub fn site_leaf(&self) -> Leaf {
        let mut names = vec![self.site.clone()];
        names.extend(self.site_extra.iter().cloned());
        Leaf {
            common_name: self.site.clone(),
            names,
            usage: Usage::Server,
            crl_url: self.crl_url.clone(),
        }
    }

    /// A node's certificate: its name and address, as a server and as a client.
    pub fn node_leaf(&self, node: &NodeIdentity) -> Leaf {
        Leaf {
            common_name: node.name.clone(),
            names: vec![node.name.clone(), node.address.to_string()],
            usage: Usage::ServerAndClient,
            crl_url: self.crl_url.clone(),
        }
    }

    /// The operator's client certificate.
    pub fn operator_leaf(&self) -> Leaf {
        Leaf {
            common_name: "operator".into(),
            names: vec!["operator".into()],
            usage: Usage::Client,
            crl_url: self.crl_url.clone(),
        }
    }

    /// The leaf certificate of `what` (`site`, `operator` or a node's name), with the
    /// paths it lives at; `None` for a name that is none of them.
    pub fn leaf_of(&self, layout: &Layout, what: &str) -> Option<(Leaf, PairPaths)> {
        match what {
            "site" => Some((self.site_leaf(), layout.site())),
            "operator" => Some((self.operator_leaf(), layout.operator())),
            name => self
                .nodes
                .iter()
                .find(|n| n.name == name)
                .map(|n| (self.node_leaf(n), layout.node(name))),
        }
    }
}

/// Creates what is missing under `layout` and renews what is due: the CA (named after the
/// site), the CRL, the site certificate, the operator's and one per node.
///
/// # Errors
///
/// A file that cannot be read or written, or an existing CA that is not usable (it is never
/// replaced silently: [`rotate`] does that).
pub fn ensure(layout: &Layout, subjects: &Subjects) -> Result<(FarmCa, Report), TlsError> {
    let (ca, ca_created) = FarmCa::open_or_create(layout, &subjects.site)?;
    let mut report = Report {
        ca_created,
        issued: Vec::new(),
    };
    let mut note = |what: &str, ensured: Ensured| {
        if let Ensured::Issued(why) = ensured {
            report.issued.push((what.to_string(), why));
        }
    };
    note("CRL", ca.ensure_crl()?);
    note("site", ca.ensure(&subjects.site_leaf(), &layout.site())?);
    note(
        "operator",
        ca.ensure(&subjects.operator_leaf(), &layout.operator())?,
    );
    for node in &subjects.nodes {
        note(
            &node.name,
            ca.ensure(&subjects.node_leaf(node), &layout.node(&node.name))?,
        );
    }
    Ok((ca, report))
}

/// Replaces the CA with a new one, empties the revocation list, and issues every
/// certificate again ([`ensure`] finds them all signed by another CA). Nodes must be
/// restarted to trust the new CA; clients must be given the new `ca.crt`.
///
/// # Errors
///
/// As [`ensure`].
pub fn rotate(layout: &Layout, subjects: &Subjects) -> Result<(FarmCa, Report), TlsError> {
    FarmCa::create(layout, &subjects.site)?.reset_revocations()?;
    let (ca, mut report) = ensure(layout, subjects)?;
    report.ca_created = true;
    Ok((ca, report))
}
