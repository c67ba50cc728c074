//! Copies the Spin and WASI WIT packages from the pinned `spin-sdk` crate in the
//! cargo registry into `wit/deps/`, so `bindgen!` can resolve the imports that
//! `wit/parking.wit` names. Those files are Spin's, not ours: they are never
//! committed (`wit/deps/` is git-ignored) and always match the SDK the
//! components are built with.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Must equal the `spin-sdk` version pinned in the workspace `Cargo.toml`.
const SPIN_SDK: &str = "spin-sdk-5.2.0";

/// The WIT packages `wit/parking.wit` reaches, directly or through Spin's
/// `fermyon:spin@2.0.0` package (whose worlds also name the 2023-10-18 WASI
/// release candidate).
const PACKAGES: &[&str] = &[
    "spin@2.0.0",
    "spin-postgres@3.0.0",
    "cli@0.2.0",
    "clocks@0.2.0",
    "filesystem@0.2.0",
    "http@0.2.0",
    "io@0.2.0",
    "random@0.2.0",
    "sockets@0.2.0",
    "cli-2023-10-18",
    "clocks-2023-10-18",
    "filesystem-2023-10-18",
    "http-2023-10-18",
    "io-2023-10-18",
    "random-2023-10-18",
    "sockets-2023-10-18",
];

fn main() -> Result<()> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let wit = manifest_dir.join("../wit");
    println!("cargo:rerun-if-changed=../wit/parking.wit");
    println!("cargo:rerun-if-changed=build.rs");
    // A fresh clone where a shared target directory already ran this script
    // has no wit/deps: a missing (or changed) folder runs it again.
    println!("cargo:rerun-if-changed=../wit/deps");
    // sqlx's `migrate!` embeds the migrations but does not watch their
    // folders: a migration added later would be missing from the binary.
    println!("cargo:rerun-if-changed=migrations");

    let from = find_sdk()?.join("wit/deps");
    let deps = wit.join("deps");
    // Only the packages the parking world reaches: the SDK also ships WASI
    // 0.3 release candidates, whose async types the host does not enable.
    if let Ok(entries) = std::fs::read_dir(&deps) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            if !PACKAGES.iter().any(|p| name == **p) {
                let _ = std::fs::remove_dir_all(entry.path()).or_else(|_| std::fs::remove_file(entry.path()));
            }
        }
    }
    for package in PACKAGES {
        copy_dir(&from.join(package), &deps.join(package))
            .with_context(|| format!("copying Spin's WIT package {package} from {}", from.display()))?;
    }
    Ok(())
}

/// Finds `spin-sdk` in the cargo registry (`$CARGO_HOME/registry/src/<index>/`).
fn find_sdk() -> Result<PathBuf> {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .context("neither CARGO_HOME nor HOME is set: cannot find the cargo registry")?;
    let registry = cargo_home.join("registry/src");
    if let Ok(indexes) = std::fs::read_dir(&registry) {
        for index in indexes.flatten() {
            let candidate = index.path().join(SPIN_SDK);
            if candidate.join("wit").is_dir() {
                return Ok(candidate);
            }
        }
    }
    bail!(
        "{SPIN_SDK} is not in the cargo registry under {}: run `cargo fetch` in the workspace \
         (scripts/build-components.sh does) so its WIT files can be read",
        registry.display()
    )
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            let bytes = std::fs::read(entry.path())?;
            // Only write on change, so the files' mtimes do not force rebuilds.
            if std::fs::read(&target).ok().as_deref() != Some(&bytes[..]) {
                std::fs::write(&target, bytes)?;
            }
        }
    }
    Ok(())
}
