use crate::cli::MigrateArgs;
use crate::commands::NegativeOutcome;
use crate::store::{self, SchemaStatus as Status};

pub fn run(args: MigrateArgs) -> anyhow::Result<()> {
    let data_dir = &args.data_dir.data_dir;
    let path = store::database_path(data_dir);
    let target = store::schema_target();
    if args.check {
        return match store::schema_status(data_dir)? {
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
            Some(status) => Err(store::schema_refusal(status).into()),
        };
    }
    crate::files::ensure_private_dir(&args.data_dir.data_dir)?;
    let outcome = store::migrate(data_dir)?;
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
