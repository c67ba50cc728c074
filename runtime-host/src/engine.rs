//! The wasmtime engine and the on-disk cache of compiled components.
//!
//! Compiling a component with Cranelift takes seconds; loading a compiled one
//! takes milliseconds. The cache key covers the component's bytes and the
//! engine's compatibility hash (wasmtime version and settings), so a new
//! build or a changed config never loads stale machine code.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Limits of the instances: how many requests run at once (the pooling
/// allocator's slots), how much memory and how long each may use. Past them
/// a request is answered 503 (retry).
#[derive(Debug, Clone)]
pub struct PoolLimits {
    pub concurrent_instances: u32,
    pub max_memory_bytes: usize,
    /// A guest still running this long after its request arrived is trapped.
    pub request_deadline: std::time::Duration,
}

impl Default for PoolLimits {
    fn default() -> Self {
        Self {
            concurrent_instances: 256,
            max_memory_bytes: 256 << 20,
            request_deadline: std::time::Duration::from_secs(30),
        }
    }
}

pub fn new_engine(limits: &PoolLimits) -> Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    // Lets a stuck guest be interrupted (see `EPOCH_TICK`) instead of pinning a core.
    config.epoch_interruption(true);
    let n = limits.concurrent_instances;
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(n)
        // A Rust component is a handful of core modules (the program and
        // adapters), each with at most one memory and one table.
        .total_core_instances(n * 8)
        .total_memories(n * 2)
        .total_tables(n * 4)
        .total_stacks(n)
        .max_memory_size(limits.max_memory_bytes);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&config).map_err(anyhow::Error::from).context("creating the wasmtime engine")
}

/// How often the epoch advances; a request gets a deadline in ticks.
pub const EPOCH_TICK: std::time::Duration = std::time::Duration::from_millis(10);

/// Advances the engine's epoch forever, on a background thread.
pub fn start_epoch_ticker(engine: &Engine) {
    let engine = engine.weak();
    std::thread::Builder::new()
        .name("parkd-epoch".into())
        .spawn(move || {
            while let Some(engine) = engine.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawning the epoch thread");
}

/// Where compiled components are kept between runs.
pub fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PARKD_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("parkd").join("components")
}

/// Whether a component came from the cache or was compiled now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loaded {
    FromCache,
    Compiled,
}

/// Loads a component, compiling it only when the cache has no usable copy.
pub fn load_component(engine: &Engine, wasm: &Path, cache_dir: &Path) -> Result<(Component, Loaded)> {
    let bytes = std::fs::read(wasm).with_context(|| {
        format!(
            "cannot read component {}: build the components first (scripts/build-components.sh)",
            wasm.display()
        )
    })?;
    let cached = cache_dir.join(format!("{}.cwasm", cache_key(engine, &bytes)));
    if cached.is_file() {
        // SAFETY: the file was written by `precompile_component` of an engine
        // with the same compatibility hash (it is in the name), in parkd's
        // own cache directory; wasmtime still verifies the header.
        match unsafe { Component::deserialize_file(engine, &cached) } {
            Ok(component) => return Ok((component, Loaded::FromCache)),
            Err(e) => {
                tracing::warn!(path = %cached.display(), error = %e, "ignoring unusable cached component")
            }
        }
    }
    let compiled = engine
        .precompile_component(&bytes)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("compiling component {}", wasm.display()))?;
    if let Err(e) = write_atomically(&cached, &compiled) {
        tracing::warn!(path = %cached.display(), error = %e, "could not cache the compiled component");
    }
    // SAFETY: these bytes were produced by this engine a moment ago.
    let component = unsafe { Component::deserialize(engine, &compiled) }?;
    Ok((component, Loaded::Compiled))
}

fn cache_key(engine: &Engine, wasm: &[u8]) -> String {
    let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut engine_hash);
    let mut digest = Sha256::new();
    digest.update(env!("CARGO_PKG_VERSION"));
    digest.update(engine_hash.finish().to_le_bytes());
    digest.update(wasm);
    hex::encode(&digest.finalize()[..16])
}

/// Writes via a temporary file and a rename, so a crash never leaves half a file.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().context("cache path has no parent")?;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{}.{}.tmp", std::process::id(), uuid::Uuid::new_v4()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
