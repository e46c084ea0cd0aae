//! Flags: every setting is a clap argument group owned by the module it configures (the
//! controller, the Pipecat Cloud client, leader election, the endpoints), flattened into the
//! binary's command line. A default lives once, in its `#[arg(default_value = ...)]`;
//! [`defaults`] reads a group's defaults from there for library users and tests.

/// The defaults of an argument group, as the binary would see them with no flags (environment
/// variables included, like the binary).
pub fn defaults<T: clap::Args>() -> T {
    use clap::{FromArgMatches, Parser};

    #[derive(Parser)]
    #[command(name = "defaults")]
    struct Only<T: clap::Args> {
        #[command(flatten)]
        group: T,
    }

    let matches = <Only<T> as clap::CommandFactory>::command()
        .no_binary_name(true)
        .get_matches_from(Vec::<String>::new());
    Only::<T>::from_arg_matches(&matches)
        .expect("an argument group's defaults always parse")
        .group
}
