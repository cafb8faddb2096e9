//! Dynacast: tell each publisher of simulcast video the highest layer any
//! consumer wants (`producerLayersWanted`), so it can stop encoding and
//! sending the layers above (our client calls mediasoup-client's
//! `setMaxSpatialLayer`). What is wanted comes from the registry
//! ([`super::Registry::wanted_layers`]: client pauses and preferred layers,
//! over every worker), checked every [`DYNACAST_TICK`]. A layer wanted again
//! is asked for at the next tick; one no longer wanted is released only
//! after [`DYNACAST_DOWN_AFTER`], so a viewer that hides a tile for a moment
//! or a consumer replaced by a new one does not cost the publisher a
//! restart of its encoder.

use super::{lock, Inner, Sfu};
use simplesfu_proto::{ProducerId, ProducerLayersWanted, Push};
use std::collections::HashMap;
use std::sync::Weak;
use std::time::{Duration, Instant};

/// How often what is wanted is checked.
pub(super) const DYNACAST_TICK: Duration = Duration::from_secs(1);
/// How long a lower layer must be all that is wanted before the publisher
/// is told.
pub(super) const DYNACAST_DOWN_AFTER: Duration = Duration::from_secs(3);

/// What a publisher was last told of one producer.
#[derive(Debug, Clone, Copy)]
pub(super) struct Told {
    layer: u8,
    /// Since when less than `layer` has been wanted.
    lower_since: Option<Instant>,
}

#[derive(Debug, Default)]
pub(super) struct Dynacast {
    told: HashMap<ProducerId, Told>,
}

impl Sfu {
    fn dynacast_tick(&self, now: Instant) {
        let wanted = self.registry().wanted_layers();
        let mut pushes = Vec::new();
        {
            let mut state = lock(&self.inner.dynacast);
            let mut told = HashMap::with_capacity(wanted.len());
            for (owner, producer, want, top) in wanted {
                // A publisher starts with every layer on.
                let mut t = state.told.get(&producer).copied().unwrap_or(Told {
                    layer: top,
                    lower_since: None,
                });
                if want > t.layer {
                    t = Told {
                        layer: want,
                        lower_since: None,
                    };
                    pushes.push((owner, producer, want));
                } else if want < t.layer {
                    let since = *t.lower_since.get_or_insert(now);
                    if now.saturating_duration_since(since) >= DYNACAST_DOWN_AFTER {
                        t = Told {
                            layer: want,
                            lower_since: None,
                        };
                        pushes.push((owner, producer, want));
                    }
                } else {
                    t.lower_since = None;
                }
                told.insert(producer, t);
            }
            // Producers that closed are forgotten.
            state.told = told;
        }
        for (owner, producer_id, max_spatial_layer) in pushes {
            tracing::debug!(peer = %owner, producer = %producer_id, max_spatial_layer, "layers wanted");
            self.push(
                &owner,
                &Push::ProducerLayersWanted(ProducerLayersWanted {
                    producer_id,
                    max_spatial_layer,
                }),
            );
        }
    }
}

pub(super) async fn dynacast_ticks(sfu: Weak<Inner>) {
    let mut ticker = tokio::time::interval(DYNACAST_TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(inner) = sfu.upgrade() else { break };
        Sfu { inner }.dynacast_tick(Instant::now());
    }
}
