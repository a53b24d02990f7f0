use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;

#[derive(Parser)]
#[command(
    name = "stsvend",
    version,
    about = "Temporary, read-only, in-region S3 credentials for OIDC users"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print credentials for AWS `credential_process` (or shell `export`s), cached locally.
    CredentialProcess(cli::helper::CredentialProcessArgs),
    /// Write (or update) an AWS profile whose credential_process is this helper, then check
    /// that it works.
    Configure(cli::helper::ConfigureArgs),
    /// Make, list or delete tickets: credentials for machines that cannot log in (Dask
    /// workers, batch jobs), each bound to what you name.
    Ticket(cli::helper::TicketArgs),
    #[cfg(feature = "server")]
    #[command(flatten)]
    Server(cli::server::ServerCommand),
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::CredentialProcess(args) => cli::helper::credential_process_command(args),
        Command::Configure(args) => cli::helper::configure_command(args),
        Command::Ticket(args) => cli::helper::ticket_command(args),
        #[cfg(feature = "server")]
        Command::Server(command) => cli::server::run(command),
    }
}
