//! Loading components: imports parkd cannot satisfy, and the compiled cache.

use std::path::Path;

use parkd::app::prepare;
use parkd::engine::{Loaded, PoolLimits, load_component, new_engine};
use parkd::instance::linker;

/// A component that imports Spin's MQTT interface, which parkd does not provide yet.
const IMPORTS_MQTT: &str = r#"
(component
  (import "fermyon:spin/mqtt@2.0.0" (instance
    (export "publish" (func (param "topic" string)))
  ))
)
"#;

/// A component with no imports and no exports.
const EMPTY: &str = "(component)";

fn write(dir: &Path, name: &str, wat: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, wat::parse_str(wat).unwrap()).unwrap();
    path
}

fn small_engine() -> wasmtime::Engine {
    new_engine(&PoolLimits { concurrent_instances: 4, ..Default::default() }).unwrap()
}

#[tokio::test]
async fn an_import_the_host_cannot_satisfy_is_named_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let engine = small_engine();
    let wasm = write(dir.path(), "mqtt.wasm", IMPORTS_MQTT);
    let (component, _) = load_component(&engine, &wasm, &dir.path().join("cache")).unwrap();
    let err = prepare(&linker(&engine).unwrap(), &component, "terminal-push", &wasm).err().unwrap();
    let msg = format!("{err:#}");
    assert!(msg.contains("terminal-push"), "{msg}");
    assert!(msg.contains("fermyon:spin/mqtt@2.0.0"), "the missing import is named: {msg}");
    assert!(msg.contains("fermyon:spin/sqlite@2.0.0"), "what parkd does provide is listed: {msg}");
}

#[tokio::test]
async fn a_component_without_the_http_handler_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let engine = small_engine();
    let wasm = write(dir.path(), "empty.wasm", EMPTY);
    let (component, _) = load_component(&engine, &wasm, &dir.path().join("cache")).unwrap();
    let err = prepare(&linker(&engine).unwrap(), &component, "nothing", &wasm).err().unwrap();
    assert!(format!("{err:#}").contains("wasi:http/incoming-handler"), "{err:#}");
}

#[test]
fn compiled_components_are_cached_and_a_damaged_cache_is_recompiled() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let engine = small_engine();
    let wasm = write(dir.path(), "empty.wasm", EMPTY);

    assert_eq!(load_component(&engine, &wasm, &cache).unwrap().1, Loaded::Compiled);
    assert_eq!(load_component(&engine, &wasm, &cache).unwrap().1, Loaded::FromCache);

    // A changed component is a different key: compiled again.
    write(dir.path(), "empty.wasm", "(component (core module))");
    assert_eq!(load_component(&engine, &wasm, &cache).unwrap().1, Loaded::Compiled);

    // A damaged cache entry is ignored and replaced.
    for entry in std::fs::read_dir(&cache).unwrap() {
        std::fs::write(entry.unwrap().path(), b"not machine code").unwrap();
    }
    assert_eq!(load_component(&engine, &wasm, &cache).unwrap().1, Loaded::Compiled);
    assert_eq!(load_component(&engine, &wasm, &cache).unwrap().1, Loaded::FromCache);
}

#[test]
fn a_missing_component_file_says_how_to_build_it() {
    let dir = tempfile::tempdir().unwrap();
    let engine = small_engine();
    let err = load_component(&engine, &dir.path().join("nope.wasm"), dir.path()).err().unwrap();
    assert!(format!("{err:#}").contains("build-components"), "{err:#}");
}
