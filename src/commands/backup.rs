use crate::cli::BackupArgs;
use crate::store::{DB_FILE, backup};

pub fn run(args: BackupArgs) -> anyhow::Result<()> {
    let source = args.data_dir.data_dir.join(DB_FILE);
    backup::backup(&source, &args.file)?;
    println!("backup written to {}", args.file.display());
    Ok(())
}
