//! Times one Argon2id hash with the given parameters (defaults: the server's),
//! through the server's own hashing function, so the benchmark can state the
//! Argon2 bound of this machine for exactly the work a login does.
//!
//!     cargo run --release --example hash_timing -- [MEMORY_KIB TIME_COST PARALLELISM [ROUNDS]]

use std::time::Instant;

use secure_api::auth::password::{HashParams, hash_blocking};
use secure_api::secret::SecretString;

fn main() -> Result<(), String> {
    let args: Vec<u32> = std::env::args()
        .skip(1)
        .map(|a| a.parse().map_err(|_| format!("not a number: {a}")))
        .collect::<Result<_, _>>()?;
    let arg = |i: usize, default: u32| args.get(i).copied().unwrap_or(default);
    let (memory, time_cost, lanes, rounds) = (arg(0, 65_536), arg(1, 3), arg(2, 4), arg(3, 10));
    let params = HashParams {
        memory_kib: memory,
        time_cost,
        parallelism: lanes,
    }
    .validate(true)
    .map_err(|e| e.to_string())?;
    let password = SecretString::new("Correct-Horse-9-Battery".to_owned());
    // One untimed hash first: a hashing thread keeps its memory, so the page
    // faults of the first allocation are not the steady state.
    hash_blocking(&params, &password).map_err(|e| e.to_string())?;
    let started = Instant::now();
    for _ in 0..rounds {
        hash_blocking(&params, &password).map_err(|e| e.to_string())?;
    }
    let per_hash_ms = started.elapsed().as_secs_f64() * 1000.0 / f64::from(rounds.max(1));
    println!(
        "{{\"memory_kib\":{memory},\"time_cost\":{time_cost},\"parallelism\":{lanes},\"rounds\":{rounds},\"ms_per_hash\":{per_hash_ms:.1}}}"
    );
    Ok(())
}
