//! The rendered manifests against what runs in them: the variables spin.toml
//! declares, the routes Spin and parkd serve, the metrics the scrapes reach.
//! Each check is also shown to catch the mistake it exists for, on a copy.

use knative_check::wiring::{
    Application, misdirected_event_sinks, undeclared_spin_variables, unscraped_metrics, unserved_subscribers,
};
use knative_check::{render, repo_root};
use serde_norway::Value;

const TARGETS: &[&str] = &["overlays/parkd", "overlays/spinkube"];

fn application() -> Application {
    Application::load(&repo_root().join("spin.toml")).unwrap_or_else(|e| panic!("{e:#}"))
}

fn rendered(target: &str) -> Vec<Value> {
    render(target).unwrap_or_else(|e| panic!("{e:#}"))
}

fn assert_none(target: &str, what: &str, problems: Vec<String>) {
    assert!(problems.is_empty(), "{target}: {what}:\n{}", problems.join("\n"));
}

#[test]
fn every_spin_variable_a_manifest_sets_is_declared() {
    let app = application();
    for target in TARGETS {
        assert_none(target, "undeclared variables", undeclared_spin_variables(&rendered(target), &app));
    }
}

#[test]
fn every_subscriber_path_is_a_route_of_its_component_under_parkd_and_spin() {
    let app = application();
    for target in TARGETS {
        assert_none(target, "unserved subscribers", unserved_subscribers(&rendered(target), &app));
    }
}

#[test]
fn derived_events_go_to_the_brokers_ingress_not_a_batch_reply() {
    let app = application();
    for target in TARGETS {
        assert_none(target, "misdirected event sinks", misdirected_event_sinks(&rendered(target), &app));
    }
}

#[test]
fn a_missing_or_wrong_event_sink_is_caught() {
    for target in TARGETS {
        let sink = |objects: &mut Vec<Value>| -> Vec<Value> {
            let service = named(objects, "Service", "retention-sweep");
            service["spec"]["template"]["spec"]["containers"][0]["env"].as_sequence().unwrap().clone()
        };
        let set_env = |objects: &mut Vec<Value>, env: Vec<Value>| {
            let service = named(objects, "Service", "retention-sweep");
            service["spec"]["template"]["spec"]["containers"][0]["env"] = Value::Sequence(env);
        };
        let mut objects = rendered(target);
        let mut env = sink(&mut objects);
        env.retain(|e| e["name"].as_str() != Some("SPIN_VARIABLE_EVENTS_SINK"));
        set_env(&mut objects, env);
        let problems = misdirected_event_sinks(&objects, &application());
        assert!(
            problems.iter().any(|p| p.contains("retention-sweep") && p.contains("drops")),
            "{target}: {problems:?}"
        );

        let mut objects = rendered(target);
        let mut env = sink(&mut objects);
        for e in &mut env {
            if e["name"].as_str() == Some("SPIN_VARIABLE_EVENTS_SINK") {
                e["value"] = Value::String(
                    "http://kafka-broker-ingress.knative-eventing.svc.cluster.local/parking/default".into(),
                );
            }
        }
        set_env(&mut objects, env);
        let problems = misdirected_event_sinks(&objects, &application());
        assert!(
            problems.iter().any(|p| p.contains("not the ingress of a rendered Broker")),
            "{target}: {problems:?}"
        );

        let mut objects = rendered(target);
        let mut env = sink(&mut objects);
        env.retain(|e| e["name"].as_str() != Some("SPIN_VARIABLE_EVENTS_SINK_HOST"));
        set_env(&mut objects, env);
        let problems = misdirected_event_sinks(&objects, &application());
        assert!(problems.iter().any(|p| p.contains("may not connect")), "{target}: {problems:?}");
    }
}

#[test]
fn every_metrics_scrape_reaches_a_metrics_endpoint() {
    for target in TARGETS {
        assert_none(target, "scrapes without /metrics", unscraped_metrics(&rendered(target)));
    }
}

fn named<'a>(objects: &'a mut [Value], kind: &str, name: &str) -> &'a mut Value {
    objects
        .iter_mut()
        .find(|o| o["kind"].as_str() == Some(kind) && o["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no {kind} {name} rendered"))
}

#[test]
fn an_undeclared_variable_is_caught() {
    let mut objects = rendered("overlays/parkd");
    let service = named(&mut objects, "Service", "terminal-push");
    let env = service["spec"]["template"]["spec"]["containers"][0]["env"].as_sequence_mut().unwrap();
    env.push(serde_norway::from_str("{name: SPIN_VARIABLE_MQTT_URL, value: mqtt://x:1883}").unwrap());
    let problems = undeclared_spin_variables(&objects, &application());
    assert!(problems.iter().any(|p| p.contains("SPIN_VARIABLE_MQTT_URL")), "{problems:?}");
}

#[test]
fn a_subscriber_path_spin_does_not_route_is_caught() {
    for target in TARGETS {
        let mut objects = rendered(target);
        let trigger = named(&mut objects, "Trigger", "retention-tick");
        trigger["spec"]["subscriber"]
            .as_mapping_mut()
            .unwrap()
            .insert(Value::String("uri".into()), Value::String("/".into()));
        let problems = unserved_subscribers(&objects, &application());
        assert!(
            problems.iter().any(|p| p.contains("retention-tick") && p.contains("under Spin")),
            "{target}: {problems:?}"
        );
    }
}

#[test]
fn a_scrape_of_a_spin_pod_or_a_wrong_port_is_caught() {
    // The PodMonitor of the parkd overlay, pointed at the SpinKube pods.
    let parkd = rendered("overlays/parkd");
    let monitor = parkd.iter().find(|o| o["kind"].as_str() == Some("PodMonitor")).unwrap().clone();
    let mut spin = rendered("overlays/spinkube");
    spin.retain(|o| o["kind"].as_str() != Some("PodMonitor"));
    spin.push(monitor);
    let problems = unscraped_metrics(&spin);
    assert!(problems.iter().any(|p| p.contains("Spin runtime serves no /metrics")), "{problems:?}");

    let mut objects = rendered("overlays/parkd");
    let gateway = named(&mut objects, "Deployment", "parking-gateway");
    let env = gateway["spec"]["template"]["spec"]["containers"][0]["env"].as_sequence_mut().unwrap();
    env.retain(|e| e["name"].as_str() != Some("PARKD_GATEWAY_LISTEN"));
    let problems = unscraped_metrics(&objects);
    assert!(problems.iter().any(|p| p.contains("parking-gateway")), "{problems:?}");
}

/// docs/deploying.md enables the Knative features the rendered objects need,
/// under their real names, and names the add-on release that serves them.
#[test]
fn the_deploying_guide_enables_what_the_manifests_use() {
    let guide = std::fs::read_to_string(repo_root().join("docs/deploying.md")).unwrap();
    let all: Vec<Value> = TARGETS.iter().flat_map(|t| rendered(t)).collect();
    let knative_pods = all
        .iter()
        .filter(|o| o["apiVersion"].as_str() == Some("serving.knative.dev/v1"))
        .map(|o| &o["spec"]["template"]["spec"]);
    let (mut empty_dir, mut runtime_class) = (false, false);
    for pod in knative_pods {
        empty_dir |= pod["volumes"].as_sequence().into_iter().flatten().any(|v| v.get("emptyDir").is_some());
        runtime_class |= pod.get("runtimeClassName").is_some();
    }
    if empty_dir {
        assert!(
            guide.contains("\"kubernetes.podspec-volumes-emptydir\":\"enabled\""),
            "Knative Services mount emptyDir volumes: docs/deploying.md must enable kubernetes.podspec-volumes-emptydir"
        );
    }
    if runtime_class {
        assert!(guide.contains("\"kubernetes.podspec-runtimeclassname\":\"enabled\""));
    }
    // Feature flags Knative does not have are a typo that silently does nothing.
    for flag in guide.split('"').filter(|w| w.starts_with("kubernetes.podspec-")) {
        assert!(
            ["kubernetes.podspec-volumes-emptydir", "kubernetes.podspec-runtimeclassname"].contains(&flag),
            "docs/deploying.md sets {flag}, which is not a flag these manifests need (or not Knative's name)"
        );
    }
    if all.iter().any(|o| {
        o["kind"].as_str() == Some("KafkaSource")
            && o["apiVersion"].as_str() == Some("sources.knative.dev/v1")
    }) {
        assert!(
            guide.contains("eventing-kafka-broker 1.16 or later"),
            "KafkaSource sources.knative.dev/v1 needs eventing-kafka-broker 1.16 or later: say so in docs/deploying.md's add-ons"
        );
    }
}
