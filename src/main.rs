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
    /// Print the CustomResourceDefinitions (YAML): both, or the one named.
    Crd {
        /// Only this CRD (by plural): `pipecatagents` or `pipecatsecretsets`.
        #[arg(value_enum)]
        name: Option<CrdName>,
    },
    /// Print PipecatAgent manifests that adopt the agents of a Pipecat Cloud account as they
    /// are (the migration from `pcc deploy`: `pipecat-operator export | kubectl apply -f -`).
    Export(Box<export::ExportArgs>),
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum CrdName {
    Pipecatagents,
    Pipecatsecretsets,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd { name } => {
            match name {
                Some(CrdName::Pipecatagents) => print!("{}", crd::crd_yaml()),
                Some(CrdName::Pipecatsecretsets) => print!("{}", crd::secret_set::crd_yaml()),
                None => print!("{}", crd::all_crds_yaml()),
            }
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
