//! The environment file the Debian package installs as
//! `/etc/invigil/invigil.env`, generated from the variable table so it names
//! every variable (the committed copy is checked against it).

use super::vars::{Use, VARS};
use std::fmt::Write;

/// Variables the package sets rather than leaving at their defaults.
pub const PACKAGE_SETS: &[(&str, &str)] = &[
    ("DATA_DIR", "/var/lib/invigil"),
    ("PORT", "443"),
    ("HTTP_PORT", "80"),
];

/// The file's text.
pub fn package_env_file() -> String {
    let mut out = String::from(
        "# invigil's configuration, read by invigil.service and invigil-backup.service.\n\
         # Uncomment a line and change it, then: systemctl restart invigil\n\
         # Check it first with: invigil --env-file /etc/invigil/invigil.env check-config\n\
         # Variable names are those of the vendor's .env file; unused ones are accepted.\n",
    );
    for var in VARS {
        out.push('\n');
        let mut help = var.help.to_string();
        if let Use::Used = var.usage
            && let Some(default) = var.default
        {
            let _ = write!(help, " (default: {default})");
        }
        if let Use::Unused(_) = var.usage {
            help = format!("not used by invigil: {help}");
        }
        let _ = writeln!(out, "# {help}");
        match (var.name, PACKAGE_SETS.iter().find(|(n, _)| *n == var.name)) {
            (_, Some((name, value))) => {
                let _ = writeln!(out, "{name}={value}");
            }
            ("BACKUP_TO", None) => {
                out.push_str("# (the nightly backup timer writes to /var/backups/invigil when unset)\n#BACKUP_TO=/var/backups/invigil\n");
            }
            (name, None) => {
                let _ = writeln!(out, "#{name}=");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_env_file_is_the_generated_one_and_names_every_variable() {
        let committed = include_str!("../../packaging/deb/invigil.env");
        assert_eq!(
            committed,
            package_env_file(),
            "packaging/deb/invigil.env is stale: run `invigil generate env --out packaging/deb`"
        );
        for var in VARS {
            let set = PACKAGE_SETS.iter().any(|(n, _)| *n == var.name);
            let line = if set {
                format!("\n{}=", var.name)
            } else {
                format!("\n#{}=", var.name)
            };
            assert!(committed.contains(&line), "{} missing", var.name);
        }
        assert!(committed.contains("\nPORT=443\n") && committed.contains("\nHTTP_PORT=80\n"));
    }
}
