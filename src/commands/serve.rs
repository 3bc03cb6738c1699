use sd_notify::NotifyState;

use crate::app::Application;
use crate::cli::ServeArgs;
use crate::config::Config;
use crate::memory_limit;
use crate::server::signals::{reload_signal, shutdown_signal};
use crate::telemetry;

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let flush_logs = telemetry::init(args.log_format, &args.log_level)?;
    let credentials = std::env::var_os("CREDENTIALS_DIRECTORY").map(std::path::PathBuf::from);
    let config = Config::from_args(&args, credentials.as_deref())?;
    if let Some(limit) = memory_limit::current() {
        memory_limit::check_hashing_fits(config.hash_workers, config.hash.m_cost(), limit)?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("secure-api")
        .build()?;
    runtime.block_on(async move {
        let shutdown = shutdown_signal()?;
        let mut hangups = reload_signal()?;
        let app = Application::build(config).await?;
        let certs = app.certificates();
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                match certs.reload() {
                    Ok(()) => tracing::info!("SIGHUP: TLS certificate reloaded"),
                    Err(e) => tracing::error!(error = %e, "SIGHUP: TLS certificate not reloaded; keeping the current one"),
                }
            }
        });
        for notice in app.notices() {
            // Loud on purpose: an operator must notice secrets appearing.
            eprintln!("secure-api: NOTICE: {notice}");
            tracing::warn!("{notice}");
        }
        if let Some(redirect) = app.redirect_addr() {
            tracing::info!(redirect_address = %redirect, "redirecting http://{redirect} to HTTPS");
        }
        tracing::info!(
            address = %app.local_addr(),
            version = crate::VERSION,
            "listening on https://{}",
            app.local_addr()
        );
        // Whoever waits for readiness reads this line now, not at the next flush.
        flush_logs.output().flush();
        // systemd (Type=notify): ready only now that the schema is checked,
        // the keys and certificate are loaded and the listener is bound.
        notify(&[NotifyState::Ready]);
        let watchdog = sd_notify::watchdog_enabled().map(|period| {
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(period / 2);
                loop {
                    ticks.tick().await;
                    notify(&[NotifyState::Watchdog]);
                }
            })
        });
        let shutdown = async move {
            shutdown.await;
            notify(&[NotifyState::Stopping]);
        };
        app.run_until_stopped(shutdown).await;
        if let Some(watchdog) = watchdog {
            watchdog.abort();
        }
        tracing::info!("stopped");
        Ok(())
    })
}

/// Tells systemd about our state; without `$NOTIFY_SOCKET` this does nothing.
fn notify(state: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(state) {
        tracing::warn!(error = %e, "could not notify systemd");
    }
}
