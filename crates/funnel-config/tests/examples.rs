#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Conduit's own example files load with the values Conduit would give them.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use funnel_config::{
    ConnectorKind, LoadOptions, Loaded, Location, PipelineStatus, ProcessorConfig, load,
};

fn valid(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/valid")
        .join(name)
}

fn load_valid(name: &str) -> Loaded {
    let opts = LoadOptions {
        strict_env: false,
        env: Some(HashMap::from([(
            "SHOP_ENV".to_owned(),
            "staging".to_owned(),
        )])),
    };
    load(&valid(name), &opts).unwrap_or_else(|errors| panic!("{errors}"))
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn ids(processors: &[ProcessorConfig]) -> Vec<&str> {
    processors.iter().map(|p| p.id.as_str()).collect()
}

#[test]
fn the_v2_2_shop_example_loads_field_for_field() {
    let loaded = load_valid("shop.yaml");
    assert_eq!(loaded.warnings, vec![]);
    assert_eq!(loaded.pipelines.len(), 1);
    let p = &loaded.pipelines[0];
    assert_eq!(p.id, "shop-sync");
    assert_eq!(p.status, PipelineStatus::Running);
    assert_eq!(p.name, "Shop sync");
    assert_eq!(
        p.description,
        "Two generated collections go to a JSONL file and to the log. \
         Oversized orders are tagged; deletes are not logged.\n"
    );
    assert_eq!(p.path, "pipelines[0]");

    let kinds: Vec<(&str, ConnectorKind, &str)> = p
        .connectors
        .iter()
        .map(|c| (c.id.as_str(), c.kind, c.plugin.as_str()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("fake-shop", ConnectorKind::Source, "builtin:generator"),
            ("jsonl-out", ConnectorKind::Destination, "builtin:file"),
            ("console", ConnectorKind::Destination, "builtin:log"),
        ]
    );

    let source = &p.connectors[0];
    assert_eq!(source.name, "fake-shop");
    assert_eq!(source.settings.len(), 11);
    assert_eq!(source.settings["rate"], "20");
    assert_eq!(source.settings["recordCount"], "500");
    assert_eq!(
        source.settings["collections.orders.format.options.paid"],
        "bool"
    );
    assert_eq!(
        source.settings["collections.users.operations"],
        "create,update,delete"
    );
    assert_eq!(ids(&source.processors), vec!["stamp-env"]);
    let stamp = &source.processors[0];
    assert_eq!(stamp.plugin, "field.set");
    assert_eq!(stamp.workers, 1);
    assert_eq!(stamp.condition, None);
    assert_eq!(
        stamp.settings,
        map(&[("field", ".Metadata.env"), ("value", "staging")])
    );

    assert_eq!(
        p.connectors[1].settings,
        map(&[
            ("path", "./out/shop.jsonl"),
            ("sdk.batch.delay", "250ms"),
            ("sdk.batch.size", "100"),
        ])
    );
    let console = &p.connectors[2];
    assert_eq!(
        console.settings,
        map(&[("level", "info"), ("message", "shop record")])
    );
    assert_eq!(console.processors[0].plugin, "filter");
    assert_eq!(
        console.processors[0].condition.as_deref(),
        Some(r#"{{ eq .Operation.String "delete" }}"#)
    );

    assert_eq!(ids(&p.processors), vec!["tag-large-orders", "drop-email"]);
    let tag = &p.processors[0];
    assert_eq!(tag.workers, 4);
    assert_eq!(
        tag.condition.as_deref(),
        Some(r#"{{ eq (index .Metadata "opencdc.collection") "orders" }}"#)
    );
    assert_eq!(
        tag.settings["value"],
        "{{ if gt (int .Payload.After.amount) 1000000 }}large{{ else }}normal{{ end }}"
    );
    assert_eq!(p.processors[1].settings["fields"], ".Payload.After.email");

    assert_eq!(p.dlq.plugin, "builtin:file");
    assert_eq!(p.dlq.settings, map(&[("path", "./out/shop-dlq.jsonl")]));
    assert_eq!(p.dlq.window_size, 20);
    assert_eq!(p.dlq.window_nack_threshold, 5);
}

#[test]
fn the_v2_2_shop_example_records_where_everything_was_written() {
    let loaded = load_valid("shop.yaml");
    let p = &loaded.pipelines[0];
    let file = valid("shop.yaml");
    let at = |line, column| Location::new(&file, line, column);
    assert_eq!(p.location, at(4, 5));
    assert_eq!(p.field_location("id"), &at(4, 9));
    assert_eq!(p.connectors[0].location, at(11, 9));
    assert_eq!(p.connectors[0].path, "pipelines[0].connectors[0]");
    assert_eq!(p.connectors[0].field_location("plugin"), &at(13, 17));
    assert_eq!(p.connectors[0].setting_location("rate"), &at(15, 17));
    assert_eq!(
        p.connectors[0].processors[0].setting_location("value"),
        &at(31, 22)
    );
    assert_eq!(p.processors[0].field_location("workers"), &at(52, 18));
    assert_eq!(p.dlq.location, at(63, 7));
    assert_eq!(p.dlq.field_location("window-size"), &at(66, 20));
    assert_eq!(at(15, 17).to_string(), format!("{}:15:17", file.display()));
}

#[test]
fn the_v1_1_map_layout_loads_with_ids_from_the_keys() {
    let loaded = load_valid("shop-v1.yaml");
    assert_eq!(loaded.pipelines.len(), 1);
    let p = &loaded.pipelines[0];
    assert_eq!(p.id, "shop-sync-v1");
    assert_eq!(p.path, "pipelines.shop-sync-v1");
    assert_eq!(p.status, PipelineStatus::Stopped);
    assert_eq!(p.name, "shop-sync-v1");
    assert_eq!(p.description, "Legacy layout of the shop pipeline.");

    let source = &p.connectors[0];
    assert_eq!(source.id, "fake-shop");
    assert_eq!(source.path, "pipelines.shop-sync-v1.connectors.fake-shop");
    assert_eq!(source.kind, ConnectorKind::Source);
    assert_eq!(source.settings["rate"], "20");
    assert_eq!(source.processors[0].id, "stamp-env");
    assert_eq!(source.processors[0].plugin, "field.set");
    assert_eq!(source.processors[0].settings["value"], "staging");

    let sink = &p.connectors[1];
    assert_eq!(sink.id, "jsonl-out");
    assert_eq!(sink.kind, ConnectorKind::Destination);
    assert_eq!(sink.settings, map(&[("path", "./out/shop-v1.jsonl")]));

    assert_eq!(ids(&p.processors), vec!["tag-orders", "drop-email"]);
    assert_eq!(p.processors[0].plugin, "field.set");
    assert_eq!(p.processors[0].workers, 2);
    assert_eq!(p.processors[1].plugin, "field.exclude");

    assert_eq!(p.dlq.plugin, "builtin:log");
    assert_eq!(
        p.dlq.settings,
        map(&[("level", "warn"), ("message", "record delivery failed")])
    );
    assert_eq!(p.dlq.window_size, 0);
    assert_eq!(p.dlq.window_nack_threshold, 0);
}

#[test]
fn the_v1_layout_warns_that_conduit_leaves_processor_order_undefined() {
    let loaded = load_valid("shop-v1.yaml");
    let messages: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(
        messages[0].contains(":24:7: pipelines.shop-sync-v1.processors: processors are a map"),
        "{}",
        messages[0]
    );
}

#[test]
fn the_valid_directory_loads_both_examples_in_file_name_order() {
    let opts = LoadOptions {
        strict_env: true,
        env: Some(HashMap::from([("SHOP_ENV".to_owned(), "prod".to_owned())])),
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/valid");
    let loaded = load(&dir, &opts).unwrap_or_else(|errors| panic!("{errors}"));
    let ids: Vec<&str> = loaded.pipelines.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, vec!["shop-sync-v1", "shop-sync"]);
    assert_eq!(
        loaded.files,
        vec![dir.join("shop-v1.yaml"), dir.join("shop.yaml")]
    );
}
