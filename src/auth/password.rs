//! Argon2id hashing off the async runtime, bounded so that a login flood is
//! refused with 503 instead of queueing unbounded memory.
//!
//! Each hashing thread keeps its Argon2 memory (`memory_kib`) from its first
//! hash on: a fresh 64 MiB allocation per hash costs page faults and zeroing
//! on every login, and an allocator may keep freed blocks around, so the
//! process would hold an amount set by the allocator. Kept per thread, the
//! memory is exactly workers × `memory_kib`, and a hash runs about a quarter
//! faster (107-124 ms against 142-159 ms, A/B in one process).

use std::sync::Arc;

use std::cell::RefCell;
use std::sync::mpsc;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, ParamsString, PasswordHash, Salt, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use zeroize::Zeroize;

use tokio::sync::{OnceCell, OwnedSemaphorePermit, Semaphore, oneshot};

use crate::secret::SecretString;

/// OWASP's minimum for Argon2id (m=19 MiB, t=2); below it only with
/// `--insecure-fast-hash`.
pub const OWASP_MIN_MEMORY_KIB: u32 = 19_456;
pub const OWASP_MIN_TIME_COST: u32 = 2;
const MAX_MEMORY_KIB: u32 = 4 * 1024 * 1024;
const MAX_TIME_COST: u32 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashParams {
    pub memory_kib: u32,
    pub time_cost: u32,
    pub parallelism: u32,
}

impl Default for HashParams {
    fn default() -> Self {
        Self {
            memory_kib: 65_536,
            time_cost: 3,
            parallelism: 4,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HashParamsError {
    #[error(
        "argon2 parameters below OWASP's minimum (memory {memory_kib} KiB, time cost {time_cost}); \
         use at least {OWASP_MIN_MEMORY_KIB} KiB and time cost {OWASP_MIN_TIME_COST}, \
         or --insecure-fast-hash for tests"
    )]
    BelowOwasp { memory_kib: u32, time_cost: u32 },
    #[error(
        "argon2 parameters too large (at most {MAX_MEMORY_KIB} KiB, time cost {MAX_TIME_COST}, parallelism 64)"
    )]
    TooLarge,
    #[error("invalid argon2 parameters: {0}")]
    Invalid(argon2::Error),
}

impl HashParams {
    /// Refuses parameters Argon2 cannot use, and weak ones unless `allow_weak`.
    pub fn validate(self, allow_weak: bool) -> Result<Params, HashParamsError> {
        if !allow_weak
            && (self.memory_kib < OWASP_MIN_MEMORY_KIB || self.time_cost < OWASP_MIN_TIME_COST)
        {
            return Err(HashParamsError::BelowOwasp {
                memory_kib: self.memory_kib,
                time_cost: self.time_cost,
            });
        }
        // Each running hash allocates memory_kib: a typo must not make the
        // first login abort the process on allocation failure.
        if self.memory_kib > MAX_MEMORY_KIB
            || self.time_cost > MAX_TIME_COST
            || self.parallelism > 64
        {
            return Err(HashParamsError::TooLarge);
        }
        Params::new(self.memory_kib, self.time_cost, self.parallelism, None)
            .map_err(HashParamsError::Invalid)
    }
}

/// The production parameters (64 MiB, t=3, p=4), already validated.
pub fn default_params() -> Params {
    // Constants that validate; the fallback is never taken.
    HashParams::default().validate(false).unwrap_or_default()
}

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Every worker is busy and the wait queue is full: answer 503.
    #[error("password hashing is saturated")]
    Busy,
    #[error("password hashing failed: {0}")]
    Failed(String),
}

/// A place among the hashes running or waiting; released when dropped.
pub struct Admission(#[allow(dead_code)] OwnedSemaphorePermit);

/// What a verification found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    pub matches: bool,
    /// The stored hash used other parameters than the configured ones.
    pub needs_rehash: bool,
}

pub struct PasswordHasher {
    params: Params,
    pool: HashPool,
    admission: Arc<Semaphore>,
    dummy_hash: OnceCell<String>,
}

/// Nice value of the hashing threads: under a login flood they take the CPU
/// that requests do not need, instead of half of it whatever requests need.
const HASH_THREAD_NICE: i32 = 10;

type Job = Box<dyn FnOnce() + Send>;

/// `workers` dedicated threads, at a lower scheduling priority than the
/// async runtime (tokio's blocking pool is shared with database calls, so its
/// threads cannot be reniced and restored: raising priority back needs
/// CAP_SYS_NICE).
struct HashPool {
    jobs: std::sync::Mutex<mpsc::Sender<Job>>,
    /// Kernel ids of the running threads (tests look up their priority).
    #[cfg_attr(not(test), allow(dead_code))]
    thread_ids: Vec<rustix::thread::Pid>,
}

impl HashPool {
    /// Returns once every thread that could be started runs at its lower
    /// priority, so no hash is ever computed at the runtime's priority.
    fn start(workers: usize) -> Self {
        let (sender, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(std::sync::Mutex::new(receiver));
        let (started, ready) = mpsc::channel::<rustix::thread::Pid>();
        let mut spawned_count = 0;
        for _ in 0..workers {
            let receiver = Arc::clone(&receiver);
            let started = started.clone();
            let spawned = std::thread::Builder::new()
                .name("secure-api-hash".to_owned())
                .spawn(move || {
                    let tid = rustix::thread::gettid();
                    if let Err(e) =
                        rustix::process::setpriority_process(Some(tid), HASH_THREAD_NICE)
                    {
                        tracing::warn!(error = %e, "could not lower the hashing thread's priority");
                    }
                    // The pool may have given up waiting; the thread still serves.
                    let _ = started.send(tid);
                    drop(started);
                    loop {
                        let next = match receiver.lock() {
                            Ok(guard) => guard.recv(),
                            Err(poisoned) => poisoned.into_inner().recv(),
                        };
                        match next {
                            Ok(job) => job(),
                            // The hasher is gone: so is the work.
                            Err(_) => return,
                        }
                    }
                });
            match spawned {
                Ok(_) => spawned_count += 1,
                Err(e) => tracing::error!(error = %e, "could not start a hashing thread"),
            }
        }
        drop(started);
        let thread_ids = ready.iter().take(spawned_count).collect();
        Self {
            jobs: std::sync::Mutex::new(sender),
            thread_ids,
        }
    }

    fn submit(&self, job: Job) -> Result<(), HashError> {
        let sender = match self.jobs.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        sender
            .send(job)
            .map_err(|_| HashError::Failed("the hashing threads are gone".to_owned()))
    }
}

impl PasswordHasher {
    /// `workers` jobs run at once; up to `queue` more wait; the rest get `Busy`.
    pub fn new(params: Params, workers: usize, queue: usize) -> Self {
        let workers = workers.max(1);
        Self {
            params,
            pool: HashPool::start(workers),
            admission: Arc::new(Semaphore::new(workers + queue)),
            dummy_hash: OnceCell::new(),
        }
    }

    /// A place in the hashing queue, or `Busy` at once. Taking it before
    /// other work (a login's database read) makes a refusal cheap.
    pub fn admit(&self) -> Result<Admission, HashError> {
        Arc::clone(&self.admission)
            .try_acquire_owned()
            .map(Admission)
            .map_err(|_| HashError::Busy)
    }

    pub async fn hash(&self, password: &SecretString) -> Result<String, HashError> {
        let admission = self.admit()?;
        let password = password.clone();
        let params = self.params.clone();
        self.run(admission, move || hash_blocking(&params, &password))
            .await?
    }

    /// Verifies against `stored`, or, when there is no such user, against a
    /// dummy hash made with the same parameters so the answer takes as long.
    pub async fn verify(
        &self,
        password: &SecretString,
        stored: Option<String>,
    ) -> Result<Verified, HashError> {
        let admission = self.admit()?;
        self.verify_admitted(admission, password, stored).await
    }

    /// `verify` with a place taken earlier by `admit`.
    pub async fn verify_admitted(
        &self,
        admission: Admission,
        password: &SecretString,
        stored: Option<String>,
    ) -> Result<Verified, HashError> {
        let (stored, real) = match stored {
            Some(hash) => (hash, true),
            None => (self.dummy_hash().await?, false),
        };
        let password = password.clone();
        let params = self.params.clone();
        let verified = self
            .run(admission, move || {
                verify_blocking(&params, &password, &stored)
            })
            .await??;
        Ok(Verified {
            matches: verified.matches && real,
            needs_rehash: verified.needs_rehash && real,
        })
    }

    /// Computes the dummy hash ahead of the first unknown-email login.
    pub async fn warm_up(&self) {
        if let Err(e) = self.dummy_hash().await {
            tracing::warn!(error = %e, "could not precompute the dummy password hash");
        }
    }

    /// Made once, outside the admission limit: it is start-up work, and
    /// counting it would refuse the first real logins of a small pool.
    /// It runs on a hashing thread like any hash, so its memory is the
    /// thread's own and no other thread ever holds Argon2 memory.
    async fn dummy_hash(&self) -> Result<String, HashError> {
        self.dummy_hash
            .get_or_try_init(|| async {
                let params = self.params.clone();
                let random = SecretString::new(uuid::Uuid::new_v4().to_string());
                self.run(None, move || hash_blocking(&params, &random))
                    .await?
            })
            .await
            .cloned()
    }

    async fn run<T, F>(
        &self,
        admitted: impl Into<Option<Admission>>,
        job: F,
    ) -> Result<T, HashError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let admitted = admitted.into();
        let (done, result) = oneshot::channel();
        let request = crate::telemetry::context::current();
        self.pool.submit(Box::new(move || {
            // The permit moves into the job: if the client goes away, the
            // hash still occupies a worker until it ends, and is counted.
            let _admitted = admitted;
            let _ = done.send(crate::telemetry::context::run_within(request, job));
        }))?;
        result
            .await
            .map_err(|_| HashError::Failed("hash job ended abnormally".to_owned()))
    }
}

fn argon2(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

/// Hashes `password` with a fresh salt into a PHC string, on the calling
/// thread and with its kept Argon2 memory (public for the benchmark's timing
/// example, which must time exactly what the server does).
pub fn hash_blocking(params: &Params, password: &SecretString) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    let argon = argon2(params);
    let output = compute(&argon, password.expose().as_bytes(), salt.as_salt(), params)?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(params).map_err(failed)?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Ok(phc.to_string())
}

fn failed(error: impl std::fmt::Display) -> HashError {
    HashError::Failed(error.to_string())
}

thread_local! {
    /// This thread's Argon2 memory, kept from one hash to the next.
    static KEPT_MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Argon2 of `password` with `salt`, in this thread's kept memory, which is
/// never grown past `configured` (the configured parameters' block count): a
/// stored hash made with more memory than configured gets a buffer of its
/// own, freed afterwards, so the memory held stays workers × configured.
fn compute(
    argon: &Argon2<'_>,
    password: &[u8],
    salt: Salt<'_>,
    configured: &Params,
) -> Result<Output, HashError> {
    let mut salt_bytes = [0u8; 64];
    let salt_bytes = salt.decode_b64(&mut salt_bytes).map_err(failed)?;
    let blocks = argon.params().block_count();
    let output_len = argon
        .params()
        .output_len()
        .unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    let run = |memory: &mut [Block]| {
        let output = Output::init_with(output_len, |out| {
            argon
                .hash_password_into_with_memory(password, salt_bytes, out, &mut *memory)
                .map_err(argon2::password_hash::Error::from)
        })
        .map_err(failed);
        // Kept memory would otherwise hold the last password's Argon2 state
        // for the life of the thread (with one pass, blocks derived straight
        // from the password, enough to test guesses without the memory cost).
        memory.iter_mut().take(blocks).for_each(Zeroize::zeroize);
        output
    };
    KEPT_MEMORY.with(|cell| match cell.try_borrow_mut() {
        Ok(mut kept) if blocks <= configured.block_count() => {
            if kept.len() < blocks {
                kept.resize(blocks, Block::default());
            }
            run(&mut kept)
        }
        _ => run(&mut vec![Block::default(); blocks]),
    })
}

fn verify_blocking(
    params: &Params,
    password: &SecretString,
    stored: &str,
) -> Result<Verified, HashError> {
    let parsed =
        PasswordHash::new(stored).map_err(|e| HashError::Failed(format!("stored hash: {e}")))?;
    let current = Params::try_from(&parsed).ok();
    let matches = match (&current, parsed.salt, &parsed.hash) {
        (Some(stored_params), Some(salt), Some(expected)) => {
            let algorithm = Algorithm::try_from(parsed.algorithm)
                .map_err(|e| failed(format!("stored hash: {e}")))?;
            let version = parsed
                .version
                .map(Version::try_from)
                .transpose()
                .map_err(|e| failed(format!("stored hash: {e}")))?
                .unwrap_or_default();
            // The parsed parameters carry the stored output's length too.
            let computed = compute(
                &Argon2::new(algorithm, version, stored_params.clone()),
                password.expose().as_bytes(),
                salt,
                params,
            )?;
            // Output's equality is constant-time.
            computed == *expected
        }
        _ => false,
    };
    let needs_rehash = parsed.algorithm.as_str() != "argon2id"
        || current.is_none_or(|p| {
            p.m_cost() != params.m_cost()
                || p.t_cost() != params.t_cost()
                || p.p_cost() != params.p_cost()
        });
    Ok(Verified {
        matches,
        needs_rehash,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast() -> Params {
        HashParams {
            memory_kib: 256,
            time_cost: 1,
            parallelism: 1,
        }
        .validate(true)
        .unwrap()
    }

    #[test]
    fn weak_parameters_need_the_insecure_flag() {
        let weak = HashParams {
            memory_kib: 1024,
            time_cost: 1,
            parallelism: 1,
        };
        assert!(weak.validate(false).is_err());
        assert!(weak.validate(true).is_ok());
        assert!(HashParams::default().validate(false).is_ok());
        let production = default_params();
        assert_eq!(
            (
                production.m_cost(),
                production.t_cost(),
                production.p_cost()
            ),
            (65_536, 3, 4)
        );
        let huge = HashParams {
            memory_kib: u32::MAX,
            time_cost: 3,
            parallelism: 4,
        };
        assert!(matches!(
            huge.validate(false),
            Err(HashParamsError::TooLarge)
        ));
    }

    #[tokio::test]
    async fn hashes_are_argon2id_phc_strings_that_verify() {
        let hasher = PasswordHasher::new(fast(), 2, 2);
        let pw = SecretString::new("Correct-Horse-9".to_owned());
        let hash = hasher.hash(&pw).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=256,t=1,p=1$"), "{hash}");
        let ok = hasher.verify(&pw, Some(hash.clone())).await.unwrap();
        assert_eq!(
            ok,
            Verified {
                matches: true,
                needs_rehash: false
            }
        );
        let wrong = SecretString::new("wrong".to_owned());
        assert!(!hasher.verify(&wrong, Some(hash)).await.unwrap().matches);
    }

    /// The PHC strings are built by hand around the kept memory: they must
    /// agree with the argon2 crate's own, both ways, whatever memory size
    /// this thread has kept from earlier hashes.
    #[test]
    fn hashes_agree_with_the_reference_implementation_both_ways() {
        use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
        let password = SecretString::new("Correct-Horse-9".to_owned());
        for memory_kib in [512, 128, 256] {
            let params = HashParams {
                memory_kib,
                time_cost: 2,
                parallelism: 2,
            }
            .validate(true)
            .unwrap();
            let ours = hash_blocking(&params, &password).unwrap();
            let parsed = PasswordHash::new(&ours).unwrap();
            assert!(
                argon2(&params)
                    .verify_password(password.expose().as_bytes(), &parsed)
                    .is_ok(),
                "{ours}"
            );
            let salt = SaltString::generate(&mut OsRng);
            let reference = argon2(&params)
                .hash_password(password.expose().as_bytes(), &salt)
                .unwrap()
                .to_string();
            let verified = verify_blocking(&params, &password, &reference).unwrap();
            assert!(verified.matches && !verified.needs_rehash, "{reference}");
            let wrong = SecretString::new("Correct-Horse-8".to_owned());
            assert!(
                !verify_blocking(&params, &wrong, &reference)
                    .unwrap()
                    .matches
            );
        }
        // Other variants and output lengths still verify (and ask for a rehash).
        let params = Params::new(256, 1, 1, Some(16)).unwrap();
        let salt = SaltString::generate(&mut OsRng);
        let argon2i = Argon2::new(Algorithm::Argon2i, Version::V0x13, params)
            .hash_password(password.expose().as_bytes(), &salt)
            .unwrap()
            .to_string();
        let verified = verify_blocking(&fast(), &password, &argon2i).unwrap();
        assert!(verified.matches && verified.needs_rehash, "{argon2i}");
    }

    #[test]
    fn kept_memory_holds_nothing_of_the_last_password() {
        std::thread::spawn(|| {
            let password = SecretString::new("Correct-Horse-9".to_owned());
            let stored = hash_blocking(&fast(), &password).unwrap();
            verify_blocking(&fast(), &password, &stored).unwrap();
            // A stored hash made with more memory than configured verifies
            // in a buffer of its own: the kept one does not grow.
            let bigger = HashParams {
                memory_kib: 1024,
                time_cost: 1,
                parallelism: 1,
            }
            .validate(true)
            .unwrap();
            let stored_bigger = hash_blocking(&bigger, &password);
            KEPT_MEMORY.with(|cell| cell.borrow_mut().truncate(256));
            let verified = verify_blocking(&fast(), &password, &stored_bigger.unwrap()).unwrap();
            assert!(verified.matches && verified.needs_rehash);
            KEPT_MEMORY.with(|cell| {
                let kept = cell.borrow();
                assert_eq!(kept.len(), 256, "the memory is kept");
                assert!(
                    kept.iter()
                        .all(|block| block.as_ref().iter().all(|&word| word == 0)),
                    "and wiped after each use"
                );
            });
        })
        .join()
        .unwrap();
    }

    #[tokio::test]
    async fn an_unknown_user_never_matches_but_still_costs_a_verification() {
        let hasher = PasswordHasher::new(fast(), 1, 1);
        let pw = SecretString::new("anything".to_owned());
        let verified = hasher.verify(&pw, None).await.unwrap();
        assert!(!verified.matches);
        assert!(hasher.dummy_hash.get().is_some());
    }

    #[tokio::test]
    async fn older_parameters_ask_for_a_rehash() {
        let old = PasswordHasher::new(fast(), 1, 1);
        let pw = SecretString::new("Correct-Horse-9".to_owned());
        let hash = old.hash(&pw).await.unwrap();
        let newer = HashParams {
            memory_kib: 512,
            time_cost: 1,
            parallelism: 1,
        }
        .validate(true)
        .unwrap();
        let verified = PasswordHasher::new(newer, 1, 1)
            .verify(&pw, Some(hash))
            .await
            .unwrap();
        assert_eq!(
            verified,
            Verified {
                matches: true,
                needs_rehash: true
            }
        );
    }

    #[tokio::test]
    async fn hashing_threads_run_at_a_lower_priority() {
        let hasher = PasswordHasher::new(fast(), 2, 0);
        // Exactly this pool's threads, all started when `new` returned:
        // other tests' pools in this process do not count.
        let thread_ids = &hasher.pool.thread_ids;
        assert_eq!(thread_ids.len(), 2);
        for tid in thread_ids {
            let task = format!("/proc/self/task/{}", tid.as_raw_nonzero());
            let comm = std::fs::read_to_string(format!("{task}/comm")).unwrap();
            assert_eq!(comm.trim(), "secure-api-hash");
            let stat = std::fs::read_to_string(format!("{task}/stat")).unwrap();
            // Field 19 (nice) counted after the parenthesised command name.
            let after_name = stat.rsplit_once(')').unwrap().1;
            let nice: i32 = after_name
                .split_whitespace()
                .nth(16)
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(nice, HASH_THREAD_NICE);
        }
    }

    #[tokio::test]
    async fn a_full_queue_is_refused_instead_of_growing() {
        let hasher = Arc::new(PasswordHasher::new(fast(), 1, 0));
        // Hold the only admission permit, as a running job would.
        let held = Arc::clone(&hasher.admission).try_acquire_owned().unwrap();
        let pw = SecretString::new("Correct-Horse-9".to_owned());
        assert!(matches!(hasher.hash(&pw).await, Err(HashError::Busy)));
        drop(held);
        assert!(hasher.hash(&pw).await.is_ok());
    }
}
