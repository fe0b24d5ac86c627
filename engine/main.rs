//! The `tw` binary: parse arguments, run the command, map errors to exit codes.

use clap::Parser;

fn main() {
    let cli = tw_engine::cli::Cli::parse();
    let mut stdout = std::io::stdout().lock();
    match tw_engine::cmd::execute(cli, &mut stdout) {
        Ok(()) => {}
        Err(failure) => {
            let message = failure.message.trim_end();
            if !message.is_empty() {
                eprintln!("{message}");
            }
            std::process::exit(failure.code);
        }
    }
}
