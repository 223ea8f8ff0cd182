//! `invigil generate`: files the package ships, made from the command line
//! definition and the variable table so they cannot drift from the binary.

use clap::{CommandFactory, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub(super) enum Generate {
    /// Man pages: invigil(1) and one per subcommand.
    Man {
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Shell completions for bash, zsh and fish.
    Completions {
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// The package's commented environment file, `invigil.env`.
    Env {
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

pub(super) fn run(what: Generate) -> ExitCode {
    let result = match what {
        Generate::Man { out } => man(&out),
        Generate::Completions { out } => completions(&out),
        Generate::Env { out } => mkdir(&out).and_then(|()| {
            std::fs::write(
                out.join("invigil.env"),
                crate::config::package_env::package_env_file(),
            )
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("invigil: {e}");
            ExitCode::FAILURE
        }
    }
}

fn mkdir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

fn man(out: &Path) -> std::io::Result<()> {
    mkdir(out)?;
    clap_mangen::generate_to(super::Cli::command(), out)
}

fn completions(out: &Path) -> std::io::Result<()> {
    use clap_complete::Shell;
    mkdir(out)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut super::Cli::command(), "invigil", out)?;
    }
    Ok(())
}
