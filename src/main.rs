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
    /// Print the CustomResourceDefinitions and the apply-time warnings policy (YAML, the files
    /// of `crds/`): all, or the one named.
    Crd {
        /// Only this one: `pipecatagents`, `pipecatsecretsets`, or `warnings` (the
        /// ValidatingAdmissionPolicy that warns about ignored fields).
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
    Warnings,
}

fn main() -> anyhow::Result<()> {
    one_malloc_arena();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(cli())
}

/// glibc's malloc gives each thread that allocates an arena of its own; one arena for all keeps
/// the peak resident set lower for no more CPU (measured in docs/PERFORMANCE.md, "Memory").
/// Set before any thread starts; `MALLOC_ARENA_MAX` or `GLIBC_TUNABLES` in the environment
/// still decide when given.
fn one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none()
        && std::env::var_os("GLIBC_TUNABLES").is_none()
    {
        // SAFETY: mallopt only sets a parameter of the allocator; no other thread exists yet.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}

async fn cli() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd { name } => {
            match name {
                Some(CrdName::Pipecatagents) => print!("{}", crd::crd_yaml()),
                Some(CrdName::Pipecatsecretsets) => print!("{}", crd::secret_set::crd_yaml()),
                Some(CrdName::Warnings) => print!("{}", crd::warnings::warnings_yaml()),
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
