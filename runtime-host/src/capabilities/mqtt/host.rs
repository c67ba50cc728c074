//! The `fermyon:spin/mqtt` host functions, on rumqttc.

use std::time::Duration;

use rumqttc::QoS;
use wasmtime::component::Resource;

use super::{ClientKey, MqttConnection, MqttInstance};
use crate::capabilities::bindings::fermyon::spin::mqtt::{Error, Host, HostConnection, Payload, Qos};

impl Host for MqttInstance {}

impl HostConnection for MqttInstance {
    async fn open(
        &mut self,
        address: String,
        username: String,
        password: String,
        keep_alive_interval_in_secs: u64,
    ) -> wasmtime::Result<Result<Resource<MqttConnection>, Error>> {
        let Ok(url) = url::Url::parse(&address) else { return Ok(Err(Error::InvalidAddress)) };
        let Some(host) = url.host_str().map(str::to_owned) else { return Ok(Err(Error::InvalidAddress)) };
        match url.scheme() {
            "mqtt" => {}
            "mqtts" => {
                return Ok(Err(Error::ConnectionFailed(
                    "mqtts:// is not supported by parkd: use mqtt:// (TLS ends at the broker's network edge)"
                        .into(),
                )));
            }
            _ => return Ok(Err(Error::InvalidAddress)),
        }
        let port = url.port().unwrap_or(1883);
        if let Err(refused) = self.allowed.check("mqtt", &host, Some(port)) {
            tracing::warn!(%refused, "refused an MQTT connection");
            return Ok(Err(Error::ConnectionFailed(refused.to_string())));
        }
        // Spin requires `?client_id=`; without one, parkd names the shared client itself.
        let client_id = url.query_pairs().find(|(k, _)| k == "client_id").map(|(_, v)| v.into_owned());
        let keep_alive = match keep_alive_interval_in_secs {
            0 => Duration::from_secs(30),
            s => Duration::from_secs(s.clamp(5, 3600)),
        };
        let key = ClientKey { host, port, client_id, username, password };
        let client = match self.shared.client(key, keep_alive) {
            Ok(client) => client,
            Err(e) => return Ok(Err(e)),
        };
        let mut connected = client.connected.clone();
        let waited = tokio::time::timeout(self.shared.connect_timeout, connected.wait_for(|up| *up)).await;
        if !matches!(waited, Ok(Ok(_))) {
            let cause = client.last_error.lock().expect("error slot lock").clone();
            return Ok(Err(Error::ConnectionFailed(format!(
                "MQTT broker {} did not accept a connection within {:?}{}",
                client.address,
                self.shared.connect_timeout,
                cause.map(|c| format!(": {c}")).unwrap_or_default()
            ))));
        }
        Ok(Ok(self.connections.push(MqttConnection { client })?))
    }

    async fn publish(
        &mut self,
        connection: Resource<MqttConnection>,
        topic: String,
        payload: Payload,
        qos: Qos,
    ) -> wasmtime::Result<Result<(), Error>> {
        let retain = self.retained(&topic);
        let connection = self.connections.get(&connection)?;
        if !rumqttc::valid_topic(&topic) {
            return Ok(Err(Error::Other(format!(
                "{topic:?} is not a topic one may publish to (no wildcards, not empty)"
            ))));
        }
        let shared = &connection.client;
        // A message queued while the broker is away could be lost with the
        // session: refuse now, so the caller retries (its event is redelivered).
        if !*shared.connected.borrow() {
            return Ok(Err(Error::ConnectionFailed(format!(
                "MQTT broker {} is not connected; retry later",
                shared.address
            ))));
        }
        let qos = match qos {
            Qos::AtMostOnce => QoS::AtMostOnce,
            Qos::AtLeastOnce => QoS::AtLeastOnce,
            Qos::ExactlyOnce => QoS::ExactlyOnce,
        };
        match shared.client.publish(topic, qos, retain, payload).await {
            Ok(()) => Ok(Ok(())),
            Err(e) => Ok(Err(Error::Other(format!("publishing to {}: {e}", shared.address)))),
        }
    }

    async fn drop(&mut self, connection: Resource<MqttConnection>) -> wasmtime::Result<()> {
        // The shared client stays open for the next instance.
        self.connections.delete(connection)?;
        Ok(())
    }
}
