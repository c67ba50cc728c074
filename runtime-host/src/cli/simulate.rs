//! `parkd simulate`: simulated bay sensors publishing readings over MQTT.

use anyhow::{Context, Result};

#[derive(clap::Args)]
pub struct SimulateArgs {
    /// The MQTT broker (the one `parkd up` embeds by default).
    #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
    mqtt: String,
    /// Number of bays.
    #[arg(long, default_value_t = 100)]
    bays: usize,
    /// Readings per second.
    #[arg(long, default_value_t = 50.0)]
    rate: f64,
    /// Readings to send in all.
    #[arg(long, default_value_t = 3000)]
    readings: u64,
    /// Provisions the matching lot through this parkd's admin API first.
    #[arg(long, value_name = "URL")]
    provision: Option<String>,
    /// The lot to provision.
    #[arg(long, default_value = "sim")]
    lot: String,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

impl SimulateArgs {
    pub async fn run(self) -> Result<()> {
        let Self { mqtt, bays, rate, readings, provision, lot, seed } = self;
        let url = url::Url::parse(&mqtt)
            .with_context(|| format!("--mqtt {:?} is not a URL", parkd::credentials::redact_url(&mqtt)))?;
        let options = parkd::simulate::SimulateOptions {
            mqtt_host: url.host_str().context("--mqtt needs a host")?.to_owned(),
            mqtt_port: url.port().unwrap_or(1883),
            bays,
            rate,
            readings,
            seed,
            ..Default::default()
        };
        if let Some(api) = provision {
            let body = parkd::simulate::lot_definition(&lot, &options.device_prefix, bays);
            let mut request =
                reqwest::Client::new().put(format!("{}/api/v1/lots/{lot}", api.trim_end_matches('/')));
            if let Ok(token) = std::env::var("PARKING_ADMIN_TOKEN") {
                request = request.bearer_auth(token);
            }
            let response = request
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .with_context(|| format!("provisioning lot {lot} at {api}: is parkd up?"))?;
            anyhow::ensure!(
                response.status().is_success(),
                "provisioning lot {lot} failed: {}",
                response.text().await?
            );
            tracing::info!("lot {lot} provisioned with {bays} simulated bays");
        }
        let summary = parkd::simulate::run(options).await?;
        tracing::info!(sent = summary.sent, "simulation done");
        Ok(())
    }
}
