//! `tessera`: the command-line edge of Tessera. Library crates return typed
//! errors; here they become one-line messages and a non-zero exit.

mod cmd;
mod files;
mod model;

use clap::{Parser, Subcommand};

/// Collaborative CNN inference across phones, laptops and small devices.
#[derive(Parser)]
#[command(name = "tessera", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Per-layer cost table: op, output shape, MACs, params, output size.
    Cost(cmd::cost::Args),
    /// Run a model on an .npy input and write the output .npy.
    Run(cmd::run::Args),
    /// Benchmark kernels against a reference runtime in the same run.
    Bench(cmd::bench::Args),
    /// The main demo: the trained LeNet on bundled MNIST digits.
    Demo(cmd::demo::Args),
    /// Write a model (zoo name or .onnx) as an ONNX file.
    Export(cmd::export::Args),
    /// Plan a model on a set of devices.
    Plan(cmd::plan::Args),
    /// Compare planners on scenarios with the discrete-event simulator.
    Simulate(cmd::simulate::Args),
    /// Serve the pages and the signaling WebSocket of a room (prints its URL and QR code).
    Serve(cmd::serve::Args),
    /// Measure this machine into a device profile.
    Profile(cmd::profile::Args),
    /// Join a room as a native peer.
    Peer(cmd::peer::Args),
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    let result = match cli.command {
        Command::Cost(a) => cmd::cost::run(a),
        Command::Run(a) => cmd::run::run(a),
        Command::Bench(a) => cmd::bench::run(a),
        Command::Demo(a) => cmd::demo::run(a),
        Command::Export(a) => cmd::export::run(a),
        Command::Plan(a) => cmd::plan::run(a),
        Command::Simulate(a) => cmd::simulate::run(a),
        Command::Serve(a) => cmd::serve::run(a),
        Command::Profile(a) => cmd::profile::run(a),
        Command::Peer(a) => cmd::peer::run(a),
    };
    if let Err(e) = result {
        // One line: the chain of contexts, outermost first.
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
