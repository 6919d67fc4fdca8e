//! Measures how fast a world streams: `cargo run --release -p troth-sim --example rate -- worlds/big.toml [customers] [days]`.
use std::io::Write;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| "worlds/retail.toml".into());
    let text = std::fs::read_to_string(&path).expect("read the world file");
    let mut world = troth_sim::World::from_toml(&text).expect("a valid world");
    if let Some(c) = args.next() {
        world.customers = c.parse().expect("customers");
    }
    if let Some(d) = args.next() {
        world.days = d.parse().expect("days");
    }
    let started = Instant::now();
    let mut out: Box<dyn Write> = if std::env::var_os("SIM_OUT").is_some() {
        Box::new(std::io::BufWriter::new(std::io::stdout().lock()))
    } else {
        Box::new(std::io::sink())
    };
    let mut bytes = 0u64;
    let manifest = troth_sim::simulate(&world, &mut |line| {
        bytes += line.len() as u64 + 1;
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")
    })
    .expect("simulate");
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{} events ({:.1} MB) of {} customers over {} days in {secs:.2}s: {:.0} events/s",
        manifest.events,
        bytes as f64 / 1e6,
        manifest.customers,
        manifest.days,
        manifest.events as f64 / secs
    );
}
