use clap::Parser;

fn main() {
    let cli = stevedore::cli::Cli::parse();
    if let Err(err) = stevedore::run(cli) {
        // Errors carry text from outside: printed escaped, on one line.
        let message = stevedore::terminal::escape(&format!("{err:#}"));
        eprintln!("stevedore: error: {message}");
        std::process::exit(1);
    }
}
