//! Times one Argon2id hash with the given parameters (defaults: the server's),
//! so the benchmark can state the Argon2 bound of this machine.
//!
//!     cargo run --release --example hash_timing -- [MEMORY_KIB TIME_COST PARALLELISM [ROUNDS]]

use std::time::Instant;

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

fn main() -> Result<(), String> {
    let args: Vec<u32> = std::env::args()
        .skip(1)
        .map(|a| a.parse().map_err(|_| format!("not a number: {a}")))
        .collect::<Result<_, _>>()?;
    let arg = |i: usize, default: u32| args.get(i).copied().unwrap_or(default);
    let (memory, time_cost, lanes, rounds) = (arg(0, 65_536), arg(1, 3), arg(2, 4), arg(3, 10));
    let params = Params::new(memory, time_cost, lanes, None).map_err(|e| e.to_string())?;
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let salt = SaltString::from_b64("c2FsdHNhbHRzYWx0c2FsdA").map_err(|e| e.to_string())?;
    // One untimed hash first: page faults of the first allocation are not the steady state.
    argon2
        .hash_password(b"warm-up", &salt)
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    for _ in 0..rounds {
        argon2
            .hash_password(b"Correct-Horse-9-Battery", &salt)
            .map_err(|e| e.to_string())?;
    }
    let per_hash_ms = started.elapsed().as_secs_f64() * 1000.0 / f64::from(rounds.max(1));
    println!(
        "{{\"memory_kib\":{memory},\"time_cost\":{time_cost},\"parallelism\":{lanes},\"rounds\":{rounds},\"ms_per_hash\":{per_hash_ms:.1}}}"
    );
    Ok(())
}
