//! Which nodes `/api/v1/credentials` hands out (issue 15): a pure choice
//! over the node registry's rows and this node's live numbers, so it is
//! tested without a store or a clock.

use crate::store::nodes::NodeRow;

/// This node as it knows itself now: its row may lag a heartbeat behind,
/// or be missing right after start (or while the store is unreachable).
#[derive(Debug, Clone)]
pub(super) struct Me {
    pub(super) name: String,
    pub(super) region: String,
    pub(super) urls: Vec<String>,
    pub(super) allocations: i64,
}

/// What the caller asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Want<'a> {
    /// The least-loaded ready node, in `region` first when given, and a
    /// second as fallback.
    Least { region: Option<&'a str> },
    /// Exactly this node (`self` is this node's name).
    Pin(&'a str),
}

/// Why no node is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum NoNode {
    /// A pinned name the registry does not hold.
    Unknown(String),
    /// A pinned node that is `draining` or `down`.
    NotReady { name: String, state: String },
    /// Every known node is draining or down.
    NoneReady,
}

/// How many nodes an unpinned answer names: the chosen one and a fallback.
const CHOSEN: usize = 2;

/// The nodes to hand out, best first. "Least loaded" is fewest live
/// allocations, then lowest relayed bit rate, then name (so equal nodes
/// are ordered the same on every node). This node counts with its live
/// allocations and URLs; its own state is what its row says, never `down`
/// (it is answering), and `ready` without a row.
pub(super) fn choose(
    rows: &[NodeRow],
    me: &Me,
    want: Want<'_>,
    now_ms: i64,
) -> Result<Vec<NodeRow>, NoNode> {
    let mut nodes: Vec<(NodeRow, String)> = rows
        .iter()
        .filter(|r| r.name != me.name)
        .map(|r| (r.clone(), r.state_at(now_ms).to_string()))
        .collect();
    let mine = rows.iter().find(|r| r.name == me.name);
    let my_row = NodeRow {
        name: me.name.clone(),
        region: me.region.clone(),
        state: mine.map_or_else(|| "ready".into(), |r| r.state.clone()),
        urls: me.urls.clone(),
        allocations: me.allocations,
        relayed_bps: mine.map_or(0, |r| r.relayed_bps),
        last_seen: now_ms,
    };
    let my_state = my_row.state.clone();
    nodes.push((my_row, my_state));

    match want {
        Want::Pin(name) => {
            let name = if name == "self" {
                me.name.as_str()
            } else {
                name
            };
            let (row, state) = nodes
                .into_iter()
                .find(|(r, _)| r.name == name)
                .ok_or_else(|| NoNode::Unknown(name.to_string()))?;
            if state != "ready" {
                return Err(NoNode::NotReady {
                    name: row.name,
                    state,
                });
            }
            Ok(vec![row])
        }
        Want::Least { region } => {
            let region = region.filter(|r| !r.is_empty());
            let elsewhere = |r: &NodeRow| region.is_some_and(|g| !r.region.eq_ignore_ascii_case(g));
            let mut ready: Vec<NodeRow> = nodes
                .into_iter()
                .filter(|(_, state)| state == "ready")
                .map(|(r, _)| r)
                .collect();
            if ready.is_empty() {
                return Err(NoNode::NoneReady);
            }
            ready.sort_by(|a, b| {
                (elsewhere(a), a.allocations, a.relayed_bps, &a.name).cmp(&(
                    elsewhere(b),
                    b.allocations,
                    b.relayed_bps,
                    &b.name,
                ))
            });
            ready.truncate(CHOSEN);
            Ok(ready)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_000_000;

    fn row(name: &str, region: &str, state: &str, allocations: i64, bps: i64) -> NodeRow {
        NodeRow {
            name: name.into(),
            region: region.into(),
            state: state.into(),
            urls: vec![format!("turn:{name}:3478?transport=udp")],
            allocations,
            relayed_bps: bps,
            last_seen: NOW - 1_000,
        }
    }

    fn me(name: &str, region: &str, allocations: i64) -> Me {
        Me {
            name: name.into(),
            region: region.into(),
            urls: vec![format!("turn:{name}-live:3478?transport=udp")],
            allocations,
        }
    }

    fn names(r: Result<Vec<NodeRow>, NoNode>) -> Vec<String> {
        r.unwrap().into_iter().map(|n| n.name).collect()
    }

    const ANY: Want<'static> = Want::Least { region: None };

    #[test]
    fn the_least_loaded_node_comes_first_and_the_next_is_the_fallback() {
        let rows = [
            row("a", "eu", "ready", 5, 0),
            row("b", "eu", "ready", 0, 0),
            row("c", "us", "ready", 2, 0),
        ];
        assert_eq!(
            names(choose(&rows, &me("a", "eu", 5), ANY, NOW)),
            ["b", "c"]
        );
        // Equal allocations: the lower bit rate, then the name.
        let rows = [
            row("a", "eu", "ready", 1, 900),
            row("b", "eu", "ready", 1, 100),
            row("c", "eu", "ready", 1, 100),
        ];
        assert_eq!(
            names(choose(&rows, &me("a", "eu", 1), ANY, NOW)),
            ["b", "c"]
        );
    }

    #[test]
    fn this_node_counts_with_its_live_allocations_and_urls() {
        // Its row says 9 allocations, but they ended since.
        let rows = [row("a", "eu", "ready", 9, 0), row("b", "eu", "ready", 3, 0)];
        let got = choose(&rows, &me("a", "eu", 0), ANY, NOW).unwrap();
        assert_eq!(got[0].name, "a");
        assert_eq!(got[0].urls, ["turn:a-live:3478?transport=udp"]);
        assert_eq!(got[1].name, "b");
    }

    #[test]
    fn without_its_row_this_node_is_a_ready_candidate_and_alone_it_is_the_answer() {
        // Right after start, or SQLite before the first heartbeat.
        let got = choose(&[], &me("solo", "", 0), ANY, NOW).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].name, "solo");
        assert_eq!(got[0].urls, ["turn:solo-live:3478?transport=udp"]);
        let rows = [row("b", "eu", "ready", 0, 0)];
        assert_eq!(
            names(choose(&rows, &me("a", "eu", 4), ANY, NOW)),
            ["b", "a"]
        );
    }

    #[test]
    fn the_named_region_comes_first_and_the_fallback_may_be_elsewhere() {
        let rows = [
            row("eu1", "eu", "ready", 7, 0),
            row("us1", "us", "ready", 0, 0),
            row("us2", "us", "ready", 1, 0),
        ];
        let eu = Want::Least { region: Some("eu") };
        assert_eq!(
            names(choose(&rows, &me("us1", "us", 0), eu, NOW)),
            ["eu1", "us1"]
        );
        let us = Want::Least { region: Some("US") };
        assert_eq!(
            names(choose(&rows, &me("eu1", "eu", 7), us, NOW)),
            ["us1", "us2"]
        );
        // An empty region is no preference.
        let none = Want::Least { region: Some("") };
        assert_eq!(
            names(choose(&rows, &me("eu1", "eu", 7), none, NOW)),
            ["us1", "us2"]
        );
    }

    #[test]
    fn a_region_with_no_ready_node_falls_back_to_any_region() {
        let rows = [
            row("eu1", "eu", "draining", 0, 0),
            row("eu2", "eu", "ready", 0, 0),
            row("us1", "us", "ready", 3, 0),
            row("us2", "us", "ready", 1, 0),
        ];
        let mut eu2_old = rows[1].clone();
        eu2_old.last_seen = NOW - 11_000;
        let rows = [rows[0].clone(), eu2_old, rows[2].clone(), rows[3].clone()];
        let eu = Want::Least { region: Some("eu") };
        assert_eq!(
            names(choose(&rows, &me("us1", "us", 3), eu, NOW)),
            ["us2", "us1"]
        );
        let mars = Want::Least {
            region: Some("mars"),
        };
        assert_eq!(
            names(choose(&rows, &me("us1", "us", 3), mars, NOW)),
            ["us2", "us1"]
        );
    }

    #[test]
    fn draining_and_down_nodes_are_never_chosen() {
        let mut down = row("down", "eu", "ready", 0, 0);
        down.last_seen = NOW - 10_001;
        let rows = [
            down,
            row("drain", "eu", "draining", 0, 0),
            row("busy", "eu", "ready", 50, 0),
        ];
        assert_eq!(
            names(choose(&rows, &me("busy", "eu", 50), ANY, NOW)),
            ["busy"]
        );
        // This node draining (its row says so) is left out too ...
        let rows = [
            row("a", "eu", "draining", 0, 0),
            row("b", "eu", "ready", 9, 0),
        ];
        assert_eq!(names(choose(&rows, &me("a", "eu", 0), ANY, NOW)), ["b"]);
        // ... and with nothing ready there is no answer.
        let rows = [row("a", "eu", "draining", 0, 0)];
        assert_eq!(
            choose(&rows, &me("a", "eu", 0), ANY, NOW),
            Err(NoNode::NoneReady)
        );
    }

    #[test]
    fn self_pins_this_node_alone_even_when_others_are_idler() {
        let rows = [row("a", "eu", "ready", 9, 0), row("b", "eu", "ready", 0, 0)];
        let got = choose(&rows, &me("a", "eu", 9), Want::Pin("self"), NOW).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].name, "a");
        assert_eq!(got[0].urls, ["turn:a-live:3478?transport=udp"]);
        // Without its row too; and by its own name.
        assert_eq!(
            names(choose(&[], &me("a", "", 0), Want::Pin("self"), NOW)),
            ["a"]
        );
        assert_eq!(
            names(choose(&rows, &me("a", "eu", 9), Want::Pin("a"), NOW)),
            ["a"]
        );
    }

    #[test]
    fn a_named_pin_must_be_known_and_ready() {
        let mut down = row("c", "eu", "ready", 0, 0);
        down.last_seen = NOW - 20_000;
        let rows = [
            row("a", "eu", "ready", 9, 0),
            row("b", "eu", "draining", 0, 0),
            down,
            row("d", "us", "ready", 4, 0),
        ];
        let me = me("a", "eu", 9);
        assert_eq!(names(choose(&rows, &me, Want::Pin("d"), NOW)), ["d"]);
        assert_eq!(
            choose(&rows, &me, Want::Pin("zz"), NOW),
            Err(NoNode::Unknown("zz".into()))
        );
        assert_eq!(
            choose(&rows, &me, Want::Pin("b"), NOW),
            Err(NoNode::NotReady {
                name: "b".into(),
                state: "draining".into()
            })
        );
        assert_eq!(
            choose(&rows, &me, Want::Pin("c"), NOW),
            Err(NoNode::NotReady {
                name: "c".into(),
                state: "down".into()
            })
        );
        // This node, draining, pinned by name or as self.
        let rows = [row("a", "eu", "draining", 0, 0)];
        assert!(matches!(
            choose(&rows, &me, Want::Pin("self"), NOW),
            Err(NoNode::NotReady { .. })
        ));
    }
}
