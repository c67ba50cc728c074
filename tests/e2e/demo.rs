//! `parkd up --demo` is alive: its simulated sensors move the demo lot's
//! counts, and its terminal's kiosk stream shows frames, within seconds.

use std::time::Duration;

use parking_tests::terminals::SseStream;
use serde_json::Value;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_lot_moves_and_its_kiosk_shows_frames() {
    let data = tempfile::tempdir().unwrap();
    let running = parkd::up::start(parkd::up::UpOptions {
        manifest: parking_tests::repo_root().join("spin.toml"),
        listen: "127.0.0.1:0".parse().unwrap(),
        database: "sqlite".into(),
        data_dir: data.path().to_path_buf(),
        cache_dir: std::env::var_os("PARKD_CACHE_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::env::temp_dir().join("parkd-test-components")),
        demo: true,
        variables: Default::default(),
        components: Vec::new(),
        serve_all_paths: false,
        mqtt: parkd::up::MqttMode::Embedded(format!("127.0.0.1:{}", free_port()).parse().unwrap()),
        sweep_schedule: None,
        gateway_keep_alive: Duration::from_secs(15),
        gateway_frame_interval: parkd::gateway::DEFAULT_FRAME_INTERVAL,
        insecure: false,
        limits: Default::default(),
    })
    .await
    .unwrap();
    let base = format!("http://{}", running.addr);
    let token = running.demo_token.clone().expect("--demo provisions a terminal and gives its token");
    let client = reqwest::Client::new();
    let mut stream = SseStream::open(
        &client,
        &format!("{base}/terminals/{}/stream?token={token}", parkd::demo::DEMO_TERMINAL),
        None,
    )
    .await
    .unwrap();

    // Every bay starts unknown; the simulated sensors report within seconds.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let availability: Value = client
            .get(format!("{base}/api/v1/lots/{}/availability", parkd::demo::DEMO_LOT))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let cars = &availability["classes"]["four_wheeler"];
        if cars["free"].as_u64().unwrap_or(0) + cars["occupied"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the demo lot did not move in 30 s: {availability}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let frame = stream.next_frame(Duration::from_secs(30)).await.unwrap();
    assert_eq!(frame.json()["terminal"], parkd::demo::DEMO_TERMINAL, "{frame:?}");
}
