use clap::Parser;

fn main() {
    let cli = stevedore::cli::Cli::parse();
    // Outputs half-written when a signal ends the process are removed.
    // Not as a Nix builder: Nix removes what a build leaves, and the
    // user namespace of runAsRoot needs a process of one thread.
    if !matches!(cli.command, stevedore::cli::Command::NixBuilder { .. })
        && let Err(err) = stevedore::output::remove_partials_on_signals()
    {
        eprintln!("stevedore: warning: {err:#}");
    }
    if let Err(err) = stevedore::cli::run(cli) {
        // Errors carry text from outside: printed escaped, on one line.
        let message = stevedore::terminal::escape(&format!("{err:#}"));
        eprintln!("stevedore: error: {message}");
        std::process::exit(1);
    }
}
