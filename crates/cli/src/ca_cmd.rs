//! `webfarm ca show|issue|rotate`, and the farm's certificates made on `webfarm up`.
//!
//! The files live under `<data_dir>/ca/` (`webfarm_tls::ca::Layout`); `webfarm up` creates
//! the CA on first start and issues the site's, the operator's and every node's
//! certificate, then reuses them (renewing what is due).

use std::path::Path;
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context;
use webfarm_config::{Farm, Mode, Role};
use webfarm_tls::ca::{FarmCa, Layout, PairPaths};
use webfarm_tls::cert::{fingerprint, LoadedCert};
use webfarm_tls::farm::{self, NodeIdentity, Report, Subjects};
use webfarm_tls::revoke::{self, crl_url};

use crate::args::CaCommand;
use crate::farm_file;

/// Runs a `webfarm ca` command.
///
/// # Errors
///
/// An invalid farm file, or certificate files that cannot be read or written.
pub fn run(command: &CaCommand) -> anyhow::Result<ExitCode> {
    match command {
        CaCommand::Show { farm } => show(&farm_file::resolve(farm)?.farm),
        CaCommand::Issue { node, farm } => issue(&farm_file::resolve(farm)?.farm, node),
        CaCommand::Rotate { farm } => rotate(&farm_file::resolve(farm)?.farm),
        CaCommand::Revoke { what, farm } => revoke(&farm_file::resolve(farm)?.farm, what),
    }
}

/// What the farm's certificates must name: every node, and the lb addresses beside the
/// site name (so `https://<lb address>:8443/` verifies too); and where the lbs publish the
/// CRL: the first plain HTTP frontend, if there is one.
pub fn subjects(farm: &Farm) -> Subjects {
    let site_extra = farm
        .nodes_with_role(Role::Lb)
        .map(|n| n.address.to_string())
        .collect();
    let nodes = farm
        .nodes
        .iter()
        .map(|n| NodeIdentity {
            name: n.name.clone(),
            address: n.address,
        })
        .collect();
    let has_lb = farm.nodes_with_role(Role::Lb).next().is_some();
    let crl_url = farm
        .frontends
        .iter()
        .find(|f| f.mode == Mode::Http && f.tls.is_none())
        .filter(|_| has_lb)
        .map(|f| crl_url(&farm.site, f.port));
    Subjects {
        site: farm.site.clone(),
        site_extra,
        nodes,
        crl_url,
    }
}

/// Creates or renews the farm's certificates (on `webfarm up`); says what it did.
///
/// # Errors
///
/// Files that cannot be read or written, or an unusable existing CA.
pub fn ensure(farm: &Farm) -> anyhow::Result<Report> {
    let layout = Layout::of_data_dir(&farm.data_dir);
    let (_, report) = farm::ensure(&layout, &subjects(farm)).context("the farm's certificates")?;
    if report.ca_created {
        crate::supervisor::say(&format!(
            "created the farm CA: {} (clients trust this file; `webfarm ca show` says how)",
            layout.ca().cert.display()
        ));
    }
    for (what, why) in &report.issued {
        let done = match what.as_str() {
            "CRL" => format!("signed the CA's CRL ({why})"),
            _ => format!("issued the {what} certificate ({why})"),
        };
        crate::supervisor::say(&done);
    }
    Ok(report)
}

fn show(farm: &Farm) -> anyhow::Result<ExitCode> {
    let layout = Layout::of_data_dir(&farm.data_dir);
    let ca = layout.ca();
    if !ca.cert.exists() {
        anyhow::bail!(
            "no farm CA at {}; `webfarm up` or `webfarm ca issue NODE` creates it",
            ca.cert.display()
        );
    }
    println!(
        "{:<10} {:<22} {:<64} FILE",
        "WHAT", "EXPIRES (UTC)", "NAMES"
    );
    let mut all = vec![
        ("CA".to_string(), ca.clone()),
        ("site".into(), layout.site()),
    ];
    all.push(("operator".into(), layout.operator()));
    all.extend(
        farm.nodes
            .iter()
            .map(|n| (n.name.clone(), layout.node(&n.name))),
    );
    for (what, paths) in &all {
        println!("{}", describe(what, paths));
    }
    print_revoked(&layout)?;
    let loaded = load(&ca)?;
    println!(
        "\nCA fingerprint (SHA-256): {}",
        fingerprint(&loaded.key.cert[0])
    );
    println!(
        "\nTo trust the farm in a browser, import {} as an authority (Chrome/Chromium: \
         Settings > Privacy and security > Security > Manage certificates > Authorities > \
         Import; Firefox: Settings > Certificates > View Certificates > Authorities > Import), \
         or system-wide on Debian: cp it to /usr/local/share/ca-certificates/webfarm.crt and \
         run update-ca-certificates. curl: --cacert {}.",
        ca.cert.display(),
        ca.cert.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The revoked certificates and where the CRL is.
fn print_revoked(layout: &Layout) -> anyhow::Result<()> {
    let list = revoke::read_list(&layout.revoked())?;
    println!(
        "\nCRL {}: {} revoked certificate(s)",
        layout.crl().display(),
        list.len()
    );
    for r in &list {
        println!(
            "  {:<10} serial {} revoked {}",
            r.what,
            r.serial_hex(),
            humantime::format_rfc3339_seconds(r.at)
        );
    }
    Ok(())
}

fn load(paths: &PairPaths) -> anyhow::Result<LoadedCert> {
    Ok(LoadedCert::load(
        &paths.cert,
        &paths.key,
        &webfarm_tls::server::provider(),
    )?)
}

/// One line of `webfarm ca show`.
fn describe(what: &str, paths: &PairPaths) -> String {
    let file = paths.cert.display();
    match load(paths) {
        Ok(c) => {
            let expires = humantime::format_rfc3339_seconds(c.not_after).to_string();
            let flag = if c.expired_at(SystemTime::now()) {
                " EXPIRED"
            } else {
                ""
            };
            format!(
                "{what:<10} {:<22} {:<64} {file}{flag}",
                expires,
                c.names_list()
            )
        }
        Err(e) if !paths.cert.exists() => {
            format!("{what:<10} {:<22} {:<64} {file} (missing: {e})", "-", "-")
        }
        Err(e) => format!("{what:<10} {:<22} {:<64} {file} (unusable: {e})", "-", "-"),
    }
}

fn issue(farm: &Farm, name: &str) -> anyhow::Result<ExitCode> {
    let Some(node) = farm.node(name) else {
        anyhow::bail!("no node named {name:?} in the farm");
    };
    let layout = Layout::of_data_dir(&farm.data_dir);
    // What is missing first (the CA, the site's and the operator's certificates...), then
    // NODE's anew.
    let subjects = subjects(farm);
    let (ca, _) = farm::ensure(&layout, &subjects)?;
    let (leaf, paths) = subjects
        .leaf_of(&layout, name)
        .context("the node's certificate")?;
    ca.issue(&leaf)?.write(&paths)?;
    println!("issued {}", layout.node(name).cert.display());
    println!(
        "\nOn {name}'s host, with the same farm file, copy into <data_dir>/ca/ (mode 0600 for \
         the keys):"
    );
    let mut files = vec![
        layout.ca().cert,
        layout.node(name).cert,
        layout.node(name).key,
    ];
    if node.role == Role::Lb {
        files.extend([layout.site().cert, layout.site().key]);
    }
    for f in &files {
        println!("  {}", relative(f, &farm.data_dir));
    }
    println!("Never copy ca/ca.key: it stays on the host that issues certificates.");
    crate::secrets::ensure(farm)?;
    let secrets = crate::secrets::files_for(farm, node);
    if !secrets.is_empty() {
        println!("\nand into <data_dir>/secrets/ (mode 0600, the directory 0700):");
        for f in &secrets {
            println!("  {}", relative(f, &farm.data_dir));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn rotate(farm: &Farm) -> anyhow::Result<ExitCode> {
    let layout = Layout::of_data_dir(&farm.data_dir);
    let (ca, report) = farm::rotate(&layout, &subjects(farm))?;
    println!(
        "new farm CA {} (SHA-256 {}); issued again: {}",
        layout.ca().cert.display(),
        fingerprint(ca.cert_der()),
        report
            .issued
            .iter()
            .map(|(w, _)| w.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "Load balancers swap their certificates by themselves; restart the other nodes, and \
         give clients the new ca.crt."
    );
    Ok(ExitCode::SUCCESS)
}

/// `webfarm ca revoke WHAT`: puts WHAT's certificate on the CRL and issues it a new one.
fn revoke(farm: &Farm, what: &str) -> anyhow::Result<ExitCode> {
    let layout = Layout::of_data_dir(&farm.data_dir);
    let subjects = subjects(farm);
    let Some((leaf, paths)) = subjects.leaf_of(&layout, what) else {
        anyhow::bail!(
            "nothing named {what:?} has a certificate: name `site`, `operator` or a node of \
             the farm"
        );
    };
    let Some(ca) = FarmCa::open(&layout)? else {
        anyhow::bail!("no farm CA at {}", layout.ca().cert.display());
    };
    let old = load(&paths).with_context(|| format!("{what}'s certificate"))?;
    ca.revoke(&old, what)?;
    ca.issue(&leaf)?.write(&paths)?;
    let listed = revoke::read_list(&layout.revoked())?.len();
    println!(
        "revoked {what}'s certificate (serial {}); the CRL {} lists {listed} certificate(s)",
        old.serial_hex(),
        layout.crl().display()
    );
    println!("issued a new one: {}", paths.cert.display());
    println!(
        "Nodes of this host refuse the old certificate, and {what} presents its new one, \
         within a second. On other hosts copy ca/ca.crl to every node's <data_dir>/ca/ (load \
         balancers publish it at {}), and {what}'s new files to its host.",
        subjects.crl_url.as_deref().unwrap_or(revoke::CRL_PATH)
    );
    Ok(ExitCode::SUCCESS)
}

fn relative(path: &Path, base: &Path) -> String {
    path.strip_prefix(base)
        .unwrap_or(path)
        .display()
        .to_string()
}
