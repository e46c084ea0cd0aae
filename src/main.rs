//! `pipecat-operator`: parses arguments and hands over to the library.

use clap::{Parser, Subcommand};
use pipecat_operator::{crd, operator};

#[derive(Parser)]
#[command(
    name = "pipecat-operator",
    version,
    about = "Kubernetes operator for Pipecat Cloud voice agents"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller.
    Run(Box<operator::RunArgs>),
    /// Print the PipecatAgent CustomResourceDefinition (YAML).
    Crd,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd => {
            print!("{}", crd::crd_yaml());
            Ok(())
        }
        Command::Run(args) => operator::run(*args).await,
    }
}
