//! Kafka positions: `{"groupID":"...","topic":"...","partition":N,"offset":N}`, the
//! JSON Conduit's kafka source writes (same member order).

use funnel_record::Position;

/// One message's place: its topic, partition and offset, and the group that read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaPosition {
    /// The consumer group.
    pub group_id: String,
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset of the message.
    pub offset: i64,
}

/// Writes positions of one group: the group's JSON text is made once.
pub(crate) struct PositionWriter {
    prefix: String,
}

impl PositionWriter {
    pub(crate) fn new(group_id: &str) -> Self {
        let group = serde_json::Value::String(group_id.to_owned()).to_string();
        Self {
            prefix: format!("{{\"groupID\":{group},\"topic\":"),
        }
    }

    /// The position of `offset` in `topic` / `partition` (a valid topic name needs no
    /// escaping, but it is escaped when it would).
    pub(crate) fn position(&self, topic: &str, partition: i32, offset: i64) -> Position {
        let mut text = String::with_capacity(self.prefix.len() + topic.len() + 40);
        text.push_str(&self.prefix);
        if topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            text.push('"');
            text.push_str(topic);
            text.push('"');
        } else {
            text.push_str(&serde_json::Value::String(topic.to_owned()).to_string());
        }
        text.push_str(",\"partition\":");
        text.push_str(&partition.to_string());
        text.push_str(",\"offset\":");
        text.push_str(&offset.to_string());
        text.push('}');
        Position::from(text)
    }
}

impl KafkaPosition {
    /// Parses a position written by this source (or by Conduit's).
    ///
    /// # Errors
    ///
    /// When the position is not such JSON.
    pub fn parse(position: &[u8]) -> Result<Self, String> {
        let value: serde_json::Value = serde_json::from_slice(position)
            .map_err(|e| format!("the position is not kafka position JSON: {e}"))?;
        let field = |name: &str| {
            value
                .get(name)
                .ok_or_else(|| format!("the position has no {name:?}"))
        };
        let text = |name: &str| -> Result<String, String> {
            field(name)?
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("the position's {name:?} is not a string"))
        };
        let number = |name: &str| -> Result<i64, String> {
            field(name)?
                .as_i64()
                .ok_or_else(|| format!("the position's {name:?} is not an integer"))
        };
        Ok(Self {
            group_id: text("groupID").unwrap_or_default(),
            topic: text("topic")?,
            partition: i32::try_from(number("partition")?)
                .map_err(|_| "the position's partition is out of range".to_owned())?,
            offset: number("offset")?,
        })
    }

    /// The topic, partition and offset of a position this source wrote, read without
    /// building a JSON tree (acks parse every position).
    pub(crate) fn parse_fast(position: &[u8]) -> Option<(&str, i32, i64)> {
        let text = std::str::from_utf8(position).ok()?;
        let (rest, offset) = text.strip_suffix('}')?.rsplit_once(",\"offset\":")?;
        let (rest, partition) = rest.rsplit_once(",\"partition\":")?;
        let (_, topic) = rest.rsplit_once("\"topic\":\"")?;
        let topic = topic.strip_suffix('"')?;
        if topic.contains('\\') {
            return None;
        }
        Some((topic, partition.parse().ok()?, offset.parse().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_conduits_json_and_parse_back() {
        let writer = PositionWriter::new("g\"1");
        let position = writer.position("orders", 2, 41);
        assert_eq!(
            position.as_bytes(),
            br#"{"groupID":"g\"1","topic":"orders","partition":2,"offset":41}"#
        );
        assert_eq!(
            KafkaPosition::parse(position.as_bytes()),
            Ok(KafkaPosition {
                group_id: "g\"1".into(),
                topic: "orders".into(),
                partition: 2,
                offset: 41
            })
        );
        assert_eq!(
            KafkaPosition::parse_fast(position.as_bytes()),
            Some(("orders", 2, 41))
        );
    }

    #[test]
    fn a_position_that_is_not_kafka_json_is_refused() {
        assert!(KafkaPosition::parse(b"42").is_err());
        assert!(KafkaPosition::parse(br#"{"topic":"t"}"#).is_err());
        assert_eq!(KafkaPosition::parse_fast(b"42"), None);
    }
}
