use clap::Parser;

fn main() {
    let cli = stevedore::cli::Cli::parse();
    if let Err(err) = stevedore::run(cli) {
        eprintln!("stevedore: error: {err:#}");
        std::process::exit(1);
    }
}
