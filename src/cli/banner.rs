//! What the console shows once the server is ready: where to go and how the
//! manager signs in. A generated password appears here and nowhere else.

use crate::config::Secret;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;

pub struct Banner<'a> {
    pub url: &'a str,
    pub https_addr: SocketAddr,
    pub manager_host: &'a str,
    pub username: &'a str,
    pub generated_password: Option<&'a Secret>,
    pub data_dir: &'a Path,
    pub tls_mode: &'a str,
}

pub fn print(b: &Banner<'_>) {
    let mut out = String::new();
    out.push_str(&format!("\ninvigil {} is ready\n", crate::VERSION));
    out.push_str(&format!("  open       {}\n", b.url));
    out.push_str(&format!("  listening  {} ({})\n", b.https_addr, b.tls_mode));
    out.push_str(&format!(
        "  manager    sign in as \"{}\" on https://{}/\n",
        b.username, b.manager_host
    ));
    if let Some(password) = b.generated_password {
        out.push_str(&format!(
            "  password   {}   (generated; shown only now, change it at first sign-in)\n",
            password.expose()
        ));
    }
    if b.tls_mode == "self-signed" {
        out.push_str(
            "  note       the certificate is self-signed: the browser asks you to accept it\n",
        );
    }
    out.push_str(
        "  try it     after signing in, \"Try it\" prepares a demo exam to take in one window and proctor in another\n",
    );
    out.push_str(&format!("  data       {}\n", b.data_dir.display()));
    // Printed to stdout, not logged, so the one-time password does not end up
    // in log collectors. A closed stdout must not take the server down, so
    // write errors are ignored instead of panicking like `println!`.
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{out}").and_then(|()| stdout.flush());
}
