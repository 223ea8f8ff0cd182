//! `invigil ca`: the exam centre's own certificate authority.

use super::{EXIT_BAD_CONFIG, load};
use crate::app;
use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub(super) enum CaCommand {
    /// Create the CA in DATA_DIR/ca, limited to the given names and networks.
    Init {
        /// DNS name the CA may vouch for, with its subdomains (repeatable;
        /// default DOMAIN_NAME).
        #[arg(long = "name", value_name = "NAME")]
        names: Vec<String>,
        /// IP address or CIDR network the CA may vouch for (repeatable;
        /// default HOST when it is a specific address).
        #[arg(long = "ip", value_name = "CIDR")]
        networks: Vec<String>,
        /// Replace an existing CA (exam PCs must then trust the new root).
        #[arg(long)]
        force: bool,
    },
    /// Print the root certificate for installing on exam PCs.
    Export {
        /// DER instead of PEM (Windows and ChromeOS import either).
        #[arg(long)]
        der: bool,
    },
}

pub(super) fn ca(env_file: Option<PathBuf>, command: CaCommand) -> ExitCode {
    use crate::tls::local_ca;
    let loaded = match load(env_file) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let config = loaded.config;
    match command {
        CaCommand::Init {
            mut names,
            networks,
            force,
        } => {
            if names.is_empty() {
                names.extend(config.domain_name.clone());
            }
            let mut nets = Vec::new();
            for raw in &networks {
                match raw
                    .parse::<ipnet::IpNet>()
                    .or_else(|_| raw.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                {
                    Ok(net) => nets.push(net.trunc()),
                    Err(_) => {
                        eprintln!("invigil: --ip {raw:?} is not an IP address or CIDR network");
                        return ExitCode::from(EXIT_BAD_CONFIG);
                    }
                }
            }
            if networks.is_empty() && !config.host.is_unspecified() {
                nets.push(ipnet::IpNet::from(config.host));
            }
            if let Err(e) = app::datadir::prepare(&config.data_dir) {
                eprintln!("invigil: DATA_DIR: {e}");
                return ExitCode::from(EXIT_BAD_CONFIG);
            }
            match local_ca::init(&config.data_dir, &names, &nets, force) {
                Ok(ca) => {
                    let (dns, ips) = ca.scope();
                    let scope: Vec<String> = dns
                        .into_iter()
                        .chain(ips.iter().map(|n| n.to_string()))
                        .collect();
                    println!(
                        "local CA created in {} for {}",
                        local_ca::ca_dir(&config.data_dir).display(),
                        scope.join(", ")
                    );
                    println!("install its root on exam PCs: invigil ca export > invigil-root.crt");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("invigil: ca init: {e}");
                    ExitCode::from(EXIT_BAD_CONFIG)
                }
            }
        }
        CaCommand::Export { der } => match local_ca::export(&config.data_dir, der) {
            Ok(bytes) => {
                use std::io::Write;
                let mut out = std::io::stdout().lock();
                match out.write_all(&bytes).and_then(|()| out.flush()) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("invigil: cannot write the root: {e}");
                        ExitCode::FAILURE
                    }
                }
            }
            Err(e) => {
                eprintln!("invigil: ca export: {e}");
                ExitCode::from(EXIT_BAD_CONFIG)
            }
        },
    }
}
