//! `pipecat-operator`: parses arguments and hands over to the library.

use clap::{Parser, Subcommand};
use pipecat_operator::{crd, export, operator};

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
    /// Print PipecatAgent manifests that adopt the agents of a Pipecat Cloud account as they
    /// are (the migration from `pcc deploy`: `pipecat-operator export | kubectl apply -f -`).
    Export(Box<export::ExportArgs>),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd => {
            print!("{}", crd::crd_yaml());
            Ok(())
        }
        Command::Run(args) => operator::run(*args).await,
        Command::Export(args) => {
            let count = export::run(&args, &mut std::io::stdout().lock()).await?;
            eprintln!("exported {count} agent(s)");
            Ok(())
        }
    }
}
