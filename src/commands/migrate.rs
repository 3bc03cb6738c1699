use crate::cli::MigrateArgs;
use crate::commands::NegativeOutcome;
use crate::store::migrations::{self, Status};
use crate::store::{self, DB_FILE};

pub fn run(args: MigrateArgs) -> anyhow::Result<()> {
    let path = args.data_dir.data_dir.join(DB_FILE);
    let target = migrations::Plan::CURRENT.target();
    if args.check {
        return match store::schema_status(&path)? {
            Some(Status::Current(v)) => {
                println!("database is up to date (schema version {v})");
                Ok(())
            }
            None | Some(Status::Empty) => Err(NegativeOutcome(format!(
                "no database yet at {}; `secure-api migrate` creates it at schema version {target}",
                path.display()
            ))
            .into()),
            Some(Status::Behind { found, target }) => Err(NegativeOutcome(format!(
                "migration pending: schema version {found}, this binary needs {target}"
            ))
            .into()),
            Some(status) => Err(migrations::refusal(status).into()),
        };
    }
    crate::files::ensure_private_dir(&args.data_dir.data_dir)?;
    let outcome = store::migrate(&path)?;
    if outcome.from == outcome.to {
        println!("database is up to date (schema version {})", outcome.to);
    } else {
        println!(
            "migrated {} from schema version {} to {}",
            path.display(),
            outcome.from,
            outcome.to
        );
    }
    Ok(())
}
