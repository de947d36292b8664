//! `tessera demo`: the trained LeNet classifying the bundled MNIST test
//! digits, with the model's per-layer cost, latency and computed accuracy.

use anyhow::{bail, Result};
use serde::Serialize;
use tessera_graph::{cost_table, passes, zoo};
use tessera_kernels::{Backend, CpuBackend};

use super::{clock_ms, median};

#[derive(clap::Args)]
pub struct Args {
    /// Digits to classify (default: all bundled digits).
    #[arg(long)]
    frames: Option<usize>,
    /// Print one JSON summary object instead of tables.
    #[arg(long)]
    json: bool,
    /// CPU threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

#[derive(Serialize)]
struct Summary {
    model: String,
    frames: usize,
    correct: usize,
    accuracy: f64,
    latency_ms_median: f64,
    ips: f64,
    backend: String,
}

pub fn run(a: Args) -> Result<()> {
    if a.threads == 0 {
        bail!("--threads must be at least 1");
    }
    let declared = zoo::build("lenet")?;
    let g = passes::optimize(&declared)?;
    let digits = zoo::test_digits()?;
    let frames = a.frames.unwrap_or(digits.len());
    if frames == 0 || frames > digits.len() {
        bail!("--frames must be between 1 and {} (bundled digits)", digits.len());
    }
    let backend = CpuBackend::new(a.threads);
    let mut exe = backend.compile(&g)?;
    let mut correct = 0;
    let mut times = Vec::with_capacity(frames);
    let start = clock_ms();
    for d in &digits[..frames] {
        let t = clock_ms();
        let out = exe.run(std::slice::from_ref(&d.image))?;
        times.push(clock_ms() - t);
        if out[0].argmax() == d.label as usize {
            correct += 1;
        }
    }
    let wall = clock_ms() - start;
    let s = Summary {
        model: "lenet".into(),
        frames,
        correct,
        accuracy: correct as f64 / frames as f64,
        latency_ms_median: median(&mut times),
        ips: frames as f64 / (wall / 1e3),
        backend: backend.name(),
    };
    if a.json {
        println!("{}", serde_json::to_string(&s)?);
        return Ok(());
    }
    println!("Tessera demo: LeNet (seed 000) trained on MNIST, {} bundled test digits\n", digits.len());
    print!("{}", cost_table(&declared).render());
    println!(
        "\n{} digits on {}: accuracy {:.2}% ({} / {}), median latency {:.3} ms, {:.0} images/s",
        s.frames,
        s.backend,
        100.0 * s.accuracy,
        s.correct,
        s.frames,
        s.latency_ms_median,
        s.ips
    );
    Ok(())
}
